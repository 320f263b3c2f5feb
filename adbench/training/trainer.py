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
    OUT/checkpoints/  TRL checkpoints (checkpoint-N); a second run resumes from the last complete one
    OUT/checkpoints.incomplete/  checkpoints a kill left half-written, set aside (adbench.training.resume)
    OUT/adapter/      the result

Running `adbench train` again on OUT resumes an interrupted run; on a finished run it
says "already complete" and changes nothing, unless grpo.max_steps or
grpo.num_train_epochs were raised (then it trains the extra steps). Any other change of
the recipe against the run's OUT/recipe.json is refused (`resume.check_same_recipe`). A recipe's base
model that is not on this machine fails at once, naming it and how to supply it
(`adbench.models.weights.locate_pretrained`).

The project supplies data, rewards and configuration; the RL loop is TRL's. The
vision tower stays frozen (`lora.assert_vision_frozen` checks the wrapped model).
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adbench import compat
from adbench.distributed import World, describe_rank
from adbench.errors import UserError
from adbench.models.presets.adfm import TRAINING_METADATA, read_training_metadata
from adbench.models.weights import check_safetensors_folder, locate_pretrained
from adbench.provenance import environment, now
from adbench.store import write_json_atomic
from adbench.training.config import (  # noqa: F401 - TrainingError, use_vllm, vllm_available: public here too
    TrainingError,
    batch_layout,
    checkpoint_dir,
    grpo_config,
    grpo_kwargs,
    model_kwargs,
    quiet_deepspeed_without_gpu,
    use_vllm,
    vllm_available,
    world_size,
)
from adbench.training.console import attach_console, phase
from adbench.training.grpo_data import (
    MODEL_INPUT_IMAGES,
    build_grpo_dataset,
    configure_processor,
    frame_budget,
    load_training_samples,
)
from adbench.training.lora import assert_vision_frozen, lora_config
from adbench.training.recipes import load_recipe
from adbench.training.resume import (
    already_finished,
    check_same_recipe,
    last_complete_checkpoint,
    planned_steps,
    record_recipe,
    restore,
    schedule_on_resume,
    step_of,
)
from adbench.training.reward_funcs import make_reward_funcs
from adbench.training.warmup import run_warmup, warmup_done

TINY_BASE = "tiny"


@dataclass
class TrainResult:
    out: Path
    adapter: Path
    metadata: dict[str, Any]
    #: the run in `out` had already reached this recipe's target: nothing was trained or written
    already_complete: bool = False


def json_safe(obj: Any) -> Any:
    """Round-trip through JSON, turning what JSON cannot hold (enums, paths, dtypes) into strings."""
    return json.loads(json.dumps(obj, default=str))


def _base_source(recipe: dict[str, Any]) -> str | None:
    """What from_pretrained reads for the recipe's base (None: the tiny base, built later).

    A base that is not on this machine and cannot be downloaded now fails here, at once.
    """
    if recipe["base"] == TINY_BASE:
        return None
    return locate_pretrained(recipe["base"], "base model", "--set base=DIR")


def _prepare_base(recipe: dict[str, Any], out: Path, training: Any, mkw: dict[str, Any], source: str | None,
                  progress: bool = True) -> tuple[Path | str, str, Any]:
    """The GRPO base: the recipe's (hub id or folder), or (tiny) the built one, then warmed up if the recipe says so.

    Returns (the base as the metadata records it, what from_pretrained reads, warm-up info).
    """
    base: Path | str = recipe["base"]
    load_from = source or str(base)
    lo, hi = frame_budget(recipe)
    if base == TINY_BASE:
        from accelerate import PartialState

        from adbench.models.tiny_qwen import build_tiny_qwen_vl

        tiny = out / "base"
        with PartialState().main_process_first():  # under `accelerate launch`: rank 0 builds, the others read
            if not (tiny / "adbench_tiny.json").is_file():
                phase(f"base: building the tiny random Qwen2.5-VL -> {tiny}")
                build_tiny_qwen_vl(tiny, seed=int(recipe.get("tiny_seed", 0)), min_pixels=lo, max_pixels=hi)
        base, load_from = tiny, str(tiny)
    warm_cfg = recipe.get("sft_warmup")
    if not warm_cfg:
        return base, load_from, None
    warmed = out / "base-sft"
    if warmup_done(warmed):
        phase(f"warm-up: done in an earlier run, using {warmed}")
        return warmed, str(warmed), json.loads((warmed / "adbench_warmup.json").read_text(encoding="utf-8"))
    return warmed, str(warmed), run_warmup(recipe, load_from, training, warmed, model_kwargs=mkw,
                                           progress=progress, image_dir=out / MODEL_INPUT_IMAGES)


def _load_model(base: Path | str, mkw: dict[str, Any]) -> Any:
    from transformers import AutoModelForImageTextToText

    if isinstance(base, Path) or Path(str(base)).expanduser().exists():
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


@functools.cache
def restore_indexed_cpu_locations() -> None:
    """Let torch.load map storages to "cpu:N", as transformers before 5.20 asks when a multi-process run resumes on CPUs.

    Its Trainer loads the optimizer state with map_location=args.device in a multi-process
    run, and accelerate's device for a CPU process is torch.device("cpu", rank), which torch's
    own deserializers do not know ("don't know how to restore data location ... cpu:0");
    transformers 5.20 maps to plain "cpu" instead. Registered once per process, through
    torch's public registry; storages then stay on the CPU, where they were saved.
    """
    import torch.serialization

    def deserialize(storage: Any, location: str) -> Any:
        return storage if re.fullmatch(r"cpu:\d+", location) else None

    torch.serialization.register_package(30, lambda storage: None, deserialize)  # after torch's own cpu (10)


def train(recipe_name: str, out: Path, overrides: list[str] | None = None, data_root: Path | None = None,
          progress: bool = True) -> TrainResult:
    """Run a recipe into `out`; returns the adapter and its metadata.

    Resumes from the last complete checkpoint (`resume`); a run already at this recipe's
    target is returned as it is (`already_complete`), nothing trained or written.
    """
    t_start = time.perf_counter()
    recipe = load_recipe(recipe_name, overrides)  # before the heavy imports: a bad name fails at once
    compat.training()  # TRL's config fields and trainer hooks, peft's LoRA API: a clear error, not one mid-step
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":  # set by accelerate launch for DeepSpeed
        compat.deepspeed_zero2()
    quiet_deepspeed_without_gpu()

    from accelerate import PartialState
    from transformers import AutoProcessor
    from trl import GRPOTrainer

    from adbench.data.paths import default_data_root

    out = Path(out).expanduser().resolve()
    root = Path(data_root or recipe["data"].get("data_root") or default_data_root()).expanduser().resolve()
    args = grpo_config(recipe, checkpoint_dir(out), progress)  # before anything slow: a bad grpo key fails here
    finished = _finished_metadata(out)
    check_same_recipe(out, recipe, finished)  # OUT's run continues only with its own recipe
    if finished is not None and already_finished(args, finished):  # nothing loaded, nothing written
        return TrainResult(out, out / "adapter", finished, already_complete=True)
    source = _base_source(recipe)  # a base model that is not on this machine fails here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    training = load_training_samples(recipe, root)
    mkw = model_kwargs(recipe)

    t0 = time.perf_counter()
    base, load_from, warm = _prepare_base(recipe, out, training, mkw, source, progress)
    t_base = time.perf_counter() - t0

    lo, hi = frame_budget(recipe)
    processor = configure_processor(AutoProcessor.from_pretrained(load_from), lo, hi)
    dataset = build_grpo_dataset(recipe, training, out / MODEL_INPUT_IMAGES)
    model = _load_model(load_from, mkw)
    trainer = GRPOTrainer(model=model, reward_funcs=make_reward_funcs(recipe), args=args, train_dataset=dataset,
                          processing_class=processor, peft_config=lora_config(recipe),
                          callbacks=[_save_at_end(), schedule_on_resume()])
    attach_console(trainer, "GRPO", progress)
    target = recipe["lora"].get("target", "language")
    if target == "language":
        adapted = assert_vision_frozen(trainer.model)
    else:
        from adbench.training.lora import adapted_modules

        adapted = adapted_modules(trainer.model)

    with PartialState().main_process_first():  # rank 0 sets incomplete checkpoints aside; the others then see none
        last = last_complete_checkpoint(checkpoint_dir(out), bool(getattr(args, "use_adaptive_entropy", False)))
        if PartialState().is_main_process:
            record_recipe(out, recipe)
    planned = planned_steps(trainer)
    at_target = last is not None and step_of(last) >= planned
    if at_target and finished is not None:  # an epoch target that needed the data loader to tell
        return TrainResult(out, out / "adapter", finished, already_complete=True)
    t0 = time.perf_counter()
    if at_target:  # killed after its last checkpoint, before the adapter was written: that checkpoint is the result
        phase(f"GRPO: already at step {step_of(last)} ({last.name}); writing the adapter from it")
        restore(trainer, last)
    else:
        resume = f", resuming from step {step_of(last)} ({last.name})" if last else ""
        phase(f"GRPO (TRL GRPOTrainer): {planned} steps{resume}; {args.num_generations} completions per prompt, "
              f"reward {' + '.join(f.__name__ for f in trainer.reward_funcs)}")
        # this run rewrites the adapter: until it finishes, it is not a finished one
        (out / "adapter" / TRAINING_METADATA).unlink(missing_ok=True)
        if last and World.from_env().size > 1:
            restore_indexed_cpu_locations()
        trainer.train(resume_from_checkpoint=str(last) if last else None)
    t_grpo = time.perf_counter() - t0
    start_step = step_of(last) if last else 0

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
        # the processes of this session and the batch they made together: completions and prompts per optimizer step
        "batch": batch_layout(grpo_kwargs(recipe), world_size(), recipe.get("name", "?")),
        "written_by": describe_rank(World.from_env()),  # rank 0: the one process that writes the adapter
        "steps": {"global_step": int(trainer.state.global_step), "resumed_from": str(last) if last else None,
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
        write_json_atomic(adapter / TRAINING_METADATA, metadata)  # a kill leaves the old file or none, never half
    trainer.accelerator.wait_for_everyone()
    return TrainResult(out, adapter, metadata)


def _finished_metadata(out: Path) -> dict[str, Any] | None:
    """The metadata of OUT's finished adapter, or None (no finished run there)."""
    adapter = finished_adapter(out)
    if adapter is None:
        return None
    try:
        meta = read_training_metadata(adapter)
    except UserError:  # unreadable: not a finished run; training rewrites it from the last checkpoint
        return None
    return meta if meta and isinstance(meta.get("steps"), dict) else None


def finished_adapter(out: Path) -> Path | None:
    """OUT/adapter when a finished training wrote it (its metadata file is written last)."""
    adapter = Path(out) / "adapter"
    return adapter if (adapter / TRAINING_METADATA).is_file() and (adapter / "adapter_model.safetensors").is_file() \
        else None
