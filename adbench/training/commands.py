"""The training side of the command line: `adbench train`, `adbench variance`, `adbench list recipes`,
`adbench plot TRAIN_DIR` and the tiny AD-FM model of `adbench demo`.

`adbench.cli` is core and never imports `adbench.training` (tests/test_architecture.py);
it reaches these functions by name through `registry.load_target`, as it reaches models
and tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from adbench import registry
from adbench.errors import UserError

# transformers 5 renames gradient checkpointing to activation checkpointing; TRL and the
# paper's recipes still use the old name, which works. Its FutureWarning would only
# bury the training log a user reads.
warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning)


def list_recipes() -> int:
    from adbench.training.recipes import available, description

    names = available()
    width = max((len(n) for n in names), default=0)
    for name in names:  # descriptions only: listing does not import trl to check every recipe
        print(f"{name:<{width}}  {description(name)}")
    return 0


def train_command(args: argparse.Namespace) -> int:
    if getattr(args, "print_config", False):
        return print_config(args)
    if args.out is None:
        raise UserError("train: --out DIR is required (except with --print-config)")
    from adbench.training.console import score_command
    from adbench.training.trainer import train

    result = train(args.recipe, args.out, args.overrides, data_root=args.data_root, progress=not args.no_progress)
    from adbench.distributed import World

    if not World.from_env().is_main:  # under accelerate launch: rank 0 reports, as it alone wrote the adapter
        return 0
    steps = result.metadata["steps"]
    if result.already_complete:
        print(f"recipe {result.metadata['recipe']['name']}: already complete ({steps['global_step']} GRPO steps); "
              f"the adapter is {result.adapter}. Nothing was trained or written; raise grpo.max_steps or "
              "grpo.num_train_epochs (--set) to train further, or give another --out to start afresh",
              file=sys.stderr)
    else:
        resumed = f", resumed from step {steps['resumed_from_step']}" if steps["resumed_from"] else ""
        print(f"recipe {result.metadata['recipe']['name']}: {steps['global_step']} GRPO steps "
              f"({steps['this_session']} this run{resumed}) in {result.metadata['seconds']['total']:.0f} s",
              file=sys.stderr)
    print(result.adapter)
    sys.stdout.flush()  # the path (stdout, for scripts) before the last line a person reads (stderr)
    print(f"adapter: {result.adapter}; score it with: {score_command(result.metadata, result.adapter)}",
          file=sys.stderr)
    return 0


def print_config(args: argparse.Namespace) -> int:
    """`adbench train --print-config`: the resolved recipe and the exact GRPOConfig/LoraConfig arguments as JSON."""
    from adbench.training.config import describe
    from adbench.training.recipes import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    report = describe(recipe, args.out, args.overrides, progress=not args.no_progress)
    print(json.dumps(report, indent=1, default=str))
    return 0


def plot_training(folder: Path, out: Path, fmt: str) -> list[Path]:
    """`adbench plot TRAIN_DIR`: the training's reward, KL and loss curves (adbench.training.logs)."""
    from adbench.training.logs import plot_training as plot

    return plot(folder, out, fmt)


def variance_command(args: argparse.Namespace) -> int:
    from adbench.training.variance import render_table, run_variance

    report = run_variance(
        args.model, args.task, model_args=registry.parse_assignments(args.model_args, "-M", args.model),
        task_args=registry.parse_assignments(args.task_args, "-T", args.task), data_root=args.data_root, n=args.n,
        limit=args.limit, seed=args.seed, variant=args.reward_variant, alpha=args.alpha,
        batch_size=args.batch_size)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(render_table(report), end="")
    return 0


def demo_adapter(folder: Path, data_root: Path, recipe: str, progress: bool) -> Path:
    """The recipe's adapter in `folder`: trained now unless a finished one is there."""
    from adbench.training.trainer import finished_adapter, train

    adapter = finished_adapter(folder)
    if adapter is not None:
        print(f"tiny AD-FM: using the trained adapter {adapter}", file=sys.stderr)
        return adapter
    t0 = time.perf_counter()
    result = train(recipe, folder, data_root=data_root, progress=progress)
    print(f"tiny AD-FM: trained recipe {recipe!r} in {time.perf_counter() - t0:.0f} s -> {result.adapter}",
          file=sys.stderr)
    return result.adapter
