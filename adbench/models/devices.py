"""The device of `-M device=`: one reading for every local adapter (engines and baselines)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """`-M device` ("cpu", "cuda", "cuda:N", or "auto": the GPU when there is one) as a torch.device."""
    import torch  # here, not at import: the shared models modules stay importable without torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)
