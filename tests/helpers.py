"""Shared test fixtures: a miniature MMAD-format suite on disk and a slow model."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from adbench.data.mmad import read_mmad
from adbench.model import Model, OutputKind
from adbench.schema import ANOMALY_DETECTION, ParseStatus, Query, Response
from adbench.task import QuestionTask


def write_image(path: Path, rng: np.random.Generator, size: int = 32, value: int | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8) if value is None else np.full((size, size, 3), value, np.uint8)
    Image.fromarray(arr).save(path)
    return path.as_posix()


def write_mini_mmad(root: Path, datasets: Sequence[str] = ("DS-A", "DS-B"), categories: Sequence[str] = ("c1", "c2"),
                    n_good: int = 4, n_bad: int = 4, seed: int = 0) -> Path:
    """A tiny suite in MMAD's layout: AD question for every image, a 3-option question for defects."""
    rng = np.random.default_rng(seed)
    index = {}
    for ds in datasets:
        for cat in categories:
            templates = [f"{ds}/{cat}/train/good/{i:03d}.png" for i in range(3)]
            for t in templates:
                write_image(root / t, rng)
            for kind, n in (("good", n_good), ("crack", n_bad)):
                for i in range(n):
                    key = f"{ds}/{cat}/image/{kind}/{i:03d}.png"
                    write_image(root / key, rng)
                    conv = [{"Question": "Is there any defect in the object?", "Options": {"A": "Yes.", "B": "No."},
                             "Answer": "B" if kind == "good" else "A", "type": ANOMALY_DETECTION}]
                    mask = None  # MMAD: mask_path is relative to <dataset>/<category>/, null when normal
                    if kind != "good":
                        mask = f"mask/{kind}/{i:03d}.png"
                        m = np.zeros((32, 32), np.uint8)
                        m[4:10, 4:12] = 255
                        (root / ds / cat / mask).parent.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(m).save(root / ds / cat / mask)
                        conv.append({"Question": "What is the defect?", "Options": {"A": "crack", "B": "scratch", "C": "hole"},
                                     "Answer": "A", "type": "Defect Classification"})
                    index[key] = {"image_path": f"image/{kind}/{i:03d}.png", "mask_path": mask, "random_templates": templates[:2],
                                  "similar_templates": templates[1:], "conversation": conv}
    (root / "mmad.json").write_text(json.dumps(index, indent=1))
    return root


def mini_binary_task(shots: int = 1, threshold: str = "calibrated") -> QuestionTask:
    return QuestionTask("mini-binary", "test suite", read_mmad, qtypes=[ANOMALY_DETECTION], shots=shots,
                        threshold=threshold, args={"shots": shots})


def mini_all_task() -> QuestionTask:
    return QuestionTask("mini-all", "test suite, all questions", read_mmad)


class PathScorer(Model):
    """Scores read off the image path: normal image i -> 0.1 i, anomalous i -> 0.45 + 0.1 i, calibration
    (support) images 0.5: thresholds and decisions that can be worked out by hand."""

    name = "path-scorer"
    output = OutputKind.SCORE
    score_is_probability = True

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        out = []
        for q in queries:
            i = int(Path(q.image).stem)
            if "/train/good/" in q.image:
                out.append(Response(score=0.5))
            else:
                out.append(Response(score=0.1 * i if "/image/good/" in q.image else 0.45 + 0.1 * i))
        return out


class SlowModel(Model):
    """Answers like `chance` but takes `delay` seconds per query: room for a kill -9."""

    name = "slow"
    output = OutputKind.GENERATIVE

    def __init__(self, delay: float = 0.05, seed: int = 0) -> None:
        self.delay = float(delay)
        self.seed = seed

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        out = []
        for q in queries:
            time.sleep(self.delay)
            letter = sorted(q.options)[hash_index(q.id, len(q.options))]
            out.append(Response(text=f"The answer is {letter}.", answer=letter, parse_status=ParseStatus.PARSED))
        return out


def hash_index(s: str, n: int) -> int:
    import hashlib

    return int(hashlib.md5(s.encode()).hexdigest(), 16) % n


class FilePromptModel(SlowModel):
    """A model whose prompt is the text of a file (as `-M instruction_file=` gives the MLLM adapters)."""

    name = "file-prompt"

    def __init__(self, instruction_file: str, delay: float = 0.0, seed: int = 0) -> None:
        super().__init__(delay, seed)
        self.instruction_file = instruction_file

    def prompt_text(self) -> str:
        return Path(self.instruction_file).read_text(encoding="utf-8")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`adbench ARGV` in this process: (exit status, stdout, stderr), capsys emptied first."""
    from adbench.cli import main

    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err
