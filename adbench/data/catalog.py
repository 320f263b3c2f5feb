"""The datasets adbench knows: folder name under the data root, reader, where to get them.

    <data root>/MMAD/mmad.json             MMAD's index, with DS-MVTec/, VisA/, MVTec-LOCO/, GoodsAD/ beside it
    <data root>/mvtec_anomaly_detection/   MVTec AD (the archive's own folder name)
    <data root>/VisA/                      VisA (split_csv/1cls.csv + <object>/Data/...)
    <data root>/mvtec_loco_anomaly_detection/
    <data root>/GoodsAD/
    <data root>/MPDD/
    <data root>/DTD-Synthetic/
    <data root>/DAGM/                      Class1 .. Class10

Every task takes `-T root=DIR` to read a dataset from elsewhere (relative to the
data root, or absolute).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adbench.data.dagm import scan_dagm
from adbench.data.layout import Scan
from adbench.data.loco import scan_loco
from adbench.data.mmad import scan_mmad
from adbench.data.mvtec import scan_mvtec
from adbench.data.paths import DataError
from adbench.data.visa import scan_visa


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # the dataset's name in Samples, tables and `--datasets`
    folder: str  # default folder under the data root
    scan: Callable[[Path], Scan]
    source: str  # where to obtain it
    layout: str  # what adbench expects inside the folder


DATASETS: dict[str, DatasetSpec] = {
    d.name: d
    for d in (
        DatasetSpec("MMAD", "MMAD", scan_mmad,
                    "https://huggingface.co/datasets/jiang-cc/MMAD (mmad.json and the image archive)",
                    "mmad.json with DS-MVTec/, VisA/, MVTec-LOCO/, GoodsAD/ beside it"),
        DatasetSpec("MVTec-AD", "mvtec_anomaly_detection", lambda r: scan_mvtec(r, "MVTec-AD"),
                    "https://www.mvtec.com/company/research/datasets/mvtec-ad",
                    "<cat>/train/good, <cat>/test/<defect>, <cat>/ground_truth/<defect>/<stem>_mask.png"),
        DatasetSpec("VisA", "VisA", scan_visa,
                    "https://github.com/amazon-science/spot-diff (VisA_20220922.tar)",
                    "split_csv/1cls.csv, <object>/Data/Images/{Normal,Anomaly}, <object>/Data/Masks/Anomaly "
                    "(or MMAD's copy: <cat>/train/good, <cat>/test/{good,bad}, <cat>/ground_truth/bad)"),
        DatasetSpec("MVTec-LOCO", "mvtec_loco_anomaly_detection", scan_loco,
                    "https://www.mvtec.com/company/research/datasets/mvtec-loco",
                    "<cat>/{train,validation}/good, <cat>/test/<kind>, <cat>/ground_truth/<kind>/<stem>/NNN.png"),
        DatasetSpec("GoodsAD", "GoodsAD", lambda r: scan_mvtec(r, "GoodsAD"),
                    "https://github.com/jianzhang96/GoodsAD",
                    "<cat>/train/good, <cat>/test/<defect>, <cat>/ground_truth/<defect>/<stem>.png"),
        DatasetSpec("MPDD", "MPDD", lambda r: scan_mvtec(r, "MPDD"),
                    "https://github.com/stepanje/MPDD",
                    "<cat>/train/good, <cat>/test/<defect>, <cat>/ground_truth/<defect>/<stem>_mask.png"),
        DatasetSpec("DTD", "DTD-Synthetic", lambda r: scan_mvtec(r, "DTD"),
                    "DTD-Synthetic (Aota et al., WACV 2023), as distributed with AnomalyCLIP's data instructions",
                    "<texture>/train/good, <texture>/test/{good,bad}, <texture>/ground_truth/bad/<stem>_mask.png"),
        DatasetSpec("DAGM", "DAGM", scan_dagm,
                    "https://hci.iwr.uni-heidelberg.de/content/weakly-supervised-learning-industrial-optical-inspection "
                    "(also on Kaggle as the DAGM 2007 competition set)",
                    "Class1..Class10/{Train,Test}/NNNN.PNG, Class<k>/{Train,Test}/Label/NNNN_label.PNG"),
    )
}


def spec(name: str) -> DatasetSpec:
    """A dataset by name, case-insensitively; an unknown name lists the known ones."""
    for key, d in DATASETS.items():
        if key.lower() == name.lower() or d.folder.lower() == name.lower():
            return d
    raise DataError(f"unknown dataset {name!r}. Known datasets: {', '.join(DATASETS)}")


def dataset_dir(data_root: Path, name: str, root: str | Path | None = None) -> Path:
    """Where a dataset is read from: `root` (absolute, or relative to the data root), else its default folder."""
    if root:
        p = Path(root).expanduser()
        return p if p.is_absolute() else Path(data_root) / p
    return Path(data_root) / spec(name).folder
