"""Leaderboards in the paper's layouts: runs beside the published rows, with comparisons.

`build_table` lays runs out in one of `adbench.layouts`' layouts, optionally with the
published rows of the matching paper table (printed exactly as published and marked
as not run here), bootstrap confidence intervals for every run figure, and
difference columns against one row (`--compare`), with McNemar's test where both
rows are runs that scored the same samples. `render_table` prints markdown, csv or
latex.

Statistics, in short (the README has the long form):
- Intervals: 95% percentile bootstrap, seeded, resampling samples within each
  dataset, question type and class, so a mean-of-datasets figure keeps every dataset
  and the balanced Anomaly Detection accuracy keeps both classes.
- McNemar's test compares per-sample correctness on the samples behind a column, when
  both runs have exactly the same sample ids there; exact binomial below 25 discordant
  pairs, else chi-square with continuity correction. It tests plain paired accuracy,
  not the balanced figure itself.
- Both follow the table's metric (`metric`): "strict" (a failed or unparsable reply is
  wrong) or "mmad" (MMAD's rule: the samples it drops are left out of the resampled
  figures and of McNemar's pairs, so two runs whose dropped samples differ are not
  paired there).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adbench.errors import UserError
from adbench.layouts import AVERAGE, ColumnGroups, Layout, column_groups, get_layout, run_figures
from adbench.leaderboard import (
    FAILED_MARK,
    FORMATS,
    INCOMPLETE_MARK,
    ORACLE_NOTE,
    check_metric,
    load_results,
    mark_notes,
    metric_note,
    run_labels,
    run_status,
    run_variants,
)
from adbench.metrics import bootstrap_ci, mcnemar
from adbench.reference import MISSING, ReferenceTable, load_reference
from adbench.schema import Record
from adbench.scoring import record_correctness
from adbench.store import RunStore

RUN_GROUP = "Runs"
REFERENCES = ("paper",)


@dataclass
class RunVariant:
    run_dir: Path
    results: dict[str, Any]
    rule: str | None  # threshold rule of a score-based model's row, else None


@dataclass
class TableRow:
    label: str
    group: str
    descriptors: dict[str, str]
    figures: dict[str, float | None]  # column -> percent (published: parsed from the printed value)
    cells: dict[str, str]  # column -> printed text
    source: str
    keys: tuple[str, ...]  # names --compare accepts for this row
    published: bool = False
    run: RunVariant | None = None
    notes: list[str] = field(default_factory=list)
    mark: str = ""  # a run's FAILED_MARK / INCOMPLETE_MARK, printed after the label (not part of its keys)


@dataclass
class Table:
    layout: Layout
    rows: list[TableRow]
    extra_columns: list[str] = field(default_factory=list)  # the Δ columns of a comparison
    notes: list[str] = field(default_factory=list)
    reference: ReferenceTable | None = None
    metric: str = "strict"  # the run rows' metric: "strict" or "mmad"


class _Runs:
    """Records and per-sample correctness of the runs in a table, each run read once."""

    def __init__(self) -> None:
        self._records: dict[Path, list[Record]] = {}

    def _all(self, run_dir: Path) -> list[Record]:
        if run_dir not in self._records:
            self._records[run_dir] = RunStore(run_dir).load_records(repair=False)
        return self._records[run_dir]

    def correctness(self, v: RunVariant, layout: Layout,
                    metric: str = "strict") -> tuple[list[Record], np.ndarray, ColumnGroups]:
        """Evaluated records, their correctness under the row's rule and metric, and the layout's groups."""
        every = self._all(v.run_dir)  # score-based rules need the calibration records too
        recs = [r for r in every if r.role != "calibration"]
        by_id = record_correctness(v.results, every, v.rule, metric) if recs else {}
        verdicts = [by_id[r.id] for r in recs]
        correct = np.asarray([bool(x) for x in verdicts], dtype=bool)  # a dropped record is in no group
        return recs, correct, column_groups(layout, recs, verdicts if metric == "mmad" else None)


def _norm(s: str) -> str:
    for mark in ("†", "‡", FAILED_MARK, INCOMPLETE_MARK):
        s = s.replace(mark, "")
    return re.sub(r"\s+", " ", s).strip().casefold()


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


def _reference_rows(ref: ReferenceTable, layout: Layout) -> list[TableRow]:
    where = f"published (Table {ref.source['table']})" if isinstance(ref.source["table"], int) else "published (MMAD)"
    rows = []
    for r in ref.rows:
        keys = [r.model]
        scale = r.descriptors.get("Scale", MISSING)
        if scale != MISSING:
            keys += [f"{r.model} {scale}", f"{r.model} ({scale})"]
        if list(r.descriptors) != ["Scale"]:
            desc = " / ".join(r.descriptors.values())
            keys += [desc, f"{r.model} / {desc}"]
        rows.append(TableRow(
            label=r.label,
            group=r.group,
            descriptors=dict(r.descriptors),
            figures={c: r.figure(c) for c in layout.column_names},
            cells={c: r.values[c] for c in layout.column_names},
            source=where,
            keys=tuple(keys),
            published=True,
        ))
    return rows


def _run_rows(layout: Layout, loaded: list[tuple[Path, dict[str, Any]]], metric: str) -> list[TableRow]:
    rows = []
    for (d, res), base in zip(loaded, run_labels(loaded)):
        status = run_status(res)
        for i, (rule, suffix) in enumerate(run_variants(res)):
            fig = run_figures(layout, res, rule, metric)
            label = base + suffix
            figures = {c: _pct(v) for c, v in fig.values.items()}
            notes = list(fig.notes) + (status.notes() if i == 0 else [])  # one run's notes once
            rows.append(TableRow(
                label=label,
                group=RUN_GROUP,
                descriptors={k: "" for k in layout.descriptors},
                figures=figures,
                cells={c: "-" if v is None else f"{v:.2f}" for c, v in figures.items()},
                source=f"run {res.get('run_id', d.name)}",
                keys=(label,),
                run=RunVariant(d, res, rule),
                notes=notes,
                mark=status.mark,
            ))
    return rows


def build_table(
    layout_name: str,
    run_dirs: Sequence[Path] = (),
    *,
    reference: str | None = None,
    compare: str | None = None,
    ci: bool = False,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metric: str = "strict",
) -> Table:
    """Runs (and the published rows, with reference="paper") in one layout.

    metric: the run rows' figures, "strict" or "mmad" (MMAD's rule); intervals and
    McNemar's test follow it. Published rows are printed as published either way.
    """
    check_metric(metric)
    if reference is not None and reference not in REFERENCES:
        raise UserError(f"unknown reference {reference!r}: use one of {', '.join(REFERENCES)}")
    loaded = [(Path(d), load_results(Path(d))) for d in run_dirs]
    layout = get_layout(layout_name, [r for _, r in loaded])
    table = Table(layout, [], metric=metric)
    if reference is not None:
        if layout.reference is None:
            raise UserError(f"layout {layout.name!r} has no published reference table")
        table.reference = load_reference(layout.reference)
        table.rows += _reference_rows(table.reference, layout)
    table.rows += _run_rows(layout, loaded, metric)
    if not table.rows:
        raise UserError("nothing to show: give run directories, --reference paper, or both")
    runs = _Runs()
    if ci:
        _add_intervals(table, runs, n_resamples, confidence, seed)
    if compare is not None:
        _add_comparison(table, runs, compare)
    return table


def _add_intervals(table: Table, runs: _Runs, n_resamples: int, confidence: float, seed: int) -> None:
    cols = table.layout.column_names
    for row in table.rows:
        if row.run is None:
            continue
        recs, correct, groups = runs.correctness(row.run, table.layout, table.metric)
        if not recs:
            row.notes.append("no samples.jsonl records: no interval")
            continue
        point = groups.figures(correct)[0]
        lo, hi = bootstrap_ci(lambda idx, g=groups, c=correct: g.figures(c[idx]), len(recs), strata=groups.strata,
                              n_resamples=n_resamples, confidence=confidence, seed=seed)
        for k, c in enumerate(cols):
            if row.figures[c] is None or np.isnan(point[k]):
                continue
            if abs(100 * point[k] - row.figures[c]) > 1e-6:  # results.json and samples.jsonl disagree
                row.notes.append(f"{c}: results.json ({row.figures[c]:.2f}) differs from its samples "
                                 f"({100 * point[k]:.2f}); run `adbench score` on {row.run.run_dir}")
            row.cells[c] = f"{row.figures[c]:.2f} [{100 * lo[k]:.2f}, {100 * hi[k]:.2f}]"
    kept = "; the samples MMAD's rule drops are left out" if table.metric == "mmad" else ""
    table.notes.append(
        f"[lo, hi]: {100 * confidence:g}% percentile bootstrap interval ({n_resamples} resamples, seed {seed}; "
        f"samples resampled within each dataset, question type and class{kept}). Published rows have none."
    )


def find_row(rows: Sequence[TableRow], name: str) -> TableRow:
    """The one row `name` names (a run's label, a published model, `model scale`, ...)."""
    want = _norm(name)
    hits = [r for r in rows if want in {_norm(k) for k in r.keys}]
    if len(hits) == 1:
        return hits[0]
    choices = ", ".join(repr(r.keys[-1]) for r in (hits or rows))
    if hits:
        raise UserError(f"--compare {name!r} matches {len(hits)} rows; name one of: {choices}")
    raise UserError(f"--compare {name!r} matches no row; rows: {choices}")


def _paired_p(table: Table, runs: _Runs, a: RunVariant, b: RunVariant) -> tuple[dict[str, float | None], str]:
    """McNemar p-value per column (None where the samples are not the same), and a note."""
    recs_a, corr_a, groups_a = runs.correctness(a, table.layout, table.metric)
    recs_b, corr_b, groups_b = runs.correctness(b, table.layout, table.metric)
    out: dict[str, float | None] = {}
    unpaired = []
    for k, c in enumerate(table.layout.column_names):
        scope_a = groups_a.scope(None if c == AVERAGE else k)
        scope_b = groups_b.scope(None if c == AVERAGE else k)
        ids_a = {recs_a[i].id: i for i in scope_a}
        ids_b = {recs_b[i].id: i for i in scope_b}
        if not ids_a or set(ids_a) != set(ids_b):
            out[c] = None
            if ids_a or ids_b:
                unpaired.append(f"{c} ({len(ids_a)} vs {len(ids_b)} samples, {len(set(ids_a) & set(ids_b))} shared)")
            continue
        order = sorted(ids_a)
        res = mcnemar(corr_a[[ids_a[i] for i in order]], corr_b[[ids_b[i] for i in order]])
        out[c] = res.p_value
    note = f"not paired, no McNemar test: {'; '.join(unpaired)}" if unpaired else ""
    return out, note


def _add_comparison(table: Table, runs: _Runs, name: str) -> None:
    target = find_row(table.rows, name)
    cols = table.layout.column_names
    table.extra_columns = [f"Δ {c}" for c in cols]
    any_test = False
    for row in table.rows:
        if row is target:
            for c in cols:
                row.cells[f"Δ {c}"] = "ref"
            continue
        p: dict[str, float | None] = {}
        if row.run is not None and target.run is not None:
            p, note = _paired_p(table, runs, row.run, target.run)
            if note:
                row.notes.append(note)
        for c in cols:
            a, b = row.figures.get(c), target.figures.get(c)
            if a is None or b is None:
                row.cells[f"Δ {c}"] = "-"
                continue
            text = f"{a - b:+.2f}"
            if p.get(c) is not None:
                text += f" (p={p[c]:.3g})"
                any_test = True
            row.cells[f"Δ {c}"] = text
    name = target.keys[-1] if target.published else target.label  # the most specific name of the row
    table.notes.append(f"Δ: difference to {name} in percentage points (row minus {name}).")
    if any_test:
        which = ("MMAD's rule; samples it drops are not pairs" if table.metric == "mmad"
                 else "a failed or unparsable reply is wrong")
        table.notes.append(
            f"p: McNemar's test on per-sample correctness ({which}) where both runs scored the same samples "
            "(exact binomial below 25 discordant pairs, else chi-square with continuity correction); "
            "it compares plain paired accuracy, not the balanced figure."
        )
    elif target.published:
        table.notes.append("Published rows have no per-sample results here: differences only, no significance test.")


# -- rendering ---------------------------------------------------------------------------------


def _header(table: Table) -> list[str]:
    return ["Group", "Model", *table.layout.descriptors, *table.layout.column_names, *table.extra_columns, "Source"]


def _body(table: Table, repeat_group: bool) -> list[list[str]]:
    body = []
    last = None
    for r in table.rows:
        group = r.group if (repeat_group or r.group != last) else ""
        last = r.group
        body.append([group, r.label + r.mark, *(r.descriptors.get(d, "") for d in table.layout.descriptors),
                     *(r.cells.get(c, "-") for c in table.layout.column_names),
                     *(r.cells.get(c, "-") for c in table.extra_columns), r.source])
    return body


def table_notes(table: Table) -> list[str]:
    notes = [metric_note(table.metric)]
    ref = table.reference
    if ref is not None:
        notes.append(f"Published rows: {ref.citation}; printed exactly as published, not run here.")
        notes.extend(f"{m} {text}" for m, text in ref.marks.items())
        notes.extend(f"{k}: {v}" for k, v in ref.references.items())
        if ref.note:
            notes.append(ref.note)
    if any(r.run is not None and r.run.rule == "youden" for r in table.rows):
        notes.append(ORACLE_NOTE)
    notes.extend(mark_notes([r.mark for r in table.rows]))
    notes.extend(table.notes)
    notes.extend(f"{r.label}: {n}" for r in table.rows for n in r.notes)
    return notes


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "†": r"$^\dagger$", "‡": r"$^\ddagger$", FAILED_MARK: r"\S{}", INCOMPLETE_MARK: r"\P{}",
                  "τ": r"$\tau$", "Δ": r"$\Delta$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render_table(table: Table, fmt: str = "markdown") -> str:
    """The table as markdown, csv or latex. The metric of the run rows is the first note
    (markdown; latex: a `%` comment); csv has no notes, so a last `Metric` column says it
    per row ("published" for published rows)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    header = _header(table)
    notes = table_notes(table)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*header, "Metric"])
        for row, cells in zip(table.rows, _body(table, repeat_group=True)):
            w.writerow([*cells, "published" if row.published else table.metric])
        return buf.getvalue()
    body = _body(table, repeat_group=False)
    n_text = 2 + len(table.layout.descriptors)
    if fmt == "markdown":
        from tabulate import tabulate

        text = tabulate(body, headers=header, tablefmt="pipe", disable_numparse=True,
                        colalign=("left",) * n_text + ("right",) * (len(header) - n_text - 1) + ("left",))
        return text + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
    # latex: booktabs, a rule between groups as in the paper, notes as comments
    lines = [r"\begin{tabular}{" + "l" * n_text + "r" * (len(header) - n_text - 1) + "l}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    for i, (row, cells) in enumerate(zip(table.rows, body)):
        if i and row.group != table.rows[i - 1].group:
            lines.append(r"\midrule")
        lines.append(" & ".join(latex_escape(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {n}" for n in notes]
    return "\n".join(lines) + "\n"
