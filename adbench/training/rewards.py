"""AD-FM's fine-grained reward (paper Eq. 4-7) and the ablation rewards.

    r = r_format + r_acc,  r_acc = r_cls + r_loc

- r_format (`format_reward`): the paper names the term without a formula. "paper":
  1 when the reply is exactly the protocol (every expected stage tag once, closed, in
  order, nothing but whitespace outside them, no other stage) and its <answer> reads
  as one of the options; else 0. "released": the graded constants of the public code
  (see `format_reward`).
- r_cls: 1 if the final decision equals the label, else 0.
- r_loc, anomalous sample (GT boxes b_1..b_n, predicted boxes from <think> b^_1..b^_m):
  Hungarian matching M on cost 1 - GIoU; r_loc = mean GIoU over M + alpha * r_count,
  r_count = 1 if |m - n| = 0, 0.5 if |m - n| = 1, -0.1 if |m - n| >= 2.
- r_loc, normal sample: r_focus(m) = 0 if m = 0, 0.5 if m = 1, -0.1 if m >= 2.

Two variants:
- "paper": the equations as printed. Where the paper is silent we choose and say so:
  alpha = 0.3 (the released value; the paper gives none); with m = 0 on an anomalous
  sample the matched set is empty, its mean GIoU is taken as 0, so r_loc = alpha *
  r_count; an anomalous sample without GT boxes (no mask) gets r_loc = 0, since
  localization cannot be judged.
- "released": the constants of the public AD-FM release: the anomalous r_loc is
  rescaled to (r + 0.5) / 1.5 and clipped to [0, 1], m = 0 gives 0, the mean GIoU is
  taken over all m predictions (an unmatched prediction counts 0), and an anomalous
  sample without GT boxes gets r_focus like a normal one; r_cls gives 0.8 when the
  gold answer is contained in a short (<= 10 characters) answer.

All boxes are `Box`es in one coordinate frame (the model-input frame during training;
the TRL reward functions of `reward_funcs` read the dataset's stored boxes with
`Box.from_dict`). Degenerate predicted boxes (inverted, zero area) are repaired by
`adbench.boxes.sanitize` and never produce NaN.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from adbench.boxes import match_boxes, mean_matched_giou
from adbench.errors import UserError
from adbench.models import adfm_protocol as proto
from adbench.schema import Box

VARIANTS = ("paper", "released")
DEFAULT_ALPHA = 0.3

def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise UserError(f"unknown reward variant {variant!r}: use one of {', '.join(VARIANTS)}")


def count_reward(m: int, n: int) -> float:
    """Eq. 5: 1 for the right number of boxes, 0.5 when one off, -0.1 beyond."""
    d = abs(int(m) - int(n))
    return 1.0 if d == 0 else 0.5 if d == 1 else -0.1


def focus_reward(m: int) -> float:
    """Eq. 6 (normal samples): one region of interest is encouraged, several discouraged."""
    return 0.0 if m == 0 else 0.5 if m == 1 else -0.1


def localization_reward(
    pred_boxes: Sequence[Box],
    gt_boxes: Sequence[Box],
    is_anomalous: bool,
    alpha: float = DEFAULT_ALPHA,
    variant: str = "paper",
) -> float:
    """Eq. 4: r_loc for one response (see the module docstring for both variants)."""
    _check_variant(variant)
    m, n = len(pred_boxes), len(gt_boxes)
    if not is_anomalous:
        return focus_reward(m)
    if variant == "released":
        if n == 0:  # the release treats an anomalous image without GT boxes like a normal one
            return focus_reward(m)
        if m == 0:
            return 0.0
        # the release averages GIoU over all m predictions, an unmatched one counting 0
        pairs = match_boxes(pred_boxes, gt_boxes)
        r = sum(g for _, _, g in pairs) / m + alpha * count_reward(m, n)
        return float(min(max((r + 0.5) / 1.5, 0.0), 1.0))
    if n == 0:
        return 0.0
    return mean_matched_giou(pred_boxes, gt_boxes) + alpha * count_reward(m, n)


def classification_reward(answer: str | None, gold: str, variant: str = "paper") -> float:
    """r_cls: 1 when the decision equals the gold answer (case and spaces ignored).

    The released variant also gives 0.8 when the gold answer is contained in a short
    answer (<= 10 characters), e.g. "(a)" for "a".
    """
    _check_variant(variant)
    if answer is None:
        return 0.0
    a, g = answer.strip().lower(), gold.strip().lower()
    if a == g:
        return 1.0
    if variant == "released" and len(a) <= 10 and g and g in a:
        return 0.8
    return 0.0


def random_reward(rng: np.random.Generator, sigma: float = 0.1) -> float:
    """Zero-mean Gaussian noise (the 'random reward perturbation' ablation)."""
    return float(rng.normal(0.0, sigma))


#: The released format reward's box bound: every coordinate below 505 fits its 504x504 input.
RELEASED_FRAME = (504, 504)
_CLOSED = {tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL | re.IGNORECASE) for tag in proto.ALL_TAGS}
_FOUR_NUMBERS = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\]")


def format_reward(
    text: str | None,
    options: dict[str, str],
    stages: str = proto.MULTI_STAGE,
    variant: str = "paper",
    frame: tuple[int, int] | None = None,
) -> float:
    """r_format for one reply.

    paper (0 or 1): 1.0 when `adfm_protocol.split_stages` finds no structural problem
    (each expected tag exactly once, closed, in order; no unexpected tag; no text
    outside the tags) and `parse_reply` reads the <answer> as one of `options`. What
    <think> says (boxes or not) is judged by r_loc, not here.

    released (0 .. 1.2, the public code's graded constants): a non-empty closed
    <think> +0.3 (+0.1 when over 10 characters); <rethink> likewise +0.2 (+0.1); the
    <answer> is exactly an option letter (any case) +0.2, else contains one +0.1; a
    list of four numbers in <think> +0.2, +0.1 more when every coordinate lies inside
    the model input `frame` (width, height; the release hard-codes < 505 for its
    504x504 inputs, the default here), else square brackets in <think> +0.1.
    """
    _check_variant(variant)
    if not text or not text.strip():
        return 0.0
    if variant == "paper":
        _, problems = proto.split_stages(text, proto.STAGE_TAGS[stages])
        if problems:
            return 0.0
        return 1.0 if proto.parse_reply(text, options, stages).ok else 0.0
    return _released_format(text, options, frame or RELEASED_FRAME)


def _closed(tag: str, text: str) -> str | None:
    m = _CLOSED[tag].search(text)
    return m.group(1).strip() if m else None


def _released_format(text: str, options: dict[str, str], frame: tuple[int, int]) -> float:
    r = 0.0
    think = _closed("think", text) or ""
    if think:
        r += 0.3 + (0.1 if len(think) > 10 else 0.0)
    rethink = _closed("rethink", text) or ""
    if rethink:
        r += 0.2 + (0.1 if len(rethink) > 10 else 0.0)
    answer = (_closed("answer", text) or "").lower()
    letters = [k.lower() for k in options]
    if answer in letters:
        r += 0.2
    elif answer and any(k in answer for k in letters):
        r += 0.1
    if think:
        boxes = [tuple(float(v) for v in m) for m in _FOUR_NUMBERS.findall(think)]
        if boxes:
            w, h = frame
            inside = all(x1 <= w and x2 <= w and y1 <= h and y2 <= h for x1, y1, x2, y2 in boxes)
            r += 0.2 + (0.1 if inside else 0.0)
        elif "[" in think and "]" in think:
            r += 0.1
    return round(r, 10)
