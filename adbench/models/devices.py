"""The device of `-M device=`: one reading for every local adapter (engines and baselines)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """`-M device` ("cpu", "cuda", "cuda:N", or "auto": the GPU when there is one) as a torch.device.

    Under torchrun / accelerate launch, "cuda" (and "auto" on a GPU machine) is this process's own GPU,
    cuda:LOCAL_RANK, so the processes of a data-parallel run do not all load onto the first one.
    """
    import torch  # here, not at import: the shared models modules stay importable without torch

    from adbench.distributed import local_rank

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    rank = local_rank()
    if device == "cuda" and rank is not None:
        device = f"cuda:{rank}"
    return torch.device(device)
