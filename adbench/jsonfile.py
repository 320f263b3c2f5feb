"""Reading a JSON file with errors that name the file (and the position of a syntax error)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: str | Path, error: type[Exception] = ValueError, what: str = "file") -> Any:
    """Parse `path`; a missing file or malformed JSON raises `error` with a message naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise error(f"{what} not found: {p}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{p}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
