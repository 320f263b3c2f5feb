"""LoRA on the language model only (the paper freezes the vision encoder), and the check that it is so.

Qwen2.5-VL's vision tower names its MLP layers gate_proj / up_proj / down_proj, like
the language model (FACTS.md): a target list by name, or peft's "all-linear", adapts
the vision encoder too. `lora.target: language` therefore uses a regex anchored on
the language model's module path; `assert_vision_frozen` checks the wrapped model
afterwards, so a renamed module path in a future transformers fails loudly instead
of silently training the vision tower.
"""

from __future__ import annotations

import re
from typing import Any

#: The language model's attention and MLP projections (Qwen2.5-VL in transformers 5:
#: `model.language_model.layers.N.{self_attn,mlp}.*`).
LANGUAGE_LINEAR = r".*language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
#: Module paths of the vision tower (Qwen2.5-VL: `model.visual.*`).
VISION_PATTERN = re.compile(r"(^|\.)(visual|vision_tower|vision_model)(\.|$)")


class LoraTargetError(RuntimeError):
    """LoRA reached modules it must not (the vision tower) or none at all."""


def lora_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments `lora_config` gives peft.LoraConfig (`adbench train --print-config` shows them)."""
    lora = recipe["lora"]
    target = lora.get("target", "language")
    modules: str = LANGUAGE_LINEAR if target == "language" else "all-linear"
    return {"r": int(lora["r"]), "lora_alpha": int(lora["alpha"]), "lora_dropout": float(lora.get("dropout", 0.0)),
            "target_modules": modules, "task_type": "CAUSAL_LM", "bias": "none"}


def lora_config(recipe: dict[str, Any]) -> Any:
    """peft.LoraConfig from the recipe's `lora` section."""
    from peft import LoraConfig

    return LoraConfig(**lora_kwargs(recipe))


def adapted_modules(model: Any) -> list[str]:
    """Names of the modules that carry LoRA weights (sorted)."""
    names = set()
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and len(getattr(module, "lora_A", {})) > 0:
            names.add(_strip_peft_prefix(name))
    return sorted(names)


def _strip_peft_prefix(name: str) -> str:
    for prefix in ("base_model.model.", "base_model."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def assert_vision_frozen(model: Any) -> list[str]:
    """Raise when a vision-tower module has LoRA weights or a vision parameter is trainable.

    Returns the adapted module names (what the training metadata records).
    """
    adapted = adapted_modules(model)
    if not adapted:
        raise LoraTargetError("LoRA adapted no module: the target pattern matches nothing in this model")
    vision = [n for n in adapted if VISION_PATTERN.search(n)]
    trainable_vision = [n for n, p in model.named_parameters() if p.requires_grad and VISION_PATTERN.search(n)]
    if vision or trainable_vision:
        bad = (vision or trainable_vision)[:3]
        raise LoraTargetError(f"the vision tower must stay frozen, but LoRA/training reaches {', '.join(bad)}")
    return adapted
