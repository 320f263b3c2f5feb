"""A response cache on disk for API models, keyed by the full request.

The key is a hash of everything that determines an answer: endpoint, model snapshot,
messages (images by content hash and encoding settings, not by path, so moving the
data keeps the cache valid), and generation settings. One JSON file per request,
written atomically, so concurrent workers and concurrent runs never see half a file.
Only well-formed answers are stored: a failure is never replayed from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from adbench.provenance import now

#: Bump when the request description changes shape, so old entries stop matching.
KEY_VERSION = 1


def default_cache_dir() -> Path:
    """`$ADBENCH_CACHE/api`, else `$XDG_CACHE_HOME/adbench/api` (default `~/.cache/adbench/api`)."""
    env = os.environ.get("ADBENCH_CACHE")
    if env:
        return Path(env).expanduser() / "api"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "adbench" / "api"


def request_key(description: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a request description."""
    blob = json.dumps({"v": KEY_VERSION, **description}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).expanduser()

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None (absent, or unreadable: a miss, overwritten by the next answer)."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("response"), dict):
            return None
        return entry

    def put(self, key: str, description: dict[str, Any], response: dict[str, Any]) -> None:
        """Store a well-formed response body next to the request it answers (atomic rename)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        entry = {"key": key, "created": now(), "request": description, "response": response}
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
