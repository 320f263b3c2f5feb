import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

from adbench.metrics import (
    MetricError,
    accuracy,
    auroc,
    balanced_accuracy,
    calibrated_threshold,
    decide,
    youden_threshold,
)


def test_accuracy_by_hand():
    assert accuracy([True, False, True, True]) == 0.75
    assert accuracy([]) is None


def test_balanced_accuracy_by_hand_and_against_sklearn():
    labels = [0, 0, 0, 0, 1, 1]
    correct = [True, True, True, False, True, False]
    # normal 3/4, anomalous 1/2 -> (0.75 + 0.5) / 2
    assert balanced_accuracy(correct, labels) == pytest.approx(0.625)
    pred = [lab if c else 1 - lab for lab, c in zip(labels, correct)]
    assert balanced_accuracy(correct, labels) == pytest.approx(balanced_accuracy_score(labels, pred))
    assert balanced_accuracy([True, False], [1, 1]) == 0.5  # one class present: its accuracy


def test_auroc_matches_sklearn_on_random_sets():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 50)
        y[:2] = [0, 1]
        s = rng.normal(size=50).round(1)  # rounding creates ties
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s))
    with pytest.raises(MetricError):
        auroc([0.1, 0.2], [1, 1])


def _brute_force_best_j(s, y):
    best = -1.0
    for t in np.unique(s):
        p = (s >= t).astype(int)
        tpr = (p[y == 1] == 1).mean()
        fpr = (p[y == 0] == 1).mean()
        best = max(best, tpr - fpr)
    return best


def test_youden_threshold_maximises_j_and_breaks_ties_upward():
    rng = np.random.default_rng(1)
    for _ in range(30):
        y = rng.integers(0, 2, 40)
        y[:2] = [0, 1]
        s = rng.integers(0, 6, 40).astype(float)  # heavy ties
        t = youden_threshold(s, y)
        assert np.isfinite(t)
        p = decide(s, t)
        j = (p[y == 1] == 1).mean() - (p[y == 0] == 1).mean()
        assert j == pytest.approx(_brute_force_best_j(s, y))
        fpr, tpr, thr = roc_curve(y, s)
        best = (tpr - fpr)[np.isfinite(thr)].max()
        assert j == pytest.approx(best)
        # tie rule: no larger threshold reaches the same J
        for u in np.unique(s[s > t]):
            pu = decide(s, u)
            assert (pu[y == 1] == 1).mean() - (pu[y == 0] == 1).mean() < j - 1e-12


def test_youden_degenerate_cases():
    # all-equal scores: a finite threshold (everything anomalous), not +inf
    assert youden_threshold([0.3, 0.3, 0.3], [0, 1, 1]) == 0.3
    with pytest.raises(MetricError):
        youden_threshold([0.1, 0.9], [0, 0])
    # perfectly separable: threshold is the smallest anomalous score
    assert youden_threshold([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.8


def test_calibrated_threshold():
    assert calibrated_threshold([0.1, 0.4, 0.2]) == 0.4
    assert calibrated_threshold([0.0, 1.0], quantile=0.5) == 0.5
    with pytest.raises(MetricError):
        calibrated_threshold([])
