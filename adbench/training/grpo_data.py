"""The GRPO (and SFT warm-up) dataset: train-split Samples as TRL wants them.

One row per training Sample of the recipe's task (`data.task` + `data.task_args`,
built through the registry, normally `-T split=train`):

    prompt       conversational messages from `adfm_protocol.build_messages`, every image
                 part a bare `{"type": "image"}` placeholder, in the order shown
                 (the normal reference first when the task's `shots` gives one, then the query)
    images       the image files in that order (a `datasets.Image` list, decoded lazily);
                 TRL fills the placeholders with them (`prepare_multimodal_messages`)
    label        1 anomalous, 0 normal
    gold         the gold option letter
    options      the options as JSON text (letter -> text; JSON keeps any letter set intact)
    stages       "multi" or "one" (which tags the format reward expects)
    gt_boxes     pseudo ground-truth boxes in the MODEL-INPUT frame of the query image (what the
                 model writes), from the mask via `adbench.data.pseudo_boxes` and
                 `qwen_frame.to_model_frame`; each as `Box.to_dict()`, {"bbox": [x1, y1, x2, y2],
                 "label": defect}, the form every stored box of adbench has
    input_size   [width, height] of the query image as the model sees it
    image_size   [width, height] of the original query image
    id, dataset, category, defect

The model-input frame comes from `qwen_frame.model_input_size` with the recipe's
`data.min_pixels` / `data.max_pixels`; `configure_processor` gives the processor the
same budget, so the frame the rewards use is the frame the model sees (a test
checks it against the processor's `image_grid_thw`).

With `image_dir`, every image is first resized to its model-input size and written
there once (`model_input_images`), as the released recipe's stack does (ms-swift
resizes to `MAX_PIXELS` before anything sees the image). Any engine then sees the
recipe's frame: an image whose sides are already multiples of 28 inside the budget is
left as it is by the processor, and also by a vLLM rollout server, which cannot be
given the recipe's `max_pixels` and would otherwise use the checkpoint's own budget.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from adbench import registry
from adbench.data.pseudo_boxes import BoxCache, BoxParams, attach_boxes, default_cache_dir
from adbench.errors import UserError
from adbench.images import file_sha1, image_size, load_image
from adbench.models import adfm_protocol as proto
from adbench.models.qwen_frame import model_input_size, to_model_frame
from adbench.runner import stratified_subset
from adbench.schema import ANOMALOUS, NORMAL, Box, Sample
from adbench.task import Task

#: Folder (inside a training run's output) of the images resized to the model input.
MODEL_INPUT_IMAGES = "model-input-images"

COLUMNS = ("id", "prompt", "images", "label", "gold", "options", "stages", "gt_boxes", "input_size",
           "image_size", "dataset", "category", "defect")


class TrainingDataError(UserError):
    """Training samples that cannot be used; the message names the sample or the task."""


@runtime_checkable
class TrainingTask(Task, Protocol):
    """What training (and `adbench variance`) read of a task beyond `Task`; `QuestionTask` has it all.

    Not part of `Task`: the runner needs none of it.
    """

    args: dict[str, Any]  # its -T arguments (the adapter's metadata records them)
    split_info: dict[str, Any]  # which images it keeps (the metadata records the split's hash)
    box_params: BoxParams | None  # pseudo-box extraction parameters; None: the defaults


#: TrainingTask's members beyond Task's, for the message about a task that lacks some.
TRAINING_MEMBERS = ("args", "split_info", "box_params")


def make_training_task(name: str, args: dict[str, Any] | None = None) -> TrainingTask:
    """The task `name` (-T `args`) built through the registry, refused unless training can use it."""
    task = registry.make_task(name, **(args or {}))
    if not isinstance(task, TrainingTask):
        missing = [m for m in TRAINING_MEMBERS if not hasattr(task, m)]
        raise TrainingDataError(f"task {name!r} cannot be trained on: it has no {', '.join(missing)} "
                                "(build it as a QuestionTask)")
    return task


@dataclass
class TrainingSamples:
    """The Samples a recipe trains on, with what the metadata records about them."""

    samples: list[Sample]
    task: TrainingTask
    split: dict[str, Any] = field(default_factory=dict)
    box_errors: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        n_anom = sum(1 for s in self.samples if s.label == ANOMALOUS)
        return {
            "task": self.task.name,
            "task_args": dict(self.task.args or {}),
            "split": self.split,
            "split_hash": self.split.get("hash"),
            "n_samples": len(self.samples),
            "n_anomalous": n_anom,
            "n_normal": sum(1 for s in self.samples if s.label == NORMAL),
            "n_anomalous_without_boxes": sum(1 for s in self.samples if s.label == ANOMALOUS and not s.boxes),
            "box_errors": [{"id": i, "error": e} for i, e in self.box_errors],
        }


def load_training_samples(recipe: dict[str, Any], data_root: Path) -> TrainingSamples:
    """The recipe's training Samples (task, split, optional stratified `data.limit`) with GT boxes.

    Anomalous samples whose mask cannot be read keep no boxes (their r_loc is 0); they
    are listed in `box_errors`, never dropped silently. Samples without a known label
    are an error: the rewards need it.
    """
    data = recipe["data"]
    task = make_training_task(data["task"], data.get("task_args"))
    samples = task.samples(Path(data_root))
    if not samples:
        raise TrainingDataError(f"task {data['task']!r} found no training samples under {data_root}")
    unlabeled = [s.id for s in samples if s.label not in (ANOMALOUS, NORMAL)]
    if unlabeled:
        raise TrainingDataError(f"{len(unlabeled)} sample(s) of {data['task']!r} have no label, e.g. {unlabeled[0]}")
    if data.get("limit"):
        samples = stratified_subset(samples, int(data["limit"]), int(data.get("seed", 0)))
    errors = attach_boxes(samples, BoxCache(default_cache_dir(Path(data_root)), task.box_params or BoxParams()))
    split = dict(task.split_info or {})
    return TrainingSamples(samples, task, split, errors)


def frame_budget(recipe: dict[str, Any]) -> tuple[int, int]:
    """(min_pixels, max_pixels) of the model input, from the recipe's data section."""
    data = recipe["data"]
    lo, hi = int(data["min_pixels"]), int(data["max_pixels"])
    if lo > hi:
        raise TrainingDataError(f"data.min_pixels ({lo}) is larger than data.max_pixels ({hi})")
    return lo, hi


def configure_processor(processor: Any, min_pixels: int, max_pixels: int) -> Any:
    """Give a Qwen2.5-VL processor the recipe's image budget (what `model_input_size` assumes)."""
    ip = processor.image_processor
    ip.size = {"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)}
    for attr, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(ip, attr):
            setattr(ip, attr, int(value))
    return processor


def placeholder_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Messages with image parts reduced to {"type": "image"} (in order), and those images' paths."""
    images: list[str] = []
    out = []
    for msg in messages:
        content = []
        for part in msg["content"]:
            if part["type"] == "image":
                images.append(str(part["image"]))
                content.append({"type": "image", "text": None})
            else:
                content.append({"type": "text", "text": part["text"]})
        out.append({"role": msg["role"], "content": content})
    return out, images


def model_input_image(path: str, min_pixels: int, max_pixels: int, image_dir: Path) -> str:
    """`path` resized to its model-input size (a PNG in `image_dir`, written once), or `path` if it is that size.

    The file name is the content hash plus the size, so a changed image gets a new
    file and a resumed run reuses the old ones.
    """
    size = image_size(path)
    target = model_input_size(size, min_pixels, max_pixels)
    if target == size:
        return path
    out = Path(image_dir) / f"{file_sha1(path)}-{target[0]}x{target[1]}.png"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # ranks of one launch may race here
        load_image(path).resize(target, Image.Resampling.BICUBIC).save(tmp, format="PNG")
        tmp.replace(out)  # a killed run never leaves half an image under the final name
    return str(out)


def sample_row(task: Task, s: Sample, stages: str, min_pixels: int, max_pixels: int,
               image_dir: Path | None = None) -> dict[str, Any]:
    """One dataset row for a Sample (see the module docstring for the columns)."""
    query = task.render(s)
    prompt, images = placeholder_messages(proto.build_messages(query, stages))
    original = image_size(s.image)
    input_size = model_input_size(original, min_pixels, max_pixels)
    boxes = to_model_frame(s.boxes, original, input_size)
    if image_dir is not None:
        images = [model_input_image(p, min_pixels, max_pixels, image_dir) for p in images]
    return {
        "id": s.id,
        "prompt": prompt,
        "images": images,
        "label": int(s.label),
        "gold": s.gold,
        "options": json.dumps(s.options),
        "stages": stages,
        "gt_boxes": [b.to_dict() for b in boxes],
        "input_size": list(input_size),
        "image_size": list(original),
        "dataset": s.dataset,
        "category": s.category,
        "defect": s.defect,
    }


def features() -> Any:
    from datasets import Features, Image, List, Value

    text = Value("string")
    message = {"role": text, "content": List({"type": text, "text": text})}
    box = {"bbox": List(Value("float64")), "label": text}  # Box.to_dict()
    return Features({
        "id": text, "prompt": List(message), "images": List(Image(mode="RGB")), "label": Value("int64"),
        "gold": text, "options": text, "stages": text, "gt_boxes": List(box),
        "input_size": List(Value("int64")), "image_size": List(Value("int64")), "dataset": text,
        "category": text, "defect": text,
    })


def build_rows(recipe: dict[str, Any], training: TrainingSamples, image_dir: Path | None = None) -> list[dict[str, Any]]:
    lo, hi = frame_budget(recipe)
    stages = recipe["protocol"]["stages"]
    return [sample_row(training.task, s, stages, lo, hi, image_dir) for s in training.samples]


def build_grpo_dataset(recipe: dict[str, Any], training: TrainingSamples, image_dir: Path | None = None) -> Any:
    """A `datasets.Dataset` with the columns above, ready for `trl.GRPOTrainer`."""
    from datasets import Dataset

    rows = build_rows(recipe, training, image_dir)
    return Dataset.from_list(rows, features=features())


def ideal_completion(row: dict[str, Any]) -> str:
    """The SFT warm-up target for a row: `render_response` on its model-frame GT boxes."""
    boxes = [Box.from_dict(b) for b in row["gt_boxes"]]
    return proto.render_response(boxes, row["label"], json.loads(row["options"]), row["stages"], row["defect"])


def build_sft_dataset(recipe: dict[str, Any], training: TrainingSamples, image_dir: Path | None = None) -> Any:
    """Prompt-completion rows for TRL's SFTTrainer: the GRPO prompt, the ideal reply as completion."""
    from datasets import Dataset

    rows = build_rows(recipe, training, image_dir)
    for row in rows:
        row["completion"] = [{"role": "assistant", "content": [{"type": "text", "text": ideal_completion(row)}]}]
    feats = features()
    feats["completion"] = feats["prompt"]
    return Dataset.from_list(rows, features=feats)
