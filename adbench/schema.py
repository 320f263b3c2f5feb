"""The shapes every part of adbench shares: Box, Sample, Query, Response, Record.

One sample's way through the harness:

    files on disk --reader--> Sample --task--> Query --model--> Response
    Sample + Response --task--> Record (one line of samples.jsonl) --metrics--> results.json

They are plain dataclasses so that they serialise to JSON without ceremony and so
that an adapter author can build them by hand in a test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

ANOMALOUS = 1
NORMAL = 0

#: Parse status of a generative reply (Response.parse_status).
PARSED = "ok"
UNPARSED = "unparsed"
NOT_APPLICABLE = "n/a"  # score-based models and failed requests


@dataclass
class Box:
    """An axis-aligned box in pixel coordinates of one named frame (x1, y1, x2, y2)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = ""

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def to_dict(self) -> dict[str, Any]:
        return {"bbox": [self.x1, self.y1, self.x2, self.y2], "label": self.label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Box:
        x1, y1, x2, y2 = d["bbox"]
        return cls(float(x1), float(y1), float(x2), float(y2), str(d.get("label", "")))


@dataclass
class Sample:
    """Ground truth for one question about one image.

    MMAD asks several questions about each image; each (image, question) pair is one
    Sample with an id that is stable across machines (the image key plus the question
    index), so runs can be resumed and compared sample by sample.
    """

    id: str
    dataset: str
    category: str
    image: str  # absolute path of the query image
    label: int | None  # ANOMALOUS, NORMAL, or None when unknown
    defect: str = ""  # defect type; "good" for normal images
    qtype: str = "Anomaly Detection"
    question: str = ""
    options: dict[str, str] = field(default_factory=dict)  # letter -> option text
    gold: str = ""  # gold option letter
    mask: str | None = None  # absolute path of the defect mask (anomalous images)
    boxes: list[Box] = field(default_factory=list)  # GT boxes in original image pixels
    references: list[str] = field(default_factory=list)  # normal images shown with the query
    support: list[str] = field(default_factory=list)  # normal images a few-shot model may learn from
    role: str = "eval"  # "eval", or "calibration" (normal images used only to set thresholds)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Query:
    """What a model is given: images in order, the question, its options and a default prompt.

    `images` lists the reference images first and the query image last, which is the
    order MMAD's 1-shot protocol shows them in. `prompt` is the task's rendering of the
    question for models that take it as is; adapters with their own protocol (AD-FM)
    build their prompt from `question` and `options` instead.
    """

    id: str
    images: list[str]
    question: str
    options: dict[str, str]
    prompt: str
    n_references: int = 0  # how many of `images` are normal references
    support: list[str] = field(default_factory=list)
    group: str = ""  # "<dataset>/<category>": the unit few-shot models fit a memory bank on
    qtype: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> str:
        """The query image (the last one shown)."""
        return self.images[-1]

    @property
    def references(self) -> list[str]:
        return self.images[: self.n_references]


@dataclass
class Response:
    """What a model answered for one Query.

    A generative model fills `text` and, through its parser, `answer` (an option
    letter) and `parse_status`. A score-based model fills `score` (higher = more
    anomalous) and leaves decisions to the task's threshold rule. A failure sets
    `error` and leaves `answer` empty: it is never turned into a made-up answer.
    """

    text: str | None = None
    answer: str | None = None
    score: float | None = None
    boxes: list[Box] = field(default_factory=list)  # predicted boxes, original image pixels
    stages: dict[str, str] = field(default_factory=dict)  # e.g. think / rethink / answer
    parse_status: str = NOT_APPLICABLE
    error: str | None = None
    retryable: bool = False  # a resumed run asks again (transient API faults)
    usage: dict[str, Any] = field(default_factory=dict)  # tokens, cost, latency
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failure(cls, error: str, *, retryable: bool = False, **kw: Any) -> Response:
        return cls(error=error, retryable=retryable, **kw)


@dataclass
class Record:
    """One line of samples.jsonl: the sample's ground truth next to the model's response."""

    id: str
    dataset: str
    category: str
    qtype: str
    label: int | None
    gold: str
    image: str
    text: str | None
    answer: str | None
    score: float | None
    correct: bool | None  # None for score-based models: decided at scoring time
    error: str | None
    parse_status: str
    usage: dict[str, Any] = field(default_factory=dict)
    defect: str = ""
    role: str = "eval"
    retryable: bool = False
    boxes: list[dict[str, Any]] = field(default_factory=list)
    gt_boxes: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    mask: str | None = None
    question: str = ""
    options: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def unparsed(self) -> bool:
        return self.error is None and self.parse_status == UNPARSED
