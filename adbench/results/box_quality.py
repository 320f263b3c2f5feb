"""Box quality: how well the boxes a model writes (AD-FM's <think> regions) find the GT boxes.

For every run in which the model wrote at least one box, results.json gets `boxes`:
per dataset and averaged over datasets (the mean of the datasets' figures, as every
other average):

- on anomalous replies whose image has GT boxes (pseudo boxes from the masks):
  - `recall` / `precision` at IoU >= `IOU_THRESHOLD` (0.5): GT boxes found / predicted
    boxes that found one, each box in at most one pair (a maximum one-to-one matching
    of the pairs with IoU >= 0.5, scipy's Hungarian solver);
  - `mean_best_iou`: per GT box, the best IoU any predicted box of the reply reaches
    (0 with none), averaged over GT boxes;
  - `mean_giou`: the paper's localization term, the mean GIoU over the Hungarian
    matching on 1 - GIoU (`adbench.boxes.mean_matched_giou`, the one the r_loc reward
    uses; 0 for a reply without a box), averaged over replies;
- on normal replies, `normal_no_box`: the share that wrote no box.

The unit is a reply (on the yes/no tasks, one per image). A failed request has no reply
and enters no figure (`n_failed` counts them); an anomalous image without GT boxes
cannot be judged (`n_anomalous_without_gt`). Boxes are in original-image pixels, the
frame both a Record's `boxes` and `gt_boxes` are stored in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from adbench.boxes import iou_matrix, mean_matched_giou
from adbench.results.engine import mean
from adbench.schema import ANOMALOUS, NORMAL, Box, Record

IOU_THRESHOLD = 0.5
#: The figures of a dataset and of the average, in the order tables show them.
FIGURES = ("recall", "precision", "mean_best_iou", "mean_giou", "normal_no_box")


@dataclass(frozen=True)
class ReplyMatch:
    """One anomalous reply's boxes against its GT boxes."""

    matched: int  # one-to-one pairs with IoU >= IOU_THRESHOLD
    best_iou: tuple[float, ...]  # per GT box, the best IoU of any predicted box (0 with none)
    giou: float  # the Hungarian mean GIoU (0 without a predicted box)


def match_reply(pred: Sequence[Box], gt: Sequence[Box], threshold: float = IOU_THRESHOLD) -> ReplyMatch:
    """How one reply's predicted boxes meet its GT boxes."""
    iou = iou_matrix(pred, gt)
    best = tuple(float(v) for v in iou.max(axis=0)) if len(pred) else (0.0,) * len(gt)
    matched = 0
    if len(pred) and len(gt):
        from scipy.optimize import linear_sum_assignment

        hit = (iou >= threshold).astype(float)
        rows, cols = linear_sum_assignment(hit, maximize=True)  # the most pairs above the threshold
        matched = int(hit[rows, cols].sum())
    return ReplyMatch(matched, best, mean_matched_giou(pred, gt))


@dataclass
class BoxCounts:
    """One dataset's sums, from which its figures follow."""

    n_anomalous: int = 0  # answered anomalous replies with GT boxes
    n_gt_boxes: int = 0
    n_pred_boxes: int = 0  # on those replies
    n_matched: int = 0
    sum_best_iou: float = 0.0  # over GT boxes
    sum_giou: float = 0.0  # over replies
    n_normal: int = 0  # answered normal replies
    n_normal_no_box: int = 0
    n_anomalous_without_gt: int = 0
    n_failed: int = 0

    def add(self, r: Record) -> None:
        if r.error is not None:
            self.n_failed += 1
            return
        pred = [Box.from_dict(b) for b in r.boxes]
        if r.label == NORMAL:
            self.n_normal += 1
            self.n_normal_no_box += int(not pred)
        elif r.label == ANOMALOUS:
            gt = [Box.from_dict(b) for b in r.gt_boxes]
            if not gt:
                self.n_anomalous_without_gt += 1
                return
            m = match_reply(pred, gt)
            self.n_anomalous += 1
            self.n_gt_boxes += len(gt)
            self.n_pred_boxes += len(pred)
            self.n_matched += m.matched
            self.sum_best_iou += sum(m.best_iou)
            self.sum_giou += m.giou

    def figures(self) -> dict[str, float | None]:
        def ratio(a: float, b: int) -> float | None:
            return a / b if b else None

        return {"recall": ratio(self.n_matched, self.n_gt_boxes),
                "precision": ratio(self.n_matched, self.n_pred_boxes),
                "mean_best_iou": ratio(self.sum_best_iou, self.n_gt_boxes),
                "mean_giou": ratio(self.sum_giou, self.n_anomalous),
                "normal_no_box": ratio(self.n_normal_no_box, self.n_normal)}

    def to_json(self) -> dict[str, Any]:
        counts = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("sum_")}
        return {**self.figures(), **counts}


def returns_boxes(records: Sequence[Record]) -> bool:
    """Whether the model wrote a box in any reply: only such runs get box figures."""
    return any(r.boxes for r in records)


def box_quality(records: Sequence[Record]) -> dict[str, Any] | None:
    """results.json's `boxes` of a run's evaluated records, at IoU >= IOU_THRESHOLD (the tables' column
    names and notes say that threshold); None when the model wrote no box."""
    if not returns_boxes(records):
        return None
    per: dict[str, BoxCounts] = defaultdict(BoxCounts)
    for r in records:
        per[r.dataset].add(r)
    datasets = {ds: per[ds].to_json() for ds in sorted(per)}
    average: dict[str, Any] = {k: mean(d[k] for d in datasets.values()) for k in FIGURES}
    return {"iou_threshold": IOU_THRESHOLD, "datasets": datasets, "average": average}
