"""The fast generation engine for Qwen2.5-VL (`-M engine=fast`): static cache, graph-captured decoding.

transformers' `generate` spends most of a batch on the host (profiles in
docs/BENCHMARKS.md): a device-to-host sync after every token for its stopping checks,
the vision tower's per-window attention loop, the multimodal position index computed
with host syncs, and keys/values expanded seven-fold per step. This engine runs the
same model (the same modules, weights and LoRA layers) with its own loop:

1. `stage` does a batch's host work: filler rows, the 3D (M-RoPE) position index by
   the model's own `get_rope_index` on the CPU copies of the inputs, pixels cast to the
   model's dtype and pinned for an asynchronous copy. The adapters call it where the
   processor runs (the prefetch thread), so the GPU does not wait for it;
2. one prefill forward writes the prompt's keys and values into a preallocated cache
   (`SlotCache`); the vision tower runs its windows as batched attention calls and the
   text layers use grouped-query attention without copies (`kernels`). Rows that show the
   same images (the questions about one image) have their common opening prefilled once
   per group and copied into each row's slots (`prefix`; `-M share_prefix`);
3. each decoding step is one forward of a single token per row followed by the choice
   of the next token (`pick`: repetition penalty, end-token ban, greedy or top-k-first
   sampling), captured as one CUDA graph with
   `torch.compile(mode="reduce-overhead")` when `compile=True`; only the random draw
   and a few per-row updates run outside it, and finished rows are checked on the host
   only every `check_every` steps.

Greedy text equals `generate`'s (tested on the tiny model): the masks, positions,
repetition penalty, minimum length and stopping rule are the same, only the kernels'
grouping differs.
"""

from __future__ import annotations

import inspect
import sys
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from adbench import compat
from adbench.models.engines.fast.kernels import install_fast_attention
from adbench.models.engines.fast.prefix import SharedPrefix, plan_shared_prefix
from adbench.models.generation import GenerationConfig

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

    @classmethod
    def of(cls, g: GenerationConfig) -> Sampling:
        """The sampler for resolved settings (`GenerationConfig.resolve`): as `generate` applies them,
        the repetition penalty to greedy decoding too, top_k / top_p / temperature to sampling only."""
        if not g.do_sample:
            return cls(repetition_penalty=g.repetition_penalty or 1.0)
        return cls(do_sample=True, temperature=1.0 if g.temperature is None else g.temperature, top_k=g.top_k,
                   top_p=1.0 if g.top_p is None else g.top_p, repetition_penalty=g.repetition_penalty or 1.0)


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


@dataclass
class StagedBatch:
    """A batch with the engine's host-side work done (`StaticDecoder.stage`), ready to go to the device.

    Built in the adapter's prefetch thread, so the GPU does not wait for it: filler rows
    added, the M-RoPE index computed, pixels cast to the model's dtype (and pinned in
    page-locked memory for an asynchronous copy when the model is on a GPU).
    """

    input_ids: Any
    attention_mask: Any
    real_rows: int
    position_ids: Any  # (3, batch, prompt_len)
    deltas: Any  # (batch,): next position = cache index + delta
    pixel_values: Any = None  # with `shared`: the images of the prefix rows only
    image_grid_thw: Any = None
    #: the two-block layout when rows share their images' prefix (`prefix.plan_shared_prefix`), else None
    shared: SharedPrefix | None = None


def prefill_mask(attention: Any, padded: bool) -> Any:
    """The (batch, 1, len, len) boolean mask of a left-padded prompt block (`attention`: its
    boolean attention mask, on the device), or None when nothing is `padded` (known on the host).

    Causal over each row's real tokens; a pad row attends to itself only (a fully masked
    row would give NaN).
    """
    import torch

    if not padded:
        return None  # plain causal attention (SDPA's flash kernel)
    length = attention.shape[1]
    index = torch.arange(length, device=attention.device)
    causal = index[None, :] <= index[:, None]
    eye = torch.eye(length, dtype=torch.bool, device=attention.device)
    return ((causal[None] & attention[:, None, :]) | eye[None])[:, None]


class StaticDecoder:
    """Batched generation for a Qwen2.5-VL (or a PEFT model wrapping one) with the fast attention installed."""

    def __init__(self, model: Any, compile: bool = False, check_every: int = 16,
                 bucket_batches: bool | None = None, full_batch: int | None = None) -> None:
        import torch

        compat.fast_engine()  # get_rope_index, the cache and attention interfaces, a one-graph decoding step
        self.base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.kernels = install_fast_attention(model)
        text = self.base.config.get_text_config()
        self.layers = int(text.num_hidden_layers)
        self.kv_heads = int(text.num_key_value_heads)
        self.head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
        self.image_token_id = int(self.base.config.image_token_id)
        self.merge = int(getattr(self.base.config.vision_config, "spatial_merge_size", 2))
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
        #: the same for recent batches, oldest first
        self.timings: deque[dict[str, Any]] = deque(maxlen=256)
        self._step = self._decode_step
        if compile:
            # one compiled step per (batch, cache length) pair; allow more of them than dynamo's default 8
            for limit in ("recompile_limit", "cache_size_limit"):
                if hasattr(torch._dynamo.config, limit):
                    setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 32))
            self._step = torch.compile(self._decode_step, mode="reduce-overhead", dynamic=False)

    # ---------------------------------------------------------------- pieces

    def _forward(self, cache: SlotCache | None = None, **kwargs: Any) -> Any:
        cache = self._cache if cache is None else cache
        return self.base(**kwargs, **{self.cache_kw: cache}, use_cache=True, logits_to_keep=1).logits[:, -1]

    def _decode_step(self, tokens: Any, valid: Any, deltas: Any, history: Any, noise: Any, ban: Any,
                     eos_columns: Any, sampling: Sampling) -> Any:
        """One token per row through the text model, then the choice of the next one.

        This is what becomes one CUDA graph: the attention mask and positions are derived
        from the cache's device-side position, and the full-vocabulary work of choosing
        (float logits, penalty, end-token ban, argmax or top-k sampling) is fused into it.
        """
        import torch

        pos = self._cache.pos
        columns = torch.arange(valid.shape[1], device=valid.device)
        mask = (valid & (columns <= pos))[:, None, None, :]
        positions = (pos + deltas).expand(3, -1, 1)
        logits = self._forward(input_ids=tokens, position_ids=positions,
                               attention_mask={"full_attention": mask, "sliding_attention": mask})
        return self.pick(logits, history, noise, ban, eos_columns, sampling)

    @classmethod
    def pick(cls, logits: Any, history: Any, noise: Any, ban: Any, eos_columns: Any, sampling: Sampling) -> Any:
        """The next token per row from (batch, vocab) logits, as `generate`'s processors and warpers choose it.

        history: (batch, n) token ids the repetition penalty counts (duplicates are harmless);
        ban: a boolean scalar tensor, true while end tokens (`eos_columns`, a (vocab,) mask)
        are not allowed yet (min_new_tokens); noise: `sampling_noise`'s draw when sampling.
        """
        import torch

        logits = logits.float()
        if sampling.repetition_penalty != 1.0:
            logits = cls.penalize(logits, history, sampling.repetition_penalty)
        logits = torch.where(ban & eos_columns, float("-inf"), logits)
        return cls.choose(logits, sampling, noise)

    @staticmethod
    def penalize(logits: Any, history: Any, penalty: float) -> Any:
        """transformers' repetition penalty on float logits: scores of the `history` tokens of each row
        are divided by `penalty` when positive, multiplied when negative."""
        import torch

        score = logits.gather(1, history)
        score = torch.where(score > 0, score / penalty, score * penalty)
        return logits.scatter(1, history, score)

    @staticmethod
    def noise_width(vocab: int, sampling: Sampling) -> int:
        """Columns of the random draw `choose` needs: top_k's when set, else the vocabulary's."""
        return min(sampling.top_k, vocab) if sampling.top_k else vocab

    @classmethod
    def sampling_noise(cls, rows: int, vocab: int, sampling: Sampling, device: Any) -> Any:
        """Exp(1) draws for `choose`'s exponential race, or None when decoding greedily."""
        import torch

        if not sampling.do_sample:
            return None
        noise = torch.empty(rows, cls.noise_width(vocab, sampling), device=device).exponential_(1.0)
        return noise.clamp_min_(1e-20)  # never 0: p / 0 would be inf (or NaN for p = 0)

    @classmethod
    def choose(cls, logits: Any, sampling: Sampling, noise: Any = None) -> Any:
        """Next token per row from float logits (batch, vocab): greedy, or temperature, top-k, top-p sampling.

        Sampling narrows to the top_k candidates first (then the top-p cut and the draw
        work on those few columns, not the whole vocabulary); the distribution is the one
        transformers' warpers give, in the same order (temperature, top-k, top-p), except
        that a tie at the k-th largest logit keeps exactly k candidates (transformers keeps
        every tied one).
        """
        import torch

        if not sampling.do_sample:
            return logits.argmax(dim=-1)
        logits = logits / max(sampling.temperature, 1e-5)
        index = None
        if sampling.top_k and sampling.top_k < logits.shape[-1]:
            logits, index = torch.topk(logits, sampling.top_k, dim=-1)  # sorted, largest first
        if sampling.top_p < 1.0:
            if index is None:
                logits, index = torch.sort(logits, descending=True, dim=-1)
            probs = logits.softmax(-1)
            drop = probs.cumsum(-1) - probs > sampling.top_p  # keep the token that crosses top_p
            logits = logits.masked_fill(drop, float("-inf"))
        probs = logits.softmax(-1)
        if noise is None:
            noise = cls.sampling_noise(probs.shape[0], probs.shape[-1], sampling, probs.device)
        # exponential race (Gumbel-max): argmax(p / E), E ~ Exp(1), draws from p without a host sync
        choice = (probs / noise).argmax(dim=-1)
        return choice if index is None else index.gather(1, choice[:, None]).squeeze(1)

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

    def stage(self, inputs: Any, pad_id: int, row_keys: Sequence[Hashable | None] | None = None) -> StagedBatch:
        """The host-side preparation of a processor output (left-padded batch, CPU tensors).

        `row_keys`: per row, what identifies the images it shows (the adapter passes the
        image paths, with `-M share_prefix`); rows with equal keys share the prefill of their
        common opening (`prefix.plan_shared_prefix`). None: every row is prefilled alone.
        Thread-safe (it reads the model's configuration and parameters' dtype and device
        only), so an adapter runs it in its prefetch thread while the previous batch decodes.
        """
        real_rows = inputs["input_ids"].shape[0]
        if self.bucket_batches:  # few distinct batch shapes, few compilations
            inputs = pad_rows(inputs, bucket_rows(real_rows, self.full_batch), pad_id)
        param = next(self.base.parameters())
        position_ids, deltas = self.rope_index(inputs)
        ids, attention = inputs["input_ids"].cpu(), inputs["attention_mask"].cpu()
        grid = inputs.get("image_grid_thw")
        grid = None if grid is None else grid.cpu()
        pixels = inputs.get("pixel_values")
        shared = None
        if row_keys is not None:
            keys = list(row_keys) + [None] * (ids.shape[0] - len(row_keys))  # filler rows share nothing
            shared = plan_shared_prefix(ids, attention, position_ids, keys, self.image_token_id, pad_id, grid,
                                        self.merge)
        # get_rope_index's deltas count from the row's real tokens: a padded row's next position is
        # (cache index - its padding columns) + delta, as generate computes it for left padding
        prompt_len = ids.shape[1] if shared is None else shared.prompt_len
        padding = prompt_len - attention.sum(dim=1)
        if pixels is not None:
            pixels = pixels.cpu()
            if shared is not None:  # the prefix pass sees each group's images once
                pixels, grid = pixels.index_select(0, shared.patch_index), grid.index_select(0, shared.image_index)
            pixels = pixels.to(param.dtype)
            if param.device.type == "cuda":  # page-locked: the copy to the GPU runs asynchronously
                pixels = pixels.pin_memory()
        return StagedBatch(input_ids=ids, attention_mask=attention, real_rows=real_rows, position_ids=position_ids,
                           deltas=deltas.view(-1) - padding, pixel_values=pixels, image_grid_thw=grid, shared=shared)

    def _announce(self, batch: int, max_len: int) -> None:
        if self.compile and (batch, max_len) not in self._compiled_shapes:
            self._compiled_shapes.add((batch, max_len))
            print(f"adbench: compiling the decoding step for {batch} rows x {max_len} cached tokens "
                  "(once per shape, about a minute on a GPU)", file=sys.stderr, flush=True)

    def _prefill_shared(self, shared: SharedPrefix, cache: SlotCache, valid: Any, mm: dict[str, Any], dtype: Any,
                        device: Any) -> Any:
        """Prefill in the two-block layout (`prefix`): each group's prefix once, copied into its rows'
        slots, then every row's own tokens over it. Fills `valid`'s prompt columns; returns the
        last prompt token's logits per row."""
        import torch

        groups = shared.groups.to(device, non_blocking=True)
        n_groups, width_p = shared.prefix_ids.shape
        prefix_valid = shared.prefix_mask.to(device, non_blocking=True).bool()
        once = SlotCache(self.layers, n_groups, self.kv_heads, width_p, self.head_dim, dtype, device)
        mask = prefill_mask(prefix_valid, not bool(shared.prefix_mask.all()))
        self._forward(cache=once, input_ids=shared.prefix_ids.to(device, non_blocking=True),
                      position_ids=shared.prefix_positions.to(device, non_blocking=True),
                      attention_mask={"full_attention": mask, "sliding_attention": mask}, **mm)
        for layer in range(self.layers):
            cache.keys[layer][:, :, :width_p] = once.keys[layer].index_select(0, groups)
            cache.values[layer][:, :, :width_p] = once.values[layer].index_select(0, groups)
        del once
        batch, width_s = shared.suffix_ids.shape
        suffix_valid = shared.suffix_mask.to(device, non_blocking=True).bool()
        valid[:, :width_p] = prefix_valid.index_select(0, groups)
        valid[:, width_p:width_p + width_s] = suffix_valid
        # a suffix token sees its row's prefix and the suffix tokens up to itself; a pad sees itself
        own = prefill_mask(suffix_valid, True)
        mask = torch.cat([valid[:, None, None, :width_p].expand(batch, 1, width_s, width_p), own], dim=-1)
        cache.pos.fill_(width_p)
        return self._forward(input_ids=shared.suffix_ids.to(device, non_blocking=True),
                             position_ids=shared.suffix_positions.to(device, non_blocking=True),
                             attention_mask={"full_attention": mask, "sliding_attention": mask})

    # ---------------------------------------------------------------- generation

    def generate(self, inputs: Any, max_new_tokens: int, eos_ids: set[int], pad_id: int,
                 sampling: Sampling = Sampling(), min_new_tokens: int = 0) -> list[list[int]]:
        """New token ids per row (each ends at its first EOS, kept, or after max_new_tokens).

        `inputs`: a `StagedBatch`, or the processor's output for a left-padded batch
        (input_ids, attention_mask, pixel_values, image_grid_thw, optionally
        mm_token_type_ids) on any device, which is staged first.
        """
        import torch
        from torch.profiler import record_function

        with record_function("adbench.stage"):
            staged = inputs if isinstance(inputs, StagedBatch) else self.stage(inputs, pad_id)
        device = next(self.base.parameters()).device
        dtype = next(self.base.parameters()).dtype
        batch, input_len = staged.input_ids.shape
        shared = staged.shared
        prompt_len = input_len if shared is None else shared.prompt_len  # cache columns of the prompts
        max_len = _round_up(prompt_len + max_new_tokens, LENGTH_BUCKET)
        cache = self._cache_for(batch, max_len, dtype, device)
        self._announce(batch, max_len)
        clock = _Clock(device)
        with torch.inference_mode():
            ids = staged.input_ids.to(device, non_blocking=True)
            valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
            deltas = staged.deltas.to(device, non_blocking=True).view(1, batch, 1)
            eos = torch.tensor(sorted(eos_ids), device=device)
            cache.pos.zero_()
            mm: dict[str, Any] = {}
            if staged.pixel_values is not None:
                mm = dict(pixel_values=staged.pixel_values.to(device, dtype, non_blocking=True),
                          image_grid_thw=staged.image_grid_thw.to(device))
            with record_function("adbench.prefill"):
                if shared is None:
                    attention = staged.attention_mask.to(device, non_blocking=True).bool()
                    valid[:, :prompt_len] = attention
                    mask = prefill_mask(attention, not bool(staged.attention_mask.all()))
                    positions = staged.position_ids.to(device, non_blocking=True)
                    logits = self._forward(input_ids=ids, position_ids=positions,
                                           attention_mask={"full_attention": mask, "sliding_attention": mask}, **mm)
                else:
                    logits = self._prefill_shared(shared, cache, valid, mm, dtype, device)
            cache.pos.fill_(prompt_len)
            clock.mark("prefill")
            vocab = logits.shape[-1]
            eos_columns = torch.zeros(vocab, dtype=torch.bool, device=device)
            eos_columns[eos] = True
            banned, allowed = (torch.tensor(flag, device=device) for flag in (True, False))
            # the ids the repetition penalty counts: the left-padded prompt (its padding included, as in
            # generate, whatever the cache layout), then each new token in its column; columns not
            # written yet repeat a prompt token (no effect)
            history = torch.cat([ids, ids[:, -1:].expand(batch, max_len - input_len)], dim=1)
            out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
            finished = torch.zeros(batch, dtype=torch.bool, device=device)
            finished[staged.real_rows:] = True  # filler rows must not keep the loop going
            tokens = torch.empty(batch, 1, dtype=torch.long, device=device)
            steps = 0
            for step in range(max_new_tokens):
                ban = banned if step < min_new_tokens else allowed
                noise = self.sampling_noise(batch, vocab, sampling, device)
                if step == 0:
                    nxt = self.pick(logits, history, noise, ban, eos_columns, sampling)
                else:
                    if self.compile:
                        torch.compiler.cudagraph_mark_step_begin()
                    with record_function("adbench.decode_step"):
                        nxt = self._step(tokens, valid, deltas, history, noise, ban, eos_columns, sampling)
                    cache.pos.add_(1)
                nxt = torch.where(finished, pad_id, nxt)
                out[:, step] = nxt
                history[:, input_len + step] = nxt
                finished |= torch.isin(nxt, eos)
                steps = step + 1
                if steps == max_new_tokens or (steps % self.check_every == 0 and bool(finished.all())):
                    break
                tokens.copy_(nxt[:, None])
            clock.mark("decode")
        kept = out[: staged.real_rows, :steps].tolist()
        self.last_timing = dict(batch=batch, prompt_len=input_len, cache_len=max_len, steps=steps, **clock.ms())
        if shared is not None:  # how much of the prompts was prefilled once per group
            self.last_timing.update(groups=shared.n_groups, prefix_len=int(shared.prefix_ids.shape[1]),
                                    suffix_len=int(shared.suffix_ids.shape[1]))
        self.timings.append(self.last_timing)
        result = []
        for row in kept:
            end = next((k for k, tok in enumerate(row) if tok in eos_ids), None)
            result.append(row if end is None else row[: end + 1])
        return result
