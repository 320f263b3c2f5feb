"""The MMAD multi-domain suites: MVTec AD (DS-MVTec), VisA, MVTec-LOCO and GoodsAD.

Data: `<data root>/MMAD/mmad.json` with the four image folders beside it
(`-T root=DIR` reads another folder, relative to the data root or absolute).

Protocol (the AD-FM paper's Table 1 and 3, MMAD's scoring):
- The paper's split: 20% of the images train, 80% evaluate, drawn per dataset,
  category and label (`adbench.data.split`); `-T split=eval` (default), `train` or
  `all`; `-T split_seed=N` draws another split, `-T split_file=PATH` uses a given one.
- 1-shot: the first of the image's `random_templates` is shown before the query
  (`-T shots=0|1`, `-T template=random|similar`).
- `mmad-binary` asks the Anomaly Detection question (MMAD's balanced accuracy per
  dataset, and their average); `mmad-multitask` every other type, with Object
  Structure and Object Details merged into Object Analysis as MMAD's summary does;
  `mmad` asks everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from adbench.args import ArgumentError
from adbench.data.catalog import dataset_dir, spec
from adbench.data.layout import gc_paused
from adbench.data.mmad import INDEX_NAME, read_mmad
from adbench.data.paths import DataError
from adbench.data.pseudo_boxes import DEFAULT_KERNEL, DEFAULT_MIN_AREA
from adbench.data.split import TRAIN_FRACTION, Split, load_split, make_split, units_of
from adbench.schema import ANOMALY_DETECTION, MMAD_POOLED, Sample
from adbench.task import Template, Threshold
from adbench.tasks.common import SuiteTask

#: `-T split=`: the paper's eval side (default), its train side, or every image.
Part = Literal["eval", "train", "all"]
PARTS: tuple[str, ...] = get_args(Part)


class MMADTask(SuiteTask):
    """A SuiteTask over mmad.json that keeps one side of the paper's split."""

    def __init__(self, name: str, description: str, *, root: str | None, split: Part, split_seed: int,
                 train_fraction: float, split_file: str | None, **kw: Any) -> None:
        if split not in PARTS:
            raise ArgumentError(f"-T split must be one of {', '.join(PARTS)}, got {split!r}")
        super().__init__(name, description, self._load, **kw)
        self.root = root
        self.part = split
        self.split_seed = int(split_seed)
        self.train_fraction = float(train_fraction)
        self.split_file = split_file
        self.split: Split | None = None

    def samples(self, data_root: Path) -> list[Sample]:
        with gc_paused():  # 40k objects that all stay alive: see adbench.data.layout.gc_paused
            return super().samples(data_root)

    def _load(self, data_root: Path) -> list[Sample]:
        folder = dataset_dir(data_root, "MMAD", self.root)
        if not (folder / INDEX_NAME).is_file():
            d = spec("MMAD")
            raise DataError(f"MMAD index not found: {folder / INDEX_NAME}; get it from {d.source} and place "
                            f"it there ({d.layout}), or pass -T root=DIR")
        samples = read_mmad(folder)
        units = units_of(samples)  # the split is drawn over the whole index, before any narrowing
        if self.split_file:
            self.split = load_split(Path(self.split_file).expanduser(), units)
        else:
            self.split = make_split(units, data_root, name="mmad", seed=self.split_seed,
                                    fraction=self.train_fraction)
        self.split_info = self.split.info(self.part)
        if self.split.path and not self.split_file:  # relative: the config reads the same on every machine
            self.split_info["path"] = Path(self.split.path).relative_to(data_root).as_posix()
        if self.part == "all":
            return samples
        keep = self.split.train if self.part == "train" else self.split.eval
        return [s for s in samples if s.key in keep]


def _make(name: str, description: str, *, shots: int, template: Template, split: Part, datasets: str | None,
          categories: str | None, root: str | None, split_seed: int, train_fraction: float,
          split_file: str | None, boxes: bool, box_kernel: int, box_min_area: int, args: dict[str, Any],
          **kw: Any) -> MMADTask:
    return MMADTask(name, description, root=root, split=split, split_seed=split_seed,
                    train_fraction=train_fraction, split_file=split_file, shots=shots, template=template,
                    datasets=datasets, categories=categories, boxes=boxes, box_kernel=box_kernel,
                    box_min_area=box_min_area, args=args, **kw)


def binary(shots: int = 1, template: Template = "random", split: Part = "eval", datasets: str | None = None,
           categories: str | None = None, root: str | None = None, split_seed: int = 0,
           train_fraction: float = TRAIN_FRACTION, split_file: str | None = None,
           threshold: Threshold = "calibrated", boxes: bool = True, box_kernel: int = DEFAULT_KERNEL,
           box_min_area: int = DEFAULT_MIN_AREA) -> MMADTask:
    """MMAD's Anomaly Detection question on the paper's eval split (Table 1)."""
    args = dict(locals())
    return _make("mmad-binary", "MMAD Anomaly Detection (Table 1)", qtypes=[ANOMALY_DETECTION],
                 threshold=threshold, args=args, **{k: v for k, v in args.items() if k != "threshold"})


def multitask(shots: int = 1, template: Template = "random", split: Part = "eval", datasets: str | None = None,
              categories: str | None = None, root: str | None = None, split_seed: int = 0,
              train_fraction: float = TRAIN_FRACTION, split_file: str | None = None, boxes: bool = True,
              box_kernel: int = DEFAULT_KERNEL, box_min_area: int = DEFAULT_MIN_AREA) -> MMADTask:
    """MMAD's other question types, Object Structure + Details merged into Object Analysis (Table 3)."""
    args = dict(locals())
    return _make("mmad-multitask", "MMAD defect and object questions (Table 3)",
                 exclude_qtypes=[ANOMALY_DETECTION], merge_qtypes=MMAD_POOLED, args=args, **args)


def all_questions(shots: int = 1, template: Template = "random", split: Part = "eval", datasets: str | None = None,
                  categories: str | None = None, root: str | None = None, split_seed: int = 0,
                  train_fraction: float = TRAIN_FRACTION, split_file: str | None = None, boxes: bool = True,
                  box_kernel: int = DEFAULT_KERNEL, box_min_area: int = DEFAULT_MIN_AREA) -> MMADTask:
    """Every MMAD question type (Object Structure + Details merged into Object Analysis)."""
    args = dict(locals())
    return _make("mmad", "MMAD, all question types", merge_qtypes=MMAD_POOLED, args=args, **args)
