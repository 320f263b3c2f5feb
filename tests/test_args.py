"""-M / -T values: one parser, typed from the receiving signature, refusing what does not convert
before any model is built or any inference runs (issue 14, item 3)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import pytest

from adbench import registry
from adbench.args import ArgumentError, convert, parse_bool
from adbench.cli import main
from adbench.errors import UserError
from tests import layouts as L


@pytest.fixture(scope="module")
def mmad(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    L.write_mmad(root)
    return root


def flagged(trust_remote_code: bool = False, shots: int = 1, threshold: float | None = None, names: list[str] | None = None,
            note=None):
    """A registered test factory: what it receives is what the registry converted."""
    return SimpleNamespace(trust_remote_code=trust_remote_code, shots=shots, threshold=threshold, names=names,
                           note=note)


@pytest.fixture
def test_model(monkeypatch):
    monkeypatch.setitem(registry._extra["models"], "t-flags",
                        registry.Entry("t-flags", "tests.test_args:flagged", "test factory", "runtime"))
    return "t-flags"


@pytest.mark.parametrize("text,want", [("true", True), ("False", False), ("YES", True), ("no", False), ("on", True),
                                       ("Off", False), ("1", True), ("0", False), (" false ", False), (True, True),
                                       (False, False), (1, True), (0, False)])
def test_bool_values_are_read_not_truthy(text, want):
    assert parse_bool(text, "-M trust_remote_code") is want


@pytest.mark.parametrize("bad", ["Flase", "2", "", "maybe", 2, 0.5, None])
def test_bool_typos_are_errors_naming_flag_and_key(bad):
    with pytest.raises(ArgumentError) as e:
        parse_bool(bad, "-M trust_remote_code")
    assert str(e.value) == f"-M trust_remote_code: expected true or false, got {bad!r}"
    assert isinstance(e.value, UserError)


def test_int_and_float_rules():
    assert convert("3", int, "-T shots") == 3 and convert(" -2 ", int, "-T shots") == -2 and convert(4, int, "x") == 4
    for bad in ("1.7", "1.5", "x", "", "true", True, 1.5):
        with pytest.raises(ArgumentError, match=r"^-T shots: expected an integer, got "):
            convert(bad, int, "-T shots")
    assert convert("2", float, "-M t") == 2.0 and isinstance(convert(2, float, "-M t"), float)
    assert convert("1e-5", float, "-M t") == 1e-5 and convert(" 0.5", float, "-M t") == 0.5
    for bad in ("abc", "nan", "inf", True, ""):
        with pytest.raises(ArgumentError, match=r"^-M t: expected a number, got "):
            convert(bad, float, "-M t")


def test_optional_literal_list_and_str_rules():
    assert convert("null", int | None, "k") is None and convert("None", int | None, "k") is None
    assert convert("7", int | None, "k") == 7
    assert convert("null", str | None, "k") is None
    assert convert("none", str | None, "k") == "none"  # a text type keeps the word; only null means None there
    assert convert("42", str, "k") == "42" and convert(42, str, "k") == "42"  # text stays text, not JSON
    assert convert("a,b", list[str], "k") == ["a", "b"] and convert("[a, b]", list[str], "k") == ["a", "b"]
    assert convert('["a"]', list[str] | None, "k") == ["a"] and convert("2,3", list[int], "k") == [2, 3]
    assert convert("2", list[int], "k") == [2] and convert([2, 3], list[int], "k") == [2, 3]
    with pytest.raises(ArgumentError, match=r"^k\[1\]: expected an integer, got 'x'"):
        convert("2,x", list[int], "k")
    assert convert('{"a": 1}', dict[str, int], "k") == {"a": 1}
    with pytest.raises(ArgumentError, match=r"^k: expected a mapping"):
        convert("a", dict[str, int], "k")
    rule = Literal["calibrated", "youden", "fixed"] | float
    assert convert("youden", rule, "-T threshold") == "youden" and convert("0.5", rule, "-T threshold") == 0.5
    with pytest.raises(ArgumentError) as e:
        convert("bogus", rule, "-T threshold")
    assert str(e.value) == "-T threshold: expected one of calibrated, youden, fixed or a number, got 'bogus'"
    assert convert("auto", bool | Literal["auto"], "k") == "auto" and convert("off", bool | Literal["auto"], "k") is False
    assert convert("x", Path, "k") == "x"  # a path stays text (JSON-safe); the receiver resolves it


def test_hf_vlm_values_are_typed_from_the_adapter_signature():
    """The hf-vlm factory takes **kwargs: its -M values are typed from the classes it hands them to."""
    got = registry.parse_assignments(["trust_remote_code=False", "base=org/model", "max_new_tokens=64",
                                      "top_k=null", "do_sample=yes", "temperature=1"], "-M", "hf-vlm")
    assert got == {"trust_remote_code": False, "base": "org/model", "max_new_tokens": 64, "top_k": None,
                   "do_sample": True, "temperature": 1.0}
    assert registry.parse_assignments(["trust_remote_code=no", "compile=off"], "-M", "adfm") == \
        {"trust_remote_code": False, "compile": False}
    assert registry.parse_assignments(["backend=vllm"], "-M", "internvl3-8b") == {"backend": "vllm"}
    with pytest.raises(ArgumentError, match=r"^-M backend: expected one of transformers, vllm, got 'vlm'$"):
        registry.parse_assignments(["backend=vlm"], "-M", "hf-vlm")
    with pytest.raises(registry.RegistryError, match=r"does not take -M trust_remote_cod; it takes: .*trust_remote_code"):
        registry.parse_assignments(["trust_remote_cod=false"], "-M", "hf-vlm")
    assert registry.parse_assignments(["boxes=False", "shots=0", "threshold=0.5"], "-T", "mmad-binary") == \
        {"boxes": False, "shots": 0, "threshold": 0.5}


def test_factory_receives_converted_values(test_model):
    m = registry.make_model(test_model, trust_remote_code="False", shots="2", threshold="0.25", names="a,b")
    assert (m.trust_remote_code, m.shots, m.threshold, m.names) == (False, 2, 0.25, ["a", "b"])
    # a parameter without an annotation: read as JSON when it parses, else as text (as before)
    assert registry.make_model(test_model, note="[1, 2]").note == [1, 2]
    assert registry.make_model(test_model, note="hello").note == "hello"
    with pytest.raises(ArgumentError, match=r"^-M shots: expected an integer, got '1.5'$"):
        registry.make_model(test_model, shots="1.5")


def test_a_real_adapter_gets_booleans_from_text():
    """openai-compatible builds without a network or weights: its yes/no arguments arrive as booleans."""
    args = registry.parse_assignments(["model=m", "base_url=http://127.0.0.1:9/v1", "mmad=False", "cache=off",
                                       "upscale=no", "max_new_tokens=64", "temperature=0", "stop=###"], "-M",
                                      "openai-compatible")
    m = registry.make_model("openai-compatible", **args)
    assert (m.mmad, m.cache, m.generation.max_new_tokens, m.generation.temperature) == (False, None, 64, 0.0)
    assert m.generation.stop == ("###",) and m.decoding().do_sample is False  # temperature 0: greedy
    assert args["upscale"] is False and args["temperature"] == 0.0 and isinstance(args["temperature"], float)


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_bool_is_refused_before_the_model_loads(mmad, tmp_path, capsys):
    """hf-vlm with a base that cannot load: the error is the conversion, not a load attempt."""
    code, _, err = _run(["run", "--model", "hf-vlm", "-M", f"base={tmp_path / 'no-such-model'}", "-M",
                         "trust_remote_code=Flase", "--task", "mmad-binary", "-T", "split=all", "--data-root", str(mmad),
                         "--out", str(tmp_path / "runs"), "--no-progress"], capsys)
    assert code == 2
    assert err == "adbench: error: -M trust_remote_code: expected true or false, got 'Flase'\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args,message", [
    (["-M", "seed=1.7"], "-M seed: expected an integer, got '1.7'"),
    (["-T", "shots=1.5"], "-T shots: expected an integer, got '1.5'"),
    (["-T", "shots=x"], "-T shots: expected an integer, got 'x'"),
    (["-T", "threshold=bogus"], "-T threshold: expected one of calibrated, youden, fixed or a number, got 'bogus'"),
    (["-T", "boxes=maybe"], "-T boxes: expected true or false, got 'maybe'"),
    (["-T", "template=similiar"], "-T template: expected one of random, similar, got 'similiar'"),
    (["-T", "split=test"], "-T split: expected one of eval, train, all, got 'test'"),
])
def test_bad_values_are_refused_before_inference(args, message, mmad, tmp_path, capsys):
    code, _, err = _run(["run", "--model", "chance", "--task", "mmad-binary", *args, "--data-root", str(mmad),
                         "--out", str(tmp_path / "runs"), "--no-progress"], capsys)
    assert (code, err) == (2, f"adbench: error: {message}\n")
    assert not (tmp_path / "runs").exists()


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("value,with_boxes", [("False", False), ("no", False), ("true", True)])
def test_boxes_false_gives_records_without_gt_boxes(value, with_boxes, mmad, tmp_path, capsys):
    code, out, _ = _run(["run", "--model", "chance", "--task", "mmad-binary", "-T", "split=all", "-T",
                         f"boxes={value}", "--data-root", str(mmad), "--out", str(tmp_path / "runs"), "--no-progress"],
                        capsys)
    assert code == 0
    run_dir = Path(out.strip().splitlines()[-1])
    anomalous = [r for r in _records(run_dir) if r["label"] == 1]
    assert len(anomalous) == 20
    assert all(bool(r["gt_boxes"]) is with_boxes for r in anomalous)
    assert json.loads((run_dir / "config.json").read_text())["task_args"]["boxes"] is with_boxes


@pytest.mark.parametrize("kind", ["models", "tasks"])
def test_every_builtin_argument_has_a_resolved_type(kind):
    """Each -M / -T key of a built-in entry is known without building anything, with a type the parser reads."""
    from adbench.args import UNTYPED, parameter_hints

    builtin = registry.BUILTIN_MODELS if kind == "models" else registry.BUILTIN_TASKS
    table = registry.models() if kind == "models" else registry.tasks()
    for name, entry in table.items():
        if name not in builtin:  # tests register their own untyped factories at run time
            continue
        factory = registry.load_target(entry.target)
        forwards = tuple(registry.load_target(t) for t in registry.KWARGS_FROM.get(entry.target, ()))
        hints, open_ = parameter_hints(factory, forwards)
        assert not open_ and hints, name  # unknown keys are refused before anything is built
        assert [k for k, h in hints.items() if h is UNTYPED or isinstance(h, str)] == [], name
