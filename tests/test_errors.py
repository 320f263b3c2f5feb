"""`adbench` prints a user's mistake as one line (exit 2) and keeps a bug's traceback (issue 14, item 12)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from adbench.errors import UserError

USER_ERRORS = [
    "adbench.registry:RegistryError", "adbench.args:ArgumentError", "adbench.data.paths:DataError",
    "adbench.store:StoreError", "adbench.runner:RunError", "adbench.images:ImageError",
    "adbench.metrics:MetricError", "adbench.results.reference:ReferenceTableError",
    "adbench.results.layouts:LayoutError",
    "adbench.data.pseudo_boxes:BoxError", "adbench.training.recipes:RecipeError",
    "adbench.training.config:TrainingError", "adbench.training.grpo_data:TrainingDataError",
    "adbench.models.api.prices:PriceError", "adbench.models.api.openai_chat:APIConfigError",
    "adbench.models.weights:UnsafeCheckpointError", "adbench.models.engines.vllm_offline:VLLMUnavailableError",
    "adbench.models.tiny_qwen:TokenizerAssetError", "adbench.models.baselines.anomalyclip:CheckpointError",
    "adbench.distributed:DistributedError",
]


@pytest.mark.parametrize("target", USER_ERRORS)
def test_user_facing_errors_share_one_base(target):
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, UserError) and issubclass(cls, ValueError)


@pytest.mark.parametrize("name,os_base", [("MissingFileError", FileNotFoundError),
                                          ("MissingDependencyError", ImportError),
                                          ("ExistingPathError", FileExistsError)])
def test_user_errors_about_files_keep_their_os_base(name, os_base):
    from adbench import errors

    cls = getattr(errors, name)
    assert issubclass(cls, UserError) and issubclass(cls, os_base)


def _adbench(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    """`python -m adbench ...` with a plugin package whose task factory has a bug (it raises ValueError)."""
    site = tmp_path / "site"
    (site / "buggy").mkdir(parents=True, exist_ok=True)
    (site / "buggy" / "__init__.py").write_text(
        "def task(**kwargs):\n    return int('not a number')  # a bug: ValueError from inside the code\n")
    dist = site / "buggy-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: buggy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[adbench.tasks]\nbuggy = buggy:task\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "adbench", *argv], capture_output=True, text=True, env=env,
                          cwd=tmp_path)


def test_an_internal_valueerror_keeps_its_traceback(tmp_path):
    proc = _adbench(tmp_path, "run", "--model", "chance", "--task", "buggy", "--data-root", str(tmp_path))
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ValueError: invalid literal for int() with base 10: 'not a number'" in proc.stderr
    assert "adbench: error:" not in proc.stderr


def test_a_user_error_is_one_line_and_exit_2(tmp_path):
    proc = _adbench(tmp_path, "run", "--model", "chance", "--task", "demo-binary", "-T", "shots=x",
                    "--data-root", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr == "adbench: error: -T shots: expected an integer, got 'x'\n"


@pytest.mark.parametrize("argv,message", [
    (["leaderboard"], "give at least one RUN_DIR"),
    (["train", "--recipe", "tiny"], "--out DIR is required"),
    (["leaderboard", "--reference", "paper"], "--reference needs --layout"),
    (["data", "demo", "--out", "{tmp}"], "exists and is not an adbench demo suite"),
    (["report", "{tmp}", "--thumb", "4"], "--thumb must be at least 16 pixels"),
])
def test_usage_mistakes_are_user_errors(argv, message, capsys, tmp_path):
    from adbench.cli import main

    (tmp_path / "someone-elses-file.txt").write_text("keep me")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adbench: error:") and message in err and err.count("\n") == 1
