"""The paper's 20/80 split: stratified, seeded, identical across runs and machines, disjoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adbench.data.paths import DataError
from adbench.data.split import draw_split, load_split, make_split, n_train, split_hash

ROOT = Path(__file__).resolve().parent.parent


def units():
    """3 datasets x 2 categories x 2 labels, stratum sizes 1..12."""
    out = {}
    size = 1
    for ds in ("DS-MVTec", "VisA", "GoodsAD"):
        for cat in ("a", "b"):
            for label in (0, 1):
                for i in range(size):
                    out[f"{ds}/{cat}/{'good' if label == 0 else 'bad'}/{i:03d}.png"] = (ds, cat, label)
                size += 1
    return out


def test_proportions_per_stratum_and_disjoint():
    u = units()
    c = draw_split(u, seed=0)
    train, eval_ = set(c["train"]), set(c["eval"])
    assert not train & eval_ and train | eval_ == set(u)
    size = 1
    for ds in ("DS-MVTec", "VisA", "GoodsAD"):
        for cat in ("a", "b"):
            for label in (0, 1):
                got = sum(1 for k in train if u[k] == (ds, cat, label))
                assert got == n_train(size, 0.2) == int(size * 0.2 + 0.5), (ds, cat, label, size)
                assert c["counts"][f"{ds}/{cat}/{label}"] == {"train": got, "eval": size - got}
                size += 1
    assert [n_train(n, 0.2) for n in (1, 2, 3, 5, 7, 8, 10, 13)] == [0, 0, 1, 1, 1, 2, 2, 3]


def test_deterministic_seeded_and_written_with_its_hash(tmp_path):
    u = units()
    a, b = make_split(u, tmp_path, seed=0), make_split(dict(reversed(list(u.items()))), tmp_path, seed=0)
    assert a == b  # same seed, same membership, whatever order the index lists the images in
    other = make_split(u, tmp_path, seed=1)
    assert other.train != a.train and other.hash != a.hash
    data = json.loads(Path(a.path).read_text())
    assert data["seed"] == 0 and data["train_fraction"] == 0.2 and data["unit"] == "image"
    assert split_hash(data["train"], data["eval"]) == a.hash
    assert a.info("eval")["hash"] == a.hash and a.info("eval")["n_train_images"] == len(a.train)
    # a user's split file in the same format is read back with the same hash
    assert load_split(Path(a.path), u).hash == a.hash


def test_identical_in_another_process_with_another_hash_seed(tmp_path):
    """Python's hash() is salted per process; the split must not depend on it."""
    code = ("import json,sys; sys.path.insert(0, sys.argv[1]); from tests.test_split import units;"
            "from adbench.data.split import make_split; s = make_split(units(), None, seed=3);"
            "print(json.dumps([s.hash, sorted(s.train)]))")
    outs = [subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True,
                           cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "999")]
    assert outs[0] == outs[1]
    here = make_split(units(), None, seed=3)
    assert json.loads(outs[0]) == [here.hash, sorted(here.train)]


def test_bad_split_files_are_rejected(tmp_path):
    u = units()
    keys = sorted(u)
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"train": keys[:3], "eval": keys[2:]}))
    with pytest.raises(DataError, match="1 image.* on both sides"):
        load_split(p, u)
    p.write_text(json.dumps({"train": keys[:3], "eval": keys[4:]}))
    with pytest.raises(DataError, match="on neither side"):
        load_split(p, u)
    p.write_text(json.dumps({"train": ["x/y/z.png"], "eval": keys}))
    with pytest.raises(DataError, match="not in the index, e.g. 'x/y/z.png'"):
        load_split(p, u)
