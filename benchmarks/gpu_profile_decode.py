"""Where a decoding step of Qwen2.5-VL-7B goes under plain `generate` (GPU diagnosis, not a test).

The end-to-end benchmark (`gpu_adfm.py`) found transformers' generate at about 57 ms
per decoding step at batch 64 on an H200, against a memory-bound floor of about 4 ms.
This script separates the model's own forward pass from generate's loop around it:

1. `generate` with NEW_TOKENS sampled tokens, timed (ms per step);
2. generate with one new token (the prefill alone), so that the per-step decoding cost
   is generate's time minus the prefill;
3. a torch.profiler trace of a short generate: the top operators by GPU time and by
   CPU time, to show whether the gap is GPU work or host overhead.

Random weights, same architecture and input sizes as ../shared/bench/hf_generate_anchor.py.

    BATCH=64 NEW_TOKENS=32 python benchmarks/gpu_profile_decode.py
    SIZE=tiny python benchmarks/gpu_profile_decode.py      # CPU dry run

Prints JSON lines and the profiler tables; writes $OUT/gpu_profile_decode.json.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2VLImageProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # gpu_common.py, random_qwen.py beside this file
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # adbench, for random_qwen

from gpu_common import sync  # noqa: E402
from random_qwen import random_qwen  # noqa: E402

from adbench.models.tiny_qwen import IMAGE_PAD_ID, VISION_END_ID, VISION_START_ID  # noqa: E402

SIZE = os.environ.get("SIZE", "7b")
BATCH = int(os.environ.get("BATCH", "64" if SIZE == "7b" else "2"))
SIDE = int(os.environ.get("SIDE", "448" if SIZE == "7b" else "112"))
NEW_TOKENS = int(os.environ.get("NEW_TOKENS", "32" if SIZE == "7b" else "4"))
DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEV == "cuda" else torch.float32


def inputs(processor: Qwen2VLImageProcessor) -> dict[str, torch.Tensor]:
    img = Image.fromarray((np.random.default_rng(0).random((SIDE, SIDE, 3)) * 255).astype("uint8"))
    px = processor(images=[img] * BATCH, return_tensors="pt")
    n_img = int(px["image_grid_thw"][0].prod()) // 4
    ids = [VISION_START_ID] + [IMAGE_PAD_ID] * n_img + [VISION_END_ID] + list(range(1000, 1120))
    input_ids = torch.tensor([ids] * BATCH, device=DEV)
    return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                pixel_values=px["pixel_values"].to(DEV, DTYPE), image_grid_thw=px["image_grid_thw"].to(DEV))


def main() -> None:
    rows = []
    model = random_qwen(SIZE, DEV, DTYPE)
    inp = inputs(Qwen2VLImageProcessor())
    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=True, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        model.generate(**inp, **kw)  # warm-up
        sync(DEV)
        t = time.time()
        model.generate(**inp, **kw)
        sync(DEV)
        gen_ms = 1000 * (time.time() - t) / NEW_TOKENS
        rows.append({"what": "generate", "batch": BATCH, "ms_per_step": round(gen_ms, 2)})
        print(json.dumps(rows[-1]), flush=True)

        # the prefill alone (one new token): what is left of generate's time is decoding
        one = dict(kw, max_new_tokens=1, min_new_tokens=1)
        model.generate(**inp, **one)
        sync(DEV)
        t = time.time()
        model.generate(**inp, **one)
        sync(DEV)
        prefill_ms = 1000 * (time.time() - t)
        decode_ms = (gen_ms * NEW_TOKENS - prefill_ms) / max(NEW_TOKENS - 1, 1)
        rows.append({"what": "prefill", "batch": BATCH, "ms": round(prefill_ms, 2)})
        rows.append({"what": "decode step (generate minus prefill)", "batch": BATCH, "ms_per_step": round(decode_ms, 2)})
        print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)

        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEV == "cuda" else [])
        short = dict(kw, max_new_tokens=min(8, NEW_TOKENS), min_new_tokens=min(8, NEW_TOKENS))
        with profile(activities=acts) as prof:
            model.generate(**inp, **short)
            sync(DEV)
    key = "cuda_time_total" if DEV == "cuda" else "cpu_time_total"
    by_gpu = prof.key_averages().table(sort_by=key, row_limit=20)
    by_cpu = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    print(f"== top operators by {key}\n{by_gpu}\n== top operators by self CPU time\n{by_cpu}", flush=True)
    out_dir = os.environ.get("OUT", ".")
    with open(os.path.join(out_dir, "gpu_profile_decode.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu", "torch": torch.__version__,
                   "rows": rows, "top_gpu": by_gpu, "top_cpu": by_cpu}, f, indent=1)


if __name__ == "__main__":
    main()
