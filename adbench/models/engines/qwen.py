"""Qwen2.5-VL on transformers: its resize rule, its box frame and the choice of engine.

`QwenVLModel` is the transformers engine (`engines.hf`) for Qwen2.5-VL, with the
processor's image budget (min/max pixels) passed on every call, the query image's
model-input size read back for box mapping, and `-M engine=fast`: adbench's own
static-cache decoding loop (`engines.fast`). The named models built on it (`adfm`,
`qwen2.5-vl-7b`, `qwen2.5-vl-3b`) are in `adbench.models.presets`.
"""

from __future__ import annotations

import threading
from typing import Any

from adbench import compat
from adbench.args import ArgumentError
from adbench.models.devices import resolve_device
from adbench.models.engines.hf import HFVisionLanguageModel
from adbench.models.qwen_frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, grid_to_input_size, smart_resize

QWEN_7B = "Qwen/Qwen2.5-VL-7B-Instruct"
ENGINES = ("auto", "generate", "fast")


class QwenVLModel(HFVisionLanguageModel):
    """Qwen2.5-VL (base by hub id or folder, optional LoRA adapter) with its resize rule.

    Extra arguments: min_pixels / max_pixels (the model-input budget; the processor's
    resize rule, `qwen_frame.smart_resize`, turns them into each image's input size);
    engine: "auto" (the default: "fast" on a GPU, "generate" elsewhere), "generate"
    (transformers' `generate`) or "fast" (adbench's static-cache engine,
    `adbench.models.engines.fast`: batched vision window attention, copy-free
    grouped-query attention, a decoding loop without per-token host syncs and, with
    `compile`, a CUDA-graph decoding step; the same greedy text, about 5.8x the plain
    transformers speed at batch 6 and 3.3-3.7x at batch 64 on an H200, docs/BENCHMARKS.md).
    compile: unset means on for the fast engine on a GPU (the first batch of each shape
    then takes about 40 s to compile), off otherwise.
    share_prefix (fast engine; default on): queries of a batch that show the same images (the
    questions about one image in `mmad`, `mmad-multitask`) have the opening they share
    (images and instruction) prefilled once and its keys and values copied to each of them
    (`adbench.models.engines.fast.prefix`); with `sort_by_length` such queries are kept in
    one batch where they fit. The same greedy replies; off: every query is prefilled alone.
    The fast engine rewrites the loaded model in memory (attention functions replaced,
    the vision MLP widened with zero weights, `adbench.models.engines.fast.kernels`): its outputs
    are unchanged, but a model passed to `from_components` should not be saved or
    trained after the engine has run on it.
    """

    name = "qwen2.5-vl"
    family = "qwen2.5-vl"
    model_class_name = "Qwen2_5_VLForConditionalGeneration"

    def __init__(self, base: str = QWEN_7B, min_pixels: int = DEFAULT_MIN_PIXELS,
                 max_pixels: int = DEFAULT_MAX_PIXELS, engine: str = "auto", compile: bool | None = None,
                 share_prefix: bool = True, **kwargs: Any) -> None:
        if int(min_pixels) > int(max_pixels):
            raise ArgumentError(f"min_pixels ({min_pixels}) is larger than max_pixels ({max_pixels})")
        if engine not in ENGINES:
            raise ArgumentError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.min_pixels = int(min_pixels)
        self.max_pixels = int(max_pixels)
        self.share_prefix = bool(share_prefix)
        self._decoder: Any = None
        self._decoder_lock = threading.Lock()
        fast_on_gpu = engine == "auto" and resolve_device(str(kwargs.get("device", "auto"))).type == "cuda"
        if engine == "fast" or fast_on_gpu:
            compat.fast_engine()  # checked before the model loads (minutes for a 7B one), not at its first batch
        super().__init__(base=base, compile=bool(compile), **kwargs)
        on_gpu = self.device.type == "cuda"
        self.engine = ("fast" if on_gpu else "generate") if engine == "auto" else engine
        if compile is None:
            self.compile = self.engine == "fast" and on_gpu
        ip = self.processor.image_processor
        self._patch = int(getattr(ip, "patch_size", 14))
        self._merge = int(getattr(ip, "merge_size", 2))

    def supports_boxes(self) -> bool:
        return True

    def _processor_call_kwargs(self) -> dict[str, Any]:
        # the budget goes with every call, so a processor built or loaded elsewhere obeys it too
        return {"size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
                **super()._processor_call_kwargs()}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "min_pixels": self.min_pixels, "max_pixels": self.max_pixels,
                "engine": self.engine, "share_prefix": self._shares_prefixes()}

    def _fast_decoder(self) -> Any:
        """The fast engine, made on first use (from the prefetch thread or the main one, hence the lock)."""
        from adbench.models.engines.fast.decode import StaticDecoder

        with self._decoder_lock:
            if self._decoder is None or self._decoder.compile != self.compile:
                self._decoder = StaticDecoder(self.model, compile=self.compile)
            self._decoder.full_batch = self.batch_size
            return self._decoder

    def _shares_prefixes(self) -> bool:
        return self.engine == "fast" and self.share_prefix

    def _in_batch_order(self, ready: list[Any]) -> list[Any]:
        """By length, except that the queries about the same images stay together (their prefill is
        shared): groups by their longest prompt, each group's queries by length."""
        if not self._shares_prefixes():
            return super()._in_batch_order(ready)
        groups: dict[tuple[str, ...], list[Any]] = {}
        for p in ready:
            groups.setdefault(tuple(p.query.images), []).append(p)
        ordered = sorted(groups.values(), key=lambda g: max(p.length for p in g))
        return [p for g in ordered for p in sorted(g, key=lambda p: p.length)]

    def _stage(self, inputs: Any, chunk: list[Any]) -> dict[str, Any]:
        # the fast engine's host work (M-RoPE index, filler rows, pinned pixels, the shared-prefix
        # layout) goes where the processor runs: with prefetch, in its thread, while the GPU decodes
        # the previous batch. A query's images are named by their paths: equal paths, equal pixels.
        if self.engine == "generate":
            return {}
        keys = [tuple(p.query.images) for p in chunk] if self._shares_prefixes() else None
        return {"staged": self._fast_decoder().stage(inputs, self._tokenizer.pad_token_id, row_keys=keys)}

    def _new_tokens(self, inputs: Any, extra: dict[str, Any] | None = None) -> list[list[int]]:
        if self.engine == "generate":
            return super()._new_tokens(inputs, extra)
        from adbench.models.engines.fast.decode import Sampling

        g = self.decoding()
        return self._fast_decoder().generate((extra or {}).get("staged", inputs), g.max_new_tokens, self._eos,
                                             self._tokenizer.pad_token_id, Sampling.of(g),
                                             min_new_tokens=g.min_new_tokens or 0)

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

