"""How long reading the full MMAD index takes: `read_mmad` and the suites' `samples()`.

Writes a synthetic `mmad.json` the size of MMAD's (8,366 images, 39,672 questions,
38 categories over DS-MVTec, VisA, MVTec-LOCO and GoodsAD, 8 random + 8 similar
templates per image; the image files need not exist, since readers do not open
them) and times, in one process:

- `read_mmad`: JSON parsing plus one Sample per question;
- `mmad` and `mmad-binary` `task.samples()`: the same, plus the 20/80 split (drawn,
  hashed and written) and the filters.

    python benchmarks/reader_speed.py [--repeat 5]

Prints one JSON line per measurement (median and best of `--repeat`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from adbench import registry
from adbench.data.mmad import read_mmad
from adbench.schema import ANOMALY_DETECTION, QUESTION_TYPES

N_IMAGES = 8366
N_QUESTIONS = 39672
CATEGORIES = {"DS-MVTec": 15, "VisA": 12, "MVTec-LOCO": 5, "GoodsAD": 6}  # 38 classes


def synthetic_index(root: Path) -> Path:
    cats = [(ds, f"cat{i:02d}") for ds, n in CATEGORIES.items() for i in range(n)]
    per_image = [N_QUESTIONS // N_IMAGES + (1 if i < N_QUESTIONS % N_IMAGES else 0) for i in range(N_IMAGES)]
    index = {}
    for i in range(N_IMAGES):
        ds, cat = cats[i % len(cats)]
        kind = "good" if i % 5 < 2 else "crack"
        key = f"{ds}/{cat}/test/{kind}/{i:05d}.png"
        pool = [f"{ds}/{cat}/train/good/{j:03d}.png" for j in range(50)]
        conv = [{"Question": "Is there any defect in the object?", "Options": {"A": "Yes.", "B": "No."},
                 "Answer": "B" if kind == "good" else "A", "type": ANOMALY_DETECTION}]
        for q in range(1, per_image[i]):
            conv.append({"Question": f"Question {q} about the object?",
                         "Options": {"A": "one", "B": "two", "C": "three", "D": "four"}, "Answer": "C",
                         "type": QUESTION_TYPES[q % len(QUESTION_TYPES)]})
        index[key] = {
            "image_path": f"test/{kind}/{i:05d}.png",  # MMAD: relative to <dataset>/<category>/
            "mask_path": None if kind == "good" else f"ground_truth/{kind}/{i:05d}_mask.png",
            "random_templates": [pool[(i + 7 * j) % 50] for j in range(8)],
            "similar_templates": [pool[(3 * i + j) % 50] for j in range(8)],
            "conversation": conv,
        }
    assert sum(len(v["conversation"]) for v in index.values()) == N_QUESTIONS
    path = root / "MMAD" / "mmad.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(index, indent=1))
    return path


def timed(fn, repeat: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="adbench-reader-"))
    index = synthetic_index(tmp)
    size_mb = index.stat().st_size / 1e6
    rows = []
    times, samples = timed(lambda: read_mmad(index.parent), args.repeat)
    rows.append(("read_mmad", times, len(samples)))
    for name in ("mmad", "mmad-binary"):
        times, samples = timed(lambda n=name: registry.make_task(n).samples(tmp), args.repeat)
        rows.append((f"{name}.samples (eval split)", times, len(samples)))
    for what, times, n in rows:
        print(json.dumps({"what": what, "index_mb": round(size_mb, 1), "images": N_IMAGES, "questions": N_QUESTIONS,
                          "samples": n, "median_s": round(statistics.median(times), 3),
                          "best_s": round(min(times), 3), "repeat": args.repeat}))


if __name__ == "__main__":
    main()
