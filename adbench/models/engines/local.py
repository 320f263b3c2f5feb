"""What the local engines (transformers, vLLM) share: the checkpoint, the adapter, the prompting, the decoding.

Both engines take these `-M` arguments the same way, ask with the same `prompting`
object and read replies with its parser, so a reply means the same whichever engine
produced it; each engine adds its own loading and running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adbench.args import ArgumentError
from adbench.model import Model, OutputKind
from adbench.models.generation import Generates
from adbench.models.prompting import ADFMPrompting, MMADPrompting, PromptName, ProtocolName, make_prompting
from adbench.models.weights import check_adapter_folder


def is_local(base: str) -> bool:
    return Path(base).expanduser().exists()


class LocalVLM(Model, Generates):
    """A checkpoint (hub id or folder), optionally a LoRA adapter, asked by `prompting`, decoded by `generation`.

    Arguments (`-M key=value`):
      base                 hub id or local folder
      adapter              PEFT LoRA adapter folder (adapter_model.safetensors), optional
      protocol             "mmad" (the task's prompt, MMAD's answer rule) or "adfm" (Qwen2.5-VL only)
      stages               AD-FM: "multi" (think/rethink/answer) or "one" (think/answer)
      prompt               with protocol "mmad": "task" (the task's rendering, default) or "mmad" (the
                           content list of MMAD's Qwen2.5-VL script, `prompting.MMADScriptPrompting`)
      question_id          prompt "mmad": prefix the question with "Question {n}: " (off, as the script)
      instruction_file     prompt "mmad": a UTF-8 file whose text replaces adbench's instruction wording
      trust_remote_code    run the checkpoint's own Python code (off; needed by no preset but internvl2-76b)
      name                 the adapter's name in runs and tables
      max_new_tokens, min_new_tokens, do_sample, temperature, top_p, top_k, repetition_penalty, seed, stop:
                           decoding (`adbench.models.generation`): greedy and 128 new tokens by default, the
                           checkpoint's repetition_penalty (Qwen2.5-VL-Instruct: 1.05) and top_k
                           (Qwen2.5-VL-Instruct: 1, which makes sampling greedy; 0 turns it off)
    """

    output = OutputKind.GENERATIVE
    family = "generic"

    def __init__(
        self,
        base: str,
        adapter: str | None = None,
        protocol: ProtocolName = "mmad",
        stages: str = "multi",
        prompt: PromptName = "task",
        question_id: bool = False,
        instruction_file: str | None = None,
        trust_remote_code: bool = False,
        name: str | None = None,
        **generation: Any,
    ) -> None:
        if name:
            self.name = name
        # before anything is loaded: bad settings, a bad -M prompt or an unreadable instruction file fail fast
        self.take_generation(generation, self.name)
        if protocol == "adfm" and not self.supports_boxes():
            raise ArgumentError(f"protocol 'adfm' needs a model whose box frame adbench knows (Qwen2.5-VL); "
                                f"{self.name} ({self.family}) has none")
        self.prompting: MMADPrompting | ADFMPrompting = make_prompting(
            protocol, stages, prompt=prompt, question_id=question_id, instruction_file=instruction_file)
        self.base = str(Path(base).expanduser()) if is_local(str(base)) else str(base)
        self.adapter = str(check_adapter_folder(adapter)) if adapter else None
        self.trust_remote_code = bool(trust_remote_code)

    def supports_boxes(self) -> bool:
        """Whether adbench knows the model's box frame (the AD-FM protocol needs it)."""
        return False

    def config(self) -> dict[str, Any]:
        """What both engines record; each adds its own settings."""
        return {"model": self.name, "family": self.family, "base": self.base, "adapter": self.adapter,
                **self.prompting.config(), "generation": self.decoding().to_dict()}

    def prompt_text(self) -> str:
        return self.prompting.prompt_text()
