"""Host-side image preparation of the local MLLM adapters: one thread against several.

Before a batch reaches the GPU, `HFVisionLanguageModel.predict` decodes every image and
renders every prompt (`_prepare`). With MVTec-sized PNGs (1024 x 1024) that is about
20 ms per image on one core, over a second for a batch of 64 during which the GPU
waits. This script times `_prepare_all` on synthetic photo-like 1024 x 1024 PNGs with
`prepare_threads=1` and with the default (the CPU count, at most 8), in one process,
median of 3, and prints the ratio.

    python benchmarks/prepare_speed.py            # N=64 images
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

N = int(os.environ.get("N", "64"))
SIDE = int(os.environ.get("SIDE", "1024"))


def make_queries(folder: Path) -> list:
    from adbench.data.layout import AD_OPTIONS, AD_QUESTION
    from adbench.schema import Query

    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(SIDE), np.arange(SIDE)) % 256
    out = []
    for i in range(N):
        pixels = np.stack([ramp, ramp.T, (ramp * 3) % 256], -1).astype(np.uint8)
        pixels += rng.integers(0, 20, pixels.shape, dtype=np.uint8)  # texture: PNG cannot compress it away
        path = folder / f"img_{i}.png"
        Image.fromarray(pixels).save(path)
        out.append(Query(id=f"q{i}", images=[str(path)], question=AD_QUESTION,
                         options=dict(AD_OPTIONS), prompt="", n_references=0))
    return out


def main() -> None:
    from adbench.models.engines.qwen import QwenVLModel
    from adbench.models.tiny_qwen import build_tiny_qwen_vl

    folder = Path(tempfile.mkdtemp(prefix="adbench-prepare-"))
    queries = make_queries(folder)
    base = build_tiny_qwen_vl(folder / "tiny")  # the adapter needs a model; only its processor is used here
    model = QwenVLModel(base=str(base), protocol="adfm", max_pixels=512 * 512)
    default_threads = model.prepare_threads
    times: dict[int, list[float]] = {1: [], default_threads: []}
    for _ in range(3):
        for threads in times:
            model.prepare_threads = threads
            t = time.perf_counter()
            prepared = model._prepare_all(queries)
            times[threads].append(time.perf_counter() - t)
            assert all(not isinstance(p, str) for p in prepared)
    one, many = statistics.median(times[1]), statistics.median(times[default_threads])
    print(json.dumps({"images": N, "side": SIDE, "cpus": os.cpu_count(), "threads": default_threads,
                      "one_thread_s": round(one, 3), "threads_s": round(many, 3),
                      "ms_per_image_one_thread": round(1000 * one / N, 1), "speedup": round(one / many, 2)}))


if __name__ == "__main__":
    main()
