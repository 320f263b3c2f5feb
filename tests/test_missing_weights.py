"""Weights that are not on this machine: one line naming the model and the remedies, exit 2, in seconds.

Every command runs in a subprocess with an empty Hugging Face cache (HF_HOME in a
temporary folder) and HF_ENDPOINT pointing at a closed local port, so the hub is
unreachable at once and nothing can ever be downloaded, network or not. Before the
fix, `adbench run --model qwen2.5-vl-7b` spent about 50 s in hub retries and ended in
a 100-line traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QWEN_7B = "Qwen/Qwen2.5-VL-7B-Instruct"
#: Python start-up and the imports (torch, transformers) take a few seconds on a busy CPU;
#: hub retries took 50 s. Anything between the two is a regression worth seeing.
FAST_S = 25


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from adbench.data.demo import ensure_demo

    root = tmp_path_factory.mktemp("mw-data")
    ensure_demo(root)
    return root


def _env(hf_home: Path, offline: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env["HF_HOME"] = str(hf_home)
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: connection refused, never a download
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def _adbench(*args: str, env: dict[str, str], cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "adbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)
    return proc, time.perf_counter() - t0


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("adbench: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def _run(model: str, *margs: str, data_root: Path, env: dict[str, str], out: Path):
    m = [a for pair in (("-M", x) for x in margs) for a in pair]
    return _adbench("run", "--model", model, *m, "--task", "demo-binary", "--limit", "1", "--data-root",
                    str(data_root), "--out", str(out), "--no-progress", env=env)


HUB_CASES = [
    ("qwen2.5-vl-7b", (), QWEN_7B),
    ("adfm", (), QWEN_7B),
    ("internvl3-8b", (), "OpenGVLab/InternVL3-8B-hf"),
    ("hf-vlm", ("base=someone/no-such-model",), "someone/no-such-model"),
]


@pytest.mark.parametrize("offline", [False, True], ids=["hub-unreachable", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("model,margs,hub_id", HUB_CASES, ids=[c[0] for c in HUB_CASES])
def test_a_hub_model_missing_from_the_cache(model, margs, hub_id, offline, data_root, tmp_path):
    proc, seconds = _run(model, *margs, data_root=data_root, env=_env(tmp_path / "hf", offline), out=tmp_path)
    line = _one_line_error(proc)
    assert seconds < FAST_S, f"{seconds:.1f} s"
    assert f"'{hub_id}'" in line
    assert "-M base=DIR" in line and "HF_HOME" in line and "HF_HUB_OFFLINE=1" in line
    assert f"hf download {hub_id}" in line
    assert str(tmp_path / "hf") in line  # where it looked
    assert ("HF_HUB_OFFLINE" in line.split("Supply")[0]) if offline else ("cannot be reached" in line)


@pytest.mark.parametrize("model,margs,expected", [
    ("qwen2.5-vl-7b", ("base=/nonexistent",), "base model folder not found: /nonexistent"),
    ("hf-vlm", ("base=./no/such",), f"base model folder not found: {ROOT / 'no' / 'such'}"),
    ("adfm", ("adapter=/nonexistent-adapter",), "adapter folder not found: /nonexistent-adapter"),
])
def test_a_local_folder_that_does_not_exist(model, margs, expected, data_root, tmp_path):
    proc, seconds = _run(model, *margs, data_root=data_root, env=_env(tmp_path / "hf"), out=tmp_path)
    line = _one_line_error(proc)
    assert seconds < FAST_S and expected in line


def test_an_adapter_folder_without_adapter_files(data_root, tmp_path):
    empty = tmp_path / "adapter"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an adapter")
    proc, _ = _run("adfm", f"adapter={empty}", data_root=data_root, env=_env(tmp_path / "hf"), out=tmp_path)
    line = _one_line_error(proc)
    assert f"adapter folder {empty} has no adapter_config.json" in line and "adbench train" in line


def test_an_adapter_whose_trained_base_is_gone(tmp_path, data_root):
    """An adapter copied without the base its metadata names: the error names the absolute missing folder."""
    from adbench.models.presets.adfm import TRAINING_METADATA
    from tests.vlm_fixtures import tiny_assets

    adapter = tmp_path / "out" / "adapter"
    shutil.copytree(tiny_assets().adapter, adapter)
    (adapter / TRAINING_METADATA).write_text('{"base": "../base-sft"}')
    proc, _ = _run("adfm", f"adapter={adapter}", data_root=data_root, env=_env(tmp_path / "hf"), out=tmp_path)
    assert f"base model folder not found: {tmp_path / 'out' / 'base-sft'}" in _one_line_error(proc)


def test_train_with_a_hub_base_missing_from_the_cache(tmp_path):
    # bf16 off: transformers refuses it without a GPU, and that check comes first (on a GPU it is not needed)
    proc, seconds = _adbench("train", "--recipe", "paper-multidomain", "--set", "grpo.bf16=false", "--out",
                             str(tmp_path / "out"), env=_env(tmp_path / "hf"))
    line = _one_line_error(proc)
    assert seconds < FAST_S, f"{seconds:.1f} s"
    assert f"'{QWEN_7B}'" in line and "--set base=DIR" in line and f"hf download {QWEN_7B}" in line
    assert not (tmp_path / "out").exists()  # nothing written


def _hub_cache(hf_home: Path, repo_id: str, files: Path, names: list[str] | None = None) -> Path:
    """The layout huggingface_hub writes: refs/main names a snapshot folder holding the files."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in files.iterdir():
        if f.is_file() and (names is None or f.name in names):
            shutil.copy(f, snapshot / f.name)
    return snapshot


def test_a_cached_hub_model_loads_without_the_network(data_root, tmp_path):
    """In the cache: used from there at once (no hub request, which would fail here), with the hub id recorded."""
    import json

    from tests.vlm_fixtures import tiny_assets

    _hub_cache(tmp_path / "hf", "adbench-test/tiny-qwen", tiny_assets().base)
    proc, seconds = _run("hf-vlm", "base=adbench-test/tiny-qwen", "max_new_tokens=2", data_root=data_root,
                         env=_env(tmp_path / "hf"), out=tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 60
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert json.loads((run_dir / "config.json").read_text())["model_config"]["base"] == "adbench-test/tiny-qwen"


def test_a_partly_cached_hub_model_says_what_is_missing(data_root, tmp_path):
    from tests.vlm_fixtures import tiny_assets

    _hub_cache(tmp_path / "hf", "adbench-test/tiny-qwen", tiny_assets().base, names=["config.json"])
    proc, _ = _run("hf-vlm", "base=adbench-test/tiny-qwen", data_root=data_root, env=_env(tmp_path / "hf", True),
                   out=tmp_path)
    line = _one_line_error(proc)
    assert "'adbench-test/tiny-qwen'" in line and "no .safetensors weights" in line


def test_a_clip_pretrained_tag_missing_from_the_cache(data_root, tmp_path):
    pytest.importorskip("open_clip")
    proc, seconds = _run("winclip", data_root=data_root, env=_env(tmp_path / "hf"), out=tmp_path)
    line = _one_line_error(proc)
    assert seconds < FAST_S, f"{seconds:.1f} s"
    assert "laion400m_e31" in line and "-M weights=PATH" in line and "cannot be reached" in line


@pytest.mark.parametrize("model,arg", [("patchcore", "weights"), ("winclip", "weights")])
def test_a_local_weights_file_that_does_not_exist(model, arg, data_root, tmp_path):
    proc, _ = _run(model, f"{arg}={tmp_path / 'nope.pth'}", data_root=data_root, env=_env(tmp_path / "hf"),
                   out=tmp_path)
    assert f"{tmp_path / 'nope.pth'}" in _one_line_error(proc)
