"""Where data lives, and resolving dataset-relative paths without escaping the data root."""

from __future__ import annotations

import os
from pathlib import Path


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

    Absolute paths, drive letters and paths whose '..' components climb above `root`
    are rejected with an error that names the index file (`source`) and the offending
    entry, before any file is opened. A '..' that stays inside the root is folded away
    lexically: MMAD's `mask_path` is joined onto `<dataset>/<category>/`, so a mask
    path may climb out of that folder and still be inside.
    """
    return Path(join_inside(str(root), rel, source=source, entry=entry))


def is_absolute(rel: str) -> bool:
    """Whether an index path is absolute on any system ('/x', '\\x', 'C:...')."""
    norm = rel.replace("\\", "/")
    return norm.startswith("/") or (len(norm) > 1 and norm[1] == ":")


def join_inside(root: str, rel: str, *, source: str, entry: str) -> str:
    """`resolve_inside` on strings: the same checks, without pathlib's cost (indexes have 10^5 paths)."""
    if not isinstance(rel, str) or not rel.strip():
        raise DataError(f"{source}: entry {entry!r}: empty or non-string path {rel!r}")
    norm = rel.replace("\\", "/")
    if is_absolute(norm):
        raise DataError(f"{source}: entry {entry!r}: absolute path {rel!r} is not allowed (must be relative)")
    parts = norm.split("/")
    if "" in parts or "." in parts or ".." in parts:
        kept: list[str] = []
        for part in parts:
            if part in ("", "."):
                continue
            if part == "..":
                if not kept:
                    raise DataError(f"{source}: entry {entry!r}: path {rel!r} escapes the data root ('..')")
                kept.pop()
            else:
                kept.append(part)
        if not kept:
            raise DataError(f"{source}: entry {entry!r}: path {rel!r} names the data root itself, not a file")
        norm = "/".join(kept)
    # A symlink inside the root may still point outside; that is the user's own
    # choice of layout, so only the textual escape is refused here.
    return os.path.join(root, norm)
