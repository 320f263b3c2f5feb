"""What the pictures show, as numbers: the engine's verdicts, decisions and thresholds arranged per figure.

`adbench.plots` draws these with matplotlib (`adbench plot`, and the HTML report); this
module decides nothing itself:

- `score_curves`: per dataset, the scores of normal and anomalous images, the ROC curve
  and AUROC, and for each threshold rule the run's tables show (`runs.run_variants`) its
  thresholds there and the operating point (FPR, TPR) of its decisions;
- `confusions`: per question type, true against answered. The Anomaly Detection
  question as normal / anomalous (a text model's answer read through its verdict: right
  means the true class, a wrong answer the other one; a score model's decision under
  its headline rule); other types as gold option letter against answered letter (every
  option letter of the type's questions, answered or not). A
  failed, unparsable or undecided reply is its own column, "no answer";
- `category_table`: per category, the accuracy and its bootstrap interval: the
  `categories` layout with `--ci` (`tables.table_of_runs`), for every row of the run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adbench.metrics import MetricError, auroc, roc_points
from adbench.results.runs import Run, run_variants
from adbench.results.tables import Table, table_of_runs
from adbench.results.verdicts import Judgement, finite_score, threshold_of
from adbench.schema import ANOMALOUS, ANOMALY_DETECTION, NORMAL

CLASSES = ("normal", "anomalous")
NO_ANSWER = "no answer"


@dataclass
class RuleMarks:
    """A threshold rule on one dataset: its thresholds (calibrated: one per category) and operating point."""

    rule: str
    label: str  # as the tables label its row: "youden*", "calibrated", "fixed (0.5)"
    thresholds: list[float]
    fpr: float | None  # of its decisions on the dataset's decided records
    tpr: float | None


@dataclass
class DatasetScores:
    dataset: str
    normal: np.ndarray
    anomalous: np.ndarray
    fpr: np.ndarray | None = None  # the ROC curve; None with one class
    tpr: np.ndarray | None = None
    auroc: float | None = None
    rules: list[RuleMarks] = field(default_factory=list)


def score_curves(j: Judgement, results: dict[str, Any]) -> list[DatasetScores]:
    """Per dataset with finite scores: both classes' scores, ROC, AUROC and the shown threshold rules."""
    by_ds: dict[str, list] = defaultdict(list)
    for r in j.records:
        if finite_score(r) and r.label in (NORMAL, ANOMALOUS):
            by_ds[r.dataset].append(r)
    # each rule the tables show, labelled with the tables' suffix (youden*, fixed (0.5)); calibrated by name
    shown = [(rule, "calibrated" if rule == "calibrated" else rule + suffix)
             for rule, suffix in run_variants(results) if rule is not None] if j.score_based else []
    out = []
    for ds, recs in sorted(by_ds.items()):
        scores = np.array([r.score for r in recs], dtype=float)
        labels = np.array([r.label for r in recs])
        d = DatasetScores(ds, scores[labels == NORMAL], scores[labels == ANOMALOUS])
        try:
            d.fpr, d.tpr = roc_points(scores, labels)
            d.auroc = auroc(scores, labels)
        except MetricError:
            pass
        for rule, label in shown:
            v = j.variants[rule]
            thresholds = sorted({t for t in (threshold_of(r, v.thresholds) for r in recs) if t is not None})
            decided = [(v.decisions[r.id], r.label) for r in recs if r.id in v.decisions]
            fpr = tpr = None
            if decided:
                dec, lab = np.array(decided).T
                fpr = float(dec[lab == NORMAL].mean()) if (lab == NORMAL).any() else None
                tpr = float(dec[lab == ANOMALOUS].mean()) if (lab == ANOMALOUS).any() else None
            d.rules.append(RuleMarks(rule, label, thresholds, fpr, tpr))
        out.append(d)
    return out


@dataclass
class Confusion:
    qtype: str
    true: list[str]  # row names
    predicted: list[str]  # column names (the last one NO_ANSWER)
    counts: np.ndarray  # (len(true), len(predicted))

    def count(self, true: str, predicted: str) -> int:
        return int(self.counts[self.true.index(true), self.predicted.index(predicted)])


def _matrix(qtype: str, pairs: list[tuple[str, str]], true: list[str], predicted: list[str]) -> Confusion:
    counts = np.zeros((len(true), len(predicted)), dtype=np.int64)
    for t, p in pairs:
        counts[true.index(t), predicted.index(p)] += 1
    return Confusion(qtype, true, predicted, counts)


def confusions(j: Judgement) -> list[Confusion]:
    """One matrix per question type of the run's evaluated records (headline variant)."""
    v = j.variants[j.headline]
    by_type: dict[str, list[tuple[str, str]]] = defaultdict(list)
    letters: dict[str, set[str]] = defaultdict(set)
    for r, correct in zip(j.records, v.correct):
        if r.qtype == ANOMALY_DETECTION:
            if r.label not in (NORMAL, ANOMALOUS):
                continue
            if j.score_based:
                d = v.decisions.get(r.id)
                pred = NO_ANSWER if d is None else CLASSES[d]
            elif correct:
                pred = CLASSES[r.label]
            elif r.error is None and r.answer is not None:
                pred = CLASSES[1 - r.label]  # yes/no: a wrong answer is the other class
            else:
                pred = NO_ANSWER
            by_type[r.qtype].append((CLASSES[r.label], pred))
        else:
            answered = r.error is None and r.answer is not None
            by_type[r.qtype].append((r.gold, r.answer if answered else NO_ANSWER))
            letters[r.qtype].update(r.options)
    out = []
    for qtype, pairs in sorted(by_type.items(), key=lambda kv: (kv[0] != ANOMALY_DETECTION, kv[0])):
        if qtype == ANOMALY_DETECTION:
            out.append(_matrix(qtype, pairs, list(CLASSES), [*CLASSES, NO_ANSWER]))
        else:  # every option letter shown, answered or not, and any other letter a model answered
            names = sorted(letters[qtype] | {t for t, _ in pairs} | {p for _, p in pairs if p != NO_ANSWER})
            out.append(_matrix(qtype, pairs, names, [*names, NO_ANSWER]))
    return out


def category_table(run: Run, *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> Table:
    """The run's per-category accuracies with bootstrap intervals (the `categories` layout with `--ci`)."""
    return table_of_runs("categories", [run], ci=True, n_resamples=n_resamples, confidence=confidence, seed=seed)
