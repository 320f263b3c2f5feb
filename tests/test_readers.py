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
    # the image is read at <MMAD>/<key>; image_path ("image/broken_large/003.png") is not a root path
    assert rel(d, bad.image) == "DS-MVTec/bottle/image/broken_large/003.png"
    # mask_path is relative to <MMAD>/<dataset>/<category>/
    assert rel(d, bad.mask) == "DS-MVTec/bottle/rbg_mask/broken_large/003_rbg_mask.png"
    assert rel(d, s["VisA/candle/test/bad/001.JPG#0"].mask) == "VisA/candle/ground_truth/bad/001.png"
    # GoodsAD: the index names a .jpg mask, the file is the .png beside it
    assert rel(d, s["GoodsAD/drink_bottle/test/surface_damage/059_017.jpg#0"].mask) == \
        "GoodsAD/drink_bottle/ground_truth/surface_damage/059_017.png"
    # LOCO: ground_truth/logical_anomalies/000.png stands for the folder 000/ and all its files
    assert rel(d, s["MVTec-LOCO/breakfast_box/test/logical_anomalies/000.png#0"].mask) == \
        "MVTec-LOCO/breakfast_box/ground_truth/logical_anomalies/000"
    normal = s["GoodsAD/drink_bottle/test/good/057_017.jpg#0"]
    assert (normal.label, normal.defect, normal.mask) == (NORMAL, "good", None)
    # templates are relative to the MMAD folder
    assert [rel(d, p) for p in bad.references] == ["MVTec-AD/bottle/train/good/000.png",
                                                   "MVTec-AD/bottle/train/good/001.png"]
    assert [rel(d, p) for p in bad.meta["similar_templates"]] == ["MVTec-AD/bottle/train/good/002.png"]
    assert rel(d, s["VisA/candle/test/good/000.JPG#0"].references[0]) == "VisA/candle/train/good/0000.JPG"
    assert {x.qtype for x in samples} == {"Anomaly Detection", "Object Classification", "Defect Classification",
                                          "Object Structure", "Object Details"}
    # every file the index names is where the reader says: images, templates and masks
    assert all(Path(x.image).is_file() for x in samples)
    assert all(Path(p).is_file() for x in samples for p in x.references + x.meta["similar_templates"])
    anomalous = [x for x in samples if x.label == ANOMALOUS]
    assert len(anomalous) == 4 * 5 * 4 and all(Path(x.mask).exists() for x in anomalous)


def test_mmad_label_is_good_in_the_key_and_image_path_is_never_opened(tmp_path):
    d = L.write_mmad(tmp_path, per_category=1)
    index = json.loads((d / "mmad.json").read_text())
    key = "VisA/candle/test/bad/000.JPG"
    index[key]["image_path"] = "no/such/file.JPG"  # MMAD's scripts never open it; neither does adbench
    index[key]["annotation"] = True  # fields the reader does not know are ignored
    (d / "mmad.json").write_text(json.dumps(index))
    s = by_id(read_mmad(d))
    assert rel(d, s[key + "#0"].image) == key
    # MMAD's summary: 'good' anywhere in the key means normal, whatever the folder depth
    assert s["VisA/candle/test/good/000.JPG#0"].label == NORMAL and s[key + "#0"].label == ANOMALOUS


def test_mmad_mask_lookup_rules(tmp_path):
    d = L.write_mmad(tmp_path, per_category=2)
    index = json.loads((d / "mmad.json").read_text())
    goods = "GoodsAD/drink_bottle/test/surface_damage/{}.jpg"
    # a .jpg mask that exists is used as named; one with neither .jpg nor .png keeps its name
    L.mask(d / "GoodsAD/drink_bottle/ground_truth/surface_damage/057_017.jpg", [(1, 1, 5, 5)])
    (d / "GoodsAD/drink_bottle/ground_truth/surface_damage/058_017.png").unlink()
    # a '..' that stays inside the data root is folded away
    visa = "VisA/candle/test/bad/001.JPG"
    index[visa]["mask_path"] = "../candle/ground_truth/bad/001.png"
    (d / "mmad.json").write_text(json.dumps(index))
    s = by_id(read_mmad(d))
    assert rel(d, s[goods.format("057_017") + "#0"].mask) == \
        "GoodsAD/drink_bottle/ground_truth/surface_damage/057_017.jpg"
    assert rel(d, s[goods.format("058_017") + "#0"].mask) == \
        "GoodsAD/drink_bottle/ground_truth/surface_damage/058_017.jpg"
    assert rel(d, s[visa + "#0"].mask) == "VisA/candle/ground_truth/bad/001.png"


def test_mmad_loco_mask_folder_is_the_or_of_its_files(tmp_path):
    from adbench.data.pseudo_boxes import BoxCache, BoxParams, mask_files

    d = L.write_mmad(tmp_path, per_category=1)
    loco = by_id(read_mmad(d))["MVTec-LOCO/breakfast_box/test/logical_anomalies/000.png#0"]
    assert [p.name for p in mask_files(loco.mask)] == ["000.png", "001.png"]
    boxes = BoxCache(None, BoxParams(kernel=1, min_area=1)).boxes(loco.mask)
    assert [b.as_tuple() for b in boxes] == [(4, 4, 14, 12), (40, 40, 50, 50)]


@pytest.mark.parametrize("field,bad", [
    ("key", "../outside/x/y.png"), ("key", "/abs/x/y.png"), ("mask_path", "/etc/shadow"),
    ("mask_path", "../../../../etc/shadow"), ("similar_templates", ["/etc/hosts"]),
    ("random_templates", ["../../x.png"]),
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


@pytest.mark.parametrize("edit,message", [
    (lambda q: q.update(Question=3), "question 0: field.s. Question must be text"),
    (lambda q: q.update(type=["Anomaly Detection"]), "question 0: field.s. type must be text"),
    (lambda q: q.update(Answer=1), "question 0: field.s. Answer must be text"),
    (lambda q: q["Options"].update(A=1), "question 0: option.s. A must be text"),
])
def test_mmad_fields_of_the_wrong_type_are_errors_naming_the_entry(tmp_path, edit, message):
    d = L.write_mmad(tmp_path, per_category=1)
    index = json.loads((d / "mmad.json").read_text())
    key = "VisA/candle/test/bad/000.JPG"
    edit(index[key]["conversation"][0])
    (d / "mmad.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=f"mmad.json: entry '{key}' {message}"):
        read_mmad(d)


def test_mmad_duplicate_keys_are_errors_not_last_wins(tmp_path):
    d = L.write_mmad(tmp_path, per_category=1)
    text = (d / "mmad.json").read_text()
    key = '"VisA/candle/test/bad/000.JPG": {'
    dup = text.replace(key, key.replace("{", '{"mask_path": null, "mask_path": "x.png", ', 1), 1)
    (d / "mmad.json").write_text(dup)
    with pytest.raises(DataError, match="mmad.json: the key 'mask_path' appears twice in one object"):
        read_mmad(d)
    entry = text[text.index(key):].split("\n }", 1)[0]  # the whole first VisA entry, repeated
    (d / "mmad.json").write_text(text.replace(key, entry + "\n }, " + key, 1))
    with pytest.raises(DataError, match="the key 'VisA/candle/test/bad/000.JPG' appears twice"):
        read_mmad(d)


def test_symlinked_dataset_folders_are_followed_but_index_paths_cannot_escape(tmp_path):
    """The rule docs/DATA.md states: links placed in the data root are followed; '..' in an index is refused."""
    elsewhere = tmp_path / "elsewhere"
    d = L.write_mmad(tmp_path / "root", per_category=1)
    (d / "VisA").rename(elsewhere)
    (d / "VisA").symlink_to(elsewhere, target_is_directory=True)
    s = by_id(read_mmad(d))
    visa = s["VisA/candle/test/bad/000.JPG#0"]
    assert Path(visa.image).is_file() and Path(visa.mask).is_file()
    assert Path(visa.image).resolve().is_relative_to(elsewhere)
    index = json.loads((d / "mmad.json").read_text())
    index["VisA/candle/test/bad/000.JPG"]["random_templates"] = ["../elsewhere/candle/train/good/0000.JPG"]
    (d / "mmad.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="escapes the data root"):
        read_mmad(d)
