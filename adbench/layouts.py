"""The paper's table layouts, and a run's figures under each of them.

A layout is a list of value columns plus an average. A column takes some of a run's
datasets and some question types:

- `table1` / `table4`: one column per MMAD dataset (MVTec, VisA, MVTec-LOCO, GoodsAD),
  each the Anomaly Detection (binary) accuracy on that dataset;
- `table2`: the cross-dataset columns (VisA, MPDD, DTD, DAGM), the same accuracy;
- `table3`: one column per question type (the six of MMAD's summary besides Anomaly
  Detection), each averaged over the run's datasets; "Object Analysis" pools MMAD's
  Object Structure and Object Details questions;
- `mmad`: MMAD's summary: the Anomaly Detection column plus table3's six, each averaged
  over the run's datasets (MMAD's own published rows as reference);
- `datasets`: one column per dataset of the runs, each the dataset's own accuracy
  (the mean over its question types), i.e. the plain leaderboard.

`Avg.` is the mean of the columns a run has a figure for (the paper's averages are
the means of their rows' columns). The figures come from results.json, under either
metric (`strict`: `accuracy`; `mmad`: MMAD's rule, `accuracy_mmad` / `qtypes_mmad`);
the same figures can be recomputed from per-sample correctness (`ColumnGroups`), which
is what bootstrap intervals resample.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adbench.errors import UserError
from adbench.schema import Record
from adbench.scoring import METRICS, mmad_qtype, require_mmad_figures

AVERAGE = "Avg."
AD = "Anomaly Detection"
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

#: MMAD's summary merges these question types into one "Object Analysis" column.
OBJECT_ANALYSIS = ("Object Structure", "Object Details", "Object Analysis")


class LayoutError(UserError):
    """A layout that does not exist or a run that cannot be laid out in it."""


@dataclass(frozen=True)
class Column:
    name: str
    datasets: tuple[str, ...] | None  # dataset names it takes; None: every dataset of the run
    qtypes: tuple[str, ...] | None  # question types pooled into one accuracy; None: the dataset's accuracy

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

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns] + [AVERAGE]


def _dataset_columns(names: Sequence[str]) -> tuple[Column, ...]:
    return tuple(Column(n, DATASET_NAMES[n], (AD,)) for n in names)


_TABLE3_TYPES = (
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
)

LAYOUTS: dict[str, Layout] = {
    "table1": Layout("table1", "Multi-domain anomaly detection (binary accuracy %)",
                     _dataset_columns(MMAD_DATASETS), ("Scale",), "table1"),
    "table2": Layout("table2", "Cross-dataset generalization (binary accuracy %)",
                     _dataset_columns(("VisA", "MPDD", "DTD", "DAGM")), ("Scale",), "table2"),
    "table3": Layout(
        "table3",
        "Multi-task anomaly analysis (accuracy % averaged over datasets)",
        tuple(Column(q, None, (q,)) for q in _TABLE3_TYPES) + (Column("Object Analysis", None, OBJECT_ANALYSIS),),
        ("Scale",),
        "table3",
        by_dataset=False,
    ),
    "table4": Layout("table4", "Ablation of rewards and reasoning (binary accuracy %)",
                     _dataset_columns(MMAD_DATASETS), ("Reward r_acc", "Reasoning"), "table4"),
    "mmad": Layout(
        "mmad",
        "MMAD summary: every question type (accuracy % averaged over datasets)",
        (Column(AD, None, (AD,)),)
        + tuple(Column(q, None, (q,)) for q in _TABLE3_TYPES)
        + (Column("Object Analysis", None, OBJECT_ANALYSIS),),
        ("Scale",),
        "mmad",
        by_dataset=False,
    ),
}
LAYOUT_NAMES = (*LAYOUTS, "datasets")


def datasets_layout(datasets: Sequence[str]) -> Layout:
    """The plain leaderboard as a layout: one column per dataset (its own accuracy)."""
    cols = tuple(Column(d, (d,), None) for d in sorted(set(datasets)))
    return Layout("datasets", "Accuracy (%) per dataset", cols)


def get_layout(name: str, results: Sequence[dict[str, Any]] = ()) -> Layout:
    if name == "datasets":
        return datasets_layout([d for r in results for d in r["metrics"] if d != "average"])
    if name not in LAYOUTS:
        raise LayoutError(f"unknown layout {name!r}: use one of {', '.join(LAYOUT_NAMES)}")
    return LAYOUTS[name]


# -- figures from results.json ---------------------------------------------------------------


@dataclass
class Figures:
    values: dict[str, float | None]  # column (and Avg.) -> accuracy in [0, 1]
    notes: list[str] = field(default_factory=list)


def _pooled(qt: dict[str, Any], names: Sequence[str], acc: str, n: str) -> float | None:
    """One accuracy over several question types: sum(correct) / sum(n), exact from (accuracy, n)."""
    present = [q for q in dict.fromkeys(names) if q in qt and qt[q].get(acc) is not None]
    if not present:
        return None
    if len(present) == 1:
        return qt[present[0]][acc]
    total = sum(qt[q][n] for q in present)
    return sum(qt[q][acc] * qt[q][n] for q in present) / total if total else 0.0


def _cell(results: dict[str, Any], dataset: str, col: Column, rule: str | None, metric: str) -> float | None:
    key = "accuracy" if metric == "strict" else "accuracy_mmad"
    if rule is not None:  # score-based model: Anomaly Detection only, one accuracy per dataset and rule
        if col.qtypes is not None and AD not in col.qtypes:
            return None
        return results["rules"][rule][key].get(dataset)
    entry = results["metrics"][dataset]
    if col.qtypes is None:
        return entry.get(key)
    if metric == "strict":
        return _pooled(entry.get("qtypes", {}), col.qtypes, "accuracy", "n")
    # MMAD pools Object Structure / Details itself; its cells are already per pooled type
    return _pooled(entry.get("qtypes_mmad", {}), [mmad_qtype(q) for q in col.qtypes], "accuracy_mmad", "n_kept")


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _matches(layout: Layout, datasets: Sequence[str]) -> dict[str, list[str]]:
    """Column -> the run's datasets it takes; a by-dataset column may take only one."""
    out = {}
    for col in layout.columns:
        taken = [d for d in datasets if col.takes(d)]
        if layout.by_dataset and len(taken) > 1:
            raise LayoutError(f"datasets {', '.join(taken)} would all go into column {col.name!r}")
        out[col.name] = taken
    return out


def run_figures(layout: Layout, results: dict[str, Any], rule: str | None = None, metric: str = "strict") -> Figures:
    """A run's figure for every column of `layout` (None where the run has none), and why.

    metric: "strict" (results.json's `accuracy`) or "mmad" (MMAD's rule, `accuracy_mmad`).
    """
    if metric not in METRICS:
        raise LayoutError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    if metric == "mmad":
        require_mmad_figures(results)
    datasets = [d for d in results["metrics"] if d != "average"]
    matches = _matches(layout, datasets)
    values: dict[str, float | None] = {}
    for col in layout.columns:
        values[col.name] = _mean([_cell(results, d, col, rule, metric) for d in matches[col.name]])
    present = [v for v in values.values() if v is not None]
    values[AVERAGE] = _mean(present)
    notes = []
    left = [d for d in datasets if not any(d in m for m in matches.values())]
    if layout.by_dataset and left:
        notes.append(f"datasets not in this layout: {', '.join(left)}")
    elif present:
        canon = sorted({canonical_dataset(d) for d in datasets})
        if canon != sorted(MMAD_DATASETS):
            notes.append(f"averaged over the run's datasets {', '.join(datasets)} "
                         f"(the paper: {', '.join(MMAD_DATASETS)})")
    if not present and not (layout.by_dataset and len(left) == len(datasets)):
        qkey = "qtypes" if metric == "strict" else "qtypes_mmad"
        qtypes = sorted({q for d in datasets for q in results["metrics"][d].get(qkey, {})})
        notes.append(f"no figure in this layout (run datasets: {', '.join(datasets)}; "
                     f"question types: {', '.join(qtypes) or 'n/a'})")
    elif len(present) < len(layout.columns):
        missing = [c for c, v in values.items() if v is None]
        notes.append(f"{AVERAGE} over {len(present)} of {len(layout.columns)} columns (none for {', '.join(missing)})")
    return Figures(values, notes)


def canonical_dataset(name: str) -> str:
    for canon, names in DATASET_NAMES.items():
        if name.casefold() in {n.casefold() for n in names}:
            return canon
    return name


# -- the same figures from per-sample correctness (for resampling) -----------------------------

Group = tuple[np.ndarray, np.ndarray | None]  # positions; or (normal positions, anomalous positions)


@dataclass
class ColumnGroups:
    """Where each column's figure comes from, as positions into a list of Records.

    columns[c] lists, per dataset the column takes, the accuracy groups averaged in it:
    plain accuracy over some positions, or MMAD's balanced accuracy (normal and
    anomalous positions separately). A column's figure is the mean over datasets of
    the mean over groups; Avg. is the mean over the columns that have one. With
    `absent_zero` (MMAD's rule) an empty group, or an absent class of a balanced one,
    counts 0 instead of being left out.
    """

    names: list[str]
    columns: list[list[list[Group]]]
    strata: list[tuple[Any, ...]]  # one key per record: dataset, question type, label (and kept, for MMAD)
    absent_zero: bool = False

    def scope(self, c: int | None) -> np.ndarray:
        """Positions of the records that enter column c (None: any column)."""
        cols = range(len(self.columns)) if c is None else [c]
        pos = [p for k in cols for ds in self.columns[k] for g in ds for p in g if p is not None]
        return np.unique(np.concatenate(pos)) if pos else np.zeros(0, dtype=np.int64)

    def _mean(self, c: np.ndarray, pos: np.ndarray) -> np.ndarray | None:
        if len(pos):
            return c[:, pos].mean(axis=1)
        return np.zeros(c.shape[0]) if self.absent_zero else None

    def _group(self, c: np.ndarray, group: Group) -> np.ndarray:
        a, b = group
        if b is None:
            return self._mean(c, a)
        parts = [m for m in (self._mean(c, a), self._mean(c, b)) if m is not None]
        return np.mean(parts, axis=0)  # balanced: mean of the classes (absent ones 0 with absent_zero)

    def figures(self, correct: np.ndarray) -> np.ndarray:
        """Figures for a (B, n) array of 0/1 correctness: shape (B, columns + 1), NaN where none."""
        c = np.asarray(correct, dtype=float)
        if c.ndim == 1:
            c = c[None, :]
        out = np.full((c.shape[0], len(self.columns) + 1), np.nan)
        for k, per_dataset in enumerate(self.columns):
            ds_values = [np.mean([self._group(c, g) for g in groups], axis=0) for groups in per_dataset]
            if ds_values:
                out[:, k] = np.mean(ds_values, axis=0)
        present = ~np.isnan(out[0, :-1])
        if present.any():
            out[:, -1] = out[:, :-1][:, present].mean(axis=1)
        return out


def _balanced(recs_pos: list[int], records: Sequence[Record]) -> Group:
    pos = np.asarray(recs_pos, dtype=np.int64)
    labels = np.asarray([records[i].label for i in recs_pos], dtype=object)
    return pos[labels == 0], pos[labels == 1]


def column_groups(
    layout: Layout, records: Sequence[Record], verdicts: Sequence[bool | None] | None = None
) -> ColumnGroups:
    """The layout's figures as groups of evaluated Records (calibration records excluded by the caller).

    With `verdicts` (MMAD's rule: one per record, None = dropped) the groups follow
    MMAD's summary: question types pooled as MMAD pools them, dropped records in no
    group, a type whose records were all dropped an empty group that counts 0, an
    absent class 0. Dropped records get their own strata, so a resample keeps the
    kept records' counts.
    """
    mmad = verdicts is not None
    kept = [True] * len(records) if verdicts is None else [v is not None for v in verdicts]
    by_ds_q: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(records):
        by_ds_q[r.dataset][mmad_qtype(r.qtype) if mmad else r.qtype].append(i)
    matches = _matches(layout, list(by_ds_q))

    def group(qtypes: Sequence[str], ds: str) -> Group | None:
        names = dict.fromkeys(mmad_qtype(q) for q in qtypes) if mmad else qtypes
        every = [i for q in names for i in by_ds_q[ds].get(q, [])]
        pos = [i for i in every if kept[i]]
        if not every:
            return None
        if list(names) == [AD] and all(records[i].label in (0, 1) for i in pos):
            return _balanced(pos, records)
        return np.asarray(pos, dtype=np.int64), None

    columns = []
    for col in layout.columns:
        per_dataset = []
        for ds in matches[col.name]:
            if col.qtypes is None:
                groups = [group([q], ds) for q in sorted(by_ds_q[ds])]
            else:
                groups = [group(col.qtypes, ds)]
            groups = [g for g in groups if g is not None]
            if groups:
                per_dataset.append(groups)
        columns.append(per_dataset)
    strata = [(r.dataset, r.qtype, r.label, *((k,) if mmad else ())) for r, k in zip(records, kept)]
    return ColumnGroups(layout.column_names, columns, strata, absent_zero=mmad)
