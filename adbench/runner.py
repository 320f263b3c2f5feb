"""Running a model on a task: batches, resume, progress, provenance.

The run directory is `OUT/<task>/<model>/<run-id>/`, where the run id is a hash of
everything that determines the answers (model and task arguments, data root, limit,
seed). Running the same command again therefore finds the same directory and resumes:
finished Records are skipped, Records of transient failures (`retryable`) are asked
again, and the metrics are recomputed over everything recorded.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adbench import registry
from adbench.data.paths import DataError, default_data_root
from adbench.images import ImageError, check_image
from adbench.model import SCORE
from adbench.provenance import environment, now
from adbench.schema import Query, Record, Response, Sample
from adbench.store import RunStore, StoreError
from adbench.task import stable_hash


class RunError(RuntimeError):
    """A run that cannot start (no samples, a run directory of another configuration)."""


@dataclass
class RunSpec:
    model: str
    task: str
    model_args: dict[str, Any] = field(default_factory=dict)
    task_args: dict[str, Any] = field(default_factory=dict)
    data_root: Path | None = None
    limit: int | None = None
    batch_size: int = 8
    seed: int = 0
    out: Path = Path("runs")
    run_id: str | None = None
    retry_failed: bool = True
    max_cost: float | None = None  # USD; the run stops before a batch that would pass it
    progress: bool = True

    def identity(self, data_root: Path, runtime_args: Sequence[str] = ()) -> dict[str, Any]:
        """What makes two runs the same run (and so the run id).

        `runtime_args` are the model's -M arguments that change how answers are fetched,
        not which (an API adapter's concurrency, timeout, cache folder): a run resumed
        with other values keeps its directory.
        """
        return {
            "model": self.model,
            "model_args": {k: v for k, v in self.model_args.items() if k not in runtime_args},
            "task": self.task,
            "task_args": self.task_args,
            "data_root": str(data_root),
            "limit": self.limit,
            "seed": self.seed,
        }


@dataclass
class RunOutcome:
    run_dir: Path
    results: dict[str, Any]
    n_new: int
    stopped: str | None = None  # why the run stopped early (budget), else None


def _rank(seed: int, sample_id: str) -> str:
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()


def stratified_subset(samples: Sequence[Sample], n: int | None, seed: int) -> list[Sample]:
    """A deterministic subset of `n` samples spread evenly over dataset, category, label and type.

    Each stratum is ordered by a seeded hash of the sample id; strata are then taken
    from in turn, so `--limit 8` on a suite of 4 categories gives two of each rather
    than the first eight files. The result keeps the suite's order.
    """
    if n is None or n >= len(samples):
        return list(samples)
    if n <= 0:
        raise RunError(f"--limit must be positive, got {n}")
    strata: dict[tuple[Any, ...], list[Sample]] = defaultdict(list)
    for s in samples:
        strata[(s.dataset, s.category, s.label if s.label is not None else -1, s.qtype)].append(s)
    # Interleave the strata of different datasets (0th of each dataset, then 1st, ...), so
    # that a limit smaller than the number of strata still spreads over every dataset.
    by_dataset: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for key in sorted(strata, key=str):
        by_dataset[key[0]].append(key)
    order = [keys[i] for i in range(max(map(len, by_dataset.values())))
             for _, keys in sorted(by_dataset.items()) if i < len(keys)]
    queues = [sorted(strata[k], key=lambda s: _rank(seed, s.id)) for k in order]
    chosen: set[str] = set()
    depth = 0
    while len(chosen) < n:
        for q in queues:
            if depth < len(q) and len(chosen) < n:
                chosen.add(q[depth].id)
        depth += 1
    return [s for s in samples if s.id in chosen]


def _predict(model: Any, queries: list[Query]) -> list[Response]:
    """model.predict with isolation: an exception fails only the query that caused it."""
    try:
        responses = list(model.predict(queries))
        if len(responses) != len(queries):
            raise RuntimeError(f"adapter returned {len(responses)} responses for {len(queries)} queries")
        return responses
    except Exception as e:  # noqa: BLE001 - adapter faults become recorded failures
        if len(queries) == 1:
            return [Response.failure(f"{type(e).__name__}: {e}")]
        return [r for q in queries for r in _predict(model, [q])]


class _ImageChecker:
    """Checks each image file once per run (references are shared by many samples)."""

    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}

    def problem(self, paths: Sequence[str]) -> str | None:
        for p in paths:
            if p not in self.seen:
                try:
                    check_image(p)
                    self.seen[p] = None
                except ImageError as e:
                    self.seen[p] = str(e)
            if self.seen[p]:
                return self.seen[p]
        return None


def process_batch(task: Any, model: Any, batch: Sequence[Sample], checker: _ImageChecker) -> list[Record]:
    """Render, check, predict and record one batch; every sample yields exactly one Record."""
    slots: list[Record | None] = []
    queries: list[Query] = []
    pending: list[tuple[int, Sample]] = []
    for s in batch:
        problem = checker.problem([*s.references, s.image])
        if problem is None:
            try:
                queries.append(task.render(s))
                pending.append((len(slots), s))
                slots.append(None)
                continue
            except (ImageError, DataError, OSError, ValueError) as e:
                problem = f"cannot render sample {s.id}: {e}"
        slots.append(task.make_record(s, Response.failure(problem)))
    if queries:
        for (i, s), r in zip(pending, _predict(model, queries)):
            slots[i] = task.make_record(s, r)
    return [r for r in slots if r is not None]


def _cost(records: Sequence[Record]) -> float:
    return float(sum((r.usage or {}).get("cost_usd") or 0.0 for r in records))


def run(spec: RunSpec) -> RunOutcome:
    data_root = (spec.data_root or default_data_root()).expanduser().resolve()
    if spec.batch_size < 1:
        raise RunError(f"--batch-size must be at least 1, got {spec.batch_size}")
    random.seed(spec.seed)
    registry.check_model(spec.model)
    task = registry.make_task(spec.task, **spec.task_args)
    samples = task.samples(data_root)
    if not samples:
        raise RunError(f"task {spec.task!r} found no samples under {data_root}; see `adbench data check`")
    samples = stratified_subset(samples, spec.limit, spec.seed)
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise RunError(f"task {spec.task!r} yields duplicate sample ids; a reader bug")
    model = registry.make_model(spec.model, defaults={"seed": spec.seed}, **spec.model_args)
    if getattr(model, "output", None) == SCORE:
        samples += task.calibration_samples(data_root, samples)

    identity = spec.identity(data_root, getattr(model, "runtime_args", ()))
    run_id = spec.run_id or stable_hash(identity)[:12]
    store = RunStore(Path(spec.out) / spec.task / spec.model / run_id)
    with store.locked():
        config = _config(spec, task, model, identity, run_id, samples, store)
        store.write_config(config)
        outcome = _execute(spec, task, model, samples, store)
        config["sessions"][-1].update(ended=now(), new_records=outcome.n_new, stopped=outcome.stopped)
        store.write_config(config)
    close = getattr(model, "close", None)
    if callable(close):
        close()
    return outcome


def _config(
    spec: RunSpec, task: Any, model: Any, identity: dict[str, Any], run_id: str, samples: list[Sample], store: RunStore
) -> dict[str, Any]:
    prompt = "\n".join([getattr(task, "prompt_text", lambda: "")(), getattr(model, "prompt_text", lambda: "")()])
    task_config = getattr(task, "config", dict)()
    config = {
        "run_id": run_id,
        **identity,
        "batch_size": spec.batch_size,
        "model_config": getattr(model, "config", dict)(),
        "model_output": getattr(model, "output", None),
        # a fixed threshold (0.5) only means something for scores that are probabilities (CLIP)
        "score_is_probability": bool(getattr(model, "score_is_probability", False)),
        "task_config": task_config,
        "prompt_hash": stable_hash(prompt),
        "task_hash": stable_hash(task_config),
        "split_hash": (task_config.get("split") or {}).get("hash"),
        "samples_hash": stable_hash(sorted(s.id for s in samples)),
        "n_samples": len(samples),
        "environment": environment(),
        "sessions": [],
    }
    if store.config_path.exists():
        old = store.read_config()
        # prompt_hash: the same -M values can name a prompt whose text changed (-M instruction_file=)
        for key in ("model", "model_args", "task", "task_args", "limit", "seed", "samples_hash", "prompt_hash"):
            if old.get(key) != config.get(key):
                raise RunError(
                    f"{store.dir} holds a run with a different {key} ({old.get(key)!r} vs {config.get(key)!r}); "
                    "choose another --run-id or --out"
                )
        config["sessions"] = old.get("sessions", [])
        config["started_at"] = old.get("started_at", now())
    else:
        config["started_at"] = now()
    config["sessions"].append({"started": now()})
    return config


def _execute(spec: RunSpec, task: Any, model: Any, samples: list[Sample], store: RunStore) -> RunOutcome:
    existing = store.load_records()
    keep = [r for r in existing if not (spec.retry_failed and r.error is not None and r.retryable)]
    if len(keep) != len(existing):
        store.rewrite(keep)
    done = {r.id for r in keep}
    pending = [s for s in samples if s.id not in done]
    checker = _ImageChecker()
    spent = _cost(keep)
    stopped = None
    n_new = 0
    bar = _progress(spec, total=len(samples), initial=len(samples) - len(pending))
    try:
        for start in range(0, len(pending), spec.batch_size):
            batch = pending[start : start + spec.batch_size]
            if spec.max_cost is not None and n_new:
                estimate = spent / max(len(done) + n_new, 1) * len(batch)
                if spent + estimate > spec.max_cost:
                    stopped = f"budget: ${spent:.4f} spent of ${spec.max_cost:.4f}; the next batch would pass it"
                    break
            records = process_batch(task, model, batch, checker)
            store.append(records)
            n_new += len(records)
            spent += _cost(records)
            if bar is not None:
                bar.update(len(records))
                postfix = {"failed": sum(r.failed for r in records)}
                if spent:
                    postfix["cost"] = f"${spent:.4f}"
                bar.set_postfix(postfix, refresh=False)
    finally:
        if bar is not None:
            bar.close()
    results = score_run(store, task, store.read_config(), samples=samples)
    if stopped:
        results["stopped"] = stopped
        store.write_results(results)
    return RunOutcome(store.dir, results, n_new, stopped)


def _progress(spec: RunSpec, total: int, initial: int) -> Any:
    if not spec.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"{spec.model} on {spec.task}", unit="sample", file=sys.stderr)


def score_run(
    store: RunStore, task: Any, config: dict[str, Any], samples: Sequence[Sample] | None = None
) -> dict[str, Any]:
    """Recompute results.json from samples.jsonl (no inference)."""
    records = store.load_records()
    if samples is not None:
        wanted = {s.id for s in samples}
        records = [r for r in records if r.id in wanted]
    scored = task.score(records)
    usage: dict[str, float] = defaultdict(float)
    for r in records:
        for k, v in (r.usage or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                usage[k] += v
    results = {"task": config["task"], "model": config["model"], "run_id": store.dir.name, **scored,
               "usage": dict(usage)}
    if "rules" in results:
        results["score_is_probability"] = bool(config.get("score_is_probability"))
    if samples is not None:
        results["counts"]["n_expected"] = sum(1 for s in samples if s.role != "calibration")
        results["complete"] = len(records) == len(samples)
    store.write_results(results)
    return results


def rescore(run_dir: Path) -> dict[str, Any]:
    """`adbench score RUN_DIR`: rebuild the task from config.json and rescore its Records."""
    store = RunStore(run_dir)
    if not store.config_path.exists():
        raise StoreError(f"{run_dir} is not a run directory (no config.json)")
    config = store.read_config()
    task = registry.make_task(config["task"], **config.get("task_args", {}))
    return score_run(store, task, config)
