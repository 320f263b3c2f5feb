"""format_reward (both variants) on hand cases, and the TRL reward wrappers on dataset-shaped columns."""

from __future__ import annotations

import json

import pytest

from adbench.models.adfm_protocol import render_response
from adbench.schema import Box
from adbench.training.recipes import available, load_recipe
from adbench.training.reward_funcs import (
    completion_text,
    count_component,
    make_cls,
    make_count,
    make_format,
    make_loc,
    make_random,
    make_reward_funcs,
)
from adbench.training.rewards import format_reward

OPTS = {"A": "Yes.", "B": "No."}
IDEAL_NORMAL = render_response([], 0, OPTS)
IDEAL_ANOM = render_response([Box(10, 20, 50, 60)], 1, OPTS, defect="scratch")


# ------------------------------------------------------------------ format, paper variant


@pytest.mark.parametrize("text, expected", [
    (IDEAL_NORMAL, 1.0),
    (IDEAL_ANOM, 1.0),
    ("<think>a</think>\n<rethink>b</rethink>\n<answer>Yes</answer>\n", 1.0),  # option text reads as A
    ("<think>a</think><answer>B</answer>", 0.0),  # no <rethink> in the multi-stage protocol
    ("<think>a</think><rethink>b</rethink><answer>maybe</answer>", 0.0),  # answer unreadable
    ("<think>a</think><answer>B</answer><rethink>b</rethink>", 0.0),  # out of order
    ("<think>a</think><think>c</think><rethink>b</rethink><answer>B</answer>", 0.0),  # repeated tag
    ("<think>a</think><rethink>b</rethink><answer>B", 0.0),  # unclosed (truncated)
    ("Sure! <think>a</think><rethink>b</rethink><answer>B</answer>", 0.0),  # text outside the tags
    ("<answer>B</answer>", 0.0),
    ("", 0.0),
    (None, 0.0),
])
def test_format_paper_multi_stage(text, expected):
    assert format_reward(text, OPTS, "multi", "paper") == expected


def test_format_paper_one_stage():
    one = render_response([], 0, OPTS, stages="one")
    assert format_reward(one, OPTS, "one") == 1.0
    assert format_reward(one, OPTS, "multi") == 0.0  # <rethink> missing
    assert format_reward(IDEAL_NORMAL, OPTS, "one") == 0.0  # unexpected <rethink>


# ------------------------------------------------------------------ format, released variant


def test_format_released_by_hand():
    # think > 10 chars 0.4, rethink > 10 chars 0.3, exact letter 0.2, box inside 112x112 0.2 + 0.1
    assert format_reward(IDEAL_ANOM, OPTS, variant="released", frame=(112, 112)) == pytest.approx(1.2)
    # the same box, but a 40x40 input: coordinates 50 and 60 fall outside -> no +0.1
    assert format_reward(IDEAL_ANOM, OPTS, variant="released", frame=(40, 40)) == pytest.approx(1.1)
    # normal ideal reply: no box and no brackets in <think>
    assert format_reward(IDEAL_NORMAL, OPTS, variant="released") == pytest.approx(0.9)
    # short think (5 chars) 0.3, no rethink, exact lower-case letter 0.2
    assert format_reward("<think>short</think><answer>b</answer>", OPTS, variant="released") == pytest.approx(0.5)
    # partial answer "(a)" 0.1, brackets without numbers 0.1 (+ think 0.3, > 10 chars 0.1)
    text = "<think>see [region] here</think><answer>(a)</answer>"
    assert format_reward(text, OPTS, variant="released") == pytest.approx(0.6)
    # the released default frame is 504x504: 504 is inside, 505 is not
    inside = "<think>[0, 0, 504, 504]</think>"
    outside = "<think>[0, 0, 505, 10]</think>"
    assert format_reward(inside, OPTS, variant="released") == pytest.approx(0.4 + 0.3)
    assert format_reward(outside, OPTS, variant="released") == pytest.approx(0.4 + 0.2)
    assert format_reward("no tags at all", OPTS, variant="released") == 0.0


# ------------------------------------------------------------------ TRL wrappers

GT_MODEL = [Box(10.0, 20.0, 50.0, 60.0, "scratch").to_dict()]  # the stored form: Box.to_dict()


def _columns(n_rep: int = 1) -> dict:
    """Columns as TRL passes them: one entry per completion (rows repeated per generation)."""
    rows = [
        dict(label=1, gold="A", gt_boxes=GT_MODEL, defect="scratch"),
        dict(label=0, gold="B", gt_boxes=[], defect="good"),
    ]
    cols: dict[str, list] = {k: [] for k in ("label", "gold", "gt_boxes", "options", "stages", "input_size")}
    for r in rows:
        for _ in range(n_rep):
            cols["label"].append(r["label"])
            cols["gold"].append(r["gold"])
            cols["gt_boxes"].append(r["gt_boxes"])
            cols["options"].append(json.dumps(OPTS))
            cols["stages"].append("multi")
            cols["input_size"].append([112, 112])
    return cols


def _msg(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_completion_text_accepts_strings_and_messages():
    assert completion_text("abc") == "abc"
    assert completion_text(_msg("abc")) == "abc"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                               {"type": "text", "text": "b"}]}]) == "ab"


def test_wrappers_on_dataset_columns_by_hand():
    cols = _columns()
    shifted = render_response([Box(30, 20, 70, 60)], 1, OPTS)  # GIoU with GT: inter 20x40, union 2400 -> 1/3
    completions = [_msg(shifted), _msg(IDEAL_ANOM)]  # row 2 is normal: a box and answer A are wrong there
    prompts = [[{"role": "user", "content": "x"}]] * 2
    assert make_format()(prompts, completions, **cols) == [1.0, 1.0]
    assert make_cls()(prompts, completions, **cols) == [1.0, 0.0]
    loc = make_loc(alpha=0.3)(prompts, completions, **cols)
    assert loc[0] == pytest.approx(1 / 3 + 0.3)
    assert loc[1] == 0.5  # normal image, one box: r_focus(1)
    assert make_count()(prompts, completions, **cols) == [1.0, 0.5]
    released = make_loc("released", alpha=0.3)(prompts, completions, **cols)
    assert released[0] == pytest.approx((1 / 3 + 0.3 + 0.5) / 1.5)


def test_wrappers_treat_unparsed_and_clipped_replies():
    cols = _columns()
    prompts = [None, None]
    broken = [_msg("<think>[1, 2, 3, 4]"), _msg("")]  # truncated: no answer; an empty reply
    assert make_format()(prompts, broken, **cols) == [0.0, 0.0]
    assert make_cls()(prompts, broken, **cols) == [0.0, 0.0]
    # the truncated reply still lists one box on the anomalous row: count |1 - 1| = 0 -> 1
    assert make_count()(prompts, broken, **cols) == [1.0, 0.0]
    # a box beyond the 112x112 input is clipped to it before GIoU, as at evaluation
    far = render_response([Box(100, 100, 300, 300)], 1, OPTS)
    loc = make_loc(alpha=0.0)(prompts, [_msg(far), _msg(IDEAL_NORMAL)], **cols)
    # clipped pred (100,100,112,112) vs GT (10,20,50,60): inter 0, union 144+1600, hull 102x92
    hull, union = 102 * 92, 144 + 1600
    assert loc[0] == pytest.approx(-(hull - union) / hull)
    assert loc[1] == 0.0


def test_wrapper_names_a_missing_column():
    with pytest.raises(KeyError, match="gt_boxes"):
        make_loc()([None], [_msg(IDEAL_ANOM)], label=[1], options=[json.dumps(OPTS)], stages=["multi"],
                   input_size=[[112, 112]])


def test_count_component_for_both_labels():
    assert [count_component(m, 2, True) for m in (2, 1, 3, 0)] == [1.0, 0.5, 0.5, -0.1]
    assert [count_component(m, 0, False) for m in (0, 1, 2)] == [0.0, 0.5, -0.1]
    assert count_component(3, 0, True) == 0.0  # anomalous without GT boxes: not judged


def test_random_reward_is_seeded_per_factory():
    cols = _columns(3)
    comps = [_msg("x")] * 6
    a = make_random(seed=5)(None, comps, **cols)
    b = make_random(seed=5)(None, comps, **cols)
    c = make_random(seed=6)(None, comps, **cols)
    assert a == b and a != c and len(set(a)) == 6
    f = make_random(seed=5)
    assert f(None, comps, **cols) != f(None, comps, **cols)  # the generator advances between calls


@pytest.mark.parametrize("name", available())
def test_factory_follows_the_recipe(name):
    recipe = load_recipe(name)
    funcs = make_reward_funcs(recipe)
    assert [f.__name__ for f in funcs] == [f"r_{c}" for c in recipe["rewards"]["components"]]


def test_factory_variant_and_alpha_come_from_the_recipe():
    cols = _columns()
    shifted = render_response([Box(30, 20, 70, 60)], 1, OPTS)
    comps = [_msg(shifted), _msg(IDEAL_NORMAL)]
    recipe = load_recipe("paper-multidomain", ["rewards.alpha=0.5", "rewards.variant=released"])
    fmt, cls, loc = make_reward_funcs(recipe)
    assert loc(None, comps, **cols)[0] == pytest.approx((1 / 3 + 0.5 + 0.5) / 1.5)
    assert fmt(None, comps, **cols) == [pytest.approx(1.2), pytest.approx(0.9)]
