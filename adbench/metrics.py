"""Metric functions on plain arrays: accuracy, MMAD's balanced accuracy, AUROC, thresholds.

Scoring of Records into results.json lives in `adbench.scoring`; this module only
computes numbers, so each function can be checked against scikit-learn or by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class MetricError(ValueError):
    """A metric that is undefined for the given data (e.g. AUROC on one class)."""


def accuracy(correct: Sequence[bool]) -> float | None:
    """Share of True values; None for an empty list."""
    if len(correct) == 0:
        return None
    return float(np.mean(np.asarray(correct, dtype=bool)))


def balanced_accuracy(correct: Sequence[bool], labels: Sequence[int]) -> float | None:
    """MMAD's Anomaly Detection accuracy: (accuracy on normal + accuracy on anomalous) / 2.

    With only one class present it is that class's accuracy (MMAD computes the mean of
    the classes that occur).
    """
    c = np.asarray(correct, dtype=bool)
    y = np.asarray(labels)
    parts = [float(c[y == k].mean()) for k in (0, 1) if (y == k).any()]
    return float(np.mean(parts)) if parts else None


def _finite(scores: Sequence[float], what: str) -> np.ndarray:
    """Scores as floats; NaN or infinite scores are a MetricError (sklearn would raise ValueError)."""
    s = np.asarray(scores, dtype=float)
    bad = int((~np.isfinite(s)).sum())
    if bad:
        raise MetricError(f"{what} needs finite scores; {bad} of {s.size} are NaN or infinite")
    return s


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (label 1 = anomalous = positive); needs both classes.

    Tied scores count half (sklearn's rule), so all-equal scores give 0.5.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        raise MetricError("AUROC needs both normal and anomalous samples")
    return float(roc_auc_score(y, _finite(scores, "AUROC")))


def youden_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The threshold that maximises Youden's J = TPR - FPR (decision: anomalous if score >= t).

    sklearn's roc_curve starts with an infinite threshold (predict nothing anomalous);
    it is never returned. Ties between equal J values are broken by taking the largest
    threshold (the most conservative rule, fewest alarms). All-equal scores give that
    score (everything anomalous, J = 0). A single-class set, or a NaN or infinite
    score, raises MetricError (scoring then reports no Youden threshold for that
    dataset, with the reason, instead of crashing).
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        raise MetricError("Youden's J needs both normal and anomalous samples")
    fpr, tpr, thr = roc_curve(y, _finite(scores, "Youden's J"), drop_intermediate=False)
    finite = np.isfinite(thr)
    j = np.where(finite, tpr - fpr, -np.inf)
    best = j.max()
    candidates = thr[(j == best) & finite]
    return float(candidates.max())


def calibrated_threshold(normal_scores: Sequence[float], quantile: float = 1.0) -> float:
    """A threshold from normal images only: the `quantile` of their scores (default: max).

    Decision: anomalous if score > threshold, so every calibration image is normal
    at quantile 1.0.
    """
    s = np.asarray(normal_scores, dtype=float)
    if s.size == 0:
        raise MetricError("no normal calibration scores")
    return float(np.quantile(s, quantile))


def decide(scores: Sequence[float], threshold: float, *, strict: bool = False) -> np.ndarray:
    """Anomalous (1) where score >= threshold (or > with strict), else normal (0)."""
    s = np.asarray(scores, dtype=float)
    return (s > threshold if strict else s >= threshold).astype(int)


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
