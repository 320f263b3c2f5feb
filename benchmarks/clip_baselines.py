"""Throughput of the CLIP baselines at their full published sizes, and CPU/GPU agreement.

Random weights (no CLIP weights are needed to time the computation): WinCLIP zero-shot
and WinCLIP+ 1-shot on ViT-B-16-plus-240, AnomalyCLIP on ViT-L-14-336-quickgelu with a
random prompt checkpoint of the release's shapes. Each is run through `adbench.runner`
on the whole demo-binary task (98 images + 42 calibration images):

    python benchmarks/clip_baselines.py --device cuda [--check-cpu 4]

Reported per configuration: the whole run (model build, prompt encoding, every image,
scoring), and the steady rate of `predict` over the task's queries once the model is
built and its text/reference caches are warm. `--check-cpu N` also scores the first N
queries on the CPU and reports the largest score difference. `--clip-model` replaces
the architecture (a smoke test with a small config). One JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from adbench import registry
from adbench.data.demo import ensure_demo
from adbench.runner import RunSpec, run

CONFIGS = {
    "winclip-zero-shot": ("winclip", {"pretrained": "random"}),
    "winclip-1-shot": ("winclip", {"pretrained": "random", "shots": 1}),
    "anomalyclip": ("anomalyclip", {"pretrained": "random"}),
}


def _anomalyclip_checkpoint(tmp: Path, arch: str) -> str:
    from adbench.models.baselines.anomalyclip import random_prompt_state
    from adbench.models.baselines.clip_common import build_clip

    clip, tok, _ = build_clip(arch, weights=None, pretrained="random", seed=0,
                              device=torch.device("cpu"))
    path = tmp / "anomalyclip-random.pth"
    torch.save({"prompt_learner": random_prompt_state(clip, tok)}, path)
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--check-cpu", type=int, default=0)
    ap.add_argument("--clip-model", default=None, help="open_clip name or config .json for every config")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="adbench-clip-bench-"))
    data = tmp / "data"
    ensure_demo(data)
    checkpoint = None
    for name in args.configs.split(","):
        model_name, margs = CONFIGS[name]
        margs = {**margs, "device": args.device, "batch_size": args.batch_size}
        if args.clip_model:
            margs["model"] = args.clip_model
        if model_name == "anomalyclip":
            checkpoint = checkpoint or _anomalyclip_checkpoint(tmp, args.clip_model or "ViT-L-14-336-quickgelu")
            margs["prompt_checkpoint"] = checkpoint
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        outcome = run(RunSpec(model=model_name, task="demo-binary", data_root=data, out=tmp / name,
                              model_args=margs, batch_size=args.batch_size, progress=False))
        total_s = time.perf_counter() - t0
        counts = outcome.results["counts"]
        n = counts["n"] + counts.get("n_calibration", 0)
        task = registry.make_task("demo-binary")
        queries = [task.render(s) for s in task.samples(data)]
        t0 = time.perf_counter()
        model = registry.make_model(model_name, **margs)
        build_s = time.perf_counter() - t0
        batches = [queries[i : i + args.batch_size] for i in range(0, len(queries), args.batch_size)]
        for b in batches:  # warm: prompt prototypes of every category, reference features
            model.predict(b)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in batches:
            model.predict(b)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        steady_s = time.perf_counter() - t0
        row = {
            "config": name,
            "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "images": n,
            "failed": counts["n_failed"],
            "build_s": round(build_s, 2),
            "whole_run_s": round(total_s, 2),
            "steady_images_per_s": round(len(queries) / steady_s, 2),
            "auroc_random_weights": outcome.results["metrics"]["average"].get("auroc"),
        }
        if args.device.startswith("cuda"):
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        if args.check_cpu:
            few = queries[: args.check_cpu]
            gpu = model.predict(few)
            cpu = registry.make_model(model_name, **{**margs, "device": "cpu"}).predict(few)
            row["max_abs_score_diff_cpu_vs_device"] = max(abs(a.score - b.score) for a, b in zip(gpu, cpu))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
