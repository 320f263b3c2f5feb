"""adbench: benchmark, evaluation and training harness for MLLMs in industrial anomaly detection.

Importing this package is cheap on purpose: it pulls in no torch, transformers or
openai. Heavy modules are imported by the adapters and tasks that need them, when
the registry builds them. The Python API (`adbench.evaluate`, `adbench.leaderboard`,
in `adbench.api`) is imported on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate", "leaderboard"]


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "leaderboard"):
        from adbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'adbench' has no attribute {name!r}")
