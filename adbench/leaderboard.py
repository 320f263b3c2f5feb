"""Runs -> leaderboard tables (rows: models; columns: datasets and the average).

Score-based models give one row per threshold rule: `name*` for the Youden's-J
threshold (an oracle: chosen on the evaluated set's labels), `name (0.5)` for the
fixed threshold and `name (calib.)` for the threshold calibrated on normal images.

Every table shows one metric (`--metric`), and says which: `strict` (results.json's
`accuracy`, the headline) or `mmad` (MMAD's own rule, `accuracy_mmad`; see
`adbench.scoring`). Markdown and latex tables carry it as a note, csv as a `Metric` column.

A run with failed samples is marked `§`, an incomplete run `¶` (after the label, in
every format and layout), with a note saying how many (`run_status`); the marks differ
from the published tables' `†`/`‡` and from `*` (an oracle threshold).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adbench.errors import UserError
from adbench.scoring import METRICS, require_mmad_figures
from adbench.store import RunStore, StoreError

FORMATS = ("markdown", "csv", "latex")
AVERAGE = "Avg."
ORACLE_NOTE = "* threshold chosen by Youden's J on the evaluated set itself (an oracle, not deployable)."
METRIC_NOTES = {
    "strict": "Metric: strict (failed or unparsable replies count as wrong).",
    "mmad": "Metric: MMAD's rule (answer = last standalone A-E in the reply, else difflib's closest option; "
            "only records without an A-E answer, i.e. failed requests, are dropped; an absent class or "
            "an all-dropped question type counts 0).",
}


FAILED_MARK = "§"
INCOMPLETE_MARK = "¶"
MARK_NOTES = {
    FAILED_MARK: f"{FAILED_MARK} some samples failed (a failed request or an unreadable image): they count as "
                 "wrong under the strict metric and are dropped under MMAD's rule.",
    INCOMPLETE_MARK: f"{INCOMPLETE_MARK} incomplete run: not every sample of the task was recorded "
                     "(stopped early or interrupted; the same `adbench run` command continues it).",
}


@dataclass
class RunStatus:
    """What a table must say about a run besides its figures: failed samples, an incomplete run."""

    failed: str | None = None  # "3 of 48 samples failed (most often: ...)"
    incomplete: str | None = None  # "incomplete: 20 of 48 samples recorded (stopped: ...)"

    @property
    def mark(self) -> str:
        return (FAILED_MARK if self.failed else "") + (INCOMPLETE_MARK if self.incomplete else "")

    def lines(self) -> list[str]:
        return [x for x in (self.failed, self.incomplete) if x]

    def notes(self) -> list[str]:
        """The per-row notes of a table, each led by its mark."""
        return [f"{m} {x}" for m, x in ((FAILED_MARK, self.failed), (INCOMPLETE_MARK, self.incomplete)) if x]


def run_status(results: dict[str, Any]) -> RunStatus:
    """Failed samples and completeness of a run, from its results.json (the one wording for tables and summaries)."""
    c = results.get("counts") or {}
    n = c.get("n", 0)
    status = RunStatus()
    if c.get("n_failed"):
        status.failed = f"{c['n_failed']} of {n} samples failed"
        top = results.get("failures") or []
        if top and isinstance(top[0], dict) and top[0].get("error"):
            status.failed += f" (most often, {top[0].get('n')}x: {_shorten(str(top[0]['error']))})"
    if not results.get("complete", True):
        expected = c.get("n_expected")
        status.incomplete = (f"incomplete: {n} of {expected} samples recorded" if expected is not None
                             else "incomplete run")
        if results.get("stopped"):
            status.incomplete += f" (stopped: {results['stopped']})"
    return status


def _shorten(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def mark_notes(marks: Sequence[str]) -> list[str]:
    """The legend lines of the marks that appear in a table."""
    return [note for m, note in MARK_NOTES.items() if any(m in x for x in marks)]


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")


def metric_note(metric: str) -> str:
    """The line that says which metric a table shows."""
    check_metric(metric)
    return METRIC_NOTES[metric]


@dataclass
class Row:
    label: str
    values: dict[str, float | None]  # column -> accuracy in [0, 1]
    run_dir: str = ""
    notes: list[str] = field(default_factory=list)
    mark: str = ""  # FAILED_MARK / INCOMPLETE_MARK, printed after the label

    @property
    def shown(self) -> str:
        return self.label + self.mark


def load_results(run_dir: Path) -> dict[str, Any]:
    store = RunStore(run_dir)
    if not store.results_path.exists():
        raise StoreError(f"{run_dir}: no results.json (run `adbench score {run_dir}` first)")
    return store.read_results()


def run_variants(results: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(threshold rule, label suffix) for each row a run gives: one row (None, "") for a
    generative model; for a score-based one `*` (youden, an oracle), ` (t)` (fixed, shown
    for probability scores or when it is the headline rule) and ` (calib.)`."""
    if "rules" not in results:
        return [(None, "")]
    rules = results["rules"]
    show_fixed = results.get("score_is_probability") or results.get("threshold_rule") == "fixed"
    out: list[tuple[str | None, str]] = []
    for rule, suffix in (("youden", "*"), ("fixed", None), ("calibrated", " (calib.)")):
        if rule not in rules or (rule == "fixed" and not show_fixed):
            continue
        if suffix is None:
            t = rules[rule]["thresholds"].get("all", 0.5)
            suffix = f" ({t:g})"
        out.append((rule, suffix))
    return out


def rows_from_results(results: dict[str, Any], label: str | None = None, run_dir: str = "",
                      metric: str = "strict") -> list[Row]:
    """A run's rows: its per-dataset figures under `metric` ("strict" or "mmad")."""
    check_metric(metric)
    if metric == "mmad":
        require_mmad_figures(results)
    key = "accuracy" if metric == "strict" else "accuracy_mmad"
    name = label or results["model"]
    metrics = results["metrics"]
    datasets = [k for k in metrics if k != "average"]

    def values(acc: dict[str, float | None]) -> dict[str, float | None]:
        return {**{d: acc.get(d) for d in datasets}, AVERAGE: acc.get("average")}

    status = run_status(results)
    if "rules" not in results:
        return [Row(name, values({k: v[key] for k, v in metrics.items()}), run_dir, status.notes(), status.mark)]
    # one run, several rows (threshold rules): each carries the mark, the first one the notes
    return [Row(name + suffix, values(results["rules"][rule][key]), run_dir, status.notes() if i == 0 else [],
                status.mark) for i, (rule, suffix) in enumerate(run_variants(results))]


def run_labels(loaded: Sequence[tuple[Path, dict[str, Any]]]) -> list[str]:
    """A label per run: the model name, with the task or run id where names would collide."""
    tasks = {r["task"] for _, r in loaded}
    names = [r["model"] for _, r in loaded]
    labels = []
    for d, res in loaded:
        label = res["model"]
        if len(tasks) > 1:
            label = f"{label} [{res['task']}]"
        if names.count(res["model"]) > 1:
            label = f"{label} [{res.get('run_id', d.name)}]"
        labels.append(label)
    return labels


def collect_rows(run_dirs: Sequence[Path], metric: str = "strict") -> list[Row]:
    loaded = [(Path(d), load_results(Path(d))) for d in run_dirs]
    rows: list[Row] = []
    for (d, res), label in zip(loaded, run_labels(loaded)):
        rows.extend(rows_from_results(res, label, str(d), metric))
    return rows


def columns_of(rows: Sequence[Row]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for c in r.values:
            if c != AVERAGE and c not in cols:
                cols.append(c)
    return sorted(cols) + [AVERAGE]


def format_value(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def render(rows: Sequence[Row], fmt: str = "markdown", columns: Sequence[str] | None = None,
           first_header: str = "Model", metric: str = "strict") -> str:
    """Render rows as a markdown, csv or latex table (accuracies in %) of figures under `metric`.

    The metric is stated in a note (markdown; latex: a `%` comment) or, in csv, a last
    `Metric` column.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    note = metric_note(metric)
    cols = list(columns or columns_of(rows))
    header = [first_header, *cols]
    body = [[r.shown, *(format_value(r.values.get(c)) for c in cols)] for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*header, "Metric"])
        w.writerows([*b, metric] for b in body)
        return buf.getvalue()
    from tabulate import tabulate

    table = tabulate(body, headers=header, tablefmt="pipe" if fmt == "markdown" else "latex_booktabs",
                     disable_numparse=True, colalign=("left",) + ("right",) * len(cols))
    notes = [note]
    if any(r.label.endswith("*") or "* [" in r.label for r in rows):
        notes.append(ORACLE_NOTE)
    notes.extend(mark_notes([r.mark for r in rows]))
    for r in rows:
        notes.extend(f"{r.label}: {n}" for n in r.notes)
    if fmt == "markdown":
        return table + "\n\n" + "\n".join(notes) + "\n"
    return table + "\n" + "".join(f"% {n}\n" for n in notes)
