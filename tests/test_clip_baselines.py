"""WinCLIP and AnomalyCLIP on randomly initialised open_clip models.

No CLIP weights can be downloaded here, so the models are built with
`pretrained="random"` (open_clip's pretrained=None, seeded) from a tiny open_clip
config file; the path that loads real weights is exercised with a weights file
saved from such a model. Scores of random models mean nothing: the tests check the
computations against open_clip's own forward passes and against hand calculations,
and the runner/scoring/leaderboard plumbing end to end on the demo suite.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

import torch.nn.functional as F  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from adbench.cli import main  # noqa: E402
from adbench.data.demo import ensure_demo  # noqa: E402
from adbench.metrics import youden_threshold  # noqa: E402
from adbench.models.baselines.anomalyclip import (  # noqa: E402
    AnomalyCLIPModel,
    CheckpointError,
    expected_shapes,
    prompt_strings,
    random_prompt_state,
)
from adbench.models.baselines.clip_common import build_clip, encode_text, vit_pooled, vit_run, vit_tokens  # noqa: E402
from adbench.models.baselines.winclip import (  # noqa: E402
    ANOMALOUS_STATES,
    NORMAL_STATES,
    TEMPLATES,
    WinCLIPModel,
    harmonic_aggregation,
    prompt_ensemble,
    window_index,
)
from adbench.results.tables import build_table  # noqa: E402
from adbench.results.writer import ORACLE_NOTE, render_table  # noqa: E402
from adbench.runner import RunSpec, run  # noqa: E402
from adbench.schema import Query  # noqa: E402
from adbench.store import RunStore  # noqa: E402

# A CLIP small enough for CPU tests: 64x64 input, 16-pixel patches (4x4 grid), 9 text
# layers (AnomalyCLIP's deep prompts go before text layers 1..8).
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 9},
}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clipcfg") / "adbench-tiny-clip.json"
    path.write_text(json.dumps(TINY))
    return str(path)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clipdata")
    ensure_demo(root)
    return root


@pytest.fixture(scope="module")
def brick(data_root) -> dict[str, list[str]]:
    base = data_root / "demo" / "DemoTexture" / "brick"
    return {
        "train": sorted(str(p) for p in (base / "train" / "good").glob("*.png")),
        "good": sorted(str(p) for p in (base / "image" / "good").glob("*.png")),
        "bad": sorted(str(p) for p in (base / "image" / "crack").glob("*.png")),
    }


@pytest.fixture(scope="module")
def winclip(tiny) -> WinCLIPModel:
    return WinCLIPModel(model=tiny, pretrained="random", shots=1, scales=[2, 3, 4], zero_shot_maps=True)


def _query(image: str, references=(), support=(), category="brick", qid=None) -> Query:
    return Query(id=qid or Path(image).name, images=[*references, image], question="", options={}, prompt="",
                 n_references=len(references), support=list(support), group=f"DemoTexture/{category}",
                 meta={"category": category})


# --------------------------------------------------------------------------- WinCLIP pieces


def test_prompt_ensemble_has_the_published_counts():
    assert (len(NORMAL_STATES), len(ANOMALOUS_STATES), len(TEMPLATES)) == (7, 4, 21)
    assert len(set(TEMPLATES)) == 21
    prompts = prompt_ensemble("metal plate")
    assert len(prompts["normal"]) == 147 == len(set(prompts["normal"]))
    assert len(prompts["anomalous"]) == 84 == len(set(prompts["anomalous"]))
    assert all("metal plate" in p for ps in prompts.values() for p in ps)
    assert "a photo of a damaged metal plate." in prompts["anomalous"]
    assert "a photo of the metal plate without defect for visual inspection." in prompts["normal"]
    assert not any(w in p for p in prompts["normal"] for w in ("damaged", " with "))


def test_windows_and_harmonic_aggregation_by_hand():
    assert window_index(3, 2).tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    assert len(window_index(15, 2)) == 196 and len(window_index(15, 3)) == 169  # ViT-B-16-plus at 240 px
    with pytest.raises(ValueError, match="window size 5"):
        window_index(4, 5)
    rng = np.random.default_rng(0)
    for grid, size in ((4, 2), (4, 3), (5, 2)):
        index = window_index(grid, size)
        scores = rng.random((2, len(index))) + 0.01
        got = harmonic_aggregation(torch.tensor(scores), index, grid * grid).numpy()
        for b in range(2):
            for patch in range(grid * grid):
                covering = [scores[b, w] for w in range(len(index)) if patch in index[w].tolist()]
                expected = len(covering) / sum(1 / s for s in covering)
                assert got[b, patch] == pytest.approx(expected)
    zero = harmonic_aggregation(torch.tensor([[0.0, 1.0, 1.0, 1.0]]), window_index(3, 2), 9)
    assert zero[0, 0] == pytest.approx(0.0, abs=1e-9) and torch.isfinite(zero).all()


def test_tower_helpers_match_open_clip(winclip):
    clip = winclip.clip
    tokens = winclip.tokenizer(prompt_ensemble("brick")["anomalous"][:7])
    assert torch.allclose(encode_text(clip, tokens), clip.encode_text(tokens), atol=1e-5)
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    visual = clip.visual
    with torch.inference_mode():
        full = vit_pooled(visual, vit_run(visual, vit_tokens(visual, images)))
        assert torch.allclose(full, clip.encode_image(images), atol=1e-5)
        feats = winclip.image_features(images)
        # a window that covers the whole 4x4 grid is the whole image
        assert torch.allclose(torch.stack([f.windows[4][0] for f in feats]), full, atol=1e-5)
        # a 2x2 window equals the whole sequence with attention restricted to that window (+ class token)
        tokens_all = vit_tokens(visual, images)
        for w in (0, 4, 8):
            allowed = [0, *(window_index(4, 2)[w] + 1).tolist()]
            mask = torch.full((17, 17), float("-inf"))
            mask[:, allowed] = 0.0
            masked = visual.transformer(visual.ln_pre(tokens_all), attn_mask=mask)
            expected = visual.ln_post(masked[:, 0]) @ visual.proj
            assert torch.allclose(torch.stack([f.windows[2][w] for f in feats]), expected, atol=1e-5)


def test_zero_shot_score_is_clips_softmax_over_the_ensemble(tiny, brick):
    zs = WinCLIPModel(model=tiny, pretrained="random", shots=0, zero_shot_maps=True)
    clip, tok = zs.clip, zs.tokenizer
    q = _query(brick["bad"][0], references=[brick["train"][0]])
    r = zs.predict([q])[0]
    assert r.error is None and 0.0 < r.score < 1.0
    # independently: open_clip's encode_text / encode_image, mean of normalised sentence embeddings
    with torch.inference_mode():
        protos = [F.normalize(clip.encode_text(tok(s)), dim=-1).mean(0) for s in prompt_ensemble("brick").values()]
        from adbench.models.baselines.clip_common import load_clip_image

        image = clip.encode_image(load_clip_image(q.image, 64)[None])[0]
        logits = torch.stack([F.cosine_similarity(image, p, dim=0) for p in protos]) / 0.07
    assert r.score == pytest.approx(float(logits.softmax(0)[1]), rel=1e-5)
    assert r.meta["object"] == "brick" and r.meta["zero_shot"] == r.score
    assert 0.0 <= r.meta["zero_shot_map_max"] <= 1.0


def test_few_shot_memory_references_and_failures(winclip, brick, tmp_path):
    query, ref = brick["bad"][0], brick["train"][0]
    twin = tmp_path / "twin.png"
    shutil.copy(query, twin)
    # the query's twin as the only reference: every patch and window is in memory -> few-shot map 0
    same = winclip.predict([_query(query, references=[str(twin)])])[0]
    assert same.error is None and same.meta["few_shot_map_max"] == pytest.approx(0.0, abs=1e-6)
    assert same.score == pytest.approx(same.meta["zero_shot"] / 2, rel=1e-5)
    other = winclip.predict([_query(query, references=[ref])])[0]
    assert other.meta["few_shot_map_max"] > 1e-3 and other.meta["references"] == [ref]
    assert other.score == pytest.approx((other.meta["zero_shot"] + other.meta["few_shot_map_max"]) / 2, rel=1e-5)
    # references: shown ones first, then the support pool, never the query itself
    q = _query(brick["train"][1], support=brick["train"][:3])
    assert winclip.references_for(q) == [brick["train"][0]]
    q = _query(brick["train"][1], references=[brick["train"][2]], support=brick["train"][:3])
    assert winclip.references_for(q) == [brick["train"][2]]
    none_left, missing_ref, fine = winclip.predict([
        _query(brick["train"][0], support=[brick["train"][0]], qid="alone"),
        _query(query, references=[str(tmp_path / "missing.png")], qid="missing"),
        _query(brick["good"][0], references=[ref], qid="fine"),
    ])
    assert none_left.score is None and "shots=1 needs 1" in none_left.error and "'alone'" in none_left.error
    assert missing_ref.score is None and "missing.png" in missing_ref.error
    assert fine.error is None and 0.0 <= fine.score <= 1.0


def test_weights_file_is_the_same_code_path(tiny, brick, tmp_path):
    clip, _, _ = build_clip(tiny, weights=None, pretrained="random", seed=0, device=CPU)
    weights = tmp_path / "tiny-clip.pt"
    torch.save(clip.state_dict(), weights)
    queries = [_query(p) for p in (brick["good"][0], brick["bad"][0], brick["bad"][1])]
    random0 = [r.score for r in WinCLIPModel(model=tiny, pretrained="random", seed=0).predict(queries)]
    from_file_model = WinCLIPModel(model=tiny, weights=str(weights), seed=7)
    from_file = [r.score for r in from_file_model.predict(queries)]
    random1 = [r.score for r in WinCLIPModel(model=tiny, pretrained="random", seed=1).predict(queries)]
    assert from_file == pytest.approx(random0, rel=1e-6)
    assert random1 != pytest.approx(random0, rel=1e-3)
    cfg = from_file_model.config()
    assert cfg["weights"] == str(weights) and cfg["random_init"] is False and cfg["pretrained"] is None
    json.dumps(cfg)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        WinCLIPModel(model=tiny, weights=str(tmp_path / "nope.pt"))
    torch.save({"visual.proj": torch.zeros(3, 3)}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="wrong.pt"):
        WinCLIPModel(model=tiny, weights=str(tmp_path / "wrong.pt"))
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-X-1'"):
        WinCLIPModel(model="ViT-X-1", pretrained="random")


def test_full_winclip_architecture_builds():
    """The paper's ViT-B-16-plus-240 (random weights): 240 px, 15x15 patches, 196 small and 169 mid windows."""
    m = WinCLIPModel(pretrained="random", shots=0)
    assert (m.image_size, m.grid) == (240, 15)
    assert {s: len(i) for s, i in m._windows.items()} == {2: 196, 3: 169}
    feats = m.image_features(torch.zeros(1, 3, 240, 240), windows=False)[0]
    assert feats.embedding.shape == (640,) and feats.patches.shape == (225, 896)
    cfg = m.config()
    assert cfg["clip_model"] == "ViT-B-16-plus-240" and cfg["random_init"] is True
    assert cfg["prompts_per_state"] == {"normal": 147, "anomalous": 84}


# --------------------------------------------------------------------------- AnomalyCLIP pieces


@pytest.fixture(scope="module")
def tiny_clip(tiny):
    return build_clip(tiny, weights=None, pretrained="random", seed=0, device=CPU)[:2]


@pytest.fixture(scope="module")
def checkpoint(tiny_clip, tmp_path_factory) -> tuple[Path, dict]:
    clip, tok = tiny_clip
    state = random_prompt_state(clip, tok, seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "epoch_15.pth"
    torch.save({"prompt_learner": state}, path)  # the release's layout
    return path, state


def test_checkpoint_spec_is_the_releases_for_vit_l14_336():
    cfg = open_clip.get_model_config("ViT-L-14-336-quickgelu")
    shapes = expected_shapes(cfg["text_cfg"]["width"], cfg["text_cfg"]["context_length"])
    assert len(shapes) == 4 * 2 + 8 * 3
    assert shapes["ctx_pos"] == shapes["ctx_neg"] == (1, 1, 12, 768)
    assert shapes["token_suffix_neg"] == (1, 1, 64, 768) and shapes["tokenized_prompts_pos"] == (1, 1, 77)
    assert [shapes[f"compound_prompts_text.{i}"] for i in range(8)] == [(4, 768)] * 8
    assert shapes["compound_prompt_projections.7.weight"] == (896, 768)
    assert prompt_strings(12)["neg"] == "X X X X X X X X X X X X damaged object."


def test_mismatched_checkpoints_are_refused_with_names(tiny, checkpoint, tmp_path):
    _, state = checkpoint

    def attempt(bad_state, name="bad.pth", **kw):
        path = tmp_path / name
        torch.save({"prompt_learner": bad_state}, path)
        with pytest.raises(CheckpointError) as e:
            AnomalyCLIPModel(str(path), model=tiny, pretrained="random", image_size=64, **kw)
        assert str(path) in str(e.value)
        return str(e.value)

    bad = dict(state)
    del bad["compound_prompts_text.7"]
    bad["ctx_pos"] = torch.zeros(1, 1, 10, 64)
    bad["extra.weight"] = torch.zeros(2)
    msg = attempt(bad)
    assert "missing tensors: compound_prompts_text.7" in msg
    assert "unexpected tensors: extra.weight" in msg
    assert "ctx_pos (expected (1, 1, 12, 64), got (1, 1, 10, 64))" in msg
    msg = attempt(dict(state), name="shallow.pth", depth=8)  # a design the file was not trained with
    assert "unexpected tensors: " in msg and "compound_prompts_text.7" in msg
    swapped = dict(state, tokenized_prompts_pos=state["tokenized_prompts_neg"])
    assert "tokenized_prompts_pos are not the token ids" in attempt(swapped, name="tok.pth")
    # prompts learned on other CLIP weights: the frozen token embeddings do not match
    with pytest.raises(CheckpointError, match="learned on other CLIP weights"):
        AnomalyCLIPModel(str(checkpoint[0]), model=tiny, pretrained="random", seed=1, image_size=64)
    pickled = tmp_path / "pickle.pth"
    torch.save({"prompt_learner": {"ctx_pos": Fraction(1, 2)}}, pickled)
    with pytest.raises(CheckpointError, match="pickle.pth"):
        AnomalyCLIPModel(str(pickled), model=tiny, pretrained="random")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        AnomalyCLIPModel(str(tmp_path / "absent.pth"), model=tiny, pretrained="random")
    with pytest.raises(ValueError, match="prompt_checkpoint=PATH"):
        AnomalyCLIPModel(model=tiny, pretrained="random")


def _reference_text(clip, tokens, embeddings, deep):
    """The learned-prompt text embedding through open_clip's own Transformer.forward (full
    77-token context), with forward hooks putting the deep prompts in before layers 1..8."""
    handles = []
    for i, block in enumerate(clip.transformer.resblocks):
        if 1 <= i <= len(deep):
            def put(module, args, kwargs, p=deep[i - 1]):
                x = args[0].clone()
                x[:, 1 : 1 + p.shape[0]] = p
                return (x, *args[1:]), kwargs

            handles.append(block.register_forward_pre_hook(put, with_kwargs=True))
    try:
        x = clip.transformer(embeddings + clip.positional_embedding, attn_mask=clip.attn_mask)
    finally:
        for h in handles:
            h.remove()
    x = clip.ln_final(x)
    return x[torch.arange(len(tokens)), tokens.argmax(-1)] @ clip.text_projection


def test_learned_text_and_image_score_match_an_independent_computation(tiny, tiny_clip, checkpoint, brick):
    clip, tok = tiny_clip
    path, state = checkpoint
    model = AnomalyCLIPModel(str(path), model=tiny, pretrained="random", image_size=64)
    deep = [state[f"compound_prompts_text.{i}"] for i in range(8)]
    with torch.inference_mode():
        expected = []
        for s, text in prompt_strings(12).items():
            tokens = tok([text])
            emb = clip.token_embedding(tokens)
            emb[:, 1:13] = state[f"ctx_{s}"][0]
            expected.append(_reference_text(clip, tokens, emb, deep)[0])
        expected = torch.stack(expected)
    assert torch.allclose(model.text_features, expected, atol=1e-5)
    # the learned tokens and the deep prompts both matter (a random change: LayerNorm would cancel a constant)
    gen = torch.Generator().manual_seed(0)
    for key in ("ctx_neg", "compound_prompts_text.3"):
        changed = dict(state, **{key: state[key] + torch.randn(state[key].shape, generator=gen)})
        assert not torch.allclose(model._learned_text(changed), model.text_features, atol=1e-4)

    images = [brick["good"][0], brick["bad"][0]]
    responses = model.predict([_query(p) for p in images])
    from adbench.models.baselines.clip_common import load_clip_image

    with torch.inference_mode():
        x = torch.stack([load_clip_image(p, 64) for p in images])
        visual = clip.visual
        hidden = visual.transformer(visual.ln_pre(vit_tokens(visual, x)))
        raw = hidden[:, 0] @ visual.proj  # the release: class token x proj, no ln_post
        text = F.normalize(expected, dim=-1)
        want = ((F.normalize(raw, dim=-1) @ text.T) / 0.07).softmax(-1)[:, 1]
        with_ln = ((F.normalize(clip.encode_image(x), dim=-1) @ text.T) / 0.07).softmax(-1)[:, 1]
    assert [r.score for r in responses] == pytest.approx(want.tolist(), rel=1e-5)
    plain = AnomalyCLIPModel(str(path), model=tiny, pretrained="random", image_size=64, ln_post=True)
    assert [r.score for r in plain.predict([_query(p) for p in images])] == pytest.approx(with_ln.tolist(), rel=1e-5)
    # another input size: positional embeddings resized (4x4 -> 6x6 grid), still a probability
    big = AnomalyCLIPModel(str(path), model=tiny, pretrained="random", image_size=96)
    scores = [r.score for r in big.predict([_query(p) for p in images])]
    assert all(0.0 < s < 1.0 for s in scores) and scores != pytest.approx(want.tolist(), rel=1e-4)


# --------------------------------------------------------------------------- end to end


def _check_rules(run_dir: Path, results: dict, model: str) -> None:
    """Thresholds, decisions and AUROC recomputed from samples.jsonl with scikit-learn."""
    records = [r for r in RunStore(run_dir).load_records() if r.role == "eval"]
    assert results["score_is_probability"] is True and results["counts"]["n_failed"] == 0
    assert all(0.0 <= r.score <= 1.0 for r in records)
    rules = results["rules"]
    assert rules["fixed"]["thresholds"] == {"all": 0.5} and rules["youden"]["oracle"] is True
    for ds in {r.dataset for r in records}:
        rs = [r for r in records if r.dataset == ds]
        s, y = np.array([r.score for r in rs]), np.array([r.label for r in rs])
        assert results["metrics"][ds]["auroc"] == pytest.approx(roc_auc_score(y, s))
        t = rules["youden"]["thresholds"][ds]
        assert t == youden_threshold(s, y) and np.isfinite(t)
        for rule, thr in (("youden", t), ("fixed", 0.5)):
            pred = s >= thr
            balanced = (np.mean(~pred[y == 0]) + np.mean(pred[y == 1])) / 2
            assert rules[rule]["accuracy"][ds] == pytest.approx(balanced)
    assert results["model"] == model


def test_both_baselines_end_to_end_on_the_demo_suite(tiny, tiny_clip, checkpoint, data_root, tmp_path, capsys):
    out = tmp_path / "runs"
    outcome = run(RunSpec(model="winclip", task="demo-binary", data_root=data_root, limit=14, out=out,
                          model_args={"model": tiny, "pretrained": "random", "shots": 1}, progress=False))
    _check_rules(outcome.run_dir, outcome.results, "winclip")
    assert outcome.results["counts"]["n"] == 14 and outcome.results["counts"]["n_calibration"] > 0
    config = RunStore(outcome.run_dir).read_config()
    assert config["model_config"]["mode"] == "few-shot (WinCLIP+)" and config["score_is_probability"] is True

    # AnomalyCLIP through the CLI, CLIP weights from a file (the real-weights code path)
    clip, _ = tiny_clip
    weights = tmp_path / "clip.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    code = main(["run", "--model", "anomalyclip", "--task", "demo-binary", "--data-root", str(data_root),
                 "--out", str(out), "--limit", "14", "--no-progress", "-M", f"prompt_checkpoint={checkpoint[0]}",
                 "-M", f"model={tiny}", "-M", f"weights={weights}", "-M", "image_size=64"])
    assert code == 0
    (a_dir,) = (out / "demo-binary" / "anomalyclip").iterdir()
    a_results = json.loads((a_dir / "results.json").read_text())
    _check_rules(a_dir, a_results, "anomalyclip")
    a_config = json.loads((a_dir / "config.json").read_text())
    assert a_config["model_config"]["weights"] == str(weights)
    assert len(a_config["model_config"]["prompt_checkpoint_sha256"]) == 64

    plain = build_table("datasets", [outcome.run_dir, a_dir])
    rows = plain.rows
    assert [r.label for r in rows] == ["winclip*", "winclip (0.5)", "winclip (calib.)",
                                       "anomalyclip*", "anomalyclip (0.5)", "anomalyclip (calib.)"]
    assert rows[0].figures["DemoObject"] == 100 * outcome.results["rules"]["youden"]["accuracy"]["DemoObject"]
    table = render_table(plain, compact=True)
    assert "| winclip*" in table and "| anomalyclip (0.5)" in table and ORACLE_NOTE in table
    capsys.readouterr()
    assert main(["leaderboard", str(outcome.run_dir), str(a_dir)]) == 0
    printed = capsys.readouterr().out
    assert "winclip (0.5)" in printed and "anomalyclip*" in printed
