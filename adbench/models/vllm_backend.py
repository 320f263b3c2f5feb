"""The vLLM backend (`-M backend=vllm`): the same prompts and parsers through vLLM's offline engine.

vLLM is an optional extra (`pip install 'adbench[vllm]'`, Linux + CUDA). Nothing here
imports it until an adapter is built, and building one without it installed is a
`VLLMUnavailableError` that says what to do, not an ImportError from deep inside.

How a batch runs (vLLM's documented offline API):

    llm = vllm.LLM(model=base, enable_lora=..., limit_mm_per_prompt={"image": k},
                   mm_processor_kwargs={"min_pixels": ..., "max_pixels": ...}, load_format="safetensors", ...)
    outs = llm.generate([{"prompt": text, "multi_modal_data": {"image": [ref, query]}}, ...],
                        sampling_params=SamplingParams(...), lora_request=LoRARequest("adapter", 1, DIR))

The prompt text is rendered with the checkpoint's own chat template by the same
`prompting` object the transformers backend uses, and replies are read by the same
parser. For Qwen2.5-VL the query image's model-input size comes from the resize rule
(`qwen_frame.model_input_size`) with the same min/max pixels vLLM's processor is given,
so boxes map back to image pixels exactly as on the transformers path.

Weights are loaded with `load_format="safetensors"` (vLLM then refuses pickled
checkpoints); adapters must be `adapter_model.safetensors` folders.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import Any

from adbench.args import ArgumentError
from adbench.errors import UserError
from adbench.images import ImageError, load_image
from adbench.model import GENERATIVE, Model
from adbench.models.hf_vlm import check_adapter_folder, checkpoint_generation_defaults
from adbench.models.prompting import ADFMPrompting, MMADPrompting, make_prompting
from adbench.models.qwen_frame import model_input_size
from adbench.models.weights import locate_pretrained
from adbench.schema import Query, Response

#: Families whose image placeholder the prompt text must carry itself (remote-code
#: checkpoints without a processor chat template that knows images).
TEXT_PLACEHOLDERS = {"internvl-remote": "<image>\n"}


class VLLMUnavailableError(UserError):
    """-M backend=vllm without vLLM installed."""


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise VLLMUnavailableError(
            "-M backend=vllm needs vLLM, which is not installed. Install it with "
            "pip install 'adbench[vllm]' (Linux with a CUDA GPU), or drop -M backend=vllm to use "
            "the transformers backend."
        )


class VLLMModel(Model):
    """An MLLM served by vLLM's offline engine; same arguments and replies as the transformers adapters.

    Arguments (`-M key=value`): base, adapter, family ("qwen2.5-vl", "internvl", "internvl-remote",
    "llava-next", "generic"), protocol, stages, prompt, question_id, instruction_file (`-M prompt=mmad`:
    MMAD's script's prompt, see `prompting.MMADScriptPrompting`), dtype, max_new_tokens, min_new_tokens,
    do_sample, temperature, top_p, repetition_penalty and top_k (default: the checkpoint's), seed, min_pixels /
    max_pixels (Qwen2.5-VL), max_model_len, gpu_memory_utilization, max_lora_rank,
    tensor_parallel_size, trust_remote_code, name.
    """

    name = "vllm"
    output = GENERATIVE

    def __init__(
        self,
        base: str,
        adapter: str | None = None,
        family: str = "generic",
        protocol: str = "mmad",
        stages: str = "multi",
        prompt: str = "task",
        question_id: bool = False,
        instruction_file: str | None = None,
        dtype: str = "auto",
        max_new_tokens: int = 128,
        min_new_tokens: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        repetition_penalty: float | None = None,
        top_k: int | None = None,
        seed: int = 0,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_model_len: int = 8192,
        gpu_memory_utilization: float = 0.9,
        max_lora_rank: int = 64,
        tensor_parallel_size: int = 1,
        trust_remote_code: bool = False,
        name: str | None = None,
    ) -> None:
        require_vllm()  # before any other work: the user learns about the missing extra first
        if protocol == "adfm" and family != "qwen2.5-vl":
            raise ArgumentError("protocol 'adfm' needs a Qwen2.5-VL model (its box frame is known)")
        self.prompting: MMADPrompting | ADFMPrompting = make_prompting(
            protocol, stages, prompt=prompt, question_id=question_id, instruction_file=instruction_file)
        if name:
            self.name = name
        self.base = str(base)
        locate_pretrained(self.base)  # not on this machine and no hub: one line now, not vLLM's retries later
        self.adapter = str(check_adapter_folder(adapter)) if adapter else None
        self.family = family
        self.dtype = dtype
        self.max_new_tokens = int(max_new_tokens)
        self.min_new_tokens = None if min_new_tokens is None else int(min_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        # like `generate` (and unlike vLLM's own defaults), the checkpoint's penalty and top_k unless given
        defaults = checkpoint_generation_defaults(self.base) if None in (repetition_penalty, top_k) else {}
        self.repetition_penalty = (defaults["repetition_penalty"] if repetition_penalty is None
                                   else float(repetition_penalty))
        self.top_k = (defaults["top_k"] if top_k is None else int(top_k)) or None
        self.seed = int(seed)
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.max_model_len = int(max_model_len)
        self.gpu_memory_utilization = float(gpu_memory_utilization)
        self.max_lora_rank = int(max_lora_rank)
        self.tensor_parallel_size = int(tensor_parallel_size)
        self.trust_remote_code = bool(trust_remote_code)
        self._llm: Any = None
        self._renderer: Any = None
        self._lora: Any = None
        self._max_images = 0

    # ------------------------------------------------------------------ engine

    def _engine(self, n_images: int) -> Any:
        """The vLLM engine, built on first use (it must know the most images one prompt carries)."""
        if self._llm is not None and n_images <= self._max_images:
            return self._llm
        if self._llm is not None:
            raise ValueError(f"a query shows {n_images} images; this engine was built for at most {self._max_images}")
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self._max_images = max(n_images, 2)
        kwargs: dict[str, Any] = dict(
            model=self.base, dtype=self.dtype, seed=self.seed, max_model_len=self.max_model_len,
            gpu_memory_utilization=self.gpu_memory_utilization, tensor_parallel_size=self.tensor_parallel_size,
            trust_remote_code=self.trust_remote_code, load_format="safetensors",
            limit_mm_per_prompt={"image": self._max_images},
        )
        if self.family == "qwen2.5-vl" and (self.min_pixels or self.max_pixels):
            kwargs["mm_processor_kwargs"] = {k: v for k, v in (("min_pixels", self.min_pixels),
                                                                ("max_pixels", self.max_pixels)) if v}
        if self.adapter:
            kwargs.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=1)
            self._lora = LoRARequest("adapter", 1, self.adapter)
        self._llm = LLM(**kwargs)
        return self._llm

    def _render(self, messages: list[dict[str, Any]]) -> str:
        """Prompt text with the checkpoint's chat template (the processor's, else the tokenizer's)."""
        if self._renderer is None:
            import transformers

            if self.family in TEXT_PLACEHOLDERS:
                self._renderer = transformers.AutoTokenizer.from_pretrained(
                    self.base, trust_remote_code=self.trust_remote_code)
            else:
                self._renderer = transformers.AutoProcessor.from_pretrained(
                    self.base, trust_remote_code=self.trust_remote_code)
        placeholder = TEXT_PLACEHOLDERS.get(self.family)
        if placeholder is not None:  # flatten to text, images as the family's placeholder
            messages = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else "".join(
                placeholder if p["type"] == "image" else p["text"] for p in m["content"])} for m in messages]
        return self._renderer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  **self.prompting.template_kwargs())

    def _sampling(self) -> Any:
        from vllm import SamplingParams

        kw: dict[str, Any] = dict(max_tokens=self.max_new_tokens)
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
            if self.top_k:
                kw["top_k"] = self.top_k
        else:
            kw.update(temperature=0.0)
        if self.min_new_tokens:
            kw["min_tokens"] = self.min_new_tokens
        if self.repetition_penalty != 1.0:
            kw["repetition_penalty"] = self.repetition_penalty
        return SamplingParams(**kw)

    # ------------------------------------------------------------------ predict

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        responses: list[Response | None] = [None] * len(queries)
        requests: list[tuple[int, dict[str, Any], tuple[int, int]]] = []
        for i, q in enumerate(queries):
            try:
                messages = self.prompting.messages(q)
                images = []
                for m in messages:
                    for part in m["content"] if not isinstance(m["content"], str) else []:
                        if part.get("type") == "image":
                            images.append(load_image(part["image"]))
                prompt = {"prompt": self._render(messages), "multi_modal_data": {"image": images}}
                requests.append((i, prompt, images[-1].size))
            except (ImageError, ValueError, OSError) as e:
                responses[i] = Response.failure(str(e))
        if requests:
            llm = self._engine(max(len(r[1]["multi_modal_data"]["image"]) for r in requests))
            for (i, _, size), r in zip(requests, self._generate(llm, requests)):
                responses[i] = r if isinstance(r, Response) else self._interpret(queries[i], r, size)
        return [r if r is not None else Response.failure("internal error: no response") for r in responses]

    def _generate(self, llm: Any, requests: list[tuple[int, dict[str, Any], tuple[int, int]]]) -> list[Any]:
        """vLLM outputs in request order; a failing batch is retried one request at a time."""
        try:
            t = time.perf_counter()
            outs = llm.generate([r[1] for r in requests], sampling_params=self._sampling(),
                                lora_request=self._lora, use_tqdm=False)
            dt = time.perf_counter() - t
            for o in outs:
                o.adbench_latency_s = dt / len(outs)
            return list(outs)
        except Exception as e:  # noqa: BLE001 - e.g. one prompt longer than max_model_len
            if len(requests) == 1:
                return [Response.failure(f"vLLM generation failed: {type(e).__name__}: {e}")]
            return [o for r in requests for o in self._generate(llm, [r])]

    def _interpret(self, query: Query, out: Any, image_size: tuple[int, int]) -> Response:
        completion = out.outputs[0]
        truncated = completion.finish_reason == "length"
        input_size = None
        if self.family == "qwen2.5-vl":
            from adbench.models.qwen_frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

            input_size = model_input_size(image_size, self.min_pixels or DEFAULT_MIN_PIXELS,
                                          self.max_pixels or DEFAULT_MAX_PIXELS)
        r = self.prompting.interpret(query, completion.text, truncated=truncated, input_size=input_size,
                                     image_size=image_size)
        r.usage = {"prompt_tokens": len(out.prompt_token_ids or []), "completion_tokens": len(completion.token_ids),
                   "latency_s": round(getattr(out, "adbench_latency_s", 0.0), 6)}
        return r

    # ------------------------------------------------------------------ provenance

    def config(self) -> dict[str, Any]:
        import vllm

        return {
            "model": self.name, "backend": "vllm", "vllm": vllm.__version__, "family": self.family,
            "base": self.base, "adapter": self.adapter, **self.prompting.config(), "dtype": self.dtype,
            "max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample,
            "temperature": self.temperature if self.do_sample else None,
            "top_p": self.top_p if self.do_sample else None, "top_k": self.top_k if self.do_sample else None,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
            "min_pixels": self.min_pixels, "max_pixels": self.max_pixels, "max_model_len": self.max_model_len,
        }

    def prompt_text(self) -> str:
        return self.prompting.prompt_text()

    def close(self) -> None:
        self._llm = None
