import pytest

from adbench.results import record_correctness, score_records
from adbench.schema import ParseStatus, Record


def rec(i, ds, qtype, label, correct, *, cat="c", error=None, status=ParseStatus.PARSED, score=None, role="eval", answer="A"):
    # the reply text agrees with `correct` (gold is A): "A" when right, "B" when wrong, "Maybe." when unparsed
    text = None if (error or score is not None) else "Maybe." if status == ParseStatus.UNPARSED else "A" if correct else "B"
    return Record(id=f"{ds}-{i}", dataset=ds, category=cat, qtype=qtype, label=label, gold="A", image=f"{i}.png",
                  text=text, answer=None if (error or status == ParseStatus.UNPARSED or score is not None) else answer,
                  score=score, correct=None if score is not None else correct, error=error,
                  parse_status=status if score is None else "n/a", role=role,
                  options={} if score is not None else {"A": "Yes.", "B": "No."})


AD, DC = "Anomaly Detection", "Defect Classification"


def test_mmad_balanced_accuracy_and_average_by_hand():
    records = [
        # dataset X, AD: normals 2/2 right, anomalous 1/2 right -> (1 + 0.5)/2 = 0.75
        rec(1, "X", AD, 0, True), rec(2, "X", AD, 0, True), rec(3, "X", AD, 1, True), rec(4, "X", AD, 1, False),
        # dataset X, DC: 1/2 -> 0.5 ; dataset X accuracy = mean(0.75, 0.5) = 0.625
        rec(5, "X", DC, 1, True), rec(6, "X", DC, 1, False),
        # dataset Y, AD: normal 1/1, anomalous: one failed (wrong), one unparsed (wrong) -> (1 + 0)/2 = 0.5
        rec(7, "Y", AD, 0, True), rec(8, "Y", AD, 1, False, error="boom"), rec(9, "Y", AD, 1, False, status=ParseStatus.UNPARSED),
    ]
    out = score_records(records)
    m = out["metrics"]
    assert m["X"]["qtypes"][AD]["accuracy"] == pytest.approx(0.75)
    assert m["X"]["qtypes"][DC]["accuracy"] == pytest.approx(0.5)
    assert m["X"]["accuracy"] == pytest.approx(0.625)
    assert m["Y"]["accuracy"] == pytest.approx(0.5)
    # MMAD's rule drops only the failed request; the unparsed "Maybe." gets difflib's closest option:
    # "Yes." (common "e." -> ratio 2*2/10 = 0.4) beats "No." (common "." -> 2/9), so A = gold: right.
    # Y under MMAD: normal 1/1, anomalous 1/1 -> 1.0 ; X agrees with the strict figures.
    assert m["Y"]["accuracy_mmad"] == pytest.approx(1.0)
    assert m["Y"]["qtypes_mmad"][AD] == {"accuracy_mmad": 1.0, "n_kept": 2, "n_dropped": 1}
    assert m["X"]["accuracy_mmad"] == pytest.approx(0.625)
    assert m["average"]["accuracy"] == pytest.approx((0.625 + 0.5) / 2)
    assert m["average"]["qtypes"][AD]["accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    assert out["counts"] == {"n": 9, "n_failed": 1, "n_unparsed": 1}
    assert m["X"]["categories"]["c"]["accuracy"] == pytest.approx(0.625)


def test_score_based_rules():
    # dataset X: normals 0.1 0.2 0.3, anomalous 0.25 0.9 ; calibration normals of X/c: 0.2 0.22
    recs = [rec(i, "X", AD, lab, None, score=s) for i, (lab, s) in
            enumerate([(0, 0.1), (0, 0.2), (0, 0.3), (1, 0.25), (1, 0.9)])]
    cal = [rec(10 + i, "X", AD, 0, None, score=s, role="calibration") for i, s in enumerate([0.2, 0.22])]
    out = score_records(recs + cal, threshold="calibrated")
    rules = out["rules"]
    assert out["counts"]["n"] == 5 and out["counts"]["n_calibration"] == 2
    # calibrated threshold = max normal calibration score 0.22; anomalous if > 0.22:
    # predictions 0,0,1 | 1,1 -> normal acc 2/3, anomalous 1 -> 5/6
    assert rules["calibrated"]["thresholds"]["X/c"] == pytest.approx(0.22)
    assert rules["calibrated"]["accuracy"]["X"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["metrics"]["X"]["accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    # youden: best J: t=0.25 -> tpr 1, fpr 1/3 (J=2/3); t=0.9 -> tpr .5 fpr 0 (J=.5) -> 0.25
    assert rules["youden"]["thresholds"]["X"] == pytest.approx(0.25)
    assert rules["youden"]["oracle"] is True
    # fixed 0.5: only 0.9 anomalous -> normal 1, anomalous 0.5 -> 0.75
    assert rules["fixed"]["accuracy"]["X"] == pytest.approx(0.75)
    assert out["metrics"]["X"]["auroc"] == pytest.approx(5 / 6)
    correct = record_correctness(out, recs + cal, "fixed")
    assert [correct[r.id] for r in recs] == [True, True, True, False, True]


def test_fixed_threshold_number_as_headline():
    recs = [rec(i, "X", AD, lab, None, score=s) for i, (lab, s) in enumerate([(0, 0.4), (1, 0.6)])]
    out = score_records(recs, threshold=0.5)
    assert out["threshold_rule"] == "fixed"
    assert out["metrics"]["X"]["accuracy"] == 1.0
    assert out["rules"]["calibrated"]["notes"] == {"X/c": "no calibration images"}
    assert out["rules"]["calibrated"]["accuracy"]["X"] is None  # no calibration: no figure, not 0
