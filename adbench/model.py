"""The model-adapter contract.

`ModelAdapter` is everything the runner calls on a model: `name`, `output`, a batched
`predict`, and the hooks it records or obeys (`config`, `prompt_text`,
`score_is_probability`, `runtime_args`, `price`, `close`). An adapter author writes
less: any object with `name`, `output` and `predict` will do. Subclassing `Model`
(which has every hook with its default) is a convenience, not a requirement:
`as_adapter`, called by the registry on whatever a factory returns, gives any other
object the hooks it lacks, in this one place.

Adapters fill `Response.error` for a query they cannot answer instead of raising; an
exception escaping `predict` is caught by the runner, which then retries the batch one
query at a time so one bad query cannot take its neighbours down with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from adbench.errors import UserError
from adbench.schema import Query, Response, TextEnum


class OutputKind(TextEnum):
    """What a model answers with (its `output`; config.json's `model_output`)."""

    GENERATIVE = "text"  # text, parsed into an option letter
    SCORE = "score"  # an anomaly score; the task's threshold rules decide


class AdapterError(UserError):
    """An object that cannot serve as a model adapter (no `predict`, an unknown `output`)."""


@runtime_checkable
class ModelAdapter(Protocol):
    """What the runner may call on a model: `Model` has all of it; `as_adapter` supplies the rest."""

    name: str
    output: OutputKind
    #: Scores in [0, 1] (CLIP): the fixed 0.5 threshold row means something for them.
    score_is_probability: bool
    #: -M arguments that do not change the answers: left out of the run id.
    runtime_args: tuple[str, ...]
    #: What a request costs (an API adapter's price table entry), None when unknown: --max-cost
    #: is enforced only for a model with a price.
    price: object | None

    def predict(self, queries: Sequence[Query]) -> list[Response]: ...

    def config(self) -> dict[str, Any]: ...

    def prompt_text(self) -> str: ...

    def close(self) -> None: ...


class Model:
    """Base class with every hook of `ModelAdapter` and its default."""

    name: str = "model"
    output: OutputKind = OutputKind.GENERATIVE
    #: Score-based models whose scores are probabilities in [0, 1] (CLIP) get the fixed
    #: 0.5 threshold row in tables; for distances (PatchCore) that row means nothing.
    score_is_probability: bool = False
    #: -M arguments that do not change the answers (concurrency, timeouts, cache folder):
    #: left out of the run id, so a run can be resumed with other values.
    runtime_args: tuple[str, ...] = ()
    #: An API adapter's price (`cost` per request); None: its cost is unknown.
    price: object | None = None

    def predict(self, queries: Sequence[Query]) -> list[Response]:  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Everything that determines this adapter's answers (recorded in config.json)."""
        return {}

    def prompt_text(self) -> str:
        """Fixed prompt text the adapter adds to queries (hashed into the run's provenance)."""
        return ""

    def close(self) -> None:
        """Release resources (servers, GPU memory) when the run ends."""


#: The hooks `as_adapter` takes from a duck-typed adapter where it has them (else Model's default).
HOOKS = ("score_is_probability", "runtime_args", "price", "config", "prompt_text", "close")


class _Adapted(Model):
    """A duck-typed adapter with Model's defaults for the hooks it does not have."""

    def __init__(self, inner: Any, output: OutputKind) -> None:
        self.inner = inner
        self.name = inner.name
        self.output = output
        for hook in HOOKS:  # the one place an adapter's optional hooks are looked up by name
            if hasattr(inner, hook):
                setattr(self, hook, getattr(inner, hook))

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        return self.inner.predict(queries)


def output_kind(value: Any, name: str = "the adapter") -> OutputKind:
    """An adapter's declared `output` ("text" or "score", or the member) as an OutputKind."""
    try:
        return OutputKind(value)
    except ValueError:
        valid = " or ".join(repr(k.value) for k in OutputKind)
        raise AdapterError(f"{name} declares output {value!r}; an adapter's output is {valid}") from None


def declared_output(value: Any) -> OutputKind | None:
    """A run's recorded `model_output` (config.json's text) as an OutputKind; None when absent or unknown
    (a run recorded before adapters declared it: its records' evidence decides)."""
    return OutputKind(value) if value in tuple(OutputKind) else None


def as_adapter(obj: Any) -> ModelAdapter:
    """`obj` as a full ModelAdapter: a `Model` as it is (its `output` made an OutputKind), any
    other object with `name`, `output` and `predict` wrapped with the default hooks."""
    name = getattr(obj, "name", None) or type(obj).__name__
    if not callable(getattr(obj, "predict", None)):
        raise AdapterError(f"{name} is not a model adapter: it has no predict(queries) method")
    if not hasattr(obj, "output"):
        raise AdapterError(f"{name} is not a model adapter: it declares no output ('text' or 'score')")
    kind = output_kind(obj.output, name)
    if isinstance(obj, Model):
        if obj.output is not kind:  # a subclass that wrote the text ("score"), as the README allows
            obj.output = kind
        return obj
    return _Adapted(obj, kind)
