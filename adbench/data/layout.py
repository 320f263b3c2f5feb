"""What every on-disk layout reader shares: image listing, mask lookup, problems, samples.

Readers of folder layouts (MVTec style, MVTec LOCO, DAGM) and of CSV indexes (VisA)
all produce the same thing: one Anomaly Detection Sample per image, with its label,
defect type, mask path, the category's normal training images as `support`, and one
normal reference image drawn deterministically from them. Sample ids are the
dataset name plus the image's path relative to the dataset folder, '/'-separated, so
they are the same on every machine.

Readers never drop a file silently: anything they cannot place (an unknown folder, an
anomalous image without its mask) is returned as a `Problem` next to the samples.
They do not open images (that would make reading slow); `adbench data check`
verifies them and a run turns a missing or unreadable image into a recorded failure.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adbench.data.paths import DataError
from adbench.schema import ANOMALOUS, ANOMALY_DETECTION, IMAGE_KEY, NORMAL, Sample

#: Image file extensions, compared case-insensitively (.png, .PNG, .JPG, .bmp ...).
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

#: MMAD's Anomaly Detection question, used by every yes/no suite.
AD_QUESTION = "Is there any defect in the object?"
AD_OPTIONS = {"A": "Yes.", "B": "No."}

GOOD = "good"


@dataclass(frozen=True)
class Problem:
    """Something a reader or `data check` could not use, with the path it concerns."""

    kind: str  # "unknown folder", "missing mask", "missing image", "unreadable image", ...
    path: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Scan:
    """A reader's result: the samples it built and the problems it met."""

    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def natural_key(s: str) -> tuple[object, ...]:
    """Sort key that puts Class2 before Class10."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def subdirs(folder: Path) -> list[str]:
    """Names of the visible sub-folders, naturally sorted."""
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if e.is_dir() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    return sorted(names, key=natural_key)


def category_folders(root: Path, splits: Sequence[str], scan: Scan,
                     extra: Sequence[str] = ()) -> Iterator[tuple[str, Path, list[str]]]:
    """(category, folder, subfolders) of every category folder that holds a split folder.

    The checks every MVTec-like layout shares, recorded as problems rather than raised:
    a missing dataset folder, a category folder with no split folder inside, and
    subfolders that are neither a split nor one of `extra` (e.g. ground_truth).
    """
    if not root.is_dir():
        scan.problems.append(Problem("missing dataset folder", str(root)))
        return
    for category in subdirs(root):
        cat_dir = root / category
        parts = subdirs(cat_dir)
        if not any(p in splits for p in parts):
            names = " or ".join(f"{p}/" for p in splits)
            scan.problems.append(Problem("unknown folder", str(cat_dir), f"no {names} inside"))
            continue
        scan.problems += [Problem("unknown folder", str(cat_dir / p)) for p in parts if p not in (*splits, *extra)]
        yield category, cat_dir, parts


def list_files(folder: Path) -> tuple[list[str], list[str]]:
    """(image file names, other visible file names) of one folder, sorted."""
    images, other = [], []
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.name.startswith(".") or not e.is_file():
                    continue
                (images if is_image(e.name) else other).append(e.name)
    except FileNotFoundError:
        return [], []
    return sorted(images), sorted(other)


def mask_index(folder: Path) -> dict[str, str]:
    """Masks of one ground-truth folder by the stem of the image they belong to.

    MVTec AD, MPDD and DTD-Synthetic name a mask `<stem>_mask.png`, GoodsAD and MMAD's
    copy of VisA `<stem>.png`; both are found, whatever the extension's case.
    """
    out: dict[str, str] = {}
    images, _ = list_files(folder)
    for name in images:
        stem = os.path.splitext(name)[0]
        out.setdefault(stem[: -len("_mask")] if stem.endswith("_mask") else stem, name)
    return out


def rank(seed: int, *parts: object, sep: str = "\x1f", bits: int = 64) -> int:
    """A seeded, machine-independent pseudo-random integer: every seeded draw in adbench is one.

    The first `bits` bits of SHA-256 over the seed and the parts joined by `sep`, so the
    same on every machine and Python version (Python's own hash() is salted per process).
    Each draw keeps the `sep` and `bits` it was first released with, since changing them
    would change published splits, subsets and references:

    - reference images (`draw_references`): "\\x1f", 64 bits, modulo the pool's size;
    - the 20/80 split (`adbench.data.split`): "\\x1f", 256 bits, as a sort key;
    - the `--limit` subset (`adbench.runner.stratified_subset`): ":", 256 bits, as a sort key;
    - the `chance` model's choice: ":", 64 bits, modulo the number of options (it still
      computes this inline; tests/test_rank.py pins that the two agree).
    """
    key = sep.join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(key).digest(), "big") >> (256 - bits)


def draw_references(sample_id: str, pool: Sequence[str], k: int, seed: int, exclude: str = "") -> list[str]:
    """`k` distinct images of `pool` chosen by a seeded hash of the sample id.

    Depends only on the seed, the id and the pool's order (readers sort it), so the
    same reference is drawn on every machine. `exclude` (the query image itself, for
    a normal training image) is never drawn.
    """
    if len(pool) <= k + 1:  # small pools: settle exactly how many can be drawn
        pool = [p for p in pool if p != exclude]
        k = min(k, len(pool))
    chosen: list[str] = []
    j = 0
    while len(chosen) < k:
        # O(1) per draw: large pools (DAGM: 1,000 per class) are never copied or scanned
        pick = pool[rank(seed, sample_id, j) % len(pool)]
        if pick != exclude and pick not in chosen:
            chosen.append(pick)
        j += 1
    return chosen


def ad_sample(
    *,
    dataset: str,
    category: str,
    rel: str,
    image: Path,
    label: int,
    defect: str,
    split: str,
    mask: str | None = None,
    masks: Sequence[str] = (),
) -> Sample:
    """One Anomaly Detection Sample (Yes = anomalous) for an image of a folder layout."""
    meta: dict[str, object] = {IMAGE_KEY: f"{dataset}/{rel}", "split": split}
    if masks:
        meta["masks"] = list(masks)
    return Sample(
        id=f"{dataset}/{rel}",
        dataset=dataset,
        category=category,
        image=str(image),
        label=label,
        defect=defect,
        qtype=ANOMALY_DETECTION,
        question=AD_QUESTION,
        options=dict(AD_OPTIONS),
        gold="A" if label == ANOMALOUS else "B",
        mask=mask,
        meta=meta,
    )


def yes_no_samples(root: Path, images: Iterable[tuple[Path | str, int]], *, dataset: str,
                   category: str | None = None) -> list[Sample]:
    """One Anomaly Detection Sample (Yes = anomalous) per `(image, label)` under `root`.

    The smallest reader a task of one's own needs (see README, "Adding a task in one
    file"): `label` is `NORMAL` or `ANOMALOUS`, the id is `<dataset>/<image's path
    relative to root>` ('/'-separated, the same on every machine), an anomalous image's
    defect is its folder's name, and `category` defaults to the dataset's name. The
    samples are sorted by id, so the order does not depend on how the folder was listed.
    No images at all is an error naming `root`: a task that finds nothing is a wrong path.
    """
    out = []
    for image, label in images:
        if label not in (NORMAL, ANOMALOUS):
            raise ValueError(f"{image}: label must be NORMAL (0) or ANOMALOUS (1), got {label!r}")
        path = Path(image)
        out.append(ad_sample(dataset=dataset, category=category or dataset, rel=path.relative_to(root).as_posix(),
                             image=path, label=label, defect=GOOD if label == NORMAL else path.parent.name,
                             split="test"))
    if not out:
        raise DataError(f"{dataset}: no images found under {root}")
    return sorted(out, key=lambda s: s.id)


def attach_support(samples: Sequence[Sample], is_support: Callable[[Sample], bool], seed: int = 0) -> None:
    """Give every sample its category's normal training images and one reference drawn from them.

    The support list is shared between the samples of a category (one list object),
    which keeps suites with tens of thousands of samples light.
    """
    pools: dict[tuple[str, str], list[str]] = {}
    for s in samples:
        if is_support(s):
            pools.setdefault((s.dataset, s.category), []).append(s.image)
    for key in pools:
        pools[key].sort()
    for s in samples:
        pool = pools.get((s.dataset, s.category), [])
        s.support = pool
        s.references = draw_references(s.id, pool, 1, seed, exclude=s.image)


def label_of(defect: str) -> int:
    return NORMAL if defect == GOOD else ANOMALOUS


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that all stay alive.

    Reading MMAD creates ~40k Samples with their dicts and lists; each generation-0
    threshold crossing makes the collector walk the growing heap for nothing (none of
    it is garbage). Pausing it halves the read time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
