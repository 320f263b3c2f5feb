"""Version checks (adbench.compat), and the declared ranges = the tested ones (pyproject.toml, .ci/floors.txt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(("check", "kwargs", "expected"), [
    (compat.fast_engine, {"transformers": "5.3.0"},
     "the fast Qwen2.5-VL engine (-M engine=fast) needs transformers>=5.4, but transformers 5.3.0 is installed"),
    (compat.fast_engine, {"torch": "2.5.1+cu121"}, "needs torch>=2.8, but torch 2.5.1+cu121 is installed"),
    (compat.tokenizer_conversion, {"transformers": "4.56.2"},
     "the tiny Qwen2.5-VL's tokenizer conversion needs transformers>=5.4, but transformers 4.56.2 is installed"),
    (compat.tokenizer_conversion, {"tiktoken": "0.11.0"}, "needs tiktoken>=0.12, but tiktoken 0.11.0 is installed"),
    (compat.training, {"trl": "1.17.0"}, "adbench train needs trl>=1.0,<1.17, but trl 1.17.0 is installed"),
    (compat.training, {"trl": "0.29.1"}, "adbench train needs trl>=1.0,<1.17, but trl 0.29.1 is installed"),
    (compat.training, {"peft": "0.17.1"}, "adbench train needs peft>=0.18, but peft 0.17.1 is installed"),
    (compat.training, {"torch": "2.5.1"}, "adbench train needs torch>=2.8, but torch 2.5.1 is installed"),
])
def test_a_version_outside_the_range_is_a_user_error_naming_package_version_and_range(check, kwargs, expected):
    with pytest.raises(compat.UnsupportedVersionError) as info:
        check(**kwargs)
    assert isinstance(info.value, UserError)  # the CLI prints it as one line, exit 2
    message = str(info.value)
    assert expected in message
    assert "pip install" in message and "\n" not in message


def test_versions_inside_the_range_pass():
    compat.fast_engine(transformers="5.4.0", torch="2.8.0")
    compat.fast_engine(transformers="5.24.0", torch="2.14.1+cu130")
    compat.training(trl="1.16.0", transformers="5.4.0", peft="0.18.0", torch="2.8.0")
    compat.tokenizer_conversion(transformers="5.17.0", tiktoken="0.12.0")


def test_a_missing_package_is_left_to_its_import():
    compat.require(compat.Supported("adbench-no-such-package", "1.0"), "a test")  # no error: not installed


# ---------------------------------------------------------------- declared ranges = tested ranges


def _declared() -> dict[str, str]:
    """pyproject.toml's requirements (core and every tested extra), name -> specifier, by normalised name."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra not in UNTESTED_EXTRAS:
            lines += [r for r in reqs if not r.startswith("adbench[")]
    out = {}
    for line in lines:
        req = Requirement(line)
        out[_norm(req.name)] = str(req.specifier)
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


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

    declared = _declared()
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
