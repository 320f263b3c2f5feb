"""Miniature copies of the real dataset layouts, with their real folder and file naming.

Each writer puts a few tiny images per category on disk, with masks whose
components are known, and returns the dataset folder. The expected counts, defect
names and boxes the tests assert are written next to each writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64


def img(path: Path, value: int = 128, mode: str = "RGB") -> Path:
    """A small image with a value-dependent pattern (so files differ), in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) * 7 + value) % 256
    im = Image.fromarray(arr.astype(np.uint8), "L")
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}[path.suffix.lower()]
    (im.convert(mode) if mode != "L" else im).save(path, format=fmt)
    return path


def mask(path: Path, rects: list[tuple[int, int, int, int]], value: int = 255, mode: str = "L",
         colour: tuple[int, int, int] | None = None) -> Path:
    """A mask with filled rectangles given as (x1, y1, x2, y2), pixel-edge coordinates.

    `colour` paints the rectangles in that RGB colour on black (colour-coded masks).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((SIZE, SIZE), np.uint8)
    for x1, y1, x2, y2 in rects:
        arr[y1:y2, x1:x2] = value
    im = Image.fromarray(arr, "L")
    if colour is not None:
        rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
        rgb[arr > 0] = colour
        im = Image.fromarray(rgb, "RGB")
    elif mode != "L":
        im = im.convert(mode)
    im.save(path, format="PNG")
    return path


# Two far-apart blobs: two boxes with any kernel.
TWO_BLOBS = [(4, 4, 14, 12), (40, 40, 56, 60)]
# Two fragments 3 px apart plus a 2x2 speck far away: merged into one box by a 15 px
# kernel; three boxes without dilation and min_area 1; the speck (4 px) is dropped by min_area 16.
FRAGMENTS = [(10, 20, 20, 30), (23, 20, 30, 30), (50, 4, 52, 6)]


def write_mvtec(root: Path) -> Path:
    """MVTec AD: bottle (3 train, 2 test good, broken_large x2) and screw (2 train, 1 good, scratch_head x1).

    bottle/test/broken_large/000.png -> TWO_BLOBS, 001.PNG (upper-case) -> FRAGMENTS,
    screw/test/scratch_head/000.png -> one box (8, 8, 20, 16).
    """
    d = root / "mvtec_anomaly_detection"
    for i in range(3):
        img(d / f"bottle/train/good/{i:03d}.png", i)
    for i in range(2):
        img(d / f"bottle/test/good/{i:03d}.png", 10 + i)
    img(d / "bottle/test/broken_large/000.png", 20)
    img(d / "bottle/test/broken_large/001.PNG", 21)
    mask(d / "bottle/ground_truth/broken_large/000_mask.png", TWO_BLOBS)
    mask(d / "bottle/ground_truth/broken_large/001_mask.PNG", FRAGMENTS)
    for i in range(2):
        img(d / f"screw/train/good/{i:03d}.png", 30 + i)
    img(d / "screw/test/good/000.png", 40)
    img(d / "screw/test/scratch_head/000.png", 41)
    mask(d / "screw/ground_truth/scratch_head/000_mask.png", [(8, 8, 20, 16)])
    (d / "license.txt").write_text("CC BY-NC-SA 4.0\n")
    return d


def write_mpdd(root: Path) -> Path:
    """MPDD: bracket_black (4 train, 2 good, hole x1, scratches x1) and tubes (2 train, 1 good, anomalous x1)."""
    d = root / "MPDD"
    for i in range(4):
        img(d / f"bracket_black/train/good/{i:03d}.png", i)
    for i in range(2):
        img(d / f"bracket_black/test/good/{i:03d}.png", 10 + i)
    img(d / "bracket_black/test/hole/000.png", 20)
    mask(d / "bracket_black/ground_truth/hole/000_mask.png", TWO_BLOBS)
    img(d / "bracket_black/test/scratches/000.png", 21)
    mask(d / "bracket_black/ground_truth/scratches/000_mask.png", [(30, 30, 40, 34)])
    for i in range(2):
        img(d / f"tubes/train/good/{i:03d}.png", 30 + i)
    img(d / "tubes/test/good/000.png", 40)
    img(d / "tubes/test/anomalous/000.png", 41)
    mask(d / "tubes/ground_truth/anomalous/000_mask.png", [(0, 0, 8, 8)])
    return d


def write_goodsad(root: Path) -> Path:
    """GoodsAD: drink_can, JPEG images, masks named <stem>.png (no _mask suffix)."""
    d = root / "GoodsAD"
    for i in range(3):
        img(d / f"drink_can/train/good/{i:03d}.jpg", i)
    img(d / "drink_can/test/good/000.jpg", 10)
    img(d / "drink_can/test/dent/000.jpg", 11)
    img(d / "drink_can/test/dent/001.JPG", 12)
    mask(d / "drink_can/ground_truth/dent/000.png", TWO_BLOBS)
    mask(d / "drink_can/ground_truth/dent/001.png", [(2, 2, 10, 10)])
    return d


def write_dtd(root: Path) -> Path:
    """DTD-Synthetic: Woven_001 and Blotchy_099, test/{good,bad}, ground_truth/bad/<stem>_mask.png."""
    d = root / "DTD-Synthetic"
    for cat in ("Woven_001", "Blotchy_099"):
        for i in range(3):
            img(d / f"{cat}/train/good/{i:03d}.png", i)
        img(d / f"{cat}/test/good/000.png", 10)
        for i in range(2):
            img(d / f"{cat}/test/bad/{i:03d}.png", 20 + i)
            mask(d / f"{cat}/ground_truth/bad/{i:03d}_mask.png", FRAGMENTS if i else TWO_BLOBS)
    return d


def write_visa(root: Path) -> Path:
    """VisA's original layout: split_csv/1cls.csv, <object>/Data/..., image_anno.csv for candle only.

    candle: train 3 normal; test 1 normal + 2 anomalous (000: "chunk of wax missing",
    001: "wax melded out of the candle"); masks store class ids (1, 2), not 255.
    pcb1: train 2 normal; test 1 normal + 1 anomalous (no image_anno.csv -> defect "bad").
    """
    d = root / "VisA"
    rows = ["object,split,label,image,mask"]
    for cat, n_train in (("candle", 3), ("pcb1", 2)):
        for i in range(n_train):
            p = f"{cat}/Data/Images/Normal/{i:04d}.JPG"
            img(d / p, i)
            rows.append(f"{cat},train,normal,{p},")
        p = f"{cat}/Data/Images/Normal/{n_train:04d}.JPG"
        img(d / p, 50)
        rows.append(f"{cat},test,normal,{p},")
    img(d / "candle/Data/Images/Anomaly/000.JPG", 60)
    mask(d / "candle/Data/Masks/Anomaly/000.png", TWO_BLOBS, value=1)
    rows.append("candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png")
    img(d / "candle/Data/Images/Anomaly/001.JPG", 61)
    mask(d / "candle/Data/Masks/Anomaly/001.png", [(5, 5, 15, 15)], value=2)
    rows.append("candle,test,anomaly,candle/Data/Images/Anomaly/001.JPG,candle/Data/Masks/Anomaly/001.png")
    img(d / "pcb1/Data/Images/Anomaly/000.JPG", 62)
    mask(d / "pcb1/Data/Masks/Anomaly/000.png", [(20, 20, 30, 40)], value=1)
    rows.append("pcb1,test,anomaly,pcb1/Data/Images/Anomaly/000.JPG,pcb1/Data/Masks/Anomaly/000.png")
    (d / "split_csv").mkdir(parents=True)
    (d / "split_csv/1cls.csv").write_text("\n".join(rows) + "\n")
    (d / "candle/image_anno.csv").write_text(
        "image,label,mask\n"
        "candle/Data/Images/Normal/0000.JPG,normal,\n"
        "candle/Data/Images/Anomaly/000.JPG,chunk of wax missing,candle/Data/Masks/Anomaly/000.png\n"
        "candle/Data/Images/Anomaly/001.JPG,wax melded out of the candle,candle/Data/Masks/Anomaly/001.png\n"
    )
    return d


def write_visa_mmad_copy(root: Path) -> Path:
    """MMAD's copy of VisA: candle/{train/good, test/{good,bad}, ground_truth/bad/<stem>.png}."""
    d = root / "VisA"
    for i in range(2):
        img(d / f"candle/train/good/{i:04d}.JPG", i)
    img(d / "candle/test/good/0100.JPG", 10)
    img(d / "candle/test/bad/000.JPG", 11)
    mask(d / "candle/ground_truth/bad/000.png", TWO_BLOBS, value=1)
    return d


def write_loco(root: Path) -> Path:
    """MVTec LOCO: breakfast_box; logical 000 has two mask files (OR-ed), structural 000 one.

    train 2, validation 1, test good 1, logical_anomalies 1, structural_anomalies 1.
    """
    d = root / "mvtec_loco_anomaly_detection"
    c = d / "breakfast_box"
    for i in range(2):
        img(c / f"train/good/{i:03d}.png", i)
    img(c / "validation/good/000.png", 5)
    img(c / "test/good/000.png", 10)
    img(c / "test/logical_anomalies/000.png", 11)
    img(c / "test/structural_anomalies/000.png", 12)
    mask(c / "ground_truth/logical_anomalies/000/000.png", [TWO_BLOBS[0]])
    mask(c / "ground_truth/logical_anomalies/000/001.png", [TWO_BLOBS[1]])
    mask(c / "ground_truth/structural_anomalies/000/000.png", [(30, 2, 40, 12)])
    (c / "defects_config.json").write_text("[]\n")
    return d


def write_dagm(root: Path) -> Path:
    """DAGM 2007 (Kaggle layout): Class1 and Class2, .PNG, Label/<stem>_label.PNG, Labels.txt.

    Class1: Train 0001-0004 (0002 defective), Test 0001-0003 (0003 defective).
    Class2: Train 0001-0002, Test 0001-0002 (0001 defective).
    """
    d = root / "DAGM"
    spec = {"Class1": ({"Train": 4, "Test": 3}, {"Train": ["0002"], "Test": ["0003"]}),
            "Class2": ({"Train": 2, "Test": 2}, {"Train": [], "Test": ["0001"]})}
    for cls, (counts, defective) in spec.items():
        for part, n in counts.items():
            for i in range(1, n + 1):
                img(d / f"{cls}/{part}/{i:04d}.PNG", i, mode="L")
            (d / f"{cls}/{part}/Label").mkdir(parents=True, exist_ok=True)
            for stem in defective[part]:
                mask(d / f"{cls}/{part}/Label/{stem}_label.PNG", FRAGMENTS)
            (d / f"{cls}/{part}/Label/Labels.txt").write_text("1\n")
    return d


AD = {"Question": "Is there any defect in the object?", "Options": {"A": "Yes.", "B": "No."},
      "type": "Anomaly Detection"}


def _conv(anomalous: bool, extra: list[str]) -> list[dict]:
    conv = [{**AD, "Answer": "A" if anomalous else "B"}]
    for qtype in extra:
        conv.append({"Question": f"{qtype}?", "Options": {"A": "x", "B": "y", "C": "z"}, "Answer": "C",
                     "type": qtype})
    return conv


#: MMAD's four datasets as the real `mmad.json` lays them out. Sources (jam-cc/MMAD):
#: the keys and path fields are those of real entries as MMAD's own scripts read them --
#: `evaluation/examples/Transformers/internvl_query.py` opens `<MMAD>/<key>`, joins
#: `mask_path` onto `<MMAD>/<dataset>/<category>/` and templates onto `<MMAD>/`;
#: `evaluation/examples/SoftPatch/call.py: call_ground_truth` reads a mask whose path
#: without extension is a folder as all the files in it (MVTec LOCO) and retries a missing
#: `.jpg` mask as `.png` (GoodsAD); the folder names are those of `dataset/MMAD/*/README.md`.
#: Real examples: key `DS-MVTec/bottle/image/broken_large/000.png` with image_path
#: `image/broken_large/000.png`, mask_path `rbg_mask/broken_large/000_rbg_mask.png` and
#: templates `MVTec-AD/bottle/train/good/001.png`; key `VisA/candle/test/bad/000.JPG` with
#: mask_path `ground_truth/bad/000.png` and templates `VisA/candle/train/good/0451.JPG`;
#: `MVTec-LOCO/breakfast_box/test/logical_anomalies/000.png` with
#: `ground_truth/logical_anomalies/000.png` standing for the folder `.../000/`;
#: `GoodsAD/drink_bottle/test/surface_damage/057_017.jpg` with a `.jpg` mask_path whose
#: file is a `.png`. Normal images have `"mask_path": null`.
MMAD_LAYOUT = {
    # dataset: (category, image folder pattern under <dataset>/<category>/, defect, mask_path pattern,
    #           file the mask really is (None: the mask_path itself), template pattern under the MMAD folder)
    "DS-MVTec": ("bottle", "image/{kind}/{stem}.png", "broken_large", "rbg_mask/{kind}/{stem}_rbg_mask.png",
                 None, "MVTec-AD/bottle/train/good/{t:03d}.png"),
    "VisA": ("candle", "test/{kind}/{stem}.JPG", "bad", "ground_truth/{kind}/{stem}.png", None,
             "VisA/candle/train/good/{t:04d}.JPG"),
    "MVTec-LOCO": ("breakfast_box", "test/{kind}/{stem}.png", "logical_anomalies", "ground_truth/{kind}/{stem}.png",
                   "ground_truth/{kind}/{stem}/", "MVTec-LOCO/breakfast_box/train/good/{t:03d}.png"),
    "GoodsAD": ("drink_bottle", "test/{kind}/{stem}.jpg", "surface_damage", "ground_truth/{kind}/{stem}.jpg",
                "ground_truth/{kind}/{stem}.png", "GoodsAD/drink_bottle/train/good/{t:03d}.jpg"),
}


def mmad_stem(dataset: str, i: int) -> str:
    """File stem of the i-th image of a miniature MMAD dataset (GoodsAD names are `<shelf>_<n>`)."""
    return f"{57 + i:03d}_017" if dataset == "GoodsAD" else f"{i:03d}"


def write_mmad(root: Path, per_category: int = 5) -> Path:
    """MMAD: mmad.json over DS-MVTec, VisA, MVTec-LOCO and GoodsAD, images beside it (MMAD_LAYOUT).

    Each dataset has one category with `per_category` good and `per_category` anomalous
    images; anomalous image i has one mask rectangle (4 + i, 4, 14 + i, 12) (MVTec-LOCO: a
    folder with that rectangle in 000.png and (40, 40, 50, 50) in 001.png; DS-MVTec: a red
    RGB mask; VisA: class id 1). Normal images get the Anomaly Detection question and Object
    Classification; anomalous ones also Defect Classification, Object Structure and Object
    Details. Three templates per dataset; image i lists templates (i, i+1) % 3 as random and
    (i + 2) % 3 as similar.
    """
    d = root / "MMAD"
    index = {}
    for ds, (cat, image_t, defect, mask_t, mask_file_t, tmpl_t) in MMAD_LAYOUT.items():
        templates = [tmpl_t.format(t=t) for t in range(3)]
        for t, rel in enumerate(templates):
            img(d / rel, 200 + t)
        for kind in ("good", defect):
            for i in range(per_category):
                stem = mmad_stem(ds, i)
                image_path = image_t.format(kind=kind, stem=stem)
                key = f"{ds}/{cat}/{image_path}"
                img(d / key, i + (0 if kind == "good" else 100))
                mask_path = None
                if kind != "good":
                    mask_path = mask_t.format(kind=kind, stem=stem)
                    rect = [(4 + i, 4, 14 + i, 12)]
                    where = d / ds / cat / (mask_file_t or mask_t).format(kind=kind, stem=stem)
                    if ds == "MVTec-LOCO":  # one file per annotated region
                        mask(where / "000.png", rect)
                        mask(where / "001.png", [(40, 40, 50, 50)])
                    elif ds == "DS-MVTec":  # Defect Spectrum's colour masks
                        mask(where, rect, value=255, mode="RGB", colour=(255, 0, 0))
                    else:
                        mask(where, rect, value=1 if ds == "VisA" else 255)
                extra = ["Object Classification"]
                if kind != "good":
                    extra = ["Defect Classification", "Object Structure", "Object Details"]
                index[key] = {"image_path": image_path, "mask_path": mask_path,
                              "random_templates": [templates[(i + j) % 3] for j in range(2)],
                              "similar_templates": [templates[(i + 2) % 3]],
                              "conversation": _conv(kind != "good", extra)}
    (d / "mmad.json").write_text(json.dumps(index, indent=1))
    return d
