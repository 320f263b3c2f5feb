"""Qwen2.5-VL's model-input frame: the resize rule and the box mapping in and out of it.

Qwen2.5-VL writes boxes as absolute pixel coordinates of the image *as the model saw
it*: the input is resized so that each side is a multiple of 28 (patch 14 x merge 2)
and the pixel count lies within [min_pixels, max_pixels]. A box the model writes is
therefore in that resized frame; reports and metrics want it in the original image's
pixels, and training targets (ground-truth boxes) must go the other way.

`smart_resize` reimplements the rule (so the vLLM backend and the training rewards
need no processor object); a test checks it against transformers' own
`Qwen2VLImageProcessor` rule on many sizes. Mapping is plain per-axis scaling through
`adbench.boxes.scale_boxes`, unrounded, so a round trip is exact up to float error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from adbench.args import ArgumentError
from adbench.boxes import scale_boxes
from adbench.schema import Box

FACTOR = 28  # patch size 14 x spatial merge 2
#: Qwen2.5-VL's processor defaults.
DEFAULT_MIN_PIXELS = 4 * 28 * 28
DEFAULT_MAX_PIXELS = 16384 * 28 * 28
#: MMAD's official Qwen2.5-VL evaluation setting.
MMAD_MIN_PIXELS = 64 * 28 * 28
MMAD_MAX_PIXELS = 1280 * 28 * 28
#: The released AD-FM recipe: a 512x512 image becomes a 504x504 model input.
ADFM_MAX_PIXELS = 262_144


def smart_resize(
    height: int, width: int, factor: int = FACTOR, min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """(height, width) of the model input for an image of (height, width) pixels.

    Each side is rounded to the nearest multiple of `factor`; if the area then exceeds
    `max_pixels` both sides shrink by the same factor (rounded down), if it falls below
    `min_pixels` both grow (rounded up). Aspect ratios above 200 are rejected, as
    Qwen's processor does.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if min_pixels > max_pixels:
        raise ArgumentError(f"min_pixels ({min_pixels}) is larger than max_pixels ({max_pixels})")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of a {width}x{height} image is above 200; Qwen2.5-VL rejects it")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def model_input_size(
    image_size: tuple[int, int], min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """(width, height) of the model input for an image of (width, height) pixels."""
    w, h = image_size
    rh, rw = smart_resize(int(h), int(w), min_pixels=min_pixels, max_pixels=max_pixels)
    return rw, rh


def to_model_frame(boxes: Sequence[Box], image_size: tuple[int, int], input_size: tuple[int, int]) -> list[Box]:
    """Boxes in original image pixels -> model-input pixels (training targets, rewards).

    `image_size` and `input_size` are (width, height); get `input_size` from
    `model_input_size` or from the processor's `image_grid_thw`.
    """
    return scale_boxes(boxes, image_size, input_size)


def to_image_frame(boxes: Sequence[Box], input_size: tuple[int, int], image_size: tuple[int, int]) -> list[Box]:
    """Boxes in model-input pixels (what Qwen2.5-VL writes) -> original image pixels."""
    return scale_boxes(boxes, input_size, image_size)


def grid_to_input_size(grid_thw: Sequence[int], patch_size: int = 14) -> tuple[int, int]:
    """(width, height) of the model input from a processor's image_grid_thw row (t, h, w in patches)."""
    _, gh, gw = (int(v) for v in grid_thw)
    return gw * patch_size, gh * patch_size
