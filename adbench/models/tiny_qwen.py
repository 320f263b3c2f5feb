"""A tiny Qwen2.5-VL with random weights and the real Qwen2.5 tokenizer, built offline.

What it is for: tests, `adbench demo` and the training issue need a Qwen2.5-VL that
runs on a CPU in seconds without downloading anything, yet goes through exactly the
code a real checkpoint does (the real architecture class, `from_pretrained` from a
folder of safetensors, the real processor with its resize rule and chat template,
the real 151,665-token vocabulary). Its answers are meaningless; its shapes are not.

The tokenizer is the real Qwen2.5 vocabulary: the `dashscope` package ships
`qwen.tiktoken` (151,643 byte-level BPE ranks); transformers' tiktoken converter
turns it into a fast tokenizer, and the 22 Qwen2.5 special tokens are appended in
their published order, so `<|image_pad|>` gets id 151655 as in the released models.
The conversion takes a few seconds, so the result is cached on disk
(`tokenizer_cache_dir()`), keyed by a hash of the rank file.

The chat template is this module's own, written for the Qwen chat format
(`<|im_start|>role ... <|im_end|>`, one `<|vision_start|><|image_pad|><|vision_end|>`
per image part); a real checkpoint brings its own template and that one is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from adbench import compat
from adbench.errors import UserError

#: Qwen2.5's special tokens, ids 151643.. in this order (151655 = <|image_pad|>).
QWEN25_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
#: Two of them are ordinary (non-special) added tokens in the released tokenizer.
_NOT_SPECIAL = {"<tool_call>", "</tool_call>"}
N_BASE_RANKS = 151_643

#: Qwen2's pre-tokenizer split: like GPT-4's, but digits are split one by one.
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

IMAGE_PAD_ID, VIDEO_PAD_ID, VISION_START_ID, VISION_END_ID = 151655, 151656, 151652, 151653
IM_END_ID, ENDOFTEXT_ID = 151645, 151643

#: The Qwen chat format as a Jinja template (this module's own rendering of it). Like the
#: released Qwen2.5-VL template, `add_vision_id=True` writes "Picture N: " before the Nth image.
CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}"
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{ 'Picture ' ~ image_count.value ~ ': ' }}{%- endif -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

#: A Qwen2.5-VL small enough for a CPU test; the vocabulary is the real one.
TINY_TEXT_CONFIG: dict[str, Any] = dict(
    vocab_size=151_680, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1_000_000.0,
    rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=True,
)
TINY_VISION_CONFIG: dict[str, Any] = dict(
    depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64, fullatt_block_indexes=[1],
    window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2,
)
#: Small images keep tests fast: 112x112 model input = 16 image tokens.
TINY_MIN_PIXELS = 28 * 28
TINY_MAX_PIXELS = 112 * 112


class TokenizerAssetError(UserError, RuntimeError):
    """The Qwen2.5 vocabulary file cannot be found (the `dashscope` package is not installed)."""


def qwen_tiktoken_path() -> Path:
    """Where the `dashscope` package keeps `qwen.tiktoken`."""
    import importlib.util

    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerAssetError(
            "the Qwen2.5 vocabulary comes from the `dashscope` package, which is not installed: "
            "pip install 'adbench[tokenizer]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise TokenizerAssetError(f"dashscope is installed but {path} is missing")
    return path


def tokenizer_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "adbench" / "qwen2.5-tokenizer"


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def build_qwen_tokenizer(cache_dir: str | Path | None = None) -> Any:
    """The real Qwen2.5 tokenizer (151,665 tokens) as a transformers fast tokenizer, cached on disk."""
    from transformers import PreTrainedTokenizerFast

    ranks = qwen_tiktoken_path()
    folder = Path(cache_dir) if cache_dir is not None else tokenizer_cache_dir()
    target = folder / _file_sha(ranks)
    if not (target / "tokenizer.json").is_file():
        tok = _convert(ranks)
        # write into a temporary sibling and rename: a concurrent builder never sees half a folder
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".build-"))
        try:
            tok.save_pretrained(tmp)
            try:
                os.replace(tmp, target)
            except OSError:  # another process won the race; use its copy
                pass
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(target)


def _convert(ranks: Path) -> Any:
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    compat.tokenizer_conversion()  # transformers 4.x's converter and tiktoken < 0.12 fail here
    backend = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN2_PATTERN).converted()
    if backend.get_vocab_size() != N_BASE_RANKS:
        raise TokenizerAssetError(f"{ranks}: expected {N_BASE_RANKS} ranks, got {backend.get_vocab_size()}")
    backend.normalizer = normalizers.NFC()  # as the released Qwen2 tokenizers do
    backend.add_tokens([AddedToken(t, normalized=False, special=t not in _NOT_SPECIAL) for t in QWEN25_SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )
    got = tok.convert_tokens_to_ids("<|image_pad|>")
    if got != IMAGE_PAD_ID:
        raise TokenizerAssetError(f"<|image_pad|> got id {got}, expected {IMAGE_PAD_ID}")
    return tok


def build_qwen_processor(
    min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS, cache_dir: str | Path | None = None,
    tokenizer: Any = None,
) -> Any:
    """A real Qwen2.5-VL processor (image processor + Qwen2.5 tokenizer + chat template).

    `tokenizer`: a tokenizer object, or a folder holding a saved one (tokenizer.json), to use
    instead of converting the vocabulary (machines without the `dashscope` package).
    """
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    if tokenizer is None:
        tok = build_qwen_tokenizer(cache_dir)
    elif isinstance(tokenizer, (str, Path)):
        if not (Path(tokenizer) / "tokenizer.json").is_file():
            raise TokenizerAssetError(f"{tokenizer} has no tokenizer.json")
        tok = PreTrainedTokenizerFast.from_pretrained(tokenizer)
    else:
        tok = tokenizer
    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def tiny_config() -> Any:
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config=dict(TINY_TEXT_CONFIG),
        vision_config=dict(TINY_VISION_CONFIG),
        image_token_id=IMAGE_PAD_ID,
        video_token_id=VIDEO_PAD_ID,
        vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID,
        tie_word_embeddings=True,
    )


def build_tiny_qwen_vl(
    out_dir: str | Path,
    seed: int = 0,
    *,
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
    tokenizer_cache: str | Path | None = None,
    init_std: float = 0.2,
) -> Path:
    """Write a tiny random Qwen2.5-VL (safetensors), its processor and generation config to out_dir.

    The same seed gives the same weights: weight matrices ~ N(0, init_std), norm scales 1,
    biases 0. transformers' own initialisation (std 0.02) makes a two-layer model answer
    the same token whatever the input; 0.2 gives replies that differ from image to image
    (what batching tests need), and a LoRA trained on it still lowers its loss. Returns the folder, loadable with
    `Qwen2_5_VLForConditionalGeneration.from_pretrained` and `AutoProcessor.from_pretrained`.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration._from_config(tiny_config(), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * init_std)
    model.generation_config = GenerationConfig(
        eos_token_id=[IM_END_ID, ENDOFTEXT_ID], pad_token_id=ENDOFTEXT_ID, do_sample=False, max_new_tokens=32
    )
    model.save_pretrained(out, safe_serialization=True)
    build_qwen_processor(min_pixels, max_pixels, tokenizer_cache).save_pretrained(out)
    (out / "adbench_tiny.json").write_text(json.dumps({"seed": seed, "what": "tiny random Qwen2.5-VL"}))
    return out
