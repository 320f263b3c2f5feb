"""The harness's own cost per sample: runner, image checks, store, parsing and scoring.

Runs the `chance` model (whose own work is a hash) on the demo suite and compares
the whole `adbench run` path with a bare loop that only calls the model on
pre-rendered queries, measured in the same process:

    python benchmarks/harness_overhead.py [--repeat 3] [--batch-size 8]

Prints one JSON line per measurement and a summary line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from adbench import registry
from adbench.answers import parse_option
from adbench.data.demo import ensure_demo
from adbench.runner import RunSpec, run

TASKS = ("demo-binary", "demo-multitask")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="adbench-bench-"))
    ensure_demo(tmp / "data")
    rows = []
    for task_name in TASKS:
        task = registry.make_task(task_name)
        t0 = time.perf_counter()
        samples = task.samples(tmp / "data")
        read_s = time.perf_counter() - t0
        queries = [task.render(s) for s in samples]
        model = registry.make_model("chance")
        bare, full = [], []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            for r in model.predict(queries):
                parse_option(r.text, queries[0].options)
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run(RunSpec(model="chance", task=task_name, data_root=tmp / "data", out=tmp / f"runs{i}",
                        batch_size=args.batch_size, progress=False))
            full.append(time.perf_counter() - t0)
        n = len(samples)
        row = {
            "task": task_name,
            "samples": n,
            "read_ms_per_sample": round(1000 * read_s / n, 4),
            "bare_model_ms_per_sample": round(1000 * statistics.median(bare) / n, 4),
            "full_run_ms_per_sample": round(1000 * statistics.median(full) / n, 4),
        }
        row["harness_overhead_ms_per_sample"] = round(row["full_run_ms_per_sample"] - row["bare_model_ms_per_sample"], 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    worst = max(r["harness_overhead_ms_per_sample"] for r in rows)
    print(f"harness overhead: at most {worst:.3f} ms per sample (chance model, demo suite, batch {args.batch_size})")


if __name__ == "__main__":
    main()
