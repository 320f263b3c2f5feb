"""Records -> per-sample verdicts: the one place where a record is judged right or wrong.

A run is judged as one or more *variants*: a model that answers with text has one
(`answers`); a score-based model has one per threshold rule, every rule computed from
the same Records. For each variant and each evaluated record the verdict is:

- `correct` (the strict headline): a failed request, an unparsable reply or a record
  without a decision is wrong;
- `kept` / `correct_mmad` (MMAD's rule): whether MMAD's summary keeps the record and,
  if so, whether its answer is right. A text answer is `adbench.answers.mmad_answer`
  of the raw reply (dropped when it or the gold is not one of A-E: in practice a
  failed request); a score rule's decision is the answer (dropped without one).

What kind of model made the Records comes from the run's config.json (`model_output`,
written by the runner from the adapter's declared `output`). Only runs recorded before
that field existed fall back to the records' evidence (every answered record has a
score and no answer). A text model whose records also carry scores is judged on its
answers; its scores still give AUROC.

Threshold rules of score-based models (all computed, one the headline):
- `youden`: per dataset, the threshold maximising Youden's J on the evaluated set. It
  sees the labels, so it is an oracle and is labelled so wherever it is shown.
- `calibrated`: per dataset/category, the largest score of that group's normal
  calibration images (records with role "calibration"; no label of the evaluated set
  is used); anomalous if the score is above it.
- `fixed`: one threshold for all (0.5 by default, the paper's CLIP setting).
A NaN or infinite score gets no decision under any rule (it counts as wrong) and is
left out of thresholds and AUROC, like a failed record.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from adbench.answers import MMAD_LETTERS, mmad_answer
from adbench.errors import UserError
from adbench.metrics import MetricError, calibrated_threshold, decide, youden_threshold
from adbench.model import OutputKind
from adbench.schema import Record, Role

#: The headline decision rules for score-based models (`-T threshold=`; a number is the fixed threshold).
ThresholdRule = Literal["calibrated", "youden", "fixed"]
RULES: tuple[str, ...] = get_args(ThresholdRule)
#: The one variant of a model that answers with text.
ANSWERS = "answers"
FIXED_DEFAULT = 0.5
KIND_FROM_CONFIG = "config.json"
KIND_FROM_RECORDS = "records"


@dataclass
class Verdicts:
    """One variant's verdict on every evaluated record (arrays in the order of `Judgement.records`)."""

    correct: np.ndarray  # strict: right
    kept: np.ndarray  # MMAD's rule keeps the record
    correct_mmad: np.ndarray  # MMAD's verdict (False where dropped)
    decided: np.ndarray  # the variant decided the record (a text answer always is)
    decisions: dict[str, int] = field(default_factory=dict)  # score rules: id -> 0 normal / 1 anomalous
    thresholds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    oracle: bool = False

    def mmad(self) -> list[bool | None]:
        """MMAD's verdict per record: True / False, or None where MMAD's rule drops it."""
        return [bool(c) if k else None for k, c in zip(self.kept, self.correct_mmad)]


@dataclass
class Judgement:
    """A run's records judged: per variant, per-sample verdicts."""

    records: list[Record]  # evaluated records (calibration records are not evaluated)
    calibration: list[Record]
    kind: OutputKind
    kind_from: str  # KIND_FROM_CONFIG or KIND_FROM_RECORDS
    headline: str  # the variant results.json's `metrics` show: ANSWERS or the threshold rule
    variants: dict[str, Verdicts]
    fixed: float = FIXED_DEFAULT

    @property
    def score_based(self) -> bool:
        return self.kind == OutputKind.SCORE


def finite_score(r: Record) -> bool:
    return r.error is None and r.score is not None and math.isfinite(r.score)


def model_kind(records: Sequence[Record], declared: OutputKind | None = None) -> tuple[OutputKind, str]:
    """(kind, where it came from): the adapter's declared output, else the records' evidence (old runs)."""
    if declared is not None:
        return declared, KIND_FROM_CONFIG
    answered = [r for r in records if r.error is None]
    evidence = bool(answered) and all(r.score is not None and r.answer is None for r in answered)
    return (OutputKind.SCORE if evidence else OutputKind.GENERATIVE), KIND_FROM_RECORDS


def threshold_rule(threshold: str | float) -> tuple[str, float]:
    """(headline rule, fixed threshold) of `-T threshold=`: a rule name, or a number (the fixed rule)."""
    if isinstance(threshold, str):
        if threshold not in RULES:
            raise UserError(f"unknown threshold rule {threshold!r}: use one of {', '.join(RULES)} or a number")
        return threshold, FIXED_DEFAULT
    return "fixed", float(threshold)


def mmad_verdict(r: Record) -> bool | None:
    """MMAD's verdict on a text answer, from its raw reply: None when MMAD's summary drops it."""
    if r.error is not None:  # a failed request has no reply to parse
        return None
    answer = mmad_answer(r.text, r.options)
    if answer not in MMAD_LETTERS or r.gold not in MMAD_LETTERS:
        return None
    return answer == r.gold


def _answer_verdicts(records: Sequence[Record]) -> Verdicts:
    correct = np.fromiter((bool(r.correct) and r.error is None for r in records), bool, len(records))
    mmad = [mmad_verdict(r) for r in records]  # difflib once per record
    kept = np.fromiter((v is not None for v in mmad), bool, len(records))
    return Verdicts(correct, kept, np.fromiter((bool(v) for v in mmad), bool, len(records)),
                    np.ones(len(records), bool))


def _rule_verdicts(records: Sequence[Record], decisions: dict[str, int], **info: Any) -> Verdicts:
    """A score rule: its decision is the answer; a record without one (or without a label) is wrong / dropped."""
    d = [decisions.get(r.id) for r in records]
    ok = np.fromiter((x is not None and r.label is not None for x, r in zip(d, records)), bool, len(records))
    right = np.fromiter((x is not None and x == r.label for x, r in zip(d, records)), bool, len(records))
    decided = np.fromiter((x is not None for x in d), bool, len(records))
    return Verdicts(right & ok, ok, right & ok, decided, decisions, **info)


def _decide(recs: Sequence[Record], t: float, strict: bool = False) -> dict[str, int]:
    return dict(zip((r.id for r in recs), decide([r.score for r in recs], t, strict=strict).tolist()))


def threshold_rules(evals: Sequence[Record], calibration: Sequence[Record], fixed: float) -> dict[str, Verdicts]:
    """Every threshold rule's thresholds, decisions and verdicts."""
    scored = [r for r in evals if finite_score(r)]
    by_ds: dict[str, list[Record]] = defaultdict(list)
    by_group: dict[str, list[Record]] = defaultdict(list)
    for r in scored:
        by_ds[r.dataset].append(r)
        by_group[f"{r.dataset}/{r.category}"].append(r)

    # youden: one threshold per dataset, from the evaluated set's own labels (oracle)
    yd: dict[str, Any] = {"thresholds": {}, "notes": {}}
    yd_dec: dict[str, int] = {}
    for ds, rs in sorted(by_ds.items()):
        try:
            t = youden_threshold([r.score for r in rs], [r.label for r in rs])
        except MetricError as e:
            yd["notes"][ds] = str(e)
            continue
        yd["thresholds"][ds] = t
        yd_dec.update(_decide(rs, t))

    # calibrated: one threshold per dataset/category, from normal calibration images only
    cal: dict[str, Any] = {"thresholds": {}, "notes": {}}
    cal_dec: dict[str, int] = {}
    normal: dict[str, list[float]] = defaultdict(list)
    for r in calibration:
        if finite_score(r):
            normal[f"{r.dataset}/{r.category}"].append(r.score)
    for g, rs in sorted(by_group.items()):
        if not normal.get(g):
            cal["notes"][g] = "no calibration images"
            continue
        t = calibrated_threshold(normal[g])
        cal["thresholds"][g] = t
        cal_dec.update(_decide(rs, t, strict=True))

    return {
        "youden": _rule_verdicts(evals, yd_dec, oracle=True, **yd),
        "calibrated": _rule_verdicts(evals, cal_dec, **cal),
        "fixed": _rule_verdicts(evals, _decide(scored, fixed), thresholds={"all": fixed}),
    }


def judge(records: Sequence[Record], kind: OutputKind | None = None,
          threshold: str | float = "calibrated") -> Judgement:
    """Judge a run's Records: calibration records apart, one set of verdicts per variant.

    kind: the adapter's declared output (config.json `model_output`); None for a run
    recorded before it was written (then the records decide). threshold: the headline
    rule of a score-based model (a rule name or the fixed threshold).
    """
    evals = [r for r in records if r.role != Role.CALIBRATION]
    calibration = [r for r in records if r.role == Role.CALIBRATION]
    kind, kind_from = model_kind(evals, kind)
    if kind != OutputKind.SCORE:
        return Judgement(evals, calibration, kind, kind_from, ANSWERS, {ANSWERS: _answer_verdicts(evals)})
    rule, fixed = threshold_rule(threshold)
    return Judgement(evals, calibration, kind, kind_from, rule, threshold_rules(evals, calibration, fixed), fixed)


def threshold_of(r: Record, thresholds: dict[str, float]) -> float | None:
    """The threshold a rule applied to `r` (per dataset/category, per dataset, or one for all)."""
    for key in (f"{r.dataset}/{r.category}", r.dataset, "all"):
        if key in thresholds:
            return thresholds[key]
    return None
