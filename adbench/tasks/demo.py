"""Tasks over the built-in demo suite (generated offline on first use).

The demo suite is written in MMAD's form under `<data root>/demo`, so these tasks are
the MMAD tasks pointed at it: the same reader, split, rendering, pseudo boxes and
scoring. Unlike the MMAD tasks they default to the whole suite (`-T split=all`);
`-T split=train|eval` gives the paper's 20/80 split of it (the tiny training recipe
trains on `train`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adbench.data.demo import ensure_demo
from adbench.data.split import TRAIN_FRACTION
from adbench.schema import ANOMALY_DETECTION, Sample
from adbench.task import Template, Threshold
from adbench.tasks.mmad import MMADTask, Part

DEMO_FOLDER = "demo"


class DemoTask(MMADTask):
    """An MMAD task over the demo suite, generating it first if needed."""

    def _load(self, data_root: Path) -> list[Sample]:
        ensure_demo(Path(data_root))
        return super()._load(data_root)


def _demo_task(name: str, description: str, args: dict[str, Any], **filters: Any) -> DemoTask:
    return DemoTask(name, description, root=DEMO_FOLDER, split_file=None, train_fraction=TRAIN_FRACTION,
                    args=args, **args, **filters)


def binary(shots: int = 1, template: Template = "random", split: Part = "all", split_seed: int = 0,
           datasets: str | None = None, categories: str | None = None,
           threshold: Threshold = "calibrated") -> DemoTask:
    """Anomaly Detection (yes/no) on the demo suite, 1-shot by default."""
    args = dict(shots=shots, template=template, split=split, split_seed=split_seed, datasets=datasets,
                categories=categories, threshold=threshold)
    return _demo_task("demo-binary", "Demo suite, Anomaly Detection question", args, qtypes=[ANOMALY_DETECTION])


def multitask(shots: int = 1, template: Template = "random", split: Part = "all", split_seed: int = 0,
              datasets: str | None = None, categories: str | None = None) -> DemoTask:
    """Every question type except Anomaly Detection on the demo suite."""
    args = dict(shots=shots, template=template, split=split, split_seed=split_seed, datasets=datasets,
                categories=categories)
    return _demo_task("demo-multitask", "Demo suite, defect and object questions", args,
                      exclude_qtypes=[ANOMALY_DETECTION])
