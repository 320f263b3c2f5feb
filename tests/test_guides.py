"""The README's two guides run as written.

Each guide's code is read out of README.md (so the README and this test cannot drift),
written as a module of a plugin "installed" the way pip installs one (a dist-info folder
with entry_points.txt, built from the guide's own TOML block, on PYTHONPATH), and run
with the guide's own command in a subprocess, where `importlib.metadata` finds it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adbench import registry
from adbench.data.layout import yes_no_samples
from adbench.data.paths import DataError
from adbench.schema import ANOMALOUS, NORMAL, ParseStatus, Query
from tests.helpers import write_image

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    """The text of the README's `## title` section, up to the next `## ` heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end != -1 else None]


def block(text: str, lang: str) -> str:
    """The one fenced ```lang block of `text`."""
    found = re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)
    assert len(found) == 1, f"expected one ```{lang} block, found {len(found)}"
    return found[0]


def entry_point_tables(toml: str) -> dict[str, dict[str, str]]:
    """The `[project.entry-points."group"]` tables of a guide's TOML (tomllib needs Python 3.11)."""
    groups: dict[str, dict[str, str]] = {}
    for line in filter(None, map(str.strip, toml.splitlines())):
        if header := re.fullmatch(r'\[project\.entry-points\."([\w.]+)"\]', line):
            table = groups.setdefault(header[1], {})
        elif entry := re.fullmatch(r'([\w.-]+)\s*=\s*"([\w.]+:[\w.]+)"', line):
            table[entry[1]] = entry[2]
        else:
            raise AssertionError(f"not an entry-point line: {line!r}")
    return groups


def install_plugin(site: Path, dist: str, guide: str) -> str:
    """Write the guide's module and its entry points (from the guide's TOML) as an installed dist.

    Returns the module's name, taken from the code block's first line (`# my_module.py`).
    """
    code = block(guide, "python")
    module = re.fullmatch(r"# (\w+)\.py", code.splitlines()[0]).group(1)
    (site / f"{module}.py").write_text(code, encoding="utf-8")
    groups = entry_point_tables(block(guide, "toml"))
    info = site / f"{dist}-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0\n", encoding="utf-8")
    lines = [f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items())
             for group, eps in groups.items()]
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    return module


def adbench(argv: list[str], tmp: Path, site: Path, data: Path) -> subprocess.CompletedProcess[str]:
    """`argv` (a README command, starting with `adbench`) as a real process with the plugin installed."""
    assert argv[0] == "adbench"
    env = {**os.environ, "PYTHONPATH": str(site), "ADBENCH_DATA": str(data)}
    return subprocess.run([sys.executable, "-m", "adbench", *argv[1:]], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300)


def run_dir(out: Path, task: str, model: str) -> Path:
    (found,) = (out / task / model).iterdir()
    return found


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]


@pytest.fixture
def plugin_env(tmp_path: Path) -> tuple[Path, Path, Path]:
    site, data = tmp_path / "site", tmp_path / "data"
    site.mkdir()
    data.mkdir()
    return tmp_path, site, data


def test_task_guide_runs_as_written(plugin_env: tuple[Path, Path, Path]) -> None:
    """The README's task module, entry point and command: 2 good + 3 bad images -> 5 yes/no records."""
    tmp, site, data = plugin_env
    guide = section("Adding a task in one file")
    assert install_plugin(site, "my-folder-task", guide) == "my_folder"
    rng = np.random.default_rng(0)
    parts = data / "parts"
    for rel in ("good/000.png", "good/001.png", "bad/000.png", "bad/001.png", "bad/002.png"):
        write_image(parts / rel, rng)
    (parts / "good" / "notes.txt").write_text("not an image")

    listed = adbench(["adbench", "list", "tasks"], tmp, site, data)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^my-folder\s+third-party \(plugin my-folder-task\)$", listed.stdout, re.M), listed.stdout

    (command,) = re.findall(r"^adbench run --model chance --task my-folder .*$", block(guide, "bash"), re.M)
    argv = shlex.split(command)
    root_arg = next(i for i, a in enumerate(argv) if a.startswith("root="))
    results = {}
    for root in (str(parts), "parts"):  # absolute, and relative to the data root, as the guide says
        argv[root_arg] = f"root={root}"
        done = adbench([*argv, "--out", "runs", "--no-progress"], tmp, site, data)
        assert done.returncode == 0, done.stderr
        (run,) = [d for d in (tmp / "runs" / "my-folder" / "chance").iterdir() if d.name not in results]
        results[run.name] = (json.loads((run / "results.json").read_text()), records(run))

    expected_ids = ["my-folder/bad/000.png", "my-folder/bad/001.png", "my-folder/bad/002.png",
                    "my-folder/good/000.png", "my-folder/good/001.png"]
    chance = registry.make_model("chance", seed=0).predict(
        [Query(id=i, images=[], question="", options={"A": "Yes.", "B": "No."}, prompt="") for i in expected_ids])
    answers = [r.answer for r in chance]
    for result, recs in results.values():
        assert result["counts"] == {"n": 5, "n_failed": 0, "n_unparsed": 0, "n_expected": 5}
        assert result["complete"] is True and set(result["metrics"]) == {"my-folder", "average"}
        assert [r["id"] for r in recs] == expected_ids
        assert [(r["label"], r["gold"], r["defect"]) for r in recs] == [(1, "A", "bad")] * 3 + [(0, "B", "good")] * 2
        assert [r["image"] for r in recs] == [str(parts / i.removeprefix("my-folder/")) for i in expected_ids]
        assert [r["answer"] for r in recs] == answers  # the chance model's own draws, query by query
        assert [r["correct"] for r in recs] == [a == r["gold"] for a, r in zip(answers, recs, strict=True)]
        ad = result["metrics"]["my-folder"]["qtypes"]["Anomaly Detection"]
        acc_bad, acc_good = sum(a == "A" for a in answers[:3]) / 3, sum(a == "B" for a in answers[3:]) / 2
        assert (ad["n"], ad["accuracy_anomalous"], ad["accuracy_normal"]) == (5, acc_bad, acc_good)
        assert ad["accuracy"] == pytest.approx((acc_bad + acc_good) / 2)


def test_model_guide_runs_as_written(plugin_env: tuple[Path, Path, Path]) -> None:
    """The README's adapter, entry point and command on the demo suite: every reply parsed, recorded, scored."""
    tmp, site, data = plugin_env
    guide = section("Adding a model in one file")
    assert install_plugin(site, "my-adapter", guide) == "my_adapter"
    (command,) = re.findall(r"`(adbench run --model my-model [^`]*)`", guide)
    done = adbench([*shlex.split(command), "--limit", "6", "--out", "runs", "--no-progress"], tmp, site, data)
    assert done.returncode == 0, done.stderr

    run = run_dir(tmp / "runs", "demo-binary", "my-model")
    config = json.loads((run / "config.json").read_text())
    assert config["model_args"] == {"temperature": 0.2}  # typed from MyModel's signature: a float
    recs = records(run)
    assert len(recs) == 6 and {r["label"] for r in recs} == {NORMAL, ANOMALOUS}
    assert {(r["text"], r["answer"], r["parse_status"]) for r in recs} == {("No.", "B", ParseStatus.PARSED)}
    assert [r["correct"] for r in recs] == [r["gold"] == "B" for r in recs]
    result = json.loads((run / "results.json").read_text())
    assert result["counts"] == {"n": 6, "n_failed": 0, "n_unparsed": 0, "n_expected": 6}
    for dataset in {r["dataset"] for r in recs}:
        ad = result["metrics"][dataset]["qtypes"]["Anomaly Detection"]
        assert (ad["accuracy_normal"], ad["accuracy_anomalous"], ad["accuracy"]) == (1.0, 0.0, 0.5)


def test_yes_no_samples_ids_labels_and_order(tmp_path: Path) -> None:
    images = [(tmp_path / "good" / "b.png", NORMAL), (tmp_path / "scratch" / "a.png", ANOMALOUS),
              (str(tmp_path / "good" / "a.png"), NORMAL)]
    samples = yes_no_samples(tmp_path, images, dataset="parts")
    assert [(s.id, s.category, s.label, s.gold, s.defect) for s in samples] == [
        ("parts/good/a.png", "parts", 0, "B", "good"),
        ("parts/good/b.png", "parts", 0, "B", "good"),
        ("parts/scratch/a.png", "parts", 1, "A", "scratch"),
    ]
    assert samples[2].image == str(tmp_path / "scratch" / "a.png")
    assert samples[2].options == {"A": "Yes.", "B": "No."} and samples[2].qtype == "Anomaly Detection"
    assert yes_no_samples(tmp_path, images[:1], dataset="parts", category="gears")[0].category == "gears"


def test_yes_no_samples_refuses_nothing_and_unknown_labels(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"no images found under {re.escape(str(tmp_path))}"):
        yes_no_samples(tmp_path, [], dataset="parts")
    with pytest.raises(ValueError, match="label must be NORMAL"):
        yes_no_samples(tmp_path, [(tmp_path / "x.png", 2)], dataset="parts")
