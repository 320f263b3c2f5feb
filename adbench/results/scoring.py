"""Records -> results.json's figures, through the engine: adbench's strict headline and MMAD's rule.

Two figures come from the same Records (their verdicts: `adbench.results.verdicts`):

- `accuracy` (the headline, strict): per dataset, each question type gets an accuracy
  (Anomaly Detection: MMAD's balanced one, over the classes present); a dataset's
  accuracy is the mean over its question types, the average the mean over datasets.
- `accuracy_mmad`: MMAD's rule. Object Structure and Object Details pool into Object
  Analysis; a dataset x type cell whose records were all dropped is 0; the Anomaly
  Detection cell is (normal accuracy + anomalous accuracy) / 2 with an absent class
  counting 0; a dataset's figure is the mean over the types it has records of, the
  average the mean over datasets. Per type in `qtypes_mmad` (with `n_kept` /
  `n_dropped`). MMAD's loop removes items from the list it iterates, which skips the
  record after each dropped one; that is not copied.

A score-based model gets both for every threshold rule (`rules`), the headline rule's
in full under `metrics`, with AUROC; a rule that decided nothing in a dataset has no
figure there (not 0). AUROC is reported for any run whose records carry scores, a text
model's too. results.json also keeps the engine's counts per cell (`cells`), from which
every table evaluates its figures, and `scored_by`: the adbench version and git hash
that scored it, the model kind and where it came from, and a hash of the records. A run
whose model wrote boxes also gets `boxes`, their quality against the GT boxes
(`adbench.results.box_quality`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from adbench import __version__
from adbench.errors import UserError
from adbench.metrics import MetricError, auroc
from adbench.model import OutputKind, declared_output
from adbench.results.box_quality import box_quality
from adbench.results.engine import (
    FIELDS,
    KEPT,
    Cells,
    N,
    Plan,
    check_metric,
    mean,
    tally_verdicts,
    value,
)
from adbench.results.verdicts import Judgement, Verdicts, finite_score, judge
from adbench.schema import ANOMALY_DETECTION, Record


def variant_cells(j: Judgement) -> dict[str, Cells]:
    """Each variant's counts per cell."""
    return {name: tally_verdicts(j.records, v).cells for name, v in j.variants.items()}


def _group(strict: Plan, mmad: Plan, ds: str, category: str | None = None) -> dict[str, Any]:
    return {"accuracy": value(strict.group_node(ds, category), strict.cells),
            "accuracy_mmad": value(mmad.group_node(ds, category), mmad.cells),
            "n": strict.n(strict.cells_of(ds, category))}


def metric_table(cells: Cells) -> dict[str, Any]:
    """results.json's `metrics` of one variant: per dataset (types, categories) and their average."""
    strict, mmad = Plan(cells, "strict"), Plan(cells, "mmad")
    table: dict[str, Any] = {}
    for ds in strict.datasets:
        entry = _group(strict, mmad, ds)
        qtypes: dict[str, Any] = {}
        for q in strict.qtypes(ds):
            leaf = strict.qtype_leaf(ds, [q])
            qtypes[q] = {"accuracy": value(leaf, cells), "n": strict.n(strict.by[(ds, q)])}
            if q == ANOMALY_DETECTION:
                for name, lab in (("accuracy_normal", 0), ("accuracy_anomalous", 1)):
                    part = [i for i in strict.by[(ds, q)] if cells.keys[i][3] == lab]
                    qtypes[q][name] = value(strict.plain(part), cells) if part and ds not in strict.undecided else None
        qtypes_mmad: dict[str, Any] = {}
        for q in mmad.qtypes(ds):
            kept = mmad.n(mmad.by[(ds, q)], KEPT)
            qtypes_mmad[q] = {"accuracy_mmad": value(mmad.qtype_leaf(ds, [q]), cells), "n_kept": kept,
                              "n_dropped": mmad.n(mmad.by[(ds, q)], N) - kept}
        entry["qtypes"] = qtypes
        entry["qtypes_mmad"] = qtypes_mmad
        entry["categories"] = {cat: _group(strict, mmad, ds, cat)
                               for cat in sorted({k[1] for k in cells.keys if k[0] == ds})}
        table[ds] = entry

    def per_type(plan: Plan, field: str) -> dict[str, Any]:
        names = sorted({q for ds in plan.datasets for q in plan.qtypes(ds)})
        return {q: {field: value(plan.over_datasets(plan.datasets, [q]), cells)} for q in names}

    table["average"] = {
        "accuracy": value(strict.over_datasets(strict.datasets, None), cells),
        "accuracy_mmad": value(mmad.over_datasets(mmad.datasets, None), cells),
        "n": strict.n(range(len(cells.keys))),
        "qtypes": per_type(strict, "accuracy"),
        "qtypes_mmad": per_type(mmad, "accuracy_mmad"),
    }
    return table


def _auroc(records: Sequence[Record], datasets: Sequence[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for ds in datasets:
        rs = [r for r in records if r.dataset == ds and finite_score(r)]
        try:
            out[ds] = auroc([r.score for r in rs], [r.label for r in rs])
        except MetricError:
            out[ds] = None
    return out


def _rule_entry(v: Verdicts, table: dict[str, Any]) -> dict[str, Any]:
    return {"oracle": v.oracle, "thresholds": v.thresholds, "notes": v.notes,
            "accuracy": {k: e["accuracy"] for k, e in table.items()},
            "accuracy_mmad": {k: e["accuracy_mmad"] for k, e in table.items()}}


def figures(j: Judgement) -> dict[str, Any]:
    """results.json's `metrics`, `counts` and `cells` (and `threshold_rule` / `rules` for a score-based model,
    `boxes` for a model that wrote boxes)."""
    evals = j.records
    counts = {"n": len(evals), "n_failed": sum(r.failed for r in evals),
              "n_unparsed": sum(r.unparsed for r in evals)}
    if j.calibration:
        counts["n_calibration"] = len(j.calibration)
    cells = variant_cells(j)
    tables = {name: metric_table(c) for name, c in cells.items()}
    metrics = tables[j.headline]
    out: dict[str, Any] = {"metrics": metrics, "counts": counts}
    if j.score_based or any(finite_score(r) for r in evals):  # a text model that also gives scores: AUROC too
        per_ds = _auroc(evals, [d for d in metrics if d != "average"])
        for ds, a in per_ds.items():
            metrics[ds]["auroc"] = a
        metrics["average"]["auroc"] = mean(per_ds.values())
    if j.score_based:
        out["threshold_rule"] = j.headline
        out["rules"] = {name: _rule_entry(j.variants[name], t) for name, t in tables.items()}
    keys = cells[j.headline].keys
    out["cells"] = {"keys": [list(k) for k in keys], "fields": list(FIELDS),
                    "counts": {name: c.to_json() for name, c in cells.items()}}
    boxes = box_quality(evals)
    if boxes is not None:
        out["boxes"] = boxes
    return out


def score_records(records: Sequence[Record], threshold: str | float = "calibrated",
                  kind: OutputKind | None = None) -> dict[str, Any]:
    """results.json's figures of a run's Records (`scored_by` says how they were judged).

    kind: the adapter's declared output (config.json `model_output`); None for a run
    recorded before it was written (then the records' evidence decides).
    """
    j = judge(records, kind, threshold)
    return {**figures(j), "scored_by": scored_by(j)}


@lru_cache(maxsize=1)
def _git() -> str | None:
    from adbench.provenance import git_hash  # two git calls: once per process

    return git_hash()


def records_hash(records: Sequence[Record]) -> str:
    """A hash of what scoring reads of each record (order-free): tells whether results.json is of these records."""
    h = hashlib.sha256()
    # str(): the enums' plain text, so the hash of a run's records is what it was before they were enums
    for row in sorted(repr((r.id, str(r.role), r.dataset, r.category, r.qtype, r.label, r.gold, r.text, r.answer,
                            r.score, r.correct, r.error, str(r.parse_status), sorted(r.options.items())))
                      for r in records):
        h.update(row.encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


def scored_by(j: Judgement) -> dict[str, Any]:
    return {"adbench": __version__, "git": _git(), "model_output": j.kind, "model_output_from": j.kind_from,
            "samples_hash": records_hash([*j.records, *j.calibration])}


def require_mmad_figures(results: dict[str, Any]) -> None:
    """Refuse a results.json scored before MMAD's rule was computed (its `accuracy_mmad` meant something else)."""
    if "rules" in results:
        ok = all("accuracy_mmad" in r for r in results["rules"].values())
    else:
        ok = "qtypes_mmad" in results.get("metrics", {}).get("average", {})
    if not ok:
        name = results.get("run_id") or results.get("model")
        raise UserError(f"run {name!r} has no MMAD-rule figures in its results.json (scored by an older "
                        "adbench): run `adbench score RUN_DIR` first")


def judge_like(results: dict[str, Any], records: Sequence[Record]) -> Judgement:
    """Judge `records` as they were judged for `results`: its model kind and threshold rule."""
    scored_as = OutputKind.SCORE if "rules" in results else OutputKind.GENERATIVE
    kind = declared_output((results.get("scored_by") or {}).get("model_output")) or scored_as
    threshold: str | float = results.get("threshold_rule", "calibrated")
    if threshold == "fixed":  # a number given as -T threshold= (any other headline keeps the default fixed rule)
        threshold = float(results["rules"]["fixed"]["thresholds"]["all"])
    return judge(records, kind, threshold)


def record_correctness(results: dict[str, Any], records: Sequence[Record], rule: str | None = None,
                       metric: str = "strict") -> dict[str, bool | None]:
    """Per-record correctness (id -> bool) of one variant (default: the headline), whatever the model kind.

    metric "strict": a failed, unparsed or undecided record is False. metric "mmad":
    MMAD's verdict, None for a record MMAD's rule drops.
    """
    check_metric(metric)
    j = judge_like(results, records)
    v = j.variants[rule if rule is not None and j.score_based else j.headline]
    verdicts = [bool(x) for x in v.correct] if metric == "strict" else v.mmad()
    return {r.id: x for r, x in zip(j.records, verdicts)}
