"""AD-FM: Qwen2.5-VL plus the trained LoRA adapter, answering in the multi-stage protocol (`adfm`).

The AD-FM protocol (`adbench.models.adfm_protocol`), `-M adapter=DIR` (the trained
LoRA), `-M base=...` (default Qwen/Qwen2.5-VL-7B-Instruct), the released recipe's
image budget (max_pixels 262144: 512x512 -> 504x504) and 512 new tokens. Boxes come
back in original image pixels (Response.boxes), the model-frame boxes in
Response.meta["boxes_model_frame"]. An adapter written by `adbench train` carries
`adbench_training.json`; from it the adapter's base model, image budget (min/max
pixels), protocol stages and completion length become the defaults, so
`-M adapter=DIR` alone scores the model as it was trained (any `-M` wins). With
`-M protocol=mmad -M prompt=mmad` it is asked as MMAD's script asks, and MMAD's image
budget and 128 new tokens become the defaults instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adbench.errors import UserError
from adbench.jsonfile import read_json
from adbench.models.engines.qwen import QWEN_7B
from adbench.models.presets.backends import Backend
from adbench.models.presets.qwen import MMAD_SCRIPT_SETTINGS, make_qwen
from adbench.models.qwen_frame import ADFM_MAX_PIXELS, DEFAULT_MIN_PIXELS

#: Written by `adbench train` into the adapter folder (adbench.training.trainer).
TRAINING_METADATA = "adbench_training.json"


def read_training_metadata(adapter: str | Path) -> dict[str, Any] | None:
    """The adapter folder's adbench_training.json, or None when it has none."""
    path = Path(adapter).expanduser() / TRAINING_METADATA
    if not path.is_file():
        return None
    data = read_json(path, UserError, "training metadata")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def trained_defaults(adapter: str | Path) -> dict[str, Any]:
    """-M defaults from an adapter's training metadata: base, image budget, stages, length.

    The base is stored relative to the adapter folder when training wrote it beside
    the adapter (the tiny recipe's warmed-up base), so a copied output folder still works.
    """
    meta = read_training_metadata(adapter)
    if not meta:
        return {}
    out: dict[str, Any] = {}
    base = meta.get("base")
    if base:
        local = Path(adapter).expanduser() / base
        # relative to the adapter when it is there, or spelled as a relative path ("../base-sft": a copied
        # adapter whose base stayed behind, which the error then names in full); else a hub id
        beside = not Path(base).is_absolute() and (local.exists() or base.startswith("."))
        out["base"] = str(local.resolve()) if beside else base
    frame = meta.get("frame") or {}
    for key in ("min_pixels", "max_pixels"):
        if frame.get(key):
            out[key] = int(frame[key])
    if meta.get("stages"):
        out["stages"] = meta["stages"]
    if meta.get("max_completion_length"):
        out["max_new_tokens"] = int(meta["max_completion_length"])
    return out


def adfm(backend: Backend = "transformers", **kwargs: Any) -> Any:
    """AD-FM: Qwen2.5-VL (+ LoRA adapter) answering in the multi-stage protocol."""
    if kwargs.get("prompt") == "mmad":  # asked as MMAD's script asks: its settings before the training's
        for key, value in MMAD_SCRIPT_SETTINGS.items():
            kwargs.setdefault(key, value)
    if kwargs.get("adapter"):
        for key, value in trained_defaults(kwargs["adapter"]).items():
            kwargs.setdefault(key, value)
    kwargs.setdefault("base", QWEN_7B)
    kwargs.setdefault("min_pixels", DEFAULT_MIN_PIXELS)
    kwargs.setdefault("max_pixels", ADFM_MAX_PIXELS)
    kwargs.setdefault("max_new_tokens", 512)
    kwargs.setdefault("protocol", "adfm")
    return make_qwen("adfm", backend, **kwargs)
