"""Running a model on a task: batches, resume, progress, provenance.

The run directory is `OUT/<task>/<model>/<run-id>/`, where the run id is a hash of
everything that determines the answers (model and task arguments, data root, limit,
seed). Running the same command again therefore finds the same directory and resumes:
finished Records are skipped, Records of transient failures (`retryable`) are asked
again, and the metrics are recomputed over everything recorded.

How a run ends (`RunOutcome.exit_code`, the exit status of `adbench run`):
- 0: every sample asked, failures within `--max-failed`;
- 1 (EXIT_FAILED): the model failed its first queries all with one error (a bad API
  key, an unknown model, no network: those queries are not recorded, so the same
  command asks them again once the cause is fixed), or more samples of this session
  failed than `--max-failed` allows (they are recorded, and stay valid);
- 3 (EXIT_BUDGET): stopped by `--max-cost` before every sample was asked.
Errors before or while writing (bad arguments, data, run files, disk full) are
exceptions (RunError, StoreError, DataError), which `adbench` prints as one line and
exits 2.

Under torchrun / accelerate launch (`adbench.distributed`) the same command is one run
in N processes: each loads the model onto its own device; rank 0 holds the run's lock,
opens the session (resume, retries) and tells the others which samples are left; each
rank answers its share of them (`distributed.shares`, balanced over the strata) into its
own shard of samples.jsonl; after every batch the ranks sum their counts (progress on
rank 0, the budget, an early stop on any rank stops all); at the end rank 0 folds the
shards into samples.jsonl and scores, and every rank returns the same outcome. The run id
does not depend on the number of processes, so any other number resumes the run.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from adbench import registry
from adbench.data.layout import rank
from adbench.data.paths import DataError, resolve_data_root
from adbench.distributed import DEFAULT_TIMEOUT_S, Group, World, describe_rank, shares
from adbench.errors import UserError
from adbench.images import ImageError, check_image
from adbench.model import ModelAdapter, OutputKind, as_adapter, declared_output
from adbench.provenance import environment, now
from adbench.schema import Query, Record, Response, Role, Sample
from adbench.store import RunBusy, RunStore, StoreError, read_json
from adbench.task import Task, stable_hash

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130

#: --max-failed by default: a session in which more than half of the samples asked failed exits 1.
DEFAULT_MAX_FAILED = 0.5
#: The early stop judges at least this many model answers: never a single one, which may be that
#: sample's own problem (and, not recorded, would then stop every later run at the same place).
FIRST_ANSWERS = 2


class RunError(UserError):
    """A run that cannot start (no samples, a bad argument, a run directory of another configuration)."""


def check_folder_name(name: str, what: str) -> str:
    """`name` is one folder name (a run id, a model object's name), never a path out of OUT/<task>/<model>/."""
    bad = (not name or name.startswith(".") or any(c in name for c in "/\\\0")
           or any(ord(c) < 32 for c in name))
    if bad:
        raise RunError(f"{what} {name!r} is not a folder name: give a name without '/', '\\' or control "
                       "characters that does not start with '.'")
    return name


def check_run_id(run_id: str) -> str:
    """A --run-id is one folder name inside OUT/<task>/<model>/, never a path out of it."""
    return check_folder_name(run_id, "--run-id")


def check_max_failed(max_failed: float) -> float:
    """--max-failed: a share below 1 (0.5: half of the samples asked) or a whole number of samples."""
    ok = math.isfinite(max_failed) and max_failed >= 0 and (max_failed < 1 or float(max_failed).is_integer())
    if not ok:
        raise RunError(f"--max-failed must be a share below 1 (0.5 = half of the samples asked) or a whole "
                       f"number of samples (0, 1, 2, ...), got {max_failed:g}")
    return max_failed


def failure_limit(max_failed: float, n_asked: int) -> float:
    """How many failed samples a session of `n_asked` samples may have under --max-failed."""
    return max_failed * n_asked if max_failed < 1 else max_failed


def check_max_cost(max_cost: float | None) -> float | None:
    if max_cost is not None and not (math.isfinite(max_cost) and max_cost >= 0):
        raise RunError(f"--max-cost must be a number of USD >= 0, got {max_cost:g}")
    return max_cost


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
    max_cost: float | None = None  # USD; checked before every batch (the first batch of a run is not known)
    max_failed: float = DEFAULT_MAX_FAILED  # a share of this session's samples (< 1) or a count
    progress: bool = True
    dist_timeout: float = DEFAULT_TIMEOUT_S  # seconds a process waits for the others (multi-process runs)
    label: str | None = None  # the run's row name in tables (config.json `label`); None keeps the recorded one

    def check(self) -> None:
        """The arguments that can be refused before anything is read or written."""
        if self.batch_size < 1:
            raise RunError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.run_id is not None:
            check_run_id(self.run_id)
        if self.label is not None and not self.label.strip():
            raise RunError("--label must name the run: it is empty")
        check_max_cost(self.max_cost)
        check_max_failed(self.max_failed)
        if not (math.isfinite(self.dist_timeout) and self.dist_timeout > 0):
            raise RunError(f"--dist-timeout must be a positive number of seconds, got {self.dist_timeout:g}")

    def identity(self, data_root: Path, runtime_args: Sequence[str] = (),
                 instance_config: dict[str, Any] | None = None) -> dict[str, Any]:
        """What makes two runs the same run (and so the run id).

        `runtime_args` are the model's -M arguments that change how answers are fetched,
        not which (an API adapter's concurrency, timeout, cache folder): a run resumed
        with other values keeps its directory. `instance_config`: a model passed as an
        object (the Python API) has no -M arguments; its `config()` stands in for them.
        """
        identity = {
            "model": self.model,
            "model_args": {k: v for k, v in self.model_args.items() if k not in runtime_args},
            "task": self.task,
            "task_args": self.task_args,
            "data_root": str(data_root),
            "limit": self.limit,
            "seed": self.seed,
        }
        if instance_config is not None:
            identity["model_config"] = instance_config
        return identity


@dataclass
class RunOutcome:
    run_dir: Path
    results: dict[str, Any]
    n_new: int  # records written by this session
    stopped: str | None = None  # why the run stopped early (budget, or the model failing), else None
    n_new_failed: int = 0  # failed records among them
    failed_early: str | None = None  # the one error the model's first queries all failed with (not recorded)
    max_failed: float = DEFAULT_MAX_FAILED
    warnings: list[str] = field(default_factory=list)
    is_main: bool = True  # False on the other ranks of a multi-process run: rank 0 prints the summary

    @property
    def too_many_failed(self) -> bool:
        return self.n_new_failed > failure_limit(self.max_failed, self.n_new)

    @property
    def exit_code(self) -> int:
        if self.failed_early is not None or self.too_many_failed:
            return EXIT_FAILED
        if self.stopped is not None:
            return EXIT_BUDGET
        return EXIT_OK


def stratum(s: Sample) -> tuple[Any, ...]:
    """A sample's stratum: dataset, category, label, question type (the `--limit` subset and the ranks' shares)."""
    return (s.dataset, s.category, s.label if s.label is not None else -1, s.qtype)


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
        strata[stratum(s)].append(s)
    # Interleave the strata of different datasets (0th of each dataset, then 1st, ...), so
    # that a limit smaller than the number of strata still spreads over every dataset.
    by_dataset: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for key in sorted(strata, key=str):
        by_dataset[key[0]].append(key)
    order = [keys[i] for i in range(max(map(len, by_dataset.values())))
             for _, keys in sorted(by_dataset.items()) if i < len(keys)]
    # ":" and the whole digest: the order every `--limit` subset has been drawn with
    queues = [sorted(strata[k], key=lambda s: rank(seed, s.id, sep=":", bits=256)) for k in order]
    chosen: set[str] = set()
    depth = 0
    while len(chosen) < n:
        for q in queues:
            if depth < len(q) and len(chosen) < n:
                chosen.add(q[depth].id)
        depth += 1
    return [s for s in samples if s.id in chosen]


def _predict(model: ModelAdapter, queries: list[Query]) -> list[Response]:
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



def _process(task: Task, model: ModelAdapter, batch: Sequence[Sample],
             checker: _ImageChecker) -> tuple[list[Record], set[str]]:
    """Render, check, predict and record one batch: a Record per sample, and the ids the model was asked."""
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
    return [r for r in slots if r is not None], {s.id for _, s in pending}


def process_batch(task: Task, model: ModelAdapter, batch: Sequence[Sample], checker: _ImageChecker) -> list[Record]:
    """Render, check, predict and record one batch; every sample yields exactly one Record."""
    return _process(task, model, batch, checker)[0]


def _cost(records: Sequence[Record]) -> float:
    return float(sum((r.usage or {}).get("cost_usd") or 0.0 for r in records))


class _Budget:
    """--max-cost, checked before every batch, resumed or not.

    The next batch's cost is estimated from the records already paid for (this
    session's and earlier sessions'); only a run's very first batch has no estimate.
    In a multi-process run the figures are every rank's (summed after each batch), so
    every rank takes the same decision.
    """

    def __init__(self, max_cost: float | None, spent: float, n: int) -> None:
        self.max_cost = max_cost
        self.spent = spent
        self.n = n

    def add(self, cost: float, n: int) -> None:
        """What the last batch (of every rank) cost, and how many records it made."""
        self.spent += cost
        self.n += n

    def stop_reason(self, n_next: int) -> str | None:
        if self.max_cost is None:
            return None
        estimate = self.spent / self.n * n_next if self.n else 0.0
        # a budget of 0 allows no batch at all, not even the first one, whose cost is unknown
        if self.spent + estimate > self.max_cost or (self.max_cost == 0 and not self.n):
            return (f"budget: ${self.spent:.4f} spent of ${self.max_cost:.4f}; the next batch (about "
                    f"${estimate:.4f}) would pass it")
        return None


def budget_terms(max_cost: float | None, model_name: str, model: ModelAdapter) -> dict[str, Any] | None:
    """What --max-cost means for this model (config.json's session, results.json's `budget`).

    A model without a price (a local model, an API model missing from the price table)
    reports no cost, so a budget cannot stop it: that is said, not silently ignored.
    """
    if max_cost is None:
        return None
    if model.price is not None:
        return {"max_cost_usd": max_cost, "enforced": True}
    return {"max_cost_usd": max_cost, "enforced": False,
            "note": f"--max-cost cannot be enforced: {model_name} has no price, so its cost is unknown "
                    "(an API model: give -M price_in= and -M price_out=, USD per 1M tokens)"}


class _FirstAnswers:
    """Holds back the session's first model answers until they show that the model answers at all.

    A bad API key, an unknown model name or no network fails every query with the same
    error. Recorded, those failures would look like a result (every answer wrong) and a
    permanent one (a 401 is not asked again on resume). So the first answers, at least
    FIRST_ANSWERS of them (the first batch, unless it has fewer), are kept in memory: if
    every one failed with one and the same error, the run stops and records none of them.
    Samples that failed before reaching the model (an unreadable image) are recorded as usual.
    """

    def __init__(self, minimum: int = FIRST_ANSWERS) -> None:
        self.minimum = minimum
        self.held: list[Record] = []
        self.answers: list[Record] = []
        self.deciding = True
        self.error: str | None = None  # set when the model failed every first answer with this error

    def add(self, records: list[Record], asked: set[str]) -> list[Record]:
        """Records that may be written now."""
        if not self.deciding:
            return records
        self.held += records
        self.answers += [r for r in records if r.id in asked]
        if len(self.answers) < self.minimum:
            return []
        self.deciding = False
        errors = {r.error for r in self.answers}
        if len(errors) == 1 and None not in errors:
            self.error = errors.pop()
            answered = {r.id for r in self.answers}
            keep = [r for r in self.held if r.id not in answered]
        else:
            keep = self.held
        self.held = []
        return keep

    def release(self) -> list[Record]:
        """What is still held when the run ends before a decision (fewer answers than the minimum)."""
        out, self.held = self.held, []
        return out


@dataclass
class _Session:
    n_new: int = 0
    n_failed: int = 0
    stopped: str | None = None
    failed_early: str | None = None

    @classmethod
    def combine(cls, ranks: Sequence[dict[str, Any]]) -> _Session:
        """The whole session from each rank's part (the first rank's reason to stop, in rank order)."""
        return cls(sum(r["new_records"] for r in ranks), sum(r["new_failed"] for r in ranks),
                   next((r["stopped"] for r in ranks if r["stopped"]), None),
                   next((r["failed_early"] for r in ranks if r["failed_early"]), None))


@dataclass
class _Opened:
    """What rank 0 found when it opened the session, for every rank."""

    done: set[str]  # ids recorded and not to be asked again
    spent: float  # their cost (the budget's starting point)


def run(spec: RunSpec, model: Any = None) -> RunOutcome:
    """Run `spec` (resuming its run directory); the same spec again continues or finds nothing left to do.

    `model`: an adapter object to run instead of the registered `spec.model` (the Python API,
    `adbench.evaluate`). Its name (`as_adapter(model).name`) becomes the run's model name, its
    `config()` takes the place of -M arguments in the run id, and it is not closed afterwards
    (the caller owns it).
    """
    spec.check()
    world = World.from_env()
    instance = None
    if model is not None:
        instance = as_adapter(model)
        if spec.model_args:
            raise RunError("model_args (-M, evaluate(model_args=)) are arguments of a registered model; a model "
                           "object is configured by its own constructor")
        check_folder_name(instance.name, "the model's name")
        spec = replace(spec, model=instance.name)
    data_root = resolve_data_root(spec.data_root)
    random.seed(spec.seed)
    if instance is None:
        registry.check_model(spec.model)
    group = Group(world, spec.dist_timeout)  # before the model: on GPUs it picks this process's device
    try:
        task = registry.make_task(spec.task, **spec.task_args)
        samples = group.main_first(lambda: task.samples(data_root))  # rank 0 first: it may write caches
        if not samples:
            raise RunError(f"task {spec.task!r} found no samples under {data_root}; see `adbench data check`")
        samples = stratified_subset(samples, spec.limit, spec.seed)
        ids = [s.id for s in samples]
        if len(set(ids)) != len(ids):
            raise RunError(f"task {spec.task!r} yields duplicate sample ids; a reader bug")
        adapter = instance or as_adapter(registry.make_model(spec.model, defaults={"seed": spec.seed},
                                                             **spec.model_args))
        try:
            if adapter.output == OutputKind.SCORE:
                samples += group.main_first(lambda: task.calibration_samples(data_root, samples))
            return _run_model(spec, task, adapter, samples, data_root, group, instance is not None)
        finally:
            if instance is None:  # an object the caller passed stays theirs: it may run another task next
                adapter.close()
    finally:
        group.close()


def _run_model(spec: RunSpec, task: Task, model: ModelAdapter, samples: list[Sample], data_root: Path,
               group: Group, is_instance: bool = False) -> RunOutcome:
    world = group.world
    # the number of processes is not part of the identity; a model object's config() takes the -M arguments' place
    identity = spec.identity(data_root, model.runtime_args, model.config() if is_instance else None)
    run_id = spec.run_id or stable_hash(identity)[:12]
    store = RunStore(Path(spec.out) / spec.task / spec.model / run_id)
    budget = budget_terms(spec.max_cost, spec.model, model)
    warnings = [budget["note"]] if budget and not budget["enforced"] else []
    for w in warnings if world.is_main else ():  # said before the run starts, not only in the summary after it
        print(f"adbench: warning: {w}", file=sys.stderr)
    config: dict[str, Any] = {}
    with contextlib.ExitStack() as held:

        def open_session() -> _Opened:  # rank 0, for every rank
            held.enter_context(store.locked())  # held by rank 0 until the session ends
            config.update(_config(spec, task, model, identity, run_id, samples, store))
            existing = store.load_records()  # a damaged samples.jsonl is refused before config.json changes
            config["sessions"][-1]["world_size"] = world.size
            if budget is not None:
                config["sessions"][-1]["budget"] = budget
            store.write_config(config)
            keep = [r for r in existing if not (spec.retry_failed and r.error is not None and r.retryable)]
            if len(keep) != len(existing) or store.shards():  # retries dropped, a killed session's shards folded in
                store.rewrite(keep)
            return _Opened({r.id for r in keep}, _cost(keep))

        opened = group.from_main(open_session)
        enforced = spec.max_cost if budget and budget["enforced"] else None
        mine = _execute(spec, task, model, samples, store, opened, _Budget(enforced, opened.spent, len(opened.done)),
                        group)
        ranks = group.gather({**describe_rank(world), "new_records": mine.n_new, "new_failed": mine.n_failed,
                              "stopped": mine.stopped, "failed_early": mine.failed_early})
        session = _Session.combine(ranks)

        def close_session() -> dict[str, Any]:  # rank 0, once every rank has written its share
            store.fold_shards()
            config["sessions"][-1].update(ended=now(), new_records=session.n_new, new_failed=session.n_failed,
                                          stopped=session.stopped, ranks=ranks)
            store.write_config(config)
            return score_run(store, task, config, samples=samples)

        results = group.from_main(close_session)
    return RunOutcome(store.dir, results, session.n_new, session.stopped, session.n_failed, session.failed_early,
                      spec.max_failed, warnings, is_main=world.is_main)


def _config(spec: RunSpec, task: Task, model: ModelAdapter, identity: dict[str, Any], run_id: str,
            samples: list[Sample], store: RunStore) -> dict[str, Any]:
    prompt = "\n".join([task.prompt_text(), model.prompt_text()])
    task_config = task.config()
    config = {
        "run_id": run_id,
        **identity,
        "batch_size": spec.batch_size,
        "model_config": identity["model_config"] if "model_config" in identity else model.config(),
        "model_output": model.output,
        # a fixed threshold (0.5) only means something for scores that are probabilities (CLIP)
        "score_is_probability": bool(model.score_is_probability),
        "task_config": task_config,
        "prompt_hash": stable_hash(prompt),
        "task_hash": stable_hash(task_config),
        "split_hash": (task_config.get("split") or {}).get("hash"),
        "samples_hash": stable_hash(sorted(s.id for s in samples)),
        "n_samples": len(samples),
        "n_expected": sum(1 for s in samples if s.role != Role.CALIBRATION),
        "environment": environment(),
        "sessions": [],
    }
    if "model_config" in identity:  # a model object (the Python API): which class answered
        obj = getattr(model, "inner", model)  # as_adapter wraps an object that is not a Model
        config["model_object"] = f"{type(obj).__module__}.{type(obj).__qualname__}"
    label = spec.label
    if store.config_path.exists():
        old = store.read_config()
        # prompt_hash: the same -M values can name a prompt whose text changed (-M instruction_file=)
        for key in ("model", "model_args", "task", "task_args", "limit", "seed", "samples_hash", "prompt_hash"):
            if old.get(key) != config.get(key):
                raise RunError(
                    f"{store.dir} holds a run with a different {key} ({old.get(key)!r} vs {config.get(key)!r}); "
                    "choose another --run-id or --out"
                )
        if "model_config" in identity and stable_hash(old.get("model_config")) != stable_hash(identity["model_config"]):
            raise RunError(f"{store.dir} holds a run of {spec.model} with another config() "
                           f"({old.get('model_config')!r} vs {identity['model_config']!r}); choose another run_id or out")
        config["sessions"] = old.get("sessions", [])
        config["started_at"] = old.get("started_at", now())
        if label is None:
            label = old.get("label")  # a label stays until another --label replaces it
    else:
        config["started_at"] = now()
    if label is not None:
        config["label"] = label
    config["sessions"].append({"started": now()})
    return config


def _execute(spec: RunSpec, task: Task, model: ModelAdapter, samples: list[Sample], store: RunStore,
             opened: _Opened, budget: _Budget, group: Group) -> _Session:
    """This rank's share of the samples left, batch by batch; the ranks sum their counts after every batch."""
    world = group.world
    pending = [s for s in samples if s.id not in opened.done]
    # every rank computes every rank's share (the same on all of them): no rank gets all of one stratum
    shared = shares(pending, world.size, key=lambda s: (str(s.role), *stratum(s))) if world.size > 1 else [pending]
    mine = shared[world.rank]
    size = spec.batch_size
    steps = max(math.ceil(len(share) / size) for share in shared)
    shard = world.rank if world.size > 1 else None  # one process writes samples.jsonl itself
    checker = _ImageChecker()
    first = _FirstAnswers()
    session = _Session()

    def write(records: list[Record]) -> None:
        store.append(records, rank=shard)
        session.n_new += len(records)
        session.n_failed += sum(r.failed for r in records)

    bar = _progress(spec, total=len(samples), initial=len(samples) - len(pending)) if world.is_main else None
    try:
        for step in range(steps):
            batch = mine[step * size : (step + 1) * size]
            # the same decision on every rank: the budget's figures and the next batches' sizes are global
            session.stopped = budget.stop_reason(sum(len(s[step * size : (step + 1) * size]) for s in shared))
            if session.stopped:
                break
            records: list[Record] = []
            if batch:
                records, asked = _process(task, model, batch, checker)
                write(first.add(records, asked))
                if first.error is not None:
                    session.failed_early = first.error
                    session.stopped = (f"the model failed its first {len(first.answers)} queries, all with the "
                                       f"same error (not recorded): {first.error}")
            n, failed, cost, stopping = group.sum([len(records), sum(r.failed for r in records), _cost(records),
                                                   session.stopped is not None])
            budget.add(cost, int(n))
            if stopping:  # this rank's model failed from the start, or another rank's did
                break
            if bar is not None:
                bar.update(int(n))
                postfix = {"failed": int(failed)}
                if budget.spent:
                    postfix["cost"] = f"${budget.spent:.4f}"
                bar.set_postfix(postfix, refresh=False)
        write(first.release())
    finally:
        if bar is not None:
            bar.close()
    return session


def _progress(spec: RunSpec, total: int, initial: int) -> Any:
    if not spec.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"{spec.model} on {spec.task}", unit="sample", file=sys.stderr)


# -- results.json ------------------------------------------------------------------------------

#: results.json keys build_results derives itself; any other key a results.json carries is kept on rescoring.
DERIVED_KEYS = frozenset({"task", "model", "label", "run_id", "metrics", "counts", "usage", "rules", "threshold_rule",
                          "score_is_probability", "complete", "stopped", "budget", "failures", "cells", "scored_by",
                          "boxes"})
#: How many distinct error texts results.json lists (most frequent first).
TOP_ERRORS = 3


def build_results(task: Task, config: dict[str, Any], records: Sequence[Record], run_id: str,
                  previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """results.json from the Records and what config.json knows of the run: the one place that builds it,
    for `adbench run` and `adbench score` alike.

    The figures, `cells` and `scored_by` are the results engine's (`adbench.results`), which
    every table, summary and report evaluates again. Besides them: `counts.n_expected` and
    `complete` (every sample recorded?), `stopped` (why the last session ended early),
    `budget` (its --max-cost and whether it could be enforced) and `failures` (the most
    frequent errors). A run whose config.json
    predates a field keeps the value its previous results.json had (`previous`), and any
    key of `previous` this function does not derive is carried over unchanged.
    """
    previous = previous or {}
    # the model kind the adapter declared (config.json); only runs recorded before it fall back to the records
    results: dict[str, Any] = {"task": config["task"], "model": config["model"], "run_id": run_id,
                               **task.score(records, kind=declared_output(config.get("model_output"))),
                               "usage": _usage(records)}
    if config.get("label"):  # the run's row name in tables (--label)
        results["label"] = config["label"]
    if "rules" in results:
        results["score_is_probability"] = bool(config.get("score_is_probability"))
    counts = results["counts"]
    prev_counts = previous.get("counts") if isinstance(previous.get("counts"), dict) else {}
    n_expected = config.get("n_expected", prev_counts.get("n_expected"))
    if n_expected is not None:
        counts["n_expected"] = n_expected
    if isinstance(config.get("n_samples"), int):
        results["complete"] = len(records) >= config["n_samples"]
    elif "complete" in previous:
        results["complete"] = previous["complete"]
    last = (config.get("sessions") or [{}])[-1]
    for key, source in (("stopped", "stopped"), ("budget", "budget")):
        if last.get(source):
            results[key] = last[source]
    errors = Counter(r.error for r in records if r.error is not None and r.role != Role.CALIBRATION)
    if errors:
        results["failures"] = [{"error": e, "n": n} for e, n in errors.most_common(TOP_ERRORS)]
    for key, value in previous.items():
        if key not in DERIVED_KEYS:
            results.setdefault(key, value)
    return results


def _usage(records: Sequence[Record]) -> dict[str, float]:
    usage: dict[str, float] = defaultdict(float)
    for r in records:
        for k, v in (r.usage or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                usage[k] += v
    return dict(usage)


def _previous_results(store: RunStore) -> dict[str, Any]:
    """The results.json being replaced, as far as it is readable (a damaged one is what rescoring fixes)."""
    if not store.results_path.exists():
        return {}
    try:
        previous = read_json(store.results_path)
    except StoreError:
        return {}
    return previous if isinstance(previous, dict) else {}


def score_run(
    store: RunStore, task: Task, config: dict[str, Any], samples: Sequence[Sample] | None = None
) -> dict[str, Any]:
    """Recompute results.json from samples.jsonl (no inference) and write it; the caller holds the run's lock."""
    records = store.load_records()
    if samples is not None:
        wanted = {s.id for s in samples}
        records = [r for r in records if r.id in wanted]
    results = build_results(task, config, records, store.dir.name, _previous_results(store))
    store.write_results(results)
    return results


@dataclass
class Rescored:
    results: dict[str, Any]
    written: bool  # False: a run holds the lock; figures of a read-only snapshot, results.json untouched


def rescore(run_dir: Path) -> Rescored:
    """`adbench score RUN_DIR`: rebuild the task from config.json and rescore its Records.

    With the run's lock free, score holds it (no run can start meanwhile), cuts a partial
    last line and writes results.json. While a run holds the lock, score changes nothing:
    it scores a read-only snapshot (the complete lines written so far) and leaves
    results.json to the run, which writes it when it ends.
    """
    store = RunStore(run_dir)
    if not store.config_path.exists():
        raise StoreError(f"{run_dir} is not a run directory (no config.json)")
    try:
        with store.locked():
            config = store.read_config()
            return Rescored(score_run(store, _task_of(config), config), True)
    except RunBusy:
        config = store.read_config()
        records = store.load_records(repair=False)
        return Rescored(build_results(_task_of(config), config, records, store.dir.name, _previous_results(store)),
                        False)


def _task_of(config: dict[str, Any]) -> Task:
    return registry.make_task(config["task"], **config.get("task_args", {}))
