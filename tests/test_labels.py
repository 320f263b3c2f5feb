"""Issue 17, item 4: `--label NAME` names a run's row in every table, and an ambiguous `--compare` lists the rows.

Two runs of one model (two seeds, so two run ids) are the issue's two `openai-compatible` runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from adbench import registry
from tests.helpers import cli, write_mini_mmad

registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")
registry.register_model("slow", "tests.helpers:SlowModel", "test model")


@pytest.fixture()
def suite(tmp_path):
    return write_mini_mmad(tmp_path / "data")


def run(capsys, suite: Path, out: Path, *extra: str, model: str = "chance") -> Path:
    rc, stdout, err = cli(capsys, "run", "--model", model, "--task", "mini-binary", "--data-root", str(suite),
                          "--out", str(out), "--no-progress", *extra)
    assert rc == 0, err
    return Path(stdout.strip().splitlines()[-1])


def table(text: str) -> list[dict[str, str]]:
    lines = [x for x in text.splitlines() if x.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in x.strip("|").split("|")))) for x in lines[2:]]


def labels_of(text: str) -> list[str]:
    return [row["Model"] for row in table(text)]


def test_two_unlabelled_runs_of_one_model_make_compare_ambiguous_and_list_the_rows(suite, tmp_path, capsys):
    a = run(capsys, suite, tmp_path / "runs", "-M", "seed=1")
    b = run(capsys, suite, tmp_path / "runs", "-M", "seed=2")
    rc, out, _ = cli(capsys, "leaderboard", str(a), str(b))
    assert rc == 0 and labels_of(out) == [f"chance [{a.name}]", f"chance [{b.name}]"]
    rc, _, err = cli(capsys, "leaderboard", str(a), str(b), "--compare", "chance")
    assert rc == 2
    assert err == (f"adbench: error: --compare 'chance' is ambiguous: it matches 2 rows; name one of: "
                   f"'chance [{a.name}]', 'chance [{b.name}]'\n")
    rc, out, _ = cli(capsys, "leaderboard", str(a), str(b), "--compare", f"chance [{b.name}]")
    assert rc == 0 and "Δ: difference to chance [" + b.name + "]" in out
    rc, _, err = cli(capsys, "leaderboard", str(a), str(b), "--compare", "patchcore")
    assert rc == 2 and "--compare 'patchcore' matches no row; rows: " in err


def test_a_label_names_the_row_everywhere_and_stays_with_the_run(suite, tmp_path, capsys):
    a = run(capsys, suite, tmp_path / "runs", "-M", "seed=1", "--label", "seed one")
    b = run(capsys, suite, tmp_path / "runs", "-M", "seed=2", "--label", "seed two")
    for d, label in ((a, "seed one"), (b, "seed two")):
        assert json.loads((d / "config.json").read_text())["label"] == label
        assert json.loads((d / "results.json").read_text())["label"] == label
    rc, out, _ = cli(capsys, "leaderboard", str(a), str(b), "--compare", "seed two")
    rows = {row["Model"]: row for row in table(out)}
    assert rc == 0 and list(rows) == ["seed one", "seed two"] and rows["seed two"]["Δ Avg."] == "ref"
    res_a, res_b = (json.loads((d / "results.json").read_text()) for d in (a, b))
    diff = 100 * (res_a["metrics"]["average"]["accuracy"] - res_b["metrics"]["average"]["accuracy"])
    assert float(rows["seed one"]["Δ Avg."].split()[0]) == pytest.approx(diff, abs=0.006)
    assert "(p=" in rows["seed one"]["Δ Avg."]  # the same samples: McNemar's test
    # the model's name still finds the rows it names: now two, so ambiguous, listed by label
    rc, _, err = cli(capsys, "leaderboard", str(a), str(b), "--compare", "chance")
    assert rc == 2 and "it matches 2 rows; name one of: 'seed one', 'seed two'" in err
    # the run's summary line, the report and a resumed run (no --label) keep it; `score` too
    again = run(capsys, suite, tmp_path / "runs", "-M", "seed=1")
    assert again == a and json.loads((a / "results.json").read_text())["label"] == "seed one"
    rc, out, _ = cli(capsys, "score", str(a))
    assert rc == 0 and out.startswith("seed one on mini-binary: accuracy ")
    assert json.loads((a / "results.json").read_text())["label"] == "seed one"
    rc, _, _ = cli(capsys, "report", str(a), "--out", str(tmp_path / "a.html"))
    html = (tmp_path / "a.html").read_text()
    assert rc == 0 and "<title>adbench report: seed one on mini-binary" in html
    # another --label renames it
    run(capsys, suite, tmp_path / "runs", "-M", "seed=1", "--label", "first seed")
    rc, out, _ = cli(capsys, "leaderboard", str(a), str(b))
    assert labels_of(out) == ["first seed", "seed two"]


def test_labels_of_several_models_and_a_label_shared_by_two_runs(suite, tmp_path, capsys):
    rc, out, err = cli(capsys, "run", "--model", "chance,slow", "--task", "mini-binary", "-M", "slow:delay=0",
                       "--label", "chance:floor", "--label", "slow:sleepy", "--data-root", str(suite),
                       "--out", str(tmp_path / "runs"), "--no-progress")
    assert rc == 0, err
    assert re.search(r"^\| floor\s+\|", out, re.M) and re.search(r"^\| sleepy\s+\|", out, re.M)
    # one label on two runs of one task: told apart by run id, as unlabelled runs are
    c = run(capsys, suite, tmp_path / "runs", "-M", "seed=5", "--label", "floor")
    f = next((tmp_path / "runs" / "mini-binary" / "chance").glob("*/results.json")).parent
    f = f if f != c else next(d for d in (tmp_path / "runs" / "mini-binary" / "chance").iterdir() if d != c)
    rc, out, _ = cli(capsys, "leaderboard", str(f), str(c))
    assert sorted(labels_of(out)) == sorted([f"floor [{f.name}]", f"floor [{c.name}]"])
    rc, _, err = cli(capsys, "run", "--model", "chance", "--task", "mini-binary", "--label", " ",
                     "--data-root", str(suite), "--out", str(tmp_path / "runs"))
    assert rc == 2 and err == "adbench: error: --label must name the run: it is empty\n"
