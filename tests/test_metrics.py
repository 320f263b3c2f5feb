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


# --------------------------------------------------------------------------- thresholds vs scikit-learn
# The CLIP baselines are decided at Youden's-J threshold and at 0.5; these pin the rule
# (decision: anomalous if score >= t) to scikit-learn's ROC on random sets.


def _score_sets():
    """(scores, labels) pairs: continuous, heavy ties, all-equal, reversed, separable, one-of-a-class."""
    rng = np.random.default_rng(7)
    sets = []
    for n in (5, 17, 60):
        for _ in range(8):
            y = rng.integers(0, 2, n)
            y[:2] = [0, 1]
            sets.append((rng.random(n), y))  # continuous, no ties
            sets.append((rng.integers(0, 4, n) / 4.0, y))  # heavy ties
            sets.append((np.full(n, 0.5), y))  # all equal
            sets.append((1.0 - y * 0.5 - rng.random(n) * 0.1, y))  # anomalies score lower
            sets.append((y + rng.random(n) * 0.1, y))  # perfectly separable
    sets.append((np.array([0.2, 0.9, 0.4]), np.array([0, 1, 0])))  # a single anomalous sample
    return sets


def test_youden_and_auroc_match_sklearn_on_random_sets_with_ties_and_degenerate_sets():
    for s, y in _score_sets():
        t = youden_threshold(s, y)
        assert np.isfinite(t) and t in set(s.tolist())  # a real score, never sklearn's +inf start
        fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
        j_all = tpr - fpr  # includes the +inf threshold (J = 0): excluding it never loses
        p = decide(s, t)
        j = (p[y == 1] == 1).mean() - (p[y == 0] == 1).mean()
        assert j == pytest.approx(j_all.max())
        # tie rule: the largest of sklearn's finite thresholds that reach the best J
        best = np.isclose(j_all, j_all.max()) & np.isfinite(thr)
        assert t == thr[best].max()
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_all_equal_scores_give_a_defined_threshold_and_auroc_one_half():
    s, y = [0.7] * 6, [0, 1, 0, 1, 1, 0]
    assert youden_threshold(s, y) == 0.7  # everything anomalous, J = 0
    assert auroc(s, y) == 0.5 == roc_auc_score(y, s)


def test_single_class_and_non_finite_scores_are_clear_errors():
    for labels in ([0, 0, 0], [1, 1, 1]):
        with pytest.raises(MetricError, match="both normal and anomalous"):
            youden_threshold([0.1, 0.5, 0.9], labels)
        with pytest.raises(MetricError, match="both normal and anomalous"):
            auroc([0.1, 0.5, 0.9], labels)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(MetricError, match="1 of 3 are NaN or infinite"):
            youden_threshold([0.1, bad, 0.9], [0, 1, 1])
        with pytest.raises(MetricError, match="NaN or infinite"):
            auroc([0.1, bad, 0.9], [0, 1, 1])


def _score_record(i, ds, label, score, role="eval"):
    from adbench.schema import Record

    return Record(id=f"{ds}-{role}-{i}", dataset=ds, category="c", qtype="Anomaly Detection", label=label,
                  gold="A" if label else "B", image=f"{i}.png", text=None, answer=None, score=score,
                  correct=None, error=None, parse_status="n/a", role=role)


def test_scoring_gives_defined_results_for_degenerate_datasets():
    from adbench.results import score_records

    records = [
        # "One": normal images only -> no Youden threshold, no AUROC, but fixed and calibrated decide
        *(_score_record(i, "One", 0, s) for i, s in enumerate([0.2, 0.6, 0.4])),
        # "Flat": every score equal -> threshold = that score, J = 0, AUROC 0.5
        *(_score_record(i, "Flat", lab, 0.3) for i, lab in enumerate([0, 1, 0, 1])),
        # "NaN": one score is NaN -> that record is undecided (wrong); the rest are scored
        _score_record(0, "NaN", 0, 0.1), _score_record(1, "NaN", 1, 0.9), _score_record(2, "NaN", 1, float("nan")),
        *(_score_record(i, ds, 0, 0.5, role="calibration") for i, ds in enumerate(["One", "Flat", "NaN"])),
    ]
    out = score_records(records, threshold="youden")
    youden, fixed = out["rules"]["youden"], out["rules"]["fixed"]
    assert "One" not in youden["thresholds"] and "both normal and anomalous" in youden["notes"]["One"]
    assert youden["accuracy"]["One"] is None
    assert fixed["accuracy"]["One"] == pytest.approx(2 / 3)  # 0.6 >= 0.5 is a false alarm
    assert youden["thresholds"]["Flat"] == 0.3 and youden["accuracy"]["Flat"] == pytest.approx(0.5)
    assert youden["thresholds"]["NaN"] == 0.9
    # NaN record wrong: normal 1/1, anomalous 1/2 -> balanced 0.75
    assert youden["accuracy"]["NaN"] == pytest.approx(0.75)
    assert out["metrics"]["One"]["auroc"] is None
    assert out["metrics"]["Flat"]["auroc"] == 0.5
    assert out["metrics"]["NaN"]["auroc"] == 1.0
    assert all(np.isfinite(t) for t in youden["thresholds"].values())
