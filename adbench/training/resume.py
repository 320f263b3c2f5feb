"""Where a training run in OUT stands: its last complete checkpoint, and whether it is already finished.

A complete checkpoint. transformers 5.24's `Trainer._save_checkpoint` writes
checkpoint-N in this order: the model (`save_model`: adapter_model.safetensors,
adapter_config.json, the processor files), optimizer.pt and scheduler.pt, scaler.pt,
rng_state.pth, and last trainer_state.json (`TrainerState.save_to_json`, a plain
open-and-write); TRL's GRPOTrainer then adds entropy_ctrl_state.json when
`use_adaptive_entropy` is on. A kill -9 while saving therefore leaves a folder without
trainer_state.json, or with one cut short; transformers' `get_last_checkpoint` picks
the highest checkpoint-N folder whatever it holds, and every later resume failed
("Can't find a valid checkpoint"). So a checkpoint counts as complete when its trainer_state.json parses
and names the folder's step, its weights file is a whole safetensors file (rotation
deletes files of old checkpoints too) and, with adaptive entropy, the entropy state
is there. Incomplete ones are moved to OUT/checkpoints.incomplete/ (kept for a look,
out of TRL's way: it would write into the same name and rotate by it) and the console
says so.

Finished. A run's target is `max_steps`, or `num_train_epochs` x the optimizer steps per
epoch. Resumed at its target, transformers trains one more step anyway (its loop
checks the target only after a step), so a finished run is never handed to
`trainer.train`: `already_finished` answers from the adapter's metadata before anything
is loaded when it can, `planned_steps` from the trainer's data loader when the target
needs it, and `restore` loads a checkpoint at the target without training.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from adbench.errors import UserError
from adbench.models.weights import check_safetensors_file
from adbench.training.config import TrainingError

CHECKPOINT = re.compile(r"checkpoint-(\d+)")  # transformers' PREFIX_CHECKPOINT_DIR naming
STATE = "trainer_state.json"  # written last (see the module docstring)
WEIGHTS = ("adapter_model.safetensors", "model.safetensors")
ENTROPY_STATE = "entropy_ctrl_state.json"


def step_of(checkpoint: str | Path) -> int:
    return int(CHECKPOINT.fullmatch(Path(checkpoint).name).group(1))  # type: ignore[union-attr]


def incomplete_reason(folder: Path, adaptive_entropy: bool = False) -> str | None:
    """Why checkpoint `folder` cannot be resumed from (an interrupted save), or None when it is complete."""
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {STATE}"
    except (OSError, ValueError) as e:
        return f"{STATE} unreadable: {e}"
    if not isinstance(state, dict) or state.get("global_step") != step_of(folder):
        return f"{STATE} is not step {step_of(folder)}'s"
    weights = [folder / name for name in WEIGHTS if (folder / name).is_file()]
    if not weights and not (folder / "model.safetensors.index.json").is_file():
        return "no model weights"
    for w in weights:
        try:
            check_safetensors_file(w, "checkpoint weights")
        except UserError as e:
            return str(e)
    if adaptive_entropy and not (folder / ENTROPY_STATE).is_file():
        return f"no {ENTROPY_STATE}"
    return None


def _set_aside(folder: Path, reason: str) -> Path:
    """Move an incomplete checkpoint to <checkpoints>.incomplete/ (never over an earlier one) and say so."""
    aside = folder.parent.with_name(folder.parent.name + ".incomplete")
    aside.mkdir(parents=True, exist_ok=True)
    dest, k = aside / folder.name, 1
    while dest.exists():
        k += 1
        dest = aside / f"{folder.name}.{k}"
    folder.rename(dest)
    print(f"adbench train: {folder.name} is incomplete ({reason}; interrupted while saving?): not resumed from, "
          f"moved to {dest}", file=sys.stderr)
    return dest


def checkpoint_folders(checkpoints: Path) -> list[Path]:
    """The checkpoint-N folders in `checkpoints` (none when it does not exist), by step, lowest first."""
    if not checkpoints.is_dir():
        return []
    return sorted((p for p in checkpoints.iterdir() if p.is_dir() and CHECKPOINT.fullmatch(p.name)), key=step_of)


def last_complete_checkpoint(checkpoints: Path, adaptive_entropy: bool = False) -> Path | None:
    """The highest complete checkpoint-N in `checkpoints`; every incomplete one is set aside first."""
    complete = []
    for folder in checkpoint_folders(checkpoints):
        reason = incomplete_reason(folder, adaptive_entropy)
        if reason is None:
            complete.append(folder)
        else:
            _set_aside(folder, reason)
    return complete[-1] if complete else None


#: The resolved recipe of the run in OUT, written when it first starts (the runner's config.json, for training).
RECIPE_RECORD = "recipe.json"
#: Recipe keys a resumed run may change: how long to train, bookkeeping, and the rollout path (speed
#: only: every path samples from the same distribution; a run recorded before `rollout` existed has
#: none). Anything else (a reward, beta, the data, the base) would splice two different trainings
#: into one adapter.
MAY_CHANGE_ON_RESUME = frozenset({
    ("grpo", "max_steps"), ("grpo", "num_train_epochs"), ("grpo", "logging_steps"), ("grpo", "save_steps"),
    ("grpo", "save_total_limit"), ("grpo", "report_to"), ("grpo", "disable_tqdm"), ("description",),
    ("rollout",),
})


def recipe_changes(old: Any, new: Any, where: tuple[str, ...] = ()) -> list[str]:
    """'key: old -> new' for each leaf that differs, except the ones a resume may change."""
    if where in MAY_CHANGE_ON_RESUME:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in sorted(set(old) | set(new), key=str)
                for c in recipe_changes(old.get(k), new.get(k), (*where, str(k)))]
    if old != new:
        return [f"{'.'.join(where) or 'recipe'}: {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}"]
    return []


def check_same_recipe(out: Path, recipe: dict[str, Any], finished: dict[str, Any] | None) -> None:
    """Refuse to continue the run in OUT with another recipe.

    The recipe a run started with is OUT/recipe.json (`record_recipe`; for a run finished
    by an older adbench, its adapter metadata's). Only MAY_CHANGE_ON_RESUME keys may differ.
    """
    path = Path(out) / RECIPE_RECORD
    old: Any = None
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TrainingError(f"{path}: unreadable ({e}); it records the recipe this run started with") from e
    elif finished is not None:
        old = finished.get("recipe")
    current = json.loads(json.dumps(recipe, default=str))  # as it would be stored
    if old is not None:
        changes = recipe_changes(old, current)
        if changes:
            shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
            raise TrainingError(f"{out} holds a training run of another recipe ({shown}); train into another "
                                "--out, or run the same recipe (only max_steps, num_train_epochs, rollout.path "
                                "and bookkeeping keys may change on resume)")


def record_recipe(out: Path, recipe: dict[str, Any]) -> None:
    """Write OUT/recipe.json when training first starts (not before: a run that fails to start binds nothing)."""
    from adbench.store import write_json_atomic

    path = Path(out) / RECIPE_RECORD
    if not path.is_file():
        write_json_atomic(path, json.loads(json.dumps(recipe, default=str)))


def already_finished(args: Any, metadata: dict[str, Any]) -> bool:
    """Whether a finished run (its adapter metadata) already holds what `args` (a GRPOConfig) ask for.

    Decided from the metadata alone where it can be: a step target, or the same (or fewer)
    epochs of an epoch-based finished run. False otherwise (raised targets, or a target
    that needs the data loader: `planned_steps` decides after loading).
    """
    done = int(metadata["steps"]["global_step"])
    if args.max_steps > 0:
        return done >= args.max_steps
    recorded = metadata.get("trl_config") or {}
    return int(recorded.get("max_steps", -1)) <= 0 and \
        float(args.num_train_epochs) <= float(recorded.get("num_train_epochs", 0))


def planned_steps(trainer: Any) -> int:
    """The run's target in optimizer steps, as transformers computes it (`set_initial_training_values`)."""
    args = trainer.args
    if args.max_steps > 0:
        return int(args.max_steps)
    batches = len(trainer.get_train_dataloader())
    per_epoch = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
    return math.ceil(args.num_train_epochs * per_epoch)


def restore(trainer: Any, checkpoint: Path) -> None:
    """A checkpoint's LoRA weights and trainer state into `trainer`, without training (the run was at its target)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    weights = check_safetensors_file(checkpoint / "adapter_model.safetensors", "checkpoint adapter")
    loaded = set_peft_model_state_dict(trainer.model, load_file(str(weights)))
    if loaded.unexpected_keys:
        raise TrainingError(f"{weights}: tensors this run's LoRA does not have ({', '.join(loaded.unexpected_keys[:3])}); "
                        "was it trained with another recipe?")
    trainer.state = TrainerState.load_from_json(str(checkpoint / STATE))


def schedule_on_resume() -> Any:
    """A callback: a resumed run takes the learning rate of its next step from this run's schedule.

    A checkpoint's optimizer state carries the learning rate its own schedule set for the
    next step. After grpo.max_steps (or the epochs) was raised, that is the old schedule's
    end (0 for the linear decay), and the first resumed step would learn nothing; from the
    second on, the scheduler (rebuilt for the new target, its step count restored) is
    right. Every transformers schedule but reduce_lr_on_plateau is a LambdaLR, recomputed
    here; a run resumed at an unchanged target gets the very same value.
    """
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import TrainerCallback

    class ScheduleOnResume(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                           lr_scheduler: Any = None, **kwargs: Any) -> Any:
            scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
            if state.global_step > 0 and optimizer is not None and isinstance(scheduler, LambdaLR):
                for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                    group["lr"] = base * fn(scheduler.last_epoch)
                scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what the log reports
            return control

    return ScheduleOnResume()
