"""Local MLLM adapters on a tiny random Qwen2.5-VL (real architecture, real tokenizer, real files)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adbench import registry
from adbench.models.engines.qwen import QwenVLModel
from adbench.models.presets.open_vlms import GenericVLM
from adbench.models.qwen_frame import model_input_size
from adbench.models.weights import UnsafeCheckpointError
from adbench.schema import ParseStatus, Query
from tests.vlm_fixtures import TINY_ARGS, demo_queries, tiny_assets

ROOT = Path(__file__).resolve().parent.parent
YN = {"A": "Yes.", "B": "No."}


@pytest.fixture(scope="module")
def assets():
    return tiny_assets()


@pytest.fixture(scope="module")
def queries(assets):
    return demo_queries(4)


@pytest.fixture(scope="module")
def adfm_model(assets):
    return QwenVLModel(base=str(assets.base), adapter=str(assets.adapter), protocol="adfm", max_new_tokens=12,
                       batch_size=8, **TINY_ARGS)


def test_tokenizer_is_the_real_qwen25_vocabulary(assets):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(assets.base)
    tok = proc.tokenizer
    assert len(tok) == 151_665
    ids = tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                     "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|file_sep|>"])
    assert ids == [151643, 151644, 151645, 151652, 151653, 151655, 151656, 151664]
    reply = '<think>{"bbox_2d": [10, 204, 33, 47], "label": "scratch"}</think>\n<answer>A</answer>'
    enc = tok(reply).input_ids
    assert tok.decode(enc) == reply
    assert tok("hello world").input_ids == [14990, 1879]  # ids of the released Qwen2.5 tokenizer
    assert tok("2024").input_ids == [17, 15, 17, 19]  # Qwen splits digits one by one
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
                                    tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n")


def test_batched_and_one_at_a_time_greedy_give_identical_text(adfm_model, queries):
    batched = adfm_model.predict(queries)
    adfm_model.batch_size = 1
    try:
        single = adfm_model.predict(queries)
    finally:
        adfm_model.batch_size = 8
    assert [r.error for r in batched] == [None] * len(queries)
    assert [r.text for r in batched] == [r.text for r in single]
    # the test means something only if replies differ and prompts had to be padded
    assert len({r.text for r in batched}) > 1
    assert len({r.usage["prompt_tokens"] for r in batched}) == 2
    for r in batched:
        assert r.usage["completion_tokens"] >= 1 and r.text
        assert r.parse_status in (ParseStatus.PARSED, ParseStatus.UNPARSED)
        assert r.answer is not None or r.meta["parse_problems"]


def test_static_cache_gives_the_same_greedy_text(adfm_model, queries):
    dynamic = [r.text for r in adfm_model.predict(queries[:4])]
    adfm_model.cache = "static"
    try:
        static = [r.text for r in adfm_model.predict(queries[:4])]
    finally:
        adfm_model.cache = "dynamic"
    assert static == dynamic


def test_adapter_is_applied(assets, adfm_model, queries):
    without = QwenVLModel(base=str(assets.base), protocol="adfm", max_new_tokens=12, **TINY_ARGS)
    assert [r.text for r in without.predict(queries)] != [r.text for r in adfm_model.predict(queries)]
    # the same adapter merged into the weights in memory gives the same replies
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    merged = PeftModel.from_pretrained(
        Qwen2_5_VLForConditionalGeneration.from_pretrained(assets.base, use_safetensors=True), assets.adapter
    ).merge_and_unload()
    wrapped = QwenVLModel.from_components(merged.to(torch.float32), AutoProcessor.from_pretrained(assets.base),
                                          protocol="adfm", max_new_tokens=12, dtype="float32", **TINY_ARGS)
    got = [r.text for r in wrapped.predict(queries[:3])]
    assert got == [r.text for r in adfm_model.predict(queries[:3])]


def test_seeded_sampling_repeats_and_seeds_differ(adfm_model, queries):
    greedy_settings = adfm_model.generation

    def texts(seed):
        adfm_model.generation = replace(greedy_settings, do_sample=True, temperature=1.5, seed=seed)
        try:
            return [r.text for r in adfm_model.predict(queries[:2])]
        finally:
            adfm_model.generation = greedy_settings

    first = texts(3)
    assert texts(3) == first
    assert texts(4) != first
    greedy = [r.text for r in adfm_model.predict(queries[:2])]
    assert greedy != first


def test_generic_adapter_runs_qwen_through_auto_classes(assets, queries):
    generic = GenericVLM(base=str(assets.base), max_new_tokens=10)  # processor's saved pixel budget = TINY_ARGS
    qwen = QwenVLModel(base=str(assets.base), protocol="mmad", max_new_tokens=10, **TINY_ARGS)
    g, q = generic.predict(queries), qwen.predict(queries)
    assert [r.text for r in g] == [r.text for r in q]
    assert all(r.parse_status in (ParseStatus.PARSED, ParseStatus.UNPARSED) for r in g)
    assert generic.config()["family"] == "generic" and type(generic.model).__name__.startswith("Qwen2_5_VL")
    with pytest.raises(ValueError, match="adfm"):
        GenericVLM(base=str(assets.base), protocol="adfm")


def test_adfm_boxes_are_mapped_back_to_image_pixels(adfm_model, tmp_path):
    """The frame each query image had in the real processor call, and a reply read through it."""
    rng = np.random.default_rng(0)
    sizes = [(333, 517), (255, 97), (1023, 767)]
    qs = []
    for i, (w, h) in enumerate(sizes):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        ref = tmp_path / f"ref{i}.png"
        Image.fromarray(rng.integers(0, 255, (64 + i, 80, 3), dtype=np.uint8)).save(ref)
        qs.append(Query(id=f"q{i}", images=[str(ref), str(p)], question="Is there any defect in the object?",
                        options=dict(YN), prompt="", n_references=1))
    prepared = [adfm_model._prepare(i, q) for i, q in enumerate(qs)]
    enc = adfm_model._encode(prepared)
    assert enc.error is None
    for row, (p, size) in enumerate(zip(prepared, sizes)):
        frame = adfm_model._input_size(enc, row)
        assert frame == model_input_size(size, TINY_ARGS["min_pixels"], TINY_ARGS["max_pixels"])
        assert p.image_size == size
        fw, fh = frame
        reply = (f'<think>{{"bbox_2d": [0, 0, {fw}, {fh}], "label": "all"}} '
                 f'{{"bbox_2d": [{fw // 2}, {fh // 4}, {fw // 2}, {fh}], "label": "line"}}</think>'
                 '<rethink>real</rethink><answer>a</answer>')
        r = adfm_model.prompting.interpret(qs[row], reply, input_size=frame, image_size=size)
        assert r.answer == "A" and r.parse_status == ParseStatus.PARSED
        assert r.boxes[0].as_tuple() == pytest.approx((0, 0, size[0], size[1]))
        assert r.boxes[1].x1 == pytest.approx(fw // 2 * size[0] / fw)
        assert r.meta["boxes_model_frame"][0]["bbox"] == [0, 0, fw, fh]
        assert r.stages["rethink"] == "real"
        assert any("zero area" in q for q in r.meta["parse_problems"])


def test_loading_never_unpickles(assets, tmp_path, monkeypatch):
    import torch

    # a folder of pickled weights is refused before anything is read
    bad = tmp_path / "pickled"
    bad.mkdir()
    for f in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (assets.base / f).exists():
            (bad / f).write_bytes((assets.base / f).read_bytes())
    torch.save({"w": torch.zeros(1)}, bad / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="pickled weights"):
        QwenVLModel(base=str(bad), **TINY_ARGS)
    # so is an adapter saved as adapter_model.bin
    bad_adapter = tmp_path / "adapter_bin"
    bad_adapter.mkdir()
    (bad_adapter / "adapter_config.json").write_text((assets.adapter / "adapter_config.json").read_text())
    torch.save({"w": torch.zeros(1)}, bad_adapter / "adapter_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="adapter_model.safetensors"):
        QwenVLModel(base=str(assets.base), adapter=str(bad_adapter), **TINY_ARGS)
    # and loading the real base + adapter never calls torch.load
    calls = []

    def no_unpickling(*a, **k):
        calls.append(a)
        raise AssertionError("torch.load called while loading a checkpoint")

    monkeypatch.setattr(torch, "load", no_unpickling)
    m = QwenVLModel(base=str(assets.base), adapter=str(assets.adapter), protocol="adfm", max_new_tokens=2,
                    **TINY_ARGS)
    assert calls == [] and m.adapter == str(assets.adapter)


def test_unknown_model_argument_lists_the_valid_ones(assets):
    with pytest.raises(ValueError, match="does not take -M colour.*max_pixels"):
        registry.make_model("adfm", base=str(assets.base), colour="red")


def _cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "adbench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_adfm_run_end_to_end(assets, tmp_path):
    out = tmp_path / "runs"
    proc = _cli("run", "--model", "adfm", "-M", f"base={assets.base}", "-M", f"adapter={assets.adapter}",
                "-M", "max_new_tokens=16", "-M", f"min_pixels={TINY_ARGS['min_pixels']}",
                "-M", f"max_pixels={TINY_ARGS['max_pixels']}", "--task", "demo-binary", "--limit", "8",
                "--data-root", str(assets.data_root), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 8
    for r in records:
        assert r["error"] is None
        assert isinstance(r["text"], str) and r["text"]
        assert r["parse_status"] in (ParseStatus.PARSED, ParseStatus.UNPARSED)
        assert r["answer"] is not None or r["meta"]["parse_problems"]
        assert r["usage"]["completion_tokens"] >= 1 and r["usage"]["prompt_tokens"] > 100
        assert r["meta"]["input_size"] == [112, 112] and r["meta"]["image_size"] == [256, 256]
    results = json.loads((run_dir / "results.json").read_text())
    n_unparsed = sum(r["parse_status"] == ParseStatus.UNPARSED for r in records)
    assert results["counts"]["n"] == 8 and results["counts"]["n_failed"] == 0
    assert results["counts"]["n_unparsed"] == n_unparsed > 0  # random weights: nothing in protocol
    config = json.loads((run_dir / "config.json").read_text())
    mc = config["model_config"]
    assert mc["prompting"] == "adfm" and mc["stages"] == "multi"
    assert mc["adapter"] == str(assets.adapter) and mc["backend"] == "transformers"
    assert mc["max_pixels"] == TINY_ARGS["max_pixels"]
    assert mc["engine"] == "generate"  # "auto" on a CPU
    # the same run through the fast engine: the same replies, its name in the provenance
    proc = _cli("run", "--model", "adfm", "-M", f"base={assets.base}", "-M", f"adapter={assets.adapter}",
                "-M", "max_new_tokens=16", "-M", f"min_pixels={TINY_ARGS['min_pixels']}",
                "-M", f"max_pixels={TINY_ARGS['max_pixels']}", "-M", "engine=fast", "--task", "demo-binary",
                "--limit", "8", "--data-root", str(assets.data_root), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fast_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert fast_dir != run_dir
    fast = [json.loads(line) for line in (fast_dir / "samples.jsonl").read_text().splitlines()]
    assert {r["id"]: r["text"] for r in fast} == {r["id"]: r["text"] for r in records}
    assert json.loads((fast_dir / "config.json").read_text())["model_config"]["engine"] == "fast"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_without_vllm_says_so(assets, tmp_path):
    proc = _cli("run", "--model", "adfm", "-M", "backend=vllm", "-M", f"base={assets.base}", "--task", "demo-binary",
                "--limit", "2", "--data-root", str(assets.data_root), "--out", str(tmp_path), "--no-progress",
                timeout=120)
    assert proc.returncode == 2
    assert "needs vLLM, which is not installed" in proc.stderr and "adbench[vllm]" in proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(ValueError, match="needs vLLM"):
        registry.make_model("internvl3-8b", backend="vllm")


def test_share_prefix_is_one_argument_for_both_engines(assets, monkeypatch):
    """-M share_prefix: the fast engine's shared prefill, vLLM's prefix caching (its engine arguments; vLLM
    itself cannot run here, so only its availability check is set aside)."""
    from adbench.models.engines import vllm_offline

    assert registry.convert_arguments("models", "qwen2.5-vl-7b", {"share_prefix": "no"}) == {"share_prefix": False}
    assert registry.convert_arguments("models", "adfm", {"share_prefix": "on"}) == {"share_prefix": True}
    monkeypatch.setattr(vllm_offline, "require_vllm", lambda: None)
    default = registry.make_model("qwen2.5-vl-7b", backend="vllm", base=str(assets.base))
    assert default.engine_kwargs(2)["enable_prefix_caching"] is True
    off = registry.make_model("qwen2.5-vl-7b", backend="vllm", base=str(assets.base), share_prefix="no")
    kwargs = off.engine_kwargs(2)
    assert kwargs["enable_prefix_caching"] is False and kwargs["limit_mm_per_prompt"] == {"image": 2}
    assert kwargs["mm_processor_kwargs"] == {"min_pixels": 64 * 28 * 28, "max_pixels": 1280 * 28 * 28}


def test_images_are_prepared_in_threads_in_query_order(adfm_model, queries, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    bad = Query(id="bad", images=[str(broken)], question="Is there any defect in the object?", options=YN,
                prompt="", n_references=0)
    mixed = [*queries[:3], bad, *queries[3:]]
    default = adfm_model.prepare_threads
    adfm_model.prepare_threads = 1
    try:
        serial = adfm_model._prepare_all(mixed)
        adfm_model.prepare_threads = 4
        threaded = adfm_model._prepare_all(mixed)
    finally:
        adfm_model.prepare_threads = default
    assert isinstance(threaded[3], str) and "broken.png" in threaded[3]
    assert [p if isinstance(p, str) else (p.index, p.text, p.image_size, p.length) for p in threaded] == \
        [p if isinstance(p, str) else (p.index, p.text, p.image_size, p.length) for p in serial]
    responses = adfm_model.predict(mixed)
    assert responses[3].error and "broken.png" in responses[3].error
    assert all(r.error is None for i, r in enumerate(responses) if i != 3)


def test_a_failed_batch_is_retried_one_query_at_a_time_with_a_warning(assets, queries):
    model = QwenVLModel(base=str(assets.base), protocol="adfm", max_new_tokens=6, batch_size=4, **TINY_ARGS)
    expected = [r.text for r in model.predict(queries[:4])]
    real = model._new_tokens

    def fail_on_batches(inputs, extra=None):  # what an out-of-memory error does to a large batch
        if inputs["input_ids"].shape[0] > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(inputs, extra)

    model._new_tokens = fail_on_batches
    with pytest.warns(RuntimeWarning, match="a batch of 4 failed .*out of memory.*one at a time"):
        got = model.predict(queries[:4])
    assert [r.text for r in got] == expected and all(r.error is None for r in got)
