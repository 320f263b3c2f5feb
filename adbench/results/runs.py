"""A run directory as the tables read it.

A table's figures are evaluated from results.json's `cells` (the engine's counts, kept
by `adbench run` / `adbench score`), so a table cell and the results.json figure it
shows are the same number without reading samples.jsonl. Bootstrap intervals and
McNemar's test need the per-sample verdicts: `Run.samples` judges the run's records
again with the same engine, as results.json says they were judged (model kind,
threshold rule). A results.json written before `cells` existed is evaluated from its
records the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adbench.results.engine import CORRECT, CORRECT_MMAD, FIELDS, KEPT, Cells, Tallied, tally_verdicts
from adbench.results.scoring import judge_like, records_hash, variant_cells
from adbench.results.verdicts import ANSWERS, Judgement
from adbench.schema import Record
from adbench.store import RunStore, StoreError


def load_results(run_dir: Path) -> dict[str, Any]:
    store = RunStore(run_dir)
    if not store.results_path.exists():
        raise StoreError(f"{run_dir}: no results.json (run `adbench score {run_dir}` first)")
    return store.read_results()


def run_variants(results: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(threshold rule, label suffix) for each row a run gives: one row (None, "") for a text
    model; for a score-based one `*` (youden, an oracle), ` (t)` (fixed, shown for probability
    scores or when it is the headline rule) and ` (calib.)`."""
    if "rules" not in results:
        return [(None, "")]
    rules = results["rules"]
    show_fixed = results.get("score_is_probability") or results.get("threshold_rule") == "fixed"
    out: list[tuple[str | None, str]] = []
    for rule, suffix in (("youden", "*"), ("fixed", None), ("calibrated", " (calib.)")):
        if rule not in rules or (rule == "fixed" and not show_fixed):
            continue
        if suffix is None:
            suffix = f" ({rules[rule]['thresholds'].get('all', 0.5):g})"
        out.append((rule, suffix))
    return out


def run_name(results: dict[str, Any]) -> str:
    """A run's name in tables: its `--label` (results.json `label`), else the model's name."""
    return results.get("label") or results["model"]


def run_labels(loaded: Sequence[tuple[Path, dict[str, Any]]]) -> list[str]:
    """A label per run: its name (`run_name`), with the task or run id where names would collide."""
    tasks = {r["task"] for _, r in loaded}
    names = [(run_name(r), r["task"]) for _, r in loaded]
    labels = []
    for d, res in loaded:
        label = run_name(res)
        if len(tasks) > 1:
            label = f"{label} [{res['task']}]"
        if names.count((run_name(res), res["task"])) > 1:
            label = f"{label} [{res.get('run_id', d.name)}]"
        labels.append(label)
    return labels


@dataclass
class Samples(Tallied):
    """One variant's per-sample verdicts on a run's records: what intervals resample and McNemar pairs."""

    records: list[Record] = field(default_factory=list)

    def correct(self, metric: str) -> np.ndarray:
        return self.values[:, CORRECT if metric == "strict" else CORRECT_MMAD].astype(bool)

    def scope(self, cells: set[int], metric: str) -> np.ndarray:
        """Positions of the records behind a figure that reads `cells` (MMAD's rule: only those it keeps)."""
        inside = np.isin(self.cell_ids, sorted(cells))
        if metric == "mmad":
            inside &= self.values[:, KEPT] > 0
        return np.flatnonzero(inside)

    def strata(self, metric: str, by_category: bool = False) -> list[tuple[Any, ...]]:
        """Resampling strata: dataset, question type and class (and category; MMAD's rule: kept or not)."""
        kept = self.values[:, KEPT] > 0
        return [(r.dataset, r.qtype, r.label, *((r.category,) if by_category else ()),
                 *((bool(k),) if metric == "mmad" else ())) for r, k in zip(self.records, kept)]


@dataclass
class Run:
    """One run directory: its results.json and, read when needed, its records judged again."""

    run_dir: Path
    results: dict[str, Any]
    _judgement: Judgement | None = field(default=None, repr=False)
    _records: list[Record] | None = field(default=None, repr=False)
    _hash: str | None = field(default=None, repr=False)

    @property
    def score_based(self) -> bool:
        return "rules" in self.results

    @property
    def datasets(self) -> list[str]:
        return [d for d in self.results["metrics"] if d != "average"]

    def records(self) -> list[Record]:
        if self._records is None:
            self._records = RunStore(self.run_dir).load_records(repair=False)
        return self._records

    def judgement(self) -> Judgement:
        if self._judgement is None:
            self._judgement = judge_like(self.results, self.records())
        return self._judgement

    def cells(self, rule: str | None) -> Cells:
        """The variant's counts per cell: results.json's, else (an older results.json) its records'."""
        stored = _stored_cells(self.results, self.run_dir)
        if stored is None:
            return variant_cells(self.judgement())[rule or ANSWERS]
        return stored[rule or ANSWERS]

    def samples(self, rule: str | None) -> Samples:
        j = self.judgement()
        t = tally_verdicts(j.records, j.variants[rule or j.headline])
        return Samples(t.cell_ids, t.values, t.cells, j.records)

    def stale(self) -> str | None:
        """A note when results.json was scored from other records than samples.jsonl holds now."""
        expected = (self.results.get("scored_by") or {}).get("samples_hash")
        if self._hash is None:
            self._hash = records_hash(self.records())
        if expected is None or expected == self._hash:
            return None
        return (f"results.json was scored from other records than its samples.jsonl holds now; figures here are "
                f"from samples.jsonl: run `adbench score {self.run_dir}`")


def _stored_cells(results: dict[str, Any], run_dir: Path) -> dict[str, Cells] | None:
    c = results.get("cells")
    if c is None:
        return None
    try:
        keys = [(str(k[0]), str(k[1]), str(k[2]), k[3]) for k in c["keys"]]
        if list(c["fields"]) != list(FIELDS):
            raise ValueError(f"fields {c['fields']}")
        out = {}
        for name, rows in c["counts"].items():
            counts = np.asarray(rows, dtype=np.int64).reshape(len(keys), len(FIELDS))
            out[str(name)] = Cells(keys, counts)
        return out
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise StoreError(f"{run_dir / 'results.json'}: 'cells' is not the engine's counts ({e}); "
                         f"run `adbench score {run_dir}` to rebuild it") from None
