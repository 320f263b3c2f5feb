"""Runs end to end on a miniature MMAD-format suite: resume, kill -9, failures, limits."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adbench import registry
from adbench.cli import main
from adbench.data.paths import DataError
from adbench.runner import RunSpec, run, stratified_subset
from adbench.store import RunStore
from tests.helpers import write_mini_mmad

ROOT = Path(__file__).resolve().parent.parent
registry.register_model("slow", "tests.helpers:SlowModel", "test model")
registry.register_model("file-prompt", "tests.helpers:FilePromptModel", "test model")
registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")
registry.register_task("mini-all", "tests.helpers:mini_all_task", "test task")

RUNNER = (
    "import sys; from adbench import registry; "
    "registry.register_model('slow', 'tests.helpers:SlowModel'); "
    "registry.register_task('mini-all', 'tests.helpers:mini_all_task'); "
    "from adbench.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture()
def suite(tmp_path):
    return write_mini_mmad(tmp_path / "data")


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def spec(suite, out, **kw):
    return RunSpec(model=kw.pop("model", "chance"), task=kw.pop("task", "mini-all"), data_root=suite, out=out,
                   progress=False, **kw)


def test_run_writes_records_config_results(suite, tmp_path):
    o = run(spec(suite, tmp_path / "runs", batch_size=3))
    recs = lines(o.run_dir)
    # 2 datasets x 2 categories x (4 good + 4 bad) images; bad images have a second question
    assert len(recs) == 2 * 2 * (8 + 4)
    for r in recs:
        for key in ("id", "dataset", "category", "qtype", "gold", "text", "answer", "score", "correct", "error", "usage"):
            assert key in r
    cfg = json.loads((o.run_dir / "config.json").read_text())
    for key in ("prompt_hash", "task_hash", "samples_hash", "seed", "model_args", "environment", "started_at"):
        assert key in cfg
    assert cfg["environment"]["packages"]["numpy"]
    assert cfg["sessions"][0]["ended"]
    res = json.loads((o.run_dir / "results.json").read_text())
    assert res["task"] == "mini-all" and res["model"] == "chance"
    assert set(res["metrics"]) == {"DS-A", "DS-B", "average"}
    assert res["counts"] == {"n": 48, "n_failed": 0, "n_unparsed": 0, "n_expected": 48}
    # the headline equals an independent recomputation from the records
    correct = [r["correct"] for r in recs if r["dataset"] == "DS-A" and r["qtype"] == "Defect Classification"]
    assert res["metrics"]["DS-A"]["qtypes"]["Defect Classification"]["accuracy"] == pytest.approx(sum(correct) / len(correct))


def test_same_command_resumes_and_skips_finished(suite, tmp_path):
    first = run(spec(suite, tmp_path / "runs", limit=10))
    again = run(spec(suite, tmp_path / "runs", limit=10))
    assert again.run_dir == first.run_dir and again.n_new == 0
    assert len(lines(first.run_dir)) == 10
    assert again.results["metrics"] == first.results["metrics"]
    assert len(json.loads((first.run_dir / "config.json").read_text())["sessions"]) == 2


def test_resuming_a_run_whose_prompt_text_changed_is_refused(suite, tmp_path):
    """An instruction file edited in place keeps the run id; its replies must not join the old ones."""
    from adbench.runner import RunError

    prompt = tmp_path / "instruction.txt"
    prompt.write_text("Answer with a letter.\n", encoding="utf-8")
    first = run(spec(suite, tmp_path / "runs", model="file-prompt", limit=4,
                     model_args={"instruction_file": str(prompt)}))
    prompt.write_text("Answer with a letter, please.\n", encoding="utf-8")
    with pytest.raises(RunError, match="holds a run with a different prompt_hash .*choose another --run-id"):
        run(spec(suite, tmp_path / "runs", model="file-prompt", limit=4, model_args={"instruction_file": str(prompt)}))
    assert len(lines(first.run_dir)) == 4  # nothing was added


def test_partial_last_line_is_cut_and_redone(suite, tmp_path):
    o = run(spec(suite, tmp_path / "runs"))
    path = o.run_dir / "samples.jsonl"
    full = path.read_text()
    kept = full.splitlines(keepends=True)
    path.write_text("".join(kept[:-3]) + kept[-3][: len(kept[-3]) // 2])  # crash mid-write
    again = run(spec(suite, tmp_path / "runs"))
    assert again.n_new == 3
    assert sorted(r["id"] for r in lines(o.run_dir)) == sorted(json.loads(x)["id"] for x in kept)
    assert again.results["metrics"] == o.results["metrics"]


def test_kill_9_midway_then_resume_gives_exactly_once_and_same_metrics(suite, tmp_path):
    args = ["run", "--model", "slow", "--task", "mini-all", "--data-root", str(suite), "--batch-size", "1",
            "-M", "delay=0.02", "--no-progress"]
    ref = subprocess.run([sys.executable, "-c", RUNNER, *args, "--out", str(tmp_path / "ref")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    ref_dir = Path(ref.stdout.strip().splitlines()[-1])
    out = tmp_path / "killed"
    for kill_after in (5, 17, 31):  # kill three times at different points
        p = subprocess.Popen([sys.executable, "-c", RUNNER, *args, "--out", str(out)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            files = list(out.rglob("samples.jsonl"))
            if files and files[0].read_bytes().count(b"\n") >= kill_after:
                break
            time.sleep(0.005)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    done = subprocess.run([sys.executable, "-c", RUNNER, *args, "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    ids = [r["id"] for r in lines(run_dir)]
    assert len(ids) == len(set(ids)) == 48  # every sample exactly once
    assert sorted(ids) == sorted(r["id"] for r in lines(ref_dir))
    by_id = {r["id"]: r["answer"] for r in lines(ref_dir)}
    assert all(by_id[r["id"]] == r["answer"] for r in lines(run_dir))
    a = json.loads((run_dir / "results.json").read_text())
    b = json.loads((ref_dir / "results.json").read_text())
    assert a["metrics"] == b["metrics"] and a["counts"] == b["counts"]
    assert len(json.loads((run_dir / "config.json").read_text())["sessions"]) == 4


def test_corrupt_image_becomes_a_recorded_failure(suite, tmp_path):
    bad = suite / "DS-A/c1/image/crack/001.png"
    bad.write_bytes(b"not a png at all")
    o = run(spec(suite, tmp_path / "runs", task="mini-binary"))
    recs = {r["id"]: r for r in lines(o.run_dir)}
    failed = recs["DS-A/c1/image/crack/001.png#0"]
    assert failed["error"] and str(bad) in failed["error"]
    assert failed["correct"] is False and failed["answer"] is None
    assert o.results["counts"]["n_failed"] == 1
    assert o.results["counts"]["n"] == 32


def test_missing_reference_image_is_a_failure_not_a_skip(suite, tmp_path):
    (suite / "DS-B/c2/train/good/000.png").unlink()  # first random template of every DS-B/c2 image
    o = run(spec(suite, tmp_path / "runs", task="mini-binary"))
    failed = [r for r in lines(o.run_dir) if r["error"]]
    assert len(failed) == 8 and all("000.png" in r["error"] and "not found" in r["error"] for r in failed)


def test_malformed_index_names_file_and_entry(suite, tmp_path):
    index = suite / "mmad.json"
    data = json.loads(index.read_text())
    key = next(iter(data))
    data[key]["conversation"][0]["Answer"] = "Z"
    index.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"{index}.*{key}.*Answer 'Z'"):
        run(spec(suite, tmp_path / "runs"))
    index.write_text("{not json")
    with pytest.raises(DataError, match=f"{index}: malformed JSON at line 1"):
        run(spec(suite, tmp_path / "runs"))


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd"])
def test_index_paths_escaping_the_root_are_rejected(suite, tmp_path, bad):
    index = suite / "mmad.json"
    data = json.loads(index.read_text())
    key = next(iter(data))
    data[key]["random_templates"] = [bad]
    index.write_text(json.dumps(data))
    with pytest.raises(DataError, match=bad.replace(".", r"\.")):
        run(spec(suite, tmp_path / "runs"))


def test_limit_is_stratified_and_deterministic(suite, tmp_path):
    from adbench.data.mmad import read_mmad

    samples = [s for s in read_mmad(suite) if s.qtype == "Anomaly Detection"]
    sub = stratified_subset(samples, 8, seed=0)
    assert len(sub) == 8
    # 2 datasets x 2 categories x 2 labels = 8 strata: one of each
    assert len({(s.dataset, s.category, s.label) for s in sub}) == 8
    assert [s.id for s in sub] == [s.id for s in stratified_subset(samples, 8, seed=0)]
    assert [s.id for s in sub] != [s.id for s in stratified_subset(samples, 8, seed=1)]
    assert [s.id for s in sub] != [s.id for s in samples[:8]]
    # fewer samples than strata: still every dataset
    small = stratified_subset(samples, 2, seed=0)
    assert sorted(s.dataset for s in small) == ["DS-A", "DS-B"]


def test_unknown_names_list_valid_ones(suite, tmp_path, capsys):
    assert main(["run", "--model", "nope", "--task", "mini-all", "--data-root", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "chance" in err and "patchcore" in err
    assert main(["run", "--model", "chance", "--task", "nope", "--data-root", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'nope'" in err and "demo-binary" in err
    assert main(["run", "--model", "chance", "-M", "temperature=1", "--task", "mini-all", "--data-root",
                 str(suite)]) == 2
    assert "does not take -M temperature; it takes: seed" in capsys.readouterr().err


def test_cli_run_score_and_leaderboard(suite, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "--model", "chance", "--task", "mini-all", "--data-root", str(suite), "--out", str(out),
                 "--no-progress"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert run_dir.is_dir()
    before = json.loads((run_dir / "results.json").read_text())
    (run_dir / "results.json").unlink()
    assert main(["score", str(run_dir)]) == 0
    after = json.loads((run_dir / "results.json").read_text())
    assert after["metrics"] == before["metrics"]
    capsys.readouterr()
    assert main(["leaderboard", str(run_dir)]) == 0
    table = capsys.readouterr().out
    avg = 100 * after["metrics"]["average"]["accuracy"]
    assert "| Model" in table and "DS-A" in table and "Avg." in table and f"{avg:.2f}" in table
    assert main(["leaderboard", str(run_dir), "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    assert csv_text.splitlines()[0] == "Model,DS-A,DS-B,Avg.,Metric"
    assert csv_text.splitlines()[1].endswith(",strict")  # csv has no notes: the metric is a column
    assert main(["leaderboard", str(run_dir), "--format", "latex"]) == 0
    assert "\\toprule" in capsys.readouterr().out


def test_two_processes_cannot_write_one_run(suite, tmp_path):
    store = RunStore(tmp_path / "r")
    with store.locked():
        with pytest.raises(Exception, match="in use by another adbench process"):
            with RunStore(tmp_path / "r").locked():
                pass
