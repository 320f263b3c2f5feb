"""Where data lives, and resolving dataset-relative paths without escaping the data root."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class DataError(ValueError):
    """Malformed or unsafe dataset content; the message names the file and the entry."""


def default_data_root() -> Path:
    """`$ADBENCH_DATA`, else `$XDG_CACHE_HOME/adbench/data` (default `~/.cache/adbench/data`)."""
    env = os.environ.get("ADBENCH_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "adbench" / "data"


def resolve_inside(root: Path, rel: str, *, source: str, entry: str) -> Path:
    """Join `rel` (a '/'-separated path from a dataset index) onto `root`, refusing escapes.

    Absolute paths, drive letters and '..' components are rejected with an error that
    names the index file (`source`) and the offending entry, before any file is opened.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise DataError(f"{source}: entry {entry!r}: empty or non-string path {rel!r}")
    norm = rel.replace("\\", "/")
    pure = PurePosixPath(norm)
    if pure.is_absolute() or (len(norm) > 1 and norm[1] == ":"):
        raise DataError(f"{source}: entry {entry!r}: absolute path {rel!r} is not allowed (must be relative)")
    if ".." in pure.parts:
        raise DataError(f"{source}: entry {entry!r}: path {rel!r} escapes the data root ('..')")
    path = root.joinpath(*pure.parts)
    # A symlink inside the root may still point outside; that is the user's own
    # choice of layout, so only the textual escape is refused here.
    return path
