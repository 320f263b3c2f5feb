"""A pickle saved under a `.safetensors` name is refused by every loader, by name, without being unpickled.

The payload is a real pickle whose unpickling creates a folder (`os.makedirs`): if any
loader ever unpickled it, the marker folder would exist. Both pickle flavours are used:
a plain `pickle.dumps` file and a `torch.save` zip archive.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from adbench.errors import UserError  # noqa: E402
from adbench.models.weights import UnsafeCheckpointError, check_safetensors_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("pickle", "torch.save")


class Payload:
    """Unpickling this creates `marker` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def write_pickle(path: Path, marker: Path, fmt: str) -> Path:
    if fmt == "pickle":
        path.write_bytes(pickle.dumps({"weight": Payload(marker)}, protocol=2))
    else:
        torch.save({"weight": Payload(marker)}, path)
    return path


@pytest.fixture(params=FORMATS)
def fmt(request) -> str:
    return request.param


@pytest.fixture
def marker(tmp_path) -> Path:
    m = tmp_path / "UNPICKLED"
    yield m
    assert not m.exists(), "a loader unpickled the file"


def _refused(excinfo, path: Path) -> None:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, UserError)
    assert f"{path}: not a safetensors file" in msg and "\n" not in msg


def test_the_check_reads_the_header_only(tmp_path, marker, fmt):
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    save_file({"w": torch.zeros(2)}, str(good))
    assert check_safetensors_file(good) == good
    bad = write_pickle(tmp_path / "model.safetensors", marker, fmt)
    with pytest.raises(UnsafeCheckpointError) as e:
        check_safetensors_file(bad)
    _refused(e, bad)
    assert ("zip archive" if fmt == "torch.save" else "Python pickle") in str(e.value)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:-3])  # what a kill while writing leaves
    with pytest.raises(UnsafeCheckpointError, match="cut.safetensors: not a safetensors file"):
        check_safetensors_file(truncated)


def _base_copy(tmp_path: Path) -> Path:
    from tests.vlm_fixtures import tiny_assets

    folder = tmp_path / "base"
    shutil.copytree(tiny_assets().base, folder)
    return folder


def test_base_model_folder(tmp_path, marker, fmt):
    from adbench.models.engines.qwen import QwenVLModel
    from adbench.models.presets.open_vlms import GenericVLM
    from tests.vlm_fixtures import TINY_ARGS

    base = _base_copy(tmp_path)
    bad = write_pickle(base / "model.safetensors", marker, fmt)
    with pytest.raises(UnsafeCheckpointError) as e:
        QwenVLModel(base=str(base), **TINY_ARGS)
    _refused(e, bad)
    with pytest.raises(UnsafeCheckpointError) as e:
        GenericVLM(base=str(base))
    _refused(e, bad)


def test_lora_adapter_folder(tmp_path, marker, fmt):
    from adbench.models.engines.qwen import QwenVLModel
    from tests.vlm_fixtures import TINY_ARGS, tiny_assets

    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_assets().adapter, adapter)
    bad = write_pickle(adapter / "adapter_model.safetensors", marker, fmt)
    with pytest.raises(UnsafeCheckpointError) as e:
        QwenVLModel(base=str(tiny_assets().base), adapter=str(adapter), **TINY_ARGS)
    _refused(e, bad)


def test_training_base(tmp_path, marker, fmt):
    from adbench.training.trainer import train
    from tests.vlm_fixtures import tiny_assets

    base = _base_copy(tmp_path)
    bad = write_pickle(base / "model.safetensors", marker, fmt)
    with pytest.raises(UnsafeCheckpointError) as e:
        train("tiny", tmp_path / "out", [f"base={base}"], data_root=tiny_assets().data_root, progress=False)
    _refused(e, bad)


def test_patchcore_weights(tmp_path, marker, fmt):
    pytest.importorskip("efficientnet_lite_pytorch")
    from adbench.models.baselines.patchcore import PatchCoreModel

    bad = write_pickle(tmp_path / "backbone.safetensors", marker, fmt)
    with pytest.raises(UnsafeCheckpointError) as e:
        PatchCoreModel(weights=str(bad))
    _refused(e, bad)


@pytest.fixture(scope="module")
def tiny_clip_config(tmp_path_factory) -> str:
    pytest.importorskip("open_clip")
    import json

    from tests.test_clip_baselines import TINY

    path = tmp_path_factory.mktemp("clipcfg") / "adbench-tiny-clip-pk.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def test_clip_weights_and_anomalyclip_prompt_checkpoint(tmp_path, marker, fmt, tiny_clip_config):
    from adbench.models.baselines.anomalyclip import AnomalyCLIPModel
    from adbench.models.baselines.winclip import WinCLIPModel

    bad = write_pickle(tmp_path / "open_clip_model.safetensors", marker, fmt)
    with pytest.raises(UnsafeCheckpointError) as e:
        WinCLIPModel(model=tiny_clip_config, weights=str(bad))
    _refused(e, bad)
    with pytest.raises(UserError) as e:
        AnomalyCLIPModel(str(bad), model=tiny_clip_config, pretrained="random", image_size=64)
    _refused(e, bad)


def test_cli_says_it_in_one_line(tmp_path, marker):
    pytest.importorskip("efficientnet_lite_pytorch")
    from adbench.data.demo import ensure_demo

    ensure_demo(tmp_path / "data")
    bad = write_pickle(tmp_path / "backbone.safetensors", marker, "torch.save")
    proc = subprocess.run([sys.executable, "-m", "adbench", "run", "--model", "patchcore", "-M", f"weights={bad}",
                           "--task", "demo-binary", "--limit", "1", "--data-root", str(tmp_path / "data"),
                           "--out", str(tmp_path / "runs"), "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("adbench: error:")]
    assert len(errors) == 1 and f"{bad}: not a safetensors file" in errors[0]
