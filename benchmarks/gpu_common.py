"""What the GPU benchmark scripts share: one JSON line per figure, a barrier before each clock reading,
and the peak memory figure they report."""

from __future__ import annotations

import json
import resource
from typing import Any


def log(kind: str, row: dict[str, Any]) -> None:
    """One figure as a line `KIND {json}`, flushed at once (a run killed at its time limit keeps what it printed)."""
    print(kind, json.dumps(row), flush=True)


def sync(device: str) -> None:
    """Wait for the GPU's queued work, so a wall clock read next measures it (a no-op on the CPU)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def peak_gib(device: str) -> float:
    """GPU: torch's peak allocated memory since the last `reset_peak_memory_stats`; CPU: the process's peak RSS."""
    if device == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # kilobytes on Linux


def peak_kind(device: str) -> str:
    """What `peak_gib` measured on this device, for the report."""
    return "gpu max_memory_allocated" if device == "cuda" else "process max RSS"
