"""WinCLIP and WinCLIP+ (Jeong et al., "WinCLIP: Zero-/Few-Shot Anomaly Classification
and Segmentation", CVPR 2023) on open_clip.

Zero-shot (WinCLIP, `shots=0`):
1. Compositional prompt ensemble (CPE). Every normal state word (7) and every
   anomalous one (4), filled with the object name, is put into every template (21):
   147 normal and 84 anomalous sentences. Each sentence's text embedding is
   L2-normalised and the mean per state is that state's prototype.
2. Image score: softmax over (normal, anomalous) of the cosine similarity between the
   whole image's embedding and the two prototypes, divided by a temperature; the
   anomalous probability is the score (in [0, 1]).
3. Multi-scale windows: the image transformer is run on the class token plus the
   patch tokens of each small (2x2 patches) and mid (3x3) window, stride one patch.
   Each window gets the same softmax score; a patch's score per scale is the harmonic
   mean of the scores of the windows that contain it, and the zero-shot map is the
   mean of the small, mid and full-image maps. The published zero-shot image score
   is step 2 alone, so the map is only computed with `-M zero_shot_maps=true` (its
   maximum is then recorded in `Response.meta`): the windows cost about ten times the
   whole image's transformer pass.

Few-shot (WinCLIP+, `shots=k`): k normal reference images form a visual memory of
their patch tokens and their small/mid window embeddings. Each query patch (window)
gets (1 - max cosine similarity to the memory) / 2; window scores are aggregated to
patches harmonically as above, and the few-shot map is the mean of the patch, small
and mid maps. Image score = (zero-shot score + max of the few-shot map) / 2, the
paper's combination of language-guided and vision-based scores.

References for few-shot: the normal images the task shows with the query
(`Query.references`) first, then the category's normal support pool
(`Query.support`, in order), never the query image itself (so a calibration query,
which is a support image, is not compared with itself).

Defaults follow the paper: ViT-B-16-plus-240 with LAION-400M weights
(`laion400m_e31`), 240x240 input (resized, aspect ratio not kept, no crop), windows
of 2 and 3 patches. The temperature 0.07 (CLIP's initial one) is the value of the
public reproductions; the paper gives none. The paper's template list is not fully
public: the one used here is the list of anomalib's reproduction with its one
duplicated template ("a jpeg corrupted photo of the {}." twice) replaced by its
"a {}" counterpart, so every sentence is distinct.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from adbench.args import ArgumentError
from adbench.model import Model, OutputKind
from adbench.models.baselines import clip_common
from adbench.models.devices import resolve_device
from adbench.schema import Query, Response

NORMAL_STATES = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ANOMALOUS_STATES = (
    "damaged {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)
TEMPLATES = (
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)
_EPS = 1e-12


def prompt_ensemble(object_name: str) -> dict[str, list[str]]:
    """The compositional prompt ensemble: state x template sentences for each of the two states."""
    return {
        state: [t.format(s.format(object_name)) for s in states for t in TEMPLATES]
        for state, states in (("normal", NORMAL_STATES), ("anomalous", ANOMALOUS_STATES))
    }


def window_index(grid: int, size: int, stride: int = 1) -> torch.Tensor:
    """Row-major patch indices of every size x size window on a grid x grid patch grid: (n, size*size)."""
    if not 1 <= size <= grid:
        raise ValueError(f"window size {size} must be between 1 and the patch grid side {grid}")
    starts = range(0, grid - size + 1, stride)
    rows = []
    for y in starts:
        for x in starts:
            rows.append([(y + dy) * grid + (x + dx) for dy in range(size) for dx in range(size)])
    return torch.tensor(rows, dtype=torch.long)


def harmonic_aggregation(scores: torch.Tensor, windows: torch.Tensor, n_patches: int) -> torch.Tensor:
    """Per patch, the harmonic mean of the scores of the windows containing it.

    scores: (B, n_windows) in [0, 1]; windows: (n_windows, k) patch indices.
    Returns (B, n_patches). A zero window score makes its patches zero (clamped to
    1e-12 so no division by zero). Every patch must be in some window.
    """
    b = scores.shape[0]
    k = windows.shape[1]
    inverse = 1.0 / scores.clamp_min(_EPS)
    sums = torch.zeros(b, n_patches, dtype=scores.dtype, device=scores.device)
    sums.index_add_(1, windows.reshape(-1).to(scores.device), inverse.repeat_interleave(k, dim=1))
    counts = torch.bincount(windows.reshape(-1), minlength=n_patches).to(scores.device, scores.dtype)
    if bool((counts == 0).any()):
        raise ValueError("some patches are in no window")
    return counts / sums


def association(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """(1 - max cosine similarity to the memory) / 2 for each query row: (n,) in [0, 1]."""
    sim = F.normalize(queries, dim=-1) @ F.normalize(memory, dim=-1).T
    return (1.0 - sim.max(dim=-1).values) / 2.0


@dataclass
class ImageFeatures:
    embedding: torch.Tensor  # (D,) whole-image embedding
    patches: torch.Tensor  # (P, width) patch tokens after ln_post (visual memory of WinCLIP+)
    windows: dict[int, torch.Tensor]  # window size -> (n_windows, D) window embeddings


class WinCLIPModel(Model):
    """WinCLIP (zero-shot) / WinCLIP+ (few-shot) anomaly scores in [0, 1].

    Arguments (`-M key=value`):
      model        open_clip model name, or an open_clip model config .json file
      pretrained   open_clip pretrained tag (default laion400m_e31, the paper's), or
                   "random" for a seeded random initialisation (tests only)
      weights      local CLIP weights file (overrides `pretrained`)
      shots        0: zero-shot WinCLIP; k > 0: WinCLIP+ with k normal reference images
      scales       window sizes in patches (default [2, 3]: small and mid)
      image_size   input side in pixels (default: the model's, 240)
      temperature  softmax temperature of the image-text similarity
      object_name  word for the object in the prompts (default: the category, "_" -> " ")
      zero_shot_maps  also compute the zero-shot window map (meta only; see above)
      device       "cpu", "cuda", "cuda:N" or "auto"
      batch_size   images per image-tower pass
      window_batch window sequences per transformer pass
      seed         seeds a random initialisation
    """

    name = "winclip"
    output = OutputKind.SCORE
    score_is_probability = True

    def __init__(
        self,
        model: str = "ViT-B-16-plus-240",
        pretrained: str | None = "laion400m_e31",
        weights: str | None = None,
        shots: int = 0,
        scales: Sequence[int] = (2, 3),
        image_size: int | None = None,
        temperature: float = 0.07,
        object_name: str | None = None,
        zero_shot_maps: bool = False,
        device: str = "cpu",
        batch_size: int = 8,
        window_batch: int = 1024,
        seed: int = 0,
    ):
        if int(shots) < 0:
            raise ArgumentError(f"shots must be >= 0, got {shots}")
        if float(temperature) <= 0:
            raise ArgumentError(f"temperature must be > 0, got {temperature}")
        if int(batch_size) < 1 or int(window_batch) < 1:
            raise ArgumentError("batch_size and window_batch must be >= 1")
        if isinstance(scales, (int, float)):
            scales = [scales]
        self.shots = int(shots)
        self.temperature = float(temperature)
        self.object_name = object_name
        self.zero_shot_maps = bool(zero_shot_maps)
        self.batch_size = int(batch_size)
        self.window_batch = int(window_batch)
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.clip, self.tokenizer, self._provenance = clip_common.build_clip(
            model, weights=weights, pretrained=pretrained, seed=self.seed, device=self.device
        )
        clip_common.check_vit(self.clip, "winclip")
        visual = self.clip.visual
        patch = visual.patch_size[0]
        self.image_size = int(image_size or visual.image_size[0])
        self.grid = self.image_size // patch
        if self.grid < 1:
            raise ArgumentError(f"image_size {self.image_size} is smaller than one {patch}-pixel patch")
        self.scales = tuple(sorted({int(s) for s in scales}))
        self._windows = {s: window_index(self.grid, s) for s in self.scales}
        self._text: dict[str, torch.Tensor] = {}  # object name -> (2, D) state prototypes
        self._ref_features: dict[str, ImageFeatures] = {}  # resolved reference path -> features

    # ------------------------------------------------------------------ provenance

    def config(self) -> dict[str, Any]:
        return {
            "model": self.name,
            **self._provenance,
            "mode": "few-shot (WinCLIP+)" if self.shots else "zero-shot (WinCLIP)",
            "shots": self.shots,
            "references": "Query.references first, then Query.support; never the query image",
            "image_size": self.image_size,
            "preprocess": "RGB, bicubic resize to image_size x image_size, CLIP mean/std",
            "patch_grid": self.grid,
            "window_scales": list(self.scales),
            "window_stride": 1,
            "zero_shot_maps": self.zero_shot_maps,
            "temperature": self.temperature,
            "object_name": self.object_name or "category name",
            "prompts_per_state": {"normal": len(NORMAL_STATES) * len(TEMPLATES),
                                  "anomalous": len(ANOMALOUS_STATES) * len(TEMPLATES)},
            "score": "zero-shot: P(anomalous | whole image); few-shot: (that + max few-shot map) / 2",
            "device": str(self.device),
        }

    def prompt_text(self) -> str:
        return "\n".join([*NORMAL_STATES, "--", *ANOMALOUS_STATES, "--", *TEMPLATES])

    def close(self) -> None:
        self._ref_features.clear()
        self._text.clear()

    # ------------------------------------------------------------------ text

    def object_for(self, q: Query) -> str:
        if self.object_name:
            return self.object_name
        category = q.meta.get("category") or (q.group.split("/", 1)[1] if "/" in q.group else "")
        return category.replace("_", " ").strip() or "object"

    @torch.inference_mode()
    def text_prototypes(self, object_name: str) -> torch.Tensor:
        """(2, D): mean normalised embedding of the normal and of the anomalous sentences."""
        cached = self._text.get(object_name)
        if cached is None:
            rows = []
            for sentences in prompt_ensemble(object_name).values():
                tokens = self.tokenizer(sentences).to(self.device)
                emb = torch.cat([clip_common.encode_text(self.clip, t) for t in tokens.split(256)])
                rows.append(F.normalize(emb, dim=-1).mean(dim=0))
            cached = self._text[object_name] = torch.stack(rows)
        return cached

    # ------------------------------------------------------------------ image features

    @property
    def uses_windows(self) -> bool:
        return self.shots > 0 or self.zero_shot_maps

    @torch.inference_mode()
    def image_features(self, images: torch.Tensor, windows: bool = True) -> list[ImageFeatures]:
        """Whole-image embedding, patch tokens and (if `windows`) window embeddings of each (3, S, S) image."""
        visual = self.clip.visual
        tokens = clip_common.vit_tokens(visual, images.to(self.device))  # (N, 1 + P, width)
        x = clip_common.vit_run(visual, tokens)
        embedding = clip_common.vit_pooled(visual, x)
        patches = visual.ln_post(x[:, 1:])
        n, _, width = tokens.shape
        out_windows: dict[int, torch.Tensor] = {}
        for size, index in (self._windows.items() if windows else ()):
            cls = torch.zeros(len(index), 1, dtype=torch.long)
            seq_index = torch.cat([cls, index + 1], dim=1).to(self.device)  # class token + window patches
            seqs = tokens[:, seq_index].reshape(n * len(index), seq_index.shape[1], width)
            out = [clip_common.vit_pooled(visual, clip_common.vit_run(visual, chunk)) for chunk in seqs.split(self.window_batch)]
            out_windows[size] = torch.cat(out).reshape(n, len(index), -1)
        return [
            ImageFeatures(embedding[i], patches[i], {s: w[i] for s, w in out_windows.items()}) for i in range(n)
        ]

    def _extract(self, paths: dict[str, str], out: dict[str, ImageFeatures], errors: dict[str, str]) -> None:
        for keys, images in clip_common.load_batches(paths, self.image_size, self.batch_size, errors):
            try:
                feats = self.image_features(images, windows=self.uses_windows)
            except Exception as e:  # e.g. out of memory: fail these images, not the call
                for k in keys:
                    errors[k] = f"winclip feature extraction failed for {paths[k]}: {type(e).__name__}: {e}"
                continue
            out.update(zip(keys, feats))

    # ------------------------------------------------------------------ references

    def references_for(self, q: Query) -> list[str]:
        """Up to `shots` normal images: the query's shown references, then its support pool."""
        chosen: list[str] = []
        seen = {clip_common.path_key(q.image)}
        for p in [*q.references, *q.support]:
            if len(chosen) == self.shots:
                break
            k = clip_common.path_key(p)
            if k not in seen:
                seen.add(k)
                chosen.append(p)
        return chosen

    # ------------------------------------------------------------------ predict

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        errors: dict[str, str] = {}
        local: dict[str, ImageFeatures] = {}
        try:
            refs = [self.references_for(q) if self.shots else [] for q in queries]
            ref_todo = {clip_common.path_key(p): p for rs in refs for p in rs if clip_common.path_key(p) not in self._ref_features}
            self._extract(ref_todo, self._ref_features, errors)
            query_todo = {}
            for q in queries:
                k = clip_common.path_key(q.image)
                if k not in self._ref_features and k not in errors:
                    query_todo.setdefault(k, q.image)
            self._extract(query_todo, local, errors)
        except Exception as e:  # never raise out of predict
            return [Response.failure(f"winclip: {type(e).__name__}: {e}", meta={"group": q.group}) for q in queries]
        responses = []
        for q, rs in zip(queries, refs):
            try:
                responses.append(self._score_query(q, rs, local, errors))
            except Exception as e:
                responses.append(Response.failure(f"winclip: {type(e).__name__}: {e}", meta={"group": q.group}))
        return responses

    def zero_shot_map(self, feats: ImageFeatures, text: torch.Tensor) -> torch.Tensor:
        """(grid*grid,) mean of the full-image, small- and mid-window zero-shot patch maps."""
        n_patches = self.grid * self.grid
        maps = [clip_common.anomaly_probability(feats.embedding, text, self.temperature).expand(n_patches)]
        for size, index in self._windows.items():
            window_scores = clip_common.anomaly_probability(feats.windows[size], text, self.temperature)
            maps.append(harmonic_aggregation(window_scores[None], index, n_patches)[0])
        return torch.stack(maps).mean(dim=0)

    def few_shot_map(self, feats: ImageFeatures, memory: Sequence[ImageFeatures]) -> torch.Tensor:
        """(grid*grid,) mean of the patch, small- and mid-window association maps against the memory."""
        n_patches = self.grid * self.grid
        maps = [association(feats.patches, torch.cat([m.patches for m in memory]))]
        for size, index in self._windows.items():
            window_scores = association(feats.windows[size], torch.cat([m.windows[size] for m in memory]))
            maps.append(harmonic_aggregation(window_scores[None], index, n_patches)[0])
        return torch.stack(maps).mean(dim=0)

    @torch.inference_mode()
    def _score_query(
        self, q: Query, refs: list[str], local: dict[str, ImageFeatures], errors: dict[str, str]
    ) -> Response:
        meta: dict[str, Any] = {"group": q.group}
        key = clip_common.path_key(q.image)
        if key in errors:
            return Response.failure(errors[key], meta=meta)
        if len(refs) < self.shots:
            return Response.failure(
                f"winclip shots={self.shots} needs {self.shots} normal reference images other than the query; "
                f"query {q.id!r} (group {q.group!r}) has {len(refs)} in its references and support pool",
                meta=meta,
            )
        bad = [p for p in refs if clip_common.path_key(p) in errors]
        if bad:
            return Response.failure(f"winclip reference image unusable: {errors[clip_common.path_key(bad[0])]}", meta=meta)
        feats = self._ref_features.get(key) or local[key]
        object_name = self.object_for(q)
        text = self.text_prototypes(object_name)

        zero_shot = clip_common.anomaly_probability(feats.embedding, text, self.temperature)
        meta.update(object=object_name, zero_shot=float(zero_shot))
        if self.zero_shot_maps:
            zs_map = self.zero_shot_map(feats, text)
            meta["zero_shot_map_max"] = float(zs_map.max())
        score = zero_shot
        if self.shots:
            memory = [self._ref_features[clip_common.path_key(p)] for p in refs]
            fs_max = self.few_shot_map(feats, memory).max()
            score = (zero_shot + fs_max) / 2
            meta.update(few_shot_map_max=float(fs_max), references=list(refs))
        value = float(score)
        if not math.isfinite(value):
            return Response.failure(f"winclip produced a non-finite score ({value}) for {q.image}", meta=meta)
        return Response(score=value, meta=meta)
