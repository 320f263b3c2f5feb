"""`adbench demo`: the quickstart's main job, end to end on the generated demo suite."""

import json
from pathlib import Path

from adbench.cli import main


def test_adbench_demo_prints_leaderboard_with_patchcore_above_chance(tmp_path, capsys):
    assert main(["demo", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| Model" in out and "chance" in out and "patchcore (calib.)" in out and "patchcore*" in out
    run_dirs = [Path(line) for line in out.splitlines() if line.startswith(str(tmp_path))]
    results = {d.parent.name: json.loads((d / "results.json").read_text()) for d in run_dirs}
    chance = results["chance"]["metrics"]["average"]["accuracy"]
    patch = results["patchcore"]["metrics"]["average"]["accuracy"]
    assert 0.35 <= chance <= 0.65
    assert patch >= chance + 0.15
    assert results["patchcore"]["metrics"]["average"]["auroc"] >= 0.8
    assert results["patchcore"]["counts"]["n_failed"] == 0
    assert f"{100 * patch:.2f}" in out
