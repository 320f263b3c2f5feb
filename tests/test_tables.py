"""Leaderboards in the paper's layouts: published rows exactly as published, runs in the
right columns, bootstrap intervals, differences and McNemar's test on real runs."""

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adbench import registry
from adbench.cli import main
from adbench.metrics import mcnemar
from adbench.model import Model, OutputKind
from adbench.runner import RunSpec, run
from adbench.schema import Response
from tests.helpers import write_mini_mmad

ROOT = Path(__file__).resolve().parent.parent
registry.register_task("mini-all", "tests.helpers:mini_all_task", "test task")
registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")
registry.register_model("mean-scorer", "tests.test_tables:MeanScorer", "test model")

# The paper's tables as they appear in its text (tab separators written as " | ").
# Transcribed here independently of adbench/results/published/*.json so a slip in either shows.
TABLE1 = """
 |  | Scale | MVTec | VisA | MVTec-LOCO | GoodsAD | Avg.
Proprietary | GPT-4o-mini [†] | - | - | - | - | - | 64.33
 | GPT-4o [†] | - | - | - | - | - | 68.63
 | GPT-4.1 | - | 78.83 | 80.99 | 69.35 | 57.21 | 71.60
Open-source | LLaVA-NeXT | 34B | 72.44 | 55.91 | 63.28 | 56.06 | 61.92
 | InternVL2 | 76B | 79.42 | 69.78 | 54.02 | 53.20 | 64.11
 | InternVL3 | 8B | 78.53 | 65.02 | 59.77 | 50.20 | 63.38
 | InternVL3 | 38B | 78.12 | 68.75 | 63.86 | 55.49 | 66.56
 | QwenVL2.5 | 7B | 62.03 | 55.50 | 45.90 | 40.73 | 51.04
Fine-tuned | AnomalyR1 [‡] | 3B | - | - | - | - | 60.62
 | OmniAD [‡] | 7B | - | - | - | - | 68.80
 | AD-FM (Ours) | 7B | 90.72 | 79.52 | 65.62 | 56.74 | 73.15
"""
TABLE2 = """
 |  | Scale | VisA | MPDD | DTD | DAGM | Avg.
CLIP-based | WinClip ($\\tau = 0.5$) | - | 43.40 | 72.10 | 25.90 | 86.90 | 57.08
 | WinClip* | - | 77.70 | 41.80 | 90.00 | 88.90 | 75.85
 | AnomalyClip ($\\tau = 0.5$) | - | 56.56 | 56.49 | 81.71 | 22.19 | 54.24
 | AnomalyClip* | - | 82.17 | 68.23 | 88.91 | 95.36 | 83.67
Proprietary | GPT4o-mini | - | 73.98 | 67.90 | 90.56 | 90.80 | 80.81
 | GPT4o | - | 73.77 | 69.43 | 90.80 | 90.17 | 81.04
 | GPT-4.1 | - | 80.99 | 66.81 | 90.18 | 89.93 | 81.98
Open-source | LLaVA-NeXT | 34B | 55.91 | 61.57 | 72.62 | 23.15 | 53.70
 | InternVL2 | 76B | 69.78 | 66.38 | 90.58 | 94.52 | 80.32
 | InternVL3 | 8B | 65.02 | 70.74 | 85.05 | 81.33 | 75.54
 | InternVL3 | 38B | 68.75 | 69.43 | 90.79 | 89.87 | 79.71
 | Qwen2.5-VL | 7B | 55.50 | 68.34 | 85.59 | 94.83 | 76.07
Fine-tuned | AD-FM (Ours) | 7B | 77.43 | 72.71 | 92.64 | 95.51 | 84.57
"""
TABLE3 = """
 |  | Scale | Defect Classification | Defect Localization | Defect Description | Defect Analysis | Object Classification | Object Analysis | Avg.
Proprietary | GPT-4o-mini [†] | - | 48.58 | 38.75 | 63.68 | 80.40 | 88.56 | 79.74 | 66.62
 | GPT-4o [†] | - | 65.80 | 55.62 | 73.21 | 83.41 | 94.98 | 82.80 | 75.97
 | GPT-4.1 | - | 65.93 | 62.64 | 76.18 | 84.23 | 90.95 | 85.57 | 77.58
Open-source | LLaVA-NeXT [‡] | 34B | 48.79 | 52.87 | 71.34 | 80.28 | 81.12 | 77.80 | 68.70
 | InternVL2 [†] | 76B | 54.22 | 56.66 | 66.30 | 80.47 | 86.40 | 82.92 | 71.16
 | InternVL3 | 8B | 46.35 | 46.24 | 66.01 | 78.28 | 79.17 | 84.83 | 66.81
 | InternVL3 | 38B | 58.99 | 59.63 | 73.06 | 83.88 | 91.62 | 88.50 | 75.94
 | Qwen2.5-VL | 7B | 41.07 | 44.87 | 61.43 | 75.99 | 86.54 | 79.58 | 64.91
Fine-tuned | AnomalyR1 [‡] | 3B | 63.56 | 70.14 | 80.47 | 85.28 | 92.48 | 86.15 | 79.68
 | OmniAD [‡] | 7B | 78.80 | 75.50 | 67.20 | 86.40 | 96.00 | 86.40 | 81.72
 | AD-FM (Ours) | 7B | 73.36 | 77.53 | 86.80 | 86.75 | 89.98 | 86.67 | 83.56
"""
TABLE4 = """
Reward r_{acc} | Reasoning | MVTec | VisA | MVTec-LOCO | GoodsAD | Avg.
- | - | 62.03 | 55.50 | 45.90 | 40.73 | 51.04
r_{cls} | one-stage | 84.64 | 73.79 | 60.08 | 53.77 | 68.07
r_{cls} | multi-stage | 86.67 | 75.29 | 61.42 | 55.91 | 69.82
$r_{cls} + r_{random}$ | multi-stage | 88.41 | 75.44 | 60.60 | 56.44 | 70.22
$r_{cls} + r_{loc}$ | multi-stage | 90.72 | 79.52 | 65.62 | 56.74 | 73.15
"""
PAPER_TABLES = {"table1": TABLE1, "table2": TABLE2, "table3": TABLE3, "table4": TABLE4}
PAPER_TEXT = Path(os.environ.get("ADBENCH_PAPER_TEXT", "/work/shared/seed/000_87390652fa084d27.txt"))


def _paper_rows(block):
    """(header cells, rows of cells) of a transcribed table, model names as the PDF prints them."""
    lines = [ln.split(" | ") for ln in block.strip("\n").splitlines()]
    fix = [(r"\s*\[([†‡])\]", r" \1"), (r"\(\$\\tau = 0\.5\$\)", "(τ = 0.5)"), (r"[${}]", "")]
    rows = []
    for cells in lines[1:]:
        out = []
        for c in cells:
            for pat, rep in fix:
                c = re.sub(pat, rep, c)
            out.append(c.strip())
        rows.append(out)
    return [c.strip() for c in lines[0]], rows


def _parse(text, fmt):
    """Rows of cells of a rendered table (header first)."""
    if fmt == "csv":
        return list(csv.reader(io.StringIO(text)))
    if fmt == "markdown":
        lines = [ln for ln in text.splitlines() if ln.startswith("|") and not ln.startswith("|:")]
        return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    lines = [ln for ln in text.splitlines() if ln.endswith(r"\\")]
    return [[c.strip() for c in ln[: -2].split(" & ")] for ln in lines]


def _published(rows, header):
    src = header.index("Source")
    return [dict(zip(header, r)) for r in rows[1:] if r[src].startswith("published")]


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "table4"])
def test_reference_layout_prints_every_published_number_exactly(name, capsys):
    assert main(["leaderboard", "--layout", name, "--reference", "paper"]) == 0
    out = capsys.readouterr().out
    parsed = _parse(out, "markdown")
    header = parsed[0]
    got = _published(parsed, header)
    paper_header, paper_rows = _paper_rows(PAPER_TABLES[name])
    assert len(got) == len(paper_rows)
    values = [c for c in paper_header if c and c not in ("Scale", "Reasoning") and not c.startswith("Reward")]
    assert [c for c in header if c in values] == values  # the published columns, in the published order
    for row, paper in zip(got, paper_rows):
        if name == "table4":
            reward, reasoning, *numbers = paper
            assert (row["Reward r_acc"], row["Reasoning"]) == (reward, reasoning)
        else:
            group, model, scale, *numbers = paper
            assert (row["Group"], row["Model"], row["Scale"]) == (group, model, scale)
        assert [row[c] for c in values] == numbers  # strings: printed exactly as published
    assert "not run here" in out
    if name in ("table1", "table3"):
        assert "† Results are from (Jiang et al. 2024)." in out and "‡ Results are from respective publications." in out


@pytest.mark.parametrize("fmt", ["csv", "latex"])
def test_reference_numbers_survive_csv_and_latex(fmt, capsys):
    for name, block in PAPER_TABLES.items():
        assert main(["leaderboard", "--layout", name, "--reference", "paper", "--format", fmt]) == 0
        parsed = _parse(capsys.readouterr().out, fmt)
        _, paper_rows = _paper_rows(block)
        n_values = len(paper_rows[0]) - (2 if name == "table4" else 3)
        src = parsed[0].index("Source")  # csv ends with a Metric column
        got = [r for r in parsed[1:] if r[src].startswith("published")]
        assert [r[src - n_values:src] for r in got] == [p[-n_values:] for p in paper_rows]
        if fmt == "csv":
            assert parsed[0][-1] == "Metric" and {r[-1] for r in got} == {"published"}


def test_transcription_matches_the_paper_text():
    if not PAPER_TEXT.exists():
        pytest.skip(f"paper text not on this machine ({PAPER_TEXT}); set ADBENCH_PAPER_TEXT to check the transcription")
    text = PAPER_TEXT.read_text(encoding="utf-8").replace("\t", " | ")
    for block in PAPER_TABLES.values():
        assert block.strip("\n") in text


# -- runs --------------------------------------------------------------------------------


def _add_object_questions(root: Path) -> None:
    """Object questions on every image of a mini suite (MMAD merges the last two into Object Analysis)."""
    path = root / "mmad.json"
    index = json.loads(path.read_text())
    for entry in index.values():
        entry["conversation"] += [
            {"Question": "What object?", "Options": {"A": "bottle", "B": "cable", "C": "screw"}, "Answer": "A",
             "type": "Object Classification"},
            {"Question": "Is the structure intact?", "Options": {"A": "Yes.", "B": "No."}, "Answer": "A",
             "type": "Object Structure"},
            {"Question": "Which detail is visible?", "Options": {"A": "a thread", "B": "a cap"}, "Answer": "B",
             "type": "Object Details"},
        ]
    path.write_text(json.dumps(index))


class MeanScorer(Model):
    """Score = mean brightness of the query image: a real score-based model, tiny and deterministic."""

    name = "mean-scorer"
    output = OutputKind.SCORE
    score_is_probability = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def predict(self, queries):
        return [Response(score=float(np.asarray(Image.open(q.image).convert("L")).mean() / 255)) for q in queries]


MMAD_NAMES = {"MVTec": "DS-MVTec", "VisA": "VisA", "MVTec-LOCO": "MVTec-LOCO", "GoodsAD": "GoodsAD"}
CROSS_NAMES = {"VisA": "VisA", "MPDD": "MPDD", "DTD": "DTD-Synthetic", "DAGM": "DAGM"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("tables")
    mmad = write_mini_mmad(base / "mmad", datasets=tuple(MMAD_NAMES.values()), n_good=5, n_bad=7, seed=3)
    _add_object_questions(mmad)
    cross = write_mini_mmad(base / "cross", datasets=tuple(CROSS_NAMES.values()), n_good=6, n_bad=6, seed=4)

    def go(root, **kw):
        spec = RunSpec(model=kw.pop("model", "chance"), task=kw.pop("task", "mini-all"), data_root=root,
                       out=base / "runs", progress=False, **kw)
        return run(spec).run_dir

    return {
        "chance": go(mmad),
        "chance1": go(mmad, seed=1),
        "chance-subset": go(mmad, seed=1, limit=40, run_id="subset"),
        "scorer": go(cross, model="mean-scorer", task="mini-binary"),
    }


def _records(run_dir):
    return [json.loads(x) for x in (Path(run_dir) / "samples.jsonl").read_text().splitlines()]


def _expected_mmad_figures(run_dir):
    """Per-column figures computed by hand from samples.jsonl (MMAD's rules, independently of adbench)."""
    by = defaultdict(list)
    for r in _records(run_dir):
        by[(r["dataset"], r["qtype"])].append(r)

    def acc(rs):
        return sum(bool(r["correct"]) and r["error"] is None for r in rs) / len(rs)

    t1 = {}
    for col, ds in MMAD_NAMES.items():
        rs = by[(ds, "Anomaly Detection")]
        t1[col] = (acc([r for r in rs if r["label"] == 0]) + acc([r for r in rs if r["label"] == 1])) / 2
    t1["Avg."] = float(np.mean(list(t1.values())))
    t3 = {
        "Defect Classification": np.mean([acc(by[(ds, "Defect Classification")]) for ds in MMAD_NAMES.values()]),
        "Object Classification": np.mean([acc(by[(ds, "Object Classification")]) for ds in MMAD_NAMES.values()]),
        "Object Analysis": np.mean([acc(by[(ds, "Object Structure")] + by[(ds, "Object Details")])
                                    for ds in MMAD_NAMES.values()]),
    }
    t3["Avg."] = float(np.mean(list(t3.values())))
    return t1, t3


def _row(out, label, fmt="markdown"):
    parsed = _parse(out, fmt)
    rows = [dict(zip(parsed[0], r)) for r in parsed[1:] if r[1] == label]
    assert len(rows) == 1, (label, out)
    return rows[0]


def test_run_figures_land_in_the_right_columns_of_table1_and_table3(runs, capsys):
    t1, t3 = _expected_mmad_figures(runs["chance"])
    assert len({round(v, 4) for k, v in t1.items() if k != "Avg."}) == 4  # distinct, so a swap would show

    assert main(["leaderboard", "--layout", "table1", "--reference", "paper", str(runs["chance"])]) == 0
    out = capsys.readouterr().out
    row = _row(out, "chance")
    assert row["Group"] == "Runs" and row["Source"].startswith("run ")
    for col, v in t1.items():
        assert float(row[col]) == pytest.approx(100 * v, abs=0.006), col
    assert "datasets not in this layout" not in out

    assert main(["leaderboard", "--layout", "table3", str(runs["chance"])]) == 0
    out = capsys.readouterr().out
    row = _row(out, "chance")
    for col, v in t3.items():
        assert float(row[col]) == pytest.approx(100 * v, abs=0.006), col
    for col in ("Defect Localization", "Defect Description", "Defect Analysis"):
        assert row[col] == "-"
    assert "chance: Avg. over 3 of 6 columns" in out


def test_score_model_rule_rows_map_cross_dataset_names_into_table2(runs, capsys):
    res = json.loads((runs["scorer"] / "results.json").read_text())
    assert main(["leaderboard", "--layout", "table2", "--reference", "paper", str(runs["scorer"])]) == 0
    out = capsys.readouterr().out
    for rule, label in (("youden", "mean-scorer*"), ("fixed", "mean-scorer (0.5)"), ("calibrated", "mean-scorer (calib.)")):
        row = _row(out, label)
        acc = res["rules"][rule]["accuracy"]
        for col, ds in CROSS_NAMES.items():  # DTD-Synthetic goes into the paper's DTD column
            assert float(row[col]) == pytest.approx(100 * acc[ds], abs=0.006), (label, col)
        assert float(row["Avg."]) == pytest.approx(100 * np.mean([acc[d] for d in CROSS_NAMES.values()]), abs=0.006)
    assert "Youden's J on the evaluated set itself" in out


def test_metric_mmad_pools_object_questions_and_intervals_reproduce_it(runs, capsys):
    """chance replies one option letter, so MMAD's verdict is the strict one and nothing is dropped;
    the dataset figure still differs: MMAD averages Object Analysis (Structure + Details pooled)
    as one type, the strict figure averages the two types separately."""
    by = defaultdict(list)
    for r in _records(runs["chance"]):
        by[(r["dataset"], r["qtype"])].append(r)

    def acc(rs):
        return sum(bool(r["correct"]) for r in rs) / len(rs)

    expected = {}
    for ds in MMAD_NAMES.values():
        ad = by[(ds, "Anomaly Detection")]
        cells = [(acc([r for r in ad if r["label"] == 0]) + acc([r for r in ad if r["label"] == 1])) / 2,
                 acc(by[(ds, "Defect Classification")]), acc(by[(ds, "Object Classification")]),
                 acc(by[(ds, "Object Structure")] + by[(ds, "Object Details")])]
        expected[ds] = float(np.mean(cells))
    assert main(["leaderboard", "--layout", "datasets", str(runs["chance"]), "--metric", "mmad", "--ci",
                 "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "differs from its samples" not in out
    row = _row(out, "chance")
    for ds, v in expected.items():
        assert float(row[ds].split()[0]) == pytest.approx(100 * v, abs=0.006), ds
    strict = json.loads((runs["chance"] / "results.json").read_text())["metrics"]["VisA"]["accuracy"]
    assert abs(strict - expected["VisA"]) > 1e-6  # the pooling shows
    for layout in ("table1", "table3", "mmad"):  # every layout reproduces its MMAD figures from the samples
        assert main(["leaderboard", "--layout", layout, str(runs["chance"]), "--metric", "mmad", "--ci",
                     "--resamples", "100"]) == 0
        out = capsys.readouterr().out
        assert "differs from its samples" not in out and "Metric: MMAD's rule" in out


def test_metric_mmad_for_a_score_based_model(runs, capsys):
    res = json.loads((runs["scorer"] / "results.json").read_text())
    assert main(["leaderboard", "--layout", "table2", str(runs["scorer"]), "--metric", "mmad", "--ci",
                 "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "differs from its samples" not in out
    for rule, label in (("youden", "mean-scorer*"), ("calibrated", "mean-scorer (calib.)")):
        acc = res["rules"][rule]["accuracy_mmad"]
        for col, ds in CROSS_NAMES.items():
            assert float(_row(out, label)[col].split()[0]) == pytest.approx(100 * acc[ds], abs=0.006), (label, col)


def test_bootstrap_intervals_for_every_run_figure(runs, capsys):
    args = ["leaderboard", "--layout", "table1", str(runs["chance"]), str(runs["scorer"]), "--ci", "--resamples", "400"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == out  # seeded
    assert "differs from its samples" not in out  # the resampled statistic reproduces results.json exactly
    row = _row(out, "chance [mini-all]")
    widths = {}
    for col in ("MVTec", "VisA", "MVTec-LOCO", "GoodsAD", "Avg."):
        m = re.fullmatch(r"(\d+\.\d\d) \[(\d+\.\d\d), (\d+\.\d\d)\]", row[col])
        assert m, row[col]
        v, lo, hi = map(float, m.groups())
        assert lo <= v <= hi and hi - lo > 5  # about 48 samples per dataset: wide intervals
        widths[col] = hi - lo
    assert widths["Avg."] < min(w for c, w in widths.items() if c != "Avg.")  # averaging four datasets narrows it
    assert "95% percentile bootstrap" in out


def test_compare_two_runs_on_the_same_samples_gives_mcnemar_p_values(runs, capsys):
    res0 = json.loads((runs["chance"] / "results.json").read_text())
    target = f"chance [{res0['run_id']}]"
    assert main(["leaderboard", "--layout", "datasets", str(runs["chance"]), str(runs["chance1"]),
                 "--compare", target]) == 0
    out = capsys.readouterr().out
    res1 = json.loads((runs["chance1"] / "results.json").read_text())
    row = _row(out, f"chance [{res1['run_id']}]")
    assert _row(out, target)["Δ Avg."] == "ref"
    # by hand: the difference of the averages, and McNemar on all paired samples
    a = {r["id"]: bool(r["correct"]) for r in _records(runs["chance1"])}
    b = {r["id"]: bool(r["correct"]) for r in _records(runs["chance"])}
    assert set(a) == set(b)
    ids = sorted(a)
    p = mcnemar([a[i] for i in ids], [b[i] for i in ids]).p_value
    delta = 100 * (res1["metrics"]["average"]["accuracy"] - res0["metrics"]["average"]["accuracy"])
    m = re.fullmatch(r"([+-]\d+\.\d\d) \(p=([0-9.e+-]+)\)", row["Δ Avg."])
    assert m, row["Δ Avg."]
    assert float(m.group(1)) == pytest.approx(delta, abs=0.006)
    assert m.group(2) == f"{p:.3g}"
    # per dataset too: McNemar over that dataset's samples
    ds_ids = [i for i in ids if i.startswith("VisA/")]
    p_visa = mcnemar([a[i] for i in ds_ids], [b[i] for i in ds_ids]).p_value
    assert row["VisA"] and row["Δ VisA"].endswith(f"(p={p_visa:.3g})")
    assert "McNemar's test" in out and "exact binomial below 25" in out


def test_compare_runs_on_different_samples_gives_no_test(runs, capsys):
    assert main(["leaderboard", "--layout", "table1", str(runs["chance"]), str(runs["chance-subset"]),
                 "--compare", "chance [subset]"]) == 0
    out = capsys.readouterr().out
    res = json.loads((runs["chance"] / "results.json").read_text())
    row = _row(out, f"chance [{res['run_id']}]")
    assert re.fullmatch(r"[+-]\d+\.\d\d", row["Δ Avg."])  # a difference, but no p-value
    assert "not paired, no McNemar test" in out


def test_compare_against_a_published_row(runs, capsys):
    assert main(["leaderboard", "--layout", "table1", "--reference", "paper", str(runs["chance"]),
                 "--compare", "gpt-4.1"]) == 0
    out = capsys.readouterr().out
    run_row = _row(out, "chance")
    assert _row(out, "GPT-4.1")["Δ MVTec"] == "ref"
    assert float(run_row["Δ MVTec"]) == pytest.approx(float(run_row["MVTec"]) - 78.83, abs=0.006)
    assert _row(out, "AD-FM (Ours)")["Δ Avg."] == "+1.55"  # 73.15 - 71.60
    assert _row(out, "GPT-4o †")["Δ MVTec"] == "-"  # the paper has no per-dataset figure there
    assert "differences only, no significance test" in out


def test_compare_errors_name_the_choices(capsys):
    assert main(["leaderboard", "--layout", "table1", "--reference", "paper", "--compare", "InternVL3"]) == 2
    err = capsys.readouterr().err
    assert "matches 2 rows" in err and "'InternVL3 (8B)'" in err and "'InternVL3 (38B)'" in err
    assert main(["leaderboard", "--layout", "table1", "--reference", "paper", "--compare", "InternVL3 38B"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--layout", "table4", "--reference", "paper", "--compare", "r_cls + r_loc / multi-stage"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "Qwen2.5-VL-7B")["Δ Avg."] == "-22.11"  # 51.04 - 73.15: the paper's own headline gain
    assert "Δ: difference to AD-FM (Qwen2.5-VL-7B, GRPO) / r_cls + r_loc / multi-stage" in out
    assert main(["leaderboard", "--layout", "table9", "--reference", "paper"]) == 2
    assert "unknown layout 'table9'" in capsys.readouterr().err
    assert main(["leaderboard", "--reference", "paper"]) == 2
    assert "--reference needs --layout" in capsys.readouterr().err


def test_cli_subprocess_writes_a_layout_to_a_file(runs, tmp_path):
    out = tmp_path / "t2.csv"
    p = subprocess.run([sys.executable, "-m", "adbench", "leaderboard", "--layout", "table2", "--reference", "paper",
                        "--format", "csv", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    adfm = [r for r in rows if r["Model"] == "AD-FM (Ours)"]
    assert [adfm[0][c] for c in ("VisA", "MPDD", "DTD", "DAGM", "Avg.")] == ["77.43", "72.71", "92.64", "95.51", "84.57"]
    assert adfm[0]["Group"] == "Fine-tuned" and adfm[0]["Source"] == "published (Table 2)"


def test_mmad_layout_prints_mmads_published_rows(capsys):
    """MMAD's own 1-shot figures (FACTS.md): GPT-4o overall 74.31; Qwen2.5-VL-7B 72.19 overall, 71.10 AD."""
    assert main(["leaderboard", "--layout", "mmad", "--reference", "paper"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[3:11] == ["Anomaly Detection", "Defect Classification", "Defect Localization",
                            "Defect Description", "Defect Analysis", "Object Classification", "Object Analysis", "Avg."]
    rows = {c[1]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[2:4])}
    assert rows["GPT-4o"][10] == "74.31" and rows["GPT-4o"][3] == "-"
    assert rows["Qwen2.5-VL"][2] == "7B" and rows["Qwen2.5-VL"][3] == "71.10" and rows["Qwen2.5-VL"][10] == "72.19"
