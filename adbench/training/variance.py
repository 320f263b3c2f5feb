"""`adbench variance`: how often a group of sampled responses carries no learning signal (paper Fig. 5).

GRPO learns from the differences between the rewards of the responses to one prompt;
a group whose rewards are all equal has zero advantage everywhere and teaches
nothing. The paper samples 6 responses per image and reports the share of images
with all-equal rewards under three rewards: binary (r_cls), binary + count
(r_cls + r_count) and binary + GIoU (r_cls + r_loc), finding that finer rewards leave
fewer such groups (MVTec: 41.25%, 15.25%, 11.00%).

Sampling: the adapter is built once with sampling on (`do_sample=True`) and the
release's rollout settings (`ROLLOUT_SAMPLING`: temperature 0.9, top_p 0.9, top_k 50,
repetition_penalty 1.0) unless `-M` says otherwise. They must be explicit: an adapter
otherwise inherits the checkpoint's generation_config.json, and Qwen2.5-VL-7B-Instruct's
has top_k 1 (every sample the greedy reply, every share ~100%) and repetition_penalty
1.05. The report records the values the adapter actually used (`sampling`). The adapter
is asked n times, its `seed` set to seed, seed+1, ..., seed+n-1 before each pass (the
transformers adapters reseed torch from it before every generate call). Adapters
without a `seed` attribute cannot be sampled this way and are refused.

Frame: rewards are computed where training computes them, in the model-input frame:
predicted boxes from `Response.meta["boxes_model_frame"]`, GT boxes (original image
pixels, from the masks) scaled by the response's own `image_size` -> `input_size`.
The count and focus terms need no frame.

One "image" is one Sample (the binary tasks ask one question per image).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adbench import registry
from adbench.data.pseudo_boxes import BoxCache, BoxParams, attach_boxes, default_cache_dir
from adbench.errors import UserError
from adbench.model import ModelAdapter, as_adapter
from adbench.models.qwen_frame import to_model_frame
from adbench.runner import stratified_subset
from adbench.schema import ANOMALOUS, Box, Query, Response, Sample
from adbench.training.grpo_data import make_training_task
from adbench.training.reward_funcs import count_component
from adbench.training.rewards import DEFAULT_ALPHA, classification_reward, localization_reward

REWARDS = ("binary", "binary+count", "binary+giou")
LABELS = {"binary": "binary (r_cls)", "binary+count": "binary + count (r_cls + r_count)",
          "binary+giou": "binary + GIoU (r_cls + r_loc)"}
#: rewards closer than this count as equal (float noise of GIoU)
TOLERANCE = 1e-9
#: The paper's Fig. 5 figures (500 MVTec images, 6 responses each), for reference.
PAPER_SHARES = {"binary": 0.4125, "binary+count": 0.1525, "binary+giou": 0.11}
#: How the release samples its GRPO rollouts (hanawall/AD-FM scripts/grpo/train_mmad.sh:41 temperature;
#: ms-swift v3.4.0 swift/trainers/arguments.py:143-145 top_k, top_p, repetition_penalty), the defaults here.
ROLLOUT_SAMPLING = {"temperature": 0.9, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.0}
SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty")


@dataclass
class VarianceReport:
    model: str
    task: str
    n: int
    variant: str
    alpha: float
    #: id, label, rewards {name: [n floats]}, answers, responses [{text, answer, rewards, error}], failed
    images: list[dict[str, Any]] = field(default_factory=list)
    shares: dict[str, float] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)  # what the adapter used, and the seeds

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "task": self.task, "n": self.n, "variant": self.variant, "alpha": self.alpha,
                "sampling": self.sampling, "n_images": len(self.images), "shares": self.shares,
                "paper_shares": PAPER_SHARES, "images": self.images}


def all_equal(values: list[float]) -> bool:
    return bool(values) and max(values) - min(values) <= TOLERANCE


def zero_variance_shares(images: list[dict[str, Any]]) -> dict[str, float]:
    """Share of images whose n rewards are all equal, per reward."""
    if not images:
        return {name: 0.0 for name in REWARDS}
    return {name: sum(all_equal(img["rewards"][name]) for img in images) / len(images) for name in REWARDS}


def _model_frame_boxes(r: Response, s: Sample) -> tuple[list[Box], list[Box]]:
    """(predicted, GT) boxes in the model-input frame of this response."""
    pred = [Box.from_dict(d) for d in r.meta.get("boxes_model_frame", [])]
    gt = list(s.boxes)
    if gt and pred:
        image_size, input_size = r.meta.get("image_size"), r.meta.get("input_size")
        if not image_size or not input_size:
            raise ValueError(f"sample {s.id}: the response has boxes but no image_size/input_size to map GT boxes")
        gt = to_model_frame(gt, tuple(image_size), tuple(input_size))
    return pred, gt


def response_rewards(r: Response, s: Sample, variant: str = "paper", alpha: float = DEFAULT_ALPHA) -> dict[str, float]:
    """The three rewards of one response (a failed request gets r_cls = 0 and no boxes)."""
    answer = r.answer if variant == "paper" else (r.stages.get("answer") or "").strip()
    r_cls = classification_reward(answer, s.gold, variant)
    pred, gt = _model_frame_boxes(r, s) if r.error is None else ([], list(s.boxes))
    anomalous = s.label == ANOMALOUS
    r_count = count_component(len(pred), len(gt), anomalous)
    r_loc = localization_reward(pred, gt, anomalous, alpha, variant)
    return {"binary": r_cls, "binary+count": r_cls + r_count, "binary+giou": r_cls + r_loc}


def _predict(model: ModelAdapter, queries: list[Query], batch_size: int) -> list[Response]:
    out: list[Response] = []
    for i in range(0, len(queries), batch_size):
        chunk = queries[i : i + batch_size]
        try:
            got = list(model.predict(chunk))
        except Exception as e:  # noqa: BLE001 - a failed batch is recorded, not fatal
            got = [Response.failure(f"{type(e).__name__}: {e}") for _ in chunk]
        out += got
    return out


def run_variance(
    model_name: str,
    task_name: str,
    *,
    model_args: dict[str, Any] | None = None,
    task_args: dict[str, Any] | None = None,
    data_root: Path | None = None,
    n: int = 6,
    limit: int | None = None,
    seed: int = 0,
    variant: str = "paper",
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = 8,
) -> VarianceReport:
    """Sample n responses per image and compute the three rewards of each (see the module docstring)."""
    from adbench.data.paths import default_data_root

    if n < 2:
        raise UserError(f"-n must be at least 2 (a group of one always has zero variance), got {n}")
    margs = dict(model_args or {})
    if margs.get("do_sample") is False:
        raise UserError("adbench variance samples responses: drop -M do_sample=false")
    margs["do_sample"] = True
    root = (data_root or default_data_root()).expanduser().resolve()
    task = make_training_task(task_name, task_args)
    samples = stratified_subset(task.samples(root), limit, seed)
    if not samples:
        raise UserError(f"task {task_name!r} found no samples under {root}")
    errors = attach_boxes(samples, BoxCache(default_cache_dir(root), task.box_params or BoxParams()))
    # the rollout settings go where the adapter takes them and -M did not set them
    built = registry.make_model(model_name, defaults={"seed": seed, **ROLLOUT_SAMPLING}, **margs)
    if not hasattr(built, "seed"):
        raise UserError(f"model {model_name!r} has no sampling seed; adbench variance needs a local sampling adapter")
    model = as_adapter(built)  # the hooks (config, close); the seed is the adapter's own attribute
    sampling = {**used_sampling(model, margs), "seeds": [seed + k for k in range(n)]}
    queries = [task.render(s) for s in samples]
    rounds: list[list[Response]] = []
    try:
        for k in range(n):
            built.seed = seed + k
            rounds.append(_predict(model, queries, batch_size))
    finally:
        model.close()
    box_errors = dict(errors)
    images = []
    for i, s in enumerate(samples):
        got = [rounds[k][i] for k in range(n)]
        per = [response_rewards(r, s, variant, alpha) for r in got]
        images.append({
            "id": s.id, "label": s.label, "n_gt_boxes": len(s.boxes),
            "rewards": {name: [p[name] for p in per] for name in REWARDS},
            "answers": [r.answer for r in got],
            "responses": [{"seed": seed + k, "text": r.text, "answer": r.answer, "rewards": per[k], "error": r.error}
                          for k, r in enumerate(got)],
            "failed": sum(1 for r in got if r.error is not None),
            **({"gt_boxes_error": box_errors[s.id]} if s.id in box_errors else {}),
        })
    report = VarianceReport(model_name, task_name, n, variant, alpha, images, sampling=sampling)
    report.shares = zero_variance_shares(images)
    return report


def used_sampling(model: ModelAdapter, margs: dict[str, Any]) -> dict[str, Any]:
    """The sampling settings the adapter applies: its own `config()` (which resolves what the
    checkpoint's generation config leaves in force), else what it was given."""
    cfg = model.config().get("generation") or {}  # the resolved GenerationConfig
    return {k: cfg[k] if k in cfg else margs.get(k, ROLLOUT_SAMPLING.get(k)) for k in SAMPLING_KEYS}


def render_table(report: VarianceReport) -> str:
    from tabulate import tabulate

    rows = []
    for name in REWARDS:
        k = sum(all_equal(img["rewards"][name]) for img in report.images)
        rows.append([LABELS[name], f"{100 * report.shares[name]:.2f}%", f"{k}/{len(report.images)}",
                     f"{100 * PAPER_SHARES[name]:.2f}%"])
    failed = sum(img["failed"] for img in report.images)
    head = (f"{report.model} on {report.task}: {len(report.images)} images x {report.n} sampled responses, "
            f"{report.variant} rewards (alpha {report.alpha:g}); {failed} failed responses\n")
    sp = report.sampling
    if sp:
        head += (f"sampling: temperature {sp.get('temperature')}, top_p {sp.get('top_p')}, top_k {sp.get('top_k')}, "
                 f"repetition_penalty {sp.get('repetition_penalty')}, seeds {sp['seeds'][0]}..{sp['seeds'][-1]}\n")
    table = tabulate(rows, headers=["reward", "all-equal share", "images", "paper (MVTec, Fig. 5)"],
                     tablefmt="github")
    return head + table + "\n"
