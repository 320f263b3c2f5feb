"""MMAD's own scoring rule (`accuracy_mmad`), beside the strict headline.

Expected letters and figures are derived by hand from jam-cc/MMAD's code:
`evaluation/examples/GPT4/gpt4v.py: parse_answer` (as `Transformers/qwen2_5_vl_query.py`
calls it: with the options, keeping the last element) and `evaluation/examples/helper/
summary.py: caculate_accuracy_mmad`. How the difflib cases are derived:
`get_close_matches(reply, texts, n=1, cutoff=0.0)` scores each option text x with
`SequenceMatcher(None, x, reply).ratio()` = 2 * M / (len(x) + len(reply)), M the characters
of the matching blocks (longest common substring, then the same left and right of it,
case-sensitive), and keeps the largest (ratio, x) tuple: equal ratios go to the text
that sorts last. With cutoff 0.0 some option always comes back.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from adbench import registry
from adbench.answers import mmad_answer, parse_option
from adbench.cli import main
from adbench.metrics import balanced_accuracy_mmad, mcnemar
from adbench.model import Model, OutputKind
from adbench.results import score_records
from adbench.runner import RunSpec, run
from adbench.schema import ParseStatus, Query, Record, Response
from tests.helpers import write_mini_mmad

YN = {"A": "Yes.", "B": "No."}
DC = {"A": "crack", "B": "scratch", "C": "hole", "D": "stain"}

REPLIES = [
    # -- a standalone capital A-E: the last one wins, whether or not it is an option --------
    ("A", YN, "A"),
    ("B.", YN, "B"),
    ("Answer: B.", YN, "B"),  # the "A" of "Answer" is followed by "n": no word boundary
    ("A. Yes", YN, "A"),  # "Yes" has no capital A-E
    ("The answer is B", YN, "B"),
    ("Answer: A. Actually, on reflection, B.", YN, "B"),  # matches A, B ("Actually": A then c): last B
    ("A or B? I'd say A", YN, "A"),  # A, B, A ("I" is not A-E): last A
    ("I think it's B, not A.", YN, "A"),  # B, A: last A
    ("A/B", YN, "B"),  # "/" is no word character: A, B
    ("A-B", YN, "B"),
    ("(B)", YN, "B"),
    ("A)", YN, "A"),
    ("**B**", YN, "B"),  # markdown bold: "*" is no word character
    ("<answer>B</answer>", YN, "B"),
    ("Answer:C", DC, "C"),
    ("\tE\n", YN, "E"),  # E is not an option of a yes/no question: kept (and wrong), not dropped
    ("Option C", YN, "C"),  # not an option either
    ("None of the above: E", DC, "E"),  # "None": N is not A-E
    ("Defect: D", YN, "D"),  # "Defect": D then e: no boundary; the lone D counts
    ("A. Yes, there is a Crack.", YN, "A"),  # "Crack": C then r: no boundary
    ("Based on the image, A scratch is visible; the answer is no.", YN, "A"),  # the article "A" counts
    ("Réponse : B", YN, "B"),  # unicode text around a standalone letter
    ("Answer → C", DC, "C"),  # "→" is no word character
    # -- no standalone capital A-E: difflib picks an option text ----------------------------
    ("no", YN, "B"),  # lower case is no letter. "No." vs "no": "o" -> 2/5; "Yes.": 0 -> B
    ("yes", YN, "A"),  # "Yes." vs "yes": "es" -> 4/7; "No.": 0 -> A
    ("b", YN, "A"),  # no common character with either: tie at 0 -> the text that sorts last, "Yes."
    ("ABC", YN, "A"),  # no boundary between the letters; tie at 0 -> "Yes."
    ("B2", YN, "A"),  # "2" is a word character: no boundary after B; tie at 0 -> "Yes."
    ("éB", YN, "A"),  # "é" is a (unicode) word character: no boundary before B; tie at 0 -> "Yes."
    ("_A_", DC, "D"),  # "_" is a word character; no common character (case-sensitive): tie -> "stain"
    ("", YN, "A"),  # empty reply: every ratio 0 -> "Yes."; NOT dropped
    ("   \n", YN, "A"),  # whitespace only: the same
    ("  ", DC, "D"),  # tie at 0 among crack/scratch/hole/stain -> "stain" sorts last
    ("Yes.", YN, "A"),  # an option's exact text: ratio 1
    ("hole", DC, "C"),
    ("No, it is normal.", YN, "B"),  # "No.": "No" + "." -> 2*3/20 = 0.3; "Yes.": "s" + "." -> 2*2/21 -> B
    ("Nope.", YN, "B"),  # "No.": "No" + "." -> 6/8; "Yes.": "e" + "." -> 4/9 -> B
    ("Antwort: Ä", YN, "B"),  # "No.": "o" of "Antwort" -> 2/13; "Yes.": nothing -> B
    ("It has a scratch.", DC, "B"),  # "scratch" whole -> 14/24 beats "crack" ("cra" + "c" -> 8/22)
    # The reply names "crack", yet "scratch" wins: "cra" + "s" + "t" + "c" = 6 -> 12/39 = 0.308
    # against "crack" 5 -> 10/37 = 0.270 ("hole" 6/36, "stain" 6/37).
    ("There is a crack on the surface.", DC, "B"),
    # option texts that tie: "o" against "top" and "pot" is 2/4 each; ("top" > "pot") wins
    ("o", {"A": "top", "B": "pot"}, "A"),
    ("o", {"A": "pot", "B": "top"}, "B"),  # the winner is the text, not the letter order
    # two options with the same text: the first letter with that text
    ("crack", {"A": "crack", "B": "crack", "C": "hole"}, "A"),
    # -- no answer at all --------------------------------------------------------------------
    ("I don't know", {}, None),  # no letter and no options: difflib has nothing to return
    (None, YN, None),  # no reply (a failed request)
]


@pytest.mark.parametrize("text,options,expected", REPLIES)
def test_mmad_answer_by_hand(text, options, expected):
    assert mmad_answer(text, options) == expected


def test_there_are_at_least_30_replies_and_both_branches():
    assert len(REPLIES) >= 30
    assert sum(1 for t, _, _ in REPLIES if t is not None and re.search(r"\b[A-E]\b", t)) >= 15
    assert sum(1 for t, o, _ in REPLIES if t is not None and o and not re.search(r"\b[A-E]\b", t)) >= 15


def test_the_strict_parser_is_stricter():
    # the same replies: MMAD's rule answers, the strict parser reports unparsed (counted wrong)
    for text, options in (("", YN), ("E", YN), ("Nope.", YN), ("b", YN), ("ABC", YN)):
        assert mmad_answer(text, options) is not None
        assert parse_option(text, options) == (None, ParseStatus.UNPARSED)
    # and where both answer, they can disagree: the strict parser takes the option text the reply names
    assert parse_option("There is a crack on the surface.", DC) == ("A", ParseStatus.PARSED)
    assert mmad_answer("There is a crack on the surface.", DC) == "B"


def test_balanced_accuracy_mmad_counts_an_absent_class_as_zero():
    assert balanced_accuracy_mmad([True, False, True], [0, 0, 1]) == pytest.approx((0.5 + 1) / 2)
    assert balanced_accuracy_mmad([True], [0]) == 0.5  # no anomalous samples: that class counts 0
    assert balanced_accuracy_mmad([], []) == 0.0


# -- scoring over Records --------------------------------------------------------------------

AD, DCL = "Anomaly Detection", "Defect Classification"
OS, OD = "Object Structure", "Object Details"
THREAD = {"A": "a thread", "B": "a cap"}


def rec(rid, ds, qtype, label, gold, text, options, correct, *, error=None):
    """A generative Record; `correct` is what the strict parser made of `text` (as a task would record)."""
    answer, status = (None, "n/a") if error else parse_option(text, options)
    assert error or (answer == gold) == correct, (rid, answer)  # the hand-set strict verdict is right
    return Record(id=rid, dataset=ds, category="c", qtype=qtype, label=label, gold=gold, image=f"{rid}.png",
                  text=text, answer=answer, score=None, correct=False if error else correct, error=error,
                  parse_status=status, options=dict(options))


def _records():
    return [
        # DS-X, Anomaly Detection
        rec("x1", "DS-X", AD, 0, "B", "B", YN, True),  # MMAD B: right
        rec("x2", "DS-X", AD, 0, "B", "", YN, False),  # MMAD: difflib tie -> A: kept, wrong
        rec("x3", "DS-X", AD, 1, "A", "A", YN, True),  # right
        rec("x4", "DS-X", AD, 1, "A", None, YN, False, error="timeout"),  # failed: dropped
        rec("x5", "DS-X", AD, 1, "A", "E", YN, False),  # MMAD E: kept, wrong. MMAD's loop would skip x5
        # (it follows the dropped x4 in the list); adbench counts it.
        # DS-X, Object Structure + Object Details: MMAD pools them into Object Analysis
        rec("x6", "DS-X", OS, 0, "A", "Yes", YN, True),  # MMAD: "Yes." 2*3/7 -> A: right
        rec("x7", "DS-X", OD, 0, "B", "C", THREAD, False),  # MMAD C: kept, wrong
        # DS-X, Defect Classification: every record failed -> the type counts 0
        rec("x8", "DS-X", DCL, 1, "A", None, DC, False, error="boom"),
        rec("x9", "DS-X", DCL, 1, "A", None, DC, False, error="boom"),
        # DS-Y, Anomaly Detection: no anomalous record kept
        rec("y1", "DS-Y", AD, 0, "B", "No, it is normal.", YN, True),  # MMAD B: right
        rec("y2", "DS-Y", AD, 0, "B", None, YN, False, error="boom"),  # dropped
        # DS-Y, Defect Classification
        rec("y3", "DS-Y", DCL, 1, "A", "There is a crack on the surface.", DC, True),  # MMAD B: wrong
        rec("y4", "DS-Y", DCL, 1, "C", "C", DC, True),  # right
    ]


def test_accuracy_mmad_by_hand():
    out = score_records(_records())
    m = out["metrics"]
    x, y = m["DS-X"], m["DS-Y"]
    # DS-X, MMAD: AD kept x1 x2 x3 x5: normal 1/2, anomalous 1/2 -> 0.5 ; Object Analysis x6 x7: 1/2 ;
    # Defect Classification all dropped -> 0 ; dataset = (0.5 + 0 + 0.5) / 3
    assert x["qtypes_mmad"] == {
        AD: {"accuracy_mmad": 0.5, "n_kept": 4, "n_dropped": 1},
        DCL: {"accuracy_mmad": 0.0, "n_kept": 0, "n_dropped": 2},
        "Object Analysis": {"accuracy_mmad": 0.5, "n_kept": 2, "n_dropped": 0},
    }
    assert x["accuracy_mmad"] == pytest.approx(1 / 3)
    # DS-Y, MMAD: AD normal 1/1, no anomalous kept -> (1 + 0) / 2 ; DC y3 wrong y4 right -> 0.5
    assert y["qtypes_mmad"][AD] == {"accuracy_mmad": 0.5, "n_kept": 1, "n_dropped": 1}
    assert y["qtypes_mmad"][DCL]["accuracy_mmad"] == 0.5
    assert y["accuracy_mmad"] == pytest.approx(0.5)
    avg = m["average"]
    assert avg["accuracy_mmad"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert avg["qtypes_mmad"] == {AD: {"accuracy_mmad": 0.5}, DCL: {"accuracy_mmad": 0.25},
                                  "Object Analysis": {"accuracy_mmad": 0.5}}  # Object Analysis: DS-X only
    assert x["categories"]["c"]["accuracy_mmad"] == pytest.approx(1 / 3)
    # the strict headline is unchanged: failures and unparsed replies are wrong, types not pooled.
    # DS-X: AD normal 1/2, anomalous 1/3 (present classes) ; DC 0 ; OS 1 ; OD 0
    assert x["qtypes"][AD]["accuracy"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert x["accuracy"] == pytest.approx(((1 / 2 + 1 / 3) / 2 + 0 + 1 + 0) / 4)
    # DS-Y: AD normal 1/2 (the only class present) ; DC 2/2 (the strict parser reads "crack")
    assert y["accuracy"] == pytest.approx((0.5 + 1) / 2)
    assert out["counts"] == {"n": 13, "n_failed": 4, "n_unparsed": 3}  # unparsed: x2 "", x5 "E", x7 "C"


def _scored(rid, label, score, error=None):
    return Record(id=rid, dataset="Z", category="c", qtype=AD, label=label, gold="", image=f"{rid}.png", text=None,
                  answer=None, score=score, correct=None, error=error, parse_status="n/a")


def test_score_based_models_use_the_rules_decisions():
    recs = [_scored("n1", 0, 0.2), _scored("n2", 0, 0.7), _scored("n3", 0, math.nan),
            _scored("a1", 1, None, error="boom")]
    out = score_records(recs, threshold=0.5)
    # fixed 0.5: n1 normal (right), n2 anomalous (wrong), n3 no decision, a1 failed.
    # MMAD: n3 and a1 dropped; normal 1/2, no anomalous kept -> (0.5 + 0) / 2
    assert out["rules"]["fixed"]["accuracy_mmad"] == {"Z": 0.25, "average": 0.25}
    assert out["metrics"]["Z"]["qtypes_mmad"][AD] == {"accuracy_mmad": 0.25, "n_kept": 2, "n_dropped": 2}
    # strict: every record counts, undecided ones wrong: normal 1/3, anomalous 0/1
    assert out["rules"]["fixed"]["accuracy"]["Z"] == pytest.approx((1 / 3 + 0) / 2)
    # no calibration images: the calibrated rule decided nothing, so it has no figure (not 0)
    assert out["rules"]["calibrated"]["accuracy_mmad"] == {"Z": None, "average": None}


# -- tables: --metric mmad -------------------------------------------------------------------


class ScriptedReplies(Model):
    """Replies chosen so the two metrics differ in known ways (mini suite of tests.helpers).

    Anomaly Detection on a normal image: "Nope." (strict: unparsed, wrong; MMAD: "No." = B, right).
    Anomaly Detection on an anomalous image: "A" (right). Defect Classification: "E" (strict:
    unparsed; MMAD: kept, wrong). Every query on an anomalous image of DS-B fails.
    """

    name = "scripted"
    output = OutputKind.GENERATIVE

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        out = []
        for q in queries:
            normal = "/good/" in Path(q.image).as_posix()
            if not normal and "/DS-B/" in Path(q.image).as_posix():
                out.append(Response.failure("boom"))
                continue
            text = ("Nope." if normal else "A") if q.qtype == AD else "E"
            answer, status = parse_option(text, q.options)
            out.append(Response(text=text, answer=answer, parse_status=status))
        return out


registry.register_task("mini-all", "tests.helpers:mini_all_task", "test task")
registry.register_model("scripted-replies", "tests.test_mmad_rule:ScriptedReplies", "test model")

# Expected, per dataset (mini suite: DS-A, DS-B x c1, c2 x 4 normal + 4 anomalous images;
# Anomaly Detection on every image, Defect Classification on the anomalous ones):
# DS-A  strict: AD (0 + 1) / 2 = 0.5, DC 0 -> 0.25 ;  MMAD: AD (1 + 1) / 2 = 1, DC 0 -> 0.5
# DS-B  strict: AD (0 + 0) / 2 = 0, DC 0 -> 0 ;  MMAD: AD (1 + absent 0) / 2 = 0.5, DC all dropped 0 -> 0.25
STRICT = {"DS-A": 0.25, "DS-B": 0.0}
MMAD = {"DS-A": 0.5, "DS-B": 0.25}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mmad-rule")
    root = write_mini_mmad(base / "data")

    def go(model):
        return run(RunSpec(model=model, task="mini-all", data_root=root, out=base / "runs", progress=False)).run_dir

    return {"scripted": go("scripted-replies"), "chance": go("chance")}


def _results(run_dir):
    return json.loads((Path(run_dir) / "results.json").read_text())


def _md_row(out, label):
    lines = [ln for ln in out.splitlines() if ln.startswith("|") and not ln.startswith("|:")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    # a run with failed samples is marked § after its label (issue 14): the scripted run has some
    rows = [dict(zip(cells[0], r)) for r in cells[1:] if label in [c.rstrip("§¶") for c in r]]
    assert len(rows) == 1, out
    return rows[0]


def test_results_json_and_rescore(runs, capsys):
    res = _results(runs["scripted"])
    for ds in ("DS-A", "DS-B"):
        assert res["metrics"][ds]["accuracy"] == pytest.approx(STRICT[ds])
        assert res["metrics"][ds]["accuracy_mmad"] == pytest.approx(MMAD[ds])
    assert res["metrics"]["DS-B"]["qtypes_mmad"][DCL] == {"accuracy_mmad": 0.0, "n_kept": 0, "n_dropped": 8}
    # `adbench score` recomputes it from samples.jsonl (the raw reply texts)
    (runs["scripted"] / "results.json").unlink()
    assert main(["score", str(runs["scripted"])]) == 0
    capsys.readouterr()
    assert _results(runs["scripted"])["metrics"] == res["metrics"]


def test_plain_leaderboard_metric_mmad(runs, capsys):
    d = str(runs["scripted"])
    assert main(["leaderboard", d, "--metric", "mmad"]) == 0
    out = capsys.readouterr().out
    row = _md_row(out, "scripted-replies")
    assert (row["DS-A"], row["DS-B"], row["Avg."]) == ("50.00", "25.00", "37.50")
    assert "Metric: MMAD's rule" in out and "Metric: strict" not in out
    assert main(["leaderboard", d]) == 0  # default: strict, and the table says so
    out = capsys.readouterr().out
    assert _md_row(out, "scripted-replies")["Avg."] == "12.50"
    assert [ln for ln in out.splitlines() if ln.startswith("Metric:")] == [
        "Metric: strict (failed or unparsable replies count as wrong)."]
    assert main(["leaderboard", d, "--metric", "mmad", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["Model,DS-A,DS-B,Avg.,Metric", "scripted-replies§,50.00,25.00,37.50,mmad"]
    assert main(["leaderboard", d, "--metric", "mmad", "--format", "latex"]) == 0
    out = capsys.readouterr().out
    # one latex writer for every table: the § mark is LaTeX's \S{}, as in the paper's layouts
    assert re.search(r"scripted-replies\\S\{\}\s*&\s*50\.00\s*&\s*25\.00\s*&\s*37\.50", out)
    assert "% Metric: MMAD's rule" in out


def test_layouts_metric_mmad(runs, capsys):
    d = str(runs["scripted"])
    assert main(["leaderboard", "--layout", "mmad", "--reference", "paper", d, "--metric", "mmad"]) == 0
    out = capsys.readouterr().out
    row = _md_row(out, "scripted-replies")
    # Anomaly Detection: mean over datasets (1 + 0.5) / 2 ; Defect Classification (0 + 0) / 2
    assert (row["Anomaly Detection"], row["Defect Classification"], row["Avg."]) == ("75.00", "0.00", "37.50")
    assert _md_row(out, "GPT-4o")["Avg."] == "74.31"  # published rows as published
    assert out.splitlines()[out.splitlines().index("") + 1].startswith("Metric: MMAD's rule")
    assert main(["leaderboard", "--layout", "mmad", d]) == 0
    out = capsys.readouterr().out
    row = _md_row(out, "scripted-replies")
    assert (row["Anomaly Detection"], row["Avg."]) == ("25.00", "12.50") and "Metric: strict" in out
    assert main(["leaderboard", "--layout", "mmad", d, "--metric", "mmad", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(",Source,Metric") and lines[1].endswith(",mmad")
    assert main(["leaderboard", "--layout", "mmad", d, "--metric", "mmad", "--format", "latex"]) == 0
    assert "% Metric: MMAD's rule" in capsys.readouterr().out


def test_intervals_and_mcnemar_follow_metric_mmad(runs, capsys):
    a, b = str(runs["scripted"]), str(runs["chance"])
    args = ["leaderboard", "--layout", "datasets", a, b, "--metric", "mmad", "--ci", "--resamples", "200",
            "--compare", "chance"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "differs from its samples" not in out  # resampled MMAD figures reproduce results.json exactly
    row = _md_row(out, "scripted-replies")
    assert re.fullmatch(r"50\.00 \[\d+\.\d\d, \d+\.\d\d\]", row["DS-A"]), row["DS-A"]
    chance = _results(runs["chance"])["metrics"]
    assert float(row["Δ DS-A"].split()[0]) == pytest.approx(100 * (0.5 - chance["DS-A"]["accuracy_mmad"]), abs=0.006)
    # DS-A: nothing dropped in either run, so McNemar pairs all its samples on MMAD's verdicts
    verdict = {}
    for r in (json.loads(x) for x in (runs["chance"] / "samples.jsonl").read_text().splitlines()):
        verdict[r["id"]] = r["correct"]  # chance replies one option letter: MMAD's verdict = strict
    ids = sorted(i for i in verdict if i.startswith("DS-A/"))
    # scripted on DS-A: Anomaly Detection right (normal "Nope." -> B, anomalous "A"), Defect Classification wrong
    mine = [not i.endswith("#1") for i in ids]  # question 0: Anomaly Detection; 1: Defect Classification
    p = mcnemar(mine, [verdict[i] for i in ids]).p_value
    assert row["Δ DS-A"].endswith(f"(p={p:.3g})")
    # DS-B: the scripted run's anomalous samples are dropped, chance's are not: not paired
    # (scripted keeps DS-B's 8 normal Anomaly Detection samples; chance all 16 + 8 Defect Classification)
    assert "not paired, no McNemar test: DS-B (8 vs 24 samples, 8 shared)" in out
    assert "MMAD's rule; samples it drops are not pairs" in out


def test_metric_mmad_refuses_an_old_results_json(runs, tmp_path, capsys):
    old = tmp_path / "old"
    old.mkdir()
    res = _results(runs["chance"])
    for entry in res["metrics"].values():  # what an older adbench wrote
        entry.pop("qtypes_mmad", None)
    (old / "results.json").write_text(json.dumps(res))
    assert main(["leaderboard", str(old), "--metric", "mmad"]) == 2
    assert "adbench score" in capsys.readouterr().err
    assert main(["leaderboard", "--layout", "table1", str(old), "--metric", "mmad"]) == 2
    assert "adbench score" in capsys.readouterr().err
    assert main(["leaderboard", str(old)]) == 0  # strict still reads it
    capsys.readouterr()
