"""The fast generation engine for Qwen2.5-VL (`-M engine=fast`): static cache, graph-captured decoding.

transformers' `generate` spends most of a batch on the host (profiles in
docs/BENCHMARKS.md): a device-to-host sync after every token for its stopping checks,
the vision tower's per-window attention loop, the multimodal position index computed
with host syncs, and keys/values expanded seven-fold per step. This engine runs the
same model (the same modules, weights and LoRA layers) with its own loop:

1. the 3D (M-RoPE) position index is computed by the model's own `get_rope_index` on
   the CPU copies of the inputs, so the GPU never waits for it;
2. one prefill forward writes the prompt's keys and values into a preallocated cache
   (`SlotCache`); the vision tower runs its windows as batched attention calls and the
   text layers use grouped-query attention without copies (`qwen_kernels`);
3. each decoding step is one forward of a single token per row, captured as a CUDA
   graph with `torch.compile(mode="reduce-overhead")` when `compile=True`; the
   choice of the next token (repetition penalty, then greedy or temperature / top-k /
   top-p sampling) runs on the device; finished rows are checked on the host only every
   `check_every` steps.

Greedy text equals `generate`'s (tested on the tiny model): the masks, positions,
repetition penalty, minimum length and stopping rule are the same, only the kernels'
grouping differs.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any

from adbench.models.qwen_kernels import install_fast_attention

#: static cache lengths are rounded up to this, so prompts of similar length share a compiled step
LENGTH_BUCKET = 128


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy unless do_sample (then temperature, top_k, top_p)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    #: transformers' RepetitionPenaltyLogitsProcessor: scores of tokens already in the row
    #: (prompt, padding and reply) are divided by it when positive, multiplied when negative
    repetition_penalty: float = 1.0


class SlotCache:
    """Keys and values of every layer in preallocated (batch, kv_heads, max_len, dim) buffers.

    The model's attention layers call `update(keys, values, layer_idx)`; the new
    entries are written at positions `pos, pos+1, ...` where `pos` is a device scalar
    the engine advances after each forward. The buffers keep their addresses for the
    cache's lifetime, which CUDA-graph replay needs.
    """

    is_compileable = True

    def __init__(self, layers: int, batch: int, kv_heads: int, max_len: int, head_dim: int, dtype: Any,
                 device: Any) -> None:
        import torch

        shape = (batch, kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        self.batch, self.max_len = batch, max_len
        for t in (*self.keys, *self.values, self.pos):
            torch._dynamo.mark_static_address(t)

    def update(self, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        import torch

        index = self.pos + torch.arange(key_states.shape[-2], device=key_states.device)
        self.keys[layer_idx].index_copy_(2, index, key_states)
        self.values[layer_idx].index_copy_(2, index, value_states)
        return self.keys[layer_idx], self.values[layer_idx]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_rows(inputs: Any, rows: int, pad_id: int) -> dict[str, Any]:
    """The batch with filler rows appended up to `rows` (their replies are discarded).

    A filler row is padding plus one real pad token at the end: no image, a valid
    position, and an attention row that is never empty.
    """
    import torch

    out = {k: v for k, v in inputs.items()}
    ids = inputs["input_ids"]
    missing = rows - ids.shape[0]
    if missing <= 0:
        return out
    length = ids.shape[1]
    mask = torch.zeros(missing, length, dtype=inputs["attention_mask"].dtype, device=ids.device)
    mask[:, -1] = 1
    out["input_ids"] = torch.cat([ids, torch.full((missing, length), pad_id, dtype=ids.dtype, device=ids.device)])
    out["attention_mask"] = torch.cat([inputs["attention_mask"], mask])
    if inputs.get("mm_token_type_ids") is not None:
        types = inputs["mm_token_type_ids"]
        out["mm_token_type_ids"] = torch.cat([types, torch.zeros(missing, length, dtype=types.dtype,
                                                                 device=types.device)])
    return out


def bucket_rows(rows: int, full_batch: int | None = None) -> int:
    """The batch size to pad `rows` to: the full batch when more than half full, else a power of two.

    A run's batches then come in few shapes (the full one, and powers of two for the last
    or a retried batch), and a one-query retry after an out-of-memory error stays one row.
    """
    if full_batch and full_batch // 2 < rows <= full_batch:
        return full_batch
    return 1 << (rows - 1).bit_length()


class _Clock:
    """Elapsed time of consecutive phases, from CUDA events on a GPU (no host sync until read)."""

    def __init__(self, device: Any) -> None:
        import time

        import torch

        self.cuda = torch.device(device).type == "cuda"
        self.marks: list[tuple[str, Any]] = []
        self._now = self._event if self.cuda else time.perf_counter
        self.start = self._now()

    @staticmethod
    def _event() -> Any:
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def mark(self, name: str) -> None:
        self.marks.append((name, self._now()))

    def ms(self) -> dict[str, float]:
        out, last = {}, self.start
        for name, point in self.marks:
            out[f"{name}_ms"] = round(last.elapsed_time(point) if self.cuda else (point - last) * 1000, 2)
            last = point
        return out


class StaticDecoder:
    """Batched generation for a Qwen2.5-VL (or a PEFT model wrapping one) with the fast attention installed."""

    def __init__(self, model: Any, compile: bool = False, check_every: int = 16,
                 bucket_batches: bool | None = None, full_batch: int | None = None) -> None:
        import torch

        self.base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.kernels = install_fast_attention(model)
        text = self.base.config.get_text_config()
        self.layers = int(text.num_hidden_layers)
        self.kv_heads = int(text.num_key_value_heads)
        self.head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
        self.image_token_id = int(self.base.config.image_token_id)
        params = inspect.signature(self.base.forward).parameters
        # transformers renamed `past_key_values` to `cache` (5.2x); take whichever this version has
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.check_every = max(1, int(check_every))
        self.compile = bool(compile)
        #: pad each batch with filler rows to a few sizes (fewer shapes to compile); default: when compiling
        self.bucket_batches = self.compile if bucket_batches is None else bool(bucket_batches)
        self.full_batch = full_batch
        self._cache: SlotCache | None = None
        self._compiled_shapes: set[tuple[int, int]] = set()
        #: phases of the last batch (prefill_ms, decode_ms, steps, shapes), for benchmarks
        self.last_timing: dict[str, Any] = {}
        self._decode = self._decode_logits
        if compile:
            # one compiled step per (batch, cache length) pair; allow more of them than dynamo's default 8
            for limit in ("recompile_limit", "cache_size_limit"):
                if hasattr(torch._dynamo.config, limit):
                    setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 32))
            self._decode = torch.compile(self._decode_logits, mode="reduce-overhead", dynamic=False)

    # ---------------------------------------------------------------- pieces

    def _forward(self, **kwargs: Any) -> Any:
        return self.base(**kwargs, **{self.cache_kw: self._cache}, use_cache=True, logits_to_keep=1).logits[:, -1]

    def _decode_logits(self, tokens: Any, position_ids: Any, mask: Any) -> Any:
        """One token per row through the text model (the part captured as a CUDA graph)."""
        return self._forward(input_ids=tokens, position_ids=position_ids,
                             attention_mask={"full_attention": mask, "sliding_attention": mask}).float()

    def _cache_for(self, batch: int, max_len: int, dtype: Any, device: Any) -> SlotCache:
        c = self._cache
        if c is None or c.batch != batch or c.max_len != max_len or c.keys[0].dtype != dtype:
            self._cache = None  # free the old buffers before allocating new ones
            self._cache = SlotCache(self.layers, batch, self.kv_heads, max_len, self.head_dim, dtype, device)
        return self._cache

    def rope_index(self, inputs: Any) -> tuple[Any, Any]:
        """M-RoPE positions (3, batch, len) and per-row deltas, by the model's own code, on the CPU."""
        ids = inputs["input_ids"].cpu()
        types = inputs.get("mm_token_type_ids")
        types = (ids == self.image_token_id).int() if types is None else types.cpu()
        grid = inputs.get("image_grid_thw")
        return self.base.model.get_rope_index(ids, types, image_grid_thw=None if grid is None else grid.cpu(),
                                              attention_mask=inputs["attention_mask"].cpu())

    @staticmethod
    def penalize(logits: Any, seen: Any, penalty: float) -> Any:
        """Repetition penalty on float logits (batch, vocab) for the tokens marked in `seen`."""
        import torch

        return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)

    @staticmethod
    def choose(logits: Any, sampling: Sampling, banned: Any = None) -> Any:
        """Next token per row from float logits (batch, vocab); `banned` ids get -inf first."""
        import torch

        if banned is not None:
            logits = logits.index_fill(1, banned, float("-inf"))
        if not sampling.do_sample:
            return logits.argmax(dim=-1)
        logits = logits / max(sampling.temperature, 1e-5)
        if sampling.top_k:
            kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if sampling.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            drop = cumulative - sorted_logits.softmax(-1) > sampling.top_p  # keep the token that crosses top_p
            logits = logits.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))
        probs = logits.softmax(-1)
        # exponential race (Gumbel-max): argmax(p / E), E ~ Exp(1), draws from p without a host sync
        return (probs / torch.empty_like(probs).exponential_(1.0)).argmax(dim=-1)

    # ---------------------------------------------------------------- generation

    def generate(self, inputs: Any, max_new_tokens: int, eos_ids: set[int], pad_id: int,
                 sampling: Sampling = Sampling(), min_new_tokens: int = 0) -> list[list[int]]:
        """New token ids per row (each ends at its first EOS, kept, or after max_new_tokens).

        `inputs`: the processor's output for a left-padded batch (input_ids, attention_mask,
        pixel_values, image_grid_thw, optionally mm_token_type_ids), on any device.
        """
        import torch
        from torch.profiler import record_function

        real_rows = inputs["input_ids"].shape[0]
        if self.bucket_batches:  # few distinct batch shapes, few compilations
            inputs = pad_rows(inputs, bucket_rows(real_rows, self.full_batch), pad_id)
        device = next(self.base.parameters()).device
        dtype = next(self.base.parameters()).dtype
        with record_function("adbench.rope_index"):
            position_ids, deltas = self.rope_index(inputs)
        ids = inputs["input_ids"].to(device)
        attention = inputs["attention_mask"].to(device).bool()
        batch, prompt_len = ids.shape
        max_len = _round_up(prompt_len + max_new_tokens, LENGTH_BUCKET)
        cache = self._cache_for(batch, max_len, dtype, device)
        if self.compile and (batch, max_len) not in self._compiled_shapes:
            self._compiled_shapes.add((batch, max_len))
            print(f"adbench: compiling the decoding step for {batch} rows x {max_len} cached tokens "
                  "(once per shape, about a minute on a GPU)", file=sys.stderr, flush=True)
        valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        valid[:, :prompt_len] = attention
        eos = torch.tensor(sorted(eos_ids), device=device)
        # get_rope_index's deltas count from the row's real tokens: a left-padded row's next
        # position is (cache index - its padding) + delta, as generate computes it
        padding = prompt_len - inputs["attention_mask"].cpu().sum(dim=1)
        deltas = (deltas.view(-1) - padding).to(device).view(1, batch, 1)

        clock = _Clock(device)
        with torch.inference_mode():
            cache.pos.zero_()
            prefill_mask = None  # no padding: plain causal attention (SDPA's flash kernel)
            if not bool(attention.all()):
                index = torch.arange(prompt_len, device=device)
                causal = index[None, :] <= index[:, None]
                # pad rows may attend to themselves only: a fully masked row would give NaN
                prefill_mask = ((causal[None] & attention[:, None, :])
                                | torch.eye(prompt_len, dtype=torch.bool, device=device)[None])[:, None]
            mm: dict[str, Any] = {}
            if inputs.get("pixel_values") is not None:
                mm = dict(pixel_values=inputs["pixel_values"].to(device, dtype),
                          image_grid_thw=inputs["image_grid_thw"].to(device))
            with record_function("adbench.prefill"):
                logits = self._forward(input_ids=ids, position_ids=position_ids.to(device),
                                       attention_mask={"full_attention": prefill_mask,
                                                       "sliding_attention": prefill_mask}, **mm).float()
            cache.pos.fill_(prompt_len)
            clock.mark("prefill")
            out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
            finished = torch.zeros(batch, dtype=torch.bool, device=device)
            finished[real_rows:] = True  # filler rows must not keep the loop going
            tokens = torch.empty(batch, 1, dtype=torch.long, device=device)
            columns = torch.arange(max_len, device=device)
            seen = None
            if sampling.repetition_penalty != 1.0:
                seen = torch.zeros(logits.shape, dtype=torch.bool, device=device).scatter_(1, ids, True)
            steps = 0
            for step in range(max_new_tokens):
                with record_function("adbench.sample"):
                    if seen is not None:
                        logits = self.penalize(logits, seen, sampling.repetition_penalty)
                    nxt = self.choose(logits, sampling, eos if step < min_new_tokens else None)
                    if seen is not None:
                        seen.scatter_(1, nxt[:, None], True)
                nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
                out[:, step] = nxt
                finished |= torch.isin(nxt, eos)
                steps = step + 1
                if steps == max_new_tokens:
                    break
                if steps % self.check_every == 0 and bool(finished.all()):
                    break
                tokens.copy_(nxt[:, None])
                mask = (valid & (columns <= cache.pos))[:, None, None, :]
                positions = (cache.pos + deltas).expand(3, batch, 1)
                if self.compile:
                    torch.compiler.cudagraph_mark_step_begin()
                with record_function("adbench.decode_step"):
                    logits = self._decode(tokens, positions, mask).clone()
                cache.pos.add_(1)
            clock.mark("decode")
        kept = out[:real_rows, :steps].tolist()
        self.last_timing = dict(batch=batch, prompt_len=prompt_len, cache_len=max_len, steps=steps, **clock.ms())
        result = []
        for row in kept:
            end = next((k for k, tok in enumerate(row) if tok in eos_ids), None)
            result.append(row if end is None else row[: end + 1])
        return result
