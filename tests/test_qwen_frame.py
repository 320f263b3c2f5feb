"""Qwen2.5-VL's resize rule and the box mapping between original and model-input pixels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from adbench.models.qwen_frame import (
    ADFM_MAX_PIXELS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    MMAD_MAX_PIXELS,
    MMAD_MIN_PIXELS,
    grid_to_input_size,
    model_input_size,
    smart_resize,
    to_image_frame,
    to_model_frame,
)
from adbench.schema import Box

SIDES = [1, 27, 29, 57, 111, 255, 333, 500, 511, 512, 517, 999, 1023, 1601, 2999]
BUDGETS = [(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS), (MMAD_MIN_PIXELS, MMAD_MAX_PIXELS),
           (DEFAULT_MIN_PIXELS, ADFM_MAX_PIXELS), (28 * 28, 112 * 112)]


def test_smart_resize_matches_transformers():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    n = 0
    for (h, w), (lo, hi) in itertools.product(itertools.product(SIDES, SIDES), BUDGETS):
        if max(h, w) / min(h, w) > 200:
            with pytest.raises(ValueError):
                smart_resize(h, w, min_pixels=lo, max_pixels=hi)
            continue
        assert smart_resize(h, w, min_pixels=lo, max_pixels=hi) == hf_smart_resize(h, w, 28, lo, hi), (h, w, lo, hi)
        n += 1
    assert n > 500


def test_released_recipe_budget_gives_504_for_512():
    assert model_input_size((512, 512), DEFAULT_MIN_PIXELS, ADFM_MAX_PIXELS) == (504, 504)
    w, h = model_input_size((1023, 517), MMAD_MIN_PIXELS, MMAD_MAX_PIXELS)
    assert w % 28 == 0 and h % 28 == 0 and MMAD_MIN_PIXELS <= w * h <= MMAD_MAX_PIXELS


def test_grid_to_input_size():
    assert grid_to_input_size([1, 36, 18]) == (252, 504)


@pytest.mark.parametrize("size", [(333, 517), (1023, 767), (511, 99), (97, 1601), (255, 255), (2999, 1001)])
@pytest.mark.parametrize("budget", BUDGETS[:3])
def test_box_round_trip_within_one_pixel_on_odd_sizes(size, budget):
    rng = np.random.default_rng(size[0] * 7 + size[1])
    w, h = size
    frame = model_input_size(size, *budget)
    assert frame != size  # the mapping really rescales
    boxes = []
    for _ in range(20):
        x = sorted(rng.uniform(0, w, 2))
        y = sorted(rng.uniform(0, h, 2))
        boxes.append(Box(x[0], y[0], x[1], y[1], "d"))
    model = to_model_frame(boxes, size, frame)
    back = to_image_frame(model, frame, size)
    for a, b in zip(boxes, back):
        assert max(abs(u - v) for u, v in zip(a.as_tuple(), b.as_tuple())) < 1e-6
        assert b.label == "d"
    # what the model writes: whole pixels of its input. Back in the image they are within
    # half an input pixel times the scale, i.e. within one image pixel when the input is
    # not smaller than half the image (the budgets here shrink large images further).
    sx, sy = w / frame[0], h / frame[1]
    for a, m in zip(boxes, model):
        rounded = Box(*(float(round(v)) for v in m.as_tuple()))
        b = to_image_frame([rounded], frame, size)[0]
        tol = (0.5 * sx + 1e-9, 0.5 * sy + 1e-9)
        assert abs(a.x1 - b.x1) <= tol[0] and abs(a.x2 - b.x2) <= tol[0]
        assert abs(a.y1 - b.y1) <= tol[1] and abs(a.y2 - b.y2) <= tol[1]
        if sx <= 2 and sy <= 2:
            assert max(abs(u - v) for u, v in zip(a.as_tuple(), b.as_tuple())) <= 1.0


def test_forward_mapping_lands_inside_the_model_frame():
    size = (517, 333)
    frame = model_input_size(size, DEFAULT_MIN_PIXELS, ADFM_MAX_PIXELS)
    [m] = to_model_frame([Box(0, 0, 517, 333)], size, frame)
    assert m.as_tuple() == pytest.approx((0, 0, frame[0], frame[1]))
