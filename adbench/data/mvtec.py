"""Reader of the MVTec AD folder layout, shared by MPDD, GoodsAD, DTD-Synthetic and MMAD's VisA.

    <root>/<category>/train/good/<image>
    <root>/<category>/test/<good | defect>/<image>
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png   (MVTec AD, MPDD, DTD-Synthetic)
    <root>/<category>/ground_truth/<defect>/<stem>.png        (GoodsAD, MMAD's copy of VisA)

A category is any folder with a `train` or `test` sub-folder. The defect type is the
test sub-folder's name; `good` is normal. Extensions are matched whatever their case.
"""

from __future__ import annotations

import os
from pathlib import Path

from adbench.data.layout import (
    GOOD,
    Problem,
    Scan,
    ad_sample,
    attach_support,
    category_folders,
    label_of,
    list_files,
    mask_index,
    subdirs,
)
from adbench.schema import ANOMALOUS

SPLITS = ("train", "test")
GROUND_TRUTH = "ground_truth"


def scan_mvtec(root: Path, dataset: str, *, seed: int = 0) -> Scan:
    """Every image of an MVTec-style dataset folder as a Sample, and every problem found."""
    root = Path(root)
    scan = Scan()
    for category, _, _ in category_folders(root, SPLITS, scan, extra=(GROUND_TRUTH,)):
        _scan_category(root, dataset, category, scan)
    attach_support(scan.samples, lambda s: s.meta["split"] == "train" and s.label != ANOMALOUS, seed)
    return scan


def _scan_category(root: Path, dataset: str, category: str, scan: Scan) -> None:
    cat_dir = root / category
    gt_dir = cat_dir / GROUND_TRUTH
    used_masks: dict[str, set[str]] = {}
    for split in SPLITS:
        for defect in subdirs(cat_dir / split):
            folder = cat_dir / split / defect
            if split == "train" and defect != GOOD:
                scan.problems.append(Problem("unknown folder", str(folder), "train/ holds only good/"))
                continue
            images, other = list_files(folder)
            scan.problems += [Problem("unknown file", str(folder / o)) for o in other]
            label = label_of(defect)
            masks = mask_index(gt_dir / defect) if label == ANOMALOUS else {}
            for name in images:
                stem = os.path.splitext(name)[0]
                rel = f"{category}/{split}/{defect}/{name}"
                mask = None
                if label == ANOMALOUS:
                    mask_name = masks.get(stem)
                    if mask_name is None:
                        scan.problems.append(Problem("missing mask", str(folder / name),
                                                     f"expected in {gt_dir / defect}"))
                    else:
                        mask = str(gt_dir / defect / mask_name)
                        used_masks.setdefault(defect, set()).add(mask_name)
                scan.samples.append(ad_sample(dataset=dataset, category=category, rel=rel, image=folder / name,
                                              label=label, defect=defect, split=split, mask=mask))
    for defect in subdirs(gt_dir):
        if not (cat_dir / "test" / defect).is_dir():
            scan.problems.append(Problem("unknown folder", str(gt_dir / defect), "no test/ folder of that defect"))
            continue
        for name in sorted(set(mask_index(gt_dir / defect).values()) - used_masks.get(defect, set())):
            scan.problems.append(Problem("mask without image", str(gt_dir / defect / name)))
