"""Reader of DAGM 2007 (the weakly supervised industrial optical inspection set).

    <root>/Class1 .. Class10/{Train,Test}/<NNNN>.PNG
    <root>/Class<k>/{Train,Test}/Label/<NNNN>_label.PNG    defect masks
    <root>/Class<k>/{Train,Test}/Label/Labels.txt          DAGM's own list (not needed)

An image is anomalous exactly when its `_label` mask exists. DAGM has no defect
names, so the defect type is `defect`; the category is the class folder.
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
    list_files,
    subdirs,
)
from adbench.schema import ANOMALOUS, NORMAL

DATASET = "DAGM"
SPLITS = {"Train": "train", "Test": "test"}
LABEL_DIR = "Label"
LABEL_SUFFIX = "_label"
DEFECT = "defect"


def scan_dagm(root: Path, *, seed: int = 0, dataset: str = DATASET) -> Scan:
    """Every DAGM image as a Sample (train and test), and every problem found."""
    scan = Scan()
    for category, cat_dir, parts in category_folders(Path(root), tuple(SPLITS), scan):
        for part, split in SPLITS.items():
            if part in parts:
                _scan_split(cat_dir / part, dataset, category, split, scan)
    attach_support(scan.samples, lambda s: s.meta["split"] == "train" and s.label == NORMAL, seed)
    return scan


def _scan_split(folder: Path, dataset: str, category: str, split: str, scan: Scan) -> None:
    images, other = list_files(folder)
    scan.problems += [Problem("unknown file", str(folder / o)) for o in other]
    scan.problems += [Problem("unknown folder", str(folder / d)) for d in subdirs(folder) if d != LABEL_DIR]
    labels: dict[str, str] = {}
    for name in list_files(folder / LABEL_DIR)[0]:
        stem = os.path.splitext(name)[0]
        if stem.endswith(LABEL_SUFFIX):
            labels[stem[: -len(LABEL_SUFFIX)]] = name
        else:
            scan.problems.append(Problem("unknown file", str(folder / LABEL_DIR / name), "not <stem>_label"))
    stems = set()
    for name in images:
        stem = os.path.splitext(name)[0]
        stems.add(stem)
        label_name = labels.get(stem)
        label = ANOMALOUS if label_name else NORMAL
        scan.samples.append(ad_sample(
            dataset=dataset, category=category, rel=f"{category}/{folder.name}/{name}", image=folder / name,
            label=label, defect=DEFECT if label_name else GOOD, split=split,
            mask=str(folder / LABEL_DIR / label_name) if label_name else None))
    scan.problems += [Problem("mask without image", str(folder / LABEL_DIR / labels[s]))
                      for s in sorted(set(labels) - stems)]
