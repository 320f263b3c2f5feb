"""Box geometry shared by evaluation, reports and training rewards.

Boxes are `Box(x1, y1, x2, y2)` in pixel coordinates of one frame: either the
original image or a model's resized input. `scale_boxes` moves them between frames;
`giou_matrix`, `match_boxes` and `mean_matched_giou` are what the AD-FM localization
reward is built on, and what `adbench.results.box_quality` reports (with `iou_matrix`).

torchvision's `generalized_box_iou` has no epsilon and assumes x1 < x2, y1 < y2, so
every box passes through `sanitize` first: inverted corners are swapped and a
zero-width or zero-height box is widened to `MIN_SIZE`, which keeps GIoU finite
(a point box has IoU ~0 with anything, as it should).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from adbench.schema import Box

MIN_SIZE = 1e-3


def sanitize(box: Box, min_size: float = MIN_SIZE) -> Box:
    """Swap inverted corners and widen degenerate sides so that the box has positive area."""
    x1, x2 = sorted((float(box.x1), float(box.x2)))
    y1, y2 = sorted((float(box.y1), float(box.y2)))
    if x2 - x1 < min_size:
        x2 = x1 + min_size
    if y2 - y1 < min_size:
        y2 = y1 + min_size
    return Box(x1, y1, x2, y2, box.label)


def scale_boxes(boxes: Sequence[Box], from_size: tuple[int, int], to_size: tuple[int, int]) -> list[Box]:
    """Map boxes from a (width, height) frame to another by per-axis scaling."""
    fw, fh = from_size
    tw, th = to_size
    if min(fw, fh, tw, th) <= 0:
        raise ValueError(f"frame sizes must be positive, got {from_size} -> {to_size}")
    sx, sy = tw / fw, th / fh
    return [Box(b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy, b.label) for b in boxes]


def clip_boxes(boxes: Sequence[Box], size: tuple[int, int]) -> list[Box]:
    """Clip boxes to a (width, height) frame."""
    w, h = size
    return [Box(min(max(b.x1, 0), w), min(max(b.y1, 0), h), min(max(b.x2, 0), w), min(max(b.y2, 0), h), b.label)
            for b in boxes]


def _pairwise(op: str, pred: Sequence[Box], gt: Sequence[Box]) -> np.ndarray:
    """torchvision's `box_iou` or `generalized_box_iou` of sanitized boxes, shape (len(pred), len(gt))."""
    if not pred or not gt:
        return np.zeros((len(pred), len(gt)))
    import torch
    import torchvision.ops

    a = torch.tensor([sanitize(b).as_tuple() for b in pred], dtype=torch.float64)
    b = torch.tensor([sanitize(b).as_tuple() for b in gt], dtype=torch.float64)
    return getattr(torchvision.ops, op)(a, b).numpy()


def giou_matrix(pred: Sequence[Box], gt: Sequence[Box]) -> np.ndarray:
    """GIoU between every predicted and every ground-truth box, shape (len(pred), len(gt))."""
    return _pairwise("generalized_box_iou", pred, gt)


def iou_matrix(pred: Sequence[Box], gt: Sequence[Box]) -> np.ndarray:
    """IoU between every predicted and every ground-truth box, shape (len(pred), len(gt))."""
    return _pairwise("box_iou", pred, gt)


def match_boxes(pred: Sequence[Box], gt: Sequence[Box]) -> list[tuple[int, int, float]]:
    """Hungarian matching on cost 1 - GIoU: (pred index, gt index, GIoU) per matched pair.

    Rectangular problems match min(m, n) pairs (scipy handles them directly).
    """
    if not pred or not gt:
        return []
    from scipy.optimize import linear_sum_assignment

    g = giou_matrix(pred, gt)
    rows, cols = linear_sum_assignment(1.0 - g)
    return [(int(i), int(j), float(g[i, j])) for i, j in zip(rows, cols)]


def mean_matched_giou(pred: Sequence[Box], gt: Sequence[Box]) -> float:
    """Mean GIoU over the Hungarian matching on 1 - GIoU; 0 when either side is empty (the paper's r_loc term)."""
    pairs = match_boxes(pred, gt)
    return float(np.mean([g for _, _, g in pairs])) if pairs else 0.0
