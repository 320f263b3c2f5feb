"""Reader of MMAD's index (`mmad.json`) and the image folders beside it.

`mmad.json` is a dict keyed by the query image's path relative to the MMAD folder
(e.g. `DS-MVTec/bottle/image/broken_large/000.png`). Each value has `image_path`,
`mask_path` (null for normal images), `similar_templates` and `random_templates`
(normal images) and `conversation`: a list of {Question, Options {letter: text},
Answer, type}. Each question becomes one Sample with id `<key>#<question index>`.

Paths follow MMAD's own evaluation scripts (jam-cc/MMAD,
`evaluation/examples/Transformers/internvl_query.py` and
`evaluation/examples/SoftPatch/call.py: call_ground_truth`):
- the query image is read at `<MMAD folder>/<key>`; `image_path` is the same file
  relative to `<dataset>/<category>/` (`image/broken_large/000.png`) and is never opened;
- `mask_path` is relative to `<MMAD folder>/<dataset>/<category>/`
  (`rbg_mask/broken_large/000_rbg_mask.png`, `ground_truth/bad/000.png`). When the path
  without its extension names a folder (MVTec LOCO: `ground_truth/logical_anomalies/000.png`
  next to the folder `.../000/`), the mask is that folder: every mask file in it, OR-ed.
  A `.jpg` mask that does not exist is looked for as `.png` (GoodsAD's masks);
- templates are relative to the MMAD folder (`MVTec-AD/bottle/train/good/001.png`).

The dataset is the key's first component, the category its second, the defect type
the image's folder; an image is normal when its key contains `good` (the rule of
MMAD's `helper/summary.py`). A path that leaves the data root (absolute, or climbing
out with '..') is an error naming the entry.

Images are not opened here: a missing or corrupt image becomes a recorded failure when
a run reaches it, and `adbench data check` lists it beforehand. Masks are only looked
up (a stat per anomalous image), to settle folder masks and GoodsAD's extension.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from adbench.data.layout import GOOD, Scan, gc_paused
from adbench.data.paths import DataError, is_absolute, join_inside
from adbench.jsonfile import read_json
from adbench.schema import ANOMALOUS, IMAGE_KEY, NORMAL, Sample

INDEX_NAME = "mmad.json"


def load_index(path: Path) -> dict[str, Any]:
    """Parse an MMAD index file, with errors that name the file and position."""
    data = read_json(path, DataError, "MMAD index", unique_keys=True)
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
    if is_absolute(norm):
        raise DataError(f"{src}: entry {key!r}: absolute path {key!r} is not allowed (must be relative)")
    parts = tuple(norm.split("/"))
    if ".." in parts:
        raise DataError(f"{src}: entry {key!r}: path {key!r} escapes the data root ('..')")
    if any(p in ("", ".") for p in parts):
        raise DataError(f"{src}: entry {key!r}: key must be a plain relative path (no empty or '.' parts)")
    if len(parts) < 3:
        raise DataError(f"{src}: entry {key!r}: expected <dataset>/<category>/.../<image>")
    return parts


def resolve_mask(root: str, parts: tuple[str, ...], rel: str, src: str, key: str) -> str:
    """The mask of entry `key`: a file, or (MVTec LOCO) a folder of per-region mask files.

    `rel` is relative to `<root>/<dataset>/<category>/`, as MMAD's scripts join it.
    """
    if is_absolute(rel):
        raise DataError(f"{src}: entry {key!r}: absolute mask_path {rel!r} is not allowed (must be relative)")
    base = "/".join(parts[:2])
    try:
        path = join_inside(root, f"{base}/{rel}", source=src, entry=key)
    except DataError as e:
        raise DataError(f"{e}: mask_path {rel!r} is relative to {base + '/'!r}") from e
    stem, ext = os.path.splitext(path)
    if os.path.isdir(stem):  # LOCO: one file per defect region, in a folder named after the image
        return stem
    if ext.lower() == ".jpg" and not os.path.exists(path) and os.path.exists(stem + ".png"):
        return stem + ".png"  # GoodsAD's index names the masks .jpg; the files are .png
    return path


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
        image = join_inside(root_s, key, source=src, entry=key)
        for field in ("image_path", "mask_path"):
            if not isinstance(entry.get(field) or "", str):
                raise DataError(f"{src}: entry {key!r}: field {field!r} must be a path or null")
        mask_rel = entry.get("mask_path") or ""
        mask = resolve_mask(root_s, parts, mask_rel, src, key) if mask_rel else None
        label = NORMAL if GOOD in key else ANOMALOUS  # MMAD's summary: 'good' anywhere in the key
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
        meta = {IMAGE_KEY: key, **templates}
        for i, qa in enumerate(conversation):
            where = f"{key!r} question {i}"
            if not isinstance(qa, dict):
                raise DataError(f"{src}: entry {where}: expected an object")
            missing = [f for f in ("Question", "Options", "Answer", "type") if f not in qa]
            if missing:
                raise DataError(f"{src}: entry {where}: missing field(s) {', '.join(missing)}")
            wrong = [f for f in ("Question", "Answer", "type") if not isinstance(qa[f], str)]
            if wrong:  # a number or list here is a broken index, not something to str() into a question
                raise DataError(f"{src}: entry {where}: field(s) {', '.join(wrong)} must be text")
            options = qa["Options"]
            if not isinstance(options, dict) or not options:
                raise DataError(f"{src}: entry {where}: 'Options' must be a non-empty object")
            sig = tuple(options.items())
            clean = option_sets.get(sig) if all(isinstance(v, str) for v in options.values()) else None
            if clean is None:
                bad = [k for k, v in options.items() if not isinstance(v, str)]
                if bad:
                    raise DataError(f"{src}: entry {where}: option(s) {', '.join(bad)} must be text")
                clean = option_sets[sig] = {k.strip(): v for k, v in options.items()}
            options = clean
            gold = qa["Answer"].strip()
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
                    qtype=qa["type"],
                    question=qa["Question"],
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
