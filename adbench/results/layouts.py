"""The tables' layouts, as data: which columns, and which engine figure fills each.

A layout is a list of value columns plus an average. A column takes some of a run's
datasets (by name, or all) and some question types (or none: the dataset's own figure),
or one dataset's category:

- `table1` / `table4`: one column per MMAD dataset (MVTec, VisA, MVTec-LOCO, GoodsAD),
  each the Anomaly Detection (binary) accuracy on that dataset;
- `table2`: the cross-dataset columns (VisA, MPDD, DTD, DAGM), the same accuracy;
- `table3`: one column per question type (the six of MMAD's summary besides Anomaly
  Detection), each averaged over the run's datasets; "Object Analysis" pools MMAD's
  Object Structure and Object Details questions;
- `mmad`: MMAD's summary: the Anomaly Detection column plus table3's six, each averaged
  over the run's datasets (MMAD's own published rows as reference);
- `datasets`: one column per dataset of the runs, each the dataset's own accuracy (the
  mean over its question types): the plain leaderboard;
- `categories`: one column per dataset/category of the runs, each the category's
  accuracy (the mean over its question types);
- `qtypes`: one column per question type of the runs (under `--metric mmad`, MMAD's
  pooled types), each averaged over the run's datasets;
- `boxes`: not accuracies but the quality of the boxes a model wrote
  (`adbench.results.box_quality`): a row per run and dataset plus the run's average,
  a column per figure, read from results.json's `boxes`; no Avg. column.

`Avg.` is the mean of the columns a run has a figure for (the paper's averages are the
means of their rows' columns). A column's figure is an engine node (`column_nodes`),
built with the same helpers as results.json's figures, so a table cell and the
results.json figure it shows are the same number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adbench.errors import UserError
from adbench.results.box_quality import IOU_THRESHOLD
from adbench.results.engine import NO_FIGURE, Mean, Node, Plan
from adbench.schema import ANOMALY_DETECTION, MMAD_POOLED, OBJECT_ANALYSIS, QUESTION_TYPES

AVERAGE = "Avg."
MMAD_DATASETS = ("MVTec", "VisA", "MVTec-LOCO", "GoodsAD")

#: Dataset names as runs report them (the first path component of MMAD's index, or a
#: cross-dataset reader's name) -> the paper's column. Compared case-insensitively.
DATASET_NAMES: dict[str, tuple[str, ...]] = {
    "MVTec": ("DS-MVTec", "MVTec", "MVTec-AD", "MVTec AD"),
    "VisA": ("VisA",),
    "MVTec-LOCO": ("MVTec-LOCO", "MVTec LOCO", "MVTec_LOCO"),
    "GoodsAD": ("GoodsAD",),
    "MPDD": ("MPDD",),
    "DTD": ("DTD-Synthetic", "DTD"),
    "DAGM": ("DAGM", "DAGM2007", "DAGM-2007"),
}

#: The question types of the "Object Analysis" column: MMAD's two pooled ones, and the pooled name
#: itself (a task that merged them records that).
OBJECT_ANALYSIS_TYPES = (*MMAD_POOLED, OBJECT_ANALYSIS)
#: Question types in MMAD's order (the `qtypes` layout's column order; others follow by name).
QTYPE_ORDER = (*QUESTION_TYPES, OBJECT_ANALYSIS)


class LayoutError(UserError):
    """A layout that does not exist or a run that cannot be laid out in it."""


@dataclass(frozen=True)
class Column:
    name: str
    datasets: tuple[str, ...] | None  # dataset names it takes; None: every dataset of the run
    qtypes: tuple[str, ...] | None  # question types pooled into one accuracy; None: the dataset's accuracy
    category: str | None = None  # one category of the dataset it takes (the `categories` layout)

    def takes(self, dataset: str) -> bool:
        return self.datasets is None or dataset.casefold() in {d.casefold() for d in self.datasets}


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    columns: tuple[Column, ...]
    descriptors: tuple[str, ...] = ()
    reference: str | None = None  # the published table with these columns
    by_dataset: bool = True  # columns are datasets (a run's other datasets are reported as left out)
    accuracy: bool = True  # the figures are accuracies under a metric, with an Avg. column (not `boxes`)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns] + ([AVERAGE] if self.accuracy else [])


def _dataset_columns(names: Sequence[str]) -> tuple[Column, ...]:
    return tuple(Column(n, DATASET_NAMES[n], (ANOMALY_DETECTION,)) for n in names)


#: Table 3: MMAD's question types but Anomaly Detection and the two it pools, then the pooled column.
_TABLE3_TYPES = tuple(q for q in QUESTION_TYPES if q != ANOMALY_DETECTION and q not in MMAD_POOLED)
_TABLE3_COLUMNS = tuple(Column(q, None, (q,)) for q in _TABLE3_TYPES) + (
    Column(OBJECT_ANALYSIS, None, OBJECT_ANALYSIS_TYPES),)

LAYOUTS: dict[str, Layout] = {
    "table1": Layout("table1", "Multi-domain anomaly detection (binary accuracy %)",
                     _dataset_columns(MMAD_DATASETS), ("Scale",), "table1"),
    "table2": Layout("table2", "Cross-dataset generalization (binary accuracy %)",
                     _dataset_columns(("VisA", "MPDD", "DTD", "DAGM")), ("Scale",), "table2"),
    "table3": Layout("table3", "Multi-task anomaly analysis (accuracy % averaged over datasets)",
                     _TABLE3_COLUMNS, ("Scale",), "table3", by_dataset=False),
    "table4": Layout("table4", "Ablation of rewards and reasoning (binary accuracy %)",
                     _dataset_columns(MMAD_DATASETS), ("Reward r_acc", "Reasoning"), "table4"),
    "mmad": Layout("mmad", "MMAD summary: every question type (accuracy % averaged over datasets)",
                   (Column(ANOMALY_DETECTION, None, (ANOMALY_DETECTION,)), *_TABLE3_COLUMNS), ("Scale",), "mmad",
                   by_dataset=False),
}
#: Layouts whose columns come from the runs shown.
RUN_LAYOUTS = ("datasets", "categories", "qtypes")

#: results.json `boxes` figure -> its column in the `boxes` layout, in order.
BOX_COLUMNS = {"recall": f"Recall@{IOU_THRESHOLD:g} %", "precision": f"Precision@{IOU_THRESHOLD:g} %",
               "mean_best_iou": "best IoU", "mean_giou": "GIoU (Hungarian)", "normal_no_box": "normal: no box %"}
BOXES = Layout("boxes", f"Box quality against the GT boxes (IoU threshold {IOU_THRESHOLD:g})",
               tuple(Column(name, None, None) for name in BOX_COLUMNS.values()), ("Dataset",),
               by_dataset=False, accuracy=False)
#: The accuracy layouts (every one takes --ci, --compare and --metric); `boxes` is apart.
LAYOUT_NAMES = (*LAYOUTS, *RUN_LAYOUTS)


def _datasets(results: dict[str, Any]) -> list[str]:
    return [d for d in results["metrics"] if d != "average"]


def datasets_layout(datasets: Sequence[str]) -> Layout:
    """The plain leaderboard as a layout: one column per dataset (its own accuracy)."""
    return Layout("datasets", "Accuracy (%) per dataset", tuple(Column(d, (d,), None) for d in sorted(set(datasets))))


def categories_layout(results: Sequence[dict[str, Any]]) -> Layout:
    cats = sorted({(d, c) for r in results for d in _datasets(r) for c in r["metrics"][d].get("categories", {})})
    return Layout("categories", "Accuracy (%) per category",
                  tuple(Column(f"{d}/{c}", (d,), None, c) for d, c in cats), by_dataset=False)


def qtypes_layout(results: Sequence[dict[str, Any]], metric: str) -> Layout:
    key = "qtypes" if metric == "strict" else "qtypes_mmad"
    names = {q for r in results for d in _datasets(r) for q in r["metrics"][d].get(key, {})}
    order = sorted(names, key=lambda q: (QTYPE_ORDER.index(q) if q in QTYPE_ORDER else len(QTYPE_ORDER), q))
    return Layout("qtypes", "Accuracy (%) per question type, averaged over datasets",
                  tuple(Column(q, None, (q,)) for q in order), by_dataset=False)


def get_layout(name: str, results: Sequence[dict[str, Any]] = (), metric: str = "strict") -> Layout:
    if name == "datasets":
        return datasets_layout([d for r in results for d in _datasets(r)])
    if name == "categories":
        return categories_layout(results)
    if name == "qtypes":
        return qtypes_layout(results, metric)
    if name == BOXES.name:
        return BOXES
    if name not in LAYOUTS:
        raise LayoutError(f"unknown layout {name!r}: use one of {', '.join((*LAYOUT_NAMES, BOXES.name))}")
    return LAYOUTS[name]


def canonical_dataset(name: str) -> str:
    for canon, names in DATASET_NAMES.items():
        if name.casefold() in {n.casefold() for n in names}:
            return canon
    return name


def _matches(layout: Layout, datasets: Sequence[str]) -> dict[str, list[str]]:
    """Column -> the run's datasets it takes; a by-dataset column may take only one."""
    out = {}
    for col in layout.columns:
        taken = [d for d in datasets if col.takes(d)]
        if layout.by_dataset and len(taken) > 1:
            raise LayoutError(f"datasets {', '.join(taken)} would all go into column {col.name!r}")
        out[col.name] = taken
    return out


def _column_node(col: Column, plan: Plan, datasets: list[str], score_based: bool) -> Node:
    qtypes = col.qtypes
    if score_based and qtypes is not None:
        # a score-based model answers the Anomaly Detection question only: its dataset figure
        if ANOMALY_DETECTION not in qtypes:
            return NO_FIGURE
        qtypes = None
    if col.category is not None:
        return Mean(tuple(plan.group_node(ds, col.category) for ds in datasets if plan.qtypes(ds, col.category)))
    return plan.over_datasets(datasets, qtypes)


def column_nodes(layout: Layout, plan: Plan, datasets: Sequence[str], score_based: bool = False) -> list[Node]:
    """One node per column of `layout`, then Avg.'s (the mean of the columns with a figure)."""
    matches = _matches(layout, datasets)
    present = set(plan.datasets)
    nodes = [_column_node(c, plan, [d for d in matches[c.name] if d in present], score_based) for c in layout.columns]
    return [*nodes, Mean(tuple(nodes))]


def layout_notes(layout: Layout, values: Sequence[float | None], datasets: Sequence[str], plan: Plan) -> list[str]:
    """What a row's figures in `layout` leave out or average over (values: columns then Avg.)."""
    cols = values[: len(layout.columns)]
    present = [v for v in cols if v is not None]
    matches = _matches(layout, datasets)
    notes = []
    left = [d for d in datasets if not any(d in m for m in matches.values())]
    if layout.by_dataset and left:
        notes.append(f"datasets not in this layout: {', '.join(left)}")
    elif present and not layout.by_dataset and layout.reference is not None:  # the paper's per-type averages
        canon = sorted({canonical_dataset(d) for d in datasets})
        if canon != sorted(MMAD_DATASETS):
            notes.append(f"averaged over the run's datasets {', '.join(datasets)} "
                         f"(the paper: {', '.join(MMAD_DATASETS)})")
    if not present and not (layout.by_dataset and len(left) == len(datasets)):
        qtypes = sorted({plan.qtype(k[2]) for k in plan.keys})
        notes.append(f"no figure in this layout (run datasets: {', '.join(datasets)}; "
                     f"question types: {', '.join(qtypes) or 'n/a'})")
    elif len(present) < len(layout.columns):
        missing = [c.name for c, v in zip(layout.columns, cols) if v is None]
        notes.append(f"{AVERAGE} over {len(present)} of {len(layout.columns)} columns (none for {', '.join(missing)})")
    return notes


def figure_values(row: np.ndarray) -> list[float | None]:
    """One row of `engine.evaluate` as figures (None where there is none)."""
    return [None if np.isnan(v) else float(v) for v in row]
