"""The cross-dataset suites (the AD-FM paper's Table 2): VisA, MPDD, DTD and DAGM.

Protocol: each dataset's standard test split, MMAD's yes/no Anomaly Detection
question, and a single normal reference image shown before the query, drawn from
the same category's training images by a seeded hash of the sample id (`-T seed=N`
draws others; `-T shots=0` shows none). The draw depends only on the seed, the id
and the sorted file names, so every machine shows the same reference.

Data: `<data root>/VisA`, `MPDD`, `DTD-Synthetic` and `DAGM` (see
`adbench.data.catalog`); `-T root=DIR` for a single-dataset task, `-T visa_root=`,
`mpdd_root=`, `dtd_root=`, `dagm_root=` for `cross-dataset`. MMAD's copy of VisA is
read with `-T root=MMAD/VisA`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adbench.data.catalog import dataset_dir, spec
from adbench.data.layout import draw_references
from adbench.data.paths import DataError
from adbench.data.pseudo_boxes import DEFAULT_KERNEL, DEFAULT_MIN_AREA
from adbench.schema import ANOMALY_DETECTION, Sample
from adbench.task import Threshold
from adbench.tasks.common import SuiteTask, warn_problems

DATASETS = ("VisA", "MPDD", "DTD", "DAGM")


def read_test_split(data_root: Path, name: str, root: str | None, seed: int, n_refs: int) -> list[Sample]:
    """One dataset's standard test split with `n_refs` normal references drawn from its train split."""
    d = spec(name)
    folder = dataset_dir(data_root, d.name, root)
    if not folder.is_dir():
        raise DataError(f"{d.name} not found at {folder}: get it from {d.source} and place it there "
                        f"(expected: {d.layout}), or pass -T root=DIR")
    scan = d.scan(folder)
    warn_problems(d.name, scan.problems)
    test = [s for s in scan.samples if s.meta.get("split") == "test"]
    if not test:
        raise DataError(f"{d.name} at {folder}: no test images found (expected: {d.layout})")
    for s in test:
        if not s.support:
            raise DataError(f"{d.name} at {folder}: category {s.category!r} has no normal training images "
                            "to draw a reference from")
        s.references = draw_references(s.id, s.support, n_refs, seed)
    return test


class CrossTask(SuiteTask):
    """Yes/no anomaly detection on standard test splits, one normal reference each."""

    def __init__(self, name: str, description: str, roots: dict[str, str | None], *, seed: int, **kw: Any) -> None:
        super().__init__(name, description, self._load, **kw)
        self.roots = roots
        self.seed = int(seed)

    def _load(self, data_root: Path) -> list[Sample]:
        names = [n for n in self.roots if self.datasets is None or n in self.datasets]
        unknown = [n for n in (self.datasets or ()) if n not in self.roots]
        if unknown:
            raise DataError(f"-T datasets: {', '.join(unknown)} not in {self.name}; it has {', '.join(self.roots)}")
        samples: list[Sample] = []
        for n in names:
            samples += read_test_split(data_root, n, self.roots[n], self.seed, max(self.shots, 1))
        self.split_info = {"hash": _protocol_hash(samples), "part": "test", "protocol": "standard test split",
                           "reference_seed": self.seed, "datasets": names}
        return samples


def _protocol_hash(samples: Sequence[Sample]) -> str:
    """Hash of which images are asked and which references they are shown."""
    blob = json.dumps(sorted([s.id, [Path(r).name for r in s.references]] for s in samples)).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _single(dataset: str, task: str, root: str | None, shots: int, seed: int, categories: str | None,
            threshold: Threshold, boxes: bool, box_kernel: int, box_min_area: int,
            args: dict[str, Any]) -> CrossTask:
    return CrossTask(task, f"{dataset} test split, yes/no Anomaly Detection, one normal reference (Table 2)",
                     {dataset: root}, seed=seed, qtypes=[ANOMALY_DETECTION], shots=shots, categories=categories,
                     threshold=threshold, boxes=boxes, box_kernel=box_kernel, box_min_area=box_min_area,
                     args=args)


def visa(root: str | None = None, shots: int = 1, seed: int = 0, categories: str | None = None,
         threshold: Threshold = "calibrated", boxes: bool = True, box_kernel: int = DEFAULT_KERNEL,
         box_min_area: int = DEFAULT_MIN_AREA) -> CrossTask:
    """VisA's 1-class test split."""
    a = dict(locals())
    return _single("VisA", "cross-visa", args=a, **a)


def mpdd(root: str | None = None, shots: int = 1, seed: int = 0, categories: str | None = None,
         threshold: Threshold = "calibrated", boxes: bool = True, box_kernel: int = DEFAULT_KERNEL,
         box_min_area: int = DEFAULT_MIN_AREA) -> CrossTask:
    """MPDD's test split."""
    a = dict(locals())
    return _single("MPDD", "cross-mpdd", args=a, **a)


def dtd(root: str | None = None, shots: int = 1, seed: int = 0, categories: str | None = None,
        threshold: Threshold = "calibrated", boxes: bool = True, box_kernel: int = DEFAULT_KERNEL,
        box_min_area: int = DEFAULT_MIN_AREA) -> CrossTask:
    """DTD-Synthetic's test split."""
    a = dict(locals())
    return _single("DTD", "cross-dtd", args=a, **a)


def dagm(root: str | None = None, shots: int = 1, seed: int = 0, categories: str | None = None,
         threshold: Threshold = "calibrated", boxes: bool = True, box_kernel: int = DEFAULT_KERNEL,
         box_min_area: int = DEFAULT_MIN_AREA) -> CrossTask:
    """DAGM 2007's test split (Class1..Class10)."""
    a = dict(locals())
    return _single("DAGM", "cross-dagm", args=a, **a)


def suite(datasets: str | None = None, categories: str | None = None, visa_root: str | None = None,
          mpdd_root: str | None = None, dtd_root: str | None = None, dagm_root: str | None = None,
          shots: int = 1, seed: int = 0, threshold: Threshold = "calibrated", boxes: bool = True,
          box_kernel: int = DEFAULT_KERNEL, box_min_area: int = DEFAULT_MIN_AREA) -> CrossTask:
    """All four cross-dataset test splits in one run (Table 2's columns and their average)."""
    args = dict(locals())
    roots = {"VisA": visa_root, "MPDD": mpdd_root, "DTD": dtd_root, "DAGM": dagm_root}
    return CrossTask("cross-dataset", "VisA + MPDD + DTD + DAGM test splits, one normal reference (Table 2)",
                     roots, seed=seed, qtypes=[ANOMALY_DETECTION], shots=shots, datasets=datasets,
                     categories=categories, threshold=threshold, boxes=boxes, box_kernel=box_kernel,
                     box_min_area=box_min_area, args=args)
