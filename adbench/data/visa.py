"""Reader of VisA, in its original layout (`split_csv/1cls.csv`) or in MMAD's MVTec-style copy.

Original layout (the 1-class split that VisA's authors publish)::

    <root>/split_csv/1cls.csv        columns object,split,label,image,mask
    <root>/<object>/Data/Images/{Normal,Anomaly}/*.JPG
    <root>/<object>/Data/Masks/Anomaly/*.png      (non-zero pixels are defects)
    <root>/<object>/image_anno.csv   optional: per-image defect description

`split` is train or test and `label` normal or anomaly; `image` and `mask` are paths
relative to the root. The defect type is the image's description in
`image_anno.csv` when that file is there, else `bad` (MMAD's folder name).

MMAD's copy (`<cat>/{train/good, test/{good,bad}, ground_truth/bad}`) is read by the
MVTec-style reader; `scan_visa` picks the layout by the presence of `1cls.csv`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from adbench.data.layout import GOOD, Problem, Scan, ad_sample, attach_support, subdirs
from adbench.data.mvtec import scan_mvtec
from adbench.data.paths import DataError, resolve_inside
from adbench.schema import ANOMALOUS, NORMAL

DATASET = "VisA"
SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": NORMAL, "anomaly": ANOMALOUS}
DEFAULT_DEFECT = "bad"


def scan_visa(root: Path, *, seed: int = 0, dataset: str = DATASET) -> Scan:
    """VisA from `split_csv/1cls.csv` when present, else from MMAD's MVTec-style copy."""
    root = Path(root)
    if (root / SPLIT_CSV).is_file():
        return _scan_csv(root, dataset, seed)
    if any((root / c / "Data").is_dir() for c in subdirs(root)):
        scan = Scan()
        scan.problems.append(Problem("missing split file", str(root / SPLIT_CSV),
                                     "VisA's original layout is read through its 1-class split file"))
        return scan
    return scan_mvtec(root, dataset, seed=seed)


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
        return [(i + 2, {k.strip(): (v or "").strip() for k, v in row.items() if k}) for i, row in
                enumerate(reader)]


def _descriptions(root: Path, category: str) -> dict[str, str]:
    """image path -> defect description from `<category>/image_anno.csv`, if present."""
    path = root / category / "image_anno.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {row["image"].strip(): row["label"].strip() for row in csv.DictReader(f)
                if row.get("image") and row.get("label")}


def _scan_csv(root: Path, dataset: str, seed: int) -> Scan:
    scan = Scan()
    path = root / SPLIT_CSV
    descriptions: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for line, row in _rows(path):
        where = f"line {line}"
        category, split, label_name = row["object"], row["split"], row["label"].lower()
        if split not in ("train", "test"):
            raise DataError(f"{path}: {where}: split {row['split']!r} is not train or test")
        if label_name not in LABELS:
            raise DataError(f"{path}: {where}: label {row['label']!r} is not normal or anomaly")
        rel = resolve_inside(root, row["image"], source=str(path), entry=where).relative_to(root).as_posix()
        if rel in seen:
            raise DataError(f"{path}: {where}: image {rel!r} is listed twice")
        seen.add(rel)
        label = LABELS[label_name]
        mask = None
        defect = GOOD
        if label == ANOMALOUS:
            if category not in descriptions:
                descriptions[category] = _descriptions(root, category)
            defect = descriptions[category].get(rel, DEFAULT_DEFECT)
            if row["mask"]:
                mask = str(resolve_inside(root, row["mask"], source=str(path), entry=where))
            else:
                scan.problems.append(Problem("missing mask", str(root / rel), f"{path} {where} names none"))
        scan.samples.append(ad_sample(dataset=dataset, category=category, rel=rel, image=root / rel, label=label,
                                      defect=defect, split=split, mask=mask))
    known = {s.category for s in scan.samples} | {SPLIT_CSV.parts[0]}
    scan.problems += [Problem("unknown folder", str(root / d), f"not an object of {SPLIT_CSV}")
                      for d in subdirs(root) if d not in known]
    attach_support(scan.samples, lambda s: s.meta["split"] == "train" and s.label == NORMAL, seed)
    return scan
