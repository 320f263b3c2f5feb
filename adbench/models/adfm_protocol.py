"""The AD-FM response protocol: instruction, prompt, parser and ideal response.

One definition used by evaluation (the `adfm` adapter) and by training (rewards and
the SFT warm-up import it from here), so what is trained is exactly what is scored.

The protocol (paper, Sec. 3.2; released code for the details the paper leaves open):

    <think> scan the query image against the reference; list suspicious regions as
            {"bbox_2d": [x1, y1, x2, y2], "label": "..."} in model-input pixels </think>
    <rethink> examine each listed region: real defect or normal variation? </rethink>
    <answer> the option letter </answer>

The one-stage variant (ablation) has `<think>` and `<answer>` only.

Answer vocabulary. The released training code writes the option letter in lower
case (`a` = option A "Yes." = anomalous, `b` = normal). Here the instruction asks for
"the letter of the correct option" and the parser reads, in `<answer>` only:
  1. an option letter of the Query, in either case, optionally bracketed or followed
     by a full stop ("a", "B", "(A)", "A."), so `a`/`b` replies of a model trained on
     the released recipe map to the Query's A/B;
  2. a letter followed by its option's text ("A. Yes."); a letter whose text names
     another option is a contradiction and is reported, not resolved;
  3. the text of exactly one option ("Yes", "no.");
  4. for Yes/No questions only, a fixed vocabulary: yes / anomalous / abnormal /
     defective / anomaly  ->  the "Yes" option; no / normal / good / defect-free /
     non-defective / no defect / no anomaly  ->  the "No" option.
Anything else is unparsed, with the reason in `problems`. Nothing outside `<answer>`
is read as the decision: a reply without `<answer>` has no decision.

Boxes are read from `<think>` only (the paper's B(y)), in the model-input frame;
`adbench.models.qwen_frame` maps them to the original image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adbench.args import ArgumentError
from adbench.schema import ANOMALOUS, NORMAL, Box, ParseStatus, Query

MULTI_STAGE = "multi"
ONE_STAGE = "one"
STAGE_TAGS: dict[str, tuple[str, ...]] = {MULTI_STAGE: ("think", "rethink", "answer"), ONE_STAGE: ("think", "answer")}
ALL_TAGS = ("think", "rethink", "answer")

SYSTEM_PROMPT = "You are a helpful assistant."
INTRO = "You are an industrial quality inspector examining images of manufactured products for defects."
REFERENCE_CAPTION = "Reference image of a normal, defect-free sample of the same product:"
QUERY_CAPTION = "Image to inspect:"

_BOX_FORMAT = '{"bbox_2d": [x1, y1, x2, y2], "label": "<short description>"}'

INSTRUCTION_MULTI = (
    "Answer in three stages.\n"
    "1. Inside <think> </think>: scan the whole image to inspect"
    "{ref_clause} and list every suspicious region as a JSON object "
    f"{_BOX_FORMAT} in pixel coordinates of the image to inspect. If nothing looks suspicious, say so and list no region.\n"
    "2. Inside <rethink> </rethink>: examine each listed region closely and decide whether it is a real defect "
    "or a normal variation.\n"
    "3. Inside <answer> </answer>: give only the letter of the correct option."
)
INSTRUCTION_ONE = (
    "Answer in two stages.\n"
    "1. Inside <think> </think>: inspect the image{ref_clause}, list every suspicious region as a JSON object "
    f"{_BOX_FORMAT} in pixel coordinates of the image to inspect, and reason about whether it is a real defect.\n"
    "2. Inside <answer> </answer>: give only the letter of the correct option."
)
_REF_CLAUSE = ", comparing it with the reference image,"

YES_WORDS = frozenset({"yes", "anomalous", "abnormal", "defective", "anomaly", "defect"})
NO_WORDS = frozenset({"no", "normal", "good", "defect free", "non defective", "no defect", "no anomaly",
                      "no defects", "not defective"})


def _check_stages(stages: str) -> tuple[str, ...]:
    if stages not in STAGE_TAGS:
        raise ArgumentError(f"stages must be {MULTI_STAGE!r} or {ONE_STAGE!r}, got {stages!r}")
    return STAGE_TAGS[stages]


# --------------------------------------------------------------------------- prompt


def instruction(stages: str = MULTI_STAGE, with_reference: bool = True) -> str:
    """The protocol instruction appended after the question and its options."""
    _check_stages(stages)
    template = INSTRUCTION_MULTI if stages == MULTI_STAGE else INSTRUCTION_ONE
    return template.replace("{ref_clause}", _REF_CLAUSE if with_reference else "")


def format_options(options: dict[str, str]) -> str:
    return "\n".join(f"{k}. {v}" for k, v in options.items())


def question_text(query: Query, stages: str = MULTI_STAGE) -> str:
    """Question, options and protocol instruction: the text after the images."""
    return f"Question: {query.question}\n{format_options(query.options)}\n{instruction(stages, query.n_references > 0)}"


def build_messages(query: Query, stages: str = MULTI_STAGE, system: str | None = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """Chat messages for one Query: the reference image(s) before the query image (MMAD's 1-shot order).

    Image parts are `{"type": "image", "image": <path>}`; adapters replace the path
    with the loaded image where their processor wants pixels.
    """
    content: list[dict[str, Any]] = [{"type": "text", "text": INTRO + "\n"}]
    for ref in query.references:
        content += [{"type": "text", "text": REFERENCE_CAPTION + "\n"}, {"type": "image", "image": ref}]
    content += [{"type": "text", "text": ("\n" if query.references else "") + QUERY_CAPTION + "\n"},
                {"type": "image", "image": query.image},
                {"type": "text", "text": "\n" + question_text(query, stages)}]
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": content})
    return messages


def prompt_text(stages: str = MULTI_STAGE) -> str:
    """Every fixed text the protocol adds (hashed into a run's provenance)."""
    return "\n".join([SYSTEM_PROMPT, INTRO, REFERENCE_CAPTION, QUERY_CAPTION, instruction(stages, True),
                      instruction(stages, False)])


# --------------------------------------------------------------------------- parser


@dataclass
class ParsedReply:
    """What the parser read from one reply, and what it could not read.

    stages: tag -> text inside it (repeated tags joined by a blank line).
    boxes: boxes from <think>, model-input pixels, corners ordered (x1 <= x2, y1 <= y2).
    answer_text: the raw text inside <answer> (None when there is no <answer>).
    decision: the option letter, or None when it cannot be read.
    status: PARSED when there is a decision, else UNPARSED.
    problems: one line per irregularity, also for replies that parsed.
    """

    text: str
    stages: dict[str, str] = field(default_factory=dict)
    boxes: list[Box] = field(default_factory=list)
    answer_text: str | None = None
    decision: str | None = None
    status: ParseStatus = ParseStatus.UNPARSED
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == ParseStatus.PARSED

    @property
    def clean(self) -> bool:
        """Parsed and fully in protocol (no problems at all)."""
        return self.ok and not self.problems


_TAG = re.compile(r"<\s*(/?)\s*(think|rethink|answer)\s*>", re.IGNORECASE)


def split_stages(text: str, expected: Sequence[str] = ALL_TAGS) -> tuple[dict[str, list[str]], list[str]]:
    """Tag -> list of segments, plus problems (unclosed, stray or repeated tags, text outside tags).

    An opening tag's segment runs to its closing tag; if another stage's tag or the end
    of the reply comes first, the segment ends there and the missing close is reported
    (at the end of the reply that is a truncated output). A closing tag with no opening
    one claims the untagged text before it, reported as such.
    """
    segments: dict[str, list[str]] = {}
    problems: list[str] = []
    outside: list[str] = []
    open_tag: str | None = None
    start = 0  # where the current segment (or the untagged text) starts
    for m in _TAG.finditer(text):
        closing, tag = m.group(1) == "/", m.group(2).lower()
        chunk = text[start : m.start()]
        if open_tag is None:
            if closing:
                problems.append(f"</{tag}> without <{tag}>: the text before it is read as <{tag}>")
                segments.setdefault(tag, []).append(chunk)
            else:
                outside.append(chunk)
                open_tag = tag
            start = m.end()
            continue
        if closing and tag == open_tag:
            segments.setdefault(tag, []).append(chunk)
            open_tag = None
            start = m.end()
            continue
        # another tag while `open_tag` is open: close it here
        problems.append(f"<{open_tag}> not closed before <{'/' if closing else ''}{tag}>")
        segments.setdefault(open_tag, []).append(chunk)
        if closing:  # a stray close of another stage: drop it, the following text is untagged
            problems.append(f"</{tag}> without <{tag}>")
            open_tag = None
        else:
            open_tag = tag
        start = m.end()
    tail = text[start:]
    if open_tag is not None:
        problems.append(f"reply ends inside <{open_tag}> (truncated output?)")
        segments.setdefault(open_tag, []).append(tail)
    else:
        outside.append(tail)
    if any(s.strip() for s in outside):
        problems.append("text outside the stage tags (ignored)")
    for tag, segs in segments.items():
        if len(segs) > 1:
            problems.append(f"<{tag}> appears {len(segs)} times")
    for tag in expected:
        if tag not in segments:
            problems.append(f"no <{tag}> stage")
    for tag in segments:
        if tag not in expected:
            problems.append(f"unexpected <{tag}> stage")
    order = [t for t in _first_positions(text) if t in expected]
    if order != [t for t in expected if t in order]:
        problems.append(f"stages out of order: {' '.join(order)}")
    return segments, problems


def _first_positions(text: str) -> list[str]:
    seen: list[str] = []
    for m in _TAG.finditer(text):
        tag = m.group(2).lower()
        if tag not in seen:
            seen.append(tag)
    return seen


_NUMBER = r"-?\d+(?:\.\d+)?"
_LIST = re.compile(r"\[([^\[\]{}]*)\]")
# a key right before a list: quoted ("bbox_2d": / 'bbox_2d':) or bare after { or , (bbox_2d:)
_QUOTED_KEY = re.compile(r"""(["'])([A-Za-z_]\w*)\1\s*:\s*$""")
_BARE_KEY = re.compile(r"""[{,]\s*([A-Za-z_]\w*)\s*:\s*$""")
_LABEL = re.compile(r"""["']?label["']?\s*:\s*(["'])((?:\\.|(?!\1).)*)\1""", re.IGNORECASE)
_OPEN_BOX_AT_END = re.compile(r"""["']?bbox_2d["']?\s*:\s*\[[^\]]*$""", re.IGNORECASE)


def _key_before(text: str, pos: int) -> str | None:
    before = text[max(0, pos - 40) : pos]
    m = _QUOTED_KEY.search(before)
    if m:
        return m.group(2).lower()
    m = _BARE_KEY.search(before)
    return m.group(1).lower() if m else None


def extract_boxes(text: str, frame: tuple[int, int] | None = None) -> tuple[list[Box], list[str]]:
    """Boxes written in `text`, plus a problem line for every box that could not be read.

    A box is a list of four numbers under the key `bbox_2d` (quotes single, double or
    none; trailing commas and prose around it do not matter). A four-number list under
    `bbox`/`box` or under no key is read too and noted (the released reward counts any
    four-number list). A `bbox_2d` list that is not four numbers is reported, not
    repaired. Inverted corners are swapped (noted). With `frame` (width, height) given,
    coordinates outside it are clipped (noted).
    """
    boxes: list[Box] = []
    problems: list[str] = []
    for m in _LIST.finditer(text):
        key = _key_before(text, m.start())
        items = [s.strip() for s in m.group(1).split(",")]
        while items and items[-1] == "":  # trailing comma
            items.pop()
        numeric = all(re.fullmatch(_NUMBER, s) for s in items) and bool(items)
        n = len(boxes) + 1
        if key == "bbox_2d":
            if not numeric:
                problems.append(f"bbox_2d {m.group(0)!r} is not a list of numbers")
                continue
            if len(items) != 4:
                problems.append(f"bbox_2d {m.group(0)!r} has {len(items)} values, not 4")
                continue
        elif numeric and len(items) == 4:
            where = f"under key {key!r}" if key else "without a bbox_2d key"
            problems.append(f"box {n} {m.group(0)!r} given {where}")
        else:
            continue  # some other list (e.g. of labels): not a box
        x1, y1, x2, y2 = (float(s) for s in items)
        if x1 > x2 or y1 > y2:
            problems.append(f"box {n} has inverted corners {m.group(0)}: swapped")
            x1, x2 = min(x1, x2), max(x1, x2)
            y1, y2 = min(y1, y2), max(y1, y2)
        if frame is not None:
            w, h = float(frame[0]), float(frame[1])
            clipped = (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
            if clipped != (x1, y1, x2, y2):
                problems.append(f"box {n} {m.group(0)} extends outside the {frame[0]}x{frame[1]} input: clipped")
                x1, y1, x2, y2 = clipped
        if x1 == x2 or y1 == y2:
            problems.append(f"box {n} {m.group(0)} has zero area")
        boxes.append(Box(x1, y1, x2, y2, _label_near(text, m.start(), m.end())))
    if _OPEN_BOX_AT_END.search(text):
        problems.append("a bbox_2d list is not closed (truncated output?): not read")
    return boxes, problems


def _label_near(text: str, start: int, end: int) -> str:
    """The "label" of the JSON object a box list sits in ("" when there is none)."""
    lo = text.rfind("{", 0, start)
    if lo < 0 or "}" in text[lo:start]:
        return ""  # a bare list, not inside an object
    hi = text.find("}", end)
    nxt = text.find("{", end)
    if hi < 0 or 0 <= nxt < hi:  # object not closed (truncated): stop at the next object
        hi = nxt if nxt >= 0 else len(text)
    m = _LABEL.search(text, lo, hi)
    if not m:
        return ""
    return m.group(2).replace("\\\"", "\"").replace("\\'", "'")


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def _yes_no(options: dict[str, str]) -> tuple[str | None, str | None]:
    yes = [k for k, v in options.items() if _norm(v) == "yes"]
    no = [k for k, v in options.items() if _norm(v) == "no"]
    return (yes[0], no[0]) if len(yes) == 1 and len(no) == 1 else (None, None)


_LETTER_ONLY = re.compile(r"^[\s\"'`*(\[]*([A-Za-z])[\s\"'`*)\].:]*$")
_LETTER_AND_TEXT = re.compile(r"^[\s\"'`*(\[]*([A-Za-z])\s*[.):\]]\s*(.+?)\s*$", re.DOTALL)


def read_decision(answer: str, options: dict[str, str]) -> tuple[str | None, str | None]:
    """(option letter, None) or (None, reason): the answer vocabulary in the module docstring."""
    raw = answer.strip()
    if not raw:
        return None, "empty <answer>"
    letters = {k.upper(): k for k in options}
    m = _LETTER_ONLY.match(raw)
    if m:
        letter = m.group(1).upper()
        if letter in letters:
            return letters[letter], None
        return None, f"answer {raw!r} is not one of the options {', '.join(options)}"
    by_text = _by_text(raw, options)
    m = _LETTER_AND_TEXT.match(raw)
    if m and m.group(1).upper() in letters:
        letter = letters[m.group(1).upper()]
        named = _by_text(m.group(2), options)
        if named is None or named == letter:
            return letter, None
        return None, f"answer {raw!r} names option {letter} but the text of option {named}"
    if by_text is not None:
        return by_text, None
    yes, no = _yes_no(options)
    if yes is not None:
        words = _norm(raw)
        if words in YES_WORDS:
            return yes, None
        if words in NO_WORDS:
            return no, None
    return None, f"cannot read the answer {raw[:80]!r} as one of the options {', '.join(options)}"


def _by_text(raw: str, options: dict[str, str]) -> str | None:
    words = _norm(raw)
    hits = [k for k, v in options.items() if _norm(v) and _norm(v) == words]
    return hits[0] if len(hits) == 1 else None


def parse_reply(
    text: str | None, options: dict[str, str], stages: str = MULTI_STAGE, frame: tuple[int, int] | None = None
) -> ParsedReply:
    """Read a reply in the AD-FM protocol. Never guesses: what it cannot read is in `problems`.

    options: the Query's letter -> text. stages: MULTI_STAGE or ONE_STAGE (which tags
    are expected). frame: (width, height) of the model input, to clip boxes to it.
    """
    expected = _check_stages(stages)
    out = ParsedReply(text=text or "")
    if not text or not text.strip():
        out.problems.append("empty reply")
        return out
    segments, problems = split_stages(text, expected)
    out.problems += problems
    out.stages = {tag: "\n\n".join(s.strip() for s in segs) for tag, segs in segments.items()}
    if "think" in segments:
        boxes, box_problems = extract_boxes("\n".join(segments["think"]), frame)
        out.boxes = boxes
        out.problems += box_problems
    answers = segments.get("answer", [])
    if not answers:
        return out  # "no <answer> stage" is already among the problems
    out.answer_text = out.stages["answer"]
    decisions = []
    for seg in answers:
        letter, why = read_decision(seg, options)
        if why:
            out.problems.append(why)
        decisions.append(letter)
    read = {d for d in decisions if d is not None}
    if len(read) > 1:
        out.problems.append(f"conflicting answers: {', '.join(sorted(read))}")
        return out
    if len(read) == 1 and None not in decisions:
        out.decision = read.pop()
        out.status = ParseStatus.PARSED
    elif read:  # one readable, another not: not the model's one clear answer
        out.problems.append("one of the repeated <answer> stages cannot be read")
    return out


# --------------------------------------------------------------------------- ideal response


def decision_letter(label: int, options: dict[str, str]) -> str:
    """The option letter meaning `label` (ANOMALOUS -> the "Yes" option) for a Yes/No question."""
    yes, no = _yes_no(options)
    if yes is None:
        raise ValueError(f"options {options} are not one 'Yes' and one 'No' option")
    if label not in (ANOMALOUS, NORMAL):
        raise ValueError(f"label must be {ANOMALOUS} (anomalous) or {NORMAL} (normal), got {label!r}")
    return yes if label == ANOMALOUS else no


def format_box(box: Box, label: str | None = None) -> str:
    """A box as the protocol writes it: integer pixels of the model input."""
    coords = [int(round(v)) for v in box.as_tuple()]
    return json.dumps({"bbox_2d": coords, "label": label if label is not None else (box.label or "defect")})


def render_response(
    boxes: Iterable[Box], label: int, options: dict[str, str], stages: str = MULTI_STAGE, defect: str = ""
) -> str:
    """An ideal reply for ground-truth `boxes` (already in the model-input frame) and `label`.

    The SFT warm-up trains on it; `parse_reply` reads it back to exactly these boxes
    (rounded to whole pixels) and the right decision.
    """
    _check_stages(stages)
    boxes = list(boxes)
    letter = decision_letter(label, options)
    kind = defect.replace("_", " ") if defect and defect != "good" else "defect"
    if label == ANOMALOUS and boxes:
        listed = "\n".join(format_box(b, b.label or kind) for b in boxes)
        n = len(boxes)
        think = (f"Compared with the reference, the image shows {n} suspicious region{'s' if n > 1 else ''}:\n"
                 f"{listed}")
        rethink = " ".join(
            f"Region {i} ({b.label or kind}) differs clearly from the normal sample: it is a real defect."
            for i, b in enumerate(boxes, 1))
    elif label == ANOMALOUS:
        think = "The image deviates from the normal sample, but no region can be pinned down."
        rethink = "The deviation is not a normal variation: the product is defective."
    else:
        think = "The image matches the normal sample; no region looks suspicious."
        rethink = "Nothing deviates beyond normal variation: the product is defect-free."
    if stages == ONE_STAGE:
        return f"<think>{think}\n{rethink}</think>\n<answer>{letter}</answer>"
    return f"<think>{think}</think>\n<rethink>{rethink}</rethink>\n<answer>{letter}</answer>"
