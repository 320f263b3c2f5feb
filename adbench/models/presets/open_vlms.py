"""The paper's other open rows and any transformers image-text-to-text model (`hf-vlm -M base=...`).

InternVL3 and LLaVA-NeXT as transformers-native checkpoints (their tiling and any-res
image handling live in their processors), MMAD's prompt; InternVL2-76B, released as
remote code only, on vLLM (`-M backend=vllm -M trust_remote_code=true`).
"""

from __future__ import annotations

from typing import Any

from adbench.args import ArgumentError
from adbench.models.engines.hf import HFVisionLanguageModel
from adbench.models.presets.backends import Backend, build

#: The paper's other open-source rows, as transformers-native checkpoints.
PRESETS: dict[str, dict[str, Any]] = {
    "internvl3-8b": dict(base="OpenGVLab/InternVL3-8B-hf", family="internvl"),
    "internvl3-38b": dict(base="OpenGVLab/InternVL3-38B-hf", family="internvl"),
    # InternVL2-76B was released only as remote code (no transformers-native "-hf" copy):
    # vLLM implements it natively (`-M backend=vllm`, needs -M trust_remote_code=true for the
    # repository's config and tokenizer files).
    "internvl2-76b": dict(base="OpenGVLab/InternVL2-Llama3-76B", family="internvl-remote"),
    "llava-next-34b": dict(base="llava-hf/llava-v1.6-34b-hf", family="llava-next"),
}


class GenericVLM(HFVisionLanguageModel):
    """The generic adapter with a family tag (InternVL tiling and LLaVA-NeXT any-res live in their processors)."""

    name = "hf-vlm"

    def __init__(self, base: str, family: str = "generic", **kwargs: Any) -> None:
        if family == "internvl-remote":
            raise ArgumentError(
                f"{base} exists only as remote code, which the transformers backend does not run; "
                "use -M backend=vllm (vLLM implements InternVL2) with -M trust_remote_code=true"
            )
        self.family = family
        super().__init__(base=base, **kwargs)


def make_generic(preset: str | None = None, backend: str = "transformers", **kwargs: Any) -> Any:
    """Factory behind the generic presets and the `hf-vlm` entry (`-M base=...`)."""
    spec = dict(PRESETS[preset]) if preset else {}
    spec.update(kwargs)
    if "base" not in spec:
        raise ArgumentError("hf-vlm needs -M base=<hub id or local folder>")
    spec.setdefault("name", preset or "hf-vlm")
    return build(backend, GenericVLM, spec)


def internvl3_8b(backend: Backend = "transformers", **kwargs: Any) -> Any:
    return make_generic("internvl3-8b", backend, **kwargs)


def internvl3_38b(backend: Backend = "transformers", **kwargs: Any) -> Any:
    return make_generic("internvl3-38b", backend, **kwargs)


def internvl2_76b(backend: Backend = "transformers", **kwargs: Any) -> Any:
    return make_generic("internvl2-76b", backend, **kwargs)


def llava_next_34b(backend: Backend = "transformers", **kwargs: Any) -> Any:
    return make_generic("llava-next-34b", backend, **kwargs)


def hf_vlm(backend: Backend = "transformers", **kwargs: Any) -> Any:
    return make_generic(None, backend, **kwargs)
