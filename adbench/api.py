"""The Python API, for notebooks and scripts: the runs and tables of the command line, as values.

    import adbench

    out = adbench.evaluate(model="chance", task="demo-binary", limit=24)   # a registered name
    out = adbench.evaluate(model=MyModel(), task="demo-binary")            # or an object with predict()
    out.results["metrics"]["average"]["accuracy"], out.run_dir, out.exit_code
    board = adbench.leaderboard([out, "runs/demo-binary/patchcore/1a2b3c4d5e6f"])
    board.rows, board.text

`evaluate` is `adbench run` for one model and one task: the same run directory (the same
command, or call, again resumes it and records every sample exactly once), the same
options under RunSpec's names (`limit`, `out`, `seed`, `batch_size`, `data_root`,
`run_id`, `label`, `max_cost`, `max_failed`, `retry_failed`, `progress`), and `model_args`
/ `task_args` dicts for -M / -T, typed by the same rules. A model object has no -M
arguments: its run id is a hash of its name (`name`, else its class name), its `config()`
and the task's arguments, data root, limit and seed; a model whose answers change while
`config()` stays the same (new weights under the same settings) needs another `run_id=`.

`leaderboard` is `adbench leaderboard`: the table the results engine builds
(`adbench.results.tables.build_table`), as rows of numbers and as text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adbench import registry
from adbench.args import convert
from adbench.errors import UserError
from adbench.runconfig import read_options
from adbench.runner import RunOutcome, RunSpec, run


def evaluate(model: str | Any, task: str, **options: Any) -> RunOutcome:
    """Run `model` (a registered name or an adapter object with `predict`) on the task `task`.

    Returns the RunOutcome: `results` (results.json), `run_dir`, `exit_code` (0 done; 1
    too many failures or a model that failed from the start; 3 stopped by `max_cost`),
    `stopped`. A user's mistake raises `adbench.errors.UserError` naming the option.
    """
    if not isinstance(task, str):
        raise UserError(f"evaluate(task=): a registered task name, got {task!r}")
    if task in registry.groups():
        members = ", ".join(registry.groups()[task].members)
        raise UserError(f"evaluate(task={task!r}): {task} is a task group ({members}); evaluate one task per call")
    model_args = dict(options.pop("model_args", None) or {})
    task_args = dict(options.pop("task_args", None) or {})
    label = convert(options.pop("label", None), str | None, "evaluate(label=)")
    opts = read_options(options, lambda key: f"evaluate({key}=)", "evaluate()", ("model_args", "task_args", "label"))
    task_args = registry.convert_arguments("tasks", task, task_args, lambda key: f"task_args[{key!r}]")
    if isinstance(model, str):
        model_args = registry.convert_arguments("models", model, model_args, lambda key: f"model_args[{key!r}]")
        return run(RunSpec(model=model, task=task, model_args=model_args, task_args=task_args, label=label, **opts))
    # the runner refuses model_args with a model object (one place for that rule)
    return run(RunSpec(model="", task=task, model_args=model_args, task_args=task_args, label=label, **opts),
               model=model)


@dataclass
class Leaderboard:
    """A table of runs: `rows` (one dict per row: label, mark, group, source and each column's figure in
    percent, None where there is none), `columns`, `text` (rendered as `format`), and the engine's `table`."""

    table: Any  # adbench.results.tables.Table
    text: str
    format: str

    @property
    def columns(self) -> list[str]:
        return list(self.table.layout.column_names)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [{"label": r.label, "mark": r.mark, "group": r.group, "source": r.source,
                 **{c: r.figures.get(c) for c in self.columns}} for r in self.table.rows]

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str | None:  # Jupyter shows a markdown table as a table
        return self.text if self.format == "markdown" else None


def leaderboard(runs: Iterable[str | Path | RunOutcome] = (), layout: str | None = None, *,
                reference: str | None = None, compare: str | None = None, ci: bool = False,
                metric: str = "strict", format: str = "markdown", resamples: int = 1000,
                confidence: float = 0.95, seed: int = 0) -> Leaderboard:
    """The table `adbench leaderboard` prints: runs (directories or RunOutcomes) in a layout (default: the
    plain leaderboard, models x datasets), with `reference="paper"`, `compare=`, `ci=` and `metric=` as there."""
    from adbench.results.tables import build_table
    from adbench.results.writer import render_table

    run_dirs = [r.run_dir if isinstance(r, RunOutcome) else Path(r) for r in runs]
    # the plain leaderboard is the `datasets` layout, printed without the Group and Source columns
    plain = layout is None and reference is None and compare is None and not ci
    if plain and not run_dirs:
        raise UserError("give at least one RUN_DIR (or --layout ... --reference paper)")
    if reference and layout is None:
        raise UserError("--reference needs --layout table1|table2|table3|table4|mmad")
    table = build_table(layout or "datasets", run_dirs, reference=reference, compare=compare, ci=ci,
                        n_resamples=resamples, confidence=confidence, seed=seed, metric=metric)
    return Leaderboard(table, render_table(table, format, compact=plain), format)
