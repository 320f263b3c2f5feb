"""adbench's vLLM engine against the real vLLM API: what it hands to vLLM, and what it reads back.

Runs where vLLM is installed (`pip install 'adbench[vllm]'`) and is skipped elsewhere: CI has no
GPU and does not install vLLM (README, "Tested dependency ranges"; CI only checks that both ends
of the declared range install). Nothing here needs a GPU: vLLM's own `EngineArgs`,
`SamplingParams`, `LoRARequest` and output classes are built from what the engine produces and
read the way the engine reads them; the engine itself is not started. tests/test_vllm_parallel.py
covers the same path end to end against a stand-in package.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

vllm = pytest.importorskip("vllm")

from adbench import registry  # noqa: E402
from tests.vlm_fixtures import demo_queries, tiny_assets  # noqa: E402


def vllm_model(preset: str = "qwen2.5-vl-7b", **args: str):
    assignments = [f"{k}={v}" for k, v in {"backend": "vllm", "base": tiny_assets().base, **args}.items()]
    return registry.make_model(preset, **registry.parse_assignments(assignments, "-M", preset))


def test_engine_arguments_are_ones_vllm_llm_accepts(tmp_path):
    from vllm.engine.arg_utils import EngineArgs

    fields = {f.name for f in dataclasses.fields(EngineArgs)}
    accepted = fields | set(inspect.signature(vllm.LLM.__init__).parameters)
    qwen = vllm_model(min_pixels="3136", max_pixels="200704", tensor_parallel_size="2", share_prefix="false")
    qwen.adapter = str(tmp_path)  # the LoRA arguments, without training an adapter
    generic = vllm_model("internvl3-8b", family="generic", max_model_len="4096",
                         distributed_executor_backend="external_launcher")
    for model in (qwen, generic):
        kwargs = model.engine_kwargs(3)
        assert set(kwargs) <= accepted, sorted(set(kwargs) - accepted)
        args = EngineArgs(**kwargs)  # vLLM's own dataclass: an unknown or mistyped field fails here
        for key, value in kwargs.items():
            if key in fields:
                assert getattr(args, key) == value, key
    assert qwen.engine_kwargs(3)["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 200704}
    assert qwen.engine_kwargs(3)["limit_mm_per_prompt"] == {"image": 3}
    lora = qwen.engine_kwargs(3)
    assert lora["enable_lora"] is True and lora["max_loras"] == 1 and lora["enable_prefix_caching"] is False


@pytest.mark.parametrize(("args", "expected"), [
    ({"max_new_tokens": "64"}, {"temperature": 0.0, "max_tokens": 64}),
    ({"do_sample": "true", "temperature": "0.7", "top_p": "0.9", "top_k": "20", "seed": "3", "max_new_tokens": "32"},
     {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "seed": 3, "max_tokens": 32}),
    ({"stop": "</answer>", "min_new_tokens": "2", "repetition_penalty": "1.05"},
     {"stop": ["</answer>"], "min_tokens": 2, "repetition_penalty": 1.05}),
])
def test_decoding_settings_become_vllm_sampling_params(args, expected):
    params = vllm_model(**args)._sampling()
    assert isinstance(params, vllm.SamplingParams)
    for key, value in expected.items():
        assert getattr(params, key) == (pytest.approx(value) if isinstance(value, float) else value), key


def test_generate_takes_the_prompts_and_keywords_the_engine_passes():
    from vllm.inputs import TextPrompt

    assert {"prompt", "multi_modal_data"} <= set(TextPrompt.__annotations__)
    parameters = inspect.signature(vllm.LLM.generate).parameters
    assert {"sampling_params", "lora_request", "use_tqdm"} <= set(parameters)


def test_lora_request_takes_name_id_and_path_in_that_order(tmp_path):
    from vllm.lora.request import LoRARequest

    request = LoRARequest("adapter", 1, str(tmp_path))  # as the engine builds it
    assert (request.lora_name, request.lora_int_id, request.lora_path) == ("adapter", 1, str(tmp_path))


def test_a_vllm_request_output_is_read_into_a_response():
    from vllm.outputs import CompletionOutput, RequestOutput

    model = vllm_model()
    query = demo_queries(1)[0]
    completion = CompletionOutput(index=0, text="<answer>A</answer>", token_ids=[1, 2, 3], cumulative_logprob=None,
                                  logprobs=None, finish_reason="length")
    parameters = inspect.signature(RequestOutput.__init__).parameters
    fields = {"request_id": "0", "prompt": "p", "prompt_token_ids": [5, 6, 7, 8], "prompt_logprobs": None,
              "outputs": [completion], "finished": True}
    out = RequestOutput(**{k: v for k, v in fields.items() if k in parameters})
    response = model._interpret(query, out, (64, 64))
    assert response.text == "<answer>A</answer>" and response.answer == "A"
    assert response.usage["prompt_tokens"] == 4 and response.usage["completion_tokens"] == 3
    assert response.meta["truncated"] is True  # finish_reason "length"
