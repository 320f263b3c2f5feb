"""Records -> results.json metrics: adbench's strict headline and MMAD's own rule.

Two figures are computed from the same Records:

- `accuracy` (the headline, strict): a failed request or an unparsable reply counts
  as wrong. Per dataset, each question type gets an accuracy (Anomaly Detection:
  MMAD's balanced one, the mean of the accuracy on normal and on anomalous images,
  over the classes present); a dataset's accuracy is the mean over its question types,
  the average the mean over datasets (MMAD's summary order).
- `accuracy_mmad`: MMAD's rule, recomputed from each Record's raw `text` (so
  `adbench score` applies it to old runs too). The answer is `adbench.answers.
  mmad_answer` (the last standalone A-E, else difflib's closest option: nearly every
  reply gets a letter); a record is dropped when its answer or gold is not one of A-E,
  which in practice means a failed request (no reply). Then, as in jam-cc/MMAD
  `evaluation/examples/helper/summary.py: caculate_accuracy_mmad`: Object Structure and
  Object Details pool into Object Analysis; a dataset x type cell whose records were
  all dropped is 0; the Anomaly Detection cell is (normal accuracy + anomalous
  accuracy) / 2 with an absent class counting 0; a dataset's figure is the mean over
  the types it has records of, the average the mean over datasets. Per type in
  `qtypes_mmad` (with `n_kept` / `n_dropped`). MMAD's loop removes items from the list
  it iterates, which skips the record after each dropped one; that is not copied.

Score-based models (Response.score, no answer) are decided here, by threshold rules
that live in this one place:
- `youden`: per dataset, the threshold maximising Youden's J on the evaluated set.
  It sees the labels, so it is an oracle and is labelled so wherever it is shown.
- `calibrated`: per dataset/category, the largest score of that group's normal
  calibration images (records with role "calibration"; no labels of the evaluated
  set are used); anomalous if the score is above it.
- `fixed`: one threshold for all (0.5 by default, the paper's CLIP setting).

A record whose score is NaN or infinite gets no decision under any rule (so it
counts as wrong) and is left out of thresholds and AUROC, like a failed record.
A score-based model has no reply to parse: its `accuracy_mmad` takes the rule's
decisions as the answers and drops the records without one (failed, non-finite
score), with MMAD's cells otherwise (absent class 0, all-dropped type 0).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import numpy as np

from adbench.answers import MMAD_LETTERS, mmad_answer
from adbench.errors import UserError
from adbench.metrics import (
    MetricError,
    accuracy,
    auroc,
    balanced_accuracy,
    balanced_accuracy_mmad,
    calibrated_threshold,
    youden_threshold,
)
from adbench.schema import Record

ANOMALY_DETECTION = "Anomaly Detection"
#: The headline decision rules for score-based models (`-T threshold=`; a number is the fixed threshold).
ThresholdRule = Literal["calibrated", "youden", "fixed"]
RULES: tuple[str, ...] = get_args(ThresholdRule)
METRICS = ("strict", "mmad")

#: MMAD's summary pools these question types into one.
MMAD_POOLED = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}

CorrectFn = Callable[[Record], bool]
#: MMAD's verdict on a record: True / False (kept, right or wrong), or None (dropped).
JudgeFn = Callable[[Record], bool | None]


def _has_score(r: Record) -> bool:
    return r.error is None and r.score is not None and math.isfinite(r.score)


def _is_score_based(records: Sequence[Record]) -> bool:
    answered = [r for r in records if r.error is None]
    return bool(answered) and all(r.score is not None and r.answer is None for r in answered)


def mmad_qtype(qtype: str) -> str:
    """The question type under which MMAD's summary counts `qtype`."""
    return MMAD_POOLED.get(qtype, qtype)


def mmad_verdict(r: Record) -> bool | None:
    """MMAD's verdict on a generative Record, from its raw text: None when MMAD's summary drops it."""
    if r.error is not None:  # a failed request has no reply to parse
        return None
    answer = mmad_answer(r.text, r.options)
    if answer not in MMAD_LETTERS or r.gold not in MMAD_LETTERS:
        return None
    return answer == r.gold


def _qtype_accuracy(recs: list[Record], correct: CorrectFn, qtype: str) -> float | None:
    c = [correct(r) for r in recs]
    if qtype == ANOMALY_DETECTION and all(r.label in (0, 1) for r in recs):
        return balanced_accuracy(c, [r.label for r in recs])
    return accuracy(c)


def _mmad_type_accuracy(kept: list[tuple[Record, bool]], qtype: str) -> float:
    """One dataset x type cell of MMAD's summary from its kept records: 0 when none is kept."""
    c = [v for _, v in kept]
    if qtype == ANOMALY_DETECTION and all(r.label in (0, 1) for r, _ in kept):
        return balanced_accuracy_mmad(c, [r.label for r, _ in kept])
    return accuracy(c) or 0.0


def _mmad_group(recs: list[Record], verdicts: dict[int, bool | None]) -> dict[str, Any]:
    """MMAD's figures of some records: per (pooled) question type, and their mean."""
    by_q: dict[str, list[Record]] = defaultdict(list)
    for r in recs:
        by_q[mmad_qtype(r.qtype)].append(r)
    qtypes: dict[str, Any] = {}
    for q, rs in sorted(by_q.items()):
        kept = [(r, v) for r in rs if (v := verdicts[id(r)]) is not None]
        qtypes[q] = {"accuracy_mmad": _mmad_type_accuracy(kept, q), "n_kept": len(kept),
                     "n_dropped": len(rs) - len(kept)}
    return {"accuracy_mmad": _mean(v["accuracy_mmad"] for v in qtypes.values()), "qtypes_mmad": qtypes}


def _group_accuracy(recs: list[Record], correct: CorrectFn, verdicts: dict[int, bool | None]) -> dict[str, Any]:
    """Mean over question types of each type's accuracy: strict, and MMAD's rule."""
    by_q: dict[str, list[Record]] = defaultdict(list)
    for r in recs:
        by_q[r.qtype].append(r)
    qtypes: dict[str, Any] = {}
    for q, rs in sorted(by_q.items()):
        qtypes[q] = {"accuracy": _qtype_accuracy(rs, correct, q), "n": len(rs)}
        if q == ANOMALY_DETECTION:
            for name, lab in (("accuracy_normal", 0), ("accuracy_anomalous", 1)):
                qtypes[q][name] = accuracy([correct(r) for r in rs if r.label == lab])
    mmad = _mmad_group(recs, verdicts)
    return {
        "accuracy": _mean(v["accuracy"] for v in qtypes.values()),
        "accuracy_mmad": mmad["accuracy_mmad"],
        "n": len(recs),
        "qtypes": qtypes,
        "qtypes_mmad": mmad["qtypes_mmad"],
    }


def _mean(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _average(table: dict[str, Any], n: int) -> dict[str, Any]:
    """The `average` entry: means over datasets (per type: over the datasets that have it)."""
    entries = [e for k, e in table.items() if k != "average"]

    def per_type(key: str, field: str) -> dict[str, Any]:
        names = sorted({q for e in entries for q in e.get(key, {})})
        return {q: {field: _mean(e[key][q][field] for e in entries if q in e.get(key, {}))} for q in names}

    return {
        "accuracy": _mean(e["accuracy"] for e in entries),
        "accuracy_mmad": _mean(e["accuracy_mmad"] for e in entries),
        "n": n,
        "qtypes": per_type("qtypes", "accuracy"),
        "qtypes_mmad": per_type("qtypes_mmad", "accuracy_mmad"),
    }


def metric_table(records: Sequence[Record], correct: CorrectFn, judge: JudgeFn = mmad_verdict) -> dict[str, Any]:
    """Per-dataset accuracies (with per-category and per-type detail) and their average.

    `correct` decides the strict figures; `judge` MMAD's (None: the record is dropped).
    """
    verdicts = {id(r): judge(r) for r in records}  # difflib once per record
    by_ds: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_ds[r.dataset].append(r)
    table: dict[str, Any] = {}
    for ds, recs in sorted(by_ds.items()):
        entry = _group_accuracy(recs, correct, verdicts)
        by_cat: dict[str, list[Record]] = defaultdict(list)
        for r in recs:
            by_cat[r.category].append(r)
        entry["categories"] = {c: _group_accuracy(rs, correct, verdicts) for c, rs in sorted(by_cat.items())}
        for c in entry["categories"].values():
            c.pop("qtypes")
            c.pop("qtypes_mmad")
        table[ds] = entry
    table["average"] = _average(table, len(records))
    return table


def _answer_correct(r: Record) -> bool:
    return bool(r.correct) and r.error is None


def threshold_decisions(
    evals: Sequence[Record], calibration: Sequence[Record], fixed: float = 0.5
) -> dict[str, dict[str, Any]]:
    """For each rule: thresholds used, per-record decisions (id -> 0/1) and notes."""
    out: dict[str, dict[str, Any]] = {}
    scored = [r for r in evals if _has_score(r)]

    # youden: one threshold per dataset, from the evaluated set's own labels (oracle)
    yd: dict[str, Any] = {"thresholds": {}, "decisions": {}, "notes": {}, "oracle": True}
    for ds in sorted({r.dataset for r in scored}):
        rs = [r for r in scored if r.dataset == ds]
        try:
            t = youden_threshold([r.score for r in rs], [r.label for r in rs])
        except MetricError as e:
            yd["notes"][ds] = str(e)
            continue
        yd["thresholds"][ds] = t
        yd["decisions"].update({r.id: int(r.score >= t) for r in rs})
    out["youden"] = yd

    # calibrated: one threshold per dataset/category, from normal calibration images only
    cal: dict[str, Any] = {"thresholds": {}, "decisions": {}, "notes": {}, "oracle": False}
    normal_scores: dict[str, list[float]] = defaultdict(list)
    for r in calibration:
        if _has_score(r):
            normal_scores[f"{r.dataset}/{r.category}"].append(r.score)
    for g in sorted({f"{r.dataset}/{r.category}" for r in scored}):
        if not normal_scores.get(g):
            cal["notes"][g] = "no calibration images"
            continue
        t = calibrated_threshold(normal_scores[g])
        cal["thresholds"][g] = t
        cal["decisions"].update({r.id: int(r.score > t) for r in scored if f"{r.dataset}/{r.category}" == g})
    out["calibrated"] = cal

    out["fixed"] = {
        "thresholds": {"all": fixed},
        "decisions": {r.id: int(r.score >= fixed) for r in scored},
        "notes": {},
        "oracle": False,
    }
    return out


def _rule_correct(decisions: dict[str, int]) -> CorrectFn:
    def correct(r: Record) -> bool:
        d = decisions.get(r.id)
        return d is not None and r.label is not None and d == r.label

    return correct


def _rule_verdict(decisions: dict[str, int]) -> JudgeFn:
    """MMAD's rule for a score-based model: the rule's decision is the answer; no decision: dropped."""

    def verdict(r: Record) -> bool | None:
        d = decisions.get(r.id)
        if d is None or r.label is None:
            return None
        return d == r.label

    return verdict


def _clear_undecided(table: dict[str, Any], decided: set[str]) -> None:
    """A rule that decided nothing in a dataset has no figure there (not 0), nor in the average."""
    for ds, entry in table.items():
        if ds == "average" or ds in decided:
            continue
        for group in (entry, *entry["categories"].values()):
            group["accuracy"] = group["accuracy_mmad"] = None
        for key in ("qtypes", "qtypes_mmad"):
            for q in entry[key].values():
                q.update({k: None for k in q if k.startswith("accuracy")})
    table["average"] = _average(table, table["average"]["n"])


def score_records(records: Sequence[Record], threshold: str | float = "calibrated") -> dict[str, Any]:
    """results.json's `metrics` and `counts` (plus `rules` for score-based models)."""
    evals = [r for r in records if r.role != "calibration"]
    calibration = [r for r in records if r.role == "calibration"]
    counts = {
        "n": len(evals),
        "n_failed": sum(r.failed for r in evals),
        "n_unparsed": sum(r.unparsed for r in evals),
    }
    if calibration:
        counts["n_calibration"] = len(calibration)
    if not _is_score_based(evals):
        return {"metrics": metric_table(evals, _answer_correct), "counts": counts}

    fixed = float(threshold) if not isinstance(threshold, str) else 0.5
    rule = threshold if isinstance(threshold, str) else "fixed"
    if rule not in RULES:
        raise UserError(f"unknown threshold rule {threshold!r}: use one of {', '.join(RULES)} or a number")
    decisions = threshold_decisions(evals, calibration, fixed=fixed)
    rules: dict[str, Any] = {}
    for name, d in decisions.items():
        table = metric_table(evals, _rule_correct(d["decisions"]), _rule_verdict(d["decisions"]))
        _clear_undecided(table, {r.dataset for r in evals if r.id in d["decisions"]})
        rules[name] = {
            "oracle": d["oracle"],
            "thresholds": d["thresholds"],
            "notes": d["notes"],
            "accuracy": {k: v["accuracy"] for k, v in table.items()},
            "accuracy_mmad": {k: v["accuracy_mmad"] for k, v in table.items()},
        }
        if name == rule:
            metrics = table
    for ds, entry in metrics.items():
        if ds == "average":
            continue
        rs = [r for r in evals if r.dataset == ds and _has_score(r)]
        try:
            entry["auroc"] = auroc([r.score for r in rs], [r.label for r in rs])
        except MetricError:
            entry["auroc"] = None
    metrics["average"]["auroc"] = _mean(e["auroc"] for k, e in metrics.items() if k != "average")
    return {"metrics": metrics, "counts": counts, "threshold_rule": rule, "rules": rules}


def require_mmad_figures(results: dict[str, Any]) -> None:
    """Refuse a results.json scored before MMAD's rule was computed (its `accuracy_mmad` meant something else)."""
    if "rules" in results:
        ok = all("accuracy_mmad" in r for r in results["rules"].values())
    else:
        ok = "qtypes_mmad" in results.get("metrics", {}).get("average", {})
    if not ok:
        name = results.get("run_id") or results.get("model")
        raise UserError(f"run {name!r} has no MMAD-rule figures in its results.json (scored by an older "
                         "adbench): run `adbench score RUN_DIR` first")


def record_correctness(
    result: dict[str, Any], records: Sequence[Record], rule: str | None = None, metric: str = "strict"
) -> dict[str, bool | None]:
    """Per-record correctness (id -> bool) for comparisons and reports, whatever the model kind.

    metric "strict": a failed, unparsed or undecided record is False. metric "mmad":
    MMAD's verdict, None for a record MMAD's rule drops.
    """
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    evals = [r for r in records if r.role != "calibration"]
    if "rules" not in result:
        judge: JudgeFn = _answer_correct if metric == "strict" else mmad_verdict
        return {r.id: judge(r) for r in evals}
    calibration = [r for r in records if r.role == "calibration"]
    rule = rule or result["threshold_rule"]
    fixed = result["rules"]["fixed"]["thresholds"]["all"]
    decisions = threshold_decisions(evals, calibration, fixed=fixed)[rule]["decisions"]
    judge = _rule_correct(decisions) if metric == "strict" else _rule_verdict(decisions)
    return {r.id: judge(r) for r in evals}
