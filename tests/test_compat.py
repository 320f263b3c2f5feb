"""Version checks (adbench.compat), and the declared ranges = the tested ones (pyproject.toml, .ci/floors.txt)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name as _norm  # pip's comparison of package names

from adbench import compat
from adbench.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
#: Extras CI does not install: vLLM needs a GPU machine and pins torch itself (README, Tested dependency ranges).
UNTESTED_EXTRAS = {"vllm"}


def test_parse_version_reads_the_release_numbers():
    assert compat.parse_version("5.3.0") == (5, 3, 0)
    assert compat.parse_version("2.5.1+cu124") == (2, 5, 1)
    assert compat.parse_version("5.3.0rc1") == (5, 3, 0)
    assert compat.parse_version("1.17.0.dev0") == (1, 17, 0)  # a dev release counts as its release
    with pytest.raises(ValueError):
        compat.parse_version("unknown")


def test_a_range_admits_its_floor_and_stops_before_its_cap():
    trl = compat.Supported("trl", "1.0", below="1.17")
    assert trl.admits("1.0.0") and trl.admits("1.16.9") and trl.admits("1.0")
    assert not trl.admits("0.29.1") and not trl.admits("1.17.0") and not trl.admits("1.17")
    assert trl.spec() == "trl>=1.0,<1.17"
    assert compat.Supported("transformers", "5.4").admits("5.24.0")


def test_the_checks_pass_on_the_installed_versions():
    # the suite runs at both ends of every range (README: .ci/run), so these hold at both
    compat.fast_engine()
    compat.tokenizer_conversion()
    compat.training()
    compat.deepspeed_zero2()


@pytest.mark.parametrize(("check", "kwargs", "expected"), [
    (compat.fast_engine, {"transformers": "5.5.4"},
     "the fast Qwen2.5-VL engine (-M engine=fast) needs transformers>=5.6, but transformers 5.5.4 is installed"),
    (compat.fast_engine, {"torch": "2.5.1+cu121"}, "needs torch>=2.8, but torch 2.5.1+cu121 is installed"),
    (compat.tokenizer_conversion, {"transformers": "4.56.2"},
     "the tiny Qwen2.5-VL's tokenizer conversion needs transformers>=5.6, but transformers 4.56.2 is installed"),
    (compat.tokenizer_conversion, {"tiktoken": "0.11.0"}, "needs tiktoken>=0.12, but tiktoken 0.11.0 is installed"),
    (compat.training, {"trl": "1.17.0"}, "adbench train needs trl>=1.0,<1.17, but trl 1.17.0 is installed"),
    (compat.training, {"trl": "0.29.1"}, "adbench train needs trl>=1.0,<1.17, but trl 0.29.1 is installed"),
    (compat.training, {"peft": "0.17.1"}, "adbench train needs peft>=0.18, but peft 0.17.1 is installed"),
    (compat.training, {"torch": "2.5.1"}, "adbench train needs torch>=2.8, but torch 2.5.1 is installed"),
    (compat.deepspeed_zero2, {"deepspeed": "0.20.0"},
     "adbench train with DeepSpeed ZeRO-2 needs deepspeed>=0.19.8,<0.20, but deepspeed 0.20.0 is installed"),
    (compat.deepspeed_zero2, {"deepspeed": "0.18.9"}, "needs deepspeed>=0.19.8,<0.20, but deepspeed 0.18.9 is installed"),
])
def test_a_version_outside_the_range_is_a_user_error_naming_package_version_and_range(check, kwargs, expected):
    with pytest.raises(compat.UnsupportedVersionError) as info:
        check(**kwargs)
    assert isinstance(info.value, UserError)  # the CLI prints it as one line, exit 2
    message = str(info.value)
    assert expected in message
    assert "pip install" in message and "\n" not in message


def test_versions_inside_the_range_pass():
    compat.fast_engine(transformers="5.6.0", torch="2.8.0")
    compat.fast_engine(transformers="5.24.0", torch="2.14.1+cu130")
    compat.training(trl="1.16.0", transformers="5.6.0", peft="0.18.0", torch="2.8.0")
    compat.tokenizer_conversion(transformers="5.17.0", tiktoken="0.12.0")
    compat.deepspeed_zero2(deepspeed="0.19.8")


def test_a_missing_package_is_left_to_its_import():
    compat.require(compat.Supported("adbench-no-such-package", "1.0"), "a test")  # no error: not installed


# ---------------------------------------------------------------- declared ranges = tested ranges


def _declared(untested_too: bool = False) -> dict[str, str]:
    """pyproject.toml's requirements (core and every tested extra), name -> specifier, by normalised name."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if untested_too or extra not in UNTESTED_EXTRAS:
            lines += [r for r in reqs if not r.startswith("adbench[")]
    out = {}
    for line in lines:
        req = Requirement(line)
        out[_norm(req.name)] = str(req.specifier)
    return out


def _floors() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f".ci/floors.txt: {line!r} is not a name==version pin"
            out[_norm(name)] = version.strip()
    return out


def test_every_declared_range_starts_at_the_floor_ci_installs():
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    declared, floors = _declared(), _floors()
    assert set(declared) == set(floors), "pyproject.toml and .ci/floors.txt name different packages"
    for name, spec in declared.items():
        lower = [s.version for s in SpecifierSet(spec) if s.operator == ">="]
        assert len(lower) == 1, f"{name}: declare exactly one floor (>=), got {spec!r}"
        assert Version(lower[0]) == Version(floors[name]), \
            f"{name}: pyproject.toml declares {spec}, .ci/floors.txt tests {floors[name]}"
        assert Version(floors[name]) in SpecifierSet(spec)


def test_the_checks_name_the_declared_ranges():
    from packaging.specifiers import SpecifierSet

    declared = _declared(untested_too=True)
    ranges = [value for value in vars(compat).values() if isinstance(value, compat.Supported)]
    assert ranges
    for supported in ranges:
        spec = supported.spec()[len(supported.package):]
        assert SpecifierSet(declared[_norm(supported.package)]) == SpecifierSet(spec), supported


def test_the_readme_lists_the_tested_floors():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Tested dependency ranges", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^ |]+) \|", section, flags=re.MULTILINE)
    listed = {_norm(name): version for name, version in rows}
    assert listed == _floors()


def test_ci_runs_the_readmes_test_command_then_the_floors():
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [line.strip() for line in run if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-2:] == ["python3 -m pytest -q", ".ci/floors"]


def test_the_floor_step_stops_before_installing_when_the_disk_is_too_small(tmp_path):
    """CI once ran out of disk halfway through pip (torch 2.8's CUDA wheels): the step now asks first."""
    venv = tmp_path / "venvs" / "floors"
    need_gb = int(shutil.disk_usage(tmp_path).free / 2**30 * 10) + 1  # more than this disk has
    env = {**os.environ, "FLOORS_VENV": str(venv), "FLOORS_NEED_GB": str(need_gb), "TMPDIR": str(tmp_path)}
    done = subprocess.run([str(ROOT / ".ci" / "floors")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f".ci/floors: {venv.parent} has ")
    assert f"needs about {need_gb} GB" in message
    assert not venv.exists()  # nothing installed, nothing half-made


def test_train_under_a_deepspeed_launch_checks_deepspeeds_range_before_writing_anything(tmp_path, monkeypatch):
    """`accelerate launch` with the ZeRO-2 config sets ACCELERATE_USE_DEEPSPEED=true (accelerate/utils/launch.py)."""
    pytest.importorskip("trl")
    from adbench.training.trainer import train

    real = compat.installed_version
    monkeypatch.setattr(compat, "installed_version", lambda p: "0.20.1" if p == "deepspeed" else real(p))
    compat._check_installed.cache_clear()  # the installed versions are checked once per process
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    out = tmp_path / "adapter-run"
    try:
        with pytest.raises(compat.UnsupportedVersionError, match=r"DeepSpeed ZeRO-2 needs deepspeed>=0.19.8,<0.20, "
                                                                 r"but deepspeed 0.20.1 is installed"):
            train("tiny", out, progress=False)
    finally:
        compat._check_installed.cache_clear()
    assert not out.exists()


# TRL's own `Requires-Dist` lines for its vllm extra (METADATA of the trl-1.0.0 and trl-1.16.0 wheels)
TRL_1_0 = ['vllm<=0.17.1,>=0.10.2; extra == "vllm"', 'fastapi; extra == "vllm"', 'accelerate>=1.4.0']
TRL_1_16 = ['accelerate>=1.4.0', 'vllm<=0.31.0,>=0.22.0; extra == "vllm"', 'aiohttp>=3.13.3; extra == "vllm"']


def test_trl_vllm_range_is_read_from_trls_vllm_extra():
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(compat.trl_vllm_range(TRL_1_16)) == SpecifierSet(">=0.22.0,<=0.31.0")
    assert SpecifierSet(compat.trl_vllm_range(TRL_1_0)) == SpecifierSet(">=0.10.2,<=0.17.1")
    assert compat.trl_vllm_range(['vllm>=0.1; extra == "other"', "vllm>=0.2"]) is None  # not the vllm extra
    installed = compat.trl_vllm_range()  # the installed TRL's, as the training check reads it
    by_release = {"1.0.0": ">=0.10.2,<=0.17.1", "1.16.0": ">=0.22.0,<=0.31.0"}  # both ends of adbench's trl range
    trl_version = compat.installed_version("trl")
    if trl_version in by_release:
        assert SpecifierSet(installed) == SpecifierSet(by_release[trl_version])


def test_vllm_rollouts_need_both_adbenchs_range_and_the_one_trl_drives():
    compat.training_with_vllm(vllm="0.25.0", trl="1.16.0", trl_requirements=TRL_1_16)
    compat.training_with_vllm(vllm="0.31.0", trl="1.16.0", trl_requirements=TRL_1_16)
    with pytest.raises(compat.UnsupportedVersionError, match=r"^adbench train with vLLM rollouts needs vllm>=0.22,<0.32, "
                                                             r"but vllm 0.33.0 is installed"):
        compat.training_with_vllm(vllm="0.33.0", trl="1.16.0", trl_requirements=TRL_1_16)
    with pytest.raises(compat.UnsupportedVersionError) as info:  # inside adbench's range, outside TRL 1.0's
        compat.training_with_vllm(vllm="0.25.0", trl="1.0.0", trl_requirements=TRL_1_0)
    message = str(info.value)
    assert "trl 1.0.0 drives vllm" in message and "but vllm 0.25.0 is installed" in message
    assert "pip install -U 'trl>=1.0,<1.17'" in message and "vllm.enabled=false" in message



def test_the_installed_transformers_positions_an_image_after_text_at_its_start():
    """Qwen2.5-VL's M-RoPE index (transformers' get_rope_index), which the floor of 5.6 is for.

    Worked by hand from transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py (5.6+: Qwen2_5_VLModel.get_rope_index
    and get_vision_position_ids; 5.4's get_vision_position_ids has `position_temporal * time_interval` applied
    to the start position, the bug): text tokens count up by one; an image of
    h x w merged patches starting at position s has temporal s, heights s .. s+h-1, widths s .. s+w-1,
    and the text after it continues at s + max(h, w). transformers 5.4 and 5.5 gave the second image
    below a temporal position of 9 x 2 = 18 (start x the config's time interval).
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from tests.vlm_fixtures import tiny_assets

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_assets().base, use_safetensors=True)
    image = model.config.image_token_id
    # 3 text, image (grid 1x8x8 = 4x4 merged patches: 16 tokens), 2 text, the same image again, 1 text
    types = [0] * 3 + [1] * 16 + [0] * 2 + [1] * 16 + [0]
    ids = torch.tensor([[image if t else 100 + k for k, t in enumerate(types)]])
    grid = torch.tensor([[1, 8, 8], [1, 8, 8]])
    positions, deltas = model.model.get_rope_index(ids, torch.tensor([types]), image_grid_thw=grid,
                                                   attention_mask=torch.ones_like(ids))
    temporal, height, width = positions[:, 0].tolist()
    assert temporal == [0, 1, 2] + [3] * 16 + [7, 8] + [9] * 16 + [13]
    assert height == [0, 1, 2] + [3 + i // 4 for i in range(16)] + [7, 8] + [9 + i // 4 for i in range(16)] + [13]
    assert width == [0, 1, 2] + [3 + i % 4 for i in range(16)] + [7, 8] + [9 + i % 4 for i in range(16)] + [13]
    assert deltas.view(-1).tolist() == [14 - len(types)]  # the next position, 14, minus the tokens
