"""-M tensor_parallel_size / pipeline_parallel_size / data_parallel_size reach vllm.LLM.

vLLM needs a CUDA GPU and is not installed where the tests run; a stand-in package named
`vllm` (on sys.path for these tests only) records what adbench's vLLM engine hands to
`vllm.LLM` and answers each prompt, so the path from `-M` to vLLM's engine arguments runs
for real: argument typing, the preset, the adapter, the engine call and the reply.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from adbench import registry
from adbench.args import ArgumentError
from tests.vlm_fixtures import demo_queries, tiny_assets

STAND_IN = '''
__version__ = "0.0-stand-in"
calls = []


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class _Completion:
    text, token_ids, finish_reason = "B", [1], "stop"


class _Output:
    prompt_token_ids = [1, 2, 3]
    outputs = [_Completion()]


class LLM:
    def __init__(self, **kwargs):
        calls.append(kwargs)

    def generate(self, prompts, sampling_params=None, lora_request=None, use_tqdm=True):
        return [_Output() for _ in prompts]
'''


@pytest.fixture()
def vllm(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "vllm"
    (pkg / "lora").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(STAND_IN))
    (pkg / "lora" / "__init__.py").write_text("")
    (pkg / "lora" / "request.py").write_text("class LoRARequest:\n    def __init__(self, *args):\n        self.args = args\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    import vllm

    yield vllm
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]  # later tests see no vLLM, as before


@pytest.mark.parametrize("preset", ["internvl2-76b", "internvl3-38b"])
def test_parallel_sizes_are_typed_and_reach_vllm_llm(vllm, preset):
    args = registry.parse_assignments(["backend=vllm", f"base={tiny_assets().base}", "family=generic",
                                       "tensor_parallel_size=4", "pipeline_parallel_size=2", "data_parallel_size=2",
                                       "distributed_executor_backend=external_launcher"], "-M", preset)
    assert args["tensor_parallel_size"] == 4 and args["pipeline_parallel_size"] == 2  # typed from the signature
    model = registry.make_model(preset, **args)
    responses = model.predict(demo_queries(1))
    assert [r.error for r in responses] == [None, None] and {r.answer for r in responses} == {"B"}
    (call,) = vllm.calls
    assert call["tensor_parallel_size"] == 4 and call["pipeline_parallel_size"] == 2
    assert call["data_parallel_size"] == 2 and call["distributed_executor_backend"] == "external_launcher"
    assert call["model"] == str(tiny_assets().base) and call["load_format"] == "safetensors"
    config = model.config()
    assert config["tensor_parallel_size"] == 4 and config["data_parallel_size"] == 2
    # replicas change where an answer is computed, not which: a run keeps its id with another data_parallel_size
    assert set(model.runtime_args) == {"data_parallel_size", "distributed_executor_backend"}


def test_defaults_and_bad_sizes(vllm, monkeypatch):
    model = registry.make_model("hf-vlm", backend="vllm", base=str(tiny_assets().base))
    model.predict(demo_queries(1)[:1])
    call = vllm.calls[-1]
    assert (call["tensor_parallel_size"], call["pipeline_parallel_size"], call["data_parallel_size"]) == (1, 1, 1)
    assert "distributed_executor_backend" not in call  # vLLM's own choice unless given
    with pytest.raises(ArgumentError, match="-M tensor_parallel_size: expected an integer"):
        registry.parse_assignments(["tensor_parallel_size=two"], "-M", "internvl2-76b")
    with pytest.raises(ArgumentError, match="-M data_parallel_size must be at least 1, got 0"):
        registry.make_model("hf-vlm", backend="vllm", base=str(tiny_assets().base), data_parallel_size=0)
    # under torchrun every adbench process answers other samples: a tensor-parallel group cannot be one of them
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ArgumentError, match="runs in one adbench process"):
        registry.make_model("hf-vlm", backend="vllm", base=str(tiny_assets().base), tensor_parallel_size=2)
    registry.make_model("hf-vlm", backend="vllm", base=str(tiny_assets().base), data_parallel_size=2,
                        distributed_executor_backend="external_launcher")  # one replica per process is fine
