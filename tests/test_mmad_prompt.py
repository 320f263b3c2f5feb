"""`-M prompt=mmad`: the user message of MMAD's Qwen2.5-VL script, on the tiny offline Qwen2.5-VL.

The expected prompts are written out by hand from jam-cc/MMAD
`evaluation/examples/Transformers/qwen2_5_vl_query.py` (`get_query`: the content list,
`apply_chat_template(..., add_vision_id=True)`) and `evaluation/examples/GPT4/gpt4v.py`
(`parse_conversation`: `"{letter}. {text}\\n"` option lines, `"Question {i + 1}: "`), rendered
through the tiny model's real processor and chat template.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from adbench import registry
from adbench.models.engines.qwen import QwenVLModel
from adbench.models.presets.open_vlms import GenericVLM
from adbench.models.prompting import MMAD_INSTRUCTION, make_prompting, question_number
from adbench.models.qwen_frame import MMAD_MAX_PIXELS, MMAD_MIN_PIXELS
from adbench.runner import RunSpec, run
from adbench.schema import ParseStatus, Query
from tests.vlm_fixtures import TINY_ARGS, tiny_assets

ROOT = Path(__file__).resolve().parent.parent
YN = {"A": "Yes", "B": "No"}
QUESTION = "Is there any defect in the object?"
# The Qwen chat format around one user message; like the script, adbench sends no system
# message, so the template writes its default one.
HEAD = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
TAIL = "<|im_end|>\n<|im_start|>assistant\n"
IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
INSTRUCTION = ("You inspect manufactured products in images. Decide whether the query image shows a defect, "
               "then answer the question about it.\nReply with the letter of the chosen option only.\n")


@pytest.fixture(scope="module")
def assets():
    return tiny_assets()


@pytest.fixture(scope="module")
def images(assets):
    """A normal template image and a query image of the demo suite (real PNG files)."""
    demo = assets.data_root / "demo" / "DemoTexture" / "brick"
    template = sorted((demo / "train" / "good").glob("*.png"))[0]
    query = sorted(p for p in (demo / "image").glob("*/*.png") if p.parent.name != "good")[0]
    return str(template), str(query)


@pytest.fixture(scope="module")
def model(assets):
    return QwenVLModel(base=str(assets.base), prompt="mmad", max_new_tokens=6, **TINY_ARGS)


def _query(images, shots: int, qid: str = "DemoTexture/brick/image/crack/000.png#2") -> Query:
    template, query = images
    return Query(id=qid, images=[template, query] if shots else [query], question=QUESTION, options=dict(YN),
                 prompt="(the task's rendering, unused by prompt=mmad)", n_references=shots)


def test_one_shot_prompt_is_the_scripts_content_list(model, images):
    prepared = model._prepare(0, _query(images, shots=1))
    expected = (
        HEAD
        + INSTRUCTION
        + "Answer with the option's letter from the given choices directly! "
        + "Following is/are 1 image of normal sample, which can be used as a template to compare the image "
          "being queried."
        + "Picture 1: " + IMAGE
        + "Following is the query image: "
        + "Picture 2: " + IMAGE
        + "Following is the question list: "
        + "Is there any defect in the object? \nA. Yes\nB. No\n"
        + TAIL
    )
    assert prepared.text == expected
    # the images go to the processor in the same order: the template, then the query image
    from PIL import Image

    sizes = [Image.open(p).size for p in images]
    assert [im.size for im in prepared.images] == sizes and prepared.image_size == sizes[1]
    assert INSTRUCTION == MMAD_INSTRUCTION  # one wording, shared with the GPT adapter's mmad=true


def test_question_id_numbers_the_question_by_its_place_in_the_conversation(assets, images):
    numbered = QwenVLModel(base=str(assets.base), prompt="mmad", question_id=True, max_new_tokens=4, **TINY_ARGS)
    text = numbered._prepare(0, _query(images, shots=1)).text  # sample ...#2: the third question
    assert text.endswith("Following is the question list: Question 3: Is there any defect in the object? \n"
                         "A. Yes\nB. No\n" + TAIL)
    first = numbered._prepare(0, _query(images, shots=1, qid="DemoTexture/brick/image/crack/000.png#0")).text
    assert "Following is the question list: Question 1: Is there" in first
    assert numbered.config()["question_id"] is True
    assert [question_number(i) for i in ("a/b.png#0", "a/b.png#11", "VisA/x/test/bad/000.JPG", "odd#x")] == \
        [1, 12, 1, 1]


def test_zero_shot_has_no_template_block(model, images):
    text = model._prepare(0, _query(images, shots=0)).text
    assert text == (
        HEAD + INSTRUCTION + "Answer with the option's letter from the given choices directly! "
        + "Following is the query image: Picture 1: " + IMAGE
        + "Following is the question list: Is there any defect in the object? \nA. Yes\nB. No\n" + TAIL
    )
    assert "Following is/are" not in text and "Picture 2" not in text and "Question" not in text.split("list:")[1]


def test_two_templates_are_counted_in_the_caption(model, images):
    template, query = images
    q = Query(id="k#0", images=[template, template, query], question=QUESTION, options=dict(YN), prompt="",
              n_references=2)
    text = model._prepare(0, q).text
    assert ("Following is/are 2 image of normal sample, which can be used as a template to compare the image "
            "being queried.Picture 1: " + IMAGE + "Picture 2: " + IMAGE + "Following is the query image: "
            "Picture 3: " + IMAGE) in text


def test_instruction_file_replaces_the_instruction_exactly(assets, model, images, tmp_path):
    exact = "\nInspect the part — compare it with the template.\r\nGive the letter only.  \n"
    path = tmp_path / "instruction.txt"
    path.write_bytes(exact.encode("utf-8"))
    custom = QwenVLModel(base=str(assets.base), prompt="mmad", instruction_file=str(path), max_new_tokens=4,
                         **TINY_ARGS)
    sent = exact.replace("\r\n", "\n")  # read as text: universal newlines
    text = custom._prepare(0, _query(images, shots=1)).text
    assert text.startswith(HEAD + sent + "Answer with the option's letter from the given choices directly! "
                           "Following is/are 1 image")
    assert INSTRUCTION not in text
    assert text.replace(sent, INSTRUCTION, 1) == model._prepare(0, _query(images, shots=1)).text
    config = custom.config()
    assert config["instruction"] == {"source": str(path), "sha256": hashlib.sha256(sent.encode()).hexdigest()}
    assert model.config()["instruction"]["sha256"] == hashlib.sha256(INSTRUCTION.encode()).hexdigest()
    assert custom.prompt_text() != model.prompt_text()  # the runner's prompt_hash tells the runs apart


def test_a_bad_instruction_file_fails_before_any_model_loads(tmp_path):
    missing = tmp_path / "no-such-instruction.txt"
    # the base folder does not exist either: the instruction is checked first
    with pytest.raises(ValueError, match=r"^-M instruction_file: cannot read .*no-such-instruction\.txt: "
                                         r"No such file or directory$"):
        QwenVLModel(base=str(tmp_path / "no-model"), prompt="mmad", instruction_file=str(missing))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Prüfer".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt is not UTF-8 text"):
        registry.make_model("qwen2.5-vl-7b", base=str(tmp_path / "no-model"), prompt="mmad",
                            instruction_file=str(latin))
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n")
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        make_prompting("mmad", prompt="mmad", instruction_file=str(empty))
    (tmp_path / "data").mkdir()  # a --data-root must exist (issue 14); the demo suite is generated inside it
    proc = subprocess.run(
        [sys.executable, "-m", "adbench", "run", "--model", "qwen2.5-vl-7b", "-M", f"base={tmp_path / 'no-model'}",
         "-M", "prompt=mmad", "-M", f"instruction_file={missing}", "--task", "demo-binary", "--data-root",
         str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_prompt_mmad_is_refused_with_the_adfm_protocol_and_its_options_without_it(assets):
    with pytest.raises(ValueError, match="cannot be combined with the AD-FM protocol.*-M protocol=mmad"):
        registry.make_model("adfm", base=str(assets.base), prompt="mmad")
    with pytest.raises(ValueError, match="-M question_id applies to -M prompt=mmad only"):
        QwenVLModel(base=str(assets.base), question_id=True, **TINY_ARGS)
    with pytest.raises(ValueError, match="-M instruction_file applies to -M prompt=mmad only"):
        make_prompting("mmad", instruction_file="x.txt")
    with pytest.raises(ValueError, match="-M prompt must be one of task, mmad"):
        make_prompting("mmad", prompt="gpt")
    with pytest.raises(ValueError, match="-M question_id: expected true or false, got 'maybe'"):
        make_prompting("mmad", prompt="mmad", question_id="maybe")
    # the adfm model asked MMAD's way gets MMAD's image budget and length, not the AD-FM recipe's
    adfm_mmad = registry.make_model("adfm", base=str(assets.base), protocol="mmad", prompt="mmad")
    config = adfm_mmad.config()
    assert (config["min_pixels"], config["max_pixels"], config["generation"]["max_new_tokens"]) == \
        (MMAD_MIN_PIXELS, MMAD_MAX_PIXELS, 128)
    assert config["prompting"] == "mmad-script"


def test_replies_are_read_with_mmads_rule(model, images):
    q = _query(images, shots=1)
    read = {reply: model.prompting.interpret(q, reply) for reply in
            ("B", "The answer is A.", "A or B? B.", "There is a crack, so yes", "No defect", "E", "")}
    assert {k: (r.answer, r.parse_status) for k, r in read.items()} == {
        "B": ("B", ParseStatus.PARSED), "The answer is A.": ("A", ParseStatus.PARSED), "A or B? B.": ("B", ParseStatus.PARSED),
        "There is a crack, so yes": ("A", ParseStatus.PARSED), "No defect": ("B", ParseStatus.PARSED), "E": ("E", ParseStatus.PARSED),
        "": ("A", ParseStatus.PARSED)}
    assert "answer_rule" not in read["The answer is A."].meta
    assert read["There is a crack, so yes"].meta["answer_rule"].startswith("closest option text (difflib)")
    assert read["E"].meta["parse_problems"] == [
        "the letter E is not one of the options (MMAD's rule keeps it: it counts as wrong)"]
    failed = model.prompting.interpret(q, None, truncated=False)
    assert (failed.answer, failed.parse_status) == (None, ParseStatus.UNPARSED)
    truncated = model.prompting.interpret(q, "B and", truncated=True)
    assert truncated.answer == "B" and truncated.meta["truncated"] is True


def test_generic_adapter_renders_the_same_prompt(assets, model, images):
    generic = GenericVLM(base=str(assets.base), prompt="mmad", max_new_tokens=4)
    q = _query(images, shots=1)
    assert generic._prepare(0, q).text == model._prepare(0, q).text
    assert generic.config()["vision_ids"] is True


def test_cli_run_with_prompt_mmad_records_replies_and_answers(assets, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "adbench", "run", "--model", "qwen2.5-vl-7b", "-M", f"base={assets.base}",
         "-M", "prompt=mmad", "-M", "max_new_tokens=8", "--task", "demo-multitask", "--limit", "6",
         "--data-root", str(assets.data_root), "--out", str(out), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 6
    for r in records:
        assert r["error"] is None and isinstance(r["text"], str) and r["text"]
        # MMAD's rule gives every reply a letter (difflib's closest option when it names none)
        assert r["parse_status"] == ParseStatus.PARSED and r["answer"] in ("A", "B", "C", "D", "E")
        assert r["usage"]["prompt_tokens"] > 100 and r["usage"]["completion_tokens"] >= 1
    config = json.loads((run_dir / "config.json").read_text())
    mc = config["model_config"]
    assert (mc["prompting"], mc["prompt"], mc["question_id"], mc["vision_ids"]) == ("mmad-script", "mmad", False, True)
    assert mc["parser"].startswith("adbench.answers.mmad_answer")
    assert mc["instruction"]["sha256"] == hashlib.sha256(MMAD_INSTRUCTION.encode()).hexdigest()
    # the preset's MMAD settings: the script's image budget and 128 new tokens unless -M says otherwise
    assert (mc["min_pixels"], mc["max_pixels"], mc["generation"]["max_new_tokens"]) == \
        (MMAD_MIN_PIXELS, MMAD_MAX_PIXELS, 8)
    # the same run with numbered questions: another run id, another prompt hash
    spec = RunSpec(model="qwen2.5-vl-7b", task="demo-multitask", limit=6, data_root=assets.data_root, out=out,
                   model_args={"base": str(assets.base), "prompt": "mmad", "max_new_tokens": 8,
                               "question_id": True}, progress=False)
    numbered = run(spec)
    assert numbered.run_dir != run_dir
    other = json.loads((numbered.run_dir / "config.json").read_text())
    assert other["prompt_hash"] != config["prompt_hash"] and other["model_config"]["question_id"] is True
    assert numbered.results["counts"]["n"] == 6 and numbered.results["counts"]["n_failed"] == 0
