"""The model-adapter contract.

An adapter is any object with `name`, `output` and a batched `predict`. Subclassing
`Model` is a convenience, not a requirement. Adapters fill `Response.error` for a
query they cannot answer instead of raising; an exception escaping `predict` is caught
by the runner, which then retries the batch one query at a time so one bad query
cannot take its neighbours down with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from adbench.schema import Query, Response

GENERATIVE = "text"  # answers with text parsed into an option letter
SCORE = "score"  # answers with an anomaly score; the task thresholds it


@runtime_checkable
class ModelAdapter(Protocol):
    name: str
    output: str  # GENERATIVE or SCORE

    def predict(self, queries: Sequence[Query]) -> list[Response]: ...


class Model:
    """Base class with the provenance hooks the runner records in config.json."""

    name: str = "model"
    output: str = GENERATIVE
    #: Score-based models whose scores are probabilities in [0, 1] (CLIP) get the fixed
    #: 0.5 threshold row in tables; for distances (PatchCore) that row means nothing.
    score_is_probability: bool = False
    #: -M arguments that do not change the answers (concurrency, timeouts, cache folder):
    #: left out of the run id, so a run can be resumed with other values.
    runtime_args: tuple[str, ...] = ()

    def predict(self, queries: Sequence[Query]) -> list[Response]:  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Everything that determines this adapter's answers (recorded in config.json)."""
        return {}

    def prompt_text(self) -> str:
        """Fixed prompt text the adapter adds to queries (hashed into the run's provenance)."""
        return ""

    def usage_summary(self) -> dict[str, Any]:
        """Run-level usage (tokens, cost) for results.json; per-sample usage lives in Records."""
        return {}

    def close(self) -> None:
        """Release resources (servers, GPU memory) when the run ends."""
