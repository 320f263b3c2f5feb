"""GenerationConfig: one set of decoding settings, its defaults rule, and how engines read it."""

import pytest

from adbench import registry
from adbench.args import ArgumentError
from adbench.models.generation import LOCAL_DEFAULTS, GenerationConfig, checkpoint_defaults


class Checkpoint:
    """A transformers GenerationConfig's two fields that `generate` applies unless told otherwise."""

    def __init__(self, repetition_penalty=None, top_k=None):
        self.repetition_penalty, self.top_k = repetition_penalty, top_k


QWEN_INSTRUCT = {**LOCAL_DEFAULTS, **checkpoint_defaults(Checkpoint(1.05, 1))}


def test_unset_fields_take_the_adapters_and_the_checkpoints_defaults():
    greedy = GenerationConfig().resolve(QWEN_INSTRUCT)
    assert greedy.to_dict() == {"max_new_tokens": 128, "min_new_tokens": None, "do_sample": False,
                                "temperature": None, "top_p": None, "top_k": None, "repetition_penalty": 1.05,
                                "seed": 0, "stop": None}
    sampled = GenerationConfig(do_sample=True, seed=3).resolve(QWEN_INSTRUCT)
    assert (sampled.temperature, sampled.top_p, sampled.top_k, sampled.seed) == (1.0, 1.0, 1, 3)
    assert GenerationConfig(do_sample=True, top_k=0).resolve(QWEN_INSTRUCT).top_k is None  # 0 turns it off
    assert GenerationConfig(repetition_penalty=1.0).resolve(QWEN_INSTRUCT).repetition_penalty == 1.0
    assert checkpoint_defaults(Checkpoint()) == {"repetition_penalty": 1.0, "top_k": None}


def test_a_temperature_means_sampling_unless_do_sample_says_otherwise():
    assert GenerationConfig(temperature=0.7).resolve(LOCAL_DEFAULTS).do_sample is True
    assert GenerationConfig(temperature=0).resolve({"do_sample": True}).do_sample is False
    assert GenerationConfig().resolve({"do_sample": True}).do_sample is True  # the adapter's default
    with pytest.raises(ArgumentError, match="needs sampling: drop -M do_sample=false"):
        GenerationConfig(do_sample=False, temperature=0.7)


def test_values_are_checked_and_stop_strings_cut_replies():
    for bad, message in ((dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
                         (dict(top_p=0), r"top_p must be in \(0, 1\]"), (dict(top_k=-1), "top_k must be >= 0"),
                         (dict(repetition_penalty=0), "repetition_penalty must be > 0"),
                         (dict(stop=["a", ""]), "stop: expected non-empty strings")):
        with pytest.raises(ArgumentError, match=message):
            GenerationConfig(**bad)
    config = GenerationConfig(stop="</answer>")
    assert config.stop == ("</answer>",)  # one string is one stop string
    assert GenerationConfig(stop=["B", "</answer>"]).cut("<answer>A</answer> B") == ("<answer>A", True)
    assert config.cut("no stop here") == ("no stop here", False)


def test_every_generative_adapter_takes_the_same_names():
    names = set(GenerationConfig.__dataclass_fields__)
    for model in ("adfm", "qwen2.5-vl-7b", "internvl3-8b", "hf-vlm", "gpt-4o", "openai-compatible"):
        entry = registry.models()[model]
        hints = registry._signature(entry)[1]
        assert names <= set(hints), model
    args = registry.parse_assignments(["max_new_tokens=64", "stop=[\"###\", \"\\n\\n\"]", "do_sample=yes"], "-M",
                                      "qwen2.5-vl-7b")
    assert args == {"max_new_tokens": 64, "stop": ["###", "\n\n"], "do_sample": True}


def test_an_adapter_refuses_a_key_it_does_not_take_and_lists_what_it_takes():
    from adbench.models.api.openai_chat import OpenAIChatModel

    with pytest.raises(ArgumentError, match="my-api does not take -M max_tokens; it takes: .*max_new_tokens"):
        GenerationConfig.from_arguments({"max_tokens": 3}, OpenAIChatModel, "my-api")
    assert GenerationConfig.from_arguments({"top_k": "5"}, OpenAIChatModel, "my-api").top_k == 5  # typed as -M is
