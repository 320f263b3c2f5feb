"""The engine: per-sample verdicts -> counts per cell -> every figure adbench prints.

A *cell* is one (dataset, category, question type, label) of a run. Tallying a
variant's verdicts (`adbench.results.verdicts`) gives five counts per cell: records,
strictly correct, kept by MMAD's rule, correct under MMAD's rule, decided. Every figure
is a function of those counts, written once here as a small tree of *nodes*:

- `Leaf`: the accuracy of some cells, under one metric.
  strict: correct / records; MMAD's balanced Anomaly Detection accuracy (normal and
  anomalous accuracy averaged, over the classes present) when `balanced`.
  mmad: correct / kept, 0 when none is kept; balanced: (normal + anomalous) / 2 where
  an absent class counts 0 (jam-cc/MMAD `summary.py: caculate_accuracy_mmad`).
- `Mean`: the mean of the children that have a figure (none: no figure).

results.json (`adbench.results.scoring`), every layout (`adbench.results.layouts`), the
bootstrap resamples of `--ci` and the scopes of McNemar's test build their nodes with
the same helpers below (`qtype_leaf`, `group_node`, `over_datasets`) and evaluate them
with `evaluate`, vectorised over resamples: counts have shape (B, cells, 5), a figure
(B,), NaN where there is none. A resample is a tally of resampled per-sample verdicts
(`tally(..., idx)`), so a figure and its resamples come from one function.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adbench.errors import UserError
from adbench.results.verdicts import Verdicts
from adbench.schema import ANOMALY_DETECTION, MMAD_POOLED, Record

METRICS = ("strict", "mmad")

#: The counts of a cell, in this order.
FIELDS = ("n", "correct", "kept", "correct_mmad", "decided")
N, CORRECT, KEPT, CORRECT_MMAD, DECIDED = range(len(FIELDS))

Key = tuple[str, str, str, Any]  # dataset, category, question type, label (0, 1 or None)


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")


def mmad_qtype(qtype: str) -> str:
    """The question type under which MMAD's summary counts `qtype`."""
    return MMAD_POOLED.get(qtype, qtype)


# -- cells -----------------------------------------------------------------------------------


@dataclass
class Cells:
    """A variant's counts per cell: keys[i] and counts[i] = (n, correct, kept, correct_mmad, decided)."""

    keys: list[Key]
    counts: np.ndarray  # (cells, 5)

    def batch(self) -> np.ndarray:
        """The counts as a batch of one, for `evaluate`."""
        return np.asarray(self.counts, dtype=float)[None]

    def to_json(self) -> list[list[int]]:
        return [[int(v) for v in row] for row in self.counts]


def cell_index(records: Sequence[Record]) -> tuple[list[Key], np.ndarray]:
    """The cells of some records (sorted) and each record's cell."""
    keys = sorted({(r.dataset, r.category, r.qtype, r.label) for r in records}, key=_key_order)
    pos = {k: i for i, k in enumerate(keys)}
    ids = np.fromiter((pos[(r.dataset, r.category, r.qtype, r.label)] for r in records), np.int64, len(records))
    return keys, ids


def _key_order(k: Key) -> tuple[Any, ...]:
    return (k[0], k[1], k[2], -1 if k[3] is None else k[3])


def verdict_matrix(v: Verdicts) -> np.ndarray:
    """Per-sample values (n, 5) of a variant's verdicts: 1, correct, kept, correct_mmad, decided."""
    cols = [np.ones(len(v.correct)), v.correct, v.kept, v.correct_mmad, v.decided]
    return np.stack([np.asarray(c, dtype=float) for c in cols], axis=1) if len(v.correct) else np.zeros((0, 5))


def tally(cell_ids: np.ndarray, values: np.ndarray, n_cells: int, idx: np.ndarray | None = None) -> np.ndarray:
    """Counts per cell (B, cells, 5) of per-sample values (n, 5); `idx` (B, n): resamples as indices."""
    if idx is None:
        idx = np.arange(len(cell_ids))[None]
    b = idx.shape[0]
    flat = (np.arange(b)[:, None] * n_cells + cell_ids[idx]).ravel()
    out = np.empty((b * n_cells, len(FIELDS)))
    for f in range(len(FIELDS)):
        out[:, f] = np.bincount(flat, weights=values[idx, f].ravel(), minlength=b * n_cells)
    return out.reshape(b, n_cells, len(FIELDS))


@dataclass
class Tallied:
    """A variant's verdicts on some records, each record's cell, and their counts per cell."""

    cell_ids: np.ndarray  # (n,) each record's cell
    values: np.ndarray  # (n, 5) per-sample values (`verdict_matrix`)
    cells: Cells  # their tally

    def tally(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Counts (B, cells, 5) of the resamples `idx` (B, n) of the records (None: the records themselves)."""
        return tally(self.cell_ids, self.values, len(self.cells.keys), idx)


def tally_verdicts(records: Sequence[Record], v: Verdicts) -> Tallied:
    keys, ids = cell_index(records)
    values = verdict_matrix(v)
    return Tallied(ids, values, Cells(keys, tally(ids, values, len(keys))[0].astype(np.int64)))


# -- nodes -----------------------------------------------------------------------------------


class Node:
    def cells(self) -> set[int]:
        """The cells this figure reads (McNemar's test pairs the records behind them)."""
        raise NotImplementedError

    def evaluate(self, counts: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _NoFigure(Node):
    def cells(self) -> set[int]:
        return set()

    def evaluate(self, counts: np.ndarray) -> np.ndarray:
        return np.full(counts.shape[0], np.nan)


#: A figure that does not exist (a score rule that decided nothing in a dataset, a column a run lacks).
NO_FIGURE: Node = _NoFigure()


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), empty)


@dataclass(eq=False)
class Leaf(Node):
    """The accuracy of some cells under `metric`; `balanced`: classes (label 0 / 1 cells) averaged."""

    metric: str
    normal: tuple[int, ...]  # balanced: label-0 cells; else every cell
    anomalous: tuple[int, ...] = ()
    balanced: bool = False

    def cells(self) -> set[int]:
        return {*self.normal, *self.anomalous}

    def _acc(self, counts: np.ndarray, cells: tuple[int, ...]) -> np.ndarray:
        c = counts[:, list(cells), :].sum(axis=1) if cells else np.zeros((counts.shape[0], len(FIELDS)))
        if self.metric == "strict":
            return _ratio(c[:, CORRECT], c[:, N], np.nan)
        return _ratio(c[:, CORRECT_MMAD], c[:, KEPT], 0.0)  # MMAD: nothing kept counts 0

    def evaluate(self, counts: np.ndarray) -> np.ndarray:
        if not self.balanced:
            return self._acc(counts, self.normal)
        a, b = self._acc(counts, self.normal), self._acc(counts, self.anomalous)
        if self.metric == "mmad":  # an absent class counts 0
            return (np.nan_to_num(a) + np.nan_to_num(b)) / 2
        # strict: the mean over the classes present
        return np.where(np.isnan(a), b, np.where(np.isnan(b), a, (a + b) / 2))


@dataclass(eq=False)
class Mean(Node):
    """The mean of the children that have a figure; none: no figure."""

    children: tuple[Node, ...]

    def cells(self) -> set[int]:
        return set().union(*(c.cells() for c in self.children)) if self.children else set()

    def evaluate(self, counts: np.ndarray) -> np.ndarray:
        if not self.children:
            return np.full(counts.shape[0], np.nan)
        return _mean_rows(np.stack([c.evaluate(counts) for c in self.children], axis=1))


def _mean_rows(v: np.ndarray) -> np.ndarray:
    """Per row of (B, k) values: the mean of those that are not NaN; NaN where none is."""
    have = ~np.isnan(v)
    k = have.sum(axis=1)
    total = np.zeros(v.shape[0])
    for j in range(v.shape[1]):  # left to right: a missing figure adds 0.0 exactly, wherever it stands
        total += np.where(have[:, j], v[:, j], 0.0)
    with np.errstate(invalid="ignore"):
        return np.where(k > 0, total / np.where(k > 0, k, 1), np.nan)


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the values that exist, as `Mean` takes it (None when none does)."""
    row = np.array([[np.nan if v is None else float(v) for v in values]], dtype=float)
    m = float(_mean_rows(row)[0]) if row.size else float("nan")
    return None if np.isnan(m) else m


def evaluate(nodes: Sequence[Node], counts: np.ndarray) -> np.ndarray:
    """Figures (B, len(nodes)) of counts (B, cells, 5); NaN where a figure does not exist."""
    if not nodes:
        return np.zeros((counts.shape[0], 0))
    return np.stack([n.evaluate(counts) for n in nodes], axis=1)


def value(node: Node, cells: Cells) -> float | None:
    """One figure of one tally, as results.json stores it (None: no figure)."""
    v = float(node.evaluate(cells.batch())[0])
    return None if np.isnan(v) else v


# -- the figures every consumer shares --------------------------------------------------------


class Plan:
    """Builds the nodes of one variant's figures from its cells: the one definition of each figure.

    metric "strict" groups cells by question type as the task names it, "mmad" by MMAD's
    pooled type. A dataset in which the variant decided nothing (a score rule without a
    threshold there) has no figure at all, not 0.
    """

    def __init__(self, cells: Cells, metric: str) -> None:
        check_metric(metric)
        self.metric = metric
        self.by: dict[tuple[str, str], list[int]] = defaultdict(list)  # (dataset, type) -> cells
        self.cats: dict[tuple[str, str, str], list[int]] = defaultdict(list)  # (dataset, category, type) -> cells
        for i, (ds, cat, q, _) in enumerate(cells.keys):
            t = self.qtype(q)
            self.by[(ds, t)].append(i)
            self.cats[(ds, cat, t)].append(i)
        self.cells = cells
        self.keys = cells.keys
        self.counts = np.asarray(cells.counts).reshape(len(cells.keys), len(FIELDS))
        self.datasets = sorted({k[0] for k in cells.keys})
        decided = defaultdict(int)
        for key, row in zip(self.keys, self.counts):
            decided[key[0]] += int(row[DECIDED])
        self.undecided = {ds for ds, k in decided.items() if k == 0}

    def qtype(self, q: str) -> str:
        return mmad_qtype(q) if self.metric == "mmad" else q

    def qtypes(self, dataset: str, category: str | None = None) -> list[str]:
        """The dataset's (or category's) question types under this metric, sorted."""
        if category is None:
            return sorted(t for ds, t in self.by if ds == dataset)
        return sorted(t for ds, c, t in self.cats if ds == dataset and c == category)

    def leaf(self, cells: Sequence[int], pooled: Sequence[str]) -> Node:
        """The accuracy of `cells`; balanced when they are Anomaly Detection's and every label is 0 or 1.

        Which labels count: every record's (strict), the kept records' (MMAD's rule).
        """
        field = N if self.metric == "strict" else KEPT
        counted = [i for i in cells if self.counts[i, field] > 0]
        if list(pooled) == [ANOMALY_DETECTION] and all(self.keys[i][3] in (0, 1) for i in counted):
            return Leaf(self.metric, tuple(i for i in cells if self.keys[i][3] == 0),
                        tuple(i for i in cells if self.keys[i][3] == 1), balanced=True)
        return self.plain(cells)

    def qtype_leaf(self, dataset: str, qtypes: Sequence[str], category: str | None = None) -> Node | None:
        """One accuracy over the records of some question types (pooled) in a dataset; None: no such record."""
        if dataset in self.undecided:
            return NO_FIGURE
        pooled = list(dict.fromkeys(self.qtype(q) for q in qtypes))
        if category is None:
            cells = [i for t in pooled for i in self.by.get((dataset, t), [])]
        else:
            cells = [i for t in pooled for i in self.cats.get((dataset, category, t), [])]
        return self.leaf(cells, pooled) if cells else None

    def group_node(self, dataset: str, category: str | None = None) -> Node:
        """A dataset's (or category's) figure: the mean over its question types."""
        if dataset in self.undecided:
            return NO_FIGURE
        leaves = [self.qtype_leaf(dataset, [t], category) for t in self.qtypes(dataset, category)]
        return Mean(tuple(x for x in leaves if x is not None))

    def over_datasets(self, datasets: Sequence[str], qtypes: Sequence[str] | None) -> Node:
        """The mean over `datasets` of each one's figure (qtypes None) or of those types' pooled accuracy."""
        if qtypes is None:
            return Mean(tuple(self.group_node(ds) for ds in datasets))
        leaves = [self.qtype_leaf(ds, qtypes) for ds in datasets]
        return Mean(tuple(x for x in leaves if x is not None))

    def plain(self, cells: Sequence[int]) -> Node:
        """The plain accuracy of some cells (no class balancing)."""
        return Leaf(self.metric, tuple(cells))

    def n(self, cells: Iterable[int], field: int = N) -> int:
        return int(sum(self.counts[i, field] for i in cells))

    def cells_of(self, dataset: str, category: str | None = None) -> list[int]:
        return [i for i, k in enumerate(self.keys) if k[0] == dataset and (category is None or k[1] == category)]
