"""Issue 17, item 3: `adbench.evaluate` and `adbench.leaderboard`, the Python API for notebooks.

A model object (a plain class, no adbench base class) runs through the same run store as
`adbench run`: its run directory, resume and exactly-once; the leaderboard is the results
engine's table as rows of numbers and the text `adbench leaderboard` prints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

import adbench
from adbench import registry
from adbench.cli import main
from adbench.errors import UserError
from adbench.model import AdapterError
from adbench.runner import RunError
from adbench.schema import ANOMALY_DETECTION, ParseStatus, Query, Response
from tests.helpers import write_mini_mmad

registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")


class AlwaysYes:
    """Answers every question with option A ("Yes." on the Anomaly Detection question); counts its calls."""

    output = "text"

    def __init__(self, letter: str = "A", stop_after: int | None = None) -> None:
        self.name = "always-yes"
        self.letter = letter
        self.stop_after = stop_after  # raise KeyboardInterrupt (a notebook's interrupt) after this many queries
        self.asked = 0
        self.closed = False

    def config(self) -> dict:
        return {"letter": self.letter}

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        out = []
        for _ in queries:
            if self.stop_after is not None and self.asked >= self.stop_after:
                raise KeyboardInterrupt
            self.asked += 1
            out.append(Response(text=self.letter, answer=self.letter, parse_status=ParseStatus.PARSED))
        return out

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def suite(tmp_path):
    return write_mini_mmad(tmp_path / "data")


def options(suite: Path, out: Path, **more) -> dict:
    return {"data_root": suite, "out": out, "progress": False, "batch_size": 4, **more}


def ids(run_dir: Path) -> list[str]:
    return [json.loads(x)["id"] for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_evaluate_a_model_object_records_figures_and_resumes_exactly_once(suite, tmp_path):
    model = AlwaysYes()
    out = adbench.evaluate(model=model, task="mini-binary", **options(suite, tmp_path / "runs"))
    assert out.exit_code == 0 and out.n_new == 32 and model.asked == 32
    # "Yes" to every image: every anomalous one right, every normal one wrong -> balanced accuracy 0.5
    assert out.results["model"] == "always-yes" and out.results["counts"]["n"] == 32
    for dataset in ("DS-A", "DS-B"):
        qtype = out.results["metrics"][dataset]["qtypes"][ANOMALY_DETECTION]
        assert qtype["accuracy"] == 0.5 and out.results["metrics"][dataset]["accuracy"] == 0.5
    assert out.run_dir.parent == tmp_path / "runs" / "mini-binary" / "always-yes"
    config = json.loads((out.run_dir / "config.json").read_text())
    assert config["model_config"] == {"letter": "A"} and config["model_object"].endswith("AlwaysYes")
    assert config["model_args"] == {} and config["model_output"] == "text"
    assert not model.closed  # the caller's object: it may run the next task
    # the same call again: the same directory, nothing asked, every sample once
    again = adbench.evaluate(model=AlwaysYes(), task="mini-binary", **options(suite, tmp_path / "runs"))
    assert again.run_dir == out.run_dir and again.n_new == 0
    assert sorted(ids(out.run_dir)) == sorted(set(ids(out.run_dir))) and len(ids(out.run_dir)) == 32
    assert again.results["metrics"] == out.results["metrics"]


def test_an_interrupted_evaluate_continues_where_it_stopped(suite, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        adbench.evaluate(model=AlwaysYes(stop_after=10), task="mini-binary", **options(suite, tmp_path / "runs"))
    (run_dir,) = (tmp_path / "runs" / "mini-binary" / "always-yes").iterdir()
    assert len(ids(run_dir)) == 8  # the two batches of 4 answered before the interrupt
    rest = AlwaysYes()
    resumed = adbench.evaluate(model=rest, task="mini-binary", **options(suite, tmp_path / "runs"))
    assert resumed.run_dir == run_dir and resumed.n_new == 24 and rest.asked == 24
    got = ids(run_dir)
    assert len(got) == len(set(got)) == 32
    straight = adbench.evaluate(model=AlwaysYes(), task="mini-binary", **options(suite, tmp_path / "straight"))
    assert resumed.results["metrics"] == straight.results["metrics"] and resumed.results["complete"] is True


def test_the_run_id_of_a_model_object_is_its_name_and_config(suite, tmp_path):
    a = adbench.evaluate(model=AlwaysYes("A"), task="mini-binary", **options(suite, tmp_path / "runs", limit=8))
    b = adbench.evaluate(model=AlwaysYes("B"), task="mini-binary", **options(suite, tmp_path / "runs", limit=8))
    assert a.run_dir != b.run_dir and a.run_dir.parent == b.run_dir.parent
    assert b.results["metrics"]["average"]["accuracy"] == 0.5  # "No" to everything: the other class right
    # a run id given by hand: another config() under it is refused, not mixed into its records
    adbench.evaluate(model=AlwaysYes("A"), task="mini-binary", **options(suite, tmp_path / "runs", run_id="mine"))
    with pytest.raises(RunError, match="holds a run of always-yes with another config"):
        adbench.evaluate(model=AlwaysYes("B"), task="mini-binary", **options(suite, tmp_path / "runs", run_id="mine"))


def test_evaluate_a_registered_name_is_adbench_run(suite, tmp_path, capsys):
    out = adbench.evaluate(model="chance", task="mini-binary", model_args={"seed": "2"}, task_args={"shots": 0},
                           **options(suite, tmp_path / "runs", limit="12"))
    assert out.exit_code == 0 and out.results["counts"]["n"] == 12
    config = json.loads((out.run_dir / "config.json").read_text())
    assert config["model_args"] == {"seed": 2} and config["task_args"] == {"shots": 0} and config["limit"] == 12
    # the command line finds the same run directory: nothing left to do
    assert main(["run", "--model", "chance", "--task", "mini-binary", "-M", "seed=2", "-T", "shots=0",
                 "--limit", "12", "--batch-size", "4", "--data-root", str(suite), "--out", str(tmp_path / "runs"),
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out.run_dir)
    assert json.loads((out.run_dir / "config.json").read_text())["sessions"][-1]["new_records"] == 0


def test_leaderboard_returns_the_tables_figures_as_data_and_as_text(suite, tmp_path, capsys):
    yes = adbench.evaluate(model=AlwaysYes(), task="mini-binary", **options(suite, tmp_path / "runs"))
    chance = adbench.evaluate(model="chance", task="mini-binary", **options(suite, tmp_path / "runs"))
    board = adbench.leaderboard([yes, chance.run_dir])
    assert board.columns == ["DS-A", "DS-B", "Avg."]
    rows = {r["label"]: r for r in board.rows}
    assert set(rows) == {"always-yes", "chance"}
    assert rows["always-yes"]["DS-A"] == rows["always-yes"]["Avg."] == 50.0
    for name, run in (("always-yes", yes), ("chance", chance)):
        assert rows[name]["Avg."] == pytest.approx(100 * run.results["metrics"]["average"]["accuracy"])
        assert rows[name]["source"] == f"run {run.run_dir.name}"
    # the text is what `adbench leaderboard` prints
    assert main(["leaderboard", str(yes.run_dir), str(chance.run_dir)]) == 0
    assert capsys.readouterr().out == board.text == str(board)
    latex = adbench.leaderboard([yes], layout="datasets", format="latex", compare="always-yes")
    assert "\\begin{tabular}" in latex.text and latex._repr_markdown_() is None
    assert "Δ Avg." in latex.table.extra_columns[-1]


def test_python_mistakes_are_user_errors_naming_the_option(suite, tmp_path):
    with pytest.raises(UserError, match=r"evaluate\(\): unknown key lmit; did you mean limit\?"):
        adbench.evaluate(model="chance", task="mini-binary", lmit=3)
    with pytest.raises(UserError, match=r"evaluate\(batch_size=\): expected an integer, got 'x'"):
        adbench.evaluate(model="chance", task="mini-binary", batch_size="x")
    with pytest.raises(UserError, match=r"model_args\['seed'\]: expected an integer, got 'x'"):
        adbench.evaluate(model="chance", task="mini-binary", model_args={"seed": "x"})
    with pytest.raises(UserError, match="a model object is configured by its own constructor"):
        adbench.evaluate(model=AlwaysYes(), task="mini-binary", model_args={"seed": 1})
    with pytest.raises(AdapterError, match="has no predict"):
        adbench.evaluate(model=object(), task="mini-binary", **options(suite, tmp_path / "runs"))
    with pytest.raises(UserError, match="demo-all is a task group"):
        adbench.evaluate(model="chance", task="demo-all")
    bad = AlwaysYes()
    bad.name = "../escape"
    with pytest.raises(RunError, match="the model's name '../escape' is not a folder name"):
        adbench.evaluate(model=bad, task="mini-binary", **options(suite, tmp_path / "runs"))
    with pytest.raises(UserError, match="give at least one RUN_DIR"):
        adbench.leaderboard([])


def readme_block(heading: str, lang: str) -> str:
    """The first ```lang block under the README heading `heading` (any level)."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = text.index(f" {heading}\n")
    return re.search(rf"^```{lang}\n(.*?)^```", text[start:], re.S | re.M).group(1)


def test_the_readme_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("ADBENCH_DATA", str(tmp_path / "data"))  # the demo suite is generated there
    monkeypatch.chdir(tmp_path)
    code = readme_block("Python API (notebooks)", "python")
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    mine, floor, board = names["mine"], names["floor"], names["board"]
    printed = capsys.readouterr().out
    assert printed.startswith(f"0.5 {Path('runs/demo-binary/says-no') / mine.run_dir.name}\n")
    assert mine.run_dir.parent == Path("runs/demo-binary/says-no") and mine.results["counts"]["n"] == 24
    assert [r["label"] for r in names["rows"]] == ["says-no", "floor"]
    assert names["rows"][0]["Avg."] == 50.0 and board.text in printed
    assert floor.results["label"] == "floor"
    exec(compile(code, "README.md", "exec"), names)  # run again: the same runs, nothing asked again
    assert names["mine"].run_dir == mine.run_dir and names["mine"].n_new == 0 and names["floor"].n_new == 0
