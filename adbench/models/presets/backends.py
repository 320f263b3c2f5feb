"""The engine a preset runs on: transformers (the default) or vLLM's offline engine (`-M backend=vllm`)."""

from __future__ import annotations

import typing
from typing import Any, Literal

from adbench.args import ArgumentError

Backend = Literal["transformers", "vllm"]
BACKENDS: tuple[str, ...] = typing.get_args(Backend)


def build(backend: str, transformers_class: type[Any], kwargs: dict[str, Any], **vllm_only: Any) -> Any:
    """`transformers_class(**kwargs)`, or the vLLM engine with the same arguments (and `vllm_only`, e.g. its family).

    Arguments an engine does not take are refused by the engine, naming the ones it takes.
    """
    if backend not in BACKENDS:
        raise ArgumentError(f"-M backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "vllm":
        from adbench.models.engines.vllm_offline import VLLMModel

        return VLLMModel(**vllm_only, **kwargs)
    return transformers_class(**kwargs)
