"""The tiny recipe trained once per test session (real TRL, real files), shared by the training tests.

`tiny_training()` runs `adbench.training.trainer.train("tiny", max_steps=2)` on the
demo suite of `vlm_fixtures.tiny_assets()`: the tiny base is built, warmed up with
TRL's SFTTrainer and trained for two GRPO steps. Tests that resume it work on a copy
(`copy_training`), so the shared output stays at step 2.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.vlm_fixtures import tiny_assets

FIRST_STEPS = 2


@dataclass(frozen=True)
class TinyTraining:
    out: Path
    adapter: Path
    data_root: Path
    metadata: dict[str, Any]
    console: str  # what training printed on stderr (progress off: the phase headers)


@contextlib.contextmanager
def session_cache_home(root: Path):
    """XDG_CACHE_HOME in the session's folder, seeded with its converted tokenizer.

    The trainer builds the tiny base itself (with the default tokenizer cache); this keeps
    that from writing the user's ~/.cache and from converting the vocabulary again.
    """
    from adbench.models.tiny_qwen import tokenizer_cache_dir

    home = root / "xdg-cache"
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(home)
    try:
        if not tokenizer_cache_dir().exists():
            shutil.copytree(tiny_assets().tokenizer_cache, tokenizer_cache_dir())
        yield home
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old


@functools.cache
def tiny_training() -> TinyTraining:
    from adbench.training.trainer import train

    assets = tiny_assets()
    out = assets.root / "train-tiny"
    printed = io.StringIO()
    with session_cache_home(assets.root), contextlib.redirect_stderr(printed):
        result = train("tiny", out, [f"grpo.max_steps={FIRST_STEPS}"], data_root=assets.data_root, progress=False)
    return TinyTraining(out, result.adapter, assets.data_root, result.metadata, printed.getvalue())


def copy_training(dest: Path, with_checkpoints: bool = True) -> Path:
    """A copy of the trained output folder (bases, adapter and, optionally, checkpoints)."""
    src = tiny_training().out
    ignore = None if with_checkpoints else shutil.ignore_patterns("checkpoints")
    shutil.copytree(src, dest, ignore=ignore)
    return dest
