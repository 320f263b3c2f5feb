"""Issue 17, item 1: many models and tasks in one `adbench run`, task groups, and `adbench list` with arguments.

Real runs throughout: the mini MMAD suite on disk, registered test models and tasks, `adbench run`
in-process and as a subprocess killed with SIGKILL mid-sweep.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adbench import registry
from adbench.results.writer import format_percent
from adbench.runner import EXIT_BUDGET, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from adbench.sweep import worst
from tests.helpers import cli, write_mini_mmad

ROOT = Path(__file__).resolve().parent.parent
registry.register_task("mini-all", "tests.helpers:mini_all_task", "test task")
registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")
registry.register_model("slow", "tests.helpers:SlowModel", "test model")
registry.register_model("raising", "tests.test_run_reliability:RaisingModel", "test model")
registry.register_group("mini-both", ["mini-all", "mini-binary"], "both mini tasks")

#: The sweep as a subprocess: the test models and tasks registered, then the command line.
RUNNER = (
    "import sys; from adbench import registry; "
    "registry.register_model('slow', 'tests.helpers:SlowModel'); "
    "registry.register_task('mini-all', 'tests.helpers:mini_all_task'); "
    "registry.register_task('mini-binary', 'tests.helpers:mini_binary_task'); "
    "from adbench.cli import main; sys.exit(main(sys.argv[1:]))"
)
N_SAMPLES = {"mini-all": 48, "mini-binary": 32}  # 2 datasets x 2 categories x (4 good + 4 bad) images


@pytest.fixture()
def suite(tmp_path):
    return write_mini_mmad(tmp_path / "data")


def sweep_args(suite: Path, out: Path, models: str, tasks: str, *extra: str) -> list[str]:
    return ["run", "--model", models, "--task", tasks, "--data-root", str(suite), "--out", str(out),
            "--no-progress", *extra]


def run_dirs(out: Path) -> dict[tuple[str, str], Path]:
    """(task, model) -> its one run directory under `out`."""
    found = {}
    for config in out.glob("*/*/*/config.json"):
        key = (config.parent.parent.parent.name, config.parent.parent.name)
        assert key not in found, f"two run directories for {key}"
        found[key] = config.parent
    return found


def ids(run_dir: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def table_rows(text: str) -> dict[str, dict[str, str]]:
    lines = [x for x in text.splitlines() if x.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(head, cells)) for cells in
            ([c.strip() for c in x.strip("|").split("|")] for x in lines[2:])}


def test_every_model_runs_on_every_task_and_one_leaderboard_shows_results_json_figures(suite, tmp_path, capsys):
    out = tmp_path / "runs"
    rc, stdout, err = cli(capsys, *sweep_args(suite, out, "chance,slow", "mini-all,mini-binary", "-M", "slow:delay=0"))
    assert rc == EXIT_OK, err
    dirs = run_dirs(out)
    assert set(dirs) == {(t, m) for t in ("mini-all", "mini-binary") for m in ("chance", "slow")}
    for (task, _), d in dirs.items():
        assert sorted(ids(d)) == sorted(set(ids(d))) and len(ids(d)) == N_SAMPLES[task]
    rows = table_rows(stdout)
    assert set(rows) == {f"{m} [{t}]" for t in ("mini-all", "mini-binary") for m in ("chance", "slow")}
    for (task, model), d in dirs.items():
        results = json.loads((d / "results.json").read_text())
        assert rows[f"{model} [{task}]"]["Avg."] == format_percent(results["metrics"]["average"]["accuracy"])
    assert "[1/4] chance on mini-all" in err and "[4/4] slow on mini-binary" in err
    assert "4 of 4 runs done" in err
    # -M slow:delay=0 reached slow only; chance kept its own arguments
    assert json.loads((dirs["mini-all", "slow"] / "config.json").read_text())["model_args"] == {"delay": 0.0}
    assert json.loads((dirs["mini-all", "chance"] / "config.json").read_text())["model_args"] == {}
    # the same command again: every pair resumes with nothing to do, and the same table
    rc, again, _ = cli(capsys, *sweep_args(suite, out, "chance,slow", "mini-all,mini-binary", "-M", "slow:delay=0"))
    assert rc == EXIT_OK and run_dirs(out) == dirs and table_rows(again) == rows
    assert all(len(ids(d)) == N_SAMPLES[t] for (t, _), d in dirs.items())


def test_a_group_runs_each_member_and_task_scoped_arguments_reach_only_their_task(suite, tmp_path, capsys):
    out = tmp_path / "runs"
    rc, _, err = cli(capsys, *sweep_args(suite, out, "chance", "mini-both", "-T", "mini-binary:shots=0",
                                         "-M", "seed=3"))
    assert rc == EXIT_OK, err
    dirs = run_dirs(out)
    assert set(dirs) == {("mini-all", "chance"), ("mini-binary", "chance")}
    config = {t: json.loads((d / "config.json").read_text()) for (t, _), d in dirs.items()}
    assert config["mini-binary"]["task_args"] == {"shots": 0} and config["mini-all"]["task_args"] == {}
    assert config["mini-binary"]["model_args"] == config["mini-all"]["model_args"] == {"seed": 3}
    # a group given twice, or with one of its members, still runs each task once
    rc, printed, err = cli(capsys, *sweep_args(suite, out, "chance", "mini-all,mini-both", "--print-config"))
    assert rc == 0 and err == ""
    assert printed.startswith("# adbench run: 2 runs (model x task)\n"), printed
    assert registry.expand_tasks(["mini-all", "mini-both"]) == ["mini-all", "mini-binary"]


@pytest.mark.parametrize("argv,message", [
    (["-M", "delay=0"], "model 'chance' does not take -M delay; it takes: seed (-M without a scope goes to every "
                        "model given; give it as -M NAME:delay=VALUE for the models that take it)"),
    (["-M", "patchcore:backbone=x"], "-M patchcore:backbone: 'patchcore' is not one of the models given "
                                     "(--model chance, slow)"),
    (["-T", "mini-all:shots=0"], "task 'mini-all' does not take -T shots; it takes: (no arguments)"),
    (["-T", "demo-binary:shots=0"], "-T demo-binary:shots: 'demo-binary' is not one of the tasks or groups given"),
    (["-M", "slow:delay=soon"], "-M slow:delay: expected a number, got 'soon'"),
    (["--label", "mine"], "--label 'mine': with several models, say whose label it is: --label MODEL:mine"),
])
def test_argument_mistakes_with_several_models_are_one_line_before_anything_runs(argv, message, suite, tmp_path,
                                                                               capsys):
    out = tmp_path / "runs"
    rc, _, err = cli(capsys, *sweep_args(suite, out, "chance,slow", "mini-both", *argv))
    assert rc == EXIT_USAGE
    assert err.startswith("adbench: error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()  # nothing ran


def test_unknown_names_list_the_valid_ones(suite, tmp_path, capsys):
    rc, _, err = cli(capsys, *sweep_args(suite, tmp_path / "runs", "chance", "mini-all,mini-nothing"))
    assert rc == EXIT_USAGE and "unknown task 'mini-nothing'" in err and "task groups: demo-all, " in err
    rc, _, err = cli(capsys, *sweep_args(suite, tmp_path / "runs", "chance,chanse", "mini-all"))
    assert rc == EXIT_USAGE and "unknown model 'chanse'" in err and not (tmp_path / "runs").exists()


def test_a_failing_pair_is_reported_the_others_run_and_the_exit_status_is_the_worst(suite, tmp_path, capsys):
    out = tmp_path / "runs"
    # mmad-binary has no data under the mini suite's root (exit 2 for its pairs); `raising` fails from its
    # first queries (exit 1); chance on mini-all is a result
    rc, stdout, err = cli(capsys, *sweep_args(suite, out, "chance,raising", "mini-all,mmad-binary"))
    assert rc == EXIT_USAGE
    dirs = run_dirs(out)
    assert ("mini-all", "chance") in dirs and len(ids(dirs["mini-all", "chance"])) == 48
    assert "adbench: error: chance on mmad-binary: MMAD index not found" in err
    assert "1 of 4 runs done" in err
    assert re.search(r"not done: raising on mini-all \(exit 1\): the model failed its first", err)
    assert "not done: raising on mmad-binary (exit 2): MMAD index not found" in err
    rows = table_rows(stdout)  # the table has every run that wrote results; a failed one is marked, not hidden
    assert set(rows) == {"chance", "raising¶"}
    # without the data-less task, the worst is the failed model's
    rc, _, _ = cli(capsys, *sweep_args(suite, tmp_path / "runs2", "chance,raising", "mini-all"))
    assert rc == EXIT_FAILED


def test_worst_orders_exit_statuses_by_what_they_mean():
    assert worst([]) == EXIT_OK
    assert worst([EXIT_OK, EXIT_BUDGET]) == EXIT_BUDGET
    assert worst([EXIT_BUDGET, EXIT_FAILED, EXIT_OK]) == EXIT_FAILED
    assert worst([EXIT_FAILED, EXIT_USAGE, EXIT_BUDGET]) == EXIT_USAGE


def test_a_sweep_killed_mid_run_resumes_with_every_sample_of_every_pair_once(suite, tmp_path):
    args = sweep_args(suite, tmp_path / "runs", "slow", "mini-all,mini-binary", "--batch-size", "1",
                      "-M", "delay=0.02")
    p = subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    second = tmp_path / "runs" / "mini-binary" / "slow"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill -9 once the second pair has started writing
        found = list(second.glob("*/samples.jsonl"))
        if found and found[0].read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    dirs = run_dirs(tmp_path / "runs")
    assert len(ids(dirs["mini-all", "slow"])) == 48  # the first pair was finished
    assert 3 <= len(ids(dirs["mini-binary", "slow"])) < 32  # the second one was not
    again = subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert run_dirs(tmp_path / "runs") == dirs
    straight = subprocess.run([sys.executable, "-c", RUNNER, *sweep_args(
        suite, tmp_path / "straight", "slow", "mini-all,mini-binary", "--batch-size", "1", "-M", "delay=0")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert straight.returncode == 0, straight.stderr
    for key, d in dirs.items():
        got = ids(d)
        assert len(got) == len(set(got)) == N_SAMPLES[key[0]]  # every sample exactly once
        resumed = json.loads((d / "results.json").read_text())
        uninterrupted = json.loads((run_dirs(tmp_path / "straight")[key] / "results.json").read_text())
        assert resumed["metrics"] == uninterrupted["metrics"] and resumed["complete"] is True


# -- adbench list ---------------------------------------------------------------------------------------


def test_list_without_a_kind_lists_models_tasks_groups_and_recipes(capsys):
    rc, out, _ = cli(capsys, "list")
    assert rc == 0
    sections = re.split(r"^(models|tasks|recipes):$", out, flags=re.M)
    assert sections[1::2] == ["models", "tasks", "recipes"]
    models, tasks, recipes = sections[2::2]
    assert re.search(r"^chance\s+Seeded uniform choice", models, re.M)
    assert re.search(r"^cross-dataset\s+VisA \+ MPDD \+ DTD \+ DAGM test splits in one run", tasks, re.M)
    assert re.search(r"^mmad-all\s+group: mmad-binary, mmad-multitask, one run each", tasks, re.M)
    assert re.search(r"^tiny\s+Tiny random Qwen2.5-VL", recipes, re.M)


def test_list_verbose_shows_each_argument_with_type_and_default_from_the_signature(capsys):
    rc, out, _ = cli(capsys, "list", "models", "chance")
    assert rc == 0 and out == ("chance  Seeded uniform choice among the options (the floor).\n"
                               "    -M seed: int = 0\n")
    rc, out, _ = cli(capsys, "list", "tasks", "demo-binary", "mini-binary", "mini-both")
    assert rc == 0
    lines = out.splitlines()
    assert "    -T shots: int = 1" in lines
    assert "    -T split: one of eval, train, all = all" in lines
    assert "    -T datasets: str | null = null" in lines
    assert "    -T threshold: one of calibrated, youden, fixed | float = calibrated" in lines
    assert "    -T threshold: str = calibrated" in lines  # mini-binary: a test factory of its own
    assert re.search(r"^mini-both\s+group: mini-all, mini-binary, one run each; both mini tasks$", out, re.M)
    rc, out, _ = cli(capsys, "list", "models", "-v")
    assert rc == 0
    chunk = out.split("\nopenai-compatible", 1)[1].split("\npatchcore", 1)[0]
    assert "    -M concurrency: int = 4" in chunk and "    -M base_url: str | null = null" in chunk
    assert "    -M stop: tuple[str, ...] | null = null" in chunk  # GenerationConfig's fields, as -M types them


def test_list_of_an_unknown_name_is_a_one_line_error(capsys):
    rc, _, err = cli(capsys, "list", "models", "chanse")
    assert rc == EXIT_USAGE and err.startswith("adbench: error: unknown model 'chanse'") and err.count("\n") == 1
    rc, _, err = cli(capsys, "list", "tasks", "mmad-al")
    assert rc == EXIT_USAGE and "unknown task 'mmad-al'" in err and "mmad-all" in err


def test_the_readme_commands_of_this_section_resolve(capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Many models and tasks in one command\n"):]
    commands = re.search(r"^```bash\n(.*?)^```", section, re.S | re.M).group(1)
    runs = 0
    for line in commands.splitlines():
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == "adbench"
        if argv[1] == "run":  # resolved and checked, not run (they need patchcore's weights and minutes)
            rc, out, err = cli(capsys, *argv[1:], "--print-config")
            assert rc == 0, err
            runs += 1
            assert out.startswith("# adbench run: 4 runs (model x task)\n")
        else:
            rc, out, err = cli(capsys, *argv[1:])
            assert rc == 0 and out, err
    assert runs == 2


def test_a_name_registered_as_task_and_group_is_refused_where_it_is_used(capsys):
    registry.register_task("mini-twice", "tests.helpers:mini_all_task", "test task")
    registry.register_group("mini-twice", ["mini-all"])
    try:
        with pytest.raises(registry.RegistryError, match="'mini-twice' is registered both as a task .* and as a "
                                                         "task group"):
            registry.expand_tasks(["mini-twice"])
        assert registry.expand_tasks(["mini-both"]) == ["mini-all", "mini-binary"]  # other names still work
    finally:
        registry._extra["tasks"].pop("mini-twice")
        registry._extra_groups.pop("mini-twice")
