"""The run directory: config.json, samples.jsonl (append-only), results.json.

A run spread over several processes (`adbench.distributed`) has one more kind of file
while a session is in progress: each rank appends its Records to its own shard,
`samples.rank<R>.jsonl`, with the same habits as samples.jsonl. The run's records are
samples.jsonl and every shard, read in that order (shards by rank); a later line for
an id wins. Rank 0, holding the run's lock, folds the shards into samples.jsonl at the
start and at the end of every session (`rewrite`: samples.jsonl replaced atomically,
then the shards removed), so a finished run, however many processes made it, is the
directory a single process leaves; only a session killed midway leaves shards, which
every reader reads and the next session folds in. A single-process run never has a
shard.

Crash safety rests on four habits:
- each batch of Records is appended with one write() followed by fsync, so a killed
  process leaves at most one partial last line, which the next open cuts off; a write
  that fails (disk full, read-only) is undone at once, so even then no partial line stays;
- config.json and results.json are replaced atomically (write a temporary file, then
  rename), so they are either the old or the new version;
- an exclusive lock on the run directory stops two processes writing one run; every
  command that changes a run file holds it (`adbench run`, `adbench score`);
- a reader without the lock (`adbench score` while a run is in progress, tables,
  reports) never changes a file: it reads one snapshot of samples.jsonl and ignores a
  partial last line instead of cutting it.

Every file is checked for the shape adbench writes (an object with the right fields, not
only valid JSON), so a damaged file is a one-line error naming it, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from adbench.errors import UserError
from adbench.jsonfile import read_json as read_json_file
from adbench.schema import ParseStatus, Record, Role, TextEnum

CONFIG = "config.json"
SAMPLES = "samples.jsonl"
RESULTS = "results.json"
LOCK = ".lock"
#: A rank's shard of samples.jsonl while a multi-process session is in progress (see the module docstring).
SHARD = "samples.rank{rank}.jsonl"
_SHARD_NAME = re.compile(r"samples\.rank(\d+)\.jsonl")


class StoreError(UserError):
    """A damaged, busy or unwritable run file or output path; the message names the file."""


class RunBusy(StoreError):
    """Another adbench process holds the run's lock (a run in progress)."""


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace `path` by `obj` as JSON: the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(f"cannot write {path}: {_reason(e)}; the previous version, if any, is unchanged") from e


def write_text_file(path: Path, text: str) -> None:
    """An output file (a table, a report): a one-line error naming it when it cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise StoreError(f"cannot write {path}: {_reason(e)}") from e


def read_json(path: Path) -> Any:
    return read_json_file(path, StoreError, "run file")


# -- shapes ----------------------------------------------------------------------------------

_NONE = type(None)
#: The JSON type of every Record field (what samples.jsonl lines must hold).
RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "dataset": (str,), "category": (str,), "qtype": (str,), "label": (int, _NONE),
    "gold": (str,), "image": (str,), "text": (str, _NONE), "answer": (str, _NONE),
    "score": (int, float, _NONE), "correct": (bool, _NONE), "error": (str, _NONE), "parse_status": (str,),
    "usage": (dict,), "defect": (str,), "role": (str,), "retryable": (bool,), "boxes": (list,),
    "gt_boxes": (list,), "stages": (dict,), "references": (list,), "mask": (str, _NONE), "question": (str,),
    "options": (dict,), "meta": (dict,),
}
#: Fields whose text is one of a closed set (the enum's values).
RECORD_VALUES: dict[str, type[TextEnum]] = {"parse_status": ParseStatus, "role": Role}
#: Fields a Record cannot be built without (the rest have defaults).
RECORD_REQUIRED = ("id", "dataset", "category", "qtype", "label", "gold", "image", "text", "answer", "score",
                   "correct", "error", "parse_status")


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
               float: "a number", _NONE: "null"}


def _json_type(v: Any) -> str:
    return _TYPE_NAMES.get(type(v), type(v).__name__)


def _type_names(types: type | tuple[type, ...]) -> str:
    t = types if isinstance(types, tuple) else (types,)
    return " or ".join(dict.fromkeys(_TYPE_NAMES.get(x, x.__name__) for x in t))


def record_problem(d: Any) -> str | None:
    """Why `d` (one parsed samples.jsonl line) is not a Record, or None."""
    if not isinstance(d, dict):
        return f"expected a JSON object (a Record), got {_json_type(d)}"
    if not isinstance(d.get("id"), str) or not d["id"]:
        return "a record without an 'id' (a non-empty string)"
    missing = [k for k in RECORD_REQUIRED if k not in d]
    if missing:
        return f"record {d['id']!r} lacks {', '.join(missing)}"
    for key, types in RECORD_TYPES.items():
        if key in d and not isinstance(d[key], types):
            return f"record {d['id']!r}: {key} should be {_type_names(types)}, got {_json_type(d[key])}"
    for key, enum in RECORD_VALUES.items():
        if key in d and d[key] not in tuple(enum):
            valid = ", ".join(repr(m.value) for m in enum)
            return f"record {d['id']!r}: {key} should be one of {valid}, got {d[key]!r}"
    return None


def _require(obj: Any, path: Path, fields: dict[str, type | tuple[type, ...]], what: str) -> dict[str, Any]:
    """`obj` if it is an object whose listed fields (where present) have the listed types."""
    if not isinstance(obj, dict):
        raise StoreError(f"{path}: expected a JSON object ({what}), got {_json_type(obj)}")
    for key, types in fields.items():
        if key in obj and not isinstance(obj[key], types):
            raise StoreError(f"{path}: {key!r} should be {_type_names(types)}, got {_json_type(obj[key])}")
    return obj


_CONFIG_FIELDS: dict[str, type | tuple[type, ...]] = {
    "task": str, "model": str, "task_args": dict, "model_args": dict, "sessions": list, "n_samples": int,
    "n_expected": int, "model_config": dict, "task_config": dict,
}
_RESULTS_FIELDS: dict[str, type | tuple[type, ...]] = {
    "task": str, "model": str, "metrics": dict, "counts": dict, "rules": dict, "usage": dict, "complete": bool,
    "boxes": dict,
}


def check_config(config: Any, path: Path) -> dict[str, Any]:
    """config.json as adbench writes it: an object naming its task and model."""
    _require(config, path, _CONFIG_FIELDS, "a run's configuration")
    for key in ("task", "model"):
        if key not in config:
            raise StoreError(f"{path}: no {key!r}; not a run's config.json")
    if not all(isinstance(s, dict) for s in config.get("sessions", [])):
        raise StoreError(f"{path}: 'sessions' should be a list of objects")
    return config


def check_results(results: Any, path: Path) -> dict[str, Any]:
    """results.json as adbench writes it: task, model, metrics per dataset (each with an accuracy), counts."""
    _require(results, path, _RESULTS_FIELDS, "a run's results")
    for key in ("task", "model", "metrics", "counts"):
        if key not in results:
            raise StoreError(f"{path}: no {key!r}; run `adbench score {path.parent}` to rebuild it")
    for name, entry in results["metrics"].items():
        if not isinstance(entry, dict) or "accuracy" not in entry:
            raise StoreError(f"{path}: metrics[{name!r}] should be an object with an 'accuracy'; "
                             f"run `adbench score {path.parent}` to rebuild it")
    for rule, entry in results.get("rules", {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("accuracy"), dict):
            raise StoreError(f"{path}: rules[{rule!r}] should be an object with per-dataset 'accuracy'")
    return results


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.config_path = self.dir / CONFIG
        self.samples_path = self.dir / SAMPLES
        self.results_path = self.dir / RESULTS
        self.holds_lock = False  # only the holder of the run's lock may change samples.jsonl in place

    def _make_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocker = next((p for p in (self.dir, *self.dir.parents) if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                raise StoreError(f"cannot create the run directory {self.dir}: {blocker} is a file, not a folder "
                                 "(--out names the folder that holds runs)") from e
            raise StoreError(f"cannot create the run directory {self.dir}: {_reason(e)}") from e

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock; a second process on the same run gets RunBusy."""
        import fcntl

        self._make_dir()
        try:
            fh = open(self.dir / LOCK, "w")  # noqa: SIM115 - closed below, after the lock is released
        except OSError as e:
            raise StoreError(f"cannot lock the run directory {self.dir}: {_reason(e)}") from e
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise RunBusy(f"run directory {self.dir} is in use by another adbench process") from e
            self.holds_lock = True
            try:
                yield
            finally:
                self.holds_lock = False
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- config / results ------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        return check_config(read_json(self.config_path), self.config_path)

    def write_results(self, results: dict[str, Any]) -> None:
        write_json_atomic(self.results_path, results)

    def read_results(self) -> dict[str, Any]:
        return check_results(read_json(self.results_path), self.results_path)

    # -- records ---------------------------------------------------------------------
    def shard_path(self, rank: int) -> Path:
        return self.dir / SHARD.format(rank=rank)

    def shards(self) -> list[Path]:
        """The shard files of a multi-process session (in progress, or killed before it folded them), by rank."""
        try:
            found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _SHARD_NAME.fullmatch(p.name))]
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot list the run directory {self.dir}: {_reason(e)}") from e
        return [p for _, p in sorted(found)]

    def _read_lines(self, path: Path, repair: bool) -> bytes:
        """The whole lines of one records file, read once (one snapshot even while a run appends).

        A last line without its newline is a write in progress or one a kill cut short:
        it is left out, and with `repair` (only under the run's lock) cut off the file.
        """
        try:
            with open(path, "rb+" if repair else "rb") as f:
                data = f.read()
                end = data.rfind(b"\n") + 1
                if repair and end != len(data):
                    f.truncate(end)
        except FileNotFoundError:
            return b""
        except OSError as e:
            raise StoreError(f"cannot read {path}: {_reason(e)}") from e
        return data[:end]

    def load_records(self, *, repair: bool = True) -> list[Record]:
        """Records of samples.jsonl and the shards, in file order, one per id (a later line for the same id wins).

        A partial last line is always left out; it is also cut off the file when `repair`
        and this store holds the run's lock (`locked()`). Without the lock nothing is
        changed, whatever `repair` says: a run may be appending that very line.
        """
        by_id: dict[str, Record] = {}
        for path in (self.samples_path, *self.shards()):
            for record in self._parse(path, self._read_lines(path, repair and self.holds_lock)):
                by_id.pop(record.id, None)
                by_id[record.id] = record
        return list(by_id.values())

    @staticmethod
    def _parse(path: Path, data: bytes) -> Iterator[Record]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise StoreError(f"{path}: not UTF-8 text (byte {e.start}); is it a samples.jsonl?") from e
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise StoreError(f"{path}:{lineno}: malformed record: {e.msg}") from e
            problem = record_problem(d)
            if problem:
                raise StoreError(f"{path}:{lineno}: {problem}")
            yield Record.from_dict(d)

    def append(self, records: Iterable[Record], rank: int | None = None) -> None:
        """Append one batch with one write and an fsync; on failure the file is as it was.

        To samples.jsonl, or with `rank` (a multi-process session) to that rank's shard.
        """
        path = self.samples_path if rank is None else self.shard_path(rank)
        recs = list(records)
        data = "".join(json.dumps(r.to_dict(), default=str) + "\n" for r in recs).encode("utf-8")
        if not data:
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot append to {path}: {_reason(e)}") from e
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:  # a short write (possible near a full disk) continues where it stopped
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as e:
                # Undo the partial line at once: it would otherwise sit before the next batch's lines.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                full = " (disk full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
                raise StoreError(
                    f"cannot append to {path}: {_reason(e)}{full}; the {len(recs)} records of this "
                    "batch were not saved, the earlier ones are intact: make room and run the same command again"
                ) from e
        finally:
            os.close(fd)

    def rewrite(self, records: Iterable[Record]) -> None:
        """Make `records` the run's records: samples.jsonl replaced atomically, then the shards removed.

        Drops records that will be asked again, and folds a multi-process session's shards in.
        A kill between the two steps leaves shards whose records samples.jsonl already
        holds (read once, as every id is) or that are asked again: never a lost record.
        """
        shards = self.shards()
        tmp = self.samples_path.with_name(f".{SAMPLES}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r.to_dict(), default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.samples_path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot rewrite {self.samples_path}: {_reason(e)}; it is unchanged") from e
        for shard in shards:
            try:
                shard.unlink(missing_ok=True)
            except OSError as e:
                raise StoreError(f"cannot remove {shard} (its records are now in {self.samples_path}): "
                                 f"{_reason(e)}") from e

    def fold_shards(self) -> None:
        """Fold a multi-process session's shards into samples.jsonl (the caller holds the run's lock)."""
        if self.shards():
            self.rewrite(self.load_records())
