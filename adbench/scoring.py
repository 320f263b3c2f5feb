"""Records -> results.json metrics, MMAD's way.

Headline accuracy counts a failed or unparsable response as wrong. MMAD's own
convention (drop them from numerator and denominator) is reported next to it as
`accuracy_mmad`. Per dataset, each question type gets an accuracy (the Anomaly
Detection type MMAD's balanced one: mean of the accuracy on normal and on
anomalous images); a dataset's accuracy is the mean over its question types, and the
average is the mean over datasets (MMAD's summary order).

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
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from adbench.metrics import (
    MetricError,
    accuracy,
    auroc,
    balanced_accuracy,
    calibrated_threshold,
    youden_threshold,
)
from adbench.schema import Record

ANOMALY_DETECTION = "Anomaly Detection"
RULES = ("calibrated", "youden", "fixed")

CorrectFn = Callable[[Record], bool]


def _has_score(r: Record) -> bool:
    return r.error is None and r.score is not None and math.isfinite(r.score)


def _is_score_based(records: Sequence[Record]) -> bool:
    answered = [r for r in records if r.error is None]
    return bool(answered) and all(r.score is not None and r.answer is None for r in answered)


def _qtype_accuracy(recs: list[Record], correct: CorrectFn, qtype: str) -> float | None:
    c = [correct(r) for r in recs]
    if qtype == ANOMALY_DETECTION and all(r.label in (0, 1) for r in recs):
        return balanced_accuracy(c, [r.label for r in recs])
    return accuracy(c)


def _group_accuracy(recs: list[Record], correct: CorrectFn) -> dict[str, Any]:
    """Mean over question types of each type's accuracy, with and without dropped replies."""
    by_q: dict[str, list[Record]] = defaultdict(list)
    for r in recs:
        by_q[r.qtype].append(r)
    qtypes: dict[str, Any] = {}
    for q, rs in sorted(by_q.items()):
        kept = [r for r in rs if not (r.failed or r.unparsed)]
        qtypes[q] = {
            "accuracy": _qtype_accuracy(rs, correct, q),
            "accuracy_mmad": _qtype_accuracy(kept, correct, q) if kept else None,
            "n": len(rs),
        }
        if q == ANOMALY_DETECTION:
            for name, lab in (("accuracy_normal", 0), ("accuracy_anomalous", 1)):
                qtypes[q][name] = accuracy([correct(r) for r in rs if r.label == lab])
    return {
        "accuracy": _mean(v["accuracy"] for v in qtypes.values()),
        "accuracy_mmad": _mean(v["accuracy_mmad"] for v in qtypes.values()),
        "n": len(recs),
        "qtypes": qtypes,
    }


def _mean(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def metric_table(records: Sequence[Record], correct: CorrectFn) -> dict[str, Any]:
    """Per-dataset accuracies (with per-category and per-type detail) and their average."""
    by_ds: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_ds[r.dataset].append(r)
    table: dict[str, Any] = {}
    for ds, recs in sorted(by_ds.items()):
        entry = _group_accuracy(recs, correct)
        by_cat: dict[str, list[Record]] = defaultdict(list)
        for r in recs:
            by_cat[r.category].append(r)
        entry["categories"] = {c: _group_accuracy(rs, correct) for c, rs in sorted(by_cat.items())}
        for c in entry["categories"].values():
            c.pop("qtypes")
        table[ds] = entry
    qnames = sorted({q for e in table.values() for q in e["qtypes"]})
    table["average"] = {
        "accuracy": _mean(e["accuracy"] for e in table.values()),
        "accuracy_mmad": _mean(e["accuracy_mmad"] for e in table.values()),
        "n": len(records),
        "qtypes": {
            q: {
                "accuracy": _mean(e["qtypes"][q]["accuracy"] for e in table.values() if q in e.get("qtypes", {})),
                "accuracy_mmad": _mean(
                    e["qtypes"][q]["accuracy_mmad"] for e in table.values() if q in e.get("qtypes", {})
                ),
            }
            for q in qnames
        },
    }
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
        raise ValueError(f"unknown threshold rule {threshold!r}: use one of {', '.join(RULES)} or a number")
    decisions = threshold_decisions(evals, calibration, fixed=fixed)
    rules: dict[str, Any] = {}
    for name, d in decisions.items():
        table = metric_table(evals, _rule_correct(d["decisions"]))
        decided = {r.dataset for r in evals if r.id in d["decisions"]}
        for ds in table:  # a rule that decided nothing in a dataset has no accuracy there
            if ds != "average" and ds not in decided:
                table[ds]["accuracy"] = table[ds]["accuracy_mmad"] = None
        if not decided:
            table["average"]["accuracy"] = table["average"]["accuracy_mmad"] = None
        rules[name] = {
            "oracle": d["oracle"],
            "thresholds": d["thresholds"],
            "notes": d["notes"],
            "accuracy": {k: v["accuracy"] for k, v in table.items()},
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


def record_correctness(result: dict[str, Any], records: Sequence[Record], rule: str | None = None) -> dict[str, bool]:
    """Per-record correctness (id -> bool) for comparisons and reports, whatever the model kind."""
    evals = [r for r in records if r.role != "calibration"]
    if "rules" not in result:
        return {r.id: _answer_correct(r) for r in evals}
    calibration = [r for r in records if r.role == "calibration"]
    rule = rule or result["threshold_rule"]
    fixed = result["rules"]["fixed"]["thresholds"]["all"]
    decisions = threshold_decisions(evals, calibration, fixed=fixed)[rule]["decisions"]
    correct = _rule_correct(decisions)
    return {r.id: correct(r) for r in evals}
