"""Where data lives, and resolving dataset-relative paths without escaping the data root."""

from __future__ import annotations

import os
from pathlib import Path

from adbench.errors import UserError


class DataError(UserError):
    """Malformed or unsafe dataset content; the message names the file and the entry."""


def default_data_root() -> Path:
    """`$ADBENCH_DATA`, else `$XDG_CACHE_HOME/adbench/data` (default `~/.cache/adbench/data`)."""
    env = os.environ.get("ADBENCH_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "adbench" / "data"


def resolve_data_root(explicit: Path | None = None) -> Path:
    """The data root a command uses: `explicit` (--data-root), else `$ADBENCH_DATA`, else the user cache.

    A folder the user named (--data-root or $ADBENCH_DATA) must exist: a typo would
    otherwise become a run that finds nothing, or a demo suite generated in an unexpected
    place. Only the default cache folder may be missing (the demo tasks generate the
    demo suite there on first use).
    """
    if explicit is not None:
        root, source = Path(explicit), "--data-root"
    elif os.environ.get("ADBENCH_DATA"):
        root, source = default_data_root(), "$ADBENCH_DATA"
    else:
        return default_data_root().expanduser().resolve()
    root = root.expanduser()
    if root.is_dir():
        return root.resolve()
    what = "is a file, not a folder" if root.exists() else "does not exist"
    raise DataError(
        f"data root {root} ({source}) {what}: give the folder that holds your datasets, or create the demo suite "
        f"there with `adbench data demo --out {root / 'demo'}` (or `adbench demo --data-root {root}`)"
    )


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
