"""Metric functions on plain arrays: accuracy, MMAD's balanced accuracy, AUROC, thresholds,
bootstrap confidence intervals and McNemar's test.

Scoring of Records into results.json lives in `adbench.results`; this module only
computes numbers, so each function can be checked against scikit-learn or by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from adbench.errors import UserError


class MetricError(UserError):
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


def balanced_accuracy_mmad(correct: Sequence[bool], labels: Sequence[int]) -> float:
    """MMAD summary's Anomaly Detection accuracy: (normal accuracy + anomalous accuracy) / 2,
    where a class without samples counts 0 (jam-cc/MMAD `evaluation/examples/helper/
    summary.py: caculate_accuracy_mmad`), unlike `balanced_accuracy`. No samples at all: 0.
    """
    c = np.asarray(correct, dtype=bool)
    y = np.asarray(labels)
    parts = [float(c[y == k].mean()) if (y == k).any() else 0.0 for k in (0, 1)]
    return (parts[0] + parts[1]) / 2


def _finite(scores: Sequence[float], what: str) -> np.ndarray:
    """Scores as floats; NaN or infinite scores are a MetricError (sklearn would raise ValueError)."""
    s = np.asarray(scores, dtype=float)
    bad = int((~np.isfinite(s)).sum())
    if bad:
        raise MetricError(f"{what} needs finite scores; {bad} of {s.size} are NaN or infinite")
    return s


def _both_classes(labels: Sequence[int], what: str) -> np.ndarray:
    """Labels as an array; a single class is a MetricError (no ROC curve to draw)."""
    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        raise MetricError(f"{what} needs both normal and anomalous samples")
    return y


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (label 1 = anomalous = positive); needs both classes.

    Tied scores count half (sklearn's rule), so all-equal scores give 0.5.
    """
    from sklearn.metrics import roc_auc_score

    y = _both_classes(labels, "AUROC")
    return float(roc_auc_score(y, _finite(scores, "AUROC")))


def roc_points(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve (false positive rate, true positive rate), from (0, 0) to (1, 1); needs both classes."""
    from sklearn.metrics import roc_curve

    y = _both_classes(labels, "a ROC curve")
    fpr, tpr, _ = roc_curve(y, _finite(scores, "a ROC curve"))
    return fpr, tpr


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

    y = _both_classes(labels, "Youden's J")
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


# -- uncertainty and paired significance ---------------------------------------------------

#: Below this many discordant pairs McNemar's test uses the exact binomial distribution;
#: from it on, the chi-square approximation (with continuity correction) is close enough.
MCNEMAR_EXACT_BELOW = 25


def bootstrap_ci(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    strata: Sequence[Hashable] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_cells: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap confidence interval of a statistic of `n` samples.

    `statistic(idx)` gets a (B, n) integer array, each row one resample given as
    indices into the original samples, and returns B values (shape (B,)) or B rows of
    k values (shape (B, k)): it is vectorised so that thousands of resamples cost a
    few array operations. With `strata` (one key per sample) every resample draws,
    with replacement, as many samples from each stratum as it holds, and an index
    stays inside its stratum's positions: a figure that averages per-dataset
    accuracies is then resampled within each dataset. Seeded (numpy PCG64), so the
    same call gives the same interval. Resamples are drawn in chunks of at most
    `max_cells` indices to bound memory on large runs.

    Returns (low, high), the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of
    the bootstrap distribution: 0-d arrays (use float()) for a (B,) statistic, arrays of
    k values for a (B, k) one.
    """
    if n < 1:
        raise MetricError("bootstrap needs at least one sample")
    if not 0 < confidence < 1:
        raise MetricError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise MetricError(f"n_resamples must be positive, got {n_resamples}")
    keys = [0] * n if strata is None else list(strata)
    if len(keys) != n:
        raise ValueError(f"strata has {len(keys)} keys for {n} samples")
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    positions = [np.asarray(v, dtype=np.int64) for v in groups.values()]
    rng = np.random.Generator(np.random.PCG64(seed))
    chunk = max(1, min(n_resamples, max_cells // n))
    values = []
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = np.empty((b, n), dtype=np.int64)
        for pos in positions:  # each stratum refills its own columns from its own members
            idx[:, pos] = pos[rng.integers(0, len(pos), size=(b, len(pos)))]
        values.append(np.asarray(statistic(idx), dtype=float))
    dist = np.concatenate(values, axis=0)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(dist, [alpha, 1 - alpha], axis=0)
    return low, high


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test of two classifiers on the same samples.

    only_a: samples A got right and B wrong; only_b: the reverse (the discordant pairs).
    statistic: the continuity-corrected chi-square statistic max(|only_a - only_b| - 1, 0)^2
    / (only_a + only_b) (0 when there are no discordant pairs), given whichever method
    produced the p-value. method: "exact" (two-sided binomial test of only_a among the
    discordant pairs with p = 1/2) or "chi2" (chi-square, 1 degree of freedom, with the
    continuity correction).
    """

    only_a: int
    only_b: int
    statistic: float
    p_value: float
    method: str

    @property
    def discordant(self) -> int:
        return self.only_a + self.only_b


def mcnemar(
    a_correct: Sequence[bool], b_correct: Sequence[bool], *, exact_below: int = MCNEMAR_EXACT_BELOW
) -> McNemarResult:
    """McNemar's test on paired per-sample correctness of two models (same samples, same order).

    Exact binomial p-value when there are fewer than `exact_below` discordant pairs
    (the chi-square approximation is poor there), else chi-square with continuity
    correction. Only the discordant pairs carry information; samples both models got
    right or both got wrong do not enter.
    """
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"McNemar needs two equally long 1-D sequences, got {a.shape} and {b.shape}")
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    d = only_a + only_b
    if d == 0:
        return McNemarResult(0, 0, 0.0, 1.0, "exact")
    stat = max(abs(only_a - only_b) - 1, 0) ** 2 / d
    if d < exact_below:
        k = min(only_a, only_b)
        tail = sum(math.comb(d, i) for i in range(k + 1)) / 2**d
        return McNemarResult(only_a, only_b, float(stat), float(min(1.0, 2 * tail)), "exact")
    # chi-square with one degree of freedom: P(X > s) = erfc(sqrt(s / 2))
    return McNemarResult(only_a, only_b, float(stat), float(math.erfc(math.sqrt(stat / 2))), "chi2")
