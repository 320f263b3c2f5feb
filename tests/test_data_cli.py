"""`adbench data check` and `adbench data boxes` on miniature copies of the real layouts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adbench.cli import main
from tests import layouts as L

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "data"
    for write in (L.write_mmad, L.write_mvtec, L.write_visa, L.write_loco, L.write_goodsad, L.write_mpdd,
                  L.write_dtd, L.write_dagm):
        write(root)
    return root


def check(capsys, *args):
    rc = main(["data", "check", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_check_lists_every_dataset_with_counts(data, capsys):
    rc, out, _ = check(capsys, "--data-root", str(data))
    assert rc == 0
    lines = out.splitlines()
    status = {ln.split()[0]: ln.split()[1] for ln in lines if ln and not ln.startswith((" ", "data root"))}
    assert status == {n: "present" for n in ("MMAD", "MVTec-AD", "VisA", "MVTec-LOCO", "GoodsAD", "MPDD", "DTD",
                                             "DAGM")}
    assert f"{data / 'MMAD'}  (40 images, 120 questions)" in out
    assert f"{data / 'DAGM'}  (11 images)" in out
    rows = {tuple(ln.split()[:2]): ln.split()[2:] for ln in lines if ln.startswith("    ") and len(ln.split()) == 4}
    assert rows[("GoodsAD", "drink_bottle")] == ["5", "5"]  # MMAD's GoodsAD part
    assert rows[("MVTec-AD", "bottle")] == ["5", "2"]  # 3 train + 2 test good; 2 defective
    assert rows[("DAGM", "Class1")] == ["5", "2"]
    assert "missing" not in out and "unknown" not in out


def test_check_reports_problems_with_paths_and_exit_status(data, capsys):
    mmad = data / "MMAD"
    (mmad / "VisA/candle/test/good/003.JPG").unlink()
    (mmad / "GoodsAD/drink_bottle/train/good/001.jpg").write_bytes(b"\x89PNG broken")  # a template
    (mmad / "DS-MVTec/bottle/rbg_mask/broken_large/004_rbg_mask.png").unlink()
    for f in (mmad / "MVTec-LOCO/breakfast_box/ground_truth/logical_anomalies/002").iterdir():
        f.unlink()  # an empty LOCO mask folder
    (data / "MPDD/bracket_black/ground_truth/hole/000_mask.png").unlink()
    (data / "MPDD/stray").mkdir()
    rc, out, _ = check(capsys, "--data-root", str(data), "--datasets", "MMAD", "MPDD")
    assert rc == 0  # problems are listed; both datasets are still usable
    assert f"missing image: 1\n      {mmad / 'VisA/candle/test/good/003.JPG'}\n" in out
    assert f"unreadable image: 1\n      {mmad / 'GoodsAD/drink_bottle/train/good/001.jpg'}" in out
    # masks: named with the mmad.json entry they belong to
    assert (f"{mmad / 'DS-MVTec/bottle/rbg_mask/broken_large/004_rbg_mask.png'}  "
            "(mask of DS-MVTec/bottle/image/broken_large/004.png)") in out
    assert (f"{mmad / 'MVTec-LOCO/breakfast_box/ground_truth/logical_anomalies/002'}  (mask folder of "
            "MVTec-LOCO/breakfast_box/test/logical_anomalies/002.png holds no mask images)") in out
    assert f"missing mask: 1\n      {data / 'MPDD/bracket_black/test/hole/000.png'}" in out
    assert f"unknown folder: 1\n      {data / 'MPDD/stray'}" in out
    assert "MVTec-AD" not in out  # only what was asked for
    # --fast checks existence only: the corrupt template goes unnoticed, the missing image does not
    rc, out, _ = check(capsys, "--data-root", str(data), "--datasets", "MMAD", "--fast")
    assert rc == 0 and "unreadable image" not in out and "missing image: 1" in out


def test_unusable_or_absent_requested_dataset_exits_nonzero(data, tmp_path, capsys):
    (data / "MMAD/mmad.json").write_text("{broken")
    rc, out, err = check(capsys, "--data-root", str(data), "--datasets", "MMAD,DAGM")
    assert rc == 1 and "MMAD        unusable" in out and "malformed JSON at line 1" in out
    assert "unusable: MMAD" in err
    rc, out, err = check(capsys, "--data-root", str(tmp_path / "empty"), "--datasets", "MPDD")
    assert rc == 1 and "MPDD        absent" in out
    rc, _, err = check(capsys, "--data-root", str(data), "--datasets", "Nope")
    assert rc == 2 and "unknown dataset 'Nope'. Known datasets: MMAD, MVTec-AD" in err
    # every image of a dataset unreadable: unusable
    for p in (data / "DAGM").rglob("*.PNG"):
        if "Label" not in p.parts:
            p.write_bytes(b"junk")
    rc, out, _ = check(capsys, "--data-root", str(data), "--datasets", "DAGM")
    assert rc == 1 and "none of its images can be read" in out


def test_check_as_a_subprocess(data):
    ok = subprocess.run([sys.executable, "-m", "adbench", "data", "check", "--data-root", str(data), "--datasets",
                         "DTD-Synthetic"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "DTD         present" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "adbench", "data", "check", "--data-root", str(data / "none")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "no dataset found" in bad.stderr


def test_data_boxes_fills_the_cache_then_reads_it(data, capsys):
    args = ["data", "boxes", "--data-root", str(data), "--datasets", "MVTec-AD", "MVTec-LOCO", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "MVTec-AD: 3 masks, 4 boxes (3 computed, 0 from cache)" in out
    assert "MVTec-LOCO: 2 masks, 3 boxes (2 computed, 0 from cache)" in out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "MVTec-AD: 3 masks, 4 boxes (0 computed, 3 from cache)" in out
    cache = data / ".adbench-cache/boxes"
    assert out.strip().splitlines()[-1] == str(cache)
    entry = json.loads(next(cache.rglob("*.json")).read_text())
    assert entry["params"] == {"kernel": 15, "min_area": 16}
    assert main(["data", "boxes", "--data-root", str(data), "--datasets", "MPDD", "--kernel", "1",
                 "--min-area", "1", "--no-progress"]) == 0
    assert "MPDD: 3 masks, 4 boxes (3 computed, 0 from cache) in" in capsys.readouterr().out
