"""The GRPO dataset: columns, image placeholders and their order, GT boxes in the processor's model-input frame."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from adbench.models.qwen_frame import model_input_size
from adbench.models.tiny_qwen import IMAGE_PAD_ID
from adbench.schema import Box
from adbench.training.grpo_data import (
    COLUMNS,
    build_grpo_dataset,
    build_sft_dataset,
    configure_processor,
    frame_budget,
    ideal_completion,
    load_training_samples,
)
from adbench.training.recipes import load_recipe
from tests.vlm_fixtures import tiny_assets


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("tiny")


@pytest.fixture(scope="module")
def training(recipe):
    return load_training_samples(recipe, tiny_assets().data_root)


@pytest.fixture(scope="module")
def dataset(recipe, training):
    return build_grpo_dataset(recipe, training)


@pytest.fixture(scope="module")
def processor(recipe):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_assets().base)
    return configure_processor(proc, *frame_budget(recipe))


def test_training_samples_are_the_train_split_with_boxes(recipe, training):
    from adbench.registry import make_task

    train_ids = {s.id for s in make_task("demo-binary", split="train").samples(tiny_assets().data_root)}
    assert {s.id for s in training.samples} <= train_ids
    assert len(training.samples) == recipe["data"]["limit"]
    summary = training.summary()
    assert summary["split_hash"] and summary["split"]["part"] == "train"
    assert summary["n_anomalous"] > 0 and summary["n_normal"] > 0
    anomalous = [s for s in training.samples if s.label == 1]
    assert all(s.boxes for s in anomalous) and summary["n_anomalous_without_boxes"] == 0


def test_columns_and_prompt_placeholders(dataset, training):
    assert set(COLUMNS) <= set(dataset.column_names)
    row = dataset[0]
    sample = next(s for s in training.samples if s.id == row["id"])
    user = [m for m in row["prompt"] if m["role"] == "user"][0]
    kinds = [p["type"] for p in user["content"]]
    assert kinds.count("image") == 2 == len(row["images"])  # 1-shot: reference + query
    assert all(set(p) == {"type", "text"} for p in user["content"])  # placeholders carry no "image" key
    assert all(isinstance(im, Image.Image) for im in row["images"])
    # order: the reference image first, then the query (the captions say so too)
    assert row["images"][0].filename == sample.references[0]
    assert row["images"][1].filename == sample.image
    text = [p["text"] for p in user["content"]]
    assert text.index(next(t for t in text if t and "Reference image" in t)) < kinds.index("image")
    assert json.loads(row["options"]) == sample.options and row["gold"] == sample.gold
    assert row["label"] == sample.label and row["stages"] == "multi"


def test_gt_boxes_are_in_the_model_input_frame(dataset, training, recipe):
    lo, hi = frame_budget(recipe)
    for row in dataset:
        sample = next(s for s in training.samples if s.id == row["id"])
        w, h = row["image_size"]
        assert tuple(row["input_size"]) == model_input_size((w, h), lo, hi)
        iw, ih = row["input_size"]
        assert len(row["gt_boxes"]) == len(sample.boxes)
        for got, b in zip(row["gt_boxes"], sample.boxes):  # Box.to_dict(), the label kept
            assert got["bbox"] == pytest.approx([b.x1 * iw / w, b.y1 * ih / h, b.x2 * iw / w, b.y2 * ih / h])
            assert got["label"] == b.label == sample.defect
    # the demo's 256x256 images become 112x112 model inputs under the tiny recipe's budget
    assert {tuple(r["input_size"]) for r in dataset} == {(112, 112)}


def test_frame_matches_the_processors_grid(dataset, processor, recipe):
    """What the rewards assume (model_input_size) is what the processor feeds the model."""
    from trl.data_utils import prepare_multimodal_messages

    row = dataset[1]
    messages = prepare_multimodal_messages(row["prompt"], images=row["images"])
    enc = processor.apply_chat_template([messages], add_generation_prompt=True, tokenize=True, return_dict=True,
                                        return_tensors="pt")
    grid = enc["image_grid_thw"].tolist()
    assert len(grid) == 2
    _, gh, gw = grid[-1]  # the query image
    assert (gw * 14, gh * 14) == tuple(row["input_size"])
    n_tokens = sum(t * hh * ww for t, hh, ww in grid) // 4  # 2x2 merge
    assert int((enc["input_ids"] == IMAGE_PAD_ID).sum()) == n_tokens
    # and on other shapes: the processor configured with the recipe's budget agrees with model_input_size
    lo, hi = frame_budget(recipe)
    for size in [(300, 200), (640, 480), (90, 900), (40, 30)]:
        out = processor.image_processor(images=[Image.new("RGB", size)], return_tensors="pt")
        _, gh, gw = out["image_grid_thw"][0].tolist()
        assert (gw * 14, gh * 14) == model_input_size(size, lo, hi), size


def test_unconfigured_processor_would_disagree(recipe):
    """The check above can fail: the tiny base's own processor budget (784 px minimum) gives another frame."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_assets().base)
    lo, hi = frame_budget(recipe)
    size = (40, 30)
    _, gh, gw = proc.image_processor(images=[Image.new("RGB", size)], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert (gw * 14, gh * 14) != model_input_size(size, lo, hi)


def test_sft_rows_complete_the_prompt_with_the_ideal_reply(recipe, training):
    from adbench.models.adfm_protocol import parse_reply

    ds = build_sft_dataset(recipe, training)
    for row in ds:
        reply = row["completion"][0]["content"][0]["text"]
        assert reply == ideal_completion(row)
        parsed = parse_reply(reply, json.loads(row["options"]), "multi", frame=tuple(row["input_size"]))
        assert parsed.clean and parsed.decision == row["gold"]
        want = [Box(*[float(round(v)) for v in Box.from_dict(b).as_tuple()]) for b in row["gt_boxes"]]
        assert [b.as_tuple() for b in parsed.boxes] == [b.as_tuple() for b in want]


def test_images_resized_to_the_model_input_keep_every_engine_in_the_recipes_frame(recipe, training, tmp_path):
    """With an image_dir, rows point at PNGs of exactly the model-input size (what a vLLM server would
    otherwise resize with the checkpoint's own budget); the processor leaves them as they are."""
    from transformers import AutoProcessor

    from adbench.models.qwen_frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

    ds = build_grpo_dataset(recipe, training, tmp_path / "model-input-images")
    files = sorted((tmp_path / "model-input-images").iterdir())
    assert files and all(f.suffix == ".png" and f.name.endswith("-112x112.png") for f in files)
    for row in ds:
        assert [im.size for im in row["images"]] == [tuple(row["input_size"])] * 2
        assert all(im.filename.startswith(str(tmp_path)) for im in row["images"])
    # the frame is the same under the recipe's budget and under the checkpoint's default one
    lo, hi = frame_budget(recipe)
    assert model_input_size((112, 112), lo, hi) == model_input_size((112, 112), DEFAULT_MIN_PIXELS,
                                                                     DEFAULT_MAX_PIXELS) == (112, 112)
    plain = AutoProcessor.from_pretrained(tiny_assets().base).image_processor
    row = ds[0]
    assert plain(images=[row["images"][1]], return_tensors="pt")["image_grid_thw"][0].tolist() == [1, 8, 8]
    stamps = [f.stat().st_mtime_ns for f in files]
    build_grpo_dataset(recipe, training, tmp_path / "model-input-images")  # a resume writes nothing again
    assert [f.stat().st_mtime_ns for f in files] == stamps
