"""`accelerate launch` runs GRPO in two processes on the CPU (gloo) and resumes a run across process counts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from adbench.models.presets.adfm import TRAINING_METADATA
from tests.test_distributed import free_port
from tests.training_fixtures import FIRST_STEPS, copy_training, tiny_training

ROOT = Path(__file__).resolve().parent.parent
ACCELERATE = shutil.which("accelerate")


@pytest.mark.slow
@pytest.mark.skipif(ACCELERATE is None and not os.environ.get("CI"), reason="accelerate is not on PATH")
def test_two_process_grpo_resumes_a_run_and_rank_0_alone_writes(tmp_path):
    """The session's one-process run (step 2) continued by two processes: one more GRPO step of 2 x 4 completions."""
    out = copy_training(tmp_path / "tiny")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # --multi_gpu is accelerate's multi-process launcher; without GPUs the processes train on the CPU over gloo
    proc = subprocess.run([ACCELERATE or "accelerate", "launch", "--multi_gpu", "--num_processes", "2",
                           "--main_process_port", str(free_port()), "-m", "adbench.cli", "train", "--recipe", "tiny",
                           "--set", f"grpo.max_steps={FIRST_STEPS + 1}", "--out", str(out), "--data-root",
                           str(tiny_training().data_root), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 reports; rank 1 prints nothing (torch 2.8's gloo backend writes "[Gloo] Rank N is connected
    # to ..." lines on stdout from C++, which no Python setting silences)
    printed = [line for line in proc.stdout.strip().splitlines() if not line.startswith("[Gloo] ")]
    assert printed == [str(out / "adapter")]
    assert proc.stderr.count("resumed from step 2") == 1
    meta = json.loads((out / "adapter" / TRAINING_METADATA).read_text())
    assert meta["written_by"]["rank"] == 0
    assert meta["steps"]["global_step"] == FIRST_STEPS + 1 and meta["steps"]["this_session"] == 1
    assert meta["batch"]["world_size"] == 2
    # the global batch: 4 completions per device x 2 processes x 1 accumulation step = 2 prompts x 4 generations
    assert meta["batch"]["completions_per_optimizer_step"] == 8 and meta["batch"]["prompts_per_optimizer_step"] == 2
    checkpoint = out / "checkpoints" / f"checkpoint-{FIRST_STEPS + 1}"
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert not list(out.rglob(".*.tmp-*"))  # no write left half-done


def test_global_batch_not_divisible_by_the_generations_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    from adbench.cli import main

    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    rc = main(["train", "--recipe", "tiny", "--set", "grpo.per_device_train_batch_size=2", "--out",
               str(tmp_path / "run"), "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "6 completions (grpo.per_device_train_batch_size 2 x 3 training process(es) x 1 steps)" in err
    assert "num_generations=4" in err and "--num_processes" in err and "multiple of 4" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written or loaded
