"""The one table writer: markdown, csv and latex (tabulate), with the same notes.

The notes (which metric, the published tables' marks, the oracle `*`, the `§` / `¶`
legend, intervals, comparisons, and each row's own) are built once by `table_notes` and
printed by markdown as lines under the table and by latex as `%` comments. csv has no
notes: its rows keep their marks in the label, and a last `Metric` column says the
metric per row ("published" for published rows).

`compact` is the plain leaderboard's shape (`adbench leaderboard RUN_DIR...`): Model
and the figures, without the Group and Source columns of the paper's layouts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from adbench.errors import UserError
from adbench.results.engine import check_metric
from adbench.results.status import FAILED_MARK, INCOMPLETE_MARK, mark_notes
from adbench.results.tables import Table

FORMATS = ("markdown", "csv", "latex")
ORACLE_NOTE = "* threshold chosen by Youden's J on the evaluated set itself (an oracle, not deployable)."
METRIC_NOTES = {
    "strict": "Metric: strict (failed or unparsable replies count as wrong).",
    "mmad": "Metric: MMAD's rule (answer = last standalone A-E in the reply, else difflib's closest option; "
            "only records without an A-E answer, i.e. failed requests, are dropped; an absent class or "
            "an all-dropped question type counts 0).",
}


def format_percent(v: float | None) -> str:
    """A figure in [0, 1] as printed everywhere (tables, summaries, the report): percent, two decimals."""
    return "-" if v is None else f"{100 * v:.2f}"


def metric_note(metric: str) -> str:
    """The line that says which metric a table shows."""
    check_metric(metric)
    return METRIC_NOTES[metric]


def table_notes(table: Table) -> list[str]:
    notes = [metric_note(table.metric)] if table.layout.accuracy else []  # box figures have no metric
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


def _header(table: Table, compact: bool) -> tuple[list[str], int]:
    """Header cells and how many of them (from the left) are text columns."""
    lay = table.layout
    if compact:
        return ["Model", *lay.column_names, *table.extra_columns], 1
    return ["Group", "Model", *lay.descriptors, *lay.column_names, *table.extra_columns, "Source"], 2 + len(lay.descriptors)


def _body(table: Table, compact: bool, repeat_group: bool) -> list[list[str]]:
    cols = [*table.layout.column_names, *table.extra_columns]
    body = []
    last = None
    for r in table.rows:
        figures = [r.cells.get(c, "-") for c in cols]
        if compact:
            body.append([r.label + r.mark, *figures])
            continue
        group = r.group if (repeat_group or r.group != last) else ""
        last = r.group
        body.append([group, r.label + r.mark, *(r.descriptors.get(d, "") for d in table.layout.descriptors),
                     *figures, r.source])
    return body


def _latex_format():  # noqa: ANN202 - tabulate's TableFormat
    """tabulate's booktabs layout without its escaping: cells arrive escaped by `latex_escape`.

    The cell padding is in the row's separators, not tabulate's `padding`: tabulate 0.9
    looks for SEPARATING_LINE (the rule between groups) in the padded cell, so with
    padding it printed an empty row instead of the rule.
    """
    from tabulate import DataRow, Line, TableFormat

    def begin(widths: Sequence[int], aligns: Sequence[str]) -> str:
        spec = "".join("r" if a == "right" else "l" for a in aligns)
        return "\\begin{tabular}{" + spec + "}\n\\toprule"

    row = DataRow(" ", " & ", " \\\\")
    return TableFormat(lineabove=begin, linebelowheader=Line("\\midrule", "", "", ""), linebetweenrows=None,
                       linebelow=Line("\\bottomrule\n\\end{tabular}", "", "", ""), headerrow=row, datarow=row,
                       padding=0, with_header_hide=None)


def render_table(table: Table, fmt: str = "markdown", *, compact: bool = False) -> str:
    """The table as markdown, csv or latex; the notes as lines (markdown) or `%` comments (latex)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    header, n_text = _header(table, compact)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*header, "Metric"])
        for row, cells in zip(table.rows, _body(table, compact, repeat_group=True)):
            w.writerow([*cells, "published" if row.published else table.metric if table.layout.accuracy else "boxes"])
        return buf.getvalue()
    from tabulate import SEPARATING_LINE, tabulate

    notes = table_notes(table)
    body = _body(table, compact, repeat_group=False)
    align = ("left",) * n_text + ("right",) * (len(header) - n_text - (0 if compact else 1)) + (() if compact else ("left",))
    if fmt == "markdown":
        text = tabulate(body, headers=header, tablefmt="pipe", disable_numparse=True, colalign=align)
        return text + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
    rows: list = []
    for i, (row, cells) in enumerate(zip(table.rows, body)):
        if i and row.group != table.rows[i - 1].group:  # a rule between groups, as in the paper
            rows.append(SEPARATING_LINE)
        rows.append([latex_escape(c) for c in cells])
    text = tabulate(rows, headers=[latex_escape(h) for h in header], tablefmt=_latex_format(), disable_numparse=True,
                    colalign=align)
    return text + "\n" + "".join(f"% {n}\n" for n in notes)
