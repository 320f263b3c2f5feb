"""Every figure any command prints comes from the one results engine, and they agree to the last digit.

Real runs (failed requests, unparsable replies, a text model that also gives scores, a
score-based model with calibration images, four datasets each) are scored by `adbench run`;
then the run summary, `adbench score`, every layout under both metrics, `--ci` point
estimates, `--compare` differences and McNemar p-values, and the HTML report's summary are
checked against results.json: floats for equality, printed cells for identical text.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from adbench import registry
from adbench.cli import main
from adbench.metrics import mcnemar
from adbench.results import record_correctness
from adbench.results.layouts import LAYOUT_NAMES, OBJECT_ANALYSIS_TYPES
from adbench.results.runs import Run
from adbench.results.tables import build_table
from adbench.results.writer import format_percent
from adbench.schema import OBJECT_ANALYSIS, ParseStatus, Query, Response
from tests.helpers import SlowModel, hash_index, write_mini_mmad
from tests.test_tables import MeanScorer, _add_object_questions

AD = "Anomaly Detection"
MMAD_DS = ("DS-MVTec", "VisA", "MVTec-LOCO", "GoodsAD")
CROSS_DS = ("VisA", "MPDD", "DTD-Synthetic", "DAGM")


def _brightness(path: str) -> float:
    return float(np.asarray(Image.open(path).convert("L")).mean() / 255)


def _talk(seed: int, q: Query) -> Response:
    """Some requests fail, some replies are unparsable; every answer carries a score."""
    k = hash_index(f"{seed}:{q.id}", 9)
    if k == 0:
        return Response.failure("HTTP 500: boom")
    if k == 1:  # strict: unparsed (wrong); MMAD's rule: difflib's closest option
        return Response(text="Nope.", parse_status=ParseStatus.UNPARSED, score=_brightness(q.image))
    letter = sorted(q.options)[hash_index(f"{seed}/{q.id}", len(q.options))]
    return Response(text=f"The answer is {letter}.", answer=letter, parse_status=ParseStatus.PARSED, score=_brightness(q.image))


class TalkingScorer(SlowModel):
    """A text model that also gives a score (declared output: text)."""

    name = "talking-scorer"

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        return [_talk(self.seed, q) for q in queries]


class Brightness(MeanScorer):
    """The score-based mean-brightness model, with a failed request now and then."""

    name = "brightness"

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        scored = super().predict(queries)
        return [Response.failure("unreadable") if hash_index(q.id, 11) == 0 else r for q, r in zip(queries, scored)]


registry.register_task("mini-all", "tests.helpers:mini_all_task", "test task")
registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")
registry.register_model("talking-scorer", "tests.test_results_agree:TalkingScorer", "test model")
registry.register_model("brightness", "tests.test_results_agree:Brightness", "test model")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("agree")
    mmad = write_mini_mmad(base / "mmad", datasets=MMAD_DS, n_good=3, n_bad=4, seed=5)
    _add_object_questions(mmad)
    cross = write_mini_mmad(base / "cross", datasets=CROSS_DS, n_good=4, n_bad=4, seed=6)
    printed = {}

    def go(name, model, task, root, *extra):
        argv = ["run", "--model", model, "--task", task, "--data-root", str(root), "--out", str(base / "runs"),
                "--no-progress", "--run-id", name, *extra]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):  # `adbench run`'s own summary
            assert main(argv) == 0
        printed[name] = buf.getvalue()

    out = {}
    for name, model, task, root, extra in (("text", "talking-scorer", "mini-all", mmad, ("-M", "delay=0")),
                                           ("text1", "talking-scorer", "mini-all", mmad, ("-M", "delay=0", "-M",
                                                                                         "seed=1")),
                                           ("score", "brightness", "mini-binary", cross, ())):
        go(name, model, task, root, *extra)
        out[name] = base / "runs" / task / model / name
    return out, printed


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def _summary_accuracy(text: str) -> str:
    m = re.search(r": accuracy (\S+?)%? \(n=", text)
    assert m, text
    return m.group(1)


def _md_rows(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|") and not ln.startswith("|:")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return [dict(zip(cells[0], r)) for r in cells[1:]]


def _expected(layout: str, res: dict, column: str, metric: str, rule: str | None) -> float | None | str:
    """The results.json figure a layout's column shows (None: none; "n/a": results.json has no such figure)."""
    acc = "accuracy" if metric == "strict" else "accuracy_mmad"
    qkey = "qtypes" if metric == "strict" else "qtypes_mmad"
    m = res["metrics"]
    if rule is not None:  # a score rule: results.json keeps its per-dataset figures and their average
        by_ds = res["rules"][rule][acc]
        if layout in ("datasets", "table2"):
            ds = {"DTD": "DTD-Synthetic"}.get(column, column)
            return by_ds["average"] if column == "Avg." else by_ds.get(ds)
        return "n/a"
    if column == "Avg.":
        return m["average"][acc] if layout == "datasets" else "n/a"
    if layout == "datasets":
        return m[column][acc]
    if layout in ("table1", "table4"):
        ds = {"MVTec": "DS-MVTec"}.get(column, column)
        return m[ds][qkey][AD][acc]
    if layout == "categories":
        ds, cat = column.split("/")
        return m[ds]["categories"][cat][acc]
    if column == "Object Analysis" and metric == "strict":
        return "n/a"  # strict types are not pooled in results.json
    name = column if metric == "strict" or column not in OBJECT_ANALYSIS_TYPES else OBJECT_ANALYSIS
    return (m["average"][qkey].get(name) or {acc: None})[acc]  # a type the run lacks: no figure


@pytest.mark.parametrize("metric", ["strict", "mmad"])
def test_every_layout_ci_point_and_compare_agree_with_results_json(runs, metric):
    dirs, _ = runs
    checked = 0
    for layout in LAYOUT_NAMES:
        for group in ([dirs["text"], dirs["text1"]], [dirs["score"]]):
            if layout in ("table1", "table3", "table4", "mmad") and group == [dirs["score"]]:
                continue  # the cross-dataset run has no column there
            if layout == "table2" and group != [dirs["score"]]:
                continue
            table = build_table(layout, group, metric=metric)
            ci = build_table(layout, group, metric=metric, ci=True, n_resamples=30)
            for row, ci_row in zip(table.rows, ci.rows):
                res = row.run.results
                assert ci_row.figures == row.figures, (layout, row.label)  # --ci's point: the same number
                for c, v in row.figures.items():
                    want = _expected(layout, res, c, metric, row.run.rule)
                    if want == "n/a":
                        continue
                    assert v == (None if want is None else 100 * want), (layout, metric, row.label, c)
                    assert ci_row.cells[c].split(" [")[0] == row.cells[c] == format_percent(want)
                    checked += 1
            if len(group) == 2:  # --compare: differences of the printed figures, McNemar on the engine's verdicts
                a, b = table.rows
                cmp = build_table(layout, group, metric=metric, compare=b.label)
                row = next(r for r in cmp.rows if r.label == a.label)
                for c in table.layout.column_names:
                    if a.figures[c] is None or b.figures[c] is None:
                        continue
                    assert row.cells[f"Δ {c}"].split(" (p=")[0] == f"{a.figures[c] - b.figures[c]:+.2f}"
                if layout == "datasets":
                    va, vb = (record_correctness(r.run.results, r.run.run.records(), metric=metric) for r in (a, b))
                    for ds in MMAD_DS:
                        ids = sorted(i for i in va if i.startswith(f"{ds}/") and va[i] is not None
                                     and vb[i] is not None)
                        if {i for i in va if i.startswith(f"{ds}/") and va[i] is not None} != \
                                {i for i in vb if i.startswith(f"{ds}/") and vb[i] is not None}:
                            assert "(p=" not in row.cells[f"Δ {ds}"]
                            continue
                        p = mcnemar([va[i] for i in ids], [vb[i] for i in ids]).p_value
                        assert row.cells[f"Δ {ds}"].endswith(f"(p={p:.3g})"), (metric, ds)
    assert checked > 100


def test_run_summary_score_plain_leaderboard_and_report_agree(runs, capsys, tmp_path):
    dirs, printed = runs
    for name in ("text", "score"):
        d = dirs[name]
        res = _results(d)
        avg = format_percent(res["metrics"]["average"]["accuracy"])
        capsys.readouterr()
        assert main(["score", str(d)]) == 0  # rescoring reproduces the run's own results.json
        score_out = capsys.readouterr().out
        assert _results(d)["metrics"] == res["metrics"] and _results(d)["cells"] == res["cells"]
        assert _summary_accuracy(score_out) == avg
        assert main(["leaderboard", str(d)]) == 0
        rows = _md_rows(capsys.readouterr().out)
        headline = rows[0] if name == "text" else next(r for r in rows if r["Model"].rstrip("§¶").endswith("(calib.)"))
        assert headline["Avg."] == avg == _summary_accuracy(printed[name])  # `adbench run` printed it so too
        for ds in res["metrics"]:
            if ds != "average":
                assert headline[ds] == format_percent(res["metrics"][ds]["accuracy"])
        # the HTML report's summary: the same figures, printed the same way
        assert main(["report", str(d), "--out", str(tmp_path / f"{name}.html")]) == 0
        page = (tmp_path / f"{name}.html").read_text(encoding="utf-8")
        summary = page.split('<table class="summary" id="summary">')[1].split("</table>")[0]
        head = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", summary)]
        body = [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr)]
                for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", summary.split("<tbody>")[1])]
        for cells in body:
            m = res["metrics"][cells[0]]
            got = dict(zip(head, cells))
            assert got["accuracy"] == format_percent(m["accuracy"])
            assert got["accuracy (MMAD's rule)"] == format_percent(m["accuracy_mmad"])
            for q, v in m.get("qtypes", {}).items():
                assert got[q] == format_percent(v["accuracy"])
            assert got["AUROC"] == format_percent(m["auroc"])  # the text model gives scores: AUROC too
        assert f"accuracy {avg}%" in score_out


def test_cells_from_the_records_are_the_stored_cells(runs):
    dirs, _ = runs
    for name in ("text", "score"):
        run = Run(dirs[name], _results(dirs[name]))
        for rule in (None,) if name == "text" else ("youden", "fixed", "calibrated"):
            assert np.array_equal(run.samples(rule).cells.counts, run.cells(rule).counts)
            assert run.samples(rule).cells.keys == run.cells(rule).keys
        assert run.stale() is None


def test_model_kind_comes_from_config_and_a_text_model_with_scores_gets_auroc(runs):
    dirs, _ = runs
    text, score = _results(dirs["text"]), _results(dirs["score"])
    assert text["scored_by"]["model_output"] == "text" and text["scored_by"]["model_output_from"] == "config.json"
    assert score["scored_by"]["model_output"] == "score" and "rules" in score and "rules" not in text
    assert {"adbench", "git", "samples_hash"} <= set(text["scored_by"])
    records = [json.loads(x) for x in (dirs["text"] / "samples.jsonl").read_text().splitlines()]
    for ds in MMAD_DS:
        rs = [r for r in records if r["dataset"] == ds and r["error"] is None]
        want = roc_auc_score([r["label"] for r in rs], [r["score"] for r in rs])
        assert text["metrics"][ds]["auroc"] == pytest.approx(want)
    # judged on its answers, not thresholded: failures and unparsed replies count as wrong
    assert text["counts"]["n_failed"] > 0 and text["counts"]["n_unparsed"] > 0


def test_an_old_run_without_model_output_is_judged_by_its_records(runs, tmp_path, capsys):
    import shutil

    d = tmp_path / "old"
    shutil.copytree(runs[0]["score"], d)
    config = json.loads((d / "config.json").read_text())
    config.pop("model_output")
    (d / "config.json").write_text(json.dumps(config))
    assert main(["score", str(d)]) == 0
    res = _results(d)
    assert res["scored_by"]["model_output_from"] == "records" and res["scored_by"]["model_output"] == "score"
    assert res["metrics"] == _results(runs[0]["score"])["metrics"]


def test_edited_samples_are_said_and_intervals_follow_the_samples(runs, tmp_path):
    import shutil

    d = tmp_path / "edited"
    shutil.copytree(runs[0]["text"], d)
    lines = (d / "samples.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["correct"] = not rec["correct"]
    lines[0] = json.dumps(rec)
    (d / "samples.jsonl").write_text("\n".join(lines) + "\n")
    table = build_table("datasets", [d], ci=True, n_resamples=20)
    assert any("run `adbench score" in n for n in table.rows[0].notes)
    assert main(["score", str(d)]) == 0
    again = build_table("datasets", [d], ci=True, n_resamples=20)
    assert not any("run `adbench score" in n for n in again.rows[0].notes)
    assert again.rows[0].figures == table.rows[0].figures  # the figures were already the samples'


def test_a_results_json_without_cells_is_evaluated_from_its_records(runs, tmp_path):
    import shutil

    for name in ("text", "score"):
        d = tmp_path / name
        shutil.copytree(runs[0][name], d)
        res = _results(d)
        for key in ("cells", "scored_by"):  # what an adbench before the results engine wrote
            res.pop(key)
        (d / "results.json").write_text(json.dumps(res))
        for layout in ("datasets", "table2" if name == "score" else "table3"):
            for metric in ("strict", "mmad"):
                old = build_table(layout, [d], metric=metric)
                new = build_table(layout, [runs[0][name]], metric=metric)
                assert [r.figures for r in old.rows] == [r.figures for r in new.rows]


@pytest.mark.parametrize("layout", ["datasets", "table2"])
def test_one_writer_prints_the_same_notes_in_markdown_and_latex(runs, layout):
    from adbench.results.writer import ORACLE_NOTE, render_table

    table = build_table(layout, [runs[0]["score"]], ci=True, n_resamples=20, compare="brightness (calib.)")
    for compact in (True, False):
        md = render_table(table, "markdown", compact=compact)
        tex = render_table(table, "latex", compact=compact)
        assert md.split("\n\n", 1)[1].splitlines() == [ln[2:] for ln in tex.splitlines() if ln.startswith("% ")]
        assert ORACLE_NOTE in md and "brightness*\\S{}" in tex and "\\toprule" in tex
