"""Reader of MMAD's index (`mmad.json`) and the image folders beside it.

`mmad.json` is a dict keyed by the query image's path relative to the data root
(e.g. `DS-MVTec/bottle/image/broken_large/000.png`). Each value has `image_path`,
`mask_path` (may be empty), `similar_templates` and `random_templates` (normal
images) and `conversation`: a list of {Question, Options {letter: text}, Answer,
type}. Each question becomes one Sample with id `<key>#<question index>`.

The dataset is the key's first path component, the category its second; an image is
normal when its folder is `good` (MMAD's rule), and the defect type is the folder name.

Paths. Keys, image paths and templates are relative to the data root. A `mask_path`
that starts with the key's dataset folder is too; any other `mask_path` is relative
to the key's first three components (`DS-MVTec/bottle/image/`), which is how MMAD's
own tools join it. A path that leaves the data root (absolute, or climbing out with
'..') is an error naming the entry. A mask inside a folder named after the image's
stem (MVTec LOCO's `ground_truth/<kind>/<stem>/000.png`) stands for the whole folder:
LOCO annotates each defect region in its own file, and pseudo boxes OR them.

Images are not opened here: a missing or corrupt image becomes a recorded failure when
a run reaches it, and `adbench data check` lists it beforehand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from adbench.data.layout import Scan, gc_paused
from adbench.data.paths import DataError, join_inside
from adbench.jsonfile import read_json
from adbench.schema import ANOMALOUS, NORMAL, Sample

INDEX_NAME = "mmad.json"


def load_index(path: Path) -> dict[str, Any]:
    """Parse an MMAD index file, with errors that name the file and position."""
    data = read_json(path, DataError, "MMAD index")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object keyed by image path, got {type(data).__name__}")
    return data


def _str_list(value: Any, *, source: str, entry: str, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{source}: entry {entry!r}: field {field!r} must be a list of paths")
    return value


def _canonical_key(key: str, src: str) -> tuple[str, ...]:
    """A key's components; keys are sample ids, so they must be plain relative paths."""
    if not isinstance(key, str) or not key.strip():
        raise DataError(f"{src}: entry {key!r}: empty key")
    norm = key.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise DataError(f"{src}: entry {key!r}: absolute path {key!r} is not allowed (must be relative)")
    parts = tuple(norm.split("/"))
    if ".." in parts:
        raise DataError(f"{src}: entry {key!r}: path {key!r} escapes the data root ('..')")
    if any(p in ("", ".") for p in parts):
        raise DataError(f"{src}: entry {key!r}: key must be a plain relative path (no empty or '.' parts)")
    if len(parts) < 3:
        raise DataError(f"{src}: entry {key!r}: expected <dataset>/<category>/.../<image>")
    return parts


def _mask_path(root: str, parts: tuple[str, ...], rel: str, src: str, key: str) -> str:
    comps = [c for c in rel.replace("\\", "/").split("/") if c not in ("", ".")]
    if comps and comps[0] == parts[0] or rel.replace("\\", "/").startswith("/"):
        mask = join_inside(root, rel, source=src, entry=key)
    else:
        try:
            mask = join_inside(root, "/".join(parts[:3]) + "/" + rel, source=src, entry=key)
        except DataError as e:
            raise DataError(f"{e}: mask_path {rel!r} joined onto {'/'.join(parts[:3])!r}") from e
    folder = os.path.dirname(mask)
    # MVTec LOCO: one file per defect region in a folder named after the image
    return folder if os.path.basename(folder) == os.path.splitext(parts[-1])[0] else mask


def read_mmad(root: Path, index: Path | None = None) -> list[Sample]:
    """All Samples of an MMAD-format suite under `root` (index defaults to root/mmad.json)."""
    with gc_paused():
        return _read_mmad(Path(root), index)


def _read_mmad(root: Path, index: Path | None) -> list[Sample]:
    index = index or root / INDEX_NAME
    data = load_index(index)
    src = str(index)
    root_s = str(root)
    samples: list[Sample] = []
    support: dict[tuple[str, str], set[str]] = {}
    resolved: dict[str, str] = {}  # templates repeat across thousands of entries: resolve each once
    option_sets: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}  # MMAD reuses option lists a lot

    def resolve(rel: str, key: str) -> str:
        path = resolved.get(rel)
        if path is None:
            path = resolved[rel] = join_inside(root_s, rel, source=src, entry=key)
        return path

    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise DataError(f"{src}: entry {key!r}: expected an object, got {type(entry).__name__}")
        parts = _canonical_key(key, src)
        dataset, category, folder = parts[0], parts[1], parts[-2]
        image = join_inside(root_s, entry.get("image_path") or key, source=src, entry=key)
        mask_rel = entry.get("mask_path") or ""
        if not isinstance(mask_rel, str):
            raise DataError(f"{src}: entry {key!r}: field 'mask_path' must be a path")
        mask = _mask_path(root_s, parts, mask_rel, src, key) if mask_rel else None
        label = NORMAL if folder == "good" else ANOMALOUS
        templates = {}
        for field in ("random_templates", "similar_templates"):
            rels = _str_list(entry.get(field), source=src, entry=key, field=field)
            templates[field] = [resolve(r, key) for r in rels]
        support.setdefault((dataset, category), set()).update(
            templates["random_templates"] + templates["similar_templates"]
        )
        conversation = entry.get("conversation")
        if not isinstance(conversation, list) or not conversation:
            raise DataError(f"{src}: entry {key!r}: 'conversation' must be a non-empty list")
        meta = {"key": key, **templates}
        for i, qa in enumerate(conversation):
            where = f"{key!r} question {i}"
            if not isinstance(qa, dict):
                raise DataError(f"{src}: entry {where}: expected an object")
            missing = [f for f in ("Question", "Options", "Answer", "type") if f not in qa]
            if missing:
                raise DataError(f"{src}: entry {where}: missing field(s) {', '.join(missing)}")
            options = qa["Options"]
            if not isinstance(options, dict) or not options:
                raise DataError(f"{src}: entry {where}: 'Options' must be a non-empty object")
            try:
                sig = tuple(options.items())
                clean = option_sets.get(sig)
            except TypeError:  # an unhashable option value: parse it without the memo
                sig, clean = (), None
            if clean is None:
                clean = {str(k).strip(): str(v) for k, v in options.items()}
                if sig:
                    option_sets[sig] = clean
            options = clean
            gold = str(qa["Answer"]).strip()
            if gold not in options:
                raise DataError(f"{src}: entry {where}: Answer {gold!r} is not one of the options {sorted(options)}")
            samples.append(
                Sample(
                    id=f"{key}#{i}",
                    dataset=dataset,
                    category=category,
                    image=image,
                    label=label,
                    defect=folder,
                    qtype=str(qa["type"]),
                    question=str(qa["Question"]),
                    options=dict(options),
                    gold=gold,
                    mask=mask,
                    references=list(templates["random_templates"]),
                    meta=dict(meta),
                )
            )
    pools = {k: sorted(v) for k, v in support.items()}  # shared per category: MMAD has 39k questions
    for s in samples:
        s.support = pools[(s.dataset, s.category)]
    return samples


def scan_mmad(root: Path) -> Scan:
    """`read_mmad` in the shape of the folder readers (an index has no folders to misplace)."""
    return Scan(read_mmad(root))
