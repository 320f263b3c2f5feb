"""The fast Qwen2.5-VL engine (`-M engine=fast`) and its attention rewrites, on real tiny models.

Every rewrite must give what transformers gives: the kernels are compared with plain
reference computations, the engine's greedy replies with `generate`'s (left padding,
EOS, min_new_tokens included).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from adbench.models import tiny_qwen
from adbench.models.engines.fast.decode import Sampling, StaticDecoder, bucket_rows, pad_rows
from adbench.models.engines.fast.kernels import (
    ATTENTION_NAME,
    gqa_sdpa_attention,
    install_fast_attention,
    segment_attention,
)
from adbench.models.engines.qwen import QwenVLModel
from tests.vlm_fixtures import TINY_ARGS, demo_queries, tiny_assets


@pytest.fixture(scope="module")
def assets():
    return tiny_assets()


@pytest.fixture(scope="module")
def queries(assets):
    return demo_queries(4)  # 0-shot and 1-shot: two prompt lengths in one batch of 8


def _load(assets):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(assets.base, use_safetensors=True).eval()
    return model, AutoProcessor.from_pretrained(assets.base)


def _reference_attention(q, k, v, mask, scale):
    """Plain attention with keys repeated per query head (what `eager` computes)."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2)


# ---------------------------------------------------------------- kernels


def test_segment_attention_equals_one_call_per_window():
    torch.manual_seed(0)
    for lengths in ([5, 3, 5, 7, 3, 5], [4, 4, 4]):
        seq = sum(lengths)
        q, k, v = (torch.randn(seq, 2, 8, dtype=torch.float64) for _ in range(3))
        got = segment_attention(q, k, v, lengths, scale=0.3)
        start, parts = 0, []
        for n in lengths:
            sl = slice(start, start + n)
            parts.append(F.scaled_dot_product_attention(q[sl].transpose(0, 1), k[sl].transpose(0, 1),
                                                        v[sl].transpose(0, 1), scale=0.3).transpose(0, 1))
            start += n
        torch.testing.assert_close(got, torch.cat(parts), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="add up to 9"):
        segment_attention(q, k, v, [4, 5], scale=0.3)


class _Layer:
    is_causal = True


def test_grouped_query_attention_equals_repeated_keys():
    torch.manual_seed(1)
    batch, heads, kv_heads, dim, keys = 2, 6, 2, 8, 10
    k = torch.randn(batch, kv_heads, keys, dim, dtype=torch.float64)
    v = torch.randn(batch, kv_heads, keys, dim, dtype=torch.float64)
    scale = dim ** -0.5
    # one new token, a mask hiding some cached positions (padding, unwritten slots)
    q = torch.randn(batch, heads, 1, dim, dtype=torch.float64)
    mask = torch.rand(batch, 1, 1, keys) > 0.4
    mask[..., 0] = True
    got, _ = gqa_sdpa_attention(_Layer(), q, k, v, mask, scaling=scale)
    assert got.shape == (batch, 1, heads, dim)
    torch.testing.assert_close(got, _reference_attention(q, k, v, mask, scale))
    # a masked prefill whose mask covers only the first 6 of 10 cached positions
    q = torch.randn(batch, heads, 6, dim, dtype=torch.float64)
    causal = torch.tril(torch.ones(6, 6, dtype=torch.bool))[None, None].expand(batch, 1, 6, 6).clone()
    causal[0, :, :, 0] = False  # row 0 starts with one pad token
    causal[0, :, 0, 0] = True  # which attends to itself
    got, _ = gqa_sdpa_attention(_Layer(), q, k, v, causal, scaling=scale)
    torch.testing.assert_close(got, _reference_attention(q, k[:, :, :6], v[:, :, :6], causal, scale))
    # an unmasked prefill into an empty static cache: causal over the prompt's own keys
    got, _ = gqa_sdpa_attention(_Layer(), q, k, v, None, scaling=scale)
    full = torch.tril(torch.ones(6, 6, dtype=torch.bool))[None, None]
    torch.testing.assert_close(got, _reference_attention(q, k[:, :, :6], v[:, :, :6], full, scale))


def test_installed_rewrites_are_exact_and_idempotent():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    # a vision MLP 100 wide (not a multiple of 64, like the real 3,420) and an image whose
    # 14 x 22 patch grid gives windows of three sizes
    vision = dict(tiny_qwen.TINY_VISION_CONFIG, intermediate_size=100)
    cfg = Qwen2_5_VLConfig(text_config=dict(tiny_qwen.TINY_TEXT_CONFIG), vision_config=vision,
                           image_token_id=tiny_qwen.IMAGE_PAD_ID, video_token_id=tiny_qwen.VIDEO_PAD_ID,
                           vision_start_token_id=tiny_qwen.VISION_START_ID,
                           vision_end_token_id=tiny_qwen.VISION_END_ID)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.float64,
                                                            attn_implementation="sdpa").eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    grid = torch.tensor([[1, 14, 22], [1, 8, 8]])
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 14 * 14, dtype=torch.float64)
    text = torch.tensor([[151644, 872, 198, 14990, 1879, 151645]])
    with torch.no_grad():
        before = model.model.visual(pixels, grid_thw=grid).pooler_output
        generated = model.generate(input_ids=text, max_new_tokens=6, do_sample=False)
        done = install_fast_attention(model)
        after = model.model.visual(pixels, grid_thw=grid).pooler_output
        generated_after = model.generate(input_ids=text, max_new_tokens=6, do_sample=False)
    assert done == {"vision_layers": 2, "text_attention": ATTENTION_NAME, "text_attention_before": "sdpa",
                    "vision_mlps_padded": 2}
    assert model.model.visual.blocks[0].mlp.gate_proj.out_features == 128
    torch.testing.assert_close(after, before, rtol=0, atol=1e-10)
    assert generated_after.tolist() == generated.tolist()  # generate runs on the registered attention
    again = install_fast_attention(model)
    assert again["vision_layers"] == 0 and again["vision_mlps_padded"] == 0


def test_choose_samples_from_the_distribution():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    assert StaticDecoder.choose(logits, Sampling()).tolist() == logits.argmax(-1).tolist()
    top1 = Sampling(do_sample=True, top_k=1)
    assert StaticDecoder.choose(logits, top1).tolist() == logits.argmax(-1).tolist()
    nucleus = Sampling(do_sample=True, top_p=1e-6)
    assert StaticDecoder.choose(logits, nucleus).tolist() == logits.argmax(-1).tolist()
    eos_columns = torch.zeros(50, dtype=torch.bool)
    eos_columns[logits.argmax(-1)] = True
    history = torch.zeros(3, 1, dtype=torch.long)
    banned = StaticDecoder.pick(logits, history, None, torch.tensor(True), eos_columns, Sampling())
    assert not eos_columns[banned].any()
    allowed = StaticDecoder.pick(logits, history, None, torch.tensor(False), eos_columns, Sampling())
    assert allowed.tolist() == logits.argmax(-1).tolist()
    # two tokens with probabilities 1/4 and 3/4: the draws follow them
    two = torch.tensor([[0.0, math.log(3.0)]]).expand(20_000, 2)
    share = StaticDecoder.choose(two, Sampling(do_sample=True)).float().mean().item()
    assert abs(share - 0.75) < 0.015
    hot = StaticDecoder.choose(two, Sampling(do_sample=True, temperature=1e-6)).float().mean().item()
    assert hot == 1.0


def test_penalty_over_the_token_history_equals_transformers():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(1)
    logits = torch.randn(2, 40)
    history = torch.tensor([[3, 7, 7, 0, 39, 3], [5, 5, 5, 5, 12, 30]])  # repeats: penalised once
    expected = RepetitionPenaltyLogitsProcessor(1.3)(history, logits.clone())
    torch.testing.assert_close(StaticDecoder.penalize(logits, history, 1.3), expected, rtol=0, atol=0)


def test_top_k_first_sampling_follows_transformers_warpers():
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    torch.manual_seed(2)
    logits = torch.randn(1, 30) * 2
    ids = torch.zeros(1, 1, dtype=torch.long)
    for sampling in (Sampling(do_sample=True, temperature=0.7, top_k=8, top_p=0.8),
                     Sampling(do_sample=True, top_p=0.6), Sampling(do_sample=True, top_k=5)):
        warped = TemperatureLogitsWarper(sampling.temperature)(ids, logits.clone())
        if sampling.top_k:
            warped = TopKLogitsWarper(sampling.top_k)(ids, warped)
        if sampling.top_p < 1:
            warped = TopPLogitsWarper(sampling.top_p)(ids, warped)
        expected = warped.softmax(-1)[0]
        rows = logits.expand(40_000, 30)
        noise = StaticDecoder.sampling_noise(40_000, 30, sampling, "cpu")
        assert noise.shape == (40_000, sampling.top_k or 30) and bool((noise > 0).all())
        draws = StaticDecoder.choose(rows, sampling, noise)
        share = torch.bincount(draws, minlength=30).float() / len(draws)
        assert set(draws.unique().tolist()) <= set(torch.nonzero(expected).flatten().tolist())
        assert (share - expected).abs().max().item() < 0.012, sampling
        assert int((expected > 0).sum()) >= 2  # a real choice, not a forced one


def test_bucket_rows():
    assert [bucket_rows(n, 6) for n in (6, 5, 4, 3, 2, 1)] == [6, 6, 6, 4, 2, 1]
    assert [bucket_rows(n) for n in (1, 3, 4, 5, 33)] == [1, 4, 4, 8, 64]


def test_pad_rows_adds_filler_rows():
    inputs = {"input_ids": torch.tensor([[1, 2, 3], [0, 4, 5], [0, 0, 6]]),
              "attention_mask": torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1]]),
              "mm_token_type_ids": torch.zeros(3, 3, dtype=torch.int32)}
    out = pad_rows(inputs, 4, pad_id=9)
    assert out["input_ids"].tolist()[3] == [9, 9, 9]
    assert out["attention_mask"].tolist()[3] == [0, 0, 1]
    assert out["mm_token_type_ids"].shape == (4, 3)
    assert pad_rows(inputs, 3, pad_id=9)["input_ids"] is inputs["input_ids"]


# ---------------------------------------------------------------- the engine against generate


def _adapter(model, processor, engine, **kwargs):
    return QwenVLModel.from_components(model, processor, engine=engine, **{
        "protocol": "adfm", "dtype": "float32", **TINY_ARGS, "batch_size": 8, "max_new_tokens": 12, **kwargs})


def test_fast_engine_repeats_generate_with_left_padding(assets, queries):
    model, processor = _load(assets)
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, assets.adapter, is_trainable=False).eval()
    reference = _adapter(model, processor, "generate").predict(queries)
    fast = _adapter(model, processor, "fast")
    got = fast.predict(queries)
    assert [r.text for r in got] == [r.text for r in reference]
    assert [r.usage["completion_tokens"] for r in got] == [r.usage["completion_tokens"] for r in reference]
    assert [r.answer for r in got] == [r.answer for r in reference]
    assert len({r.usage["prompt_tokens"] for r in got}) == 2 and len({r.text for r in got}) > 1
    assert fast._decoder.last_timing["batch"] == 8  # one batch: no silent one-at-a-time fallback
    assert fast._decoder.kernels["text_attention"] == ATTENTION_NAME
    assert fast.config()["engine"] == "fast"
    # filler rows up to a power of two (what the compiled engine does) change nothing
    bucketed = StaticDecoder(model, bucket_batches=True)
    fast._decoder = bucketed
    assert [r.text for r in fast.predict(queries[:3])] == [r.text for r in reference[:3]]
    assert bucketed.last_timing["batch"] == 4


def test_prefetch_stages_batches_ahead_with_the_same_replies(assets, queries):
    from adbench.models.engines.fast.decode import StagedBatch

    model, processor = _load(assets)
    reference = [r.text for r in _adapter(model, processor, "generate", batch_size=3).predict(queries)]
    fast = _adapter(model, processor, "fast", batch_size=3, prefetch=True)
    staged = []
    real_stage = fast._stage

    def recording_stage(inputs, chunk):
        extra = real_stage(inputs, chunk)
        staged.append(extra["staged"])
        return extra

    fast._stage = recording_stage
    assert [r.text for r in fast.predict(queries)] == reference
    # every batch was staged (by _encode, in the prefetch thread) and decoded from that staging
    assert len(staged) == 3 and all(isinstance(b, StagedBatch) for b in staged)
    assert [b.real_rows for b in staged] == [3, 3, 2]
    assert [t["batch"] for t in fast._decoder.timings] == [3, 3, 2]
    assert [t["prompt_len"] for t in fast._decoder.timings] == [b.input_ids.shape[1] for b in staged]


def test_fast_engine_stops_like_generate(assets, queries):
    model, processor = _load(assets)
    probe = _adapter(model, processor, "generate", max_new_tokens=16)
    batch = probe._encode([probe._prepare(i, q) for i, q in enumerate(queries)])
    tokens = probe._new_tokens(batch.inputs)
    # a token the first reply writes at step 10 or later (and not before) becomes an end token:
    # replies now stop at different points, also when min_new_tokens=8 holds the end back
    row = tokens[0]
    at = next(i for i, tok in enumerate(row) if 9 <= i < 12 and tok not in row[:i])
    model.generation_config.eos_token_id = [tiny_qwen.IM_END_ID, tiny_qwen.ENDOFTEXT_ID, row[at]]
    replies = {}
    for min_new in (0, 12):
        extra = {"min_new_tokens": min_new} if min_new else {}
        reference = _adapter(model, processor, "generate", max_new_tokens=16, **extra).predict(queries)
        got = _adapter(model, processor, "fast", max_new_tokens=16, **extra).predict(queries)
        assert [r.text for r in got] == [r.text for r in reference]
        lengths = [r.usage["completion_tokens"] for r in got]
        assert lengths == [r.usage["completion_tokens"] for r in reference]
        assert [r.meta.get("truncated") for r in got] == [r.meta.get("truncated") for r in reference]
        assert max(lengths) == 16 and min(lengths) > min_new
        replies[min_new] = got
    assert replies[0][0].usage["completion_tokens"] == at + 1  # stopped at the new end token
    # held back until 12 tokens, the first reply had to go on differently
    assert replies[12][0].text != replies[0][0].text


def test_finished_batches_stop_early(assets, queries):
    model, processor = _load(assets)
    adapter = _adapter(model, processor, "fast")
    batch = adapter._encode([adapter._prepare(i, q) for i, q in enumerate(queries[:3])])
    decoder = StaticDecoder(model, check_every=4, bucket_batches=True)  # 3 rows + 1 filler row
    every_token_ends = set(range(len(processor.tokenizer)))
    replies = decoder.generate(batch.inputs, 40, every_token_ends, pad_id=tiny_qwen.ENDOFTEXT_ID)
    assert [len(r) for r in replies] == [1, 1, 1]  # each reply is its end token
    assert decoder.last_timing["batch"] == 4 and decoder.last_timing["steps"] == 4  # first check, not 40


def test_fast_engine_applies_the_checkpoints_repetition_penalty(assets, queries):
    model, processor = _load(assets)
    plain = [r.text for r in _adapter(model, processor, "fast", max_new_tokens=24).predict(queries)]
    model.generation_config.repetition_penalty = 1.5  # as a checkpoint's generation_config.json can set
    reference = [r.text for r in _adapter(model, processor, "generate", max_new_tokens=24).predict(queries)]
    got = [r.text for r in _adapter(model, processor, "fast", max_new_tokens=24).predict(queries)]
    assert got == reference
    assert got != plain  # the penalty changed replies, so the comparison means something


def test_repetition_penalty_argument_overrides_the_checkpoint(assets, queries, tmp_path):
    import shutil

    from transformers import GenerationConfig

    from adbench.models.generation import checkpoint_generation_defaults

    # the tiny checkpoint sets neither: transformers' defaults (top_k 50 before transformers 5.2x, then none)
    assert checkpoint_generation_defaults(str(assets.base)) == {"repetition_penalty": 1.0,
                                                                "top_k": GenerationConfig().top_k or None}
    assert checkpoint_generation_defaults(str(tmp_path / "nowhere"))["repetition_penalty"] == 1.0
    copy = tmp_path / "base"
    shutil.copytree(assets.base, copy)
    config = json.loads((copy / "generation_config.json").read_text())
    qwen_instruct = {"repetition_penalty": 1.05, "top_k": 1, "top_p": 0.001, "temperature": 0.1}
    (copy / "generation_config.json").write_text(json.dumps({**config, **qwen_instruct}))
    assert checkpoint_generation_defaults(str(copy)) == {"repetition_penalty": 1.05, "top_k": 1}
    model, processor = _load(assets)
    given = [_adapter(model, processor, engine, max_new_tokens=24, repetition_penalty=1.5) for engine in
             ("generate", "fast")]
    replies = [[r.text for r in adapter.predict(queries)] for adapter in given]
    assert replies[0] == replies[1]
    assert given[0].config()["generation"]["repetition_penalty"] == 1.5
    assert replies[0] != [r.text for r in _adapter(model, processor, "fast", max_new_tokens=24).predict(queries)]


def test_the_checkpoints_top_k_applies_to_sampling_unless_turned_off(assets, queries):
    model, processor = _load(assets)
    greedy = [r.text for r in _adapter(model, processor, "generate").predict(queries)]
    model.generation_config.top_k = 1  # as Qwen2.5-VL-Instruct's generation_config.json sets
    for engine in ("generate", "fast"):
        sampled = _adapter(model, processor, engine, do_sample=True, temperature=1.5)
        assert sampled.config()["generation"]["top_k"] == 1
        assert [r.text for r in sampled.predict(queries)] == greedy  # top_k 1: sampling is greedy
        sampled.generation = replace(sampled.generation, top_k=0)
        assert sampled.config()["generation"]["top_k"] is None
        assert [r.text for r in sampled.predict(queries)] != greedy


def test_each_new_compiled_shape_is_announced_once(assets, queries, capsys):
    model, processor = _load(assets)
    adapter = _adapter(model, processor, "fast")
    batch = adapter._encode([adapter._prepare(i, q) for i, q in enumerate(queries[:3])])
    decoder = StaticDecoder(model)
    decoder.compile = True  # announce as a compiling engine does, but run the step eagerly (no compiler here)
    for _ in range(2):
        decoder.generate(batch.inputs, 4, {tiny_qwen.IM_END_ID}, pad_id=tiny_qwen.ENDOFTEXT_ID)
    err = capsys.readouterr().err
    assert err.count("compiling the decoding step") == 1
    assert f"{decoder.last_timing['batch']} rows x {decoder.last_timing['cache_len']} cached tokens" in err


def test_fast_engine_seeded_sampling(assets, queries):
    model, processor = _load(assets)
    adapter = _adapter(model, processor, "fast", do_sample=True, temperature=1.5, seed=3)
    first = [r.text for r in adapter.predict(queries[:4])]
    assert [r.text for r in adapter.predict(queries[:4])] == first
    adapter.seed = 4
    assert [r.text for r in adapter.predict(queries[:4])] != first


def test_fast_engine_on_a_model_loaded_with_eager_attention(assets, queries):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(assets.base, use_safetensors=True,
                                                               attn_implementation="eager").eval()
    processor = AutoProcessor.from_pretrained(assets.base)
    reference = [r.text for r in _adapter(model, processor, "generate").predict(queries)]
    fast = _adapter(model, processor, "fast")
    assert [r.text for r in fast.predict(queries)] == reference
    assert fast._decoder.kernels["text_attention_before"] == "eager"


def test_engine_argument(assets):
    model, processor = _load(assets)
    with pytest.raises(ValueError, match="engine must be one of auto, generate, fast"):
        _adapter(model, processor, "turbo")
    auto = _adapter(model, processor, "auto")
    assert auto.engine == "generate" and auto.compile is False  # on a CPU
    assert auto.config()["engine"] == "generate"


def test_decoding_step_traces_as_one_graph(assets, queries):
    """What becomes the CUDA graph on a GPU (forward, penalty, end-token ban, sampling) has no graph break.

    torch.compile's `eager` backend runs dynamo's tracing without a compiler; fullgraph=True
    makes any break an error instead of a silently split graph.
    """
    model, processor = _load(assets)
    adapter = _adapter(model, processor, "fast")
    batch = adapter._encode([adapter._prepare(i, q) for i, q in enumerate(queries)])
    traced = StaticDecoder(model)
    traced._step = torch.compile(traced._decode_step, backend="eager", fullgraph=True, dynamic=False)
    for sampling in (Sampling(repetition_penalty=1.3),
                     Sampling(do_sample=True, top_k=5, top_p=0.9, temperature=0.8, repetition_penalty=1.1)):
        replies = []
        for decoder in (StaticDecoder(model), traced):
            torch.manual_seed(0)
            replies.append(decoder.generate(batch.inputs, 10, {tiny_qwen.IM_END_ID}, tiny_qwen.ENDOFTEXT_ID,
                                            sampling, min_new_tokens=4))
        assert replies[1] == replies[0]
        assert len({tuple(r) for r in replies[0]}) > 1


def test_stop_strings_end_replies_alike_on_both_engines(assets, queries):
    model, processor = _load(assets)
    full = [r.text for r in _adapter(model, processor, "generate").predict(queries)]
    stop = full[0][2:5]  # a piece of the first reply, after its start
    assert len(full[0]) >= 5 and stop.strip()
    expected = [t[: t.find(stop)] if stop in t else t for t in full]
    for engine in ("generate", "fast"):
        adapter = _adapter(model, processor, engine, stop=[stop])
        got = adapter.predict(queries)
        assert [r.text for r in got] == expected
        assert not got[0].meta.get("truncated")  # ended by the stop string, not by the length limit
        assert adapter.config()["generation"]["stop"] == [stop]


# ---------------------------------------------------------------- shared prefixes (the questions about one image)


@pytest.fixture(scope="module")
def multitask_queries(assets):
    """demo-multitask queries: most images are asked three questions, the good ones one (groups and singles)."""
    from adbench.tasks.demo import multitask

    task = multitask()
    queries = [task.render(s) for s in task.samples(assets.data_root)[:24]]
    per_image = {tuple(q.images) for q in queries}
    assert len(per_image) < len(queries) - 6  # several queries per image
    return queries


def test_shared_prefixes_give_the_unshared_replies(assets, multitask_queries):
    model, processor = _load(assets)
    kwargs = dict(protocol="mmad", batch_size=12)
    reference = [r.text for r in _adapter(model, processor, "generate", **kwargs).predict(multitask_queries)]
    unshared = _adapter(model, processor, "fast", share_prefix=False, **kwargs)
    unshared_replies = unshared.predict(multitask_queries)
    assert [r.text for r in unshared_replies] == reference
    assert all("groups" not in t for t in unshared._decoder.timings)
    shared = _adapter(model, processor, "fast", **kwargs)
    got = shared.predict(multitask_queries)
    assert [r.text for r in got] == reference and len(set(reference)) > 1
    assert [r.answer for r in got] == [r.answer for r in unshared_replies]
    timings = [t for t in shared._decoder.timings if t["batch"] == 12][-2:]
    # each batch of 12 prefilled its images and instruction once per image (about 3 questions each)
    assert len(timings) == 2 and all(t["groups"] < 10 for t in timings)
    assert all(t["prefix_len"] + t["suffix_len"] <= t["prompt_len"] + 1 for t in timings)
    assert shared.config()["share_prefix"] is True and unshared.config()["share_prefix"] is False
    assert _adapter(model, processor, "generate").config()["share_prefix"] is False  # only the fast engine shares


def test_shared_prefixes_with_filler_rows_penalty_and_prefetch(assets, multitask_queries):
    model, processor = _load(assets)
    # batches of 5 split some images' questions; bucketed, the last batch (4 queries) gets a filler row
    kwargs = dict(protocol="mmad", batch_size=5, repetition_penalty=1.3, min_new_tokens=4, max_new_tokens=16)
    reference = [r.text for r in _adapter(model, processor, "generate", **kwargs).predict(multitask_queries)]
    shared = _adapter(model, processor, "fast", prefetch=True, **kwargs)
    shared._decoder = StaticDecoder(model, bucket_batches=True)  # filler rows up to the full batch
    assert [r.text for r in shared.predict(multitask_queries)] == reference
    assert [t["batch"] for t in shared._decoder.timings] == [5] * 5
    assert sum("groups" in t for t in shared._decoder.timings) >= 3


def test_queries_about_the_same_images_stay_together(assets, multitask_queries):
    model, processor = _load(assets)
    adapter = _adapter(model, processor, "fast", protocol="mmad")
    ready = [adapter._prepare(i, q) for i, q in enumerate(reversed(multitask_queries))]
    ordered = adapter._in_batch_order(ready)
    images = [tuple(p.query.images) for p in ordered]
    seen: list = []
    for key in images:  # each image's queries come one after another
        if not seen or seen[-1] != key:
            assert key not in seen
            seen.append(key)
    assert sorted(p.index for p in ordered) == list(range(len(ready)))
    adapter.share_prefix = False  # plain length order
    assert [p.length for p in adapter._in_batch_order(ready)] == sorted(p.length for p in ready)


def test_rows_share_only_a_prefix_that_holds_their_images():
    from adbench.models.engines.fast.prefix import plan_shared_prefix

    img, pad = tiny_qwen.IMAGE_PAD_ID, 0
    grid = torch.tensor([[1, 2, 2], [1, 2, 2]])  # one image token each (merge 2)
    # rows 0 and 1 show the same image and share "7 img 8"; row 2 is alone
    ids = torch.tensor([[0, 7, img, 8, 5, 6], [0, 0, 7, img, 8, 9], [7, img, 8, 4, 4, 3]])
    attention = (torch.arange(6)[None] >= torch.tensor([[1], [2], [0]])).long()
    positions = torch.cumsum(attention, 1)[None].expand(3, -1, -1) - 1
    grid3 = torch.cat([grid, grid[:1]])
    plan = plan_shared_prefix(ids, attention, positions, ["a", "a", "b"], img, pad, grid3)
    assert plan.groups.tolist() == [0, 0, 1]
    # row 2, alone, keeps in the prefix block only what fits its width (3): its image and more
    assert plan.prefix_ids.tolist() == [[7, img, 8], [7, img, 8]]
    assert plan.suffix_ids.tolist() == [[pad, 5, 6], [pad, pad, 9], [4, 4, 3]]
    assert plan.suffix_mask.tolist() == [[0, 1, 1], [0, 0, 1], [1, 1, 1]]
    assert plan.prompt_len == 6 and plan.image_index.tolist() == [0, 2]
    assert plan.patch_index.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    # each real token keeps its position in its own prompt
    assert plan.suffix_positions[0].tolist() == [[0, 3, 4], [0, 0, 3], [3, 4, 5]]
    # rows whose common part ends before their image: nothing shared
    other = torch.tensor([[0, 7, img, 8, 5, 6], [0, 0, 9, img, 8, 9]])
    assert plan_shared_prefix(other, attention[:2], positions[:, :2], ["a", "a"], img, pad, grid) is None
    assert plan_shared_prefix(ids, attention, positions, [None, None, None], img, pad, grid3) is None
