"""The AD-FM protocol: prompt, parser on messy replies, ideal response round trip."""

from __future__ import annotations

import pytest

from adbench.models import adfm_protocol as proto
from adbench.schema import ANOMALOUS, NORMAL, Box, ParseStatus, Query

YN = {"A": "Yes.", "B": "No."}
NY = {"A": "No.", "B": "Yes."}  # options in the other order: words must follow the texts
GOOD = '<think>{"bbox_2d": [10, 20, 30, 40], "label": "scratch"}</think><rethink>real</rethink><answer>A</answer>'


def B(x1, y1, x2, y2, label=""):  # noqa: N802 - short constructor for the table
    return Box(float(x1), float(y1), float(x2), float(y2), label)


# (reply, options, expected decision or None, expected boxes (coords, label), problem substrings)
CASES = [
    # 1-5: clean and near-clean replies
    (GOOD, YN, "A", [((10, 20, 30, 40), "scratch")], []),
    ('<think>nothing suspicious</think>\n<rethink>all normal</rethink>\n<answer>B</answer>', YN, "B", [], []),
    ('<think>{"bbox_2d": [1, 2, 3, 4], "label": "a"}</think><rethink>x</rethink><answer>a</answer>',
     YN, "A", [((1, 2, 3, 4), "a")], []),  # the released code's lower-case letters
    ('<think>ok</think><rethink>ok</rethink><answer> b. </answer>', YN, "B", [], []),
    ('<THINK>ok</THINK><Rethink>ok</Rethink><ANSWER>(A)</ANSWER>', YN, "A", [], []),
    # 6-10: prose around the JSON, code fences, lists of objects, several boxes
    ('<think>I compared both images. ```json\n[{"bbox_2d": [5, 6, 50, 60], "label": "dent"}, '
     '{"bbox_2d": [70, 80, 90, 100], "label": "stain"}]\n``` That is all.</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((5, 6, 50, 60), "dent"), ((70, 80, 90, 100), "stain")], []),
    ('Sure, here is my analysis. <think>a</think><rethink>b</rethink><answer>B</answer> Hope it helps!',
     YN, "B", [], ["text outside the stage tags"]),
    ('<think>Region one {"label": "crack", "bbox_2d": [3, 4, 5, 6]} looks odd.</think><rethink>r</rethink>'
     '<answer>A</answer>', YN, "A", [((3, 4, 5, 6), "crack")], []),
    ('<think>{"bbox_2d": [1.5, 2.25, 30.75, 40.0], "label": "x"}</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((1.5, 2.25, 30.75, 40.0), "x")], []),
    ('<think>\n{\n  "bbox_2d": [\n    10,\n    20,\n    30,\n    40\n  ],\n  "label": "multi line"\n}\n</think>'
     '<rethink>r</rethink><answer>A</answer>', YN, "A", [((10, 20, 30, 40), "multi line")], []),
    # 11-14: single quotes, trailing commas, unquoted keys
    ("<think>{'bbox_2d': [10, 20, 30, 40], 'label': 'hole'}</think><rethink>r</rethink><answer>A</answer>",
     YN, "A", [((10, 20, 30, 40), "hole")], []),
    ('<think>{"bbox_2d": [10, 20, 30, 40,], "label": "hole",}</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((10, 20, 30, 40), "hole")], []),
    ('<think>{bbox_2d: [10, 20, 30, 40], label: "hole"}</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((10, 20, 30, 40), "hole")], []),
    ("<think>{'bbox_2d': [1, 2, 3, 4], 'label': 'it\\'s a dent'}</think><rethink>r</rethink><answer>A</answer>",
     YN, "A", [((1, 2, 3, 4), "it's a dent")], []),
    # 15-17: inverted corners, zero area, boxes outside the frame (frame 100x100 given below)
    ('<think>{"bbox_2d": [30, 40, 10, 20], "label": "x"}</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((10, 20, 30, 40), "x")], ["inverted corners"]),
    ('<think>{"bbox_2d": [10, 10, 10, 40], "label": "line"}</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((10, 10, 10, 40), "line")], ["zero area"]),
    ('<think>{"bbox_2d": [-5, 20, 130, 40], "label": "x"}</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((0, 20, 100, 40), "x")], ["outside the 100x100 input: clipped"]),
    # 18-20: boxes not under bbox_2d, malformed bbox_2d (reported, not repaired)
    ('<think>the dent at [10, 20, 30, 40]</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((10, 20, 30, 40), "")], ["without a bbox_2d key"]),
    ('<think>{"bbox": [10, 20, 30, 40], "label": "x"}</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((10, 20, 30, 40), "x")], ["under key 'bbox'"]),
    ('<think>{"bbox_2d": [10, 20, 30], "label": "x"} {"bbox_2d": ["a", 2, 3, 4]}</think><rethink>r</rethink>'
     '<answer>A</answer>', YN, "A", [], ["has 3 values, not 4", "is not a list of numbers"]),
    # 21-25: missing, unclosed, stray and repeated tags
    ('<think>scan</think><answer>B</answer>', YN, "B", [], ["no <rethink> stage"]),
    ('<think>scan</think><rethink>look</rethink>The answer is A.', YN, None, [], ["no <answer> stage"]),
    ('I looked carefully. {"bbox_2d": [1, 2, 3, 4]}</think><rethink>r</rethink><answer>A</answer>',
     YN, "A", [((1, 2, 3, 4), "")], ["</think> without <think>"]),
    ('<think>scan<rethink>look</rethink><answer>A</answer>', YN, "A", [], ["<think> not closed before <rethink>"]),
    ('<think>{"bbox_2d": [1, 2, 3, 4], "label": "x"}</think><think>{"bbox_2d": [5, 6, 7, 8], "label": "y"}</think>'
     '<rethink>r</rethink><answer>A</answer>', YN, "A", [((1, 2, 3, 4), "x"), ((5, 6, 7, 8), "y")],
     ["<think> appears 2 times"]),
    # 26-29: repeated and conflicting answers, stage order
    ('<think>a</think><rethink>b</rethink><answer>A</answer><answer>A</answer>', YN, "A", [],
     ["<answer> appears 2 times"]),
    ('<think>a</think><rethink>b</rethink><answer>A</answer><answer>B</answer>', YN, None, [],
     ["conflicting answers: A, B"]),
    ('<think>a</think><rethink>b</rethink><answer>A</answer><answer>maybe</answer>', YN, None, [],
     ["cannot be read"]),
    ('<answer>B</answer><think>a</think><rethink>b</rethink>', YN, "B", [], ["stages out of order"]),
    # 30-33: truncated outputs
    ('<think>{"bbox_2d": [10, 20, 30', YN, None, [], ["reply ends inside <think>", "not closed (truncated"]),
    ('<think>{"bbox_2d": [10, 20, 30, 40], "label": "x"}</think><rethink>the region is', YN, None,
     [((10, 20, 30, 40), "x")], ["reply ends inside <rethink>", "no <answer> stage"]),
    ('<think>a</think><rethink>b</rethink><answer>A', YN, "A", [], ["reply ends inside <answer>"]),
    ('<think>{"bbox_2d": [10, 20, 30, 40], "label": "sc', YN, None, [((10, 20, 30, 40), "")],
     ["reply ends inside <think>"]),
    # 34-42: the answer vocabulary
    ('<think>a</think><rethink>b</rethink><answer>Yes</answer>', YN, "A", [], []),
    ('<think>a</think><rethink>b</rethink><answer>yes</answer>', NY, "B", [], []),
    ('<think>a</think><rethink>b</rethink><answer>Anomalous</answer>', YN, "A", [], []),
    ('<think>a</think><rethink>b</rethink><answer>normal</answer>', NY, "A", [], []),
    ('<think>a</think><rethink>b</rethink><answer>A. Yes.</answer>', YN, "A", [], []),
    ('<think>a</think><rethink>b</rethink><answer>A. No.</answer>', YN, None, [], ["names option A but the text"]),
    ('<think>a</think><rethink>b</rethink><answer>A or B</answer>', YN, None, [], ["cannot read the answer"]),
    ('<think>a</think><rethink>b</rethink><answer>C</answer>', YN, None, [], ["not one of the options"]),
    ('<think>a</think><rethink>b</rethink><answer>  </answer>', YN, None, [], ["empty <answer>"]),
    # 43-46: nothing usable
    ("", YN, None, [], ["empty reply"]),
    ("   \n ", YN, None, [], ["empty reply"]),
    ("Yes, there is a scratch on the left.", YN, None, [], ["no <think> stage", "no <answer> stage"]),
    ("ński.photoि.photoि.photoि", YN, None, [], ["no <answer> stage"]),
]


@pytest.mark.parametrize("reply, options, decision, boxes, problems", CASES,
                         ids=[f"case{i + 1}" for i in range(len(CASES))])
def test_parser_on_messy_replies(reply, options, decision, boxes, problems):
    r = proto.parse_reply(reply, options, frame=(100, 100))
    assert r.decision == decision
    assert r.status == (ParseStatus.PARSED if decision else ParseStatus.UNPARSED)
    assert [(b.as_tuple(), b.label) for b in r.boxes] == [(tuple(float(v) for v in c), lab) for c, lab in boxes]
    for p in problems:
        assert any(p in q for q in r.problems), (p, r.problems)
    if not problems and decision is not None:
        assert r.problems == [] and r.clean
    if decision is None:
        assert r.problems, "an unparsed reply must say why"


def test_at_least_thirty_messy_cases():
    assert len(CASES) >= 30
    assert sum(1 for c in CASES if c[2] is None) >= 10  # failures of each kind are covered


def test_stage_texts_are_kept():
    r = proto.parse_reply("<think> scan </think><rethink> look </rethink><answer>B</answer>", YN)
    assert r.stages == {"think": "scan", "rethink": "look", "answer": "B"}
    assert r.answer_text == "B"


def test_one_stage_variant_expects_no_rethink():
    reply = '<think>{"bbox_2d": [1, 2, 3, 4], "label": "x"} it is a defect</think><answer>A</answer>'
    r = proto.parse_reply(reply, YN, stages=proto.ONE_STAGE)
    assert r.decision == "A" and r.problems == []
    r = proto.parse_reply("<think>a</think><rethink>b</rethink><answer>A</answer>", YN, stages=proto.ONE_STAGE)
    assert r.decision == "A" and any("unexpected <rethink>" in p for p in r.problems)
    with pytest.raises(ValueError, match="stages must be"):
        proto.parse_reply(GOOD, YN, stages="two")


def test_boxes_are_read_from_think_only():
    reply = ('<think>{"bbox_2d": [1, 2, 3, 4], "label": "x"}</think>'
             '<rethink>{"bbox_2d": [50, 50, 60, 60], "label": "y"}</rethink><answer>A</answer>')
    assert [b.label for b in proto.parse_reply(reply, YN).boxes] == ["x"]


@pytest.mark.parametrize("stages", [proto.MULTI_STAGE, proto.ONE_STAGE])
@pytest.mark.parametrize("label, boxes", [
    (ANOMALOUS, [Box(10.4, 20.6, 30, 40, "scratch"), Box(50, 60, 70.5, 80, "")]),
    (ANOMALOUS, []),
    (NORMAL, []),
])
def test_render_response_round_trips(stages, label, boxes):
    for options in (YN, NY):
        text = proto.render_response(boxes, label, options, stages=stages, defect="crack")
        r = proto.parse_reply(text, options, stages=stages)
        assert r.clean, r.problems
        assert r.decision == proto.decision_letter(label, options)
        assert options[r.decision] == ("Yes." if label == ANOMALOUS else "No.")
        want = [(tuple(float(round(v)) for v in b.as_tuple()), b.label or "crack") for b in boxes]
        assert [(b.as_tuple(), b.label) for b in r.boxes] == (want if label == ANOMALOUS else [])


def test_decision_letter_rejects_non_yes_no_questions():
    with pytest.raises(ValueError, match="Yes"):
        proto.decision_letter(ANOMALOUS, {"A": "crack", "B": "scratch"})


def test_build_messages_puts_reference_before_query():
    q = Query(id="q", images=["/data/ref.png", "/data/query.png"], question="Is there any defect in the object?",
              options=dict(YN), prompt="", n_references=1)
    msgs = proto.build_messages(q)
    assert msgs[0]["role"] == "system"
    parts = msgs[1]["content"]
    images = [p["image"] for p in parts if p["type"] == "image"]
    assert images == ["/data/ref.png", "/data/query.png"]
    text = "".join(p.get("text", "") for p in parts)
    assert text.index(proto.REFERENCE_CAPTION) < text.index(proto.QUERY_CAPTION)
    for needle in ("<think>", "<rethink>", "<answer>", '"bbox_2d"', "A. Yes.", "B. No.", "comparing it with the reference"):
        assert needle in text
    zero = Query(id="q", images=["/data/query.png"], question="?", options=dict(YN), prompt="", n_references=0)
    text0 = "".join(p.get("text", "") for p in proto.build_messages(zero, proto.ONE_STAGE)[1]["content"])
    assert "<rethink>" not in text0 and "reference" not in text0
