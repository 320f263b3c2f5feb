"""Tasks over the built-in demo suite (generated offline on first use).

The demo suite is written in MMAD's form, so these tasks exercise the same reader,
rendering, pseudo boxes and scoring as the real MMAD tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adbench.data.demo import ensure_demo
from adbench.data.mmad import read_mmad
from adbench.schema import Sample
from adbench.task import ANOMALY_DETECTION
from adbench.tasks.common import SuiteTask


def read_demo(data_root: Path) -> list[Sample]:
    return read_mmad(ensure_demo(data_root))


def _demo_task(name: str, description: str, args: dict[str, Any], **filters: Any) -> SuiteTask:
    return SuiteTask(name, description, read_demo, **args, **filters, args=args)


def binary(shots: int = 1, template: str = "random", datasets: str | None = None,
           categories: str | None = None, threshold: str | float = "calibrated") -> SuiteTask:
    """Anomaly Detection (yes/no) on the demo suite, 1-shot by default."""
    args = dict(shots=shots, template=template, datasets=datasets, categories=categories, threshold=threshold)
    return _demo_task("demo-binary", "Demo suite, Anomaly Detection question", args, qtypes=[ANOMALY_DETECTION])


def multitask(shots: int = 1, template: str = "random", datasets: str | None = None,
              categories: str | None = None) -> SuiteTask:
    """Every question type except Anomaly Detection on the demo suite."""
    args = dict(shots=shots, template=template, datasets=datasets, categories=categories)
    return _demo_task("demo-multitask", "Demo suite, defect and object questions", args,
                      exclude_qtypes=[ANOMALY_DETECTION])
