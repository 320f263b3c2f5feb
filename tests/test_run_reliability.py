"""Issue 14: runs that fail, stop, run concurrently with `score`, or meet damaged files and full disks.

Real components throughout: `adbench run` subprocesses, the official openai client against
tests/chat_server.py, real files (a run's own files rewritten in the wrong shape, /dev/full,
a file-size limit that makes the kernel refuse a write mid-batch).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from adbench import registry
from adbench.model import Model, OutputKind
from adbench.runner import EXIT_BUDGET, EXIT_FAILED, RunSpec, run
from adbench.schema import ParseStatus, Query, Response
from adbench.store import RunStore, StoreError
from tests.chat_server import ChatServer
from tests.helpers import cli, write_mini_mmad

ROOT = Path(__file__).resolve().parent.parent
registry.register_task("mini-all", "tests.helpers:mini_all_task", "test task")
registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")
registry.register_model("raising", "tests.test_run_reliability:RaisingModel", "test model")
registry.register_model("slow", "tests.helpers:SlowModel", "test model")

RUNNER = (
    "import sys; from adbench import registry; "
    "registry.register_model('slow', 'tests.helpers:SlowModel'); "
    "registry.register_task('mini-all', 'tests.helpers:mini_all_task'); "
    "from adbench.cli import main; sys.exit(main(sys.argv[1:]))"
)
PRICE = {"price_in": 2.5, "price_out": 10.0}  # USD per 1M tokens


class RaisingModel(Model):
    """Raises for every query whose image path contains `fail` ("" = every query); answers A otherwise."""

    name = "raising"
    output = OutputKind.GENERATIVE

    def __init__(self, fail: str = "", seed: int = 0) -> None:
        self.fail = fail

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        for q in queries:
            if self.fail in Path(q.image).as_posix():
                raise RuntimeError(f"the adapter cannot answer ({self.fail or 'anything'})")
        return [Response(text="A", answer="A", parse_status=ParseStatus.PARSED) for _ in queries]


@pytest.fixture()
def suite(tmp_path):
    return write_mini_mmad(tmp_path / "data")


@pytest.fixture()
def secret(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    return "sk-test-0123456789abcdef"


@pytest.fixture()
def server():
    with ChatServer() as srv:
        yield srv


def lines(run_dir: Path) -> list[dict]:
    path = run_dir / "samples.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def run_args(suite: Path, out: Path, model: str = "chance", task: str = "mini-all", *extra: str) -> list[str]:
    return ["run", "--model", model, "--task", task, "--data-root", str(suite), "--out", str(out), "--no-progress",
            *extra]


def api_args(srv_url: str, tmp_path: Path, **margs) -> list[str]:
    args = {"base_url": srv_url, "model": "test-vlm", "cache": "false", "backoff_base": 0.01, "timeout": 5, **margs}
    return [x for k, v in args.items() for x in ("-M", f"{k}={v}")]


def api_spec(srv: ChatServer, suite: Path, out: Path, max_cost=None, limit=8, **margs) -> RunSpec:
    """The openai adapter against the local server, priced, one-shot queries in batches of 2."""
    args = {"base_url": srv.url, "model": "test-vlm", "cache": False, "backoff_base": 0.01, "timeout": 5,
            "concurrency": 1, **PRICE, **margs}
    return RunSpec(model="openai-compatible", task="mini-binary", data_root=suite, out=out, limit=limit,
                   batch_size=2, max_cost=max_cost, progress=False, model_args=args)


# -- 1. `adbench score` during a run ------------------------------------------------------------


def test_score_during_a_real_run_changes_nothing_and_loses_no_record(suite, tmp_path, capsys):
    args = ["run", "--model", "slow", "--task", "mini-all", "--data-root", str(suite), "--batch-size", "1",
            "-M", "delay=0.03", "--no-progress", "--out", str(tmp_path / "runs")]
    p = subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    samples = None
    deadline = time.time() + 60
    while time.time() < deadline and samples is None:
        found = list((tmp_path / "runs").rglob("samples.jsonl"))
        if found and found[0].read_bytes().count(b"\n") >= 3:
            samples = found[0]
        time.sleep(0.005)
    assert samples is not None, p.communicate()
    run_dir = samples.parent
    in_progress = 0
    while p.poll() is None:  # score as often as possible while the run appends
        rc, out, err = cli(capsys, "score", str(run_dir))
        assert rc == 0, err
        if "a run is in progress" in err:
            in_progress += 1
            assert "results.json was not written" in err
            n = int(out.split("(n=")[1].split(",")[0])
            assert 3 <= n <= 48 and ("incomplete" in out) == (n < 48)
    stdout, stderr = p.communicate()
    assert p.returncode == 0, stderr
    assert in_progress >= 3
    ids = [r["id"] for r in lines(run_dir)]
    assert len(ids) == len(set(ids)) == 48  # nothing lost, nothing twice
    assert samples.read_bytes().endswith(b"\n")
    final = results_of(run_dir)
    assert final["complete"] is True and final["counts"]["n"] == 48
    # the same command resumes (nothing to do) and `score` now rewrites the same figures
    again = subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stderr
    assert len(lines(run_dir)) == 48
    (run_dir / "results.json").unlink()
    assert cli(capsys, "score", str(run_dir))[0] == 0
    assert results_of(run_dir)["metrics"] == final["metrics"]


def test_score_on_a_locked_run_reads_a_snapshot_and_leaves_every_file_alone(suite, tmp_path, capsys):
    rc, out, _ = cli(capsys, *run_args(suite, tmp_path / "runs"))
    run_dir = Path(out.strip().splitlines()[-1])
    samples = run_dir / "samples.jsonl"
    with samples.open("a") as f:
        f.write('{"id": "half a li')  # what a run's write in progress looks like to a reader
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with RunStore(run_dir).locked():  # as a run holds it
        rc, out, err = cli(capsys, "score", str(run_dir))
    assert rc == 0 and "(n=48, failed=0" in out
    assert "a run is in progress" in err and "results.json was not written" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # the partial line too
    rc, _, err = cli(capsys, "score", str(run_dir))  # lock free: score repairs the tail and writes
    assert rc == 0 and "in progress" not in err
    assert samples.read_bytes() == before["samples.jsonl"][: before["samples.jsonl"].rfind(b"\n") + 1]


# -- 2. score keeps what the run knew ------------------------------------------------------------


def test_score_keeps_complete_n_expected_stopped_and_budget(server, suite, tmp_path, capsys, secret):
    per_sample = run(api_spec(server, suite, tmp_path / "probe", limit=1)).results["usage"]["cost_usd"]
    o = run(api_spec(server, suite, tmp_path / "runs", max_cost=4.5 * per_sample))
    assert o.stopped and o.exit_code == EXIT_BUDGET
    before = results_of(o.run_dir)
    assert before["complete"] is False and before["counts"]["n_expected"] == 8 and "budget" in before["stopped"]
    assert before["budget"] == {"max_cost_usd": 4.5 * per_sample, "enforced": True}
    before["extra"] = {"kept": True}  # a key adbench does not derive: rescoring keeps it too
    (o.run_dir / "results.json").write_text(json.dumps(before))
    rc, out, _ = cli(capsys, "score", str(o.run_dir))
    assert rc == 0 and "incomplete: 4 of 8 samples recorded (stopped: budget" in out
    after = results_of(o.run_dir)
    assert after == before
    # a run written before config.json had n_expected: the previous results.json supplies it
    config = json.loads((o.run_dir / "config.json").read_text())
    del config["n_expected"]
    (o.run_dir / "config.json").write_text(json.dumps(config))
    assert cli(capsys, "score", str(o.run_dir))[0] == 0
    assert results_of(o.run_dir) == before
    rc, out, _ = cli(capsys, "leaderboard", str(o.run_dir))
    assert "| openai-compatible¶" in out and "¶ incomplete: 4 of 8 samples recorded (stopped: budget" in out


# -- 6. --max-cost ---------------------------------------------------------------------------------


def test_max_cost_is_checked_before_the_first_batch_of_a_resumed_run(server, suite, tmp_path, secret):
    per_sample = run(api_spec(server, suite, tmp_path / "probe", limit=1)).results["usage"]["cost_usd"]
    budget = 4.5 * per_sample  # every sample costs the same: two batches of two, then the third would pass it
    first = run(api_spec(server, suite, tmp_path / "runs", max_cost=budget))
    assert first.n_new == 4 and first.stopped
    sent = server.n_requests
    for _ in range(2):  # resumed over budget: not one more request, not one more record
        again = run(api_spec(server, suite, tmp_path / "runs", max_cost=budget))
        assert again.n_new == 0 and again.stopped and "budget" in again.stopped
        assert again.exit_code == EXIT_BUDGET
    assert server.n_requests == sent and len(lines(first.run_dir)) == 4
    # a larger budget continues where the run stopped
    more = run(api_spec(server, suite, tmp_path / "runs", max_cost=6.5 * per_sample))
    assert more.n_new == 2 and len(lines(first.run_dir)) == 6 and server.n_requests == sent + 2
    # a budget of 0 allows nothing, not even a first batch
    zero = run(api_spec(server, suite, tmp_path / "zero", max_cost=0.0))
    assert zero.n_new == 0 and zero.stopped and server.n_requests == sent + 2


def test_negative_budget_is_refused_and_a_model_without_price_is_said_plainly(server, suite, tmp_path, capsys,
                                                                              secret):
    rc, _, err = cli(capsys, *run_args(suite, tmp_path / "runs"), "--max-cost", "-1")
    assert rc == 2 and err.strip() == "adbench: error: --max-cost must be a number of USD >= 0, got -1"
    assert not (tmp_path / "runs").exists()
    # openai-compatible without -M price_in/price_out: the model is in no price table
    rc, out, err = cli(capsys, *run_args(suite, tmp_path / "runs", "openai-compatible", "mini-binary"),
                       "--limit", "4", "--max-cost", "0.01", *api_args(server.url, tmp_path))
    assert rc == 0, err
    assert "adbench: warning: --max-cost cannot be enforced: openai-compatible has no price" in err
    run_dir = Path(out.strip().splitlines()[-1])
    session = json.loads((run_dir / "config.json").read_text())["sessions"][-1]
    assert session["budget"]["enforced"] is False and "cannot be enforced" in session["budget"]["note"]
    assert results_of(run_dir)["budget"]["enforced"] is False
    assert len(lines(run_dir)) == 4  # not stopped: there is no cost to stop on


# -- 10. a run where every request failed ------------------------------------------------------------


def test_bad_api_key_stops_after_the_first_batch_exits_1_and_a_fixed_rerun_continues(server, suite, tmp_path,
                                                                                      capsys, secret):
    server.faults.extend(["401_echo"] * 100)
    t = time.monotonic()
    argv = [*run_args(suite, tmp_path / "runs", "openai-compatible", "mini-binary"), "--limit", "8",
            "--batch-size", "4", *api_args(server.url, tmp_path, concurrency=2)]
    rc, out, err = cli(capsys, *argv)
    assert rc == EXIT_FAILED
    assert time.monotonic() - t < 20 and server.n_requests == 4  # one batch, no retry of a 401
    assert "the model failed its first queries, all with: HTTP 401" in err and "***" in err
    assert secret not in out + err
    run_dir = Path(out.strip().splitlines()[-1])
    assert lines(run_dir) == []  # a setup error is not a table of wrong answers
    res = results_of(run_dir)
    assert res["complete"] is False and res["counts"]["n"] == 0 and "HTTP 401" in res["stopped"]
    rc, table, _ = cli(capsys, "leaderboard", str(run_dir))
    assert "openai-compatible¶" in table and "¶ incomplete: 0 of 8 samples recorded" in table
    server.faults.clear()  # the key is fixed: the same command continues
    rc, out, err = cli(capsys, *argv)
    assert rc == 0, err
    assert len(lines(run_dir)) == 8 and all(r["answer"] == "A" for r in lines(run_dir))
    assert results_of(run_dir)["complete"] is True and "stopped" not in results_of(run_dir)


def test_no_server_stops_after_the_first_batch(suite, tmp_path, capsys, secret):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out, err = cli(capsys, *run_args(suite, tmp_path / "runs", "openai-compatible", "mini-binary"),
                       "--limit", "8", "--batch-size", "4",
                       *api_args(f"http://127.0.0.1:{port}/v1", tmp_path, max_retries=1))
    assert rc == EXIT_FAILED and "connection error" in err and "(after 2 requests)" in err
    assert lines(Path(out.strip().splitlines()[-1])) == []


def test_an_adapter_that_raises_for_every_query_stops_at_once(suite, tmp_path, capsys):
    rc, out, err = cli(capsys, *run_args(suite, tmp_path / "runs", "raising"))
    assert rc == EXIT_FAILED
    assert "the model failed its first queries, all with: RuntimeError: the adapter cannot answer (anything)" in err
    assert "accuracy - (n=0" in out and "incomplete: 0 of 48 samples recorded" in out
    assert lines(Path(out.strip().splitlines()[-1])) == []


def test_failures_over_max_failed_exit_1_and_tables_mark_the_row(suite, tmp_path, capsys):
    # every DS-B query fails: exactly half of the 48 samples (DS-A comes first, so the first batch answers)
    argv = run_args(suite, tmp_path / "runs", "raising", "mini-all", "-M", "fail=DS-B")
    rc, out, err = cli(capsys, *argv)
    assert rc == 0, err  # 24 of 48 is not more than the default share 0.5
    assert "24 of 48 samples failed (most often, 24x: RuntimeError: the adapter cannot answer (DS-B))" in out
    run_dir = Path(out.strip().splitlines()[-1])
    assert len(lines(run_dir)) == 48
    rc, out, err = cli(capsys, *run_args(suite, tmp_path / "other", "raising", "mini-all", "-M", "fail=DS-B",
                                         "--max-failed", "0.4"))
    assert rc == EXIT_FAILED and "24 of the 48 samples asked in this session failed (more than --max-failed 0.4" in err
    rc, out, err = cli(capsys, *run_args(suite, tmp_path / "third", "raising", "mini-all", "-M", "fail=DS-B",
                                         "--max-failed", "24"))
    assert rc == 0, err
    assert cli(capsys, *run_args(suite, tmp_path / "r", "raising", "mini-all", "--max-failed", "1.5"))[0] == 2
    # every table marks the run: plain leaderboard and layouts, markdown, csv and latex
    for layout in ([], ["--layout", "datasets"], ["--layout", "table3"]):
        rc, md, _ = cli(capsys, "leaderboard", *layout, str(run_dir))
        assert rc == 0 and "raising§" in md
        assert "§ some samples failed" in md and "raising: § 24 of 48 samples failed" in md
        rc, csv_text, _ = cli(capsys, "leaderboard", *layout, str(run_dir), "--format", "csv")
        assert csv_text.splitlines()[1].split(",")[int(bool(layout))] == "raising§"
        rc, tex, _ = cli(capsys, "leaderboard", *layout, str(run_dir), "--format", "latex")
        assert "raising\\S{}" in tex and "% § some samples failed" in tex  # one latex writer: \S{} everywhere
    # the HTML report says it in the same words
    assert cli(capsys, "report", str(run_dir), "--out", str(tmp_path / "r.html"))[0] == 0
    assert "<dt>status</dt><dd>24 of 48 samples failed" in (tmp_path / "r.html").read_text()
    # --compare still finds the row by its label (the mark is not part of it)
    assert cli(capsys, "leaderboard", "--layout", "datasets", str(run_dir), "--compare", "raising")[0] == 0
    # the records stay valid: a resumed run does not ask the permanent failures again
    rc, out, _ = cli(capsys, *argv)
    assert rc == 0 and len(lines(run_dir)) == 48


# -- run ids and data roots ------------------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["../../x", "a/b", "", ".hidden", "..", "a\\b"])
def test_run_ids_that_are_not_folder_names_are_refused(suite, tmp_path, capsys, run_id):
    rc, _, err = cli(capsys, *run_args(suite, tmp_path / "out" / "runs"), "--run-id", run_id)
    assert rc == 2 and "--run-id" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_a_data_root_that_does_not_exist_is_an_error_that_says_how_to_make_the_demo(tmp_path, capsys):
    new = tmp_path / "new" / "dir"
    rc, _, err = cli(capsys, "run", "--model", "chance", "--task", "demo-binary", "--data-root", str(new),
                     "--out", str(tmp_path / "runs"), "--no-progress")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"data root {new} (--data-root) does not exist" in err
    assert f"adbench data demo --out {new / 'demo'}" in err
    assert not new.exists() and not (tmp_path / "runs").exists()  # nothing written anywhere
    rc, _, err = cli(capsys, "variance", "--model", "chance", "--task", "demo-binary", "--data-root", str(new))
    assert rc == 2 and "does not exist" in err and not new.exists()
    rc, _, err = cli(capsys, "train", "--recipe", "tiny", "--out", str(tmp_path / "t"), "--data-root", str(new))
    assert rc == 2 and "does not exist" in err and not new.exists()
    rc, _, err = cli(capsys, "data", "check", "--data-root", str(new))
    assert rc == 1 and "(the folder does not exist)" in err
    (tmp_path / "file").write_text("x")
    rc, _, err = cli(capsys, *run_args(tmp_path / "file", tmp_path / "runs"))
    assert rc == 2 and "is a file, not a folder" in err


# -- 12. run files of the wrong shape, unwritable outputs, full disks -----------------------------


@pytest.fixture()
def finished(suite, tmp_path, capsys):
    rc, out, _ = cli(capsys, *run_args(suite, tmp_path / "runs", "chance", "mini-all", "--limit", "6"))
    assert rc == 0
    return Path(out.strip().splitlines()[-1])


@pytest.mark.parametrize("name,content,expected", [
    ("config.json", "[1, 2]", "config.json: expected a JSON object (a run's configuration), got a list"),
    ("config.json", '{"task": "mini-all", "model": "chance", "task_args": 5}', "'task_args' should be an object"),
    ("config.json", '{"model": "chance"}', "config.json: no 'task'"),
    ("samples.jsonl", "[1, 2]\n", "samples.jsonl:1: expected a JSON object (a Record), got a list"),
    ("samples.jsonl", '{"dataset": "x"}\n', "samples.jsonl:1: a record without an 'id'"),
    ("samples.jsonl", "7\n", "samples.jsonl:1: expected a JSON object (a Record), got a number"),
])
def test_run_files_of_the_wrong_shape_are_one_line_errors(finished, suite, tmp_path, capsys, name, content,
                                                          expected):
    path = finished / name
    if name == "samples.jsonl":
        good = path.read_text().splitlines(keepends=True)
        content = good[0] + content  # the damage on line 2
        expected = expected.replace("jsonl:1:", "jsonl:2:")
    path.write_text(content)
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    for argv in (["score", str(finished)],
                 run_args(suite, tmp_path / "runs", "chance", "mini-all", "--limit", "6")):
        rc, _, err = cli(capsys, *argv)
        assert rc == 2 and expected in err and len(err.strip().splitlines()) == 1, err
        assert {p.name: p.read_bytes() for p in finished.iterdir()} == before  # nothing changed


def test_a_record_field_of_the_wrong_type_names_line_and_field(finished, capsys):
    path = finished / "samples.jsonl"
    recs = path.read_text().splitlines()
    bad = json.loads(recs[3])
    bad["usage"] = 5
    recs[3] = json.dumps(bad)
    path.write_text("\n".join(recs) + "\n")
    rc, _, err = cli(capsys, "score", str(finished))
    assert rc == 2 and f"samples.jsonl:4: record {bad['id']!r}: usage should be an object, got a number" in err


@pytest.mark.parametrize("content,expected", [
    ("[]", "results.json: expected a JSON object (a run's results), got a list"),
    ('{"task": "t", "model": "m", "metrics": 5, "counts": {}}', "'metrics' should be an object, got a number"),
    ('{"task": "t", "model": "m", "metrics": {"DS": 1}, "counts": {}}', "metrics['DS'] should be an object"),
    ('{"task": "t", "model": "m", "metrics": {}}', "results.json: no 'counts'"),
])
def test_results_of_the_wrong_shape_are_one_line_errors_in_every_table(finished, capsys, content, expected):
    (finished / "results.json").write_text(content)
    for argv in (["leaderboard", str(finished)], ["leaderboard", "--layout", "table1", str(finished)],
                 ["report", str(finished)]):
        rc, _, err = cli(capsys, *argv)
        assert rc == 2 and expected in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_output_paths_that_are_files_or_folders(finished, suite, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc, _, err = cli(capsys, *run_args(suite, blocker))
    assert rc == 2 and f"{blocker} is a file, not a folder" in err and blocker.read_text() == "not a folder"
    rc, _, err = cli(capsys, "leaderboard", str(finished), "--out", str(tmp_path))
    assert rc == 2 and f"cannot write {tmp_path}: it is a folder" in err


def test_append_on_a_full_disk_raises_a_store_error(tmp_path):
    """/dev/full refuses every write with ENOSPC: the store's append says so, naming the file."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    from adbench.schema import Record

    store = RunStore(tmp_path)
    store.samples_path.symlink_to("/dev/full")
    rec = Record(id="x", dataset="d", category="c", qtype="q", label=0, gold="A", image="i", text="A", answer="A",
                 score=None, correct=True, error=None, parse_status="ok")
    with pytest.raises(StoreError, match=r"cannot append to .*samples\.jsonl: No space left on device \(disk full\); "
                                         r"the 1 records of this batch were not saved"):
        store.append([rec])


FSIZE_RUNNER = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (10000, 10000)); " + RUNNER
)


def test_a_write_refused_mid_run_leaves_no_partial_line_and_the_run_resumes(suite, tmp_path):
    """A file-size limit makes the kernel refuse samples.jsonl's growth mid-batch, as a full disk does."""
    args = ["run", "--model", "slow", "--task", "mini-all", "--data-root", str(suite), "--batch-size", "5",
            "-M", "delay=0", "--no-progress"]
    limited = subprocess.run([sys.executable, "-c", FSIZE_RUNNER, *args, "--out", str(tmp_path / "runs")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert limited.returncode == 2, limited.stderr
    err = limited.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot append to" in err[0] and "File too large" in err[0]
    assert "the earlier ones are intact" in err[0] and "Traceback" not in limited.stderr
    (samples,) = (tmp_path / "runs").rglob("samples.jsonl")
    data = samples.read_bytes()
    assert 0 < len(data) <= 10000 and data.endswith(b"\n")  # the refused batch left nothing behind
    n_before = data.count(b"\n")
    assert n_before % 5 == 0  # whole batches only
    done = subprocess.run([sys.executable, "-c", RUNNER, *args, "--out", str(tmp_path / "runs")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in lines(samples.parent)]
    assert len(ids) == len(set(ids)) == 48
    ref = run(RunSpec(model="slow", task="mini-all", data_root=suite, out=tmp_path / "ref", batch_size=5,
                      model_args={"delay": 0}, progress=False))
    assert results_of(samples.parent)["metrics"] == ref.results["metrics"]


def test_results_write_refused_keeps_the_previous_results(finished, tmp_path):
    """The atomic results.json write under a size limit: an error naming the file, the old version intact."""
    script = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100)); "
        "from adbench import registry; registry.register_task('mini-all', 'tests.helpers:mini_all_task'); "
        "from adbench.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    before = (finished / "results.json").read_bytes()
    p = subprocess.run([sys.executable, "-c", script, "score", str(finished)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"cannot write {finished / 'results.json'}: File too large" in p.stderr
    assert (finished / "results.json").read_bytes() == before
    assert not [x for x in finished.iterdir() if x.name.startswith(".results.json.tmp")]


def test_interrupted_run_exits_130(suite, tmp_path):
    args = ["run", "--model", "slow", "--task", "mini-all", "--data-root", str(suite), "--batch-size", "1",
            "-M", "delay=0.05", "--no-progress", "--out", str(tmp_path / "runs")]
    p = subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not [f for f in (tmp_path / "runs").rglob("samples.jsonl") if f.stat().st_size]:
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" in err


def test_an_incomplete_score_based_run_marks_every_threshold_row_and_score_keeps_it(suite, tmp_path, capsys):
    registry.register_model("mean-scorer", "tests.test_tables:MeanScorer", "test model")
    rc, out, _ = cli(capsys, *run_args(suite, tmp_path / "runs", "mean-scorer", "mini-binary"))
    run_dir = Path(out.strip().splitlines()[-1])
    samples = run_dir / "samples.jsonl"
    kept = [x for x in samples.read_text().splitlines() if '"role": "calibration"' in x or "DS-A" in x]
    samples.write_text("\n".join(kept) + "\n")  # as if stopped before the DS-B samples
    rc, out, _ = cli(capsys, "score", str(run_dir))
    assert rc == 0 and "incomplete: 16 of 32 samples recorded" in out
    res = results_of(run_dir)
    assert res["complete"] is False and res["counts"]["n_expected"] == 32 and res["counts"]["n"] == 16
    rc, table, _ = cli(capsys, "leaderboard", str(run_dir))
    labels = [ln.split("|")[1].strip() for ln in table.splitlines() if ln.startswith("| mean")]
    assert labels == ["mean-scorer*¶", "mean-scorer (0.5)¶", "mean-scorer (calib.)¶"]
    assert table.count("incomplete: 16 of 32 samples recorded") == 1  # one run, one note


def test_an_output_folder_that_cannot_be_created_is_a_one_line_error(suite, capsys):
    """Tests run as root here, so chmod cannot make a folder read-only; sysfs refuses new folders to root too."""
    target = Path("/sys/adbench-test-runs")
    try:
        target.mkdir()
    except OSError:
        pass
    else:  # pragma: no cover - a system where sysfs accepts folders
        target.rmdir()
        pytest.skip("/sys accepts new folders here")
    rc, _, err = cli(capsys, *run_args(suite, target))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"cannot create the run directory {target}/mini-all/chance/" in err
