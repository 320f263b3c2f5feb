"""Tables: runs (and published rows) in a layout, with bootstrap intervals and comparisons.

`build_table` lays runs out in one of `adbench.results.layouts`' layouts (the plain
leaderboard is the `datasets` layout), optionally with the published rows of the
matching paper table (printed exactly as published and marked as not run here),
bootstrap confidence intervals for every run figure, and difference columns against
one row (`--compare`), with McNemar's test where both rows are runs that scored the
same samples. `adbench.results.writer` prints it.

Every run figure is an engine node evaluated on the run's cells; intervals evaluate the
same nodes on resampled per-sample verdicts, so the point and its resamples are one
function of one set of verdicts.
- Intervals: 95% percentile bootstrap, seeded, resampling samples within each
  dataset, question type and class (and category in the `categories` layout), so a
  mean-of-datasets figure keeps every dataset and the balanced Anomaly Detection
  accuracy keeps both classes.
- McNemar's test compares per-sample correctness on the samples behind a column, when
  both runs have exactly the same sample ids there; exact binomial below 25 discordant
  pairs, else chi-square with continuity correction. It tests plain paired accuracy,
  not the balanced figure itself.
- Both follow the table's metric: "strict" (a failed or unparsable reply is wrong) or
  "mmad" (MMAD's rule: the samples it drops are left out of the resampled figures and
  of McNemar's pairs, so two runs whose dropped samples differ are not paired there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adbench.errors import UserError
from adbench.metrics import bootstrap_ci, mcnemar
from adbench.results.box_quality import FIGURES as BOX_FIGURES
from adbench.results.box_quality import IOU_THRESHOLD
from adbench.results.engine import Node, Plan, check_metric, evaluate
from adbench.results.layouts import (
    BOX_COLUMNS,
    BOXES,
    Layout,
    column_nodes,
    figure_values,
    get_layout,
    layout_notes,
)
from adbench.results.reference import MISSING, ReferenceTable, load_reference
from adbench.results.runs import Run, Samples, load_results, run_labels, run_name, run_variants
from adbench.results.scoring import require_mmad_figures
from adbench.results.status import FAILED_MARK, INCOMPLETE_MARK, run_status

RUN_GROUP = "Runs"
REFERENCES = ("paper",)


@dataclass
class RunVariant:
    """One row's run: a text model's answers, or one threshold rule of a score-based model."""

    run: Run
    rule: str | None  # threshold rule of a score-based model's row, else None

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    @property
    def results(self) -> dict[str, Any]:
        return self.run.results

    def nodes(self, layout: Layout, plan: Plan) -> list[Node]:
        return column_nodes(layout, plan, self.run.datasets, self.run.score_based)


@dataclass
class TableRow:
    label: str
    group: str
    descriptors: dict[str, str]
    figures: dict[str, float | None]  # column -> percent (published: parsed from the printed value)
    cells: dict[str, str]  # column -> printed text
    source: str
    keys: tuple[str, ...]  # names --compare accepts for this row, the most specific last
    published: bool = False
    run: RunVariant | None = None
    notes: list[str] = field(default_factory=list)
    mark: str = ""  # a run's FAILED_MARK / INCOMPLETE_MARK, printed after the label (not part of its keys)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # --ci: column -> (lo, hi), percent


@dataclass
class Table:
    layout: Layout
    rows: list[TableRow]
    extra_columns: list[str] = field(default_factory=list)  # the Δ columns of a comparison
    notes: list[str] = field(default_factory=list)
    reference: ReferenceTable | None = None
    metric: str = "strict"  # the run rows' metric: "strict" or "mmad"


def _norm(s: str) -> str:
    for mark in ("†", "‡", FAILED_MARK, INCOMPLETE_MARK):
        s = s.replace(mark, "")
    return re.sub(r"\s+", " ", s).strip().casefold()


def percent_cells(values: Sequence[float | None], names: Sequence[str]) -> tuple[dict[str, float | None], dict[str, str]]:
    """Figures in [0, 1] -> (percent per column, printed text per column)."""
    figures = {c: None if v is None else 100 * v for c, v in zip(names, values)}
    return figures, {c: "-" if v is None else f"{v:.2f}" for c, v in figures.items()}


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


def _run_rows(layout: Layout, runs: list[Run], metric: str) -> list[TableRow]:
    rows = []
    for run, base in zip(runs, run_labels([(r.run_dir, r.results) for r in runs])):
        res = run.results
        status = run_status(res)
        for i, (rule, suffix) in enumerate(run_variants(res)):
            variant = RunVariant(run, rule)
            cells = run.cells(rule)
            plan = Plan(cells, metric)
            values = figure_values(evaluate(variant.nodes(layout, plan), cells.batch())[0])
            label = base + suffix
            figures, texts = percent_cells(values, layout.column_names)
            notes = layout_notes(layout, values, run.datasets, plan) + (status.notes() if i == 0 else [])
            rows.append(TableRow(
                label=label,
                group=RUN_GROUP,
                descriptors={k: "" for k in layout.descriptors},
                figures=figures,
                cells=texts,
                source=f"run {res.get('run_id', run.run_dir.name)}",
                # its name and model name (with and without the rule's suffix) too: a name several
                # rows share is then ambiguous and listed, not "no row"
                keys=(*(k for k in dict.fromkeys((run_name(res), res["model"], run_name(res) + suffix,
                                                  res["model"] + suffix)) if k != label), label),
                run=variant,
                notes=notes,  # one run's notes once
                mark=status.mark,
            ))
    return rows


#: Box figures printed as percentages (shares); the IoU figures are printed as they are.
_BOX_SHARES = ("recall", "precision", "normal_no_box")


def _box_cells(entry: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, str]]:
    figures: dict[str, float | None] = {}
    texts: dict[str, str] = {}
    for key in BOX_FIGURES:
        col, v = BOX_COLUMNS[key], entry.get(key)
        if v is None:
            figures[col], texts[col] = None, "-"
        elif key in _BOX_SHARES:
            figures[col], texts[col] = 100 * v, f"{100 * v:.2f}"
        else:
            figures[col], texts[col] = v, f"{v:.3f}"
    return figures, texts


def _box_counts_note(boxes: dict[str, Any]) -> str:
    per = boxes["datasets"].values()
    total = {k: sum(int(e.get(k, 0)) for e in per) for k in
             ("n_anomalous", "n_gt_boxes", "n_pred_boxes", "n_normal", "n_anomalous_without_gt", "n_failed")}
    note = (f"{total['n_anomalous']} anomalous replies with {total['n_gt_boxes']} GT boxes and "
            f"{total['n_pred_boxes']} predicted boxes; {total['n_normal']} normal replies")
    if total["n_anomalous_without_gt"]:
        note += f"; {total['n_anomalous_without_gt']} anomalous replies without GT boxes (not judged)"
    if total["n_failed"]:
        note += f"; {total['n_failed']} failed requests (no reply, not judged)"
    return note


def _box_rows(runs: list[Run]) -> list[TableRow]:
    """The `boxes` layout: per run, a row per dataset and the average, from results.json's `boxes`."""
    rows = []
    for run, label in zip(runs, run_labels([(r.run_dir, r.results) for r in runs])):
        res = run.results
        status = run_status(res)
        source = f"run {res.get('run_id', run.run_dir.name)}"
        boxes = res.get("boxes")
        if boxes is None:
            figures, texts = _box_cells({})
            rows.append(TableRow(label, RUN_GROUP, {"Dataset": "-"}, figures, texts, source, (label,),
                                 run=RunVariant(run, None), mark=status.mark,
                                 notes=["the model wrote no box in this run: no box figures", *status.notes()]))
            continue
        try:
            entries = [*sorted(boxes["datasets"].items()), ("average", boxes["average"])]
        except (KeyError, AttributeError, TypeError):
            raise UserError(f"{run.run_dir / 'results.json'}: 'boxes' is not adbench's box figures; "
                            f"run `adbench score {run.run_dir}` to rebuild it") from None
        for i, (ds, entry) in enumerate(entries):
            figures, texts = _box_cells(entry)
            notes = [_box_counts_note(boxes), *status.notes()] if i == 0 else []
            rows.append(TableRow(label, RUN_GROUP, {"Dataset": ds}, figures, texts, source, (label,),
                                 run=RunVariant(run, None), notes=notes, mark=status.mark))
    return rows


BOX_NOTE = ("Box quality over replies (one per image on yes/no tasks), boxes in original-image pixels: "
            "Recall / Precision: GT boxes found / predicted boxes that found one, at IoU >= {t:g} "
            "(one-to-one); best IoU: per GT box the best IoU of the reply's boxes (0 without any), averaged "
            "over GT boxes; GIoU: the mean GIoU of the Hungarian matching on 1 - GIoU (the paper's r_loc "
            "term; 0 without a box), averaged over anomalous replies; normal: no box: share of normal "
            "replies without a box. average: the mean over datasets.")


def build_table(layout_name: str, run_dirs: Sequence[Path] = (), **options: Any) -> Table:
    """Runs read from their directories (and the published rows, with reference="paper") in one layout;
    `options` are `table_of_runs`'."""
    runs = [Run(Path(d), load_results(Path(d))) for d in run_dirs]
    return table_of_runs(layout_name, runs, **options)


def table_of_runs(
    layout_name: str,
    runs: Sequence[Run],
    *,
    reference: str | None = None,
    compare: str | None = None,
    ci: bool = False,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metric: str = "strict",
) -> Table:
    """Runs already loaded (a report or a plot that has judged its run's records; `build_table` reads them)
    in one layout, with the published rows when reference="paper".

    metric: the run rows' figures, "strict" or "mmad" (MMAD's rule); intervals and
    McNemar's test follow it. Published rows are printed as published either way.
    """
    check_metric(metric)
    if reference is not None and reference not in REFERENCES:
        raise UserError(f"unknown reference {reference!r}: use one of {', '.join(REFERENCES)}")
    if layout_name == BOXES.name:
        if ci or compare is not None or metric != "strict" or reference is not None:
            raise UserError("--layout boxes takes no --ci, --compare, --metric or --reference: box figures are not "
                            "accuracies (and the paper has none)")
        if not runs:
            raise UserError("--layout boxes needs RUN_DIRs")
        return Table(BOXES, _box_rows(runs), notes=[BOX_NOTE.format(t=IOU_THRESHOLD)])
    if metric == "mmad":
        for run in runs:
            require_mmad_figures(run.results)
    layout = get_layout(layout_name, [r.results for r in runs], metric)
    table = Table(layout, [], metric=metric)
    if reference is not None:
        if layout.reference is None:
            raise UserError(f"layout {layout.name!r} has no published reference table")
        table.reference = load_reference(layout.reference)
        table.rows += _reference_rows(table.reference, layout)
    table.rows += _run_rows(layout, runs, metric)
    if not table.rows:
        raise UserError("nothing to show: give run directories, --reference paper, or both")
    if ci:
        _add_intervals(table, n_resamples, confidence, seed)
    if compare is not None:
        _add_comparison(table, compare)
    return table


def _sample_nodes(table: Table, v: RunVariant) -> tuple[Samples, list[Node]]:
    samples = v.run.samples(v.rule)
    return samples, v.nodes(table.layout, Plan(samples.cells, table.metric))


def _add_intervals(table: Table, n_resamples: int, confidence: float, seed: int) -> None:
    cols = table.layout.column_names
    for row in table.rows:
        if row.run is None:
            continue
        samples, nodes = _sample_nodes(table, row.run)
        if not samples.records:
            row.notes.append("no samples.jsonl records: no interval")
            continue
        point = figure_values(evaluate(nodes, samples.cells.batch())[0])
        lo, hi = bootstrap_ci(lambda idx, s=samples, n=nodes: evaluate(n, s.tally(idx)), len(samples.records),
                              strata=samples.strata(table.metric, by_category=table.layout.name == "categories"),
                              n_resamples=n_resamples, confidence=confidence, seed=seed)
        stale = row.run.run.stale()
        if stale:
            row.notes.append(stale)
        row.figures, row.cells = percent_cells(point, cols)  # the resampled statistic's own value
        for k, c in enumerate(cols):
            if row.figures[c] is not None:
                row.intervals[c] = (100 * float(lo[k]), 100 * float(hi[k]))
                row.cells[c] += f" [{100 * lo[k]:.2f}, {100 * hi[k]:.2f}]"
    kept = "; the samples MMAD's rule drops are left out" if table.metric == "mmad" else ""
    strata = "dataset, category, question type and class" if table.layout.name == "categories" else \
        "dataset, question type and class"
    table.notes.append(
        f"[lo, hi]: {100 * confidence:g}% percentile bootstrap interval ({n_resamples} resamples, seed {seed}; "
        f"samples resampled within each {strata}{kept}). Published rows have none."
    )


def find_row(rows: Sequence[TableRow], name: str) -> TableRow:
    """The one row `name` names: a row's label as the table prints it, else any of its keys (a run's
    name or model, a published model, `model scale`, ...); a name several rows answer to is ambiguous."""
    want = _norm(name)
    hits = [r for r in rows if _norm(r.label) == want] or [r for r in rows if want in {_norm(k) for k in r.keys}]
    if len(hits) == 1:
        return hits[0]
    choices = ", ".join(repr(r.keys[-1]) for r in (hits or rows))
    if hits:
        raise UserError(f"--compare {name!r} is ambiguous: it matches {len(hits)} rows; name one of: {choices}")
    raise UserError(f"--compare {name!r} matches no row; rows: {choices}")


def _paired_p(table: Table, a: RunVariant, b: RunVariant) -> tuple[dict[str, float | None], str]:
    """McNemar p-value per column (None where the samples are not the same), and a note."""
    sa, nodes_a = _sample_nodes(table, a)
    sb, nodes_b = _sample_nodes(table, b)
    corr_a, corr_b = sa.correct(table.metric), sb.correct(table.metric)
    out: dict[str, float | None] = {}
    unpaired = []
    for k, c in enumerate(table.layout.column_names):
        ids_a = {sa.records[i].id: i for i in sa.scope(nodes_a[k].cells(), table.metric)}
        ids_b = {sb.records[i].id: i for i in sb.scope(nodes_b[k].cells(), table.metric)}
        if not ids_a or set(ids_a) != set(ids_b):
            out[c] = None
            if ids_a or ids_b:
                unpaired.append(f"{c} ({len(ids_a)} vs {len(ids_b)} samples, {len(set(ids_a) & set(ids_b))} shared)")
            continue
        order = sorted(ids_a)
        out[c] = mcnemar(corr_a[[ids_a[i] for i in order]], corr_b[[ids_b[i] for i in order]]).p_value
    note = f"not paired, no McNemar test: {'; '.join(unpaired)}" if unpaired else ""
    return out, note


def _add_comparison(table: Table, name: str) -> None:
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
            p, note = _paired_p(table, row.run, target.run)
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
            "it compares plain paired accuracy, not the balanced figure itself."
        )
    elif target.published:
        table.notes.append("Published rows have no per-sample results here: differences only, no significance test.")
