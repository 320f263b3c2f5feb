"""The run directory: config.json, samples.jsonl (append-only), results.json.

Crash safety rests on three habits:
- each batch of Records is appended with one write() followed by fsync, so a killed
  process leaves at most one partial last line, which the next open cuts off;
- config.json and results.json are replaced atomically (write a temporary file, then
  rename), so they are either the old or the new version;
- an exclusive lock on the run directory stops two processes appending to one run.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from adbench.jsonfile import read_json as read_json_file
from adbench.schema import Record

CONFIG = "config.json"
SAMPLES = "samples.jsonl"
RESULTS = "results.json"
LOCK = ".lock"


class StoreError(RuntimeError):
    """A damaged or busy run directory; the message names the file."""


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return read_json_file(path, StoreError, "run file")


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.config_path = self.dir / CONFIG
        self.samples_path = self.dir / SAMPLES
        self.results_path = self.dir / RESULTS

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock; a second process on the same run gets a clear error."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / LOCK, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise StoreError(f"run directory {self.dir} is in use by another adbench process") from e
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- config / results ------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def write_results(self, results: dict[str, Any]) -> None:
        write_json_atomic(self.results_path, results)

    def read_results(self) -> dict[str, Any]:
        return read_json(self.results_path)

    # -- records ---------------------------------------------------------------------
    def _repair_tail(self) -> None:
        """Cut a partial last line left by a process killed mid-write."""
        if not self.samples_path.exists():
            return
        with open(self.samples_path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def load_records(self, *, repair: bool = True) -> list[Record]:
        """Records in file order, one per id (a later line for the same id wins)."""
        if repair:
            self._repair_tail()
        if not self.samples_path.exists():
            return []
        by_id: dict[str, Record] = {}
        with open(self.samples_path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    if not line.endswith("\n"):  # read-only view of a run being written
                        break
                    raise StoreError(f"{self.samples_path}:{lineno}: malformed record: {e.msg}") from e
                by_id.pop(d["id"], None)
                by_id[d["id"]] = Record.from_dict(d)
        return list(by_id.values())

    def append(self, records: Iterable[Record]) -> None:
        lines = "".join(json.dumps(r.to_dict(), default=str) + "\n" for r in records)
        if not lines:
            return
        with open(self.samples_path, "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, records: Iterable[Record]) -> None:
        """Replace samples.jsonl atomically (drops records that will be asked again)."""
        tmp = self.samples_path.with_name(f".{SAMPLES}.tmp-{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r.to_dict(), default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.samples_path)
