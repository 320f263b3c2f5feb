"""Rewards on hand-computed cases (paper Eq. 4-7 and the released constants)."""

import math

import numpy as np
import pytest

from adbench.schema import Box
from adbench.training.rewards import (
    classification_reward,
    count_reward,
    focus_reward,
    localization_reward,
    random_reward,
)

GT = [Box(0, 0, 10, 10), Box(20, 20, 30, 30)]


def test_count_and_focus_tables():
    assert [count_reward(m, 2) for m in (2, 1, 3, 0, 4, 7)] == [1.0, 0.5, 0.5, -0.1, -0.1, -0.1]
    assert [focus_reward(m) for m in (0, 1, 2, 5)] == [0.0, 0.5, -0.1, -0.1]


def test_perfect_match():
    assert localization_reward(GT, GT, True, alpha=0.3) == pytest.approx(1.0 + 0.3 * 1.0)
    assert localization_reward(GT, GT, True, alpha=0.3, variant="released") == 1.0  # (1.3+.5)/1.5 clipped


def test_shifted_box_by_hand():
    # pred (5,0,15,10) vs gt (0,0,10,10): inter 50, union 150, hull 150 -> GIoU = 1/3
    r = localization_reward([Box(5, 0, 15, 10)], [GT[0]], True, alpha=0.3)
    assert r == pytest.approx(1 / 3 + 0.3)
    rel = localization_reward([Box(5, 0, 15, 10)], [GT[0]], True, alpha=0.3, variant="released")
    assert rel == pytest.approx((1 / 3 + 0.3 + 0.5) / 1.5)


def test_more_predictions_than_gt():
    # m = 3, n = 2: both GT matched perfectly, the extra box is unmatched; |m-n| = 1 -> 0.5
    pred = [GT[1], Box(100, 100, 110, 110), GT[0]]
    assert localization_reward(pred, GT, True, alpha=0.3) == pytest.approx(1.0 + 0.15)
    # released: mean over all 3 predictions, the unmatched one counting 0 -> 2/3 + 0.15
    rel = localization_reward(pred, GT, True, alpha=0.3, variant="released")
    assert rel == pytest.approx((2 / 3 + 0.15 + 0.5) / 1.5)


def test_fewer_predictions_than_gt():
    # m = 1, n = 2: one perfect match; mean over the matched pair = 1; count 0.5
    assert localization_reward([GT[0]], GT, True, alpha=0.3) == pytest.approx(1.0 + 0.15)


def test_no_prediction_on_anomalous():
    # paper: empty matching -> mean GIoU 0; |0 - 2| = 2 -> -0.1
    assert localization_reward([], GT, True, alpha=0.3) == pytest.approx(-0.03)
    assert localization_reward([], [GT[0]], True, alpha=0.3) == pytest.approx(0.15)
    assert localization_reward([], GT, True, variant="released") == 0.0


def test_count_off_by_two_or_more():
    pred = [GT[0], GT[1], Box(40, 40, 50, 50), Box(60, 60, 70, 70)]
    assert localization_reward(pred, GT, True, alpha=0.3) == pytest.approx(1.0 - 0.03)
    # a far-away single box: GIoU by hand. pred (40,40,50,50) vs gt (0,0,10,10): inter 0, union 200, hull 2500
    far = 0 - (2500 - 200) / 2500
    assert localization_reward([Box(40, 40, 50, 50)], [GT[0]], True, alpha=0.3) == pytest.approx(far + 0.3)
    released = localization_reward([Box(40, 40, 50, 50)], [GT[0]], True, alpha=0.3, variant="released")
    assert released == pytest.approx(max(0.0, (far + 0.3 + 0.5) / 1.5))


def test_normal_images_focus():
    for variant in ("paper", "released"):
        assert localization_reward([], [], False, variant=variant) == 0.0
        assert localization_reward([Box(1, 1, 5, 5)], [], False, variant=variant) == 0.5
        assert localization_reward([Box(1, 1, 5, 5), Box(6, 6, 9, 9)], [], False, variant=variant) == -0.1


def test_degenerate_boxes_are_finite():
    inverted = [Box(10, 10, 0, 0)]  # the same box as GT[0] with swapped corners
    assert localization_reward(inverted, [GT[0]], True, alpha=0.3) == pytest.approx(1.3)
    zero = [Box(5, 5, 5, 5), Box(3, 3, 3, 9)]
    for variant in ("paper", "released"):
        r = localization_reward(zero, GT, True, variant=variant)
        assert math.isfinite(r)


def test_anomalous_without_gt_boxes():
    assert localization_reward([Box(1, 1, 2, 2)], [], True) == 0.0  # paper: cannot judge localization
    assert localization_reward([Box(1, 1, 2, 2)], [], True, variant="released") == 0.5  # release: r_focus
    assert localization_reward([], [], True, variant="released") == 0.0


def test_classification_reward_variants():
    assert classification_reward("A", "A") == 1.0
    assert classification_reward(" a ", "A") == 1.0
    assert classification_reward("B", "A") == 0.0
    assert classification_reward(None, "A") == 0.0
    assert classification_reward("(a)", "a") == 0.0
    assert classification_reward("(a)", "a", variant="released") == 0.8
    assert classification_reward("a long answer about b", "a", variant="released") == 0.0
    with pytest.raises(ValueError, match="unknown reward variant"):
        classification_reward("a", "a", variant="nope")


def test_random_reward_is_seeded_and_zero_mean():
    a = [random_reward(np.random.default_rng(3), 0.1) for _ in range(3)]
    b = [random_reward(np.random.default_rng(3), 0.1) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(0)
    xs = np.array([random_reward(rng, 0.1) for _ in range(4000)])
    assert abs(xs.mean()) < 0.01 and 0.09 < xs.std() < 0.11
