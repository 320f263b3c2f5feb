"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

A training-free few-shot baseline that answers with an anomaly score:

1. Patch features. An ImageNet CNN (see `backbones.py`) gives two mid-level feature
   maps (stride 8 and 16). Each is averaged over a 3x3 neighbourhood (local context),
   the coarser one is upsampled to the finer grid, and the two are concatenated: one
   feature vector per stride-8 patch (28x28 patches for a 224x224 image).
2. Memory bank. For each group ("dataset/category") the patch features of all its
   normal support images form the bank, optionally thinned by greedy coreset
   subsampling. Every bank patch remembers which support image it came from.
3. Score. Each query patch is matched to its nearest bank patch (L2); the image score
   is the largest of these distances: the most unusual patch decides.

Leave-one-out: when the query image is itself one of the support images (the
calibration queries of a task are exactly that), its own patches are left out of the
nearest-neighbour search. Without coreset this equals scoring it against a bank built
from the other support images; with coreset the bank was thinned with the image in it,
so it is only close to that.

Features of support images are cached by (resolved) path, since many queries share
them; features of query-only images are dropped after each `predict` call.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from adbench.args import ArgumentError
from adbench.images import ImageError, load_image
from adbench.model import Model, OutputKind
from adbench.models.baselines.backbones import IMAGENET_MEAN, IMAGENET_STD, available, build_backbone
from adbench.models.devices import resolve_device
from adbench.schema import Query, Response

CORESET_PROJECTION_DIM = 128  # random projection used to speed up the greedy coreset
_CDIST_BLOCK = 1 << 24  # elements of one query-chunk x bank distance matrix


@dataclass
class MemoryBank:
    """Patch features of a group's normal images; owner[i] indexes `paths`."""

    features: torch.Tensor  # (M, D)
    owner: torch.Tensor  # (M,) long
    paths: tuple[str, ...]  # resolved support paths, in support order


def _key(path: str) -> str:
    return os.path.realpath(os.fspath(path))


def greedy_coreset(
    features: torch.Tensor, n: int, seed: int = 0, proj_dim: int = CORESET_PROJECTION_DIM
) -> torch.Tensor:
    """Indices of `n` rows chosen by greedy k-center selection (PatchCore's coreset).

    Distances are computed on a seeded random projection to `proj_dim` dimensions
    (Johnson-Lindenstrauss), as in the paper. Returns the indices in ascending order.
    """
    total = features.shape[0]
    if n >= total:
        return torch.arange(total, device=features.device)
    gen = torch.Generator().manual_seed(seed)
    x = features
    if x.shape[1] > proj_dim:
        proj = torch.randn(x.shape[1], proj_dim, generator=gen) / math.sqrt(proj_dim)
        x = x @ proj.to(x.device, x.dtype)
    start = int(torch.randint(total, (1,), generator=gen).item())
    chosen = [start]
    min_dist = torch.linalg.vector_norm(x - x[start], dim=1)
    for _ in range(n - 1):
        i = int(torch.argmax(min_dist).item())
        chosen.append(i)
        min_dist = torch.minimum(min_dist, torch.linalg.vector_norm(x - x[i], dim=1))
    return torch.tensor(sorted(chosen), device=features.device)


def nearest_distances(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """L2 distance of every query row to its nearest bank row, in chunks of queries."""
    rows = max(1, _CDIST_BLOCK // max(1, bank.shape[0]))
    out = [torch.cdist(queries[i : i + rows], bank).min(dim=1).values for i in range(0, len(queries), rows)]
    return torch.cat(out)


class PatchCoreModel(Model):
    """PatchCore anomaly scores from a per-group memory bank of normal patch features.

    Arguments (all settable from the CLI as `-M key=value`):
      backbone    name of a feature extractor in `backbones.BACKBONES`
      weights     local weights file for the backbone (default: the backbone's own)
      image_size  images are resized (aspect ratio not kept) to image_size x image_size
      device      "cpu", "cuda", "cuda:N", or "auto" (cuda when available)
      coreset     None: keep every patch; 0 < f <= 1: keep that fraction; > 1: keep at most
                  that many patches per group (greedy k-center coreset)
      batch_size  images per backbone forward pass
      seed        seeds the coreset (random projection and start patch)
      feature_dim reduce patch features to this many channels by adaptive average
                  pooling over channels (None: keep all)
    """

    name = "patchcore"
    output = OutputKind.SCORE

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        weights: str | None = None,
        image_size: int = 224,
        device: str = "cpu",
        coreset: float | None = None,
        batch_size: int = 16,
        seed: int = 0,
        feature_dim: int | None = None,
    ):
        if backbone not in available():
            raise ArgumentError(f"unknown backbone {backbone!r}. Valid backbones: {', '.join(available())}")
        if int(image_size) < 32:
            raise ArgumentError(f"image_size must be at least 32, got {image_size}")
        if coreset is not None and float(coreset) <= 0:
            raise ArgumentError(
                f"coreset must be a fraction in (0, 1], a patch count > 1, or None; got {coreset}"
            )
        if int(batch_size) < 1:
            raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
        if feature_dim is not None and int(feature_dim) < 1:
            raise ArgumentError(f"feature_dim must be >= 1 or None, got {feature_dim}")
        self.device = resolve_device(device)
        self.image_size = int(image_size)
        self.coreset = None if coreset is None else float(coreset)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.feature_dim = None if feature_dim is None else int(feature_dim)
        self.backbone = build_backbone(backbone, weights=weights, image_size=self.image_size).to(self.device)
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).to(self.device)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1).to(self.device)
        self._support_features: dict[str, torch.Tensor] = {}  # resolved path -> (P, D)
        self._banks: dict[tuple[str, tuple[str, ...]], MemoryBank] = {}

    # ------------------------------------------------------------------ provenance

    def config(self) -> dict[str, Any]:
        return {
            "model": self.name,
            **self.backbone.config(),
            "image_size": self.image_size,
            "preprocess": "RGB, bilinear resize to image_size x image_size, ImageNet mean/std",
            "aggregation": "3x3 avg pool per layer, bilinear upsample to the finest layer, concat",
            "feature_dim": self.feature_dim or sum(self.backbone.channels),
            "coreset": self.coreset,
            "coreset_projection_dim": CORESET_PROJECTION_DIM if self.coreset is not None else None,
            "seed": self.seed,
            "score": "max over query patches of L2 distance to the nearest bank patch",
            "leave_one_out": True,
            "batch_size": self.batch_size,
            "device": str(self.device),
            "torch": torch.__version__,
        }

    def close(self) -> None:
        self._support_features.clear()
        self._banks.clear()

    # ------------------------------------------------------------------ features

    def _load(self, path: str) -> torch.Tensor:
        image = load_image(path).resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB in [0, 1] -> (N, patches, D) PatchCore patch features."""
        x = (images.to(self.device) - self._mean) / self._std
        maps = self.backbone(x)
        maps = [F.avg_pool2d(m, kernel_size=3, stride=1, padding=1, count_include_pad=False) for m in maps]
        size = maps[0].shape[-2:]
        maps = [maps[0]] + [
            F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]
        ]
        feats = torch.cat(maps, dim=1)  # (N, C, H, W)
        n, c, h, w = feats.shape
        feats = feats.permute(0, 2, 3, 1).reshape(n, h * w, c)
        if self.feature_dim is not None and self.feature_dim != c:
            feats = F.adaptive_avg_pool1d(feats.reshape(n * h * w, 1, c), self.feature_dim)
            feats = feats.reshape(n, h * w, self.feature_dim)
        return feats.contiguous()

    def _try_load(self, path: str) -> torch.Tensor | str:
        try:
            return self._load(path)
        except ImageError as e:
            return str(e)
        except Exception as e:  # e.g. PIL's DecompressionBombError
            return f"cannot read image {path}: {type(e).__name__}: {e}"

    def _extract(self, paths: dict[str, str], out: dict[str, torch.Tensor], errors: dict[str, str]) -> None:
        """Fill out[key] with the features of each image, `paths` mapping key -> path as given.

        Images are decoded in a few threads (PIL releases the GIL) and run through the
        backbone `batch_size` at a time; a file that cannot be read goes to errors[key].
        """
        items = list(paths.items())
        workers = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(items), self.batch_size):
                chunk = items[start : start + self.batch_size]
                keys, tensors = [], []
                for (key, _), loaded in zip(
                    chunk, pool.map(self._try_load, [p for _, p in chunk]), strict=True
                ):
                    if isinstance(loaded, str):
                        errors[key] = loaded
                    else:
                        keys.append(key)
                        tensors.append(loaded)
                if not tensors:
                    continue
                try:
                    feats = self.embed(torch.stack(tensors))
                except Exception as e:  # e.g. out of memory: fail these images, not the call
                    for key in keys:
                        errors[key] = (
                            f"patchcore feature extraction failed for {paths[key]}: {type(e).__name__}: {e}"
                        )
                    continue
                for key, f in zip(keys, feats, strict=True):
                    out[key] = f

    # ------------------------------------------------------------------ memory bank

    def _bank(self, group: str, support: tuple[str, ...]) -> MemoryBank:
        cache_key = (group, support)
        bank = self._banks.get(cache_key)
        if bank is None:
            feats = [self._support_features[k] for k in support]
            features = torch.cat(feats)
            owner = torch.repeat_interleave(
                torch.arange(len(feats), device=features.device),
                torch.tensor([len(f) for f in feats], device=features.device),
            )
            if self.coreset is not None:
                total = len(features)
                n = math.ceil(self.coreset * total) if self.coreset <= 1 else int(self.coreset)
                idx = greedy_coreset(features, max(1, n), seed=self.seed)
                features, owner = features[idx], owner[idx]
            bank = MemoryBank(features=features, owner=owner, paths=support)
            self._banks[cache_key] = bank
        return bank

    # ------------------------------------------------------------------ predict

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        errors: dict[str, str] = {}
        local: dict[str, torch.Tensor] = {}  # features of query images that are not support images
        try:
            # resolved, de-duplicated support paths of each query, in the order given
            supports = [tuple(dict.fromkeys(_key(p) for p in q.support)) for q in queries]
            todo: dict[str, str] = {}  # key -> path as given (error messages name it)
            for q in queries:
                for p in q.support:
                    k = _key(p)
                    if k not in self._support_features:
                        todo.setdefault(k, p)
            self._extract(todo, self._support_features, errors)
            support_keys = {k for s in supports for k in s}
            query_todo: dict[str, str] = {}
            for q in queries:
                k = _key(q.image)
                if k not in self._support_features and k not in errors and k not in support_keys:
                    query_todo.setdefault(k, q.image)
            self._extract(query_todo, local, errors)
        except Exception as e:  # never raise out of predict
            msg = f"patchcore: {type(e).__name__}: {e}"
            return [Response.failure(msg, meta={"group": q.group}) for q in queries]

        responses = []
        for q, support in zip(queries, supports, strict=True):
            try:
                responses.append(self._score_query(q, support, local, errors))
            except Exception as e:
                responses.append(
                    Response.failure(f"patchcore: {type(e).__name__}: {e}", meta={"group": q.group})
                )
        return responses

    def _score_query(
        self, q: Query, support: tuple[str, ...], local: dict[str, torch.Tensor], errors: dict[str, str]
    ) -> Response:
        meta: dict[str, Any] = {"group": q.group}
        key = _key(q.image)
        if key in errors:
            return Response.failure(errors[key], meta=meta)
        if not support:
            return Response.failure(
                f"patchcore needs normal support images for group {q.group!r}; query {q.id!r} has none",
                meta=meta,
            )
        bad = [k for k in support if k in errors]
        if bad:
            return Response.failure(
                f"patchcore support image for group {q.group!r} unusable: {errors[bad[0]]}", meta=meta
            )
        bank = self._bank(q.group, support)
        feats = self._support_features.get(key)
        if feats is None:
            feats = local[key]
        reference = bank.features
        if key in bank.paths:  # leave-one-out: the query's own patches are not its neighbours
            reference = bank.features[bank.owner != bank.paths.index(key)]
            meta["leave_one_out"] = True
            if len(reference) == 0:
                return Response.failure(
                    f"patchcore needs normal support images for group {q.group!r}: the only support "
                    f"image is the query image {q.image} itself (left out)",
                    meta=meta,
                )
        with torch.inference_mode():
            score = float(nearest_distances(feats, reference).max().item())
        return Response(score=score, meta=meta)
