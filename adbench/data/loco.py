"""Reader of MVTec LOCO AD: several masks per anomalous image.

    <root>/<category>/{train,validation}/good/<stem>.png
    <root>/<category>/test/<good | logical_anomalies | structural_anomalies>/<stem>.png
    <root>/<category>/ground_truth/<kind>/<stem>/000.png, 001.png, ...

An anomalous image has a folder of masks, one per defect region (LOCO annotates each
logical or structural defect separately). `Sample.mask` is that folder and
`Sample.meta["masks"]` lists its files; pseudo boxes OR them into one mask.
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
    subdirs,
)
from adbench.schema import ANOMALOUS

DATASET = "MVTec-LOCO"
SPLITS = ("train", "validation", "test")
GROUND_TRUTH = "ground_truth"


def scan_loco(root: Path, *, seed: int = 0, dataset: str = DATASET) -> Scan:
    """Every image of an MVTec LOCO folder as a Sample, and every problem found."""
    scan = Scan()
    for category, cat_dir, _ in category_folders(Path(root), SPLITS, scan, extra=(GROUND_TRUTH,)):
        _scan_category(cat_dir, dataset, category, scan)
    # validation images are normal training data too (LOCO's authors use them so)
    attach_support(scan.samples, lambda s: s.meta["split"] in ("train", "validation"), seed)
    return scan


def _scan_category(cat_dir: Path, dataset: str, category: str, scan: Scan) -> None:
    gt_dir = cat_dir / GROUND_TRUTH
    stems: dict[str, set[str]] = {}
    for split in SPLITS:
        for kind in subdirs(cat_dir / split):
            folder = cat_dir / split / kind
            if split != "test" and kind != GOOD:
                scan.problems.append(Problem("unknown folder", str(folder), f"{split}/ holds only good/"))
                continue
            images, other = list_files(folder)
            scan.problems += [Problem("unknown file", str(folder / o)) for o in other]
            label = label_of(kind)
            for name in images:
                stem = os.path.splitext(name)[0]
                mask = None
                masks: list[str] = []
                if label == ANOMALOUS:
                    stems.setdefault(kind, set()).add(stem)
                    mask_dir = gt_dir / kind / stem
                    masks = [str(mask_dir / m) for m in list_files(mask_dir)[0]]
                    if masks:
                        mask = str(mask_dir)
                    else:
                        scan.problems.append(Problem("missing mask", str(folder / name),
                                                     f"no mask files in {mask_dir}"))
                scan.samples.append(ad_sample(dataset=dataset, category=category, rel=f"{category}/{split}/{kind}/{name}",
                                              image=folder / name, label=label, defect=kind, split=split, mask=mask,
                                              masks=masks))
    for kind in subdirs(gt_dir):
        if not (cat_dir / "test" / kind).is_dir():
            scan.problems.append(Problem("unknown folder", str(gt_dir / kind), "no test/ folder of that kind"))
            continue
        for stem in subdirs(gt_dir / kind):
            if stem not in stems.get(kind, set()):
                scan.problems.append(Problem("mask without image", str(gt_dir / kind / stem)))
