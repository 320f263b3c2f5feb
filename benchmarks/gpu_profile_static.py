"""The `adfm` adapter with static cache + compiled decoding at batch 64, under torch.profiler.

A diagnosis script (not a test): it shows whether the compiled decoding step is
engaged (look for `cudaGraphLaunch` and `Torch-Compiled Region` rows) and where the
rest of a batch's time goes. Random Qwen2.5-VL-7B weights, as `gpu_adfm.py` builds them.

    TOKENIZER_DIR=runs/gpu/qwen25-tok NEW_TOKENS=32 python benchmarks/gpu_profile_static.py
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

from adbench.models.qwen_vl import QwenVLModel  # noqa: E402

BATCH = int(os.environ.get("BATCH", "64"))


def main() -> None:
    t0 = time.time()
    model, processor, pixels = g.build_model()
    queries = g.make_queries(BATCH, Path(tempfile.mkdtemp()))
    print("built", round(time.time() - t0, 1), flush=True)
    adapter = QwenVLModel.from_components(
        model, processor, base="random 7B", protocol="adfm", dtype="bfloat16", device="cuda", batch_size=BATCH,
        max_new_tokens=g.NEW_TOKENS, min_new_tokens=g.NEW_TOKENS, do_sample=True, cache="static", compile=True,
        min_pixels=28 * 28, max_pixels=pixels)
    for i in range(2):  # the first call compiles
        t = time.time()
        adapter.predict(queries)
        torch.cuda.synchronize()
        print("warm", i, round(time.time() - t, 2), flush=True)
    t = time.time()
    adapter.predict(queries)
    torch.cuda.synchronize()
    print(json.dumps({"static_s": round(time.time() - t, 3), "batch": BATCH, "new_tokens": g.NEW_TOKENS}), flush=True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        adapter.predict(queries)
        torch.cuda.synchronize()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=18), flush=True)
    print(averages.table(sort_by="cuda_time_total", row_limit=12), flush=True)
    compiled = [e.key for e in averages if "Torch-Compiled" in e.key or "cudaGraphLaunch" in e.key]
    print("compiled graphs seen:", compiled[:10], flush=True)


if __name__ == "__main__":
    main()
