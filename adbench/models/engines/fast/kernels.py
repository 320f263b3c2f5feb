"""Rewrites of Qwen2.5-VL's vision and text layers that give the same numbers with faster kernels.

All are results-neutral rewrites of what transformers' `sdpa` path computes; the fast
engine (`adbench.models.engines.fast.decode`) installs them, and `benchmarks/gpu_adfm.py`
measures what they buy on a GPU.

1. **Vision window attention in one call per window size.** Without flash-attn,
   transformers runs the vision tower's attention as one SDPA call per window
   (`torch.split` over `cu_seqlens`): 16 windows per 448x448 image and 28 windowed
   layers make about 29,000 tiny kernel launches for a batch of 64 images, which kept
   the GPU idle (profile in docs/BENCHMARKS.md). Windows of equal length are stacked
   into one batched SDPA call instead (edge windows of other sizes get their own call).

2. **Grouped-query attention without copying keys and values.** Qwen2.5-VL-7B has 28
   query heads sharing 4 key/value heads. transformers' `sdpa` path expands the keys
   and values seven-fold (`repeat_kv`) whenever a mask is passed and always under
   `torch.compile`, which multiplies the memory traffic of every decoding step. Here
   a single query token is regrouped as (batch, kv_heads, group, dim) so SDPA reads
   each cached key once; a masked prefill falls back to the expansion (it is
   compute-bound), an unmasked one uses SDPA's own `enable_gqa`. Registered under the
   name `adbench_sdpa` in transformers' AttentionInterface (and its mask interface,
   so `generate` keeps working on a model that uses it).

3. **An aligned vision MLP width** (`pad_vision_mlp`): 3,420 hidden units padded with
   zero weights to 3,456, so the vision tower's largest matrix products run on the
   GPU's fast GEMM kernels.
"""

from __future__ import annotations

import types
from typing import Any

ATTENTION_NAME = "adbench_sdpa"
_VISION_PATCH_FLAG = "_adbench_window_attention"


# ---------------------------------------------------------------- text: grouped-query SDPA


def gqa_sdpa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """SDPA attention for (batch, heads, q_len, dim) queries over (batch, kv_heads, kv_len, dim) keys.

    A boolean or additive `attention_mask` narrower than the keys means: keys beyond its
    width are not attended (the fast engine's prefill passes only the prompt's columns of
    a longer static cache), so they are cut off before the kernel runs.
    Returns (batch, q_len, heads, dim) as every transformers attention function does.
    """
    import torch.nn.functional as F

    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    if attention_mask is not None and attention_mask.shape[-1] < key.shape[-2]:
        key = key[:, :, : attention_mask.shape[-1]]
        value = value[:, :, : attention_mask.shape[-1]]
    if q_len == 1 and groups > 1:
        # one new token per row: its query heads become `groups` query rows of their kv head,
        # so the kernel reads each cached key/value once instead of once per query head
        q = query.reshape(batch, kv_heads, groups, dim)
        out = F.scaled_dot_product_attention(q, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                             scale=scaling)
        return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None
    causal = attention_mask is None and q_len > 1 and bool(
        is_causal if is_causal is not None else getattr(module, "is_causal", True))
    if causal and key.shape[-2] > q_len:  # a prefill into an empty static cache: only the prompt's keys count
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    if attention_mask is None and groups > 1:  # SDPA's own grouped-query support (flash kernel)
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=scaling,
                                             is_causal=causal, enable_gqa=True)
        return out.transpose(1, 2).contiguous(), None
    if groups > 1:  # a masked prefill: compute-bound, the copy costs little next to it
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                         scale=scaling, is_causal=causal)
    return out.transpose(1, 2).contiguous(), None


def register_gqa_attention() -> str:
    """Register `adbench_sdpa` with transformers (attention and mask interfaces); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, gqa_sdpa_attention)
    if ATTENTION_NAME not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME


# ---------------------------------------------------------------- vision: batched window attention


def segment_attention(query: Any, key: Any, value: Any, lengths: list[int], scale: float) -> Any:
    """Attention within consecutive segments of a packed sequence.

    query/key/value: (seq, heads, dim), the segments laid end to end with the given
    lengths. Segments of equal length run as one batched SDPA call; with a single
    length (the common case) no gather is needed at all. Returns (seq, heads, dim).
    """
    import torch
    import torch.nn.functional as F

    seq, heads, dim = query.shape
    if sum(lengths) != seq:
        raise ValueError(f"segment lengths add up to {sum(lengths)}, the sequence has {seq} tokens")
    distinct = sorted(set(lengths) - {0})
    if len(distinct) == 1:  # (seq, heads, dim) -> (segments, heads, length, dim) is a view
        stacked = [t.reshape(-1, distinct[0], heads, dim).transpose(1, 2) for t in (query, key, value)]
        out = F.scaled_dot_product_attention(*stacked, scale=scale)
        return out.transpose(1, 2).reshape(seq, heads, dim)
    out = torch.empty_like(query)
    starts = [0]
    for n in lengths[:-1]:
        starts.append(starts[-1] + n)
    for length in distinct:
        first = torch.tensor([s for s, n in zip(starts, lengths) if n == length], device=query.device)
        index = (first[:, None] + torch.arange(length, device=query.device)[None, :]).reshape(-1)
        stacked = [t.index_select(0, index).reshape(-1, length, heads, dim).transpose(1, 2)
                   for t in (query, key, value)]
        part = F.scaled_dot_product_attention(*stacked, scale=scale)
        out.index_copy_(0, index, part.transpose(1, 2).reshape(-1, heads, dim))
    return out


def _window_attention_forward(self: Any, hidden_states: Any, cu_seqlens: Any, position_embeddings: Any = None,
                              max_seqlen: Any = None, **kwargs: Any) -> Any:
    """Qwen2_5_VLVisionAttention.forward with the per-window loop replaced by `segment_attention`."""
    import sys

    rotary = sys.modules[type(self).__module__].apply_rotary_pos_emb_vision
    seq = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(seq, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = rotary(q, k, cos, sin)
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()  # one host read per layer, not one call per window
    out = segment_attention(q, k, v, lengths, self.scaling)
    return self.proj(out.reshape(seq, -1))


def install_window_attention(model: Any) -> int:
    """Give every vision attention layer of a Qwen2.5-VL the batched window attention.

    Only layers running transformers' per-window path are changed (not flash-attention
    ones, which already take all windows in one varlen call). Idempotent; returns the
    number of layers changed.
    """
    changed = 0
    for module in model.modules():
        if type(module).__name__ != "Qwen2_5_VLVisionAttention" or getattr(module, _VISION_PATCH_FLAG, False):
            continue
        if "flash" in str(getattr(module.config, "_attn_implementation", "")):
            continue
        module.forward = types.MethodType(_window_attention_forward, module)
        setattr(module, _VISION_PATCH_FLAG, True)
        changed += 1
    return changed


# ---------------------------------------------------------------- vision: aligned MLP width


def pad_vision_mlp(model: Any, multiple: int = 64) -> int:
    """Widen the vision MLPs' hidden layer to a multiple of `multiple` with zero weights.

    Qwen2.5-VL's vision MLP is 3,420 wide, not a multiple of 8: its bf16 matrices miss
    the alignment Hopper's fast GEMM kernels need, and cuBLAS falls back to older ones
    (about a third of the speed in the profile of a batch-64 prefill). Extra hidden units
    with zero gate/up weights and biases output silu(0) * 0 = 0, and zero columns in
    the down projection ignore them, so the result is unchanged. The parameters are
    replaced in memory (the model should not be saved afterwards); projections wrapped
    by PEFT are left alone. Returns the number of MLPs widened.
    """
    import torch
    from torch import nn

    changed = 0
    visual = getattr(getattr(model, "model", model), "visual", None) or getattr(model, "visual", None)
    if visual is None:
        return 0
    for module in visual.modules():
        if type(module).__name__ != "Qwen2_5_VLMLP":
            continue
        gate, up, down = module.gate_proj, module.up_proj, module.down_proj
        if not all(type(layer) is nn.Linear for layer in (gate, up, down)):
            continue
        width = gate.out_features
        padded = -(-width // multiple) * multiple
        if padded == width:
            continue
        with torch.no_grad():
            for name in ("gate_proj", "up_proj"):
                old = getattr(module, name)
                new = nn.Linear(old.in_features, padded, bias=old.bias is not None, device=old.weight.device,
                                dtype=old.weight.dtype)
                new.weight.zero_()
                new.weight[:width] = old.weight
                if old.bias is not None:
                    new.bias.zero_()
                    new.bias[:width] = old.bias
                setattr(module, name, new.requires_grad_(old.weight.requires_grad))
            new = nn.Linear(padded, down.out_features, bias=down.bias is not None, device=down.weight.device,
                            dtype=down.weight.dtype)
            new.weight.zero_()
            new.weight[:, :width] = down.weight
            if down.bias is not None:
                new.bias.copy_(down.bias)
            module.down_proj = new.requires_grad_(down.weight.requires_grad)
        module.intermediate_size = padded
        changed += 1
    return changed


def install_fast_attention(model: Any) -> dict[str, Any]:
    """The replacements on a Qwen2.5-VL (a PEFT wrapper is looked through); returns what was done.

    The text layers always switch to `adbench_sdpa`, whatever they used before: the fast
    engine hands them boolean 4-D masks, which `eager` would add as numbers and
    flash-attention would not read. A flash-attention vision tower is kept as it is.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = getattr(base.config.get_text_config(), "_attn_implementation", None)
    name = register_gqa_attention()
    if before != name:
        base.set_attn_implementation({"text_config": name})
    return {"vision_layers": install_window_attention(base), "text_attention": name, "text_attention_before": before,
            "vision_mlps_padded": pad_vision_mlp(base)}
