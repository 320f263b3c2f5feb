"""A small, deterministic industrial anomaly suite in MMAD's on-disk form.

The suite lets `adbench` run end to end (readers, tasks, baselines, metrics) with no
download: its normal images are crops of CC0 photos and textures that ship inside
scikit-image (`skimage.data`, all bundled with the package, none fetched by pooch),
and its anomalies are synthetic defects painted onto them together with their
pixel masks.

Layout under the output folder (MMAD / DS-MVTec style)::

    <Dataset>/<category>/train/good/NNN.png       normal templates
    <Dataset>/<category>/image/<kind|good>/NNN.png query images (256x256 RGB)
    <Dataset>/<category>/mask/<kind>/NNN.png      L-mode masks, 0 / 255, same stem
    mmad.json                                     the index `adbench.data.mmad` reads
    .adbench-demo.json                            marker: version and seed, written last

Every image draws from its own `numpy.random.default_rng` seeded from the suite seed
and the image's path, so one image's content never depends on generation order.
Pixel work sticks to exactly rounded arithmetic (sums, products, integer noise,
Pillow's fixed-point resampling) so that the same seed gives the same pixels on any
machine; the PNG bytes are identical wherever the same Pillow/zlib writes them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from adbench.data.layout import AD_OPTIONS, AD_QUESTION
from adbench.errors import ExistingPathError, UserError
from adbench.schema import ANOMALY_DETECTION

DEMO_VERSION = 2  # bump whenever the generated files change (2: MMAD's real path fields)
MARKER_NAME = ".adbench-demo.json"
INDEX_NAME = "mmad.json"

SIZE = 256  # side of every image, pixels
N_TEMPLATES = 6  # normal templates per category (train/good)
N_GOOD = 6  # normal query images per category (image/good)
N_DEFECTIVE = 8  # anomalous query images per category
MULTI_COMPONENT = (3, 7)  # indices of anomalous images that get two separate defects
N_TEMPLATES_SHOWN = 3  # templates listed per image in similar_/random_templates

#: Plain words for each defect folder, as offered in Defect Classification.
DEFECT_NAMES: dict[str, str] = {
    "scratch": "Scratch",
    "stain": "Stain",
    "crack": "Crack",
    "hole": "Hole",
    "cut_paste": "Misplaced patch",
}

REGIONS = ("top left", "top right", "bottom left", "bottom right", "center")
LETTERS = "ABCD"

Q_DEFECT = "What type of defect is present on the object?"
Q_WHERE = "Where is the defect located?"
Q_OBJECT = "What kind of object is shown in the image?"


@dataclass(frozen=True)
class Category:
    """One category: where its normal images come from and which defects it gets."""

    dataset: str
    name: str  # folder name
    words: str  # plain words offered in Object Classification
    source: str  # name of the skimage.data loader
    defects: tuple[str, str, str]
    tint: tuple[float, float, float] | None = None  # textures: gray -> colour
    crop: tuple[float, float, float] | None = None  # objects: centre x, centre y, side (source px)

    @property
    def texture(self) -> bool:
        return self.crop is None


CATEGORIES: tuple[Category, ...] = (
    Category(
        "DemoTexture", "brick", "Brick wall", "brick", ("crack", "hole", "cut_paste"), tint=(1.0, 0.7, 0.58)
    ),
    Category("DemoTexture", "grass", "Grass", "grass", ("stain", "hole", "scratch"), tint=(0.78, 1.0, 0.55)),
    Category(
        "DemoTexture", "gravel", "Gravel", "gravel", ("crack", "stain", "scratch"), tint=(1.0, 0.96, 0.9)
    ),
    Category(
        "DemoObject", "coffee", "Coffee cup", "coffee", ("stain", "scratch", "crack"), crop=(290, 200, 380)
    ),
    Category("DemoObject", "cat", "Cat", "chelsea", ("scratch", "stain", "cut_paste"), crop=(250, 150, 290)),
    Category("DemoObject", "rocket", "Rocket", "rocket", ("scratch", "hole", "crack"), crop=(322, 250, 340)),
    Category(
        "DemoObject",
        "astronaut",
        "Astronaut",
        "astronaut",
        ("stain", "hole", "cut_paste"),
        crop=(256, 256, 440),
    ),
)


# --------------------------------------------------------------------------- helpers


def _rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator for one named thing; crc32 keeps the derivation stable across runs."""
    key = "/".join(str(p) for p in parts).encode()
    return np.random.default_rng([seed, zlib.crc32(key)])


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with a kernel rounded to 1/1024 steps.

    Rounding the taps makes the kernel independent of the last bit of the platform's
    `exp`, which keeps the output pixels identical across machines.
    """
    radius = max(1, int(3 * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.rint(np.exp(-0.5 * (x / sigma) ** 2) * 1024)
    k = taps / taps.sum()
    a = ndimage.correlate1d(a, k, axis=0, mode="nearest")
    return ndimage.correlate1d(a, k, axis=1, mode="nearest")


def _blend(img: np.ndarray, alpha: np.ndarray, color: Sequence[float] | np.ndarray) -> np.ndarray:
    """Alpha-composite `color` (one RGB triple or an image) over `img`."""
    a = alpha[..., None]
    return img * (1.0 - a) + np.asarray(color, dtype=np.float64) * a


def _polyline_mask(points: Sequence[tuple[float, float]], width: int) -> np.ndarray:
    """Rasterise an (x, y) polyline with Pillow's integer line drawing."""
    canvas = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(canvas).line(list(points), fill=255, width=width, joint="curve")
    return np.asarray(canvas) > 0


def _local_mean(img: np.ndarray, cy: int, cx: int, r: int = 24) -> float:
    patch = img[max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r]
    return float(patch.mean())


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    """Annotators outline a defect generously; MVTec masks include a rim of a few pixels."""
    return ndimage.binary_dilation(mask, iterations=px)


# ------------------------------------------------------------------- normal images


def _load_source(cat: Category) -> np.ndarray:
    """The category's base picture as RGB uint8 (textures are tinted to look less synthetic)."""
    import skimage.data  # imported here: only generation needs it

    img = np.asarray(getattr(skimage.data, cat.source)())
    if cat.tint is not None:
        img = _to_uint8(img[..., None].astype(np.float64) * np.asarray(cat.tint))
    return img[..., :3]


def _normal_image(cat: Category, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A normal view of the category as float RGB: crop, resize, flip, photometric jitter.

    Textures vary by where and how large the crop is (plus flips); objects only by a
    few percent of shift and scale, like a part that sits slightly differently on the
    conveyor each time.
    """
    h, w = base.shape[:2]
    if cat.crop is None:
        side = rng.uniform(240, 320)
        x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
    else:
        cx, cy, side0 = cat.crop
        side = min(side0 * rng.uniform(0.95, 1.05), h, w)
        x0 = np.clip(cx - side / 2 + rng.uniform(-0.03, 0.03) * side0, 0, w - side)
        y0 = np.clip(cy - side / 2 + rng.uniform(-0.03, 0.03) * side0, 0, h - side)
    box = (float(x0), float(y0), float(x0 + side), float(y0 + side))
    view = Image.fromarray(base).resize((SIZE, SIZE), Image.Resampling.LANCZOS, box=box)
    img = np.asarray(view).astype(np.float64)
    if cat.texture:
        if rng.random() < 0.5:
            img = img[:, ::-1]
        if rng.random() < 0.5:
            img = img[::-1]
    contrast, brightness = rng.uniform(0.92, 1.08), rng.uniform(-10, 10)
    return (img - 128.0) * contrast + 128.0 + brightness


def _add_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild sensor noise; integer draws (triangular, +-4) are exact on every platform."""
    noise = rng.integers(-2, 3, img.shape) + rng.integers(-2, 3, img.shape)
    return img + noise


# ------------------------------------------------------------------------- defects
# Each painter takes the float image, a generator and the defect's centre (y, x), and
# returns the painted image and the boolean mask of that one defect. Every painter
# keeps within about 55 px of the centre, which is what the placement relies on.

Painter = Callable[[np.ndarray, np.random.Generator, tuple[int, int]], tuple[np.ndarray, np.ndarray]]


def _scratch(img: np.ndarray, rng: np.random.Generator, c: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Thin bright or dark line of two or three slightly bent segments."""
    cy, cx = c
    n_seg = int(rng.integers(2, 4))
    seg = rng.uniform(75, 100) / n_seg
    heading = rng.uniform(0, np.pi)
    # start half a length back so the scratch is centred on c
    y, x = cy - np.sin(heading) * seg * n_seg / 2, cx - np.cos(heading) * seg * n_seg / 2
    points = [(x, y)]
    for _ in range(n_seg):
        heading += rng.normal(0, 0.18)
        y, x = y + np.sin(heading) * seg, x + np.cos(heading) * seg
        points.append((x, y))
    line = _polyline_mask(points, width=int(rng.integers(2, 4)))
    # contrast with the surroundings so that it is visible on both light and dark parts
    bright = _local_mean(img, cy, cx) < 140 if rng.random() < 0.8 else rng.random() < 0.5
    color = (rng.uniform(225, 250),) * 3 if bright else (rng.uniform(10, 30),) * 3
    alpha = 0.9 * np.clip(_blur(line.astype(np.float64), 0.6) * 1.4, 0, 1)
    return _blend(img, alpha, color), _grow(line, 2)


def _stain(img: np.ndarray, rng: np.random.Generator, c: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Soft blob of dark, rusty or oily colour made of a few overlapping ellipses."""
    cy, cx = c
    canvas = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 6))):
        ry, rx = rng.uniform(9, 18, 2)
        oy, ox = rng.uniform(-8, 8, 2)  # small offsets keep the ellipses overlapping
        draw.ellipse((cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry), fill=255)
    blob = np.asarray(canvas).astype(np.float64) / 255.0
    alpha = _blur(blob, rng.uniform(2.5, 4.0))
    palette = ((55, 38, 20), (140, 60, 25), (25, 25, 30), (70, 80, 40))
    color = palette[int(rng.integers(len(palette)))]
    painted = _blend(img, alpha * rng.uniform(0.65, 0.85), color)
    return painted, alpha > 0.3


def _crack(img: np.ndarray, rng: np.random.Generator, c: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Dark jagged random walk, sometimes with one branch, plus a faint shadow around it."""
    cy, cx = c
    heading = rng.uniform(0, 2 * np.pi)
    n_steps = int(rng.integers(10, 15))
    step = 85.0 / n_steps
    y, x = cy - np.sin(heading) * 42, cx - np.cos(heading) * 42
    walk = [(x, y)]
    for _ in range(n_steps):
        turn = heading + rng.normal(0, 0.55)  # jagged: each step turns, the course holds
        y, x = y + np.sin(turn) * step, x + np.cos(turn) * step
        walk.append((x, y))
    strokes = [walk]
    if rng.random() < 0.5:
        j = int(rng.integers(3, n_steps - 3))
        bx, by = walk[j]
        side = heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0)
        strokes.append(
            [(bx, by)] + [(bx + np.cos(side) * step * k, by + np.sin(side) * step * k) for k in (1, 2, 3)]
        )
    line = np.zeros((SIZE, SIZE), dtype=bool)
    for s in strokes:
        line |= _polyline_mask(s, width=int(rng.integers(2, 4)))
    core = np.clip(_blur(line.astype(np.float64), 0.6) * 1.5, 0, 1)
    shadow = _blur(line.astype(np.float64), 2.5)
    painted = _blend(img, np.clip(0.92 * core + 0.35 * shadow, 0, 1), (rng.uniform(8, 25),) * 3)
    return painted, _grow(line, 2)


def _hole(img: np.ndarray, rng: np.random.Generator, c: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Dark, rotated ellipse with a lighter rim, as a punched or burnt-through spot."""
    cy, cx = c
    ry, rx = rng.uniform(9, 16, 2)
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    u, v = xx - cx, yy - cy
    cos, sin = float(np.cos(theta)), float(np.sin(theta))
    d = np.sqrt(((u * cos + v * sin) / rx) ** 2 + ((v * cos - u * sin) / ry) ** 2)
    inner = np.clip(_blur((d <= 1.0).astype(np.float64), 0.8), 0, 1)
    rim = np.clip(_blur(((d > 0.95) & (d <= 1.3)).astype(np.float64), 1.0), 0, 1)
    depth = (rng.uniform(5, 20) + 25 * np.clip(d, 0, 1))[..., None]  # darker towards the middle
    painted = _blend(img, rim * 0.55, (rng.uniform(190, 225),) * 3)
    painted = _blend(painted, inner, np.broadcast_to(depth, img.shape))
    return painted, d <= 1.35


def _cut_paste(
    img: np.ndarray, rng: np.random.Generator, c: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """A square from elsewhere in the image, rescaled, rotated and re-lit, pasted at c.

    The rescaling matters for textures: a merely moved patch of grass would be normal.
    """
    cy, cx = c
    side = int(rng.integers(30, 46))
    scale = rng.uniform(0.6, 0.75) if rng.random() < 0.5 else rng.uniform(1.35, 1.6)
    src = int(round(side / scale))
    while True:  # a source far enough from the target to look foreign
        sy, sx = (int(v) for v in rng.integers(0, SIZE - src, 2))
        if abs(sy + src / 2 - cy) + abs(sx + src / 2 - cx) > 70:
            break
    patch = Image.fromarray(_to_uint8(img[sy : sy + src, sx : sx + src]))
    patch_arr = np.asarray(patch.resize((side, side), Image.Resampling.BICUBIC)).astype(np.float64)
    patch_arr = np.rot90(patch_arr, int(rng.integers(1, 4))) * rng.uniform(0.85, 1.15)
    y0, x0 = cy - side // 2, cx - side // 2
    painted = img.copy()
    painted[y0 : y0 + side, x0 : x0 + side] = patch_arr
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return painted, mask


PAINTERS: dict[str, Painter] = {
    "scratch": _scratch,
    "stain": _stain,
    "crack": _crack,
    "hole": _hole,
    "cut_paste": _cut_paste,
}

MARGIN = 48  # defect centres stay this far from the border, so no defect is cut off
MIN_APART = 120  # between the centres of two defects of one image, so their masks stay apart


def _centres(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    chosen: list[tuple[int, int]] = []
    while len(chosen) < n:
        y, x = (int(v) for v in rng.integers(MARGIN, SIZE - MARGIN, 2))
        if all(np.hypot(y - py, x - px) >= MIN_APART for py, px in chosen):
            chosen.append((y, x))
    return chosen


def _defective_image(
    img: np.ndarray, kind: str, rng: np.random.Generator, n_components: int
) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    for centre in _centres(rng, n_components):
        img, m = PAINTERS[kind](img, rng, centre)
        mask |= m
    return img, mask


# ----------------------------------------------------------------------- questions


def _choice(
    rng: np.random.Generator, gold: str, pool: Sequence[str], question: str, qtype: str
) -> dict[str, Any]:
    """A four-option question: the gold text plus three others from `pool`, shuffled."""
    others = [p for p in pool if p != gold]
    picked = [others[i] for i in rng.choice(len(others), size=len(LETTERS) - 1, replace=False)]
    texts = [gold, *picked]
    order = rng.permutation(len(texts))
    options = {letter: texts[i] for letter, i in zip(LETTERS, order, strict=True)}
    answer = next(letter for letter, i in zip(LETTERS, order, strict=True) if i == 0)
    return {"Question": question, "Options": options, "Answer": answer, "type": qtype}


def region_of(mask: np.ndarray) -> str:
    """Region of the largest component's centroid: 'center' is the middle third both ways."""
    labels, n = ndimage.label(mask)
    sizes = ndimage.sum_labels(mask, labels, index=range(1, n + 1))
    largest = int(np.argmax(sizes)) + 1
    cy, cx = ndimage.center_of_mass(labels == largest)
    h, w = mask.shape
    if h / 3 <= cy < 2 * h / 3 and w / 3 <= cx < 2 * w / 3:
        return "center"
    return f"{'top' if cy < h / 2 else 'bottom'} {'left' if cx < w / 2 else 'right'}"


def _conversation(
    rng: np.random.Generator, cat: Category, kind: str, mask: np.ndarray | None
) -> list[dict[str, Any]]:
    """MMAD's questions for one image, in MMAD's order."""
    anomalous = mask is not None
    conv: list[dict[str, Any]] = [
        {
            "Question": AD_QUESTION,
            "Options": dict(AD_OPTIONS),
            "Answer": "A" if anomalous else "B",
            "type": ANOMALY_DETECTION,
        }
    ]
    if anomalous:
        conv.append(
            _choice(rng, DEFECT_NAMES[kind], list(DEFECT_NAMES.values()), Q_DEFECT, "Defect Classification")
        )
        conv.append(_choice(rng, region_of(mask), REGIONS, Q_WHERE, "Defect Localization"))
    words = [c.words for c in CATEGORIES]
    conv.append(_choice(rng, cat.words, words, Q_OBJECT, "Object Classification"))
    return conv


# ------------------------------------------------------------------------- writing


def _save_png(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, format="PNG")


def _thumb(img: np.ndarray) -> np.ndarray:
    """Small grey thumbnail in integers, for the exact distances of similar_templates."""
    return np.asarray(Image.fromarray(img).convert("L").resize((32, 32), Image.Resampling.BOX)).astype(
        np.int64
    )


def _category_entries(out: Path, cat: Category, seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Write one category's images and masks; yield its mmad.json entries."""
    base = _load_source(cat)
    root = f"{cat.dataset}/{cat.name}"

    templates: list[tuple[str, np.ndarray]] = []
    for i in range(N_TEMPLATES):
        rel = f"{root}/train/good/{i:03d}.png"
        rng = _rng(seed, rel)
        img = _to_uint8(_add_noise(_normal_image(cat, base, rng), rng))
        _save_png(img, out / rel)
        templates.append((rel, _thumb(img)))

    queries: list[tuple[str, str, int]] = [
        ("good", f"{root}/image/good/{i:03d}.png", 1) for i in range(N_GOOD)
    ]
    counts: dict[str, int] = {}
    for i in range(N_DEFECTIVE):
        kind = cat.defects[i % len(cat.defects)]
        n = counts[kind] = counts.get(kind, 0) + 1
        queries.append((kind, f"{root}/image/{kind}/{n - 1:03d}.png", 2 if i in MULTI_COMPONENT else 1))

    for kind, rel, n_components in queries:
        rng = _rng(seed, rel)
        img = _normal_image(cat, base, rng)
        mask = None
        mask_rel = ""
        if kind != "good":
            img, mask = _defective_image(img, kind, rng, n_components)
            mask_rel = rel.replace("/image/", "/mask/", 1)
            _save_png(mask.astype(np.uint8) * 255, out / mask_rel)
        img_u8 = _to_uint8(_add_noise(img, rng))
        _save_png(img_u8, out / rel)

        thumb = _thumb(img_u8)
        dist = [int(((thumb - t) ** 2).sum()) for _, t in templates]
        similar = sorted(range(N_TEMPLATES), key=lambda j: (dist[j], j))[:N_TEMPLATES_SHOWN]
        random_pick = rng.choice(N_TEMPLATES, size=N_TEMPLATES_SHOWN, replace=False)
        yield (
            rel,
            {  # MMAD's fields: image_path and mask_path relative to <dataset>/<category>/
                "image_path": rel[len(root) + 1:],
                "mask_path": mask_rel[len(root) + 1:] if mask_rel else None,
                "similar_templates": [templates[j][0] for j in similar],
                "random_templates": [templates[int(j)][0] for j in random_pick],
                "conversation": _conversation(_rng(seed, rel, "questions"), cat, kind, mask),
            },
        )


def _write_suite(out: Path, seed: int) -> None:
    """Write the whole suite into `out`; the marker goes last, as the seal of completeness."""
    try:
        from tqdm import tqdm

        cats: Any = tqdm(CATEGORIES, desc="demo data", unit="category", leave=False, disable=None)
    except ImportError:  # a progress bar is a nicety, never a requirement
        cats = CATEGORIES
    index: dict[str, Any] = {}
    for cat in cats:
        index.update(_category_entries(out, cat, seed))
    (out / INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    marker = {"generator": "adbench.data.demo", "version": DEMO_VERSION, "seed": seed}
    (out / MARKER_NAME).write_text(json.dumps(marker, sort_keys=True) + "\n", encoding="utf-8")


# -------------------------------------------------------------------------- public


def _marker(out_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(out_dir: Path, seed: int = 0) -> bool:
    """Whether `out_dir` holds a finished suite of this DEMO_VERSION and `seed`."""
    m = _marker(Path(out_dir))
    return m is not None and m.get("version") == DEMO_VERSION and m.get("seed") == seed


def generate_demo(out_dir: Path, seed: int = 0, *, force: bool = False) -> Path:
    """Write the demo suite to `out_dir` (unless it is already there) and return `out_dir`.

    The suite is built in a hidden sibling folder and renamed into place, so a killed
    run leaves either the old folder or the new one, never half a suite with a marker.
    An existing folder is replaced only when it is empty or is itself a demo suite
    (another seed or version, or `force`): anything else raises FileExistsError rather
    than risk deleting someone's data.
    """
    out_dir = Path(out_dir)
    if seed < 0:
        raise UserError(f"seed must be >= 0, got {seed}")
    if not force and is_complete(out_dir, seed):
        return out_dir
    if out_dir.exists() and _marker(out_dir) is None and any(out_dir.iterdir()):
        raise ExistingPathError(f"{out_dir} exists and is not an adbench demo suite; not overwriting it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # mkdir (unlike mkdtemp) honours the umask, so the installed suite gets normal permissions
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    old = tmp.with_name(tmp.name + "-old")  # unique because tmp is
    try:
        _write_suite(tmp, seed)
        if out_dir.exists():
            out_dir.rename(old)
        try:
            tmp.rename(out_dir)
        except OSError:
            # Another process installed a suite between our check and our rename.
            if not is_complete(out_dir, seed):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


def ensure_demo(data_root: Path, seed: int = 0) -> Path:
    """`data_root / "demo"`, generated first if it is missing or stale."""
    return generate_demo(Path(data_root) / "demo", seed)
