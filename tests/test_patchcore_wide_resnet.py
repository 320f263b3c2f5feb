"""PatchCore's WideResNet-50 backbone option, from a weights file (random weights here:
torchvision's ImageNet file cannot be downloaded on this machine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from PIL import Image  # noqa: E402
from torchvision.models import resnet18, wide_resnet50_2  # noqa: E402

from adbench.images import file_digest  # noqa: E402
from adbench.models.baselines.backbones import available, build_backbone, load_state_dict  # noqa: E402
from adbench.models.baselines.patchcore import PatchCoreModel  # noqa: E402
from adbench.schema import Query  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = wide_resnet50_2(weights=None)
    path = tmp_path_factory.mktemp("wrn") / "wide_resnet50_2-random.pth"
    torch.save(net.state_dict(), path)
    return path


def test_wide_resnet50_taps_layer2_and_layer3_of_the_given_weights(weights):
    assert "wide_resnet50" in available()
    backbone = build_backbone("wide_resnet50", weights=weights, image_size=64)
    stored = load_state_dict(weights)
    loaded = backbone.net.state_dict()
    assert set(stored) == set(loaded) and all(torch.equal(stored[k], loaded[k]) for k in stored)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        f2, f3 = backbone(x)
        net = backbone.net
        ref = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))
        assert torch.equal(f2, net.layer2(ref)) and torch.equal(f3, net.layer3(net.layer2(ref)))
    assert f2.shape == (2, 512, 8, 8) and f3.shape == (2, 1024, 4, 4)  # strides 8 and 16
    cfg = backbone.config()
    assert cfg["layers"] == ["layer2", "layer3"] and cfg["channels"] == [512, 1024]
    assert cfg["weights_sha256"] == file_digest(weights)


def test_patchcore_with_wide_resnet50_scores_a_defect_higher(weights, tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(90, 110, (64, 64, 3)).astype(np.uint8)
    paths = []
    for i in range(4):
        noisy = np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
        if i == 3:
            noisy[20:36, 20:36] = 250  # a bright square: the defect
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(noisy).save(paths[-1])
    model = PatchCoreModel(backbone="wide_resnet50", weights=str(weights), image_size=64)
    q = [Query(id=Path(p).stem, images=[p], question="", options={}, prompt="", support=paths[:2], group="g/c")
         for p in paths[2:]]
    normal, defect = model.predict(q)
    assert normal.error is None and defect.error is None
    assert defect.score > normal.score > 0
    assert model.config()["feature_dim"] == 1536


def test_wide_resnet50_needs_a_matching_weights_file(tmp_path):
    with pytest.raises(ValueError, match="weights=PATH"):
        PatchCoreModel(backbone="wide_resnet50")
    other = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), other)
    with pytest.raises(ValueError, match="resnet18.pth"):
        build_backbone("wide_resnet50", weights=other)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build_backbone("wide_resnet50", weights=tmp_path / "absent.pth")
