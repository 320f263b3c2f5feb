"""Qwen2.5-VL zero-shot: `qwen2.5-vl-7b` and `qwen2.5-vl-3b`.

The task's MMAD-style 1-shot prompt (`-M prompt=mmad`: the content list of MMAD's
Qwen2.5-VL script itself), MMAD's image budget (min_pixels 64*28*28, max_pixels
1280*28*28) and 128 new tokens, as in MMAD's official Qwen2.5-VL script. On the
transformers engine (`engines.qwen.QwenVLModel`, fast on a GPU) or, with
`-M backend=vllm`, vLLM's (`engines.vllm_offline`).
"""

from __future__ import annotations

from typing import Any

from adbench.models.engines.qwen import QWEN_7B, QwenVLModel
from adbench.models.presets.backends import Backend, build
from adbench.models.qwen_frame import MMAD_MAX_PIXELS, MMAD_MIN_PIXELS

QWEN_3B = "Qwen/Qwen2.5-VL-3B-Instruct"
#: What MMAD's Qwen2.5-VL script sets: its processor's image budget and `max_new_tokens=128`.
MMAD_SCRIPT_SETTINGS: dict[str, Any] = {"min_pixels": MMAD_MIN_PIXELS, "max_pixels": MMAD_MAX_PIXELS,
                                        "max_new_tokens": 128}


def make_qwen(name: str, backend: str = "transformers", **kwargs: Any) -> Any:
    """A Qwen2.5-VL adapter named `name` on the chosen backend ("transformers" or "vllm")."""
    kwargs.setdefault("name", name)
    return build(backend, QwenVLModel, kwargs, family="qwen2.5-vl")


def _mmad_zero_shot(name: str, base: str, backend: str, kwargs: dict[str, Any]) -> Any:
    """A Qwen2.5-VL zero-shot preset: MMAD's prompt, image budget and 128 new tokens."""
    for key, value in (("base", base), *MMAD_SCRIPT_SETTINGS.items(), ("protocol", "mmad")):
        kwargs.setdefault(key, value)
    return make_qwen(name, backend, **kwargs)


def qwen25_vl_7b(backend: Backend = "transformers", **kwargs: Any) -> Any:
    """Qwen2.5-VL-7B-Instruct, zero-shot, MMAD's prompt and image budget."""
    return _mmad_zero_shot("qwen2.5-vl-7b", QWEN_7B, backend, kwargs)


def qwen25_vl_3b(backend: Backend = "transformers", **kwargs: Any) -> Any:
    """Qwen2.5-VL-3B-Instruct, zero-shot, MMAD's prompt and image budget."""
    return _mmad_zero_shot("qwen2.5-vl-3b", QWEN_3B, backend, kwargs)
