"""Tasks over the built-in demo suite (generated offline on first use).

The demo suite is written in MMAD's form, so these tasks exercise the same reader,
rendering and scoring as the real MMAD tasks.
"""

from __future__ import annotations

from pathlib import Path

from adbench.data.demo import ensure_demo
from adbench.data.mmad import read_mmad
from adbench.schema import Sample
from adbench.task import ANOMALY_DETECTION, QuestionTask


def read_demo(data_root: Path) -> list[Sample]:
    return read_mmad(ensure_demo(data_root))


def binary(shots: int = 1, template: str = "random", datasets: str | None = None,
           categories: str | None = None, threshold: str | float = "calibrated") -> QuestionTask:
    """Anomaly Detection (yes/no) on the demo suite, 1-shot by default."""
    return QuestionTask(
        "demo-binary",
        "Demo suite, Anomaly Detection question",
        read_demo,
        qtypes=[ANOMALY_DETECTION],
        datasets=datasets,
        categories=categories,
        shots=shots,
        template=template,
        threshold=threshold,
        args=dict(shots=shots, template=template, datasets=datasets, categories=categories, threshold=threshold),
    )


def multitask(shots: int = 1, template: str = "random", datasets: str | None = None,
              categories: str | None = None) -> QuestionTask:
    """Every question type except Anomaly Detection on the demo suite."""
    return QuestionTask(
        "demo-multitask",
        "Demo suite, defect and object questions",
        read_demo,
        exclude_qtypes=[ANOMALY_DETECTION],
        datasets=datasets,
        categories=categories,
        shots=shots,
        template=template,
        args=dict(shots=shots, template=template, datasets=datasets, categories=categories),
    )
