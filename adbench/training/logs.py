"""A training's log, for `adbench plot TRAIN_DIR`: the trainer's per-step log history, wherever it is.

TRL's GRPOTrainer logs through transformers' Trainer: each logging step appends a dict
(`step`, `loss`, `reward`, `rewards/<function>/mean`, `kl`, `learning_rate`, ...) to
`TrainerState.log_history`, which is saved in every checkpoint's `trainer_state.json`
and which adbench copies into the finished adapter's `adbench_training.json`. This
reads, in order of preference: the folder's own adapter metadata (`OUT/adapter/`, or the
adapter folder given), a checkpoint given directly, else the last complete checkpoint
under `OUT/checkpoints/` (a training still running or interrupted; incomplete ones are
skipped, never moved: plotting changes nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adbench.errors import UserError
from adbench.models.presets.adfm import TRAINING_METADATA
from adbench.training.config import checkpoint_dir
from adbench.training.resume import STATE, checkpoint_folders, incomplete_reason


def _history(path: Path) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    history = data.get("log_history") if isinstance(data, dict) else None
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else None


def training_history(folder: Path) -> tuple[list[dict[str, Any]], Path]:
    """(log history, the file it was read from) of a training folder, its adapter folder or a checkpoint."""
    folder = Path(folder)

    def candidates() -> Iterator[Path]:  # checkpoints are checked only when no adapter metadata is there
        yield from (folder / TRAINING_METADATA, folder / "adapter" / TRAINING_METADATA, folder / STATE)
        for p in reversed(checkpoint_folders(checkpoint_dir(folder))):
            if incomplete_reason(p) is None:
                yield p / STATE

    for path in candidates():
        history = _history(path) if path.is_file() else None
        if history is not None:
            return history, path
    raise UserError(f"{folder}: neither a run directory (no results.json) nor a training folder (no "
                    f"adapter/{TRAINING_METADATA}, and no complete checkpoints/checkpoint-N/{STATE})")


def plot_training(folder: Path, out: Path, fmt: str = "svg") -> list[Path]:
    """`adbench plot TRAIN_DIR`: the reward, KL and loss curves into OUT/training_<name>/training.<fmt>."""
    from adbench.plots import check_format, folder_name, save_figure, training_figure

    check_format(fmt)
    history, source = training_history(folder)
    if not any("step" in h for h in history):
        raise UserError(f"{source}: the log history has no logged step yet")
    name = Path(folder).resolve().name
    fig = training_figure(history, f"training {name}: per GRPO step (from {source.name})")
    return [save_figure(fig, Path(out) / folder_name(f"training_{name}") / f"training.{fmt}", fmt)]
