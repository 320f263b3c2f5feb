"""Calibration and few-shot support never include an image the task evaluates (issue 13, item 6).

A score model fits its memory bank on `support` and its calibrated threshold on the
calibration images; an evaluated image among them would be scored against itself.
"""

import json

import pytest

from adbench import registry
from adbench.data.demo import ensure_demo
from adbench.data.paths import DataError
from adbench.schema import Sample
from adbench.task import exclude_evaluated
from tests import layouts as L

#: Every suite that ships, with the task arguments that change which images are evaluated.
SUITES = [
    ("mmad-binary", {}), ("mmad-binary", {"split": "train"}), ("mmad-binary", {"split": "all"}),
    ("mmad-multitask", {}), ("mmad", {"split": "all", "template": "similar"}),
    ("demo-binary", {}), ("demo-binary", {"split": "eval"}), ("demo-multitask", {}),
    ("cross-visa", {}), ("cross-mpdd", {}), ("cross-dtd", {}), ("cross-dagm", {}), ("cross-dataset", {}),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for write in (L.write_mmad, L.write_visa, L.write_mpdd, L.write_dtd, L.write_dagm):
        write(root)
    ensure_demo(root)
    return root


def test_every_shipped_suite_is_listed():
    assert {name for name, _ in SUITES} == set(registry.BUILTIN_TASKS)


@pytest.mark.parametrize("name,args", SUITES, ids=[f"{n}{a or ''}" for n, a in SUITES])
def test_support_references_and_calibration_exclude_evaluated_images(data, name, args):
    task = registry.make_task(name, **args)
    samples = task.samples(data)
    evaluated = {s.image for s in samples}
    assert samples and all(s.support for s in samples)  # each suite does have support to protect
    assert not evaluated & {p for s in samples for p in s.support}
    assert not evaluated & {p for s in samples for p in s.references}
    calibration = task.calibration_samples(data, samples)
    assert calibration and not evaluated & {c.image for c in calibration}
    assert not evaluated & {p for c in calibration for p in c.support}


def test_templates_that_are_evaluated_images_are_skipped(tmp_path):
    """An index whose templates name images it also asks about: the next template is shown instead."""
    d = L.write_mmad(tmp_path, per_category=3)
    index = json.loads((d / "mmad.json").read_text())
    asked = "VisA/candle/test/good/001.JPG"
    key = "VisA/candle/test/bad/000.JPG"
    index[key]["random_templates"] = [asked, "VisA/candle/train/good/0002.JPG"]
    (d / "mmad.json").write_text(json.dumps(index))
    task = registry.make_task("mmad-binary", split="all")
    samples = {s.id: s for s in task.samples(tmp_path)}
    assert [p.rsplit("MMAD/", 1)[1] for p in samples[key + "#0"].references] == ["VisA/candle/train/good/0002.JPG"]
    support = samples[key + "#0"].support
    assert support and not any(p.endswith(asked) for p in support)
    calibration = task.calibration_samples(tmp_path, list(samples.values()))
    assert not any(c.image.endswith(asked) for c in calibration)
    # with only the training side asked, the same image is not evaluated and may serve as support
    train = registry.make_task("mmad-binary", split="train").samples(tmp_path)
    assert all(not s.image.endswith(asked) for s in train)


def test_a_reference_that_is_evaluated_is_a_reader_bug_not_dropped():
    pool = ["/d/train/a.png", "/d/test/b.png"]
    a = Sample(id="a", dataset="D", category="c", image="/d/test/b.png", label=0, support=pool,
               references=["/d/train/a.png"])
    b = Sample(id="b", dataset="D", category="c", image="/d/test/c.png", label=1, support=pool,
               references=["/d/test/b.png"])
    with pytest.raises(DataError, match="sample b: reference image /d/test/b.png is itself evaluated"):
        exclude_evaluated([a, b], {a.image, b.image})
    exclude_evaluated([a], {a.image})
    assert a.support == ["/d/train/a.png"] and pool == ["/d/train/a.png", "/d/test/b.png"]  # shared list untouched
