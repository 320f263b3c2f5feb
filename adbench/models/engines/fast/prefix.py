"""Shared prompt prefixes for the fast engine: rows that show the same images are prefilled once per group.

MMAD asks several questions about each image (`mmad-multitask`: about five, `mmad`: about
six), each with the same reference and query images and the same opening text; only the
question and its options differ. Prefilling every row runs the vision tower and the
image tokens once per question. Here the rows of a batch are grouped by the images they
show (`row_keys`, from the adapter: the image paths), the tokens the rows of a group have
in common (at least every image token) are prefilled once per group, and their keys and
values are copied into each row's cache slots before the rest of each prompt is prefilled.

The cache of a batch with shared prefixes is laid out in two blocks instead of one
left-padded prompt block:

    columns [0, P)       the group's prefix, left-padded to the longest prefix P
    columns [P, P + S)   the row's own tokens (its suffix), left-padded to the longest suffix S
    columns [P + S, ...) the new tokens

Padding columns are masked, positions (Qwen2.5-VL's 3D M-RoPE index) are each real
token's position in its own unpadded prompt (computed by the model's `get_rope_index` on
the ordinary left-padded batch), so every real token sees the same keys at the same
positions as in the unshared layout: the greedy replies are the same (tested on the tiny
model). Keys do not depend on the column they are stored in, only on their token, position
and the tokens before them, which is why a prefix computed once is valid for every row
of its group.

Every row keeps at least one token in the suffix block, whose logits choose the first new
token; a row alone in its group puts as much of its prompt into the prefix block as fits
without widening it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class SharedPrefix:
    """A staged batch's two-block layout (see the module docstring); CPU tensors."""

    groups: Any  # (batch,) long: the group of each row (an index into the prefix rows)
    prefix_ids: Any  # (groups, P), left-padded
    prefix_mask: Any  # (groups, P)
    prefix_positions: Any  # (3, groups, P)
    suffix_ids: Any  # (batch, S), left-padded
    suffix_mask: Any  # (batch, S)
    suffix_positions: Any  # (3, batch, S)
    #: which images (rows of image_grid_thw) and patches (rows of pixel_values) the prefix rows show
    image_index: Any
    patch_index: Any

    @property
    def prompt_len(self) -> int:
        """Cache columns the prompts take: prefix block + suffix block."""
        return int(self.prefix_ids.shape[1] + self.suffix_ids.shape[1])

    @property
    def n_groups(self) -> int:
        return int(self.prefix_ids.shape[0])


def _image_spans(input_ids: Any, image_grid_thw: Any, image_token_id: int, merge: int) -> list[tuple[int, int]]:
    """(first image, number of images) of each row, in the processor's order (images row by row)."""
    tokens = [] if image_grid_thw is None else (image_grid_thw.prod(-1) // (merge * merge)).tolist()
    spans, k = [], 0
    for row in input_ids:
        wanted, first = int((row == image_token_id).sum()), k
        while wanted > 0:
            wanted -= tokens[k]
            k += 1
        if wanted:
            raise ValueError("image tokens and image_grid_thw disagree")
        spans.append((first, k - first))
    return spans


def _common_length(rows: list[Any]) -> int:
    """Length of the token prefix every row of `rows` (1-D tensors) shares."""
    import torch

    n = min(len(r) for r in rows)
    same = (torch.stack([r[:n] for r in rows]) == rows[0][:n]).all(dim=0)
    differ = (~same).nonzero()
    return int(differ[0]) if len(differ) else n


def plan_shared_prefix(input_ids: Any, attention_mask: Any, position_ids: Any, row_keys: Sequence[Hashable | None],
                       image_token_id: int, pad_id: int, image_grid_thw: Any = None,
                       merge: int = 2) -> SharedPrefix | None:
    """The two-block layout for a left-padded batch, or None when no two rows share their images.

    `row_keys`: per row, what identifies the images it shows (rows with equal keys show the
    same images; None: share with no other row, e.g. a filler row). Rows with equal keys
    share the longest token prefix they have in common, provided it holds all their image
    tokens (the suffix pass runs without pixels); otherwise they are prefilled alone.
    """
    import torch

    if len(row_keys) != input_ids.shape[0]:
        raise ValueError(f"{len(row_keys)} row keys for {input_ids.shape[0]} rows")
    keyed: dict[Hashable, list[int]] = {}
    for r, key in enumerate(row_keys):
        if key is not None:
            keyed.setdefault(key, []).append(r)
    if not any(len(rows) > 1 for rows in keyed.values()):
        return None
    attention = attention_mask.bool()
    real = [input_ids[r][attention[r]] for r in range(input_ids.shape[0])]
    real_pos = [position_ids[:, r][:, attention[r]] for r in range(input_ids.shape[0])]

    def image_end(r: int) -> int:  # tokens up to the row's last image token (the prefix must hold them)
        images = (real[r] == image_token_id).nonzero()
        return int(images[-1]) + 1 if len(images) else 0

    groups: list[tuple[list[int], int]] = []  # (rows, prefix length)
    grouped: set[int] = set()
    for rows in keyed.values():
        if len(rows) < 2:
            continue
        length = min(_common_length([real[r] for r in rows]), min(len(real[r]) for r in rows) - 1)
        if length >= image_end(rows[0]):  # the shared part holds every image: the suffixes are text only
            groups.append((rows, length))
            grouped.update(rows)
    if not groups:
        return None
    alone = [r for r in range(input_ids.shape[0]) if r not in grouped]
    # a row alone puts as much of its prompt in the prefix block as fits without widening it (and
    # at least its images), so both blocks together stay about as wide as the longest prompt
    width = max([length for _, length in groups] + [image_end(r) for r in alone])
    groups += [([r], max(image_end(r), min(len(real[r]) - 1, width))) for r in alone]
    groups.sort(key=lambda g: g[0][0])  # in row order, so the prefix pass sees images in the processor's order

    batch = input_ids.shape[0]
    group_of = torch.empty(batch, dtype=torch.long)
    for g, (rows, _) in enumerate(groups):
        group_of[rows] = g
    width_p = max(length for _, length in groups)
    width_s = max(len(real[r]) - length for rows, length in groups for r in rows)
    prefix_ids = torch.full((len(groups), width_p), pad_id, dtype=input_ids.dtype)
    prefix_mask = torch.zeros(len(groups), width_p, dtype=attention_mask.dtype)
    prefix_pos = torch.zeros(3, len(groups), width_p, dtype=position_ids.dtype)
    suffix_ids = torch.full((batch, width_s), pad_id, dtype=input_ids.dtype)
    suffix_mask = torch.zeros(batch, width_s, dtype=attention_mask.dtype)
    suffix_pos = torch.zeros(3, batch, width_s, dtype=position_ids.dtype)
    spans = _image_spans(input_ids, image_grid_thw, image_token_id, merge)
    image_index: list[int] = []
    for g, (rows, length) in enumerate(groups):
        first = rows[0]
        if length:
            prefix_ids[g, width_p - length:] = real[first][:length]
            prefix_mask[g, width_p - length:] = 1
            prefix_pos[:, g, width_p - length:] = real_pos[first][:, :length]
        start, count = spans[first]
        image_index += range(start, start + count)
        for r in rows:
            own = len(real[r]) - length
            suffix_ids[r, width_s - own:] = real[r][length:]
            suffix_mask[r, width_s - own:] = 1
            suffix_pos[:, r, width_s - own:] = real_pos[r][:, length:]
    patch_index = torch.empty(0, dtype=torch.long)
    if image_grid_thw is not None:
        patches = image_grid_thw.prod(-1)
        starts = torch.cumsum(patches, 0) - patches
        patch_index = torch.cat([torch.arange(int(starts[i]), int(starts[i] + patches[i])) for i in image_index]) \
            if image_index else patch_index
    return SharedPrefix(groups=group_of, prefix_ids=prefix_ids, prefix_mask=prefix_mask, prefix_positions=prefix_pos,
                        suffix_ids=suffix_ids, suffix_mask=suffix_mask, suffix_positions=suffix_pos,
                        image_index=torch.tensor(image_index, dtype=torch.long),
                        patch_index=patch_index)
