"""AnomalyCLIP (Zhou et al., "AnomalyCLIP: Object-agnostic Prompt Learning for Zero-shot
Anomaly Detection", ICLR 2024): image-level anomaly scores on open_clip.

AnomalyCLIP keeps CLIP ViT-L/14@336px frozen and learns two object-agnostic text
prompts, "[V1..V12] object." and "[W1..W12] damaged object.", plus deep prompt tokens
that replace positions 1..4 of the text sequence before each of the text layers
1..8. The image-level score is the softmax (temperature 0.07) over (normal,
anomalous) of the cosine similarity between the image embedding and the two learned
text embeddings; the anomalous probability is the score, in [0, 1].

As in the released code (zqhang/AnomalyCLIP, test.py): images are resized to
518x518 (bicubic) with the positional embeddings resized bilinearly, and the image
embedding is the class token of the last layer times the projection, without
ln_post (`-M ln_post=true` applies it, as plain CLIP does). Its DPAM attention change
only alters the patch-token path used for anomaly maps, not the class token.

The prompt checkpoint is the released file (`checkpoints/9_12_4_multiscale/epoch_15.pth`,
trained on VisA, for every other dataset; `9_12_4_multiscale_visa/epoch_15.pth`,
trained on MVTec AD, for VisA): `torch.save({"prompt_learner": state_dict})`. It is read
with `torch.load(weights_only=True)` (or safetensors, flat). Its tensors, with
d = the text width of the CLIP model (768 for ViT-L/14@336px), n = 12 prompt tokens,
depth = 9, t = 4 deep prompt tokens, C = 77 context length:

    ctx_pos                          (1, 1, n, d)      learned normal prompt tokens
    ctx_neg                          (1, 1, n, d)      learned anomalous prompt tokens
    compound_prompts_text.{i}        (t, d)            deep prompt tokens, i = 0 .. depth-2
    compound_prompt_projections.{i}.weight (896, d)    unused at inference (kept by the release)
    compound_prompt_projections.{i}.bias   (896,)
    token_prefix_pos, token_prefix_neg     (1, 1, 1, d)       frozen embedding of the start token
    token_suffix_pos, token_suffix_neg     (1, 1, C-1-n, d)   frozen embeddings of the prompt's rest
    tokenized_prompts_pos, tokenized_prompts_neg (1, 1, C)    integer token ids of the two prompts

A checkpoint with a missing, unexpected or wrongly shaped tensor is refused, as is
one whose token ids are not those of the two prompts or whose frozen embeddings
differ from the loaded CLIP model's (the prompts were learned on other CLIP weights).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from adbench.args import ArgumentError
from adbench.errors import UserError
from adbench.images import file_digest
from adbench.model import Model, OutputKind
from adbench.models.baselines import clip_common
from adbench.models.baselines.backbones import load_state_dict
from adbench.models.devices import resolve_device
from adbench.models.weights import MissingWeightsError, UnsafeCheckpointError
from adbench.schema import Query, Response

RELEASE_URL = "https://github.com/zqhang/AnomalyCLIP (checkpoints/9_12_4_multiscale/epoch_15.pth)"
PROJECTION_DIM = 896  # the release's (unused) compound prompt projections: Linear(d, 896)
PROMPT_STATES = {"pos": "object.", "neg": "damaged object."}
#: The frozen token embeddings in a checkpoint must equal the model's to this tolerance
#: (the release stores them in float16).
EMBEDDING_ATOL = 2e-3


class CheckpointError(UserError):
    """A prompt checkpoint that does not match what AnomalyCLIP expects; names the file."""


def prompt_strings(n_ctx: int) -> dict[str, str]:
    """The two prompt sentences; the n_ctx "X" placeholders are where the learned tokens go."""
    prefix = " ".join(["X"] * n_ctx)
    return {k: f"{prefix} {v}" for k, v in PROMPT_STATES.items()}


def expected_shapes(text_width: int, context: int, n_ctx: int = 12, depth: int = 9, t_n_ctx: int = 4
                    ) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a prompt checkpoint (see the module docstring)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for s in ("pos", "neg"):
        shapes[f"ctx_{s}"] = (1, 1, n_ctx, text_width)
        shapes[f"token_prefix_{s}"] = (1, 1, 1, text_width)
        shapes[f"token_suffix_{s}"] = (1, 1, context - 1 - n_ctx, text_width)
        shapes[f"tokenized_prompts_{s}"] = (1, 1, context)
    for i in range(depth - 1):
        shapes[f"compound_prompts_text.{i}"] = (t_n_ctx, text_width)
        shapes[f"compound_prompt_projections.{i}.weight"] = (PROJECTION_DIM, text_width)
        shapes[f"compound_prompt_projections.{i}.bias"] = (PROJECTION_DIM,)
    return shapes


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The prompt learner's state dict from a release-style file ({"prompt_learner": ...}) or a flat one."""
    try:
        return load_state_dict(path, "AnomalyCLIP prompt checkpoint", wrapper_keys=("prompt_learner",))
    except (MissingWeightsError, UnsafeCheckpointError):
        raise  # absent, or a pickle named .safetensors: already the precise error
    except ValueError as e:
        raise CheckpointError(str(e)) from e


def check_checkpoint(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], path: str) -> None:
    """Raise CheckpointError naming the file and every missing, unexpected or misshapen tensor."""
    missing = sorted(set(shapes) - set(state))
    unexpected = sorted(set(state) - set(shapes))
    wrong = [
        f"{k} (expected {tuple(shapes[k])}, got {tuple(state[k].shape)})"
        for k in sorted(set(shapes) & set(state))
        if tuple(state[k].shape) != tuple(shapes[k])
    ]
    problems = []
    if missing:
        problems.append("missing tensors: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected tensors: " + ", ".join(unexpected))
    if wrong:
        problems.append("wrong shapes: " + ", ".join(wrong))
    if problems:
        raise CheckpointError(f"AnomalyCLIP prompt checkpoint {path} does not match the model: " + "; ".join(problems))


def random_prompt_state(clip: Any, tokenizer: Any, n_ctx: int = 12, depth: int = 9, t_n_ctx: int = 4,
                        seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint of the right tensors with random learned prompts (N(0, 0.02), the release's init).

    For tests and smoke runs without the released file; its scores mean nothing.
    """
    width = clip.ln_final.weight.shape[0]
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for s, text in prompt_strings(n_ctx).items():
        tokens = tokenizer([text])
        with torch.no_grad():
            emb = clip.token_embedding(tokens.to(clip.token_embedding.weight.device)).float().cpu()
        state[f"ctx_{s}"] = torch.randn(1, 1, n_ctx, width, generator=gen) * 0.02
        state[f"token_prefix_{s}"] = emb[:, :1].unsqueeze(0).clone()
        state[f"token_suffix_{s}"] = emb[:, 1 + n_ctx :].unsqueeze(0).clone()
        state[f"tokenized_prompts_{s}"] = tokens.to(torch.int32).unsqueeze(0)
    for i in range(depth - 1):
        state[f"compound_prompts_text.{i}"] = torch.randn(t_n_ctx, width, generator=gen) * 0.02
        state[f"compound_prompt_projections.{i}.weight"] = torch.randn(PROJECTION_DIM, width, generator=gen) * 0.02
        state[f"compound_prompt_projections.{i}.bias"] = torch.zeros(PROJECTION_DIM)
    return state


class AnomalyCLIPModel(Model):
    """AnomalyCLIP's image-level anomaly probability.

    Arguments (`-M key=value`):
      prompt_checkpoint  the learned prompt file (required; see the module docstring)
      model        open_clip model name or config .json (default ViT-L-14-336-quickgelu,
                   OpenAI's CLIP ViT-L/14@336px)
      pretrained   open_clip pretrained tag (default openai), or "random" (tests only)
      weights      local CLIP weights file (overrides `pretrained`)
      image_size   input side in pixels (default 518, as the release)
      temperature  softmax temperature (0.07, as the release)
      ln_post      apply ln_post to the image class token (the release does not)
      n_ctx, depth, t_n_ctx  prompt design of the checkpoint (release: 12, 9, 4)
      device, batch_size, seed
    """

    name = "anomalyclip"
    output = OutputKind.SCORE
    score_is_probability = True

    def __init__(
        self,
        prompt_checkpoint: str | None = None,
        model: str = "ViT-L-14-336-quickgelu",
        pretrained: str | None = "openai",
        weights: str | None = None,
        image_size: int = 518,
        temperature: float = 0.07,
        ln_post: bool = False,
        n_ctx: int = 12,
        depth: int = 9,
        t_n_ctx: int = 4,
        device: str = "cpu",
        batch_size: int = 8,
        seed: int = 0,
    ):
        if not prompt_checkpoint:
            raise ArgumentError(
                "anomalyclip needs -M prompt_checkpoint=PATH: the learned prompt file of the AnomalyCLIP "
                f"release, {RELEASE_URL}"
            )
        if float(temperature) <= 0:
            raise ArgumentError(f"temperature must be > 0, got {temperature}")
        if int(batch_size) < 1:
            raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
        if min(int(n_ctx), int(t_n_ctx)) < 1 or int(depth) < 1 or int(t_n_ctx) > int(n_ctx):
            raise ArgumentError(f"bad prompt design n_ctx={n_ctx}, depth={depth}, t_n_ctx={t_n_ctx}")
        self.checkpoint_path = str(prompt_checkpoint)
        self.image_size = int(image_size)
        self.temperature = float(temperature)
        self.ln_post = bool(ln_post)
        self.n_ctx, self.depth, self.t_n_ctx = int(n_ctx), int(depth), int(t_n_ctx)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = resolve_device(device)
        # the checkpoint is read first: a wrong file fails before the big model is built
        state = read_checkpoint(self.checkpoint_path)
        self.clip, self.tokenizer, self._provenance = clip_common.build_clip(
            model, weights=weights, pretrained=pretrained, seed=self.seed, device=self.device
        )
        clip_common.check_vit(self.clip, "anomalyclip")
        layers = len(self.clip.transformer.resblocks)
        if self.depth > layers:
            raise ArgumentError(f"prompt depth {self.depth} exceeds the {layers} text layers of {model}")
        patch = self.clip.visual.patch_size[0]
        if self.image_size < patch:
            raise ArgumentError(f"image_size {self.image_size} is smaller than one {patch}-pixel patch")
        self.text_features = self._learned_text(state)  # (2, D): normal, anomalous
        self._checkpoint_sha256: str | None = None

    # ------------------------------------------------------------------ checkpoint -> text

    @torch.inference_mode()
    def _learned_text(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        clip = self.clip
        width = clip.ln_final.weight.shape[0]
        context = clip.positional_embedding.shape[0]
        path = self.checkpoint_path
        check_checkpoint(state, expected_shapes(width, context, self.n_ctx, self.depth, self.t_n_ctx), path)
        rows = []
        for s, text in prompt_strings(self.n_ctx).items():
            tokens = self.tokenizer([text]).to(self.device)
            stored = state[f"tokenized_prompts_{s}"]
            if stored.is_floating_point() or not torch.equal(stored.reshape(1, -1).long().cpu(), tokens.cpu()):
                raise CheckpointError(
                    f"AnomalyCLIP prompt checkpoint {path}: tokenized_prompts_{s} are not the token ids of {text!r}"
                )
            embeddings = clip.token_embedding(tokens)  # (1, C, d)
            frozen = torch.cat([state[f"token_prefix_{s}"][0], state[f"token_suffix_{s}"][0]], dim=1)
            ours = torch.cat([embeddings[:, :1], embeddings[:, 1 + self.n_ctx :]], dim=1)
            diff = (frozen.float().to(self.device) - ours.float()).abs().max().item()
            if not diff <= EMBEDDING_ATOL:
                raise CheckpointError(
                    f"AnomalyCLIP prompt checkpoint {path}: token_prefix_{s}/token_suffix_{s} differ from the token "
                    f"embeddings of the loaded CLIP model (max difference {diff:.3g}): the prompts were learned on "
                    "other CLIP weights"
                )
            learned = state[f"ctx_{s}"][0].to(self.device, embeddings.dtype)  # (1, n, d)
            embeddings = torch.cat([embeddings[:, :1], learned, embeddings[:, 1 + self.n_ctx :]], dim=1)
            deep = [state[f"compound_prompts_text.{i}"].to(self.device) for i in range(self.depth - 1)]
            rows.append(clip_common.encode_text(clip, tokens, embeddings=embeddings, deep_prompts=deep)[0])
        out = torch.stack(rows)
        if not bool(torch.isfinite(out).all()):
            raise CheckpointError(f"AnomalyCLIP prompt checkpoint {path}: gives non-finite text embeddings")
        return out

    # ------------------------------------------------------------------ provenance

    def config(self) -> dict[str, Any]:
        if self._checkpoint_sha256 is None:
            self._checkpoint_sha256 = file_digest(self.checkpoint_path)
        return {
            "model": self.name,
            **self._provenance,
            "prompt_checkpoint": self.checkpoint_path,
            "prompt_checkpoint_sha256": self._checkpoint_sha256,
            "prompts": prompt_strings(self.n_ctx),
            "n_ctx": self.n_ctx,
            "depth": self.depth,
            "t_n_ctx": self.t_n_ctx,
            "image_size": self.image_size,
            "preprocess": "RGB, bicubic resize to image_size x image_size, CLIP mean/std; "
            "positional embeddings resized bilinearly",
            "ln_post": self.ln_post,
            "temperature": self.temperature,
            "score": "softmax(cos(image, [normal, anomalous text]) / temperature)[anomalous]",
            "device": str(self.device),
        }

    def prompt_text(self) -> str:
        return "\n".join(prompt_strings(self.n_ctx).values())

    # ------------------------------------------------------------------ images

    @torch.inference_mode()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        tokens = clip_common.vit_tokens(visual, images.to(self.device), interpolation="bilinear")
        return clip_common.vit_pooled(visual, clip_common.vit_run(visual, tokens), ln_post=self.ln_post)

    @torch.inference_mode()
    def predict(self, queries: Sequence[Query]) -> list[Response]:
        errors: dict[str, str] = {}
        scores: dict[str, float] = {}
        todo = {clip_common.path_key(q.image): q.image for q in queries}
        try:
            for keys, images in clip_common.load_batches(todo, self.image_size, self.batch_size, errors):
                try:
                    probs = clip_common.anomaly_probability(self.image_embeddings(images), self.text_features, self.temperature)
                except Exception as e:  # e.g. out of memory: fail these images, not the call
                    for k in keys:
                        errors[k] = f"anomalyclip failed on {todo[k]}: {type(e).__name__}: {e}"
                    continue
                scores.update(zip(keys, probs.tolist()))
        except Exception as e:  # never raise out of predict
            return [Response.failure(f"anomalyclip: {type(e).__name__}: {e}", meta={"group": q.group}) for q in queries]
        out = []
        for q in queries:
            key = clip_common.path_key(q.image)
            meta = {"group": q.group}
            if key in errors:
                out.append(Response.failure(errors[key], meta=meta))
            elif not math.isfinite(scores[key]):
                out.append(Response.failure(f"anomalyclip produced a non-finite score for {q.image}", meta=meta))
            else:
                out.append(Response(score=scores[key], meta=meta))
        return out
