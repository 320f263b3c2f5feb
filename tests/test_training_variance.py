"""`adbench variance` samples as the release's rollouts do, even from a checkpoint whose generation config is greedy.

Qwen2.5-VL-7B-Instruct's generation_config.json has top_k 1 and repetition_penalty 1.05:
an adapter that inherits them samples the greedy reply n times. The tiny model here gets
the same two settings, and the real CLI runs on the CPU.
"""

from __future__ import annotations

import json
import shutil

import pytest

from adbench.training.variance import REWARDS, ROLLOUT_SAMPLING
from tests.vlm_fixtures import tiny_assets

N = 4


@pytest.fixture(scope="module")
def greedy_checkpoint(tmp_path_factory):
    """The session's tiny Qwen2.5-VL, copied, with the real checkpoint's top_k 1 and repetition penalty."""
    base = tmp_path_factory.mktemp("greedy") / "base"
    shutil.copytree(tiny_assets().base, base)
    path = base / "generation_config.json"
    gen = json.loads(path.read_text(encoding="utf-8"))
    gen.update(top_k=1, top_p=0.001, temperature=0.1, repetition_penalty=1.05)
    path.write_text(json.dumps(gen), encoding="utf-8")
    return base


def _variance(base, capsys, *extra: str) -> dict:
    from adbench.cli import main

    argv = ["variance", "--model", "adfm", "-M", f"base={base}", "-M", "max_new_tokens=12", "-M", "min_pixels=3136",
            "-M", "max_pixels=12544", "--task", "demo-binary", "--data-root", str(tiny_assets().data_root),
            "--limit", "2", "-n", str(N), "--json", *extra]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_variance_samples_despite_a_greedy_generation_config(greedy_checkpoint, capsys):
    report = _variance(greedy_checkpoint, capsys)
    # the release's rollout settings, not the checkpoint's top_k 1 / repetition_penalty 1.05
    assert report["sampling"] == {"do_sample": True, **ROLLOUT_SAMPLING, "seeds": list(range(N))}
    assert report["n_images"] == 2
    for img in report["images"]:
        responses = img["responses"]
        assert len(responses) == N and [r["seed"] for r in responses] == list(range(N))
        assert all(isinstance(r["text"], str) and r["error"] is None for r in responses)
        for k, r in enumerate(responses):  # each response's rewards, consistent with the per-reward lists
            assert set(r["rewards"]) == set(REWARDS)
            assert all(r["rewards"][name] == img["rewards"][name][k] for name in REWARDS)
        assert len({r["text"] for r in responses}) > 1, responses  # sampled: the replies differ


def test_minus_m_still_wins(greedy_checkpoint, capsys):
    """-M top_k=1 makes sampling greedy again: every reply the same (so the default above is what made them differ)."""
    report = _variance(greedy_checkpoint, capsys, "-M", "top_k=1")
    assert report["sampling"]["top_k"] == 1 and report["sampling"]["repetition_penalty"] == 1.0
    for img in report["images"]:
        assert len({r["text"] for r in img["responses"]}) == 1
