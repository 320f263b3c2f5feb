"""The paper's train / eval split: 20% of the images train, 80% evaluate.

AD-FM trains on "20% of the data, uniformly sampled across object categories" and
evaluates on the remaining 80%. Here the unit is the image (every question about an
image lands on the same side, so no image is ever seen in training and asked about
in evaluation), and the draw is stratified by dataset, category and label: within
each stratum the images are ordered by SHA-256 of `<seed>` and the image key
(`adbench.data.layout.rank`), and the first round(20% of n) train. SHA-256 of plain
strings is the same on every machine and Python version (Python's own `hash()` is
salted per process), so one seed gives one split everywhere.

The split is written as JSON (sorted key lists plus provenance), and its hash, over
the two sorted lists, is what a run records as `split_hash`. A split file of one's
own (for instance the exact split of a published model) is read with the same
format and checked against the index: every image on exactly one side.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adbench.args import ArgumentError
from adbench.data.layout import rank
from adbench.data.paths import DataError
from adbench.jsonfile import read_json
from adbench.schema import Sample

FORMAT = "adbench-split/1"
TRAIN_FRACTION = 0.2
PARTS = ("train", "eval")
CACHE_DIR = Path(".adbench-cache") / "splits"

Stratum = tuple[str, str, int]  # dataset, category, label


@dataclass(frozen=True)
class Split:
    """Which side each image key is on, and the split's identity."""

    train: frozenset[str]
    eval: frozenset[str]
    hash: str
    path: str | None
    seed: int | None
    train_fraction: float | None

    def part_of(self, key: str) -> str:
        return "train" if key in self.train else "eval"

    def info(self, part: str) -> dict[str, Any]:
        """What QuestionTask.config() records under "split" (the runner keeps `hash` as split_hash)."""
        return {"hash": self.hash, "path": self.path, "part": part, "seed": self.seed,
                "train_fraction": self.train_fraction, "unit": "image",
                "n_train_images": len(self.train), "n_eval_images": len(self.eval)}


def n_train(n: int, fraction: float) -> int:
    """round(n * fraction), halves rounded up (Python's round() would round them to even)."""
    return math.floor(n * fraction + 0.5)


def draw_split(units: Mapping[str, Stratum], seed: int = 0, fraction: float = TRAIN_FRACTION) -> dict[str, Any]:
    """The split file's content for image keys -> (dataset, category, label)."""
    if not 0.0 <= fraction <= 1.0:
        raise ArgumentError(f"train fraction must be within [0, 1], got {fraction}")
    strata: dict[Stratum, list[str]] = defaultdict(list)
    for key, stratum in units.items():
        strata[stratum].append(key)
    train: list[str] = []
    counts = {}
    for stratum in sorted(strata, key=lambda s: (s[0], s[1], s[2])):
        keys = sorted(strata[stratum], key=lambda k: (rank(seed, k, bits=256), k))
        k = n_train(len(keys), fraction)
        train += keys[:k]
        counts["/".join(map(str, stratum))] = {"train": k, "eval": len(keys) - k}
    train_set = set(train)
    return {
        "format": FORMAT,
        "seed": seed,
        "train_fraction": fraction,
        "unit": "image",
        "strata": ["dataset", "category", "label"],
        "counts": counts,
        "train": sorted(train_set),
        "eval": sorted(k for k in units if k not in train_set),
    }


def split_hash(train: Sequence[str], eval: Sequence[str]) -> str:
    """Hash of the membership alone (not of provenance fields or formatting)."""
    blob = json.dumps({"train": sorted(train), "eval": sorted(eval)}, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def units_of(samples: Sequence[Sample]) -> dict[str, Stratum]:
    """Image key -> stratum, from question-level samples (all questions of an image share both)."""
    units: dict[str, Stratum] = {}
    for s in samples:
        key = s.key or s.id
        units.setdefault(key, (s.dataset, s.category, -1 if s.label is None else int(s.label)))
    return units


def load_split(path: Path, units: Mapping[str, Stratum]) -> Split:
    """A split file, checked against the index: disjoint, complete, no unknown images."""
    data = read_json(path, DataError, "split file")
    if not isinstance(data, dict) or not all(isinstance(data.get(p), list) for p in PARTS):
        raise DataError(f"{path}: a split file needs 'train' and 'eval' lists of image keys")
    train, eval_ = set(data["train"]), set(data["eval"])
    both = sorted(train & eval_)
    if both:
        raise DataError(f"{path}: {len(both)} image(s) on both sides, e.g. {both[0]!r}")
    unknown = sorted((train | eval_) - set(units))
    if unknown:
        raise DataError(f"{path}: {len(unknown)} image(s) not in the index, e.g. {unknown[0]!r}")
    missing = sorted(set(units) - train - eval_)
    if missing:
        raise DataError(f"{path}: {len(missing)} image(s) of the index on neither side, e.g. {missing[0]!r}")
    return Split(frozenset(train), frozenset(eval_), split_hash(sorted(train), sorted(eval_)), str(path),
                 data.get("seed"), data.get("train_fraction"))


def make_split(units: Mapping[str, Stratum], cache_root: Path | None, *, name: str = "mmad", seed: int = 0,
               fraction: float = TRAIN_FRACTION) -> Split:
    """Draw the split and write it under `cache_root/.adbench-cache/splits/` (when writable).

    The file name carries a hash of the image keys, the seed and the fraction, so
    another index or seed gets its own file. Writing is a convenience (the split is a
    pure function of its inputs): a read-only data root leaves `path` empty.
    """
    content = draw_split(units, seed, fraction)
    digest = split_hash(content["train"], content["eval"])
    path: Path | None = None
    if cache_root is not None:
        keys_id = hashlib.sha256("\n".join(sorted(units)).encode()).hexdigest()[:12]
        path = Path(cache_root) / CACHE_DIR / f"{name}-{keys_id}-seed{seed}-train{fraction:g}.json"
        text = json.dumps(content, indent=1) + "\n"
        try:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, path)
        except OSError:
            path = None
    return Split(frozenset(content["train"]), frozenset(content["eval"]), digest,
                 str(path) if path else None, seed, fraction)

