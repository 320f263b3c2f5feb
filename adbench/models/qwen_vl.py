"""Qwen2.5-VL through transformers: the zero-shot rows and the AD-FM model.

Presets (adbench/registry.py):
- `qwen2.5-vl-7b`, `qwen2.5-vl-3b`: zero-shot, the task's MMAD-style 1-shot prompt
  (`-M prompt=mmad`: the content list of MMAD's Qwen2.5-VL script itself), MMAD's image
  budget (min_pixels 64*28*28, max_pixels 1280*28*28) and 128 new tokens, as in MMAD's
  official Qwen2.5-VL script.
- `adfm`: the AD-FM protocol (`adfm_protocol`), `-M adapter=DIR` (the trained LoRA),
  `-M base=...` (default Qwen/Qwen2.5-VL-7B-Instruct), the released recipe's image
  budget (max_pixels 262144: 512x512 -> 504x504) and 512 new tokens. Boxes come back
  in original image pixels (Response.boxes), the model-frame boxes in
  Response.meta["boxes_model_frame"]. An adapter written by `adbench train` carries
  `adbench_training.json`; from it the adapter's base model, image budget
  (min/max pixels), protocol stages and completion length become the defaults, so
  `-M adapter=DIR` alone scores the model as it was trained (any `-M` wins). With
  `-M protocol=mmad -M prompt=mmad` it is asked as MMAD's script asks, and MMAD's image
  budget and 128 new tokens become the defaults instead.

`-M backend=vllm` runs the same prompts and parser through vLLM's offline engine
(`adbench.models.vllm_backend`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from adbench.args import ArgumentError
from adbench.errors import UserError
from adbench.jsonfile import read_json
from adbench.models.hf_vlm import HFVisionLanguageModel, check_args
from adbench.models.qwen_frame import (
    ADFM_MAX_PIXELS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    MMAD_MAX_PIXELS,
    MMAD_MIN_PIXELS,
    grid_to_input_size,
    smart_resize,
)

QWEN_7B = "Qwen/Qwen2.5-VL-7B-Instruct"
QWEN_3B = "Qwen/Qwen2.5-VL-3B-Instruct"
BACKENDS = ("transformers", "vllm")
ENGINES = ("auto", "generate", "fast")
#: Written by `adbench train` into the adapter folder (adbench.training.trainer).
TRAINING_METADATA = "adbench_training.json"


class QwenVLModel(HFVisionLanguageModel):
    """Qwen2.5-VL (base by hub id or folder, optional LoRA adapter) with its resize rule.

    Extra arguments: min_pixels / max_pixels (the model-input budget; the processor's
    resize rule, `qwen_frame.smart_resize`, turns them into each image's input size);
    engine: "auto" (the default: "fast" on a GPU, "generate" elsewhere), "generate"
    (transformers' `generate`) or "fast" (adbench's static-cache engine,
    `adbench.models.static_decode`: batched vision window attention, copy-free
    grouped-query attention, a decoding loop without per-token host syncs and, with
    `compile`, a CUDA-graph decoding step; the same greedy text, about 5.8x the plain
    transformers speed at batch 6 and 3.3-3.7x at batch 64 on an H200, docs/BENCHMARKS.md).
    compile: unset means on for the fast engine on a GPU (the first batch of each shape
    then takes about 40 s to compile), off otherwise.
    The fast engine rewrites the loaded model in memory (attention functions replaced,
    the vision MLP widened with zero weights, `adbench.models.qwen_kernels`): its outputs
    are unchanged, but a model passed to `from_components` should not be saved or
    trained after the engine has run on it.
    """

    name = "qwen2.5-vl"
    family = "qwen2.5-vl"
    model_class_name = "Qwen2_5_VLForConditionalGeneration"

    def __init__(self, base: str = QWEN_7B, min_pixels: int = DEFAULT_MIN_PIXELS,
                 max_pixels: int = DEFAULT_MAX_PIXELS, engine: str = "auto", compile: bool | None = None,
                 **kwargs: Any) -> None:
        if int(min_pixels) > int(max_pixels):
            raise ArgumentError(f"min_pixels ({min_pixels}) is larger than max_pixels ({max_pixels})")
        if engine not in ENGINES:
            raise ArgumentError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.min_pixels = int(min_pixels)
        self.max_pixels = int(max_pixels)
        self._decoder: Any = None
        self._decoder_lock = threading.Lock()
        super().__init__(base, compile=bool(compile), **kwargs)
        on_gpu = self.device.startswith("cuda")
        self.engine = ("fast" if on_gpu else "generate") if engine == "auto" else engine
        if compile is None:
            self.compile = self.engine == "fast" and on_gpu
        ip = self.processor.image_processor
        self._patch = int(getattr(ip, "patch_size", 14))
        self._merge = int(getattr(ip, "merge_size", 2))

    @classmethod
    def supports_boxes(cls) -> bool:
        return True

    def _processor_call_kwargs(self) -> dict[str, Any]:
        # the budget goes with every call, so a processor built or loaded elsewhere obeys it too
        return {"size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
                **super()._processor_call_kwargs()}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "min_pixels": self.min_pixels, "max_pixels": self.max_pixels,
                "engine": self.engine}

    def _fast_decoder(self) -> Any:
        """The fast engine, made on first use (from the prefetch thread or the main one, hence the lock)."""
        from adbench.models.static_decode import StaticDecoder

        with self._decoder_lock:
            if self._decoder is None or self._decoder.compile != self.compile:
                self._decoder = StaticDecoder(self.model, compile=self.compile)
            self._decoder.full_batch = self.batch_size
            return self._decoder

    def _stage(self, inputs: Any) -> dict[str, Any]:
        # the fast engine's host work (M-RoPE index, filler rows, pinned pixels) goes where
        # the processor runs: with prefetch, in its thread, while the GPU decodes the previous batch
        if self.engine == "generate":
            return {}
        return {"staged": self._fast_decoder().stage(inputs, self._tokenizer.pad_token_id)}

    def _new_tokens(self, inputs: Any, extra: dict[str, Any] | None = None) -> list[list[int]]:
        if self.engine == "generate":
            return super()._new_tokens(inputs, extra)
        from adbench.models.static_decode import Sampling

        decoder = self._fast_decoder()
        # as `generate` does: the repetition penalty (Qwen2.5-VL-Instruct's checkpoint sets 1.05)
        # applies to greedy decoding too, top_k to sampling
        sampling = Sampling(do_sample=self.do_sample, temperature=self.temperature, top_p=self.top_p,
                            top_k=self.effective_top_k() if self.do_sample else None,
                            repetition_penalty=self.effective_repetition_penalty())
        return decoder.generate((extra or {}).get("staged", inputs), self.max_new_tokens, self._eos,
                                self._tokenizer.pad_token_id, sampling, min_new_tokens=self.min_new_tokens or 0)

    def _length_estimate(self, text: str, images: list[Any]) -> int:
        # about 4 characters per text token plus the image tokens the resize rule gives
        tokens = len(text) // 4
        for img in images:
            h, w = smart_resize(img.height, img.width, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
            tokens += (h // 28) * (w // 28)
        return tokens

    def _input_size(self, enc: Any, row: int) -> tuple[int, int] | None:
        """The query image's model-input size, read from the processor's image_grid_thw."""
        grids = enc.inputs.get("image_grid_thw")
        if grids is None:
            return None
        offset = sum(len(p.images) for p in enc.items[: row + 1]) - 1  # last image of this row = query image
        return grid_to_input_size(grids[offset].tolist(), self._patch)


def make_qwen(name: str, backend: str = "transformers", **kwargs: Any) -> Any:
    """Build a Qwen2.5-VL adapter on the chosen backend ("transformers" or "vllm")."""
    if backend not in BACKENDS:
        raise ArgumentError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    kwargs.setdefault("name", name)
    if backend == "vllm":
        from adbench.models.vllm_backend import VLLMModel

        check_args(VLLMModel, kwargs, f"{name} (backend=vllm)")
        return VLLMModel(family="qwen2.5-vl", **kwargs)
    check_args(QwenVLModel, kwargs, name)
    return QwenVLModel(**kwargs)


#: What MMAD's Qwen2.5-VL script sets: its processor's image budget and `max_new_tokens=128`.
MMAD_SCRIPT_SETTINGS: dict[str, Any] = {"min_pixels": MMAD_MIN_PIXELS, "max_pixels": MMAD_MAX_PIXELS,
                                        "max_new_tokens": 128}


def _mmad_zero_shot(name: str, base: str, backend: str, kwargs: dict[str, Any]) -> Any:
    """A Qwen2.5-VL zero-shot preset: MMAD's prompt, image budget and 128 new tokens."""
    for key, value in (("base", base), *MMAD_SCRIPT_SETTINGS.items(), ("protocol", "mmad")):
        kwargs.setdefault(key, value)
    return make_qwen(name, backend, **kwargs)


def qwen25_vl_7b(backend: str = "transformers", **kwargs: Any) -> Any:
    """Qwen2.5-VL-7B-Instruct, zero-shot, MMAD's prompt and image budget."""
    return _mmad_zero_shot("qwen2.5-vl-7b", QWEN_7B, backend, kwargs)


def qwen25_vl_3b(backend: str = "transformers", **kwargs: Any) -> Any:
    """Qwen2.5-VL-3B-Instruct, zero-shot, MMAD's prompt and image budget."""
    return _mmad_zero_shot("qwen2.5-vl-3b", QWEN_3B, backend, kwargs)


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


def adfm(backend: str = "transformers", **kwargs: Any) -> Any:
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
