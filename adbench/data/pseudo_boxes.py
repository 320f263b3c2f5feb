"""Pseudo ground-truth boxes from anomaly masks, as the AD-FM paper builds them.

The datasets give pixel masks, not boxes. The paper dilates each mask to merge
fragments of one defect, takes connected components, and keeps the smallest box
around each. Here, precisely:

1. The mask is the OR of its files (MVTec LOCO has one file per defect region) and
   of its channels; any non-zero pixel is a defect pixel (VisA stores class ids).
2. It is dilated with a `kernel` x `kernel` square (pixels of the original image), so
   fragments less than about `kernel` pixels apart fall into one component.
   `kernel = 1` turns dilation off.
3. Connected components of the dilated mask (8-connectivity) group the pixels.
4. Each group's box encloses its *original* mask pixels: dilation decides what
   belongs together, never how large a box is. A group with fewer than `min_area`
   original pixels (annotation specks) gives no box.

Boxes are `Box(x1, y1, x2, y2)` in original image pixels with pixel-edge
coordinates: a defect covering columns 3..7 has x1 = 3, x2 = 8. They are sorted
top-to-bottom, then left-to-right.

Extraction costs tens of milliseconds per mask, so results are cached on disk, keyed
by the content hash of the mask file(s) plus the parameters: a second pass reads one
small JSON file per mask. The cache lives in `<data root>/.adbench-cache/boxes/`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from adbench.args import ArgumentError
from adbench.data.layout import is_image
from adbench.errors import UserError
from adbench.images import ImageError, file_sha1, image_size, read_mask_pixels
from adbench.schema import ANOMALOUS, Box, Sample

CACHE_VERSION = 3  # 2: entries record the mask's size; 3: boxes as Box.to_dict()
CACHE_DIR = Path(".adbench-cache") / "boxes"

#: Defaults: a 15 px square joins fragments up to ~15 px apart on MVTec-sized images
#: (700-1024 px); 16 px drops single specks of annotation noise.
DEFAULT_KERNEL = 15
DEFAULT_MIN_AREA = 16


class BoxError(UserError):
    """A mask that cannot be turned into boxes; the message names the file."""


@dataclass(frozen=True)
class BoxParams:
    """The two documented parameters of pseudo-box extraction."""

    kernel: int = DEFAULT_KERNEL  # side of the square dilation kernel, pixels; 1 = no dilation
    min_area: int = DEFAULT_MIN_AREA  # fewest original mask pixels a component needs to give a box

    def __post_init__(self) -> None:
        if int(self.kernel) < 1:
            raise ArgumentError(f"box kernel must be >= 1 pixel, got {self.kernel}")
        if int(self.min_area) < 1:
            raise ArgumentError(f"box min_area must be >= 1 pixel, got {self.min_area}")


def default_cache_dir(data_root: Path) -> Path:
    return Path(data_root) / CACHE_DIR


def mask_files(mask: str | Path) -> list[Path]:
    """The files that make up one mask: the file itself, or every image in a mask folder."""
    p = Path(mask)
    if p.is_dir():
        files = sorted(p / n for n in os.listdir(p) if is_image(n) and not n.startswith("."))
        if not files:
            raise BoxError(f"mask folder has no mask images: {p}")
        return files
    if not p.exists():
        raise BoxError(f"mask file not found: {p}")
    return [p]


def read_mask(files: Sequence[Path]) -> np.ndarray:
    """The OR of several mask files as one boolean array; their sizes must agree."""
    out: np.ndarray | None = None
    for f in files:
        m = read_mask_pixels(f)
        if out is None:
            out = m.copy()
        elif m.shape != out.shape:
            raise BoxError(f"mask {f} is {m.shape[1]}x{m.shape[0]}, the others {out.shape[1]}x{out.shape[0]}")
        else:
            out |= m
    if out is None:
        raise BoxError("no mask files given")
    return out


def boxes_from_mask(mask: np.ndarray, params: BoxParams = BoxParams()) -> list[Box]:
    """Dilate, label connected components, box each component's original pixels."""
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if not mask.any():
        return []
    grown = mask
    if params.kernel > 1:
        # a square max filter is separable, so this is fast even on 1600 px masks
        grown = ndimage.maximum_filter(mask.view(np.uint8), size=int(params.kernel), mode="constant") > 0
    labels, n = ndimage.label(grown, structure=np.ones((3, 3), dtype=bool))
    own = np.where(mask, labels, 0)
    areas = np.bincount(own.ravel(), minlength=n + 1)
    boxes = []
    for i, sl in enumerate(ndimage.find_objects(own, max_label=n), start=1):
        if sl is None or areas[i] < params.min_area:
            continue
        ys, xs = sl
        boxes.append(Box(float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)))
    boxes.sort(key=lambda b: (b.y1, b.x1))
    return boxes


class BoxCache:
    """Mask -> boxes with a content-keyed cache on disk (and in memory for this process).

    `cache_dir=None` computes without storing. A cache that cannot be written (a
    read-only data root) is reported once in `write_error` and otherwise ignored:
    boxes are still computed, only not kept.
    """

    def __init__(self, cache_dir: Path | None, params: BoxParams = BoxParams()) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.params = params
        self.memo: dict[str, tuple[list[Box], tuple[int, int]]] = {}
        self.computed = 0
        self.cached = 0
        self.write_error: str | None = None

    def key(self, files: Sequence[Path]) -> str:
        h = hashlib.sha1()
        h.update(json.dumps({"v": CACHE_VERSION, **asdict(self.params)}, sort_keys=True).encode())
        for f in files:
            try:
                h.update(file_sha1(f).encode())
            except FileNotFoundError as e:
                raise BoxError(f"mask file not found: {f}") from e
            except OSError as e:
                raise BoxError(f"cannot read mask {f}: {e}") from e
        return h.hexdigest()

    def _path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def boxes(self, mask: str | Path) -> list[Box]:
        """Boxes of one mask (a file, or a folder of files to OR), from the cache when there."""
        return self.lookup(mask)[0]

    def lookup(self, mask: str | Path) -> tuple[list[Box], tuple[int, int]]:
        """(boxes, (width, height) of the mask), from the cache when there."""
        memo_key = str(mask)
        if memo_key not in self.memo:
            files = mask_files(mask)
            key = self.key(files)
            path = self._path(key)
            found = self._load(path) if path is not None else None
            if found is None:
                pixels = read_mask(files)
                found = boxes_from_mask(pixels, self.params), (pixels.shape[1], pixels.shape[0])
                self.computed += 1
                if path is not None:
                    self._store(path, *found, files)
            else:
                self.cached += 1
            self.memo[memo_key] = found
        boxes, size = self.memo[memo_key]
        return list(boxes), size

    def _load(self, path: Path) -> tuple[list[Box], tuple[int, int]] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            w, h = data["size"]
            return [Box.from_dict(b) for b in data["boxes"]], (int(w), int(h))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, damaged or of an older version: recompute (and rewrite)

    def _store(self, path: Path, boxes: list[Box], size: tuple[int, int], files: Sequence[Path]) -> None:
        record = {"version": CACHE_VERSION, "params": asdict(self.params), "masks": [f.name for f in files],
                  "size": list(size), "boxes": [b.to_dict() for b in boxes]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as e:
            if self.write_error is None:
                self.write_error = f"box cache {self.cache_dir} is not writable ({e}); boxes are recomputed each run"


#: Why an anomalous sample's mask gave no boxes (`mask_boxes`); `data check` uses them as problem kinds.
UNREADABLE_MASK, MASK_SIZE_MISMATCH, EMPTY_MASK = "unreadable mask", "mask size mismatch", "empty mask"


def mask_boxes(s: Sample, cache: BoxCache) -> tuple[list[Box], tuple[str, str] | None]:
    """An anomalous sample's GT boxes, labelled with its defect type, or none and (kind, note) why.

    No boxes come from a mask that cannot be read, from one whose size differs from its
    image's (boxes on another pixel grid would be wrong), or from one without a defect
    region of at least `min_area` pixels (an all-zero mask, or annotation specks).
    """
    try:
        boxes, size = cache.lookup(s.mask or "")
        shown = image_size(s.image)
    except ImageError as e:
        what = "" if e.path in (str(s.mask), "") else f"{e.path}: "  # the image itself, or one file of a folder
        return [], (UNREADABLE_MASK, what + e.reason)
    except BoxError as e:
        return [], (UNREADABLE_MASK, str(e))
    if size != shown:
        return [], (MASK_SIZE_MISMATCH, f"mask is {size[0]}x{size[1]}, its image {shown[0]}x{shown[1]}")
    if not boxes:
        return [], (EMPTY_MASK, f"no defect region of at least {cache.params.min_area} px")
    return [Box(b.x1, b.y1, b.x2, b.y2, s.defect) for b in boxes], None


def attach_boxes(samples: Iterable[Sample], cache: BoxCache) -> list[tuple[str, str]]:
    """Fill `Sample.boxes` of every anomalous sample that has a mask (`mask_boxes`).

    Returns (sample id, "<kind> <mask>: <why>") for each mask that gave no boxes; the
    caller records it (a Record's `meta["gt_boxes_error"]`): nothing is dropped silently.
    """
    notes = []
    for s in samples:
        if s.label != ANOMALOUS or not s.mask or s.boxes:
            continue
        s.boxes, problem = mask_boxes(s, cache)
        if problem:
            notes.append((s.id, f"{problem[0]} {s.mask}: {problem[1]}"))
    return notes


@dataclass
class PrecomputeResult:
    n_masks: int = 0
    n_boxes: int = 0
    computed: int = 0
    cached: int = 0
    errors: list[tuple[str, str]] | None = None  # (mask, error)
    write_error: str | None = None


def _work(chunk: Sequence[str], cache_dir: Path | None, params: BoxParams) -> PrecomputeResult:
    cache = BoxCache(cache_dir, params)
    out = PrecomputeResult(errors=[])
    for m in chunk:
        try:
            out.n_boxes += len(cache.boxes(m))
        except (BoxError, ImageError) as e:
            out.errors.append((m, str(e)))
    out.n_masks, out.computed, out.cached, out.write_error = len(chunk), cache.computed, cache.cached, cache.write_error
    return out


def precompute(masks: Sequence[str], cache_dir: Path | None, params: BoxParams = BoxParams(), *, workers: int = 1,
               progress: bool = False) -> PrecomputeResult:
    """Fill the box cache for `masks` (`adbench data boxes`), with `workers` processes."""
    unique = sorted(set(masks))
    chunks = [unique[i : i + 64] for i in range(0, len(unique), 64)]
    total = PrecomputeResult(errors=[])
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(unique), unit="mask", desc="boxes")
    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = pool.map(_work, chunks, [cache_dir] * len(chunks), [params] * len(chunks))
            results = list(_ticked(parts, bar))
    else:
        results = list(_ticked((_work(c, cache_dir, params) for c in chunks), bar))
    if bar is not None:
        bar.close()
    for r in results:
        total.n_masks += r.n_masks
        total.n_boxes += r.n_boxes
        total.computed += r.computed
        total.cached += r.cached
        total.errors += r.errors or []
        total.write_error = total.write_error or r.write_error
    return total


def _ticked(results: Iterable[PrecomputeResult], bar: object) -> Iterable[PrecomputeResult]:
    for r in results:
        if bar is not None:
            bar.update(r.n_masks)  # type: ignore[attr-defined]
        yield r
