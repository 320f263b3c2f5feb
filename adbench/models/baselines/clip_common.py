"""What the CLIP baselines (WinCLIP, AnomalyCLIP) share: building an open_clip model,
reading images, and running the ViT and the text transformer step by step.

Both baselines need more than `encode_image` / `encode_text`: WinCLIP runs the image
transformer on windows of patch tokens, AnomalyCLIP feeds learned token embeddings
and per-layer prompt tokens into the text transformer. The helpers below do that on
open_clip's own modules (its weights, its layers), so any open_clip ViT checkpoint
works, and they are tested against open_clip's own forward passes.

Weights, in order of precedence:
- `weights=PATH`: a local state dict file (`.safetensors`, `.bin`, `.pt`; read by
  open_clip with `torch.load(weights_only=True)` or safetensors), e.g. the
  `open_clip_pytorch_model.bin` / `open_clip_model.safetensors` file of an open_clip
  model on the Hugging Face hub.
- `pretrained=TAG`: an open_clip pretrained tag (`laion400m_e31`, `openai`), found in
  open_clip's cache or downloaded by open_clip.
- `pretrained="random"` (or `none` / null): random initialisation, seeded; for tests
  and smoke runs only, recorded as such in the run's config.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from adbench.args import ArgumentError
from adbench.errors import MissingDependencyError, MissingFileError, UserError
from adbench.images import ImageError, load_image
from adbench.jsonfile import read_json
from adbench.models.weights import check_weights_file, require_hub_file

#: CLIP's image normalisation (OpenAI's statistics; the LAION-trained tags use the same).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RANDOM_INIT = ("random", "none", "")


def path_key(path: str) -> str:
    """Cache key of an image: its resolved path (two spellings of one file share features)."""
    return os.path.realpath(os.fspath(path))


# --------------------------------------------------------------------------- building


def _register_config_file(path: Path) -> str:
    """Make an open_clip model config JSON file usable by name (its file stem)."""
    import open_clip

    if not path.is_file():
        raise MissingFileError(f"open_clip model config file not found: {path}")
    cfg = read_json(path, UserError, "open_clip model config file")
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(cfg):
        raise UserError(f"{path}: not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)")
    name = path.stem
    existing = open_clip.get_model_config(name)
    if existing is not None and existing != cfg:
        raise UserError(
            f"{path}: its name {name!r} is already an open_clip model with another configuration; rename the file"
        )
    if existing is None:
        open_clip.add_model_config(path)
    return name


def _require_pretrained(name: str, tag: str) -> None:
    """An open_clip pretrained tag whose file is neither cached nor downloadable now fails at once, with the remedies.

    open_clip would ask the hub for it with retries (about 50 s without a network) before failing.
    """
    import open_clip

    hub = (open_clip.get_pretrained_cfg(name, tag) or {}).get("hf_hub")
    if not hub:
        return  # an unknown tag (open_clip names it) or a plain URL (no retries)
    repo_id, filename = os.path.split(hub)  # as open_clip reads it: "org/repo/" names its default file
    filename = filename or "open_clip_pytorch_model.bin"
    # open_clip prefers a safetensors copy of the file when the repository has one
    safe = "open_clip_model.safetensors" if filename == "open_clip_pytorch_model.bin" else \
        str(Path(filename).with_suffix(".safetensors"))
    require_hub_file(f"the weights file of open_clip pretrained tag {tag!r} for {name!r} (hub {repo_id!r})", repo_id,
                     [safe, filename], "-M weights=PATH (a local open_clip weights file, e.g. "
                     f"{safe} from {repo_id})")


def build_clip(
    model: str,
    *,
    weights: str | None,
    pretrained: str | None,
    seed: int,
    device: torch.device,
) -> tuple[Any, Any, dict[str, Any]]:
    """An open_clip model in eval mode, its tokenizer and provenance for config.json.

    `model` is an open_clip model name (`ViT-B-16-plus-240`) or the path of an
    open_clip model config JSON file (its stem becomes the name).
    """
    try:
        import open_clip
    except ImportError as e:
        raise MissingDependencyError("the CLIP baselines need open_clip: pip install 'adbench[clip]'") from e

    name = model
    config_file = None
    if str(model).endswith(".json"):
        config_file = Path(model)
        name = _register_config_file(config_file)
    elif model not in open_clip.list_models():
        raise ArgumentError(
            f"unknown open_clip model {model!r}: give an open_clip model name (see open_clip.list_models()) "
            "or the path of a model config .json file"
        )
    if weights is not None:
        source: str | None = str(check_weights_file(weights, "CLIP weights"))
    elif pretrained is None or str(pretrained).lower() in RANDOM_INIT:
        source = None
    else:
        source = str(pretrained)
        _require_pretrained(name, source)
    with torch.random.fork_rng(devices=[]):  # random init is seeded, and leaves the global RNG alone
        torch.manual_seed(seed)
        try:
            clip = open_clip.create_model(name, pretrained=source, weights_only=True, device=device)
        except (RuntimeError, ValueError, KeyError, OSError) as e:
            what = f"weights file {source}" if weights is not None else f"pretrained tag {source!r}"
            hint = "" if weights is not None else " (not in open_clip's cache and no network? pass -M weights=PATH)"
            raise UserError(f"cannot load {what} into open_clip model {name!r}{hint}: {e}") from e
    clip.eval()
    for p in clip.parameters():
        p.requires_grad_(False)
    provenance: dict[str, Any] = {
        "clip_model": name,
        "clip_config_file": str(config_file) if config_file else None,
        "clip_config": open_clip.get_model_config(name),
        "weights": str(weights) if weights is not None else None,
        "pretrained": None if weights is not None or source is None else source,
        "random_init": source is None,
        "init_seed": seed if source is None else None,
        "open_clip": open_clip.__version__,
        "torch": torch.__version__,
    }
    return clip, open_clip.get_tokenizer(name), provenance


def check_vit(clip: Any, who: str) -> None:
    """The step-by-step helpers below need a plain ViT image tower and a causal text tower."""
    from open_clip.transformer import VisionTransformer

    visual = getattr(clip, "visual", None)
    if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None or visual.pool_type != "tok":
        raise UserError(f"{who} needs an open_clip ViT image tower with class-token pooling")
    if visual.final_ln_after_pool or visual.proj is None:
        raise UserError(f"{who} needs an open_clip ViT with ln_post before pooling and a projection")
    if getattr(clip, "text_pool_type", None) != "argmax" or getattr(clip, "attn_mask", None) is None:
        raise UserError(f"{who} needs an open_clip text tower with a causal mask and end-of-text pooling")
    if not clip.transformer.batch_first:
        raise UserError(f"{who} needs open_clip >= 2.23 (batch-first transformers)")


# --------------------------------------------------------------------------- images


def load_clip_image(path: str, size: int) -> torch.Tensor:
    """RGB image resized (bicubic, both sides) to size x size, CLIP-normalised, (3, size, size)."""
    image = load_image(path).resize((size, size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (x - mean) / std


def _try_load(path: str, size: int) -> torch.Tensor | str:
    try:
        return load_clip_image(path, size)
    except ImageError as e:
        return str(e)
    except Exception as e:  # e.g. PIL's DecompressionBombError
        return f"cannot read image {path}: {type(e).__name__}: {e}"


def load_batches(
    paths: dict[str, str], size: int, batch_size: int, errors: dict[str, str]
) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Yield (keys, images) batches of `paths` (key -> path); unreadable files go to errors[key].

    Images are decoded in a few threads (PIL releases the GIL).
    """
    items = list(paths.items())
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            loaded = pool.map(lambda p: _try_load(p, size), [p for _, p in chunk])
            keys, tensors = [], []
            for (key, _), x in zip(chunk, loaded):
                if isinstance(x, str):
                    errors[key] = x
                else:
                    keys.append(key)
                    tensors.append(x)
            if tensors:
                yield keys, torch.stack(tensors)


# --------------------------------------------------------------------------- image tower


def vit_tokens(visual: Any, images: torch.Tensor, interpolation: str = "bicubic") -> torch.Tensor:
    """Patch embedding + class token + positional embedding: (N, 1 + grid*grid, width).

    When the input grid differs from the one the model was trained at, the patch
    positional embeddings are resized (`interpolation`: "bicubic" or "bilinear").
    ln_pre is not applied yet: it acts on each token alone, so windows of these
    tokens can be cut out first.
    """
    x = visual.conv1(images.to(visual.conv1.weight.dtype))  # (N, W, gh, gw)
    n, width, gh, gw = x.shape
    x = x.reshape(n, width, gh * gw).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(n, 1, width)
    x = torch.cat([cls, x], dim=1)
    pos = visual.positional_embedding.to(x.dtype)
    native = visual.grid_size
    if (gh, gw) != tuple(native):
        grid = pos[1:].reshape(1, native[0], native[1], width).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode=interpolation, align_corners=False)
        pos = torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(gh * gw, width)])
    return x + pos


def vit_run(visual: Any, tokens: torch.Tensor) -> torch.Tensor:
    """ln_pre + the transformer on (N, L, width) token sequences (any subset of tokens)."""
    return visual.transformer(visual.ln_pre(tokens))


def vit_pooled(visual: Any, x: torch.Tensor, ln_post: bool = True) -> torch.Tensor:
    """The class token of transformer output x, (ln_post,) projected: (N, embed_dim)."""
    cls = x[:, 0]
    if ln_post:
        cls = visual.ln_post(cls)
    return cls @ visual.proj


# --------------------------------------------------------------------------- text tower


def encode_text(
    clip: Any,
    tokens: torch.Tensor,
    embeddings: torch.Tensor | None = None,
    deep_prompts: Sequence[torch.Tensor] = (),
) -> torch.Tensor:
    """open_clip's encode_text, optionally with given token embeddings and per-layer prompts.

    tokens: (N, context) token ids; the end-of-text token has the largest id and
        marks the pooled position, as in CLIP.
    embeddings: (N, context, width) input embeddings to use instead of looking the
        tokens up (learned prompt tokens in them).
    deep_prompts: tensors (t, width); before layer i (i = 1 .. len), positions
        1 .. t of the sequence are replaced by deep_prompts[i - 1] (AnomalyCLIP's
        deep compound prompts; layer 0 sees the input embeddings).

    The causal mask means no position attends to a later one, so the sequences are
    cut after the last end-of-text token: the same result, a fraction of the work.
    """
    eot = tokens.argmax(dim=-1)
    length = int(eot.max().item()) + 1
    if embeddings is None:
        x = clip.token_embedding(tokens[:, :length])
    else:
        x = embeddings[:, :length]
    x = x + clip.positional_embedding[:length].to(x.dtype)
    mask = clip.attn_mask[:length, :length]
    n = x.shape[0]
    for i, block in enumerate(clip.transformer.resblocks):
        if 1 <= i <= len(deep_prompts):
            prompt = deep_prompts[i - 1].to(x.dtype)
            x = torch.cat([x[:, :1], prompt.unsqueeze(0).expand(n, -1, -1), x[:, 1 + prompt.shape[0] :]], dim=1)
        x = block(x, attn_mask=mask)
    x = clip.ln_final(x)
    pooled = x[torch.arange(n, device=x.device), eot]
    proj = clip.text_projection
    return proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj


def anomaly_probability(image: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax over [normal, anomalous] of cosine similarity / temperature; returns P(anomalous).

    image: (..., D); text: (2, D) with row 0 normal, row 1 anomalous.
    """
    logits = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T / temperature
    return logits.softmax(dim=-1)[..., 1]
