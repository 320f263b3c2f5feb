"""A Qwen2.5-VL with random weights for the GPU benchmarks: the 7B architecture, or adbench's tiny one.

No download: speeds are architecture-true, replies meaningless. One construction for
`gpu_adfm.py`, `gpu_grpo.py` and the profiling scripts (the anchor script in
shared/bench builds the same 7B model its own way).
"""

from __future__ import annotations

from typing import Any

#: Qwen2.5-VL-7B-Instruct's published configuration (as in shared/bench/hf_generate_anchor.py).
TEXT_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
               rope_theta=1000000.0, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
VISION_7B = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                 fullatt_block_indexes=[7, 15, 23, 31], window_size=112, patch_size=14,
                 spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2)


def qwen_config(size: str) -> Any:
    """The configuration of size "7b" (Qwen2.5-VL-7B-Instruct's shapes) or "tiny" (`tiny_qwen.tiny_config`)."""
    from transformers import Qwen2_5_VLConfig

    from adbench.models import tiny_qwen

    if size == "tiny":
        return tiny_qwen.tiny_config()
    if size != "7b":
        raise SystemExit(f"SIZE must be 7b or tiny, got {size!r}")
    return Qwen2_5_VLConfig(text_config=TEXT_7B, vision_config=VISION_7B, image_token_id=tiny_qwen.IMAGE_PAD_ID,
                            video_token_id=tiny_qwen.VIDEO_PAD_ID, vision_start_token_id=tiny_qwen.VISION_START_ID,
                            vision_end_token_id=tiny_qwen.VISION_END_ID)


def random_qwen(size: str, device: Any, dtype: Any, attn_implementation: str = "sdpa") -> Any:
    """The model with weights ~ N(0, 0.02) (small weights keep activations finite, as the anchor does),
    built on `device`, in eval mode, with Qwen's end tokens."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from adbench.models import tiny_qwen

    with torch.device(device):
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration._from_config(qwen_config(size), dtype=dtype,
                                                                 attn_implementation=attn_implementation)
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.generation_config.eos_token_id = [tiny_qwen.IM_END_ID, tiny_qwen.ENDOFTEXT_ID]
    model.generation_config.pad_token_id = tiny_qwen.ENDOFTEXT_ID
    return model
