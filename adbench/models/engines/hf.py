"""The transformers engine: local MLLMs through `generate`, batched.

`HFVisionLanguageModel` runs any image-text-to-text model transformers knows
(`AutoModelForImageTextToText` + the model's processor and chat template):

    Query --prompting.messages--> chat messages (reference image before the query image)
          --processor.apply_chat_template--> prompt text
          --processor(text, images), LEFT padding--> one batch --model.generate--> new tokens
          --decode--> reply text --prompting.interpret--> Response

`adbench.models.engines.qwen` specialises it for Qwen2.5-VL (resize rule, box frame, the
fast engine); `adbench.models.presets` holds the named models built on it. What a model
family needs (image tiling, placeholders) is handled by its processor or by its preset,
never by tasks. Decoding settings: `adbench.models.generation` (applied here as
`generate`'s keyword arguments).

Speed options (all off or neutral by default, all results-neutral for greedy decoding
except where noted): `batch_size` queries per `generate` call, `sort_by_length`
(bucket queries of similar prompt length into the same batch, less padding),
`prefetch` (decode images and run the processor for the next batch in a thread while
the current one generates), `prepare_threads` (images of a call decoded in parallel),
`cache="static"` with `compile=True` (static KV cache and a compiled decoding step; a
fixed `pad_to_multiple_of` limits recompilation); Qwen2.5-VL adds `engine=fast`.

Safety: weights are loaded from safetensors only (`use_safetensors=True`; a local
folder without `.safetensors` files, or whose `.safetensors` files are not safetensors,
is refused before anything is read), LoRA adapters only from a real
`adapter_model.safetensors`, and remote code runs only with an explicit
`trust_remote_code=True` (`adbench.models.weights`).

Missing weights: `-M base=` is found locally first (a folder, or the hub id's snapshot
in the Hugging Face cache, read without a hub request); a model that is not there and
cannot be downloaded now is a one-line error naming it and the remedies, in seconds
(`weights.locate_pretrained`).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adbench.args import ArgumentError
from adbench.images import ImageError, load_image
from adbench.models.devices import resolve_device
from adbench.models.engines.local import LocalVLM
from adbench.models.generation import LOCAL_DEFAULTS, GenerationConfig, checkpoint_defaults
from adbench.models.prompting import template_reads
from adbench.models.weights import locate_pretrained
from adbench.schema import Query, Response

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "bfloat16", "float16", "float32", "float64")
CACHES = ("dynamic", "static")


def resolve_dtype(dtype: str, device: torch.device) -> Any:
    import torch

    if dtype not in DTYPES:
        raise ArgumentError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


@dataclass
class Prepared:
    """One query ready for the processor (images decoded, prompt rendered)."""

    index: int
    query: Query
    text: str
    images: list[Any]
    image_size: tuple[int, int]  # (width, height) of the query image
    length: int  # prompt length estimate, for bucketing


@dataclass
class Encoded:
    items: list[Prepared]
    inputs: Any  # BatchFeature on CPU
    prep_s: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class HFVisionLanguageModel(LocalVLM):
    """An image-text-to-text model from the hub or a local folder, optionally with a LoRA adapter.

    Arguments (`-M key=value`): those of `LocalVLM` (base, adapter, prompting, decoding), and
      dtype                auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, float32, float64
      device               auto, cpu, cuda, cuda:N
      attn_implementation  sdpa (default), eager, flash_attention_2
      batch_size           queries per generate call (a seed gives the same replies for the same batches)
      sort_by_length, prefetch, prepare_threads (image decoding threads; default: CPUs, at most 8),
      cache ("dynamic"/"static"), compile, pad_to_multiple_of: speed
      processor_kwargs     extra keyword arguments for the processor call (e.g. InternVL's max_patches)
    """

    name = "hf-vlm"
    #: transformers class used to load the model (resolved from `transformers` by name)
    model_class_name = "AutoModelForImageTextToText"

    def __init__(
        self,
        dtype: str = "auto",
        device: str = "auto",
        attn_implementation: str = "sdpa",
        batch_size: int = 8,
        sort_by_length: bool = True,
        prefetch: bool = False,
        prepare_threads: int | None = None,
        cache: str = "dynamic",
        compile: bool = False,
        pad_to_multiple_of: int | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        _components: tuple[Any, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if int(batch_size) < 1:
            raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
        if cache not in CACHES:
            raise ArgumentError(f"cache must be one of {', '.join(CACHES)}, got {cache!r}")
        super().__init__(**kwargs)  # checks the prompting and decoding settings before anything loads
        self.device = resolve_device(device)
        self.dtype_name = dtype
        self.dtype = resolve_dtype(dtype, self.device)
        self.attn_implementation = attn_implementation
        self.batch_size = int(batch_size)
        self.sort_by_length = bool(sort_by_length)
        self.prefetch = bool(prefetch)
        self.prepare_threads = min(8, os.cpu_count() or 1) if prepare_threads is None else int(prepare_threads)
        self.cache = cache
        self.compile = bool(compile)
        self.pad_to_multiple_of = None if pad_to_multiple_of is None else int(pad_to_multiple_of)
        self.processor_kwargs = dict(processor_kwargs or {})
        if _components is not None:
            self.model, self.processor = _components
        else:
            self.model, self.processor = self._load()
        self._setup_tokenizer()
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ loading

    def _processor_load_kwargs(self) -> dict[str, Any]:
        return {}

    def _load(self) -> tuple[Any, Any]:
        # a checked local folder (the hub cache's snapshot of a cached hub id), or a hub id the hub can give now;
        # otherwise a one-line error naming the model, at once (adbench.models.weights)
        source = locate_pretrained(self.base, "base model", "-M base=DIR")
        import transformers

        cls = getattr(transformers, self.model_class_name)
        kwargs: dict[str, Any] = dict(dtype=self.dtype, use_safetensors=True,
                                      trust_remote_code=self.trust_remote_code)
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        model = cls.from_pretrained(source, **kwargs)
        if self.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter, is_trainable=False)
        model.to(self.device)
        model.eval()
        processor = transformers.AutoProcessor.from_pretrained(
            source, trust_remote_code=self.trust_remote_code, **self._processor_load_kwargs())
        return model, processor

    @classmethod
    def from_components(cls, model: Any, processor: Any, base: str = "<in-memory>", **kwargs: Any) -> Any:
        """Wrap an already built model and processor (benchmarks, training evaluation)."""
        return cls(base=base, _components=(model, processor), **kwargs)

    def _setup_tokenizer(self) -> None:
        tok = getattr(self.processor, "tokenizer", self.processor)
        tok.padding_side = "left"  # decoder-only batched generation: pads before the prompt
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._tokenizer = tok
        eos = self._generation_config().eos_token_id
        if eos is None:
            eos = tok.eos_token_id
        self._eos = set(eos if isinstance(eos, (list, tuple)) else [eos])

    def _generation_config(self) -> Any:
        return self.model.generation_config

    def generation_defaults(self) -> dict[str, Any]:
        """`LOCAL_DEFAULTS` and the loaded checkpoint's repetition_penalty and top_k (read now: a
        generation_config changed in memory counts, as it does for `generate`)."""
        return {**LOCAL_DEFAULTS, **checkpoint_defaults(self._generation_config())}

    # ------------------------------------------------------------------ provenance

    def config(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            **super().config(),
            "backend": "transformers",
            **self._vision_ids(),
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "attn_implementation": self.attn_implementation,
            "batch_size": self.batch_size,
            "cache": self.cache,
            "compile": self.compile,
            "processor_kwargs": self.processor_kwargs,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }

    def _vision_ids(self) -> dict[str, Any]:
        """Whether the chat template numbered the images ("Picture N: "), where the prompting asks it to."""
        if "add_vision_id" not in self.prompting.template_kwargs():
            return {}
        return {"vision_ids": template_reads(self.processor, "add_vision_id")}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ------------------------------------------------------------------ predict

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        responses: list[Response | None] = [None] * len(queries)
        ready: list[Prepared] = []
        for i, outcome in enumerate(self._prepare_all(queries)):
            if isinstance(outcome, Prepared):
                ready.append(outcome)
            else:
                responses[i] = Response.failure(outcome)
        if self.sort_by_length:
            ready = self._in_batch_order(ready)
        chunks = [ready[i : i + self.batch_size] for i in range(0, len(ready), self.batch_size)]
        for chunk, encoded in zip(chunks, self._encoded(chunks)):
            for p, r in zip(chunk, self._run(encoded)):
                responses[p.index] = r
        return [r if r is not None else Response.failure("internal error: no response") for r in responses]

    def _in_batch_order(self, ready: list[Prepared]) -> list[Prepared]:
        """The order queries are cut into batches with `sort_by_length`: by prompt length (less padding)."""
        return sorted(ready, key=lambda p: p.length)

    def _prepare_all(self, queries: Sequence[Query]) -> list[Prepared | str]:
        """Each query prepared, or the reason it cannot be, in query order.

        Images are decoded in `prepare_threads` threads: PIL decodes outside the GIL, and
        a batch of 64 large PNGs decoded one after another leaves a GPU idle for a second.
        """

        def one(item: tuple[int, Query]) -> Prepared | str:
            try:
                return self._prepare(*item)
            except (ImageError, ValueError, OSError) as e:
                return str(e)

        items = list(enumerate(queries))
        if self.prepare_threads < 2 or len(items) < 2:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.prepare_threads, len(items)),
                                thread_name_prefix="adbench-prepare") as pool:
            return list(pool.map(one, items))

    def _prepare(self, index: int, q: Query) -> Prepared:
        messages = self.prompting.messages(q)
        images = []
        for msg in messages:
            if isinstance(msg["content"], str):
                continue
            for part in msg["content"]:
                if part.get("type") == "image":
                    img = load_image(part["image"])
                    images.append(img)
                    part["image"] = img
        text = self._render(messages)
        return Prepared(index, q, text, images, images[-1].size if images else (0, 0),
                        self._length_estimate(text, images))

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  **self.prompting.template_kwargs())

    def _length_estimate(self, text: str, images: list[Any]) -> int:
        return len(text)

    def _encoded(self, chunks: list[list[Prepared]]) -> Any:
        """Yield Encoded batches; with `prefetch`, the next batch is encoded while this one generates."""
        if not self.prefetch or len(chunks) < 2:
            for chunk in chunks:
                yield self._encode(chunk)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adbench-prefetch")
        pending: Future[Encoded] = self._pool.submit(self._encode, chunks[0])
        for k in range(len(chunks)):
            current = pending.result()
            if k + 1 < len(chunks):
                pending = self._pool.submit(self._encode, chunks[k + 1])
            yield current

    def _encode(self, chunk: list[Prepared]) -> Encoded:
        t = time.perf_counter()
        try:
            kwargs: dict[str, Any] = dict(padding=True, return_tensors="pt", **self._processor_call_kwargs())
            if self.pad_to_multiple_of:
                kwargs["pad_to_multiple_of"] = self.pad_to_multiple_of
            images = [img for p in chunk for img in p.images]
            inputs = self.processor(text=[p.text for p in chunk], images=images or None, **kwargs)
            extra = self._stage(inputs, chunk)
            return Encoded(chunk, inputs, time.perf_counter() - t, extra=extra)
        except Exception as e:  # noqa: BLE001 - becomes a recorded failure of these queries
            return Encoded(chunk, None, time.perf_counter() - t, error=f"preprocessing failed: {type(e).__name__}: {e}")

    def _stage(self, inputs: Any, chunk: list[Prepared]) -> dict[str, Any]:
        """Engine-specific host work on an encoded batch (of `chunk`'s queries), done where `_encode`
        runs (the prefetch thread with `prefetch`); what it returns reaches `_new_tokens` as `extra`."""
        return {}

    def _processor_call_kwargs(self) -> dict[str, Any]:
        return dict(self.processor_kwargs)

    def _generate_kwargs(self, g: GenerationConfig) -> dict[str, Any]:
        """`generate`'s keyword arguments for the resolved settings `g`. Greedy, temperature, top_p and
        top_k are passed as None, so no sampling default of the checkpoint leaks in."""
        kw: dict[str, Any] = dict(max_new_tokens=g.max_new_tokens, do_sample=g.do_sample, temperature=g.temperature,
                                  top_p=g.top_p, top_k=g.top_k, repetition_penalty=g.repetition_penalty,
                                  pad_token_id=self._tokenizer.pad_token_id)
        if g.min_new_tokens:
            kw["min_new_tokens"] = g.min_new_tokens
        if self.cache == "static":
            kw["cache_implementation"] = "static"
            kw["disable_compile"] = not self.compile
        return kw

    def _run(self, enc: Encoded) -> list[Response]:
        """Generate for one encoded batch; if it fails, retry its queries one at a time."""
        if enc.error is not None:
            if len(enc.items) > 1:
                return [r for p in enc.items for r in self._run(self._encode([p]))]
            return [Response.failure(enc.error)]
        try:
            return self._generate(enc)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory on a long batch
            if len(enc.items) > 1:
                # slower, and a sign of a too large batch or a bug: say so rather than hide it
                warnings.warn(f"{self.name}: a batch of {len(enc.items)} failed ({type(e).__name__}: {e}); "
                              "retrying its queries one at a time", RuntimeWarning, stacklevel=2)
                return [r for p in enc.items for r in self._run(self._encode([p]))]
            return [Response.failure(f"generation failed: {type(e).__name__}: {e}")]

    def _new_tokens(self, inputs: Any, extra: dict[str, Any] | None = None) -> list[list[int]]:
        """The generated token ids of each row of an encoded batch (transformers' `generate`).

        `extra`: what `_stage` made of the batch (nothing here)."""
        import torch

        inputs = inputs.to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self._generate_kwargs(self.decoding()))
        return out[:, inputs["input_ids"].shape[1]:].tolist()

    def _generate(self, enc: Encoded) -> list[Response]:
        import torch

        g = self.decoding()
        if g.do_sample:
            torch.manual_seed(g.seed)
        t = time.perf_counter()
        new = self._new_tokens(enc.inputs, enc.extra)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        gen_s = time.perf_counter() - t
        prompt_tokens = enc.inputs["attention_mask"].sum(dim=1).tolist()
        n = len(enc.items)
        responses = []
        for row, p in enumerate(enc.items):
            ids = new[row]
            end = next((k for k, tok in enumerate(ids) if tok in self._eos), None)
            kept = ids if end is None else ids[:end]
            text, stopped = g.cut(self._tokenizer.decode(kept, skip_special_tokens=True))
            truncated = end is None and not stopped and len(ids) >= g.max_new_tokens
            r = self.prompting.interpret(p.query, text, truncated=truncated, image_size=p.image_size,
                                         input_size=self._input_size(enc, row))
            r.usage = {"prompt_tokens": int(prompt_tokens[row]), "completion_tokens": len(kept) + (end is not None),
                       "latency_s": round((gen_s + enc.prep_s) / n, 6)}
            responses.append(r)
        return responses

    def _input_size(self, enc: Encoded, row: int) -> tuple[int, int] | None:
        """(width, height) of the query image as the model saw it; None where unknown."""
        return None

