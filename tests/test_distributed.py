"""`adbench run` under real launchers (torchrun, accelerate launch) on the CPU: gloo, shards, exactly-once.

Each launch starts real processes that join one torch.distributed process group; the
tests compare their run directory with a single-process run of the same command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from adbench import registry
from adbench.data.demo import ensure_demo
from adbench.distributed import DistributedError, World, shares
from adbench.runner import stratum
from adbench.store import RunStore
from tests.helpers import write_mini_mmad

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = shutil.which("torchrun")
ACCELERATE = shutil.which("accelerate")
registry.register_task("mini-all", "tests.helpers:mini_all_task", "test task")

needs_torchrun = pytest.mark.skipif(TORCHRUN is None and not os.environ.get("CI"), reason="torchrun is not on PATH")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                              "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _torchrun(n: int) -> list[str]:
    # a free port per launch (--standalone), so launches in a row or in parallel never meet
    return [TORCHRUN or "torchrun", "--standalone", f"--nproc-per-node={n}"]


def free_port() -> int:
    """A port nothing listens on now (accelerate launch has no --standalone)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cmd: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def _run_dir(proc: subprocess.CompletedProcess) -> Path:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    ensure_demo(root)
    return root


# -- pure parts --------------------------------------------------------------------------------------


def test_world_reads_the_launcher_environment():
    assert World.from_env({}) == World(0, 1, 0)
    assert World.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    assert World.from_env({"WORLD_SIZE": "1", "LOCAL_RANK": "0"}).size == 1
    with pytest.raises(DistributedError, match="WORLD_SIZE='two' is not a whole number"):
        World.from_env({"WORLD_SIZE": "two"})
    with pytest.raises(DistributedError, match="RANK=4 is not below WORLD_SIZE=4"):
        World.from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(DistributedError, match="WORLD_SIZE=2 without RANK"):
        World.from_env({"WORLD_SIZE": "2"})


def test_shares_are_disjoint_complete_and_balanced_per_stratum(tmp_path):
    from adbench.data.mmad import read_mmad

    samples = read_mmad(write_mini_mmad(tmp_path / "data"))  # 48 samples in 12 strata of 4 or 8
    for n in (1, 2, 3, 5):
        parts = shares(samples, n, key=stratum)
        ids = [s.id for part in parts for s in part]
        assert sorted(ids) == sorted(s.id for s in samples) and len(ids) == len(set(ids))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        for key in {stratum(s) for s in samples}:
            counts = [sum(stratum(s) == key for s in part) for part in parts]
            assert max(counts) - min(counts) <= 1, (n, key, counts)
        order = {s.id: i for i, s in enumerate(samples)}
        assert all([order[s.id] for s in part] == sorted(order[s.id] for s in part) for part in parts)
        assert parts == shares(samples, n, key=stratum)  # deterministic: every rank computes the same


def test_store_reads_shards_after_samples_and_folds_them_into_one_file(tmp_path):
    from adbench.schema import Record

    def rec(i: str, answer: str) -> Record:
        return Record(id=i, dataset="D", category="c", qtype="q", label=0, gold="A", image="x.png", text=answer,
                      answer=answer, score=None, correct=answer == "A", error=None, parse_status="ok")

    store = RunStore(tmp_path / "run")
    store.dir.mkdir()
    store.append([rec("a", "A"), rec("b", "B")])
    store.append([rec("b", "A"), rec("c", "A")], rank=1)
    store.append([rec("d", "B")], rank=0)
    with open(store.shard_path(1), "ab") as f:
        f.write(b'{"id": "half')  # a kill mid-write
    assert [p.name for p in store.shards()] == ["samples.rank0.jsonl", "samples.rank1.jsonl"]
    got = {r.id: r.answer for r in store.load_records(repair=False)}  # a reader: shards by rank, later line wins
    assert got == {"a": "A", "b": "A", "c": "A", "d": "B"}
    assert store.shard_path(1).read_bytes().endswith(b"half")  # nothing changed without the lock
    with store.locked():
        store.fold_shards()
    assert not store.shards()
    assert [json.loads(x)["id"] for x in store.samples_path.read_text().splitlines()] == ["a", "d", "b", "c"]
    assert {r.id: r.answer for r in store.load_records()} == got


# -- torchrun / accelerate launch ------------------------------------------------------------------


@needs_torchrun
@pytest.mark.slow
@pytest.mark.parametrize("model", ["chance", "patchcore"])
def test_torchrun_two_processes_give_the_single_process_results(demo, tmp_path, model):
    args = ["run", "--model", model, "--task", "demo-binary", "--data-root", str(demo), "-T", "categories=cat,brick",
            "--limit", "8", "--batch-size", "2", "--no-progress"]  # both demo datasets, few support images
    single = _run_dir(_launch([sys.executable, "-m", "adbench", *args, "--out", str(tmp_path / "one")]))
    proc = _launch([*_torchrun(2), "-m", "adbench", *args, "--out", str(tmp_path / "two")])
    double = _run_dir(proc)
    assert double.relative_to(tmp_path / "two") == single.relative_to(tmp_path / "one")  # same run id
    assert proc.stdout.count("accuracy") == 1  # rank 0 prints the summary, rank 1 nothing
    assert sorted(p.name for p in double.iterdir()) == sorted(p.name for p in single.iterdir())  # no shard left
    one, two = _records(single), _records(double)
    ids = [r["id"] for r in two]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(r["id"] for r in one)
    a, b = _results(single), _results(double)
    assert b["metrics"] == a["metrics"] and b["counts"] == a["counts"] and b["complete"] is True
    by_id = {r["id"]: r for r in one}
    if model == "chance":
        assert all(r["answer"] == by_id[r["id"]]["answer"] for r in two)
        assert b["scored_by"]["samples_hash"] == a["scored_by"]["samples_hash"]
    else:  # PatchCore's features depend on the batch's other images in the last float digits, as with --batch-size
        assert all(r["score"] == pytest.approx(by_id[r["id"]]["score"], rel=1e-5) for r in two)
        for rule, entry in a["rules"].items():
            assert b["rules"][rule]["accuracy"] == entry["accuracy"]
    session = json.loads((double / "config.json").read_text())["sessions"][-1]
    assert session["world_size"] == 2 and [r["rank"] for r in session["ranks"]] == [0, 1]
    assert sum(r["new_records"] for r in session["ranks"]) == session["new_records"] == len(two)
    assert abs(session["ranks"][0]["new_records"] - session["ranks"][1]["new_records"]) <= 1


@pytest.mark.slow
@pytest.mark.skipif(ACCELERATE is None and not os.environ.get("CI"), reason="accelerate is not on PATH")
def test_accelerate_launch_runs_the_same_run(demo, tmp_path):
    args = ["run", "--model", "chance", "--task", "demo-binary", "--data-root", str(demo), "--limit", "10",
            "--no-progress", "--out", str(tmp_path)]
    single = _run_dir(_launch([sys.executable, "-m", "adbench", *args]))
    shutil.rmtree(single)
    # --multi_gpu is accelerate's multi-process launcher; on a machine without GPUs the processes use gloo
    proc = _launch([ACCELERATE or "accelerate", "launch", "--multi_gpu", "--num_processes", "2",
                    "--main_process_port", str(free_port()), "-m", "adbench", *args])
    run_dir = _run_dir(proc)
    assert run_dir == single
    assert json.loads((run_dir / "config.json").read_text())["sessions"][-1]["world_size"] == 2
    assert len({r["id"] for r in _records(run_dir)}) == len(_records(run_dir)) == 10


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank):
                return child.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


@needs_torchrun
@pytest.mark.slow
def test_kill_9_of_one_rank_then_another_world_size_records_every_sample_once(tmp_path):
    suite = write_mini_mmad(tmp_path / "data")
    args = ["-m", "tests.cli_with_test_models", "run", "--model", "slow", "--task", "mini-all", "--data-root",
            str(suite), "--batch-size", "1", "-M", "delay=0.05", "--no-progress"]
    ref = _run_dir(_launch([sys.executable, *args, "--out", str(tmp_path / "ref")]))
    out = tmp_path / "killed"
    launcher = subprocess.Popen([*_torchrun(2), *args, "--out", str(out)], cwd=ROOT, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        victim = None
        while time.time() < deadline and victim is None:
            shard = next(out.rglob("samples.rank1.jsonl"), None)
            if shard is not None and shard.read_bytes().count(b"\n") >= 5:
                victim = _rank_pid(launcher, 1)
            time.sleep(0.01)
        assert victim is not None, "rank 1 never wrote 5 records"
        os.kill(victim, signal.SIGKILL)
        _, err = launcher.communicate(timeout=120)  # the launcher stops rank 0: no rank waits forever
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode != 0
    run_dir = next(out.rglob("config.json")).parent
    store = RunStore(run_dir)
    assert [p.name for p in store.shards()] == ["samples.rank0.jsonl", "samples.rank1.jsonl"]
    partial = store.load_records(repair=False)  # readers see the shards of a killed session
    assert 5 <= len(partial) < 48 and len({r.id for r in partial}) == len(partial)

    proc = _launch([*_torchrun(3), *args, "--out", str(out)])
    assert _run_dir(proc) == run_dir
    assert not store.shards()
    ids = [r["id"] for r in _records(run_dir)]
    assert len(ids) == len(set(ids)) == 48 and sorted(ids) == sorted(r["id"] for r in _records(ref))
    answers = {r["id"]: r["answer"] for r in _records(ref)}
    assert all(answers[r["id"]] == r["answer"] for r in _records(run_dir))
    a, b = _results(ref), _results(run_dir)
    assert b["metrics"] == a["metrics"] and b["counts"] == a["counts"] and b["complete"] is True
    sessions = json.loads((run_dir / "config.json").read_text())["sessions"]
    assert [s["world_size"] for s in sessions] == [2, 3] and "ended" not in sessions[0]
    assert [r["rank"] for r in sessions[1]["ranks"]] == [0, 1, 2]
    assert sessions[1]["new_records"] == 48 - len(partial)


@needs_torchrun
@pytest.mark.slow
def test_an_error_on_rank_0_stops_every_rank_with_it_printed(demo, tmp_path):
    """A busy run directory (another process holds its lock): rank 0's error reaches rank 1, none waits."""
    args = ["-m", "adbench", "run", "--model", "chance", "--task", "demo-binary", "--data-root", str(demo),
            "--limit", "4", "--no-progress", "--out", str(tmp_path), "--run-id", "busy"]
    store = RunStore(tmp_path / "demo-binary" / "chance" / "busy")
    with store.locked():
        proc = _launch([*_torchrun(2), *args, "--dist-timeout", "60"], timeout=120)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("adbench: error:")]
    # rank 0's error is printed by rank 0, or by rank 1 which receives it, or both: whichever exits first makes
    # the launcher stop the other, sometimes before it has printed
    assert any("run directory" in line and "is in use by another adbench process" in line for line in errors)
    assert all(line.startswith(("adbench: error: [rank 0/2] run directory",
                                "adbench: error: [rank 1/2] stopped with rank 0: run directory")) for line in errors)
    assert not (store.dir / "samples.jsonl").exists() and not store.shards()
