import numpy as np
import pytest

from adbench.boxes import clip_boxes, giou_matrix, match_boxes, sanitize, scale_boxes
from adbench.schema import Box


def giou_by_hand(a, b):
    ix1, iy1, ix2, iy2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(ix2 - ix1, 0) * max(iy2 - iy1, 0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    cx1, cy1, cx2, cy2 = min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
    hull = (cx2 - cx1) * (cy2 - cy1)
    return inter / union - (hull - union) / hull


def test_giou_matches_hand_computation():
    a, b = (0, 0, 10, 10), (5, 5, 15, 15)
    g = giou_matrix([Box(*a)], [Box(*b), Box(*a), Box(20, 20, 30, 30)])
    assert g[0, 0] == pytest.approx(giou_by_hand(a, b))
    assert g[0, 1] == pytest.approx(1.0)
    assert g[0, 2] == pytest.approx(giou_by_hand(a, (20, 20, 30, 30)))
    assert g[0, 2] < 0


def test_degenerate_boxes_never_give_nan():
    inverted = Box(10, 10, 0, 0)
    assert sanitize(inverted).as_tuple() == (0, 0, 10, 10)
    g = giou_matrix([Box(5, 5, 5, 5), Box(3, 1, 3, 9), inverted], [Box(5, 5, 5, 5), Box(0, 0, 10, 10)])
    assert np.isfinite(g).all()
    assert g[2, 1] == pytest.approx(1.0)


def test_hungarian_matching_is_optimal_and_rectangular():
    gt = [Box(0, 0, 10, 10), Box(50, 50, 60, 60)]
    pred = [Box(51, 51, 61, 61), Box(1, 1, 11, 11), Box(100, 100, 110, 110)]
    m = match_boxes(pred, gt)
    assert sorted((i, j) for i, j, _ in m) == [(0, 1), (1, 0)]
    assert match_boxes([], gt) == [] and match_boxes(pred, []) == []


def test_scale_round_trip_and_clip():
    boxes = [Box(3.5, 7, 101, 203, "x")]
    there = scale_boxes(boxes, (333, 517), (504, 504))
    back = scale_boxes(there, (504, 504), (333, 517))
    assert back[0].as_tuple() == pytest.approx(boxes[0].as_tuple())
    assert back[0].label == "x"
    assert clip_boxes([Box(-5, 2, 600, 90)], (504, 80))[0].as_tuple() == (0, 2, 504, 80)
    with pytest.raises(ValueError):
        scale_boxes(boxes, (0, 10), (10, 10))
