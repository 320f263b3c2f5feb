"""Reader of MMAD's index (`mmad.json`) and the image folders beside it.

`mmad.json` is a dict keyed by the query image's path relative to the data root
(e.g. `DS-MVTec/bottle/image/broken_large/000.png`). Each value has `image_path`,
`mask_path` (may be empty), `similar_templates` and `random_templates` (normal
images) and `conversation`: a list of {Question, Options {letter: text}, Answer,
type}. Each question becomes one Sample with id `<key>#<question index>`.

The dataset is the key's first path component, the category its second; an image is
normal when its folder is `good` (MMAD's rule), and the defect type is the folder name.
Images are not opened here: a missing or corrupt image becomes a recorded failure when
a run reaches it, and `adbench data check` lists it beforehand.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from adbench.data.paths import DataError, resolve_inside
from adbench.schema import ANOMALOUS, NORMAL, Sample

INDEX_NAME = "mmad.json"


def load_index(path: Path) -> dict[str, Any]:
    """Parse an MMAD index file, with errors that name the file and position."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise DataError(f"MMAD index not found: {path}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object keyed by image path, got {type(data).__name__}")
    return data


def _str_list(value: Any, *, source: str, entry: str, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{source}: entry {entry!r}: field {field!r} must be a list of paths")
    return value


def read_mmad(root: Path, index: Path | None = None) -> list[Sample]:
    """All Samples of an MMAD-format suite under `root` (index defaults to root/mmad.json)."""
    root = Path(root)
    index = index or root / INDEX_NAME
    data = load_index(index)
    src = str(index)
    samples: list[Sample] = []
    support: dict[tuple[str, str], set[str]] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise DataError(f"{src}: entry {key!r}: expected an object, got {type(entry).__name__}")
        resolve_inside(root, key, source=src, entry=key)
        parts = PurePosixPath(key.replace("\\", "/")).parts
        if len(parts) < 3:
            raise DataError(f"{src}: entry {key!r}: expected <dataset>/<category>/.../<image>")
        dataset, category, folder = parts[0], parts[1], parts[-2]
        image = resolve_inside(root, entry.get("image_path") or key, source=src, entry=key)
        mask_rel = entry.get("mask_path") or ""
        mask = str(resolve_inside(root, mask_rel, source=src, entry=key)) if mask_rel else None
        label = NORMAL if folder == "good" else ANOMALOUS
        templates = {}
        for field in ("random_templates", "similar_templates"):
            rels = _str_list(entry.get(field), source=src, entry=key, field=field)
            templates[field] = [str(resolve_inside(root, r, source=src, entry=key)) for r in rels]
        support.setdefault((dataset, category), set()).update(
            templates["random_templates"] + templates["similar_templates"]
        )
        conversation = entry.get("conversation")
        if not isinstance(conversation, list) or not conversation:
            raise DataError(f"{src}: entry {key!r}: 'conversation' must be a non-empty list")
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
            options = {str(k).strip(): str(v) for k, v in options.items()}
            gold = str(qa["Answer"]).strip()
            if gold not in options:
                raise DataError(f"{src}: entry {where}: Answer {gold!r} is not one of the options {sorted(options)}")
            samples.append(
                Sample(
                    id=f"{key}#{i}",
                    dataset=dataset,
                    category=category,
                    image=str(image),
                    label=label,
                    defect=folder,
                    qtype=str(qa["type"]),
                    question=str(qa["Question"]),
                    options=options,
                    gold=gold,
                    mask=mask,
                    references=list(templates["random_templates"]),
                    meta={"key": key, **templates},
                )
            )
    pools = {k: sorted(v) for k, v in support.items()}  # shared per category: MMAD has 39k questions
    for s in samples:
        s.support = pools[(s.dataset, s.category)]
    return samples
