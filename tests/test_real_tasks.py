"""The paper's suites on miniature data: MMAD multi-domain (split, shots, templates) and cross-dataset."""

import json
import warnings
from pathlib import Path

import pytest

from adbench import registry
from adbench.data.paths import DataError
from adbench.runner import RunSpec, run
from adbench.tasks.common import DataWarning
from tests import layouts as L


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for write in (L.write_mmad, L.write_visa, L.write_mpdd, L.write_dtd, L.write_dagm):
        write(root)
    return root


def rel(root, p):
    return Path(p).relative_to(root).as_posix()


def images(samples):
    return {s.meta["key"] for s in samples}


def test_mmad_binary_eval_split_one_shot(data):
    task = registry.make_task("mmad-binary")
    samples = task.samples(data)
    # per dataset: 5 good + 5 anomalous images, 20% (round(1.0) = 1 of each) train -> 4 + 4 evaluated
    assert len(samples) == 32 and {s.qtype for s in samples} == {"Anomaly Detection"}
    assert sorted({s.dataset for s in samples}) == ["DS-MVTec", "GoodsAD", "MVTec-LOCO", "VisA"]
    assert sum(s.label == 1 for s in samples) == 16
    for s in samples:  # 1-shot: the first random template
        assert s.references == s.meta["random_templates"][:1]
    info = task.config()["split"]
    assert info["part"] == "eval" and info["n_train_images"] == 8 and info["n_eval_images"] == 32
    assert info["path"].startswith(".adbench-cache/splits/mmad-") and (data / info["path"]).is_file()
    assert info["hash"] == task.split.hash
    train = registry.make_task("mmad-binary", split="train").samples(data)
    everything = registry.make_task("mmad-binary", split="all").samples(data)
    assert len(train) == 8 and len(everything) == 40
    assert not images(train) & images(samples) and images(train) | images(samples) == images(everything)
    assert registry.make_task("mmad-binary", split="train").config()["split"] == {}  # filled when read


def test_mmad_shots_templates_and_narrowing(data):
    zero = registry.make_task("mmad-binary", shots=0).samples(data)
    assert all(s.references == [] for s in zero)
    similar = registry.make_task("mmad-binary", template="similar").samples(data)
    assert all(s.references == s.meta["similar_templates"][:1] for s in similar)
    first = next(s for s in similar if s.id == "VisA/candle/test/bad/002.JPG#0")
    assert rel(data / "MMAD", first.references[0]) == "VisA/candle/train/good/0001.JPG"  # (i + 2) % 3
    visa = registry.make_task("mmad-binary", datasets="VisA").samples(data)
    assert len(visa) == 8 and {s.dataset for s in visa} == {"VisA"}
    with pytest.raises(DataError, match="-T datasets: MVTec not in the data; present: DS-MVTec, GoodsAD"):
        registry.make_task("mmad-binary", datasets="MVTec").samples(data)
    with pytest.raises(DataError, match="-T categories: nope not in the data; present: candle"):
        registry.make_task("mmad-binary", datasets="VisA", categories="nope").samples(data)
    with pytest.raises(ValueError, match="-T split: expected one of eval, train, all, got 'test'"):
        registry.make_task("mmad-binary", split="test")


def test_mmad_multitask_merges_object_analysis_and_mmad_asks_all(data):
    multi = registry.make_task("mmad-multitask").samples(data)
    # per dataset, 4 good x Object Classification + 4 anomalous x (Defect Cl., Structure, Details)
    assert len(multi) == 4 * (4 + 4 * 3)
    assert {s.qtype for s in multi} == {"Object Classification", "Defect Classification", "Object Analysis"}
    assert len(registry.make_task("mmad").samples(data)) == 4 * (4 * 2 + 4 * 4)


def test_mmad_run_records_split_hash_and_gt_boxes(data, tmp_path):
    o = run(RunSpec(model="chance", task="mmad-binary", data_root=data, out=tmp_path / "runs", progress=False))
    cfg = json.loads((o.run_dir / "config.json").read_text())
    task = registry.make_task("mmad-binary")
    task.samples(data)
    assert cfg["split_hash"] == task.split.hash and cfg["task_config"]["split"]["part"] == "eval"
    recs = {r["id"]: r for r in map(json.loads, (o.run_dir / "samples.jsonl").read_text().splitlines())}
    assert len(recs) == 32 and o.results["counts"]["n_failed"] == 0
    for rid, r in recs.items():
        if r["label"] == 0:
            assert r["gt_boxes"] == []
            continue
        stem = rid.split("#")[0].rsplit("/", 1)[1]
        i = int(stem[:3]) - (57 if r["dataset"] == "GoodsAD" else 0)  # L.mmad_stem
        want = [[4 + i, 4, 14 + i, 12]] + ([[40, 40, 50, 50]] if r["dataset"] == "MVTec-LOCO" else [])
        assert [b["bbox"] for b in r["gt_boxes"]] == want, rid
        assert {b["label"] for b in r["gt_boxes"]} == {r["defect"]}
    assert list((data / ".adbench-cache/boxes").rglob("*.json"))


@pytest.mark.parametrize("task", ["mmad-binary", "mmad-multitask", "mmad"])
def test_mmad_runs_find_every_image_and_mask_of_the_real_layout(data, tmp_path, task):
    """MMAD's real path convention (tests/layouts.py: MMAD_LAYOUT): no sample fails, every mask is paired."""
    o = run(RunSpec(model="chance", task=task, data_root=data, out=tmp_path / "runs", task_args={"split": "all"},
                    progress=False))
    recs = [json.loads(x) for x in (o.run_dir / "samples.jsonl").read_text().splitlines()]
    # 4 datasets x (5 good + 5 anomalous images); 2 questions per good image, 4 per anomalous one
    want = {"mmad-binary": 40, "mmad-multitask": 4 * (5 + 5 * 3), "mmad": 4 * (5 * 2 + 5 * 4)}[task]
    assert len(recs) == o.results["counts"]["n"] == want
    assert [r["error"] for r in recs if r["error"]] == [] and o.results["counts"]["n_failed"] == 0
    anomalous = [r for r in recs if r["label"] == 1]
    assert anomalous and all(r["gt_boxes"] and "gt_boxes_error" not in r["meta"] for r in anomalous)


def test_cross_tasks_test_split_and_deterministic_reference(data):
    mpdd = registry.make_task("cross-mpdd").samples(data)
    assert sorted(s.id for s in mpdd) == [
        "MPDD/bracket_black/test/good/000.png", "MPDD/bracket_black/test/good/001.png",
        "MPDD/bracket_black/test/hole/000.png", "MPDD/bracket_black/test/scratches/000.png",
        "MPDD/tubes/test/anomalous/000.png", "MPDD/tubes/test/good/000.png"]
    for s in mpdd:
        assert len(s.references) == 1 and rel(data, s.references[0]).startswith(f"MPDD/{s.category}/train/good/")
        assert s.question == "Is there any defect in the object?" and s.options == {"A": "Yes.", "B": "No."}
    again = registry.make_task("cross-mpdd").samples(data)
    assert [s.references for s in again] == [s.references for s in mpdd]
    reseeded = registry.make_task("cross-mpdd", seed=1).samples(data)
    assert [s.references for s in reseeded] != [s.references for s in mpdd]
    assert all(s.references == [] for s in registry.make_task("cross-mpdd", shots=0).samples(data))
    suite = registry.make_task("cross-dataset", datasets="VisA,MPDD,DTD,DAGM").samples(data)
    counts = {ds: sum(s.dataset == ds for s in suite) for ds in ("VisA", "MPDD", "DTD", "DAGM")}
    assert counts == {"VisA": 5, "MPDD": 6, "DTD": 6, "DAGM": 5}
    assert {s.meta["split"] for s in suite} == {"test"}
    assert len(registry.make_task("cross-dagm").samples(data)) == 5
    assert len(registry.make_task("cross-dtd", categories="Woven_001").samples(data)) == 3


def test_cross_roots_and_missing_dataset(data, tmp_path):
    with pytest.raises(DataError, match=r"DAGM not found at .*nowhere: get it from .*-T root=DIR"):
        registry.make_task("cross-dagm", root=str(tmp_path / "nowhere")).samples(data)
    # relative to the data root: MMAD's copy of VisA is read through the MVTec-style layout
    mmad_visa = registry.make_task("cross-visa", root="MMAD/VisA").samples(data)
    assert len(mmad_visa) == 10 and all(rel(data, s.image).startswith("MMAD/VisA/candle/test/") for s in mmad_visa)
    with pytest.raises(DataError, match="-T datasets: MVTec not in cross-dataset"):
        registry.make_task("cross-dataset", datasets="MVTec").samples(data)


def test_missing_image_and_mask_in_a_run_are_recorded_not_skipped(tmp_path):
    root = tmp_path / "data"
    d = L.write_visa(root)
    (d / "candle/Data/Images/Anomaly/001.JPG").unlink()  # the CSV still lists it
    (d / "pcb1/Data/Masks/Anomaly/000.png").unlink()
    o = run(RunSpec(model="chance", task="cross-visa", data_root=root, out=tmp_path / "runs", progress=False))
    recs = {r["id"]: r for r in map(json.loads, (o.run_dir / "samples.jsonl").read_text().splitlines())}
    assert len(recs) == 5 and o.results["counts"]["n_failed"] == 1
    cfg = json.loads((o.run_dir / "config.json").read_text())
    assert cfg["split_hash"] and cfg["task_config"]["split"]["part"] == "test"
    failed = recs["VisA/candle/Data/Images/Anomaly/001.JPG"]
    assert failed["error"] and "not found" in failed["error"] and "001.JPG" in failed["error"]
    no_mask = recs["VisA/pcb1/Data/Images/Anomaly/000.JPG"]
    assert no_mask["error"] is None and no_mask["gt_boxes"] == []
    assert "mask file not found" in no_mask["meta"]["gt_boxes_error"]


def test_reader_problems_warn_during_a_task(tmp_path):
    d = L.write_mpdd(tmp_path)
    (d / "tubes/ground_truth/anomalous/000_mask.png").unlink()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        samples = registry.make_task("cross-mpdd").samples(tmp_path)
    assert len(samples) == 6
    msgs = [str(x.message) for x in w if issubclass(x.category, DataWarning)]
    assert len(msgs) == 1 and "MPDD: 1 problem(s) in the data (missing mask: 1)" in msgs[0]
    assert "tubes/test/anomalous/000.png" in msgs[0]
