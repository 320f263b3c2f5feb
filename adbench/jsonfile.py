"""Reading a JSON file with errors that name the file (and the position of a syntax error)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class _DuplicateKey(ValueError):
    pass


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # json.loads would keep the last value silently
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def read_json(path: str | Path, error: type[Exception] = ValueError, what: str = "file", *,
              unique_keys: bool = False) -> Any:
    """Parse `path`; a missing, unreadable or malformed file raises `error` with a message naming it.

    `unique_keys` refuses an object that names a key twice (JSON allows it; the last
    value would win without a word).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise error(f"{what} not found: {p}") from e
    except IsADirectoryError as e:
        raise error(f"{what} {p} is a folder, not a JSON file") from e
    except UnicodeDecodeError as e:
        raise error(f"{p}: not UTF-8 text (byte {e.start}: {e.reason}); is it a JSON file?") from e
    except OSError as e:
        raise error(f"cannot read {what} {p}: {e.strerror or e}") from e
    try:
        return json.loads(text, object_pairs_hook=_unique_object if unique_keys else None)
    except json.JSONDecodeError as e:
        raise error(f"{p}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    except _DuplicateKey as e:
        raise error(f"{p}: the key {e.args[0]!r} appears twice in one object; which one is meant?") from e
    except RecursionError as e:
        raise error(f"{p}: JSON nested too deeply to read") from e
