"""TRL reward functions: one per reward component, reading the ground truth from dataset columns.

`trl.GRPOTrainer` calls each function as `f(prompts=..., completions=..., **columns)`,
every other dataset column (see `grpo_data`) arriving as a list with one entry per
completion, and sums the returned lists (weight 1 each). Each function has a
`__name__` (`r_format`, `r_cls`, `r_loc`, `r_count`, `r_random`), which is what TRL
logs as `rewards/<name>/mean`.

Components (the recipe's `rewards.components`):
- format: `rewards.format_reward` (paper: 0/1 protocol check; released: graded).
- cls:    `rewards.classification_reward` on the parsed <answer> against `gold`.
- loc:    `rewards.localization_reward` on the <think> boxes against `gt_boxes`
          (both in the model-input frame; the column holds `Box.to_dict()`s, read back
          here with `Box.from_dict`), alpha * r_count included (Eq. 4-6).
- count:  the count-only ablation: `count_reward(m, n)` for anomalous samples,
          `focus_reward(m)` for normal ones (the same r_focus the loc reward uses), and 0
          for an anomalous sample without GT boxes (its count cannot be judged).
- random: zero-mean Gaussian noise from a numpy Generator seeded by the recipe.

Completions are plain strings or, for conversational prompts, lists of messages
(the assistant's text is read from them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from adbench.errors import UserError
from adbench.models import adfm_protocol as proto
from adbench.schema import ANOMALOUS, Box
from adbench.training.rewards import (
    DEFAULT_ALPHA,
    classification_reward,
    count_reward,
    focus_reward,
    format_reward,
    localization_reward,
    random_reward,
)

RewardFunc = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """The reply text of one TRL completion (a string, or a list of chat messages)."""
    if isinstance(completion, str):
        return completion
    parts: list[str] = []
    for msg in completion or []:
        if msg.get("role", "assistant") != "assistant":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text") or "" for p in content if p.get("type") == "text"]
    return "".join(parts)


def as_options(value: Any) -> dict[str, str]:
    """The options column: JSON text (what grpo_data writes) or a dict."""
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError(f"options column must be a JSON object or dict, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _frame(value: Any) -> tuple[int, int] | None:
    return (int(value[0]), int(value[1])) if value is not None and len(value) == 2 else None


def _column(kwargs: dict[str, Any], name: str, n: int) -> list[Any]:
    if name not in kwargs:
        raise KeyError(f"reward function needs the dataset column {name!r} (see adbench.training.grpo_data)")
    values = list(kwargs[name])
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} entries for {n} completions")
    return values


def _parsed(text: str, options: dict[str, str], stages: str, frame: tuple[int, int] | None) -> proto.ParsedReply:
    return proto.parse_reply(text, options, stages, frame=frame)


def make_format(variant: str = "paper") -> RewardFunc:
    def r_format(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        n = len(completions)
        opts, stages, frames = (_column(kwargs, k, n) for k in ("options", "stages", "input_size"))
        return [format_reward(completion_text(c), as_options(o), s, variant, _frame(f))
                for c, o, s, f in zip(completions, opts, stages, frames)]

    return r_format


def make_cls(variant: str = "paper") -> RewardFunc:
    def r_cls(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        n = len(completions)
        gold, opts, stages, frames = (_column(kwargs, k, n) for k in ("gold", "options", "stages", "input_size"))
        out = []
        for c, g, o, s, f in zip(completions, gold, opts, stages, frames):
            p = _parsed(completion_text(c), as_options(o), s, _frame(f))
            # the released variant judges the raw <answer> text (its 0.8 partial credit needs it)
            answer = p.decision if variant == "paper" else (p.answer_text or "").strip()
            out.append(classification_reward(answer, g, variant))
        return out

    return r_cls


def _boxes_and_gt(kwargs: dict[str, Any], completions: Sequence[Any]) -> list[tuple[list[Box], list[Box], bool]]:
    """(predicted boxes, GT boxes, anomalous?) per completion, the boxes as Boxes in the model-input frame."""
    n = len(completions)
    cols = ("label", "gt_boxes", "options", "stages", "input_size")
    labels, gts, opts, stages, frames = (_column(kwargs, k, n) for k in cols)
    out = []
    for c, lab, gt, o, s, f in zip(completions, labels, gts, opts, stages, frames):
        p = _parsed(completion_text(c), as_options(o), s, _frame(f))
        out.append((list(p.boxes), [Box.from_dict(b) for b in (gt or [])], int(lab) == ANOMALOUS))
    return out


def make_loc(variant: str = "paper", alpha: float = DEFAULT_ALPHA) -> RewardFunc:
    def r_loc(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [localization_reward(pred, gt, anom, alpha, variant) for pred, gt, anom in
                _boxes_and_gt(kwargs, completions)]

    return r_loc


def count_component(m: int, n: int, is_anomalous: bool) -> float:
    """The count-only ablation term (see the module docstring)."""
    if not is_anomalous:
        return focus_reward(m)
    return count_reward(m, n) if n > 0 else 0.0


def make_count() -> RewardFunc:
    def r_count(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [count_component(len(pred), len(gt), anom) for pred, gt, anom in _boxes_and_gt(kwargs, completions)]

    return r_count


def make_random(seed: int = 0, sigma: float = 0.1) -> RewardFunc:
    rng = np.random.default_rng(seed)

    def r_random(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [random_reward(rng, sigma) for _ in completions]

    return r_random


def make_reward_funcs(recipe: dict[str, Any]) -> list[RewardFunc]:
    """The recipe's reward components, in the order listed, as TRL reward functions."""
    rw = recipe["rewards"]
    variant = rw.get("variant", "paper")
    seed = int(rw.get("random_seed", recipe.get("grpo", {}).get("seed", 0)))
    factories: dict[str, Callable[[], RewardFunc]] = {
        "format": lambda: make_format(variant),
        "cls": lambda: make_cls(variant),
        "loc": lambda: make_loc(variant, float(rw.get("alpha", DEFAULT_ALPHA))),
        "count": make_count,
        "random": lambda: make_random(seed, float(rw.get("random_sigma", 0.1))),
    }
    unknown = [c for c in rw["components"] if c not in factories]
    if unknown:
        raise UserError(f"unknown reward component(s) {unknown}; known: {', '.join(factories)}")
    return [factories[c]() for c in rw["components"]]
