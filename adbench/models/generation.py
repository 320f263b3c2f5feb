"""How a generative adapter decodes: one set of `-M` names for every engine and API client.

    -M name             type         meaning
    max_new_tokens      int          reply length limit (a reply cut there is flagged `truncated`)
    min_new_tokens      int          end tokens are not allowed before this many new tokens
    do_sample           bool         greedy decoding (false) or sampling; unset: sampling when a
                                     temperature above 0 is given, else the adapter's default
    temperature         float        sampling temperature
    top_p               float        nucleus sampling: the smallest set of tokens with this much probability
    top_k               int          sampling among the k most likely tokens (0: off)
    repetition_penalty  float        transformers' repetition penalty (it applies to greedy decoding too)
    seed                int          seeds sampling (the run's --seed unless given)
    stop                list[str]    the reply ends before the first of these strings

The defaults rule (`GenerationConfig.resolve`): a field that `-M` leaves unset takes the
adapter's default, which on the local engines (transformers, the fast Qwen2.5-VL engine,
vLLM) is `LOCAL_DEFAULTS` plus the checkpoint's own repetition_penalty and top_k
(`checkpoint_defaults`: what transformers' `generate` would apply from the checkpoint's
generation_config.json; Qwen2.5-VL-Instruct sets 1.05 and 1). Temperature and top_p do
not come from the checkpoint. Decoding greedily, temperature, top_p and top_k do not
apply and resolve to None. The resolved settings are what config.json records under
`generation`, for every generative adapter.

How each engine applies the resolved settings (in its own module):

    field               transformers generate  fast engine             vLLM SamplingParams  OpenAI request body
    max_new_tokens      max_new_tokens         max_new_tokens          max_tokens           max_tokens
    min_new_tokens      min_new_tokens         end-token ban           min_tokens           refused (no such field)
    greedy              do_sample=False        argmax                  temperature=0        temperature=0
    temperature, top_p  as named               `Sampling`              as named             as named; no temperature: the API's
    top_k               top_k                  top-k-first draw        top_k                refused (no such field)
    repetition_penalty  repetition_penalty     `Sampling`              repetition_penalty   refused (no such field)
    seed                torch.manual_seed      torch.manual_seed       seed                 seed
    stop                reply cut at the first stop string (`cut`)     stop                 stop

The local transformers engines cut the reply at the first stop string after decoding; they
do not stop generating earlier, so `completion_tokens` counts the tokens generated.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import cache
from typing import Any

from adbench.args import ArgumentError, convert_all, parameter_hints

#: What the local engines use for a field that -M leaves unset (repetition_penalty and top_k: the checkpoint's).
LOCAL_DEFAULTS: dict[str, Any] = {"max_new_tokens": 128, "do_sample": False, "temperature": 1.0, "top_p": 1.0,
                                  "seed": 0}
#: Fields that apply only when sampling.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings; None means "not given" (the adapter's default applies, see the module docstring)."""

    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        limits = (("max_new_tokens", 1, ">= 1"), ("min_new_tokens", 0, ">= 0"), ("temperature", 0, ">= 0"),
                  ("top_k", 0, ">= 0"))
        for key, low, text in limits:
            value = getattr(self, key)
            if value is not None and value < low:
                raise ArgumentError(f"-M {key} must be {text}, got {value}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ArgumentError(f"-M top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise ArgumentError(f"-M repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.do_sample is False and self.temperature:
            raise ArgumentError(f"-M temperature={self.temperature:g} needs sampling: drop -M do_sample=false "
                                "(greedy decoding has no temperature)")
        if self.stop is not None:  # one string is one stop string, not its characters
            stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
            if not all(isinstance(s, str) and s for s in stop):
                raise ArgumentError(f"-M stop: expected non-empty strings, got {self.stop!r}")
            object.__setattr__(self, "stop", stop or None)

    @classmethod
    def from_arguments(cls, values: Mapping[str, Any], adapter: type, label: str) -> GenerationConfig:
        """The settings among an adapter's keyword arguments, typed as `-M` values are (`adbench.args`).

        A key that is no field is refused, listing what the adapter class takes (its own arguments and these).
        """
        unknown = sorted(set(values) - set(field_names()))
        if unknown:
            taken = sorted(parameter_hints(adapter, (cls,))[0])
            raise ArgumentError(f"{label} does not take -M {', '.join(unknown)}; it takes: {', '.join(taken)}")
        return cls(**convert_all(dict(values), _hints(), lambda key: f"-M {key}"))

    def given(self) -> dict[str, Any]:
        """The fields that were set."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def resolve(self, defaults: Mapping[str, Any]) -> GenerationConfig:
        """The settings in force: given fields, else `defaults`; sampling-only fields None when greedy.

        `do_sample` unset means sampling when a temperature above 0 was given (as an API
        client always read it), else the default's choice.
        """
        values = {**{k: v for k, v in defaults.items() if v is not None}, **self.given()}
        if self.do_sample is None:
            values["do_sample"] = self.temperature > 0 if self.temperature is not None else \
                bool(defaults.get("do_sample", False))
        if not values["do_sample"]:
            values.update(dict.fromkeys(SAMPLING_FIELDS))
        elif values.get("top_k") == 0:  # -M top_k=0 turns off a checkpoint's top_k
            values["top_k"] = None
        return GenerationConfig(**values)

    def refuse(self, names: Iterable[str], where: str) -> None:
        """An ArgumentError for any of `names` that was given: `where` has no such setting."""
        given = [n for n in names if getattr(self, n) is not None]
        if given:
            raise ArgumentError(f"{where} has no {', '.join(given)}: drop -M {', -M '.join(given)}")

    def cut(self, text: str) -> tuple[str, bool]:
        """`text` up to the first stop string, and whether one was found."""
        ends = [i for i in (text.find(s) for s in self.stop or ()) if i >= 0]
        return (text[: min(ends)], True) if ends else (text, False)

    def to_dict(self) -> dict[str, Any]:
        """For config.json (`generation`): every field, `stop` as a list."""
        out = asdict(self)
        out["stop"] = list(self.stop) if self.stop else None
        return out


@cache
def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(GenerationConfig))


@cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(GenerationConfig)


def checkpoint_defaults(generation: Any) -> dict[str, Any]:
    """What a transformers GenerationConfig makes `generate` apply unless told otherwise.

    repetition_penalty (1 when none is set; it applies to greedy decoding too) and
    top_k (None when off; it applies to sampling).
    """
    return {"repetition_penalty": float(getattr(generation, "repetition_penalty", None) or 1.0),
            "top_k": int(getattr(generation, "top_k", None) or 0) or None}


def checkpoint_generation_defaults(base: str) -> dict[str, Any]:
    """`checkpoint_defaults` of a checkpoint's generation_config.json (transformers' defaults without one)."""
    from transformers import GenerationConfig as HFGenerationConfig

    try:
        generation = HFGenerationConfig.from_pretrained(base)
    except (OSError, ValueError):
        generation = HFGenerationConfig()
    return checkpoint_defaults(generation)


class Generates:
    """Mixin of the generative adapters: `generation` as given, resolved on use by `generation_defaults`.

    `seed` reads and sets the generation seed (`adbench variance` reseeds between passes).
    """

    generation: GenerationConfig

    def take_generation(self, values: Mapping[str, Any], label: str) -> None:
        """Set `generation` from the keyword arguments the adapter's own parameters did not take."""
        self.generation = GenerationConfig.from_arguments(values, type(self), label)

    def generation_defaults(self) -> Mapping[str, Any]:
        """The adapter's values for the fields -M leaves unset."""
        return LOCAL_DEFAULTS

    def decoding(self) -> GenerationConfig:
        """The settings in force now (`GenerationConfig.resolve`)."""
        return self.generation.resolve(self.generation_defaults())

    @property
    def seed(self) -> int | None:
        return self.decoding().seed

    @seed.setter
    def seed(self, value: int | None) -> None:
        self.generation = replace(self.generation, seed=value)
