"""Pseudo boxes: dilation merges fragments, components give boxes, the cache is keyed by content."""

import json
from pathlib import Path

import numpy as np
import pytest

from adbench.data.loco import scan_loco
from adbench.data.mvtec import scan_mvtec
from adbench.data.pseudo_boxes import BoxCache, BoxError, BoxParams, attach_boxes, boxes_from_mask, precompute
from adbench.schema import ANOMALOUS
from tests import layouts as L


def rects(boxes):
    return [tuple(int(v) for v in b.as_tuple()) for b in boxes]


def canvas(*rs, size=64):
    m = np.zeros((size, size), bool)
    for x1, y1, x2, y2 in rs:
        m[y1:y2, x1:x2] = True
    return m


def test_separate_components_give_one_box_each_in_pixel_edges():
    assert rects(boxes_from_mask(canvas(*L.TWO_BLOBS))) == L.TWO_BLOBS
    assert rects(boxes_from_mask(canvas((5, 7, 6, 8)), BoxParams(kernel=1, min_area=1))) == [(5, 7, 6, 8)]
    assert boxes_from_mask(canvas()) == []


def test_dilation_merges_fragments_and_min_area_drops_specks():
    m = canvas(*L.FRAGMENTS)  # two fragments 3 px apart + a 2x2 speck
    assert rects(boxes_from_mask(m, BoxParams(kernel=1, min_area=1))) == [(50, 4, 52, 6), (10, 20, 20, 30),
                                                                         (23, 20, 30, 30)]
    # a 5 px kernel bridges the 3 px gap; the box hugs the original pixels, not the dilated ones
    assert rects(boxes_from_mask(m, BoxParams(kernel=5, min_area=1))) == [(50, 4, 52, 6), (10, 20, 30, 30)]
    assert rects(boxes_from_mask(m, BoxParams(kernel=3, min_area=1))) == [(50, 4, 52, 6), (10, 20, 20, 30),
                                                                         (23, 20, 30, 30)]
    assert rects(boxes_from_mask(m, BoxParams(kernel=15, min_area=16))) == [(10, 20, 30, 30)]
    # an L shape is one component, boxed whole
    assert rects(boxes_from_mask(canvas((0, 0, 10, 2), (0, 0, 2, 10)), BoxParams(kernel=1))) == [(0, 0, 10, 10)]
    with pytest.raises(ValueError, match="kernel must be >= 1"):
        BoxParams(kernel=0)


def test_boxes_of_real_mask_files_and_loco_masks_are_ored(tmp_path):
    scan = scan_mvtec(L.write_mvtec(tmp_path), "MVTec-AD")
    cache = BoxCache(tmp_path / "cache")
    assert attach_boxes(scan.samples, cache) == []
    got = {s.id: rects(s.boxes) for s in scan.samples if s.label == ANOMALOUS}
    assert got == {"MVTec-AD/bottle/test/broken_large/000.png": L.TWO_BLOBS,
                   "MVTec-AD/bottle/test/broken_large/001.PNG": [(10, 20, 30, 30)],
                   "MVTec-AD/screw/test/scratch_head/000.png": [(8, 8, 20, 16)]}
    assert all(b.label == s.defect for s in scan.samples for b in s.boxes)
    assert all(s.boxes == [] for s in scan.samples if s.label != ANOMALOUS)
    loco = scan_loco(L.write_loco(tmp_path))
    attach_boxes(loco.samples, cache)
    got = {s.defect: rects(s.boxes) for s in loco.samples if s.label == ANOMALOUS}
    assert got == {"logical_anomalies": L.TWO_BLOBS, "structural_anomalies": [(30, 2, 40, 12)]}


def test_class_id_and_rgb_masks_count_any_nonzero_pixel(tmp_path):
    m1 = L.mask(tmp_path / "ids.png", [(2, 2, 12, 12)], value=3)
    m2 = L.mask(tmp_path / "rgb.png", [(20, 20, 30, 30)], mode="RGB")
    m3 = L.mask(tmp_path / "rgba.png", [(40, 40, 50, 44)], mode="RGBA")  # opaque alpha everywhere
    cache = BoxCache(None)
    assert [rects(cache.boxes(m)) for m in (m1, m2, m3)] == [[(2, 2, 12, 12)], [(20, 20, 30, 30)],
                                                            [(40, 40, 50, 44)]]


def test_cache_second_pass_reads_disk_and_content_change_recomputes(tmp_path):
    d = L.write_dtd(tmp_path)
    masks = sorted(str(p) for p in d.rglob("*_mask.png"))
    first = BoxCache(tmp_path / "c")
    boxes1 = [rects(first.boxes(m)) for m in masks]
    # four files, two distinct contents (TWO_BLOBS, FRAGMENTS): the repeats are cache hits
    assert (first.computed, first.cached) == (2, 2)
    files = sorted((tmp_path / "c").rglob("*.json"))
    assert len(files) == 2
    assert json.loads(files[0].read_text())["params"] == {"kernel": 15, "min_area": 16}
    second = BoxCache(tmp_path / "c")
    assert [rects(second.boxes(m)) for m in masks] == boxes1
    assert (second.computed, second.cached) == (0, 4)
    # other parameters are another cache entry
    other = BoxCache(tmp_path / "c", BoxParams(kernel=1, min_area=1))
    assert rects(other.boxes(masks[1])) == [(50, 4, 52, 6), (10, 20, 20, 30), (23, 20, 30, 30)]
    assert other.computed == 1
    # same path, new content: recomputed, never a stale answer
    L.mask(Path(masks[0]), [(1, 1, 3, 60)])
    third = BoxCache(tmp_path / "c", BoxParams(kernel=15, min_area=1))
    assert rects(third.boxes(masks[0])) == [(1, 1, 3, 60)] and third.computed == 1


def test_precompute_and_unreadable_masks_are_reported(tmp_path):
    d = L.write_mpdd(tmp_path)
    masks = sorted(str(p) for p in d.rglob("*_mask.png"))
    bad = tmp_path / "broken_mask.png"
    bad.write_bytes(b"not a png")
    r = precompute([*masks, str(bad), str(tmp_path / "gone.png")], tmp_path / "c", workers=1)
    assert (r.n_masks, r.n_boxes, r.computed, r.cached) == (5, 4, 3, 0)
    assert sorted(m for m, _ in r.errors) == [str(bad), str(tmp_path / "gone.png")]
    assert any("cannot read mask" in e for _, e in r.errors)
    r2 = precompute(masks, tmp_path / "c", workers=2)
    assert (r2.computed, r2.cached, r2.n_boxes) == (0, 3, 4)
    with pytest.raises(BoxError, match="mask file not found"):
        BoxCache(None).boxes(tmp_path / "gone.png")
