"""The built-in demo suite: deterministic, crash-safe, and readable as MMAD."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from adbench.data import demo
from adbench.data.demo import DEFECT_NAMES, DEMO_VERSION, MARKER_NAME, ensure_demo, generate_demo
from adbench.data.mmad import read_mmad
from adbench.schema import ANOMALOUS, NORMAL

# 3 texture and 4 object categories; each has 6 normal and 8 anomalous query images.
# Normal images get 2 questions (detection, object), anomalous ones 4 (+ defect, where).
IMAGES = {"DemoTexture": 3 * 14, "DemoObject": 4 * 14}
QUESTIONS = {
    "DemoTexture": {
        "Anomaly Detection": 42,
        "Object Classification": 42,
        "Defect Classification": 24,
        "Defect Localization": 24,
    },
    "DemoObject": {
        "Anomaly Detection": 56,
        "Object Classification": 56,
        "Defect Classification": 32,
        "Defect Localization": 32,
    },
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_demo(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def samples(suite: Path) -> list:
    return read_mmad(suite)


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(suite: Path, tmp_path: Path) -> None:
    again = generate_demo(tmp_path / "other", seed=0)
    assert again == tmp_path / "other"
    first, second = _hashes(suite), _hashes(again)
    assert len(first) == 1 + 1 + 98 + 56 + 42  # marker, index, queries, masks, templates
    assert first == second


def test_second_call_is_a_no_op(suite: Path) -> None:
    watched = [suite / MARKER_NAME, suite / "mmad.json", suite / "DemoObject/cat/image/good/000.png"]
    before = [p.stat().st_mtime_ns for p in watched]
    assert ensure_demo(suite.parent) == suite
    assert generate_demo(suite, seed=0) == suite
    assert [p.stat().st_mtime_ns for p in watched] == before
    assert sorted(p.name for p in suite.parent.iterdir()) == ["demo"]  # no temporary leftovers
    assert demo.is_complete(suite, 0) and not demo.is_complete(suite, 1)


def test_counts_per_dataset_and_question_type(samples: list) -> None:
    images = Counter(ds for ds, _ in {(s.dataset, s.image) for s in samples})
    assert dict(images) == IMAGES
    for dataset, expected in QUESTIONS.items():
        got = Counter(s.qtype for s in samples if s.dataset == dataset)
        assert dict(got) == expected
    assert {s.category for s in samples if s.dataset == "DemoTexture"} == {"brick", "grass", "gravel"}
    assert len({s.category for s in samples if s.dataset == "DemoObject"}) == 4


def test_labels_masks_and_answers(samples: list) -> None:
    multi_component = 0
    for s in samples:
        assert s.gold in s.options and len(s.options) in (2, 4)
        assert len(set(s.options.values())) == len(s.options)
        assert Path(s.image).is_file()
        assert len(s.references) == 3 and len(s.meta["similar_templates"]) == 3
        assert all(Path(t).is_file() for t in s.references + s.meta["similar_templates"])
        assert all("/train/good/" in Path(t).as_posix() for t in s.support)
        if s.defect == "good":
            assert s.label == NORMAL and s.mask is None
            assert s.qtype != "Anomaly Detection" or s.options[s.gold] == "No."
            continue
        assert s.label == ANOMALOUS and s.defect in DEFECT_NAMES
        mask = np.asarray(Image.open(s.mask))
        assert Image.open(s.mask).mode == "L" and Image.open(s.image).size == mask.shape[::-1]
        assert set(np.unique(mask)) == {0, 255}
        assert 0.003 < (mask > 0).mean() < 0.08  # visible, but not a large part of the image
        if s.qtype == "Anomaly Detection":
            assert s.options[s.gold] == "Yes."
            multi_component += ndimage.label(mask > 0)[1] >= 2
        elif s.qtype == "Defect Classification":
            assert s.options[s.gold] == DEFECT_NAMES[s.defect]
        elif s.qtype == "Defect Localization":
            assert s.options[s.gold] == demo.region_of(mask > 0)
    assert multi_component >= 1


def test_object_classification_names_the_category(samples: list) -> None:
    words = {c.name: c.words for c in demo.CATEGORIES}
    for s in samples:
        if s.qtype == "Object Classification":
            assert s.options[s.gold] == words[s.category]


def test_images_have_real_content(suite: Path) -> None:
    paths = sorted(suite.rglob("image/*/*.png")) + sorted(suite.rglob("train/good/*.png"))
    assert len(paths) == 98 + 42
    for p in paths:
        img = Image.open(p)
        assert img.mode == "RGB" and img.size == (256, 256)
        px = np.asarray(img, dtype=np.float64)
        assert px.std() > 15, p  # a photo or texture, not a flat fill
        assert np.abs(np.diff(px, axis=1)).mean() > 2, p  # with fine detail


def test_region_of_uses_the_largest_component() -> None:
    mask = np.zeros((90, 90), dtype=bool)
    mask[40:50, 40:50] = True  # largest, in the middle third
    mask[0:3, 80:83] = True
    assert demo.region_of(mask) == "center"
    mask[60:85, 0:25] = True
    assert demo.region_of(mask) == "bottom left"


def _fake_writer(seed_seen: list[int], *, fail: bool = False):
    """A stand-in for the slow writer, to test installation logic quickly."""

    def write(out: Path, seed: int) -> None:
        seed_seen.append(seed)
        (out / "mmad.json").write_text("{}", encoding="utf-8")
        if fail:
            raise KeyboardInterrupt  # like a run killed half way
        (out / MARKER_NAME).write_text(f'{{"version": {DEMO_VERSION}, "seed": {seed}}}', encoding="utf-8")

    return write


def test_stale_suite_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / MARKER_NAME).write_text('{"version": 0, "seed": 0}', encoding="utf-8")
    (out / "old.txt").write_text("stale", encoding="utf-8")
    seen: list[int] = []
    monkeypatch.setattr(demo, "_write_suite", _fake_writer(seen))
    assert generate_demo(out, seed=0) == out
    assert seen == [0] and demo.is_complete(out, 0) and not (out / "old.txt").exists()
    generate_demo(out, seed=0)
    assert seen == [0]  # complete: not written again
    generate_demo(out, seed=0, force=True)
    generate_demo(out, seed=2)
    assert seen == [0, 0, 2] and demo.is_complete(out, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_killed_generation_leaves_no_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "_write_suite", _fake_writer([], fail=True))
    with pytest.raises(KeyboardInterrupt):
        generate_demo(tmp_path / "demo")
    assert list(tmp_path.iterdir()) == []


def test_foreign_folder_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "precious.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError):
        generate_demo(out)
    assert (out / "precious.txt").read_text(encoding="utf-8") == "mine"
