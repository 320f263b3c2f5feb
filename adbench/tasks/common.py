"""What the real-data suites share on top of QuestionTask.

- Narrowing (`-T datasets=VisA`, `-T categories=candle,pcb1`) is checked against what
  the data holds: a name that matches nothing is an error listing the valid names,
  not an empty run.
- Reader problems (unknown folders, missing masks) are reported as a `DataWarning`
  with counts, pointing at `adbench data check` for the paths.
- Ground-truth pseudo boxes are attached to each anomalous sample's Record when the
  runner records it (`make_record`), from the content-keyed box cache under
  `<data root>/.adbench-cache/boxes/`. Doing it per recorded sample keeps the start of
  a run fast (and `--limit 10` touches 10 masks, not 5,000); `adbench data boxes`
  fills the cache beforehand. A mask that cannot be read leaves the Record without
  boxes and says why in `meta["gt_boxes_error"]`.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adbench.data.layout import Problem
from adbench.data.paths import DataError
from adbench.data.pseudo_boxes import (
    DEFAULT_KERNEL,
    DEFAULT_MIN_AREA,
    BoxCache,
    BoxParams,
    attach_boxes,
    default_cache_dir,
)
from adbench.schema import Record, Response, Sample
from adbench.task import QuestionTask


class DataWarning(UserWarning):
    """A dataset read with problems (the run goes on; `adbench data check` lists them)."""


def warn_problems(name: str, problems: Sequence[Problem]) -> None:
    if not problems:
        return
    kinds = Counter(p.kind for p in problems)
    summary = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
    first = problems[0]
    warnings.warn(f"{name}: {len(problems)} problem(s) in the data ({summary}), e.g. {first}; "
                  "`adbench data check` lists them all", DataWarning, stacklevel=3)


def _check_narrowing(what: str, wanted: Sequence[str] | None, present: set[str]) -> None:
    if wanted is None:
        return
    unknown = [w for w in wanted if w not in present]
    if unknown:
        raise DataError(f"-T {what}: {', '.join(unknown)} not in the data; present: {', '.join(sorted(present))}")


Loader = Callable[[Path], list[Sample]]


class SuiteTask(QuestionTask):
    """QuestionTask over a real dataset: checked narrowing, reported problems, lazy GT boxes."""

    def __init__(self, name: str, description: str, loader: Loader, *, boxes: bool = True,
                 box_kernel: int = DEFAULT_KERNEL, box_min_area: int = DEFAULT_MIN_AREA, **kw: Any) -> None:
        super().__init__(name, description, self._read, **kw)
        self.loader = loader
        self.with_boxes = bool(boxes)
        self.box_params = BoxParams(int(box_kernel), int(box_min_area))
        self.box_cache: BoxCache | None = BoxCache(None, self.box_params) if self.with_boxes else None
        self._warned_cache = False

    def _read(self, data_root: Path) -> list[Sample]:
        samples = self.loader(data_root)
        _check_narrowing("datasets", self.datasets, {s.dataset for s in samples})
        if self.categories is not None:
            pool = [s for s in samples if self.datasets is None or s.dataset in self.datasets]
            _check_narrowing("categories", self.categories, {s.category for s in pool})
        return samples

    def samples(self, data_root: Path) -> list[Sample]:
        if self.with_boxes:
            self.box_cache = BoxCache(default_cache_dir(Path(data_root)), self.box_params)
        return super().samples(data_root)

    def make_record(self, s: Sample, r: Response) -> Record:
        errors = attach_boxes([s], self.box_cache) if self.box_cache is not None else []
        if self.box_cache is not None and self.box_cache.write_error and not self._warned_cache:
            self._warned_cache = True
            warnings.warn(self.box_cache.write_error, DataWarning, stacklevel=2)
        record = super().make_record(s, r)
        if errors:
            record.meta["gt_boxes_error"] = errors[0][1]
        return record

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg["boxes"] = {"kernel": self.box_params.kernel, "min_area": self.box_params.min_area} \
            if self.with_boxes else None
        return cfg
