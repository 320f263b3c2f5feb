"""What `adbench train` hands to the libraries, resolved from a recipe without a model, data or GPU.

One code path: `trainer.train` builds its `trl.GRPOConfig` from `grpo_kwargs` (through
`grpo_config`), its `peft.LoraConfig` from `lora.lora_kwargs` and its model keyword
arguments from `model_settings`; `adbench train --print-config` prints the same
values (`describe`). A test spies on the GRPOConfig call of a real `train` to keep
the two equal.

The recipe's `grpo:` section (its keys and values already checked against GRPOConfig's
fields and types when the recipe was loaded: `recipes.grpo_schema`) goes to GRPOConfig as
is, with four additions:
`use_vllm` / `vllm_mode` from the `vllm:` section, `cache_implementation` from the
`rollout:` section (`ROLLOUT_PATHS`), `remove_unused_columns: false` (the reward
functions read the ground-truth columns) unless the recipe says otherwise, and
`disable_tqdm` under `--no-progress`. The GRPOConfig keys those sections own are refused
in `grpo:` (`OWNED_KEYS`), so the rollout path is chosen in one place. One key is translated: `warmup_ratio` (the
release's flag, transformers 4.x) becomes `warmup_steps` on transformers 5, which
dropped `warmup_ratio` and reads a `warmup_steps` below 1 as the same ratio (both
round `ratio * total steps` up).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

from adbench import compat
from adbench.errors import UserError
from adbench.training.grpo_data import frame_budget
from adbench.training.lora import lora_kwargs

#: How TRL generates the rollouts when vLLM does not (`rollout.path`) -> GRPOConfig's cache_implementation.
#: Both sample from the same distribution (the sampling settings are the grpo section's): "generate" is
#: transformers' `generate` with its dynamic cache (TRL's default), "static" the same with a static cache
#: (TRL passes `disable_compile=True`, so no compiled step). TRL's third path, transformers' continuous
#: batching (`use_transformers_continuous_batching`, formerly `use_transformers_paged`), is refused by
#: GRPOTrainer for multimodal models (TRL 1.16), so no recipe can use it.
ROLLOUT_PATHS = {"generate": None, "static": "static"}
#: The default until a GPU measurement (benchmarks/gpu_grpo.py, docs/BENCHMARKS.md) says another path is faster.
DEFAULT_ROLLOUT = "generate"
#: GRPOConfig keys another recipe section sets, and which (refused in `grpo:`).
OWNED_KEYS = {"use_vllm": "vllm.enabled", "vllm_mode": "vllm.mode", "cache_implementation": "rollout.path",
              "use_transformers_continuous_batching": "rollout.path", "use_transformers_paged": "rollout.path"}

#: The precision switches that transformers refuses on a machine without a GPU;
#: `describe` validates a recipe on such a machine with them off (and says so).
DEVICE_KEYS = ("bf16", "fp16", "tf32")


class TrainingError(UserError):
    """A training run that cannot start; the message says why (the CLI prints it as one line)."""


def quiet_deepspeed_without_gpu() -> None:
    """Tell DeepSpeed (when installed, accelerate imports it) that this machine has no GPU.

    Otherwise DeepSpeed's accelerator detection prints "Setting accelerator to CPU ..." on
    stdout, in the middle of what adbench prints there (the adapter path, the demo's table).
    """
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def use_vllm(recipe: dict[str, Any]) -> bool:
    """recipe.vllm.enabled: true (required), false, or auto (when vllm is importable)."""
    enabled = (recipe.get("vllm") or {}).get("enabled", "auto")
    if enabled == "auto":
        enabled = vllm_available()
    elif enabled and not vllm_available():
        raise TrainingError("the recipe sets vllm.enabled: true but vllm is not installed (pip install 'adbench[vllm]' "
                            "or --set vllm.enabled=false)")
    if enabled:
        compat.training_with_vllm()  # TRL drives vLLM's engine: both ranges, before any model loads
    return bool(enabled)


def rollout_path(recipe: dict[str, Any]) -> str:
    """recipe.rollout.path (`ROLLOUT_PATHS`), `DEFAULT_ROLLOUT` when the recipe has none."""
    return str((recipe.get("rollout") or {}).get("path") or DEFAULT_ROLLOUT)


def rollout_engine(recipe: dict[str, Any], vllm_used: bool) -> str:
    """What generates the rollouts, in words (`--print-config`)."""
    if vllm_used:
        return f"vLLM ({(recipe.get('vllm') or {}).get('mode', 'colocate')}); rollout.path does not apply"
    return f"transformers generate, {'static' if rollout_path(recipe) == 'static' else 'dynamic'} KV cache"


def model_settings(recipe: dict[str, Any]) -> dict[str, str]:
    """The model's load settings as text: dtype (a torch dtype name) and, if set, attn_implementation."""
    m = recipe.get("model") or {}
    out = {"dtype": str(m.get("dtype", "bfloat16"))}
    if m.get("attn_implementation"):
        out["attn_implementation"] = str(m["attn_implementation"])
    return out


def model_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """`from_pretrained` keyword arguments: `model_settings` with the dtype as a torch dtype."""
    import torch

    kw: dict[str, Any] = model_settings(recipe)
    if not isinstance(getattr(torch, kw["dtype"], None), torch.dtype):
        raise TrainingError(f"model.dtype {kw['dtype']!r} is not a torch dtype")
    kw["dtype"] = getattr(torch, kw["dtype"])
    return kw


@functools.cache
def _config_defaults() -> dict[str, Any]:
    """GRPOConfig's fields and their defaults (those without a plain default map to None)."""
    from trl import GRPOConfig

    return {f.name: (None if f.default is dataclasses.MISSING else f.default) for f in dataclasses.fields(GRPOConfig)}


def checkpoint_dir(out: Path | str) -> Path:
    """Where TRL writes checkpoints for a run into `out` (GRPOConfig's output_dir)."""
    return Path(out).expanduser().resolve() / "checkpoints"


def grpo_kwargs(recipe: dict[str, Any], output_dir: Path | str | None = None, progress: bool = True) -> dict[str, Any]:
    """The keyword arguments `grpo_config` gives trl.GRPOConfig (see the module docstring)."""
    kwargs = dict(recipe.get("grpo") or {})
    owned = [k for k in OWNED_KEYS if k in kwargs]
    if owned:
        raise TrainingError(f"recipe {recipe.get('name')!r}: grpo.{owned[0]} is chosen by {OWNED_KEYS[owned[0]]}, "
                            f"not in grpo (rollout.path: {', '.join(ROLLOUT_PATHS)}; vllm.enabled, vllm.mode)")
    if "warmup_ratio" in kwargs and "warmup_ratio" not in _config_defaults():
        ratio = kwargs["warmup_ratio"]
        if kwargs.get("warmup_steps"):
            raise TrainingError(f"recipe {recipe.get('name')!r}: grpo sets both warmup_ratio and warmup_steps")
        if not 0 <= float(ratio) < 1:
            raise TrainingError(f"recipe {recipe.get('name')!r}: grpo.warmup_ratio must be in [0, 1), got {ratio}")
        kwargs = {("warmup_steps" if k == "warmup_ratio" else k): v for k, v in kwargs.items()}
        kwargs["warmup_steps"] = float(ratio)
    if use_vllm(recipe):
        kwargs["use_vllm"] = True
        kwargs["vllm_mode"] = (recipe.get("vllm") or {}).get("mode", "colocate")
    else:
        kwargs["use_vllm"] = False
    kwargs["cache_implementation"] = ROLLOUT_PATHS[rollout_path(recipe)]
    kwargs.setdefault("remove_unused_columns", False)  # the reward functions read the GT columns
    if not progress:
        kwargs["disable_tqdm"] = True
    if output_dir is not None:
        kwargs = {"output_dir": str(output_dir), **kwargs}
    return kwargs


def world_size() -> int:
    """Training processes: WORLD_SIZE as `accelerate launch` / torchrun set it, else 1."""
    from adbench.distributed import World

    return World.from_env().size


def batch_layout(kwargs: dict[str, Any], world: int, recipe_name: str = "?") -> dict[str, Any]:
    """Completions and prompts per generation round and per optimizer step; refuses partial prompt groups.

    TRL samples `generation_batch_size` completions at a time (default: per-device batch x
    processes x `steps_per_generation`, which defaults to the accumulation steps); it must
    hold whole groups of `num_generations` completions of one prompt. TRL checks this too,
    but its message does not say which recipe values to change.
    """
    defaults = _config_defaults()

    def get(key: str) -> Any:
        return kwargs[key] if kwargs.get(key) is not None else defaults.get(key)

    per_device, accum, groups = int(get("per_device_train_batch_size")), int(get("gradient_accumulation_steps")), \
        int(get("num_generations"))
    steps = int(get("steps_per_generation") or accum)
    generation = int(get("generation_batch_size") or per_device * world * steps)
    if generation % groups:
        raise TrainingError(
            f"recipe {recipe_name!r}: a generation round of {generation} completions "
            f"(grpo.per_device_train_batch_size {per_device} x {world} training process(es) x {steps} steps) is not "
            f"a whole number of groups of grpo.num_generations={groups} completions per prompt; change "
            f"grpo.per_device_train_batch_size, grpo.gradient_accumulation_steps or the number of processes "
            f"(accelerate launch --num_processes) so that their product is a multiple of {groups} (the release: "
            f"30 x 1 x 10 = 300 = 50 prompts x 6)")
    per_step = per_device * world * accum
    return {"world_size": world, "per_device_train_batch_size": per_device, "gradient_accumulation_steps": accum,
            "num_generations": groups, "steps_per_generation": steps, "completions_per_generation": generation,
            "prompts_per_generation": generation // groups, "completions_per_optimizer_step": per_step,
            "prompts_per_optimizer_step": per_step / groups if per_step % groups else per_step // groups}


def grpo_config(recipe: dict[str, Any], output_dir: Path | str, progress: bool = True) -> Any:
    """trl.GRPOConfig(**grpo_kwargs(...)), after the batch check; errors name the recipe."""
    from trl import GRPOConfig

    kwargs = grpo_kwargs(recipe, output_dir, progress)
    batch_layout(kwargs, world_size(), recipe.get("name", "?"))
    try:
        config = GRPOConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise TrainingError(f"recipe {recipe.get('name')!r}: grpo section: {e}") from e
    check_reporters(config.report_to)
    return config


def check_reporters(report_to: list[str] | str | None) -> None:
    """`grpo.report_to: [tensorboard]` needs tensorboard: said now, not by the trainer after the warm-up."""
    from transformers.integrations import is_tensorboard_available

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "tensorboard" in names and not is_tensorboard_available():
        raise TrainingError("grpo.report_to: tensorboard is not installed; pip install 'adbench[tensorboard]' "
                            "(or drop it: --set grpo.report_to=[])")


def _has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def describe(recipe: dict[str, Any], out: Path | str | None = None, overrides: list[str] | None = None,
             progress: bool = True) -> dict[str, Any]:
    """`adbench train --print-config`: the resolved recipe and the exact library arguments, checked by TRL.

    The GRPOConfig keyword arguments are validated by constructing a GRPOConfig from them
    (unknown keys, TRL's own consistency checks). Without a GPU, the precision switches
    transformers refuses on a CPU (`DEVICE_KEYS`) are turned off for that check only;
    `grpo_config_check.device_adjusted` lists what was changed. Nothing is loaded.
    """
    compat.training()  # the GRPOConfig fields and defaults the recipes were checked against
    name = recipe.get("name", "?")
    kwargs = grpo_kwargs(recipe, checkpoint_dir(out) if out is not None else None, progress)
    layout = batch_layout(kwargs, world_size(), name)
    adjusted = {} if _has_gpu() else {k: False for k in DEVICE_KEYS if kwargs.get(k)}
    from trl import GRPOConfig

    try:
        cfg = GRPOConfig(**{**kwargs, **adjusted})  # constructing it creates no folder
    except (TypeError, ValueError) as e:
        raise TrainingError(f"recipe {name!r}: grpo section: {e}") from e
    check_reporters(cfg.report_to)
    lo, hi = frame_budget(recipe)
    vllm = recipe.get("vllm") or {}
    return {
        "recipe": recipe,
        "overrides": list(overrides or []),
        "grpo_config_kwargs": kwargs,
        "grpo_config_check": {"ok": True, "device_adjusted": adjusted,
                              "generation_batch_size": cfg.generation_batch_size,
                              "steps_per_generation": cfg.steps_per_generation},
        "batch": layout,
        "lora_config_kwargs": lora_kwargs(recipe),
        "model_kwargs": model_settings(recipe),
        "processor": {"min_pixels": lo, "max_pixels": hi},
        "rollout": {"path": rollout_path(recipe), "engine": rollout_engine(recipe, kwargs["use_vllm"])},
        "vllm": {"enabled": vllm.get("enabled", "auto"), "installed": vllm_available(),
                 "used": kwargs["use_vllm"], "mode": vllm.get("mode", "colocate")},
        "rewards": {"variant": recipe["rewards"].get("variant", "paper"),
                    "components": list(recipe["rewards"]["components"]), "alpha": recipe["rewards"].get("alpha")},
    }
