"""The task contract (`Task`) and the question-answering task every suite is built from.

A task yields Samples for a data root, renders each into a Query (images in order,
question, options, a default prompt), decides correctness, and scores Records into
metrics. Suites in `adbench.tasks` configure `QuestionTask` with a reader and
filters; they do not re-implement rendering or scoring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

from adbench.args import ArgumentError
from adbench.data.layout import AD_OPTIONS, AD_QUESTION
from adbench.data.paths import DataError
from adbench.model import OutputKind
from adbench.results import ThresholdRule, score_records
from adbench.schema import ANOMALY_DETECTION, IMAGE_KEY, NORMAL, Query, Record, Response, Role, Sample

if TYPE_CHECKING:
    from adbench.data.pseudo_boxes import BoxParams

#: `-T template=`: MMAD's two template lists.
Template = Literal["random", "similar"]
#: `-T threshold=`: a rule or a fixed threshold (a number).
Threshold = ThresholdRule | float

INTRO = (
    "You are an industrial quality inspector. You examine images of manufactured products "
    "and answer questions about defects in them."
)
REFERENCE_CAPTION = "Reference image of a normal, defect-free sample of the same product:"
QUERY_CAPTION = "Image to inspect:"
INSTRUCTION = "Answer with the letter of the correct option only."

Reader = Callable[[Path], list[Sample]]


@runtime_checkable
class Task(Protocol):
    """What the runner (and `adbench score`, `report`) may call on a task; `QuestionTask` is one."""

    name: str

    def samples(self, data_root: Path) -> list[Sample]:
        """The evaluated Samples under `data_root`, ids unique."""
        ...

    def calibration_samples(self, data_root: Path, samples: Sequence[Sample]) -> list[Sample]:
        """Normal images (role CALIBRATION) a score-based model is run on to set its thresholds."""
        ...

    def render(self, sample: Sample) -> Query: ...

    def make_record(self, sample: Sample, response: Response) -> Record: ...

    def score(self, records: Sequence[Record], kind: OutputKind | None = None) -> dict[str, Any]:
        """results.json's figures; kind: the model's declared output (None: a run recorded before it)."""
        ...

    def config(self) -> dict[str, Any]:
        """Everything that determines the samples and their scoring (config.json's `task_config`)."""
        ...

    def prompt_text(self) -> str:
        """Fixed prompt text the task renders (hashed into the run's provenance)."""
        ...


def missing_members(obj: Any) -> list[str]:
    """The members of `Task` that `obj` lacks (none: it is a Task), to name them in an error.

    Listed here because Python < 3.12 has no public way to read a Protocol's members.
    """
    members = ("name", "samples", "calibration_samples", "render", "make_record", "score", "config", "prompt_text")
    return [m for m in members if not hasattr(obj, m)]


def stable_hash(obj: Any) -> str:
    """Short content hash of a JSON-serialisable object (prompt, task and split hashes)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def format_options(options: dict[str, str]) -> str:
    return "\n".join(f"{k}. {v}" for k, v in options.items())


class QuestionTask:
    """Multiple-choice questions about images, scored MMAD's way.

    reader: data_root -> Samples (all question types, all images of the suite).
    qtypes / datasets / categories: filters (None keeps all).
    shots: how many normal reference images are shown before the query (0 or 1 in
        MMAD; more are allowed). template: which template list supplies them
        ("random" or "similar", MMAD's two lists; readers without lists use the
        sample's own `references`).
    threshold: the headline decision rule for score-based models: "calibrated"
        (from normal calibration images only), "youden" (oracle: best J on the
        evaluated set) or a number (fixed threshold).
    calibration_per_group: normal support images per dataset/category scored to
        calibrate thresholds of score-based models.
    """

    #: Pseudo-box extraction parameters (training and `adbench variance` read them); None: the defaults.
    box_params: BoxParams | None = None

    def __init__(
        self,
        name: str,
        description: str,
        reader: Reader,
        *,
        qtypes: Sequence[str] | None = None,
        exclude_qtypes: Sequence[str] = (),
        datasets: Sequence[str] | str | None = None,
        categories: Sequence[str] | str | None = None,
        shots: int = 1,
        template: Template = "random",
        threshold: Threshold = "calibrated",
        calibration_per_group: int = 8,
        merge_qtypes: dict[str, str] | None = None,
        split_info: dict[str, Any] | None = None,
        args: dict[str, Any] | None = None,
    ) -> None:
        if shots < 0:
            raise ArgumentError(f"shots must be >= 0, got {shots}")
        if template not in get_args(Template):
            raise ArgumentError(f"template must be 'random' or 'similar', got {template!r}")
        self.name = name
        self.description = description
        self.reader = reader
        self.qtypes = tuple(qtypes) if qtypes else None
        self.exclude_qtypes = tuple(exclude_qtypes)
        self.datasets = _as_tuple(datasets)
        self.categories = _as_tuple(categories)
        self.shots = int(shots)
        self.template = template
        self.threshold = threshold
        self.calibration_per_group = int(calibration_per_group)
        self.merge_qtypes = dict(merge_qtypes or {})
        self.split_info = split_info or {}
        self.args = dict(args or {})

    # -- samples -----------------------------------------------------------------
    def _keep(self, s: Sample) -> bool:
        if self.qtypes is not None and s.qtype not in self.qtypes:
            return False
        if s.qtype in self.exclude_qtypes:
            return False
        if self.datasets is not None and s.dataset not in self.datasets:
            return False
        return self.categories is None or s.category in self.categories

    def samples(self, data_root: Path) -> list[Sample]:
        out = [s for s in self.reader(Path(data_root)) if self._keep(s)]
        evaluated = {s.image for s in out}
        for s in out:
            s.qtype = self.merge_qtypes.get(s.qtype, s.qtype)
            templates = s.meta.get(f"{self.template}_templates")
            if templates:  # MMAD's lists: the first templates that are not themselves asked about
                s.references = [p for p in templates if p not in evaluated][: self.shots]
            else:
                s.references = list(s.references[: self.shots])
        exclude_evaluated(out, evaluated)
        return out

    def calibration_samples(self, data_root: Path, samples: Sequence[Sample]) -> list[Sample]:
        """Normal support images per dataset/category, for thresholds of score-based models."""
        evaluated = {s.image for s in samples}
        seen: dict[tuple[str, str], list[str]] = {}
        for s in samples:
            seen.setdefault((s.dataset, s.category), [])
            for p in s.support:
                if p not in evaluated and p not in seen[(s.dataset, s.category)]:
                    seen[(s.dataset, s.category)].append(p)
        out = []
        for (ds, cat), pool in sorted(seen.items()):
            for p in sorted(pool)[: self.calibration_per_group]:
                rel = f"{ds}/{cat}/{Path(p).name}"
                support = sorted(pool)
                out.append(
                    Sample(
                        id=f"calibration::{rel}::{stable_hash(p)[:6]}",
                        dataset=ds,
                        category=cat,
                        image=p,
                        label=NORMAL,
                        defect="good",
                        qtype=ANOMALY_DETECTION,
                        question=AD_QUESTION,
                        options=dict(AD_OPTIONS),
                        gold="B",
                        support=support,
                        role=Role.CALIBRATION,
                    )
                )
        return out

    # -- rendering -----------------------------------------------------------------
    def render(self, s: Sample) -> Query:
        return render_query(s)

    def prompt_text(self) -> str:
        return "\n".join([INTRO, REFERENCE_CAPTION, QUERY_CAPTION, INSTRUCTION])

    # -- judging -------------------------------------------------------------------
    def is_correct(self, s: Sample, r: Response) -> bool | None:
        if r.error is not None:
            return False
        if r.answer is None:
            return None if r.score is not None else False
        return r.answer == s.gold

    def make_record(self, s: Sample, r: Response) -> Record:
        return Record(
            id=s.id,
            dataset=s.dataset,
            category=s.category,
            qtype=s.qtype,
            label=s.label,
            gold=s.gold,
            image=s.image,
            text=r.text,
            answer=r.answer,
            score=r.score,
            correct=self.is_correct(s, r),
            error=r.error,
            parse_status=r.parse_status,
            usage=dict(r.usage),
            defect=s.defect,
            role=s.role,
            retryable=r.retryable,
            boxes=[b.to_dict() for b in r.boxes],
            gt_boxes=[b.to_dict() for b in s.boxes],
            stages=dict(r.stages),
            references=list(s.references),
            mask=s.mask,
            question=s.question,
            options=dict(s.options),
            meta={**r.meta, **({IMAGE_KEY: s.key} if s.key else {})},
        )

    def score(self, records: Sequence[Record], kind: OutputKind | None = None) -> dict[str, Any]:
        """results.json's figures; kind: the model's declared output (config.json `model_output`), if known."""
        return score_records(records, threshold=self.threshold, kind=kind)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "args": self.args,
            "qtypes": self.qtypes,
            "exclude_qtypes": self.exclude_qtypes,
            "datasets": self.datasets,
            "categories": self.categories,
            "shots": self.shots,
            "template": self.template,
            "threshold": self.threshold,
            "merge_qtypes": self.merge_qtypes,
            "split": self.split_info,
        }


def render_query(s: Sample) -> Query:
    """MMAD's 1-shot prompt for a sample: intro, each reference image, the query image, the question,
    its options and the answer instruction (`Query.meta["segments"]` keeps the interleaving)."""
    segments: list[tuple[str, str]] = [("text", INTRO)]
    for ref in s.references:
        segments += [("text", REFERENCE_CAPTION), ("image", ref)]
    if s.references:
        segments.append(("text", QUERY_CAPTION))
    segments.append(("image", s.image))
    body = f"Question: {s.question}\n{format_options(s.options)}\n{INSTRUCTION}"
    segments.append(("text", body))
    prompt = "\n".join(t for kind, t in segments if kind == "text")
    return Query(
        id=s.id,
        images=[*s.references, s.image],
        question=s.question,
        options=dict(s.options),
        prompt=prompt,
        n_references=len(s.references),
        support=list(s.support),
        group=f"{s.dataset}/{s.category}",
        qtype=s.qtype,
        meta={"segments": segments, "dataset": s.dataset, "category": s.category, "role": s.role},
    )


def exclude_evaluated(samples: Sequence[Sample], evaluated: set[str]) -> None:
    """Take every evaluated image out of the samples' support pools; refuse one shown as a reference.

    Support images are what few-shot models fit on and what calibrated thresholds are
    set from: an image that is also asked about would be scored against itself. Pools
    are shared between the samples of a category, so each is filtered once.
    """
    cleaned: dict[int, list[str]] = {}
    for s in samples:
        pool = s.support
        if id(pool) not in cleaned:
            cleaned[id(pool)] = [p for p in pool if p not in evaluated] if evaluated.intersection(pool) else pool
        s.support = cleaned[id(pool)]
        shown = evaluated.intersection(s.references)
        if shown:  # readers draw references from the training side: a reader bug, not a choice to make here
            raise DataError(f"sample {s.id}: reference image {sorted(shown)[0]} is itself evaluated by this task")


def _as_tuple(v: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return tuple(x.strip() for x in v.split(",") if x.strip())
    return tuple(v)


__all__ = ["QuestionTask", "Task", "missing_members", "stable_hash"]
