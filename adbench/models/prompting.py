"""How a local MLLM is asked and how its reply becomes a Response, shared by every backend.

Two styles:
- `MMADPrompting` (zero-shot rows, `qwen2.5-vl-7b`, `internvl3-8b`, ...): the task's own
  interleaved rendering (`Query.meta["segments"]`: intro, reference image, query image,
  question, options, "answer with the letter") and MMAD's answer rule
  (`adbench.answers.parse_option`).
- `ADFMPrompting` (`adfm`): the AD-FM protocol of `adfm_protocol`; boxes come back in
  the model-input frame and are mapped to original image pixels here.

The transformers and vLLM backends both call `messages()` and `interpret()`, so a
reply is read the same way whichever engine produced it.
"""

from __future__ import annotations

from typing import Any

from adbench.answers import parse_option
from adbench.models import adfm_protocol as proto
from adbench.models.qwen_frame import to_image_frame
from adbench.schema import PARSED, UNPARSED, Query, Response


class MMADPrompting:
    """MMAD's 1-shot prompt as the task rendered it; the reply's option letter by MMAD's rule."""

    name = "mmad"
    wants_boxes = False

    def messages(self, query: Query) -> list[dict[str, Any]]:
        segments = query.meta.get("segments")
        content: list[dict[str, Any]] = []
        if segments:
            for kind, value in segments:
                if kind == "image":
                    content.append({"type": "image", "image": value})
                else:
                    content.append({"type": "text", "text": value + "\n"})
        else:  # a task without segments: images first (references, then the query), then the text
            content = [{"type": "image", "image": p} for p in query.images]
            content.append({"type": "text", "text": query.prompt})
        images = [c["image"] for c in content if c["type"] == "image"]
        if images != list(query.images):
            raise ValueError(f"query {query.id}: segments show images {images}, the query has {query.images}")
        return [{"role": "user", "content": content}]

    def interpret(self, query: Query, text: str, *, truncated: bool = False, **_: Any) -> Response:
        letter, status = parse_option(text, query.options)
        meta: dict[str, Any] = {}
        if status != PARSED:
            meta["parse_problems"] = ["no option letter or option text found in the reply"] + (
                ["generation stopped at max_new_tokens"] if truncated else [])
        if truncated:
            meta["truncated"] = True
        return Response(text=text, answer=letter, parse_status=status, meta=meta)

    def prompt_text(self) -> str:
        return ""  # the task's prompt is the whole prompt (already hashed by the runner)

    def config(self) -> dict[str, Any]:
        return {"prompting": self.name, "parser": "adbench.answers.parse_option (MMAD's rule)"}


class ADFMPrompting:
    """The AD-FM protocol: multi-stage (`stages="multi"`) or one-stage (`stages="one"`)."""

    name = "adfm"
    wants_boxes = True

    def __init__(self, stages: str = proto.MULTI_STAGE, system: str | None = proto.SYSTEM_PROMPT) -> None:
        proto.instruction(stages)  # validates
        self.stages = stages
        self.system = system

    def messages(self, query: Query) -> list[dict[str, Any]]:
        return proto.build_messages(query, self.stages, self.system)

    def interpret(
        self,
        query: Query,
        text: str,
        *,
        input_size: tuple[int, int] | None = None,
        image_size: tuple[int, int] | None = None,
        truncated: bool = False,
        **_: Any,
    ) -> Response:
        """Parse `text`; boxes go from the model-input frame (`input_size`) to `image_size` pixels."""
        parsed = proto.parse_reply(text, query.options, self.stages, frame=input_size)
        problems = list(parsed.problems)
        if truncated:
            problems.append("generation stopped at max_new_tokens")
        boxes = parsed.boxes
        meta: dict[str, Any] = {"parse_problems": problems} if problems else {}
        if boxes:
            if input_size is None or image_size is None:
                raise ValueError("ADFMPrompting.interpret needs input_size and image_size to map boxes")
            meta["boxes_model_frame"] = [b.to_dict() for b in boxes]
            boxes = to_image_frame(boxes, input_size, image_size)
        if input_size is not None:
            meta["input_size"] = list(input_size)
        if image_size is not None:
            meta["image_size"] = list(image_size)
        if truncated:
            meta["truncated"] = True
        return Response(
            text=text,
            answer=parsed.decision,
            boxes=boxes,
            stages=dict(parsed.stages),
            parse_status=PARSED if parsed.ok else UNPARSED,
            meta=meta,
        )

    def prompt_text(self) -> str:
        return proto.prompt_text(self.stages)

    def config(self) -> dict[str, Any]:
        return {"prompting": self.name, "stages": self.stages, "system": self.system,
                "parser": "adbench.models.adfm_protocol.parse_reply"}


def make_prompting(protocol: str, stages: str = proto.MULTI_STAGE) -> MMADPrompting | ADFMPrompting:
    if protocol == "mmad":
        return MMADPrompting()
    if protocol == "adfm":
        return ADFMPrompting(stages)
    raise ValueError(f"protocol must be 'mmad' or 'adfm', got {protocol!r}")
