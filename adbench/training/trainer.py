"""`adbench train`: GRPO with the AD-FM reward through TRL, from a recipe to a LoRA adapter.

    recipe --> base model (the tiny recipe: built offline into OUT/base, then an SFT
               warm-up into OUT/base-sft, which becomes the GRPO base)
           --> GRPO dataset (grpo_data) + reward functions (reward_funcs)
           --> trl.GRPOTrainer(model, reward_funcs, GRPOConfig(recipe.grpo), peft_config=LoRA)
           --> OUT/adapter: adapter_model.safetensors, adapter_config.json, the processor,
               adbench_training.json (what `adbench run --model adfm -M adapter=...` reads)

Output folder:
    OUT/base/         the tiny recipe's random base (skipped when present)
    OUT/base-sft/     the warmed-up base (skipped when its marker file is present)
    OUT/checkpoints/  TRL checkpoints (checkpoint-N); a second run resumes from the last one
    OUT/adapter/      the result

The project supplies data, rewards and configuration; the RL loop is TRL's. The
vision tower stays frozen (`lora.assert_vision_frozen` checks the wrapped model).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adbench.models.qwen_vl import TRAINING_METADATA
from adbench.provenance import environment, now
from adbench.training.config import (  # noqa: F401 - TrainingError, use_vllm, vllm_available: public here too
    TrainingError,
    checkpoint_dir,
    grpo_config,
    model_kwargs,
    use_vllm,
    vllm_available,
)
from adbench.training.grpo_data import (
    MODEL_INPUT_IMAGES,
    build_grpo_dataset,
    configure_processor,
    frame_budget,
    load_training_samples,
)
from adbench.training.lora import assert_vision_frozen, lora_config
from adbench.training.recipes import load_recipe
from adbench.training.reward_funcs import make_reward_funcs
from adbench.training.warmup import quiet, run_warmup, warmup_done

TINY_BASE = "tiny"


@dataclass
class TrainResult:
    out: Path
    adapter: Path
    metadata: dict[str, Any]


def json_safe(obj: Any) -> Any:
    """Round-trip through JSON, turning what JSON cannot hold (enums, paths, dtypes) into strings."""
    return json.loads(json.dumps(obj, default=str))


def _prepare_base(recipe: dict[str, Any], out: Path, training: Any, mkw: dict[str, Any],
                  progress: bool = True) -> tuple[Path | str, Any]:
    """The GRPO base: a hub id or folder, or (tiny) the built and warmed-up base. Returns (base, warm-up info)."""
    base: Path | str = recipe["base"]
    lo, hi = frame_budget(recipe)
    if base == TINY_BASE:
        from accelerate import PartialState

        from adbench.models.tiny_qwen import build_tiny_qwen_vl

        tiny = out / "base"
        with PartialState().main_process_first():  # under `accelerate launch`: rank 0 builds, the others read
            if not (tiny / "adbench_tiny.json").is_file():
                build_tiny_qwen_vl(tiny, seed=int(recipe.get("tiny_seed", 0)), min_pixels=lo, max_pixels=hi)
        base = tiny
    warm_cfg = recipe.get("sft_warmup")
    if not warm_cfg:
        return base, None
    warmed = out / "base-sft"
    if warmup_done(warmed):
        return warmed, json.loads((warmed / "adbench_warmup.json").read_text(encoding="utf-8"))
    return warmed, run_warmup(recipe, str(base), training, warmed, model_kwargs=mkw, progress=progress,
                              image_dir=out / MODEL_INPUT_IMAGES)


def _load_model(base: Path | str, mkw: dict[str, Any]) -> Any:
    from transformers import AutoModelForImageTextToText

    if isinstance(base, Path) or Path(str(base)).expanduser().exists():
        from adbench.models.hf_vlm import check_safetensors_folder

        check_safetensors_folder(Path(str(base)).expanduser(), "base model")
    return AutoModelForImageTextToText.from_pretrained(str(base), use_safetensors=True, **mkw)


def _relative_base(base: Path | str, adapter: Path) -> str:
    """The base as metadata stores it: relative to the adapter folder when it lives in OUT, else absolute."""
    local = Path(str(base)).expanduser()
    if not local.exists():
        return str(base)  # a hub id
    local, out = local.resolve(), adapter.resolve().parent
    if local.is_relative_to(out):  # the tiny recipe's bases: relative, so a moved or copied OUT still works
        return os.path.relpath(local, adapter.resolve())
    return str(local)


def _save_at_end() -> Any:
    """A callback that saves a checkpoint at the last step, so a finished run resumes to a no-op."""
    from transformers import TrainerCallback

    class SaveAtEnd(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_save = True
            return control

    return SaveAtEnd()


def train(recipe_name: str, out: Path, overrides: list[str] | None = None, data_root: Path | None = None,
          progress: bool = True) -> TrainResult:
    """Run a recipe into `out` (resuming from its last checkpoint); returns the adapter and its metadata."""
    t_start = time.perf_counter()
    recipe = load_recipe(recipe_name, overrides)  # before the heavy imports: a bad name fails at once

    from transformers import AutoProcessor
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOTrainer

    from adbench.data.paths import default_data_root

    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = Path(data_root or recipe["data"].get("data_root") or default_data_root()).expanduser().resolve()
    args = grpo_config(recipe, checkpoint_dir(out), progress)  # before anything slow: a bad grpo key fails here
    training = load_training_samples(recipe, root)
    mkw = model_kwargs(recipe)
    stale = out / "adapter" / TRAINING_METADATA
    if stale.is_file():  # this run rewrites the adapter: until it finishes, it is not a finished one
        stale.unlink()

    t0 = time.perf_counter()
    base, warm = _prepare_base(recipe, out, training, mkw, progress)
    t_base = time.perf_counter() - t0

    lo, hi = frame_budget(recipe)
    processor = configure_processor(AutoProcessor.from_pretrained(str(base)), lo, hi)
    dataset = build_grpo_dataset(recipe, training, out / MODEL_INPUT_IMAGES)
    model = _load_model(base, mkw)
    trainer = GRPOTrainer(model=model, reward_funcs=make_reward_funcs(recipe), args=args, train_dataset=dataset,
                          processing_class=processor, peft_config=lora_config(recipe), callbacks=[_save_at_end()])
    if not progress:
        quiet(trainer)
    target = recipe["lora"].get("target", "language")
    if target == "language":
        adapted = assert_vision_frozen(trainer.model)
    else:
        from adbench.training.lora import adapted_modules

        adapted = adapted_modules(trainer.model)

    last = get_last_checkpoint(str(out / "checkpoints")) if (out / "checkpoints").is_dir() else None
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    t_grpo = time.perf_counter() - t0
    start_step = int(Path(last).name.split("-")[-1]) if last else 0

    adapter = out / "adapter"
    summary = training.summary()
    metadata = {
        "format": "adbench-training/1",
        "written": now(),
        "recipe": recipe,
        "overrides": list(overrides or []),
        "base": _relative_base(base, adapter),
        "base_resolved": str(Path(str(base)).expanduser().resolve()) if Path(str(base)).expanduser().exists()
        else str(base),
        "stages": recipe["protocol"]["stages"],
        "frame": {"min_pixels": lo, "max_pixels": hi},
        "max_completion_length": recipe["grpo"].get("max_completion_length"),
        "data_root": str(root),
        "data": summary,
        "split_hash": summary["split_hash"],
        "rewards": {"variant": recipe["rewards"].get("variant", "paper"),
                    "components": list(recipe["rewards"]["components"]),
                    "alpha": recipe["rewards"].get("alpha"),
                    "functions": [f.__name__ for f in trainer.reward_funcs]},
        "trl_config": json_safe(args.to_dict()),
        "lora": {"config": json_safe(trainer.model.peft_config["default"].to_dict()),
                 "target": target, "adapted_modules": adapted},
        "warmup": warm,
        "steps": {"global_step": int(trainer.state.global_step), "resumed_from": last,
                  "resumed_from_step": start_step,
                  "this_session": int(trainer.state.global_step) - start_step},
        "log_history": json_safe(trainer.state.log_history),
        "seconds": {"base_and_warmup": round(t_base, 1), "grpo": round(t_grpo, 1),
                    "total": round(time.perf_counter() - t_start, 1)},
        "versions": environment(),
    }
    # one writer under `accelerate launch` (ZeRO-2 keeps full parameters on every rank, so rank 0 saves them);
    # the metadata file is written last: its presence marks a finished adapter
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(str(adapter), safe_serialization=True)
        processor.save_pretrained(str(adapter))
        (adapter / TRAINING_METADATA).write_text(json.dumps(metadata, indent=1), encoding="utf-8")
    trainer.accelerator.wait_for_everyone()
    return TrainResult(out, adapter, metadata)


def finished_adapter(out: Path) -> Path | None:
    """OUT/adapter when a finished training wrote it (its metadata file is written last)."""
    adapter = Path(out) / "adapter"
    return adapter if (adapter / TRAINING_METADATA).is_file() and (adapter / "adapter_model.safetensors").is_file() \
        else None
