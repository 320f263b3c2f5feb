"""The vLLM engine (`-M backend=vllm`): the same prompts and parsers through vLLM's offline engine.

vLLM is an optional extra (`pip install 'adbench[vllm]'`, Linux + CUDA). Nothing here
imports it until an adapter is built, and building one without it installed is a
`VLLMUnavailableError` that says what to do, not an ImportError from deep inside.

How a batch runs (vLLM's documented offline API):

    llm = vllm.LLM(model=base, enable_lora=..., limit_mm_per_prompt={"image": k},
                   mm_processor_kwargs={"min_pixels": ..., "max_pixels": ...}, load_format="safetensors",
                   enable_prefix_caching=True, ...)
    outs = llm.generate([{"prompt": text, "multi_modal_data": {"image": [ref, query]}}, ...],
                        sampling_params=SamplingParams(...), lora_request=LoRARequest("adapter", 1, DIR))

The prompt text is rendered with the checkpoint's own chat template by the same
`prompting` object the transformers backend uses, and replies are read by the same
parser. For Qwen2.5-VL the query image's model-input size comes from the resize rule
(`qwen_frame.model_input_size`) with the same min/max pixels vLLM's processor is given,
so boxes map back to image pixels exactly as on the transformers path.

Prefix caching (`-M share_prefix`, on by default, as on the fast engine): vLLM keeps the
keys and values of prompt blocks it has computed and reuses them for a later prompt that
starts with the same tokens and images (its cache keys include the images' hashes), so
the several questions MMAD asks about one image prefill their shared opening once.

Weights are loaded with `load_format="safetensors"` (vLLM then refuses pickled
checkpoints); adapters must be `adapter_model.safetensors` folders. Decoding settings:
`adbench.models.generation`, applied here as `SamplingParams`, with the checkpoint's
repetition_penalty and top_k as defaults as on the transformers engine.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import Any

from adbench.args import ArgumentError
from adbench.errors import UserError
from adbench.images import ImageError, load_image
from adbench.models.engines.local import LocalVLM
from adbench.models.generation import LOCAL_DEFAULTS, checkpoint_generation_defaults
from adbench.models.qwen_frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, model_input_size
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


class VLLMModel(LocalVLM):
    """An MLLM served by vLLM's offline engine; same arguments and replies as the transformers adapters.

    Arguments (`-M key=value`): those of `LocalVLM` (base, adapter, prompting, decoding: repetition_penalty
    and top_k default to the checkpoint's), family ("qwen2.5-vl", "internvl", "internvl-remote",
    "llava-next", "generic"), dtype, min_pixels / max_pixels (Qwen2.5-VL), max_model_len,
    gpu_memory_utilization, max_lora_rank, and vLLM's own parallelism for models that do not fit one GPU:
    tensor_parallel_size, pipeline_parallel_size, data_parallel_size and distributed_executor_backend
    (each passed to `vllm.LLM` as given; vLLM checks the combination and the GPUs it needs),
    share_prefix (vLLM's prefix caching).
    """

    name = "vllm"
    #: vLLM's data parallelism replicates the model: which replica answers does not change the answer
    runtime_args = ("data_parallel_size", "distributed_executor_backend")

    def __init__(
        self,
        family: str = "generic",
        dtype: str = "auto",
        max_model_len: int = 8192,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        data_parallel_size: int = 1,
        distributed_executor_backend: str | None = None,
        max_lora_rank: int = 64,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        share_prefix: bool = True,
        **kwargs: Any,
    ) -> None:
        require_vllm()  # before any other work: the user learns about the missing extra first
        self.family = family
        super().__init__(**kwargs)
        locate_pretrained(self.base)  # not on this machine and no hub: one line now, not vLLM's retries later
        self.dtype = dtype
        # like `generate` (and unlike vLLM's own defaults), the checkpoint's penalty and top_k unless given;
        # the file is read only then (a hub id's generation_config.json may need a download)
        given = self.generation
        self._checkpoint = checkpoint_generation_defaults(self.base) \
            if None in (given.repetition_penalty, given.top_k) else {}
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.max_model_len = int(max_model_len)
        self.gpu_memory_utilization = float(gpu_memory_utilization)
        self.max_lora_rank = int(max_lora_rank)
        self.parallel: dict[str, Any] = {"tensor_parallel_size": int(tensor_parallel_size),
                                         "pipeline_parallel_size": int(pipeline_parallel_size),
                                         "data_parallel_size": int(data_parallel_size)}
        for key, value in self.parallel.items():
            if value < 1:
                raise ArgumentError(f"-M {key} must be at least 1, got {value}")
        if distributed_executor_backend:  # e.g. "external_launcher": one vLLM rank per torchrun process
            self.parallel["distributed_executor_backend"] = distributed_executor_backend
        from adbench.distributed import World

        world = World.from_env()
        if world.size > 1 and (self.parallel["tensor_parallel_size"] > 1 or self.parallel["pipeline_parallel_size"] > 1):
            # every process of an adbench launch answers other samples; a model split over several GPUs needs
            # every GPU of its group on the same prompts, which is vLLM's job in one process
            raise ArgumentError(
                f"-M tensor_parallel_size / pipeline_parallel_size above 1 under a launch of {world.size} processes: "
                "each adbench process answers its own share of the samples, so a model spread over several GPUs "
                "runs in one adbench process (no torchrun) that vLLM spreads itself")
        self.share_prefix = bool(share_prefix)
        self._llm: Any = None
        self._renderer: Any = None
        self._lora: Any = None
        self._max_images = 0

    def supports_boxes(self) -> bool:
        return self.family == "qwen2.5-vl"

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
        kwargs = self.engine_kwargs(self._max_images)
        if self.adapter:
            self._lora = LoRARequest("adapter", 1, self.adapter)
        self._llm = LLM(**kwargs)
        return self._llm

    def engine_kwargs(self, max_images: int) -> dict[str, Any]:
        """The keyword arguments of `vllm.LLM` for prompts of up to `max_images` images."""
        kwargs: dict[str, Any] = dict(
            model=self.base, dtype=self.dtype, seed=self.decoding().seed, max_model_len=self.max_model_len,
            gpu_memory_utilization=self.gpu_memory_utilization, **self.parallel,
            trust_remote_code=self.trust_remote_code, load_format="safetensors",
            limit_mm_per_prompt={"image": max_images}, enable_prefix_caching=self.share_prefix,
        )
        if self.family == "qwen2.5-vl" and (self.min_pixels or self.max_pixels):
            kwargs["mm_processor_kwargs"] = {k: v for k, v in (("min_pixels", self.min_pixels),
                                                                ("max_pixels", self.max_pixels)) if v}
        if self.adapter:
            kwargs.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=1)
        return kwargs

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

    def generation_defaults(self) -> dict[str, Any]:
        return {**LOCAL_DEFAULTS, **self._checkpoint}

    def _sampling(self) -> Any:
        """vLLM's SamplingParams for the resolved settings (greedy: temperature 0)."""
        from vllm import SamplingParams

        g = self.decoding()
        kw: dict[str, Any] = dict(max_tokens=g.max_new_tokens)
        if g.do_sample:
            kw.update(temperature=g.temperature, top_p=g.top_p, seed=g.seed)
            if g.top_k:
                kw["top_k"] = g.top_k
        else:
            kw.update(temperature=0.0)
        if g.min_new_tokens:
            kw["min_tokens"] = g.min_new_tokens
        if g.repetition_penalty != 1.0:
            kw["repetition_penalty"] = g.repetition_penalty
        if g.stop:
            kw["stop"] = list(g.stop)  # vLLM leaves the stop string out of the text, as `GenerationConfig.cut` does
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
            **super().config(), "backend": "vllm", "vllm": vllm.__version__, "dtype": self.dtype,
            "min_pixels": self.min_pixels, "max_pixels": self.max_pixels, "max_model_len": self.max_model_len,
            **self.parallel,
            "share_prefix": self.share_prefix,
        }

    def close(self) -> None:
        self._llm = None
