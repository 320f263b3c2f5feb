"""The GPU benchmarks in their CPU dry-run mode (SIZE=tiny): they run, measure and compare.

`gpu_adfm.py` (binary mode, with its correctness check and the anchor) on its own, and
`gpu_session.sh`, the one call a GPU session makes: `gpu_grpo.py` and `gpu_adfm.py`'s
multitask mode (shared vs unshared prefixes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.vlm_fixtures import tiny_assets

ROOT = Path(__file__).resolve().parent.parent


def _anchor_present() -> bool:
    return any((d / "shared" / "bench" / "hf_generate_anchor.py").is_file() for d in (ROOT, *ROOT.parents))


def test_gpu_benchmark_dry_run(tmp_path):
    tok_dirs = [p.parent for p in tiny_assets().tokenizer_cache.glob("*/tokenizer.json")]
    assert tok_dirs
    env = dict(os.environ, SIZE="tiny", BATCHES="2", NEW_TOKENS="4", ROUNDS="1", REFS="1",
               MODES="dynamic,fast+prefetch", OUT=str(tmp_path), TOKENIZER_DIR=str(tok_dirs[0]))
    proc = subprocess.run([sys.executable, "benchmarks/gpu_adfm.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_adfm.json").read_text())
    assert report["device"] == "cpu" and report["size"] == "tiny"
    check = report["check"]  # the fast engine repeats generate's greedy replies (padding included)
    assert check["n"] == 8
    for name in ("greedy", "min_new_and_penalty"):
        assert check[name]["identical"] == 8 and check[name]["distinct_replies"] > 1
        assert len(check[name]["prompt_lengths"]) == 2  # batches mixed two prompt lengths (left padding)
    # three questions about each of three images: batches of 6 (2 images) and 3 (1), each image prefilled once
    shared = check["shared_prefix"]
    assert shared["n"] == shared["identical"] == 9 and shared["distinct_replies"] > 1 and shared["groups"] == [2, 1]
    assert [r["mode"] for r in report["rows"]] == ["dynamic", "fast+prefetch"]
    for row in report["rows"]:
        assert row["failed"] == 0 and row["n"] == 2
        assert row["images_s"] > 0 and row["tok_s"] > 0
        # both sides generate exactly NEW_TOKENS per sequence: tokens/s = images/s * 4
        assert abs(row["tok_s"] - 4 * row["images_s"]) <= 0.01 * row["tok_s"] + 0.2
        assert row["prompt_tokens"] > 200  # the AD-FM prompt with a reference and a query image
    fast = report["rows"][1]  # the engine's phases of the one timed batch, and the host time around them
    assert [b["batch"] for b in fast["batches"]] == [2] and fast["batches"][0]["steps"] == 4
    engine_s = (fast["batches"][0]["prefill_ms"] + fast["batches"][0]["decode_ms"]) / 1000
    assert 0 < engine_s < fast["s"] and abs(fast["outside_engine_s"] - (fast["s"] - engine_s)) < 0.002
    if _anchor_present():
        assert report["anchor"]["status"] == "ok"
        assert report["anchor"]["rows"][0]["bs"] == 2 and report["anchor"]["rows"][0]["new_tokens"] == 4
        for row in report["rows"]:
            assert row["ratio"] == round(row["images_s"] / row["anchor_seq_s"], 3)
    else:
        assert "not found" in report["anchor"]["status"]


def test_gpu_session_dry_run(tmp_path):
    """benchmarks/gpu_session.sh with SIZE=tiny: the GRPO step per rollout path and the multitask questions/s."""
    env = dict(os.environ, SIZE="tiny", OUT=str(tmp_path), CHECK="0", ROUNDS="1")
    env.pop("TOKENIZER_DIR", None)
    proc = subprocess.run(["bash", "benchmarks/gpu_session.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gpu_grpo.py: exit 0" in proc.stdout and "gpu_adfm.py TASK=multitask: exit 0" in proc.stdout, proc.stdout

    grpo = json.loads((tmp_path / "gpu_grpo.json").read_text())
    assert grpo["device"] == "cpu" and grpo["recipe"] == "release-multidomain" and grpo["images_per_prompt"] == 2
    rows = {r["path"]: r for r in grpo["rows"]}
    assert list(rows) == ["generate", "static", "paged", "vllm"]  # every path reported, measured or skipped
    for path, cache in (("generate", None), ("static", "static")):
        row = rows[path]
        assert row["status"] == "ok" and row["cache_implementation"] == cache, row
        # a random model never ends early: 6 completions x 8 tokens per step
        assert row["completions_per_step"] == 6 and row["completion_tokens_per_step"] == 48
        for key in ("s_per_step", "generate_s", "train_s", "rollout_tok_s", "peak_gib"):
            assert row[key] > 0, (path, key, row[key])
        assert row["scoring_s"] >= 0 and 0 < row["generate_share"] < 1
        timed = [s for s in row["steps"] if s["timed"]]
        assert [s["step"] for s in row["steps"]] == [1, 2] and len(timed) == 1
        step = timed[0]  # the parts add up to the step
        parts = step["generate_s"] + step["scoring_s"] + step["train_s"] + step["other_s"]
        assert abs(parts - step["s"]) < 0.01 and step["completion_tokens"] == 48
        assert row["rollout_tok_s"] == round(48 / step["generate_s"], 1)
    assert rows["generate"]["rollout_vs_generate"] == 1.0
    assert rows["static"]["rollout_vs_generate"] == round(rows["static"]["rollout_tok_s"]
                                                          / rows["generate"]["rollout_tok_s"], 3)
    from trl import GRPOConfig

    if "use_transformers_continuous_batching" in GRPOConfig.__dataclass_fields__:
        # TRL's GRPOTrainer refuses it for a multimodal model (since the rename from use_transformers_paged)
        assert rows["paged"]["status"] == "skipped" and "multimodal" in rows["paged"]["reason"]
    else:  # earlier TRL (1.0: use_transformers_paged) tries it; transformers' continuous batching then fails
        assert rows["paged"]["status"] == "failed" and rows["paged"]["error"]
    if importlib.util.find_spec("vllm") is None:
        assert rows["vllm"]["status"] == "skipped" and "import vllm failed" in rows["vllm"]["reason"]

    multitask = json.loads((tmp_path / "gpu_adfm.json").read_text())
    assert multitask["task"] == "multitask" and multitask["questions_per_image"] == 5 and multitask["refs"] == 1
    shared, unshared = multitask["rows"]
    assert shared["mode"] == "fast+prefetch+eager" and unshared["mode"] == "fast+prefetch+eager+noshare"
    for row in (shared, unshared):
        assert row["failed"] == 0 and row["n"] == row["bs"] == 10 and row["questions_s"] > 0
        assert abs(row["tok_s"] - 8 * row["questions_s"]) <= 0.01 * row["tok_s"] + 0.2  # 8 tokens per question
    # ten questions about two image pairs: two prefix groups, each prefilled once; none without sharing
    assert [(b["groups"], b["batch"]) for b in shared["batches"]] == [(2, 10)]
    assert shared["batches"][0]["prefix_len"] > 32  # both images' tokens (2 x 16) and the opening
    assert all("groups" not in b for b in unshared["batches"])
    assert shared["shared_vs_unshared"] == round(shared["questions_s"] / unshared["questions_s"], 3)
    if _anchor_present():  # the plain transformers anchor ran in the same call, at the same batch size
        assert multitask["anchor"]["status"] == "ok" and multitask["anchor"]["rows"][0]["bs"] == 10
        assert shared["ratio"] == round(shared["questions_s"] / shared["anchor_seq_s"], 3)
