"""A tiny random Qwen2.5-VL, a LoRA adapter for it and the demo suite, built once per test session.

Everything is real: the Qwen2.5-VL architecture class saved as safetensors and loaded
back with from_pretrained, the real Qwen2.5 vocabulary, a PEFT adapter saved by peft.
Built lazily on first use and shared by every test module (functools.cache), deleted
at exit.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from adbench.models.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS

#: LoRA on the language model's attention and MLP projections (as the paper's recipe).
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
TINY_ARGS = dict(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)


@dataclass(frozen=True)
class TinyAssets:
    root: Path
    base: Path
    adapter: Path
    data_root: Path
    tokenizer_cache: Path


def save_random_lora(base: Path, out: Path, seed: int = 1) -> Path:
    """A LoRA adapter with random (non-zero) A and B, so it visibly changes the replies."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, use_safetensors=True)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS,
                                                  init_lora_weights=False))
    peft_model.save_pretrained(out)  # adapter_model.safetensors + adapter_config.json
    return out


@functools.cache
def tiny_assets() -> TinyAssets:
    from adbench.data.demo import ensure_demo
    from adbench.models.tiny_qwen import build_tiny_qwen_vl

    root = Path(tempfile.mkdtemp(prefix="adbench-tiny-vlm-"))
    atexit.register(shutil.rmtree, root, True)
    tok = root / "tokenizer"
    base = build_tiny_qwen_vl(root / "base", seed=0, tokenizer_cache=tok)
    adapter = save_random_lora(base, root / "adapter")
    data_root = root / "data"
    ensure_demo(data_root)
    return TinyAssets(root, base, adapter, data_root, tok)


def demo_queries(n_per_shot: int = 4) -> list:
    """Demo-suite Anomaly Detection queries, 0-shot and 1-shot mixed (two prompt lengths)."""
    from adbench.tasks.demo import binary

    assets = tiny_assets()
    out = []
    for shots in (1, 0):
        task = binary(shots=shots)
        samples = task.samples(assets.data_root)
        good = [s for s in samples if s.label == 0][:n_per_shot // 2]
        bad = [s for s in samples if s.label == 1][: n_per_shot - len(good)]
        out += [task.render(s) for s in good + bad]
    return out
