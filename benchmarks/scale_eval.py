"""Data-parallel evaluation: samples per second of one `adbench run` in 1, 2, ..., N processes.

Each point is a fresh run of the same command under `torchrun --standalone
--nproc-per-node=n` (one process per GPU: each loads the model onto cuda:LOCAL_RANK),
in its own output folder, so nothing is resumed:

    python benchmarks/scale_eval.py --model qwen2.5-vl-7b --task mmad-binary --limit 2000 \\
        [--procs 1,2,4,8] [-M batch_size=16] [--batch-size 16] [--data-root DIR] [--json]

For every n it reports the run's samples, the inference time (config.json's session,
from rank 0 opening the run to the last batch scored; one-second resolution, so use
runs of a minute or more), the launch-to-exit wall time (model loading included),
samples/s over the inference time, and the scaling efficiency: samples/s at n divided
by n x samples/s at 1. On the `*-binary` tasks a sample is one image, so samples/s is
images/s. The figures are only meaningful with one GPU per process; on a CPU-only
machine the script runs (gloo) but measures the CPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from tabulate import tabulate


def _default_procs() -> list[int]:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 1
    return sorted({1, *[2**k for k in range(1, gpus.bit_length()) if 2**k <= gpus], gpus})


def _seconds(session: dict) -> float:
    return (datetime.fromisoformat(session["ended"]) - datetime.fromisoformat(session["started"])).total_seconds()


def measure(n: int, run_args: list[str], out: Path) -> dict:
    torchrun = shutil.which("torchrun") or "torchrun"
    cmd = [torchrun, "--standalone", f"--nproc-per-node={n}", "-m", "adbench", *run_args, "--out", str(out),
           "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{n} process(es) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    config = json.loads((run_dir / "config.json").read_text())
    session = config["sessions"][-1]
    seconds = max(_seconds(session), 1.0)
    return {"processes": n, "samples": session["new_records"], "inference_s": seconds, "wall_s": round(wall, 1),
            "samples_per_s": session["new_records"] / seconds,
            "per_rank": [r["new_records"] for r in session["ranks"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--task", required=True)
    ap.add_argument("-M", dest="model_args", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("-T", dest="task_args", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--data-root")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--procs", help="comma-separated process counts (default: 1, 2, 4, ... up to the GPUs here)")
    ap.add_argument("--json", action="store_true", help="one JSON line per point instead of the table")
    args = ap.parse_args()
    procs = [int(p) for p in args.procs.split(",")] if args.procs else _default_procs()
    run_args = ["run", "--model", args.model, "--task", args.task, "--batch-size", str(args.batch_size)]
    run_args += [a for kv in args.model_args for a in ("-M", kv)] + [a for kv in args.task_args for a in ("-T", kv)]
    if args.data_root:
        run_args += ["--data-root", args.data_root]
    if args.limit:
        run_args += ["--limit", str(args.limit)]
    tmp = Path(tempfile.mkdtemp(prefix="adbench-scale-"))
    rows = []
    try:
        for n in procs:
            row = measure(n, run_args, tmp / f"n{n}")
            base = rows[0]["samples_per_s"] if rows and rows[0]["processes"] == 1 else None
            row["efficiency"] = row["samples_per_s"] / (n * base) if base else (1.0 if n == 1 else None)
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.json:
        print(tabulate([[r["processes"], r["samples"], r["inference_s"], r["wall_s"], f"{r['samples_per_s']:.2f}",
                         "-" if r["efficiency"] is None else f"{r['efficiency']:.2f}", r["per_rank"]] for r in rows],
                       headers=["processes", "samples", "inference s", "wall s", "samples/s", "efficiency",
                                "samples per rank"], tablefmt="github"))


if __name__ == "__main__":
    sys.exit(main())
