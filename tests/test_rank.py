"""One seeded hash rank for every seeded draw, and the draws it makes, pinned.

Every value below was computed with the three copies the rank replaced (reference draws
in data/layout.py, the 20/80 split in data/split.py, the `--limit` subset in runner.py),
before they were merged: equal values prove the merge changed no split, subset or
reference.
"""

from __future__ import annotations

import ast
from pathlib import Path

from adbench import registry
from adbench.data.layout import draw_references, rank
from adbench.data.split import draw_split
from adbench.runner import stratified_subset
from adbench.schema import Query, Sample

PKG = Path(__file__).resolve().parent.parent / "adbench"


def test_rank_values_are_pinned() -> None:
    # reference draws: "\x1f", the first 64 bits
    assert [rank(0, "a"), rank(7, "MVTec/bottle/test/good/000.png", 0), rank(1, "x", 3)] == [
        17234191583336360940, 8095468369953111724, 17492953872810811789]
    # the split's old sort key: sha256(f"{seed}\x1f{key}").hexdigest()
    assert f"{rank(0, 'a', bits=256):064x}" == "ef2c25ef33ca6bece5608eaedf2d37319a82b56a933d753ec6c76b1d50b9aeee"
    assert f"{rank(3, 'VisA/candle/test/bad/001.JPG', bits=256):064x}" == (
        "c79214b0e3cfe06fef42ccca65cce3931f3437f440f73656fedf62284f200b2e")
    # the `--limit` subset's old sort key: sha256(f"{seed}:{sample_id}").hexdigest()
    assert f"{rank(0, 'a', sep=':', bits=256):064x}" == (
        "9df3c5fab8ef8fe78a408912e52e76477b5bd838eec3cbf48191a848ec8563d3")
    assert f"{rank(2, 'demo/x.png', sep=':', bits=256):064x}" == (
        "2d2648124daac05f055007ab59b6ce8619bc7bf76f6f05de5e109d99fcc2eca0")


def test_fewer_bits_are_the_leading_bits() -> None:
    """64 bits are the digest's first 8 bytes: the width the reference draws were made with."""
    assert rank(5, "id", 2) == rank(5, "id", 2, bits=256) >> 192


def test_reference_draws_are_pinned() -> None:
    pool = [f"train/good/{i:03d}.png" for i in range(10)]
    assert draw_references("MVTec/bottle/test/broken/000.png", pool, 3, 0) == [
        "train/good/006.png", "train/good/002.png", "train/good/003.png"]
    assert draw_references("DAGM/Class1/test/7.PNG", pool, 1, 5, exclude=pool[4]) == ["train/good/009.png"]


def test_split_is_pinned() -> None:
    units = {f"D/c/{label}/{i:02d}.png": ("D", "c", label) for label in (0, 1) for i in range(12)}
    assert draw_split(units, seed=0)["train"] == ["D/c/0/01.png", "D/c/0/10.png", "D/c/1/05.png", "D/c/1/09.png"]
    assert draw_split(units, seed=4)["train"] == ["D/c/0/05.png", "D/c/0/09.png", "D/c/1/10.png", "D/c/1/11.png"]


def _samples() -> list[Sample]:
    return [Sample(id=f"{ds}/{cat}/{label}/{i}", dataset=ds, category=cat, image=f"{ds}/{cat}/{label}/{i}.png",
                   label=label)
            for ds in ("A", "B") for cat in ("c1", "c2") for label in (0, 1) for i in range(5)]


def test_limit_subsets_are_pinned() -> None:
    def ids(n: int, seed: int) -> list[str]:
        return [s.id for s in stratified_subset(_samples(), n, seed)]

    assert ids(5, 0) == ["A/c1/0/3", "A/c1/1/1", "A/c2/0/2", "B/c1/0/3", "B/c1/1/2"]
    assert ids(9, 3) == ["A/c1/0/2", "A/c1/0/3", "A/c1/1/4", "A/c2/0/1", "A/c2/1/0", "B/c1/0/2", "B/c1/1/0",
                         "B/c2/0/0", "B/c2/1/4"]
    assert ids(12, 1) == ["A/c1/0/2", "A/c1/0/4", "A/c1/1/0", "A/c1/1/3", "A/c2/0/3", "A/c2/1/2", "B/c1/0/1",
                          "B/c1/0/4", "B/c1/1/2", "B/c1/1/3", "B/c2/0/2", "B/c2/1/1"]


def test_chance_model_draws_the_same_rank() -> None:
    """`chance` picks option `rank(seed, id, sep=":") % k` (its own copy of the hash, same value)."""
    options = {"A": "Yes.", "B": "No.", "C": "Maybe."}
    ids = [f"q{i}" for i in range(12)]
    model = registry.make_model("chance", seed=3)
    answers = [r.answer for r in model.predict([Query(id=i, images=[], question="", options=options, prompt="")
                                                for i in ids])]
    assert answers == ["ABC"[rank(3, i, sep=":") % 3] for i in ids]


def test_rank_is_defined_once() -> None:
    """No other module defines a rank function of its own."""
    defined = [p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")
               for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(node, ast.FunctionDef) and node.name in ("rank", "_rank")]
    assert defined == ["data/layout.py"]
