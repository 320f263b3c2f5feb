"""Hostile and unusual image files: decompression bombs, 16-bit images, masks that do not fit (issue 14)."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adbench.cli import main
from adbench.images import ImageError, check_image, load_image, read_mask_pixels
from adbench.results.report import mask_outline, thumbnail
from adbench.runner import RunSpec, run
from tests import layouts as L


def bomb_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A few-byte PNG whose header declares `width` x `height` pixels (Pillow's bomb check reads it)."""
    Image.new("L", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr: ihdr + 17]))
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def png16(path: Path, value: int, size: int = 8) -> Path:
    Image.fromarray(np.full((size, size), value, np.uint16)).save(path)
    return path


def test_bomb_is_an_image_error_naming_the_file(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png")
    for read in (check_image, load_image, read_mask_pixels):
        with pytest.raises(ImageError, match=f"{bomb}.* too large to decode safely"):
            read(bomb)
    assert "too large to decode safely" in thumbnail(str(bomb), 64)["missing"]
    assert "too large to decode safely" in mask_outline(str(bomb), 64)["missing"]


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    mid = png16(tmp_path / "mid.png", 32768)
    assert Image.open(mid).mode.startswith("I")
    assert np.asarray(load_image(mid)).max() == 128  # Pillow's own convert("RGB") gives 255
    assert np.asarray(load_image(png16(tmp_path / "max.png", 65535))).min() == 255
    assert np.asarray(load_image(png16(tmp_path / "zero.png", 0))).max() == 0
    # a 16-bit mask keeps every non-zero value as a defect, even 1 (not rescaled to 0)
    assert read_mask_pixels(png16(tmp_path / "mask.png", 1)).all()
    src = thumbnail(str(mid), 8)["src"]
    assert src.startswith("data:image/jpeg")


def test_bombs_become_recorded_failures_and_check_findings(tmp_path, capsys):
    root = tmp_path / "data"
    d = L.write_mmad(root, per_category=2)
    query = "VisA/candle/test/bad/000.JPG"
    bomb_png(d / query)  # a PNG named .JPG: Pillow goes by content
    template = "MVTec-AD/bottle/train/good/000.png"  # the reference of DS-MVTec image 0
    bomb_png(d / template)
    mask = "GoodsAD/drink_bottle/ground_truth/surface_damage/058_017.png"
    bomb_png(d / mask)
    spec = RunSpec(model="chance", task="mmad-binary", data_root=root, out=tmp_path / "runs",
                   task_args={"split": "all"}, progress=False)
    out = run(spec)
    recs = {r["id"]: r for r in map(json.loads, (out.run_dir / "samples.jsonl").read_text().splitlines())}
    assert len(recs) == 16
    assert "too large to decode safely" in recs[query + "#0"]["error"] and query in recs[query + "#0"]["error"]
    for key in ("DS-MVTec/bottle/image/good/000.png", "DS-MVTec/bottle/image/broken_large/000.png"):
        assert template in recs[key + "#0"]["error"]  # the reference cannot be shown
    goods = recs["GoodsAD/drink_bottle/test/surface_damage/058_017.jpg#0"]
    assert goods["error"] is None and goods["gt_boxes"] == []
    assert goods["meta"]["gt_boxes_error"].startswith("unreadable mask") and mask in goods["meta"]["gt_boxes_error"]
    assert out.results["counts"]["n_failed"] == 3
    again = run(spec)  # a resume neither crashes nor asks again what failed permanently
    assert again.n_new == 0
    assert main(["data", "check", "--data-root", str(root), "--datasets", "MMAD"]) == 0
    report = capsys.readouterr().out
    assert "unreadable image: 2\n" in report
    for path in (d / query, d / template):
        assert f"      {path}  (too large to decode safely (Image size (900000000 pixels) exceeds" in report
    assert f"unreadable mask: 1\n      {d / mask}  (too large to decode safely (" in report
    assert main(["report", str(out.run_dir)]) == 0
    assert "too large to decode safely" in (out.run_dir / "report.html").read_text()


def test_masks_of_the_wrong_size_or_empty_give_no_boxes_and_a_note(tmp_path, capsys):
    root = tmp_path / "data"
    d = L.write_mmad(root, per_category=2)
    small = d / "VisA/candle/ground_truth/bad/000.png"
    Image.new("L", (32, 32), 1).save(small)  # the image is 64x64
    empty = d / "DS-MVTec/bottle/rbg_mask/broken_large/001_rbg_mask.png"
    Image.new("RGB", (64, 64)).save(empty)
    out = run(RunSpec(model="chance", task="mmad-binary", data_root=root, out=tmp_path / "runs",
                      task_args={"split": "all"}, progress=False))
    recs = {r["id"]: r for r in map(json.loads, (out.run_dir / "samples.jsonl").read_text().splitlines())}
    wrong = recs["VisA/candle/test/bad/000.JPG#0"]
    assert wrong["gt_boxes"] == [] and wrong["meta"]["gt_boxes_error"] == \
        f"mask size mismatch {small}: mask is 32x32, its image 64x64"
    blank = recs["DS-MVTec/bottle/image/broken_large/001.png#0"]
    assert blank["gt_boxes"] == [] and blank["meta"]["gt_boxes_error"] == \
        f"empty mask {empty}: no defect region of at least 16 px"
    assert main(["data", "check", "--data-root", str(root), "--datasets", "MMAD"]) == 0
    report = capsys.readouterr().out
    assert (f"mask size mismatch: 1\n      {small}  (mask is 32x32, its image 64x64; "
            "entry VisA/candle/test/bad/000.JPG)") in report
    assert f"empty mask: 1\n      {empty}  (no defect region of at least 16 px; entry " in report
    # --fast opens no masks
    assert main(["data", "check", "--data-root", str(root), "--datasets", "MMAD", "--fast"]) == 0
    assert "empty mask" not in capsys.readouterr().out
