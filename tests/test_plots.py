"""Pictures (`adbench plot`, the report's figures): the numbers behind them by hand, and the files they make."""

import json
import re
import struct
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from adbench import registry
from adbench.cli import main
from adbench.model import Model, OutputKind
from adbench.results.figures import NO_ANSWER, category_table, confusions, score_curves
from adbench.results.runs import Run, load_results
from adbench.runner import RunSpec, run
from adbench.schema import ParseStatus, Response
from tests.helpers import mini_all_task, write_mini_mmad

registry.register_model("path-scorer", "tests.helpers:PathScorer", "test score model")
registry.register_model("always-a", "tests.test_plots:AlwaysA", "test text model")
registry.register_task("plots-mini-all", "tests.helpers:mini_all_task", "mini suite, all questions")
registry.register_task("plots-mini-binary", "tests.helpers:mini_binary_task", "mini suite, yes/no")
assert mini_all_task


class AlwaysA(Model):
    """Answers A; image 000 of the normal ones fails, image 001 of the anomalous ones is unparsable."""

    name = "always-a"
    output = OutputKind.GENERATIVE

    def predict(self, queries):
        out = []
        for q in queries:
            if "/good/000" in q.image:
                out.append(Response.failure("HTTP 500"))
            elif "/crack/001" in q.image:
                out.append(Response(text="not sure", parse_status=ParseStatus.UNPARSED))
            else:
                out.append(Response(text="A", answer="A", parse_status=ParseStatus.PARSED))
        return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("plots")
    data = write_mini_mmad(base / "data", n_good=4, n_bad=4)

    def go(model, task):
        return run(RunSpec(model=model, task=task, data_root=data, out=base / "runs", progress=False,
                           max_failed=1.0)).run_dir

    return {"scores": go("path-scorer", "plots-mini-binary"), "text": go("always-a", "plots-mini-all")}


def test_score_curves_mark_each_rule_where_its_decisions_fall(runs):
    r = Run(runs["scores"], load_results(runs["scores"]))
    curves = score_curves(r.judgement(), r.results)
    assert [d.dataset for d in curves] == ["DS-A", "DS-B"]
    for d in curves:
        # per category normal 0, .1, .2, .3 and anomalous .45, .55, .65, .75: separable, AUROC 1
        assert sorted(d.normal) == pytest.approx(sorted([0, 0.1, 0.2, 0.3] * 2))
        assert sorted(d.anomalous) == pytest.approx(sorted([0.45, 0.55, 0.65, 0.75] * 2))
        assert d.auroc == 1.0 and d.fpr[0] == 0 and d.tpr[-1] == 1
        rules = {m.rule: m for m in d.rules}
        assert [m.label for m in d.rules] == ["youden*", "fixed (0.5)", "calibrated"]
        # youden: the largest threshold with J = 1 is the lowest anomalous score; catches every anomaly
        assert rules["youden"].thresholds == pytest.approx([0.45])
        assert (rules["youden"].fpr, rules["youden"].tpr) == (0.0, 1.0)
        # calibrated: each category's calibration images all score 0.5 -> "> 0.5" misses the 0.45s
        assert rules["calibrated"].thresholds == [0.5]
        assert (rules["calibrated"].fpr, rules["calibrated"].tpr) == (0.0, 0.75)
        # fixed: ">= 0.5", the same misses
        assert rules["fixed"].thresholds == [0.5] and (rules["fixed"].fpr, rules["fixed"].tpr) == (0.0, 0.75)


def test_confusion_matrices_per_question_type(runs):
    r = Run(runs["scores"], load_results(runs["scores"]))
    (ad,) = confusions(r.judgement())  # the headline rule (calibrated): 4 of 16 anomalous images missed
    assert ad.qtype == "Anomaly Detection" and ad.predicted == ["normal", "anomalous", NO_ANSWER]
    assert ad.counts.tolist() == [[16, 0, 0], [4, 12, 0]]

    r = Run(runs["text"], load_results(runs["text"]))
    ad, dc = confusions(r.judgement())
    # normal images: 000 failed (no answer), the rest answered A = "yes, a defect"; anomalous: 001 unparsable
    assert ad.counts.tolist() == [[0, 12, 4], [0, 12, 4]]
    assert dc.qtype == "Defect Classification" and dc.true == ["A", "B", "C"]
    assert dc.predicted == ["A", "B", "C", NO_ANSWER]
    assert dc.count("A", "A") == 12 and dc.count("A", NO_ANSWER) == 4 and int(dc.counts.sum()) == 16


def test_category_bars_carry_the_tables_bootstrap_intervals(runs, capsys):
    table = category_table(Run(runs["text"], load_results(runs["text"])), n_resamples=200, seed=3)
    assert main(["leaderboard", "--layout", "categories", str(runs["text"]), "--ci", "--resamples", "200",
                 "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    (row,) = table.rows
    assert set(row.intervals) == {"DS-A/c1", "DS-A/c2", "DS-B/c1", "DS-B/c2", "Avg."}
    for col, (lo, hi) in row.intervals.items():
        assert lo <= row.figures[col] <= hi
        assert f"{row.figures[col]:.2f} [{lo:.2f}, {hi:.2f}]" in printed  # the same numbers the table prints


def _svg(path: Path) -> ElementTree.Element:
    root = ElementTree.fromstring(path.read_text(encoding="utf-8"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.get("width").removesuffix("pt")) > 100 and float(root.get("height").removesuffix("pt")) > 100
    return root


def test_plot_command_writes_svg_and_png(runs, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(runs["scores"]), str(runs["text"]), "--out", str(out), "--resamples", "100"]) == 0
    written = [Path(x) for x in capsys.readouterr().out.split()]
    names = {(p.parent.name.split("_")[0], p.name) for p in written}
    assert names == {("path-scorer", "categories.svg"), ("path-scorer", "confusion.svg"),
                     ("path-scorer", "roc.svg"), ("path-scorer", "scores.svg"),
                     ("always-a", "categories.svg"), ("always-a", "confusion.svg")}
    for p in written:
        assert p.is_file() and p.parent.parent == out
        _svg(p)
    roc = next(p for p in written if p.name == "roc.svg").read_text()
    assert "DS-A (AUROC 100.00)" in roc and "youden*" in roc and "calibrated" in roc and "fixed (0.5)" in roc
    conf = next(p for p in written if p.name == "confusion.svg" and "always-a" in str(p)).read_text()
    assert "Defect Classification" in conf and "no answer" in conf
    # the same command writes the same bytes (no dates, ids salted by name)
    before = {p: p.read_bytes() for p in written}
    assert main(["plot", str(runs["scores"]), str(runs["text"]), "--out", str(out), "--resamples", "100"]) == 0
    capsys.readouterr()
    assert {p: p.read_bytes() for p in written} == before

    assert main(["plot", str(runs["scores"]), "--out", str(out), "--format", "png", "--resamples", "50"]) == 0
    pngs = [Path(x) for x in capsys.readouterr().out.split()]
    assert sorted(p.name for p in pngs) == ["categories.png", "confusion.png", "roc.png", "scores.png"]
    for p in pngs:
        head = p.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", head[16:24])
        assert width > 300 and height > 300


def test_plot_errors_are_one_line(tmp_path, capsys):
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither a run directory (no results.json) nor a training folder" in err
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "samples.jsonl").write_text("")
    assert main(["plot", str(run_dir)]) == 2
    assert "no results.json (run `adbench score" in capsys.readouterr().err


def test_training_history_is_read_from_a_checkpoint(tmp_path, capsys):
    """An interrupted training: the last complete checkpoint's trainer_state.json (as transformers writes it)."""
    from safetensors.numpy import save_file

    ckpts = tmp_path / "train" / "checkpoints"
    history = [{"step": s, "loss": 0.1 * s, "reward": 1.0 + s, "rewards/r_cls/mean": 0.5, "kl": 0.01 * s}
               for s in (1, 2, 3)]
    for step in (2, 3):
        c = ckpts / f"checkpoint-{step}"
        c.mkdir(parents=True)
        save_file({"w": np.zeros(2, np.float32)}, str(c / "adapter_model.safetensors"))
        (c / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history[:step]}))
    (ckpts / "checkpoint-4").mkdir()  # a save a kill cut short: skipped, and left where it is
    assert main(["plot", str(tmp_path / "train"), "--out", str(tmp_path / "o")]) == 0
    (path,) = [Path(x) for x in capsys.readouterr().out.split()]
    assert path == tmp_path / "o" / "training_train" / "training.svg"
    svg = path.read_text()
    assert "from trainer_state.json" in svg and "r_cls" in svg
    assert "KL to the reference model" in svg and "not logged" not in svg
    assert (ckpts / "checkpoint-4").is_dir()
    from adbench.training.logs import training_history

    got, source = training_history(tmp_path / "train")
    assert source == ckpts / "checkpoint-3" / "trainer_state.json" and [h["step"] for h in got] == [1, 2, 3]
    assert re.search(r"training train: per GRPO step", svg)
