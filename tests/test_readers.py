"""Every on-disk layout, read from a miniature copy with real folder and file naming."""

import json
from pathlib import Path

import pytest

from adbench.data.dagm import scan_dagm
from adbench.data.loco import scan_loco
from adbench.data.mmad import read_mmad
from adbench.data.mvtec import scan_mvtec
from adbench.data.paths import DataError
from adbench.data.visa import scan_visa
from adbench.schema import ANOMALOUS, NORMAL
from tests import layouts as L


def by_id(samples):
    return {s.id: s for s in samples}


def rel(root: Path, p: str | None) -> str | None:
    return None if p is None else Path(p).relative_to(root).as_posix()


def test_mvtec_ad_layout(tmp_path):
    d = L.write_mvtec(tmp_path)
    scan = scan_mvtec(d, "MVTec-AD")
    assert scan.problems == []
    s = by_id(scan.samples)
    assert len(s) == 11  # bottle 3 train + 2 good + 2 defective, screw 2 train + 1 good + 1 defective
    assert sorted(i for i in s if "/test/" in i) == [
        "MVTec-AD/bottle/test/broken_large/000.png", "MVTec-AD/bottle/test/broken_large/001.PNG",
        "MVTec-AD/bottle/test/good/000.png", "MVTec-AD/bottle/test/good/001.png",
        "MVTec-AD/screw/test/good/000.png", "MVTec-AD/screw/test/scratch_head/000.png"]
    bad = s["MVTec-AD/bottle/test/broken_large/001.PNG"]  # upper-case extension, image and mask
    assert (bad.label, bad.defect, bad.gold, bad.meta["split"]) == (ANOMALOUS, "broken_large", "A", "test")
    assert rel(d, bad.mask) == "bottle/ground_truth/broken_large/001_mask.PNG"
    good = s["MVTec-AD/screw/test/good/000.png"]
    assert (good.label, good.defect, good.gold, good.mask) == (NORMAL, "good", "B", None)
    assert [rel(d, p) for p in good.support] == ["screw/train/good/000.png", "screw/train/good/001.png"]
    assert len(good.references) == 1 and good.references[0] in good.support
    train = s["MVTec-AD/bottle/train/good/000.png"]
    assert train.meta["split"] == "train" and train.references and train.references[0] != train.image
    assert all(x.question == "Is there any defect in the object?" for x in s.values())


def test_mvtec_style_problems_are_reported_with_paths(tmp_path):
    d = L.write_mvtec(tmp_path)
    (d / "bottle/ground_truth/broken_large/000_mask.png").unlink()
    (d / "bottle/extras").mkdir()
    (d / "notes").mkdir()
    L.mask(d / "screw/ground_truth/scratch_head/007_mask.png", [(0, 0, 2, 2)])
    (d / "bottle/test/good/readme.txt").write_text("x")
    scan = scan_mvtec(d, "MVTec-AD")
    got = sorted((p.kind, rel(d, p.path)) for p in scan.problems)
    assert got == [("mask without image", "screw/ground_truth/scratch_head/007_mask.png"),
                   ("missing mask", "bottle/test/broken_large/000.png"),
                   ("unknown file", "bottle/test/good/readme.txt"),
                   ("unknown folder", "bottle/extras"),
                   ("unknown folder", "notes")]
    # the image without its mask is still a sample (a run reports it; it is not dropped)
    assert by_id(scan.samples)["MVTec-AD/bottle/test/broken_large/000.png"].mask is None


def test_mpdd_goodsad_dtd_layouts(tmp_path):
    mpdd = scan_mvtec(L.write_mpdd(tmp_path), "MPDD")
    assert mpdd.problems == [] and len(mpdd.samples) == 12
    assert sorted({(s.category, s.defect) for s in mpdd.samples if s.label == ANOMALOUS}) == [
        ("bracket_black", "hole"), ("bracket_black", "scratches"), ("tubes", "anomalous")]
    goods = scan_mvtec(L.write_goodsad(tmp_path), "GoodsAD")
    assert goods.problems == [] and len(goods.samples) == 6
    masks = {s.id: rel(tmp_path, s.mask) for s in goods.samples if s.label == ANOMALOUS}
    assert masks == {"GoodsAD/drink_can/test/dent/000.jpg": "GoodsAD/drink_can/ground_truth/dent/000.png",
                     "GoodsAD/drink_can/test/dent/001.JPG": "GoodsAD/drink_can/ground_truth/dent/001.png"}
    dtd = scan_mvtec(L.write_dtd(tmp_path), "DTD")
    assert dtd.problems == [] and len(dtd.samples) == 12
    assert {s.category for s in dtd.samples} == {"Woven_001", "Blotchy_099"}
    assert sum(s.label == ANOMALOUS for s in dtd.samples) == 4


def test_visa_from_split_csv(tmp_path):
    d = L.write_visa(tmp_path)
    scan = scan_visa(d)
    assert scan.problems == []
    s = by_id(scan.samples)
    assert len(s) == 10
    assert [(x.meta["split"], x.label) for x in s.values()].count(("train", NORMAL)) == 5
    assert s["VisA/candle/Data/Images/Anomaly/000.JPG"].defect == "chunk of wax missing"
    assert s["VisA/candle/Data/Images/Anomaly/001.JPG"].defect == "wax melded out of the candle"
    assert s["VisA/pcb1/Data/Images/Anomaly/000.JPG"].defect == "bad"  # no image_anno.csv
    assert rel(d, s["VisA/pcb1/Data/Images/Anomaly/000.JPG"].mask) == "pcb1/Data/Masks/Anomaly/000.png"
    normal_test = s["VisA/candle/Data/Images/Normal/0003.JPG"]
    assert normal_test.meta["split"] == "test" and normal_test.label == NORMAL
    assert [rel(d, p) for p in normal_test.support] == [f"candle/Data/Images/Normal/{i:04d}.JPG" for i in range(3)]


def test_visa_csv_escape_and_bad_rows_are_rejected(tmp_path):
    d = L.write_visa(tmp_path)
    csv = d / "split_csv/1cls.csv"
    text = csv.read_text()
    csv.write_text(text + "candle,test,anomaly,../outside.JPG,\n")
    with pytest.raises(DataError, match=r"1cls\.csv: entry 'line 12'.*'\.\./outside\.JPG' escapes"):
        scan_visa(d)
    csv.write_text(text + "candle,val,normal,candle/Data/Images/Normal/0000.JPG,\n")
    with pytest.raises(DataError, match="line 12: split 'val' is not train or test"):
        scan_visa(d)


def test_visa_mmad_copy_layout(tmp_path):
    d = L.write_visa_mmad_copy(tmp_path / "MMAD")
    scan = scan_visa(d)
    assert scan.problems == []
    assert sorted((s.id, s.label, s.defect) for s in scan.samples if s.meta["split"] == "test") == [
        ("VisA/candle/test/bad/000.JPG", ANOMALOUS, "bad"), ("VisA/candle/test/good/0100.JPG", NORMAL, "good")]
    bad = next(s for s in scan.samples if s.label == ANOMALOUS)
    assert rel(d, bad.mask) == "candle/ground_truth/bad/000.png"


def test_loco_several_masks_per_image(tmp_path):
    d = L.write_loco(tmp_path)
    scan = scan_loco(d)
    assert scan.problems == []
    s = by_id(scan.samples)
    assert len(s) == 6
    logical = s["MVTec-LOCO/breakfast_box/test/logical_anomalies/000.png"]
    assert logical.defect == "logical_anomalies" and logical.label == ANOMALOUS
    assert rel(d, logical.mask) == "breakfast_box/ground_truth/logical_anomalies/000"
    assert [rel(d, m) for m in logical.meta["masks"]] == [
        "breakfast_box/ground_truth/logical_anomalies/000/000.png",
        "breakfast_box/ground_truth/logical_anomalies/000/001.png"]
    # validation images are normal training material too
    assert [rel(d, p) for p in logical.support] == [
        "breakfast_box/train/good/000.png", "breakfast_box/train/good/001.png",
        "breakfast_box/validation/good/000.png"]


def test_dagm_layout(tmp_path):
    d = L.write_dagm(tmp_path)
    scan = scan_dagm(d)
    assert scan.problems == []  # Labels.txt is DAGM's own file, not a problem
    s = by_id(scan.samples)
    assert len(s) == 11
    test = {i: (x.label, x.defect) for i, x in s.items() if x.meta["split"] == "test"}
    assert test == {"DAGM/Class1/Test/0001.PNG": (NORMAL, "good"), "DAGM/Class1/Test/0002.PNG": (NORMAL, "good"),
                    "DAGM/Class1/Test/0003.PNG": (ANOMALOUS, "defect"), "DAGM/Class2/Test/0001.PNG": (ANOMALOUS, "defect"),
                    "DAGM/Class2/Test/0002.PNG": (NORMAL, "good")}
    assert rel(d, s["DAGM/Class1/Test/0003.PNG"].mask) == "Class1/Test/Label/0003_label.PNG"
    # support: normal training images only (the defective Train/0002 is excluded)
    assert [rel(d, p) for p in s["DAGM/Class1/Test/0001.PNG"].support] == [
        "Class1/Train/0001.PNG", "Class1/Train/0003.PNG", "Class1/Train/0004.PNG"]


def test_mmad_index_all_four_datasets(tmp_path):
    d = L.write_mmad(tmp_path)
    samples = read_mmad(d)
    # per dataset 5 good x 2 questions + 5 anomalous x 4 questions
    assert len(samples) == 4 * (5 * 2 + 5 * 4)
    s = by_id(samples)
    bad = s["DS-MVTec/bottle/image/broken_large/003.png#0"]
    assert (bad.label, bad.defect, bad.category) == (ANOMALOUS, "broken_large", "bottle")
    # MMAD's mask convention: relative to the key's first three components, climbing with '..'
    assert rel(d, bad.mask) == "DS-MVTec/bottle/rbg_mask/broken_large/003_rbg_mask.png"
    assert rel(d, s["VisA/candle/test/bad/001.JPG#0"].mask) == "VisA/candle/ground_truth/bad/001.png"
    assert rel(d, s["GoodsAD/drink_can/test/dent/002.jpg#0"].mask) == "GoodsAD/drink_can/ground_truth/dent/002.png"
    # LOCO: the mask folder stands for all of its files
    assert rel(d, s["MVTec-LOCO/juice_bottle/test/logical_anomalies/000.png#0"].mask) == \
        "MVTec-LOCO/juice_bottle/ground_truth/logical_anomalies/000"
    assert [rel(d, p) for p in bad.references] == ["MVTec-AD/bottle/train/good/000.png",
                                                   "MVTec-AD/bottle/train/good/001.png"]
    assert [rel(d, p) for p in bad.meta["similar_templates"]] == ["MVTec-AD/bottle/train/good/002.png"]
    assert {x.qtype for x in samples} == {"Anomaly Detection", "Object Classification", "Defect Classification",
                                          "Object Structure", "Object Details"}


@pytest.mark.parametrize("field,bad", [
    ("key", "../outside/x/y.png"), ("key", "/abs/x/y.png"), ("image_path", "../../etc/passwd"),
    ("mask_path", "../../../../etc/shadow"), ("similar_templates", ["/etc/hosts"]),
])
def test_mmad_paths_escaping_the_root_are_rejected_naming_them(tmp_path, field, bad):
    d = L.write_mmad(tmp_path, per_category=1)
    index = json.loads((d / "mmad.json").read_text())
    key = "DS-MVTec/bottle/image/broken_large/000.png"
    if field == "key":
        index[bad] = index.pop(key)
    else:
        index[key][field] = bad
    (d / "mmad.json").write_text(json.dumps(index))
    shown = bad if isinstance(bad, str) else bad[0]
    with pytest.raises(DataError, match=f"mmad.json: entry .*{shown.replace('.', '[.]')}"):
        read_mmad(d)
