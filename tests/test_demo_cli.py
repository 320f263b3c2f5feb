"""`adbench demo`: the quickstart's main job, end to end on the generated demo suite."""

import json
from pathlib import Path

from adbench.cli import DEMO_TRAIN_FOLDER, main
from tests.training_fixtures import copy_training, tiny_training


def test_adbench_demo_prints_leaderboard_with_patchcore_above_chance(tmp_path, capsys):
    # the tiny AD-FM model trained once per session stands in for the demo's own training
    # (`adbench demo` skips training when a finished adapter is in <out>/adfm-tiny)
    copy_training(tmp_path / "runs" / DEMO_TRAIN_FOLDER, with_checkpoints=False)
    assert main(["demo", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "| Model" in out and "chance" in out and "patchcore (calib.)" in out and "patchcore*" in out
    assert "| adfm (tiny demo model)" in out and "not AD-FM's accuracy" in out
    assert "using the trained adapter" in captured.err
    run_dirs = [Path(line) for line in out.splitlines() if line.startswith(str(tmp_path))]
    results = {d.parent.name: json.loads((d / "results.json").read_text()) for d in run_dirs}
    chance = results["chance"]["metrics"]["average"]["accuracy"]
    patch = results["patchcore"]["metrics"]["average"]["accuracy"]
    assert 0.35 <= chance <= 0.65
    assert patch >= chance + 0.15
    assert results["patchcore"]["metrics"]["average"]["auroc"] >= 0.8
    assert results["patchcore"]["counts"]["n_failed"] == 0
    assert f"{100 * patch:.2f}" in out
    # the adfm row: the trained adapter scored on the same samples as the other rows
    adfm = results["adfm"]
    assert adfm["counts"]["n"] == results["chance"]["counts"]["n"] and adfm["counts"]["n_failed"] == 0
    config = json.loads((run_dirs[-1] / "config.json").read_text())
    assert DEMO_TRAIN_FOLDER in json.dumps(config) and tiny_training().metadata["recipe"]["name"] == "tiny"
    assert f"{100 * adfm['metrics']['average']['accuracy']:.2f}" in out
