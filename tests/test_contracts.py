"""The typed contracts: Task and ModelAdapter, the text enums, one name per concept (issue 15, items 2 and 5)."""

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from adbench import registry
from adbench.model import AdapterError, Model, ModelAdapter, OutputKind, as_adapter, declared_output
from adbench.registry import RegistryError
from adbench.results.layouts import QTYPE_ORDER
from adbench.results.scoring import records_hash
from adbench.runner import RunSpec, run
from adbench.schema import (
    IMAGE_KEY,
    MMAD_POOLED,
    OBJECT_ANALYSIS,
    QUESTION_TYPES,
    Box,
    ParseStatus,
    Record,
    Response,
    Role,
    Sample,
)
from adbench.store import RunStore, StoreError, record_problem
from adbench.task import QuestionTask, Task, missing_members
from tests.helpers import mini_binary_task, write_mini_mmad

registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")
registry.register_model("duck-scorer", "tests.test_contracts:DuckScorer", "duck-typed score model")
registry.register_model("duck-hooks", "tests.test_contracts:DuckWithHooks", "duck-typed model with hooks")
registry.register_model("bad-status", "tests.test_contracts:BadStatus", "writes an unknown parse status")
registry.register_task("not-a-task", "tests.test_contracts:not_a_task", "lacks most of Task")


class DuckScorer:
    """Only what the README asks of an adapter: name, output (as text) and predict. No Model base class."""

    name = "duck-scorer"
    output = "score"

    def predict(self, queries):
        return [Response(score=(int(hashlib.md5(q.image.encode()).hexdigest(), 16) % 100) / 100) for q in queries]


class DuckWithHooks:
    """A duck-typed text model that has some hooks of its own: those are used, the rest are Model's defaults."""

    name = "duck-hooks"
    output = "text"
    closed = 0

    def predict(self, queries):
        return [Response(text="B", answer="B", parse_status="ok") for _ in queries]

    def config(self):
        return {"flavour": "duck"}

    def close(self):
        DuckWithHooks.closed += 1


class BadStatus(Model):
    """Writes a status adbench does not know for one image (the others are answered as usual)."""

    name = "bad-status"

    def predict(self, queries):
        return [Response(text="B", answer="B", parse_status="partial" if "good/001" in q.image else "ok")
                for q in queries]


class _Samples:
    name = "not-a-task"

    def samples(self, data_root):
        return []


def not_a_task():
    return _Samples()


@pytest.fixture()
def suite(tmp_path):
    return write_mini_mmad(tmp_path / "data", datasets=("DS-A",), categories=("c1",))


def _spec(suite, out, model, **kw):
    return RunSpec(model=model, task="mini-binary", data_root=suite, out=out, progress=False, **kw)


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


# -- the model side --------------------------------------------------------------------------------


def test_a_duck_typed_score_model_runs_with_the_default_hooks(suite, tmp_path, capsys):
    o = run(_spec(suite, tmp_path / "runs", "duck-scorer", max_cost=1.0))
    config = json.loads((o.run_dir / "config.json").read_text())
    # its text "score" is the declared kind: calibration images were scored, the thresholds were set from them
    assert config["model_output"] == "score" and config["model_config"] == {}
    assert config["score_is_probability"] is False
    recs = _lines(o.run_dir)
    assert {r["role"] for r in recs} == {"eval", "calibration"} and all(r["parse_status"] == "n/a" for r in recs)
    assert o.results["scored_by"]["model_output_from"] == "config.json" and "rules" in o.results
    # no price (Model's default): --max-cost is said to be unenforceable, not silently ignored
    assert o.results["budget"]["enforced"] is False and "no price" in capsys.readouterr().err


def test_a_duck_typed_models_own_hooks_are_used(suite, tmp_path):
    before = DuckWithHooks.closed
    o = run(_spec(suite, tmp_path / "runs", "duck-hooks"))
    config = json.loads((o.run_dir / "config.json").read_text())
    assert config["model_config"] == {"flavour": "duck"} and config["model_output"] == "text"
    assert DuckWithHooks.closed == before + 1  # the runner closed it
    assert all(r["role"] == "eval" for r in _lines(o.run_dir))


def test_as_adapter_wraps_a_duck_and_passes_a_model_through():
    duck = as_adapter(DuckScorer())
    assert isinstance(duck, ModelAdapter) and isinstance(duck, Model)
    assert duck.output is OutputKind.SCORE and duck.price is None and duck.runtime_args == ()
    assert duck.config() == {} and duck.prompt_text() == "" and duck.close() is None

    class TextSubclass(Model):  # the README's adapter: output given as text, or left at the default
        output = "score"

        def predict(self, queries):
            return []

    m = TextSubclass()
    assert as_adapter(m) is m and m.output is OutputKind.SCORE
    chance = registry.make_model("chance")
    assert as_adapter(chance) is chance and chance.output is OutputKind.GENERATIVE


def test_as_adapter_refuses_what_is_not_an_adapter():
    class NoPredict:
        name, output = "x", "text"

    class BadOutput(DuckScorer):
        output = "probability"

    with pytest.raises(AdapterError, match="no predict"):
        as_adapter(NoPredict())
    with pytest.raises(AdapterError, match="output 'probability'.*'text' or 'score'"):
        as_adapter(BadOutput())


def test_an_unknown_parse_status_fails_that_query_not_the_run(suite, tmp_path):
    o = run(_spec(suite, tmp_path / "runs", "bad-status"))
    failed = [r for r in _lines(o.run_dir) if r["error"]]
    assert [r["image"].rsplit("/", 3)[-2:] for r in failed] == [["good", "001.png"]]
    assert failed[0]["error"] == ("ValueError: Response.parse_status must be one of 'ok', 'unparsed', 'n/a', "
                                  "got 'partial'") and failed[0]["parse_status"] == "n/a"
    assert o.results["counts"]["n"] == 8 and o.exit_code == 0


def test_declared_output_reads_config_json_text():
    assert declared_output("score") is OutputKind.SCORE and declared_output(OutputKind.GENERATIVE) is OutputKind.GENERATIVE
    assert declared_output(None) is None and declared_output("other") is None


# -- the task side ---------------------------------------------------------------------------------


def test_question_task_is_a_task_and_a_training_task():
    from adbench.training.grpo_data import TrainingTask

    task = mini_binary_task()
    assert isinstance(task, Task) and isinstance(task, TrainingTask) and missing_members(task) == []
    assert task.box_params is None  # the default pseudo-box parameters
    assert missing_members(_Samples()) == ["calibration_samples", "render", "make_record", "score", "config",
                                           "prompt_text"]


def test_the_registry_refuses_a_task_that_is_not_one():
    with pytest.raises(RegistryError, match="task 'not-a-task' is not a task: it has no calibration_samples"):
        registry.make_task("not-a-task")


def test_training_refuses_a_task_without_its_extras(monkeypatch):
    from adbench.training.grpo_data import TrainingDataError, make_training_task

    class Bare(QuestionTask):
        pass

    bare = Bare("bare", "no split_info", lambda root: [])
    del bare.split_info
    monkeypatch.setattr(registry, "make_task", lambda name, **kw: bare)
    with pytest.raises(TrainingDataError, match="cannot be trained on: it has no split_info"):
        make_training_task("bare")


# -- text enums: the run files keep their text ---------------------------------------------------


def _record(**kw) -> Record:
    base = dict(id="a#0", dataset="D", category="c", qtype="Anomaly Detection", label=1, gold="A", image="/i.png",
                text="A", answer="A", score=None, correct=True, error=None, parse_status="ok")
    return Record(**{**base, **kw})


def test_enums_are_their_text():
    for member, text in ((ParseStatus.PARSED, "ok"), (ParseStatus.UNPARSED, "unparsed"),
                         (ParseStatus.NOT_APPLICABLE, "n/a"), (Role.EVAL, "eval"), (Role.CALIBRATION, "calibration"),
                         (OutputKind.GENERATIVE, "text"), (OutputKind.SCORE, "score")):
        assert member == text and text == member and hash(member) == hash(text) and text in {member}
        assert str(member) == f"{member}" == f"{member:>1}" == text and type(str(member)) is str
        assert json.dumps(member) == json.dumps([member], default=str)[1:-1] == json.dumps(text)


def test_a_record_line_is_byte_for_byte_the_plain_text_one():
    rec = _record(parse_status=ParseStatus.PARSED, role=Role.CALIBRATION)
    plain = {**dataclasses.asdict(rec), "parse_status": "ok", "role": "calibration"}
    assert json.dumps(rec.to_dict(), default=str) == json.dumps(plain, default=str)
    # read back from a file (plain text): the same members, the same record
    back = Record.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec and back.parse_status is ParseStatus.PARSED and back.role is Role.CALIBRATION


def test_the_records_hash_is_that_of_the_plain_text():
    """results.json's samples_hash of runs recorded before the enums must still match their records."""
    rec = _record(role=Role.EVAL)
    row = repr((rec.id, "eval", rec.dataset, rec.category, rec.qtype, rec.label, rec.gold, rec.text, rec.answer,
                rec.score, rec.correct, rec.error, "ok", sorted(rec.options.items())))
    assert records_hash([rec]) == hashlib.sha256(row.encode() + b"\n").hexdigest()


def test_samples_jsonl_with_an_unknown_role_or_status_is_refused(tmp_path):
    line = _record().to_dict()
    assert record_problem(line) is None
    assert "role should be one of 'eval', 'calibration', got 'train'" in record_problem({**line, "role": "train"})
    assert "parse_status should be one of" in record_problem({**line, "parse_status": "maybe"})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "samples.jsonl").write_text(json.dumps({**line, "role": "train"}) + "\n")
    with pytest.raises(StoreError, match="role should be one of"):
        RunStore(run_dir).load_records()
    with pytest.raises(ValueError, match="Sample.role must be one of"):
        Sample(id="x", dataset="D", category="c", image="/i.png", label=0, role="train")


# -- one name per concept ------------------------------------------------------------------------


def test_the_image_key_has_one_name_and_old_records_are_still_read(suite):
    task = mini_binary_task()
    sample = task.samples(suite)[0]
    assert sample.key == sample.meta[IMAGE_KEY] == sample.id.rsplit("#", 1)[0]
    rec = task.make_record(sample, Response(text="A", answer="A", parse_status=ParseStatus.PARSED))
    assert rec.meta == {"key": sample.key} and rec.key == sample.key
    old = Record.from_dict({**_record().to_dict(), "meta": {"sample": "DS/c/image/good/000.png"}})
    assert old.key == "DS/c/image/good/000.png"  # a samples.jsonl written before: "sample"
    assert _record().key is None


def test_boxes_are_stored_as_box_to_dict_everywhere(tmp_path):
    import numpy as np
    from PIL import Image

    from adbench.data.pseudo_boxes import CACHE_VERSION, BoxCache

    box = Box(1.0, 2.0, 3.0, 4.0, "crack")
    assert box.to_dict() == {"bbox": [1.0, 2.0, 3.0, 4.0], "label": "crack"} and Box.from_dict(box.to_dict()) == box
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 3:9] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    cache = BoxCache(tmp_path / "cache")
    assert cache.boxes(tmp_path / "m.png") == [Box(3.0, 2.0, 9.0, 6.0)]
    (entry,) = (tmp_path / "cache").rglob("*.json")
    stored = json.loads(entry.read_text())
    assert CACHE_VERSION == 3 and stored["version"] == 3
    assert stored["boxes"] == [{"bbox": [3.0, 2.0, 9.0, 6.0], "label": ""}]
    assert BoxCache(tmp_path / "cache").lookup(tmp_path / "m.png") == ([Box(3.0, 2.0, 9.0, 6.0)], (20, 20))


def test_question_type_names_have_one_home():
    import adbench.data.layout as layout
    import adbench.results.engine as engine
    import adbench.task as task
    import adbench.tasks.mmad as mmad

    assert QTYPE_ORDER == (*QUESTION_TYPES, OBJECT_ANALYSIS)
    assert set(MMAD_POOLED) == set(QUESTION_TYPES[-2:]) and set(MMAD_POOLED.values()) == {OBJECT_ANALYSIS}
    for module in (task, engine, layout, mmad):  # no second definition beside schema's
        for name in ("ANOMALY_DETECTION", "AD_QTYPE", "QUESTION_TYPES", "OBJECT_ANALYSIS", "MMAD_POOLED"):
            value = getattr(module, name, None)
            assert value is None or value is getattr(__import__("adbench.schema").schema, name), (module, name)


def test_one_resolve_device_with_one_return_type():
    torch = pytest.importorskip("torch")
    from adbench.models import devices
    from adbench.models.baselines import clip_common
    from adbench.models.engines import hf

    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)
    auto = devices.resolve_device("auto")
    assert isinstance(auto, torch.device) and auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert hf.resolve_device is devices.resolve_device and not hasattr(clip_common, "resolve_device")
