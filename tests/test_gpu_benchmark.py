"""benchmarks/gpu_adfm.py in its CPU dry-run mode (SIZE=tiny): it runs, measures and compares."""

from __future__ import annotations

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
