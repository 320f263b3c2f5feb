"""The `adfm` adapter at batch 64 under torch.profiler, with a compiled decoding step.

A diagnosis script (not a test): it shows whether the compiled decoding step is
engaged (look for `cudaGraphLaunch` and `Torch-Compiled Region` rows) and where the
rest of a batch's time goes. Random Qwen2.5-VL-7B weights, as `gpu_adfm.py` builds them.
ENGINE=fast (default) profiles adbench's engine (`-M engine=fast`, whose phases appear
as `adbench.*` rows); ENGINE=static profiles transformers' `generate` with a static
cache. The tables also go to $OUT/profile_<engine>.txt.

    TOKENIZER_DIR=runs/gpu/qwen25-tok NEW_TOKENS=32 python benchmarks/gpu_profile_adapter.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # gpu_adfm.py beside this file
os.environ.setdefault("NEW_TOKENS", "32")

import gpu_adfm as g  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from adbench.models.engines.qwen import QwenVLModel  # noqa: E402

BATCH = int(os.environ.get("BATCH", "64"))
ENGINE = os.environ.get("ENGINE", "fast")


def main() -> None:
    t0 = time.time()
    model, processor, pixels = g.build_model()
    queries = g.make_queries(BATCH, Path(tempfile.mkdtemp()))
    print("built", round(time.time() - t0, 1), flush=True)
    adapter = QwenVLModel.from_components(
        model, processor, base="random 7B", protocol="adfm", dtype=str(g.DTYPE).split(".")[-1], device=g.DEV, batch_size=BATCH,
        max_new_tokens=g.NEW_TOKENS, min_new_tokens=g.NEW_TOKENS, do_sample=True, compile=g.DEV == "cuda",
        cache="static" if ENGINE == "static" else "dynamic", engine="fast" if ENGINE == "fast" else "generate",
        min_pixels=28 * 28, max_pixels=pixels)
    for i in range(2):  # the first call compiles
        t = time.time()
        adapter.predict(queries)
        if g.DEV == "cuda":
            torch.cuda.synchronize()
        print("warm", i, round(time.time() - t, 2), flush=True)
    t = time.time()
    adapter.predict(queries)
    if g.DEV == "cuda":
        torch.cuda.synchronize()
    print(json.dumps({"engine": ENGINE, "batch_s": round(time.time() - t, 3), "batch": BATCH,
                      "new_tokens": g.NEW_TOKENS,
                      "phases": getattr(adapter._decoder, "last_timing", None)}), flush=True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        adapter.predict(queries)
        if g.DEV == "cuda":
            torch.cuda.synchronize()
    averages = prof.key_averages()
    by_cpu = averages.table(sort_by="self_cpu_time_total", row_limit=30)
    by_gpu = averages.table(sort_by="cuda_time_total", row_limit=30)
    # kernels by their own GPU time: those replayed inside the decoding step's CUDA graph show here too
    by_kernel = averages.table(sort_by="self_cuda_time_total", row_limit=60)
    compiled = [e.key for e in averages if "Torch-Compiled" in e.key or "cudaGraphLaunch" in e.key]
    phases = averages.table(sort_by="cpu_time_total", row_limit=200)
    phases = "\n".join(line for line in phases.splitlines() if "adbench." in line or "Name" in line)
    report = f"{by_cpu}\n{by_gpu}\n{by_kernel}\nphases:\n{phases}\ncompiled graphs seen: {compiled[:10]}\n"
    print(report[-6000:], flush=True)
    out = Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile_{ENGINE}.txt").write_text(report)


if __name__ == "__main__":
    main()
