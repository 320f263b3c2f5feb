"""Issue 17, item 2: `adbench run --config run.yaml` and `--print-config`.

The file's keys are the flags' names, typed by the same rules (RunSpec's annotations for the options,
the factories' signatures for model_args / task_args); flags override it; --print-config prints a file
that runs the same runs.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from adbench import registry
from adbench.runconfig import FILE_KEYS, OPTIONS, option_defaults
from adbench.runner import RunSpec
from tests.helpers import cli, write_mini_mmad

registry.register_task("mini-all", "tests.helpers:mini_all_task", "test task")
registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")
registry.register_model("slow", "tests.helpers:SlowModel", "test model")


@pytest.fixture()
def suite(tmp_path):
    return write_mini_mmad(tmp_path / "data")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def printed(capsys, *argv: str) -> dict:
    rc, out, err = cli(capsys, "run", *argv, "--print-config")
    assert rc == 0, err
    return yaml.safe_load(out)


def test_print_config_is_typed_and_runs_the_same_configuration(suite, tmp_path, capsys):
    argv = ["--model", "chance,slow", "--task", "mini-all,mini-binary", "-M", "slow:delay=0", "-M", "seed=3",
            "-T", "mini-binary:shots=0", "--label", "slow:the slow one", "--limit", "12", "--batch-size", "4",
            "--data-root", str(suite), "--out", str(tmp_path / "runs"), "--no-progress"]
    rc, text, _ = cli(capsys, "run", *argv, "--print-config")
    assert rc == 0 and not (tmp_path / "runs").exists()  # printed, nothing run
    assert text.startswith("# adbench run: 4 runs (model x task)\n#   chance on mini-all\n")
    config = yaml.safe_load(text)
    assert list(config) == list(FILE_KEYS)
    assert config["model"] == ["chance", "slow"] and config["task"] == ["mini-all", "mini-binary"]
    assert config["model_args"] == {"slow:delay": 0.0, "seed": 3}  # typed: a number, an integer
    assert config["task_args"] == {"mini-binary:shots": 0}
    assert config["label"] == {"slow": "the slow one"}
    assert (config["limit"], config["batch_size"], config["seed"], config["progress"]) == (12, 4, 0, False)
    assert config["out"] == str(tmp_path / "runs") and config["max_failed"] == 0.5
    # the printed file, run: the same configuration, and the same run directories as the flags
    path = write(tmp_path / "run.yaml", text)
    rc, again, _ = cli(capsys, "run", "--config", str(path), "--print-config")
    assert rc == 0 and again == text
    rc, _, err = cli(capsys, "run", "--config", str(path))
    assert rc == 0, err
    rc, _, err = cli(capsys, "run", *argv)
    assert rc == 0 and "4 of 4 runs done" in err
    dirs = sorted((tmp_path / "runs").glob("*/*/*/config.json"))
    assert len(dirs) == 4  # the flags found the file's run directories
    for config_path in dirs:
        cfg = json.loads(config_path.read_text())
        assert len(cfg["sessions"]) == 2 and cfg["sessions"][1]["new_records"] == 0  # resumed: nothing left
        assert cfg["limit"] == 12 and cfg["batch_size"] == 4
    slow = json.loads(next((tmp_path / "runs" / "mini-binary" / "slow").glob("*/config.json")).read_text())
    assert slow["model_args"] == {"delay": 0.0, "seed": 3} and slow["task_args"] == {"shots": 0}
    assert slow["label"] == "the slow one"


def test_command_line_flags_override_the_file(suite, tmp_path, capsys):
    path = write(tmp_path / "run.yaml", f"""
model: [chance, slow]
task: mini-binary
model_args:
  seed: 1
  slow:delay: 0.5
task_args: {{shots: 0}}
label: {{chance: floor, slow: sleepy}}
limit: 4
data_root: {suite}
""")
    base = printed(capsys, "--config", str(path))
    assert base["limit"] == 4 and base["model_args"] == {"seed": 1, "slow:delay": 0.5}
    over = printed(capsys, "--config", str(path), "--limit", "2", "-M", "seed=2", "-T", "shots=1", "--seed", "7")
    assert (over["limit"], over["seed"]) == (2, 7)
    assert over["model_args"] == {"seed": 2, "slow:delay": 0.5} and over["task_args"] == {"shots": 1}
    # --model replaces the list: what the file scoped to slow goes with it
    only = printed(capsys, "--config", str(path), "--model", "chance", "--label", "mine")
    assert only["model"] == ["chance"] and only["model_args"] == {"seed": 1} and only["label"] == {"chance": "mine"}
    assert only["data_root"] == str(suite) and only["task"] == ["mini-binary"]


def test_option_defaults_are_runspecs():
    defaults = option_defaults()
    assert defaults == {k: getattr(RunSpec(model="m", task="t"), k) for k in OPTIONS}


@pytest.mark.parametrize("content,message", [
    ("model: chance\ntask: mini-all\nlmit: 3\n", "{f}: unknown key lmit; did you mean limit?; valid keys: model, "),
    ("model: chance\ntask: mini-all\nlimit: many\n", "{f}: limit: expected an integer or null, got 'many'"),
    ("model: chance\ntask: mini-all\nprogress: maybe\n", "{f}: progress: expected true or false, got 'maybe'"),
    ("model: chance\ntask: mini-all\nmodel_args: {seed: x}\n", "{f}: model_args.seed: expected an integer, got 'x'"),
    ("model: chance\ntask: mini-all\nmodel_args: [seed]\n", "{f}: model_args: expected a mapping of key: value"),
    ("model: chance\ntask: mini-all\nmodel_args: {slow:delay: 1}\n",
     "{f}: model_args.slow:delay: 'slow' is not one of the models given (--model chance)"),
    ("model: [chance, slow]\ntask: mini-all\nmodel_args: {delay: 1}\n",
     "{f}: model 'chance' does not take -M delay; it takes: seed (model_args keys without a scope go to every "
     "model given; write NAME:delay for the models that take it)"),
    ("model: chance\ntask: mini-all\ntask_args: {shots: 1}\n", "{f}: task 'mini-all' does not take -T shots"),
    ("model: [chance, slow]\ntask: mini-all\nlabel: one\n", "{f}: label 'one': with several models, say whose "
                                                            "label it is: label: {{MODEL: one}}"),
    ("model: chance\ntask: mini-all\nlabel: {slow: one}\n", "{f}: label.slow: 'slow' is not one of the models"),
    ("model: [chance\n", "{f}: malformed YAML at line 2, column 1: expected ',' or ']'"),
    ("- model\n", "{f}: a run configuration is a mapping of keys (model, task, "),
    ("task: mini-all\n", "give --model (or `model:` in the --config file)"),
])
def test_mistakes_in_the_file_are_one_line_errors_naming_the_file_and_key(content, message, tmp_path, capsys):
    path = write(tmp_path / "run.yaml", content)
    rc, _, err = cli(capsys, "run", "--config", str(path), "--out", str(tmp_path / "runs"))
    assert rc == 2
    assert err.startswith("adbench: error: ") and message.format(f=path) in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_a_missing_config_file_is_named(tmp_path, capsys):
    rc, _, err = cli(capsys, "run", "--config", str(tmp_path / "nope.yaml"))
    assert rc == 2 and err == f"adbench: error: --config: file not found: {tmp_path / 'nope.yaml'}\n"


def test_the_readme_configuration_file_and_commands_resolve_as_described(tmp_path, capsys, monkeypatch):
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Run configuration files\n"):]
    yaml_text = re.search(r"^```yaml\n(.*?)^```", section, re.S | re.M).group(1)
    commands = re.search(r"^```bash\n(.*?)^```", section, re.S | re.M).group(1)
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "run.yaml", yaml_text)
    config = printed(capsys, "--config", "run.yaml")
    assert config["model_args"] == {"seed": 1, "patchcore:image_size": 256}
    assert config["task_args"] == {"demo-binary:shots": 0} and config["label"] == {"chance": "floor"}
    assert config["limit"] == 24 and config["out"] == "runs"
    over = printed(capsys, "--config", "run.yaml", "--limit", "48", "--seed", "2")
    assert (over["limit"], over["seed"]) == (48, 2)
    assert "adbench run --config run.yaml --print-config" in commands
    (line,) = [x for x in commands.splitlines() if "> mine.yaml" in x]
    argv = shlex.split(line.split(">")[0])[2:]  # after `adbench run`
    mine = printed(capsys, *[a for a in argv if a != "--print-config"])
    assert mine["model"] == ["chance"] and mine["task"] == ["demo-all"] and mine["model_args"] == {"seed": 3}
