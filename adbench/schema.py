"""The shapes every part of adbench shares: Box, Sample, Query, Response, Record, and their names.

One sample's way through the harness:

    files on disk --reader--> Sample --task--> Query --model--> Response
    Sample + Response --task--> Record (one line of samples.jsonl) --metrics--> results.json

They are plain dataclasses so that they serialise to JSON without ceremony and so
that an adapter author can build them by hand in a test. The closed sets of values
they carry are enums of text (`ParseStatus`, `Role`), so run files keep the same text;
MMAD's question-type names live here too, the one place every module reads them from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any, TypeVar

ANOMALOUS = 1
NORMAL = 0


class TextEnum(str, Enum):
    """An enum whose members are their text: equal to it, hashed like it, printed and written as it.

    Run files (samples.jsonl, config.json, results.json) hold the plain text, so a member
    must serialise to exactly that (json writes a str subclass as its text) and compare
    equal to the plain string read back from an old file. `str()` and f-strings give the
    text on every Python version (`enum.StrEnum` would, but needs 3.11).
    """

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str(self), spec)


class ParseStatus(TextEnum):
    """Whether a generative reply was read into an answer (Response.parse_status, Record.parse_status)."""

    PARSED = "ok"
    UNPARSED = "unparsed"
    NOT_APPLICABLE = "n/a"  # score-based models and failed requests


class Role(TextEnum):
    """What a Sample is asked for (Sample.role, Record.role)."""

    EVAL = "eval"  # evaluated: counted in every figure
    CALIBRATION = "calibration"  # a normal image scored only to set a score-based model's thresholds


#: MMAD's question types, in MMAD's order (the `type` of mmad.json's questions). Every
#: yes/no suite asks the first one.
ANOMALY_DETECTION = "Anomaly Detection"
QUESTION_TYPES = (
    ANOMALY_DETECTION,
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Structure",
    "Object Details",
)
#: MMAD's summary pools the last two question types into one, "Object Analysis".
OBJECT_ANALYSIS = "Object Analysis"
MMAD_POOLED = {"Object Structure": OBJECT_ANALYSIS, "Object Details": OBJECT_ANALYSIS}

#: The meta key of a Sample's (and its Record's) image key: the image's entry in its
#: dataset's index (MMAD: mmad.json's key), shared by all the image's questions.
IMAGE_KEY = "key"
#: What Records written before the one name called it (old samples.jsonl files are still read).
OLD_RECORD_IMAGE_KEY = "sample"


E = TypeVar("E", bound=Enum)


def _member(enum: type[E], value: Any, what: str) -> E:
    """`value` as a member of `enum` (a member, or its text), or a ValueError naming the valid texts."""
    try:
        return enum(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in enum)
        raise ValueError(f"{what} must be one of {valid}, got {value!r}") from None


@dataclass
class Box:
    """An axis-aligned box in pixel coordinates of one named frame (x1, y1, x2, y2).

    The one in-memory form of a box. Wherever adbench stores one (Records, training rows,
    the pseudo-box cache) it is `to_dict`'s form, `{"bbox": [x1, y1, x2, y2], "label": ...}`,
    read back with `from_dict`. (Qwen2.5-VL's own `bbox_2d` is the model's wire format,
    read and written only by `adbench.models.adfm_protocol`.)
    """

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
    qtype: str = ANOMALY_DETECTION
    question: str = ""
    options: dict[str, str] = field(default_factory=dict)  # letter -> option text
    gold: str = ""  # gold option letter
    mask: str | None = None  # absolute path of the defect mask (anomalous images)
    boxes: list[Box] = field(default_factory=list)  # GT boxes in original image pixels
    references: list[str] = field(default_factory=list)  # normal images shown with the query
    support: list[str] = field(default_factory=list)  # normal images a few-shot model may learn from
    role: Role = Role.EVAL
    meta: dict[str, Any] = field(default_factory=dict)  # IMAGE_KEY: the image's key, when the reader knows one

    def __post_init__(self) -> None:
        self.role = _member(Role, self.role, "Sample.role")

    @property
    def key(self) -> str | None:
        """The image's key in its dataset's index (shared by the image's questions), if the reader gave one."""
        return self.meta.get(IMAGE_KEY)


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
    parse_status: ParseStatus = ParseStatus.NOT_APPLICABLE
    error: str | None = None
    retryable: bool = False  # a resumed run asks again (transient API faults)
    usage: dict[str, Any] = field(default_factory=dict)  # tokens, cost, latency
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # an adapter that writes another status fails here, inside its predict: the runner records that
        self.parse_status = _member(ParseStatus, self.parse_status, "Response.parse_status")

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
    parse_status: ParseStatus
    usage: dict[str, Any] = field(default_factory=dict)
    defect: str = ""
    role: Role = Role.EVAL
    retryable: bool = False
    boxes: list[dict[str, Any]] = field(default_factory=list)  # Box.to_dict() each
    gt_boxes: list[dict[str, Any]] = field(default_factory=list)  # Box.to_dict() each
    stages: dict[str, str] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    mask: str | None = None
    question: str = ""
    options: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.role = _member(Role, self.role, "Record.role")
        self.parse_status = _member(ParseStatus, self.parse_status, "Record.parse_status")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the enums are str: json writes their text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def unparsed(self) -> bool:
        return self.error is None and self.parse_status == ParseStatus.UNPARSED

    @property
    def key(self) -> str | None:
        """The sample's image key (`Sample.key`); Records written before it had one name hold it as "sample"."""
        return self.meta.get(IMAGE_KEY, self.meta.get(OLD_RECORD_IMAGE_KEY))
