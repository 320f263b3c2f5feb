"""How a local MLLM is asked and how its reply becomes a Response, shared by every backend.

Three styles:
- `MMADPrompting` (zero-shot rows, `qwen2.5-vl-7b`, `internvl3-8b`, ...): the task's own
  interleaved rendering (`Query.meta["segments"]`: intro, reference image, query image,
  question, options, "answer with the letter") and adbench's strict answer parser
  (`adbench.answers.parse_option`; results.json also scores every reply by MMAD's rule).
- `MMADScriptPrompting` (`-M prompt=mmad`): the content list MMAD's Qwen2.5-VL script
  (jam-cc/MMAD, evaluation/examples/Transformers/qwen2_5_vl_query.py) sends: instruction,
  "answer directly", template caption and images, query caption and image, question
  caption, question with its option lines; images numbered by the chat template
  (`add_vision_id`). The instruction is adbench's wording (`MMAD_INSTRUCTION`) unless
  `-M instruction_file=PATH` supplies the exact text. Replies are read with MMAD's own
  rule (`adbench.answers.mmad_answer`), as the script reads them.
- `ADFMPrompting` (`adfm`): the AD-FM protocol of `adfm_protocol`; boxes come back in
  the model-input frame and are mapped to original image pixels here.

The transformers and vLLM backends both call `messages()` and `interpret()`, so a
reply is read the same way whichever engine produced it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal, get_args

from adbench.answers import mmad_answer, parse_option
from adbench.args import ArgumentError, parse_bool
from adbench.models import adfm_protocol as proto
from adbench.models.qwen_frame import to_image_frame
from adbench.schema import ParseStatus, Query, Response

#: `-M protocol`: how a local MLLM is asked and its reply read: MMAD's way (the task's prompt, an option
#: letter) or AD-FM's (think/rethink/answer with boxes, Qwen2.5-VL only).
ProtocolName = Literal["mmad", "adfm"]
PROTOCOLS: tuple[str, ...] = get_args(ProtocolName)
#: `-M prompt` (protocol "mmad"): the task's own rendering, or MMAD's Qwen2.5-VL script's.
PromptName = Literal["task", "mmad"]
PROMPTS: tuple[str, ...] = get_args(PromptName)

#: MMAD's instruction (the role of an industrial inspector checking products in images; judge
#: whether the query image shows a defect and answer the question; answer with the option's
#: letter directly) in adbench's own words, shared by `-M mmad=true` (GPT) and `-M prompt=mmad`
#: (local MLLMs). `-M instruction_file=PATH` sends other text instead, e.g. the exact
#: instruction from the user's own MMAD checkout.
MMAD_INSTRUCTION = (
    "You inspect manufactured products in images. Decide whether the query image shows a defect, "
    "then answer the question about it.\n"
    "Reply with the letter of the chosen option only.\n"
)

# The fixed structural phrases of MMAD's Qwen2.5-VL script, verbatim (trailing spaces included):
# the model was evaluated with exactly these, and they carry no wording worth rephrasing.
SCRIPT_ANSWER_DIRECTLY = "Answer with the option's letter from the given choices directly! "
SCRIPT_QUERY_CAPTION = "Following is the query image: "
SCRIPT_QUESTION_CAPTION = "Following is the question list: "


def script_templates_caption(n: int) -> str:
    """The script's caption before its `n` normal template images (its grammar, kept as is)."""
    return (f"Following is/are {n} image of normal sample, which can be used as a template to compare "
            "the image being queried.")


def parse_flag(value: Any, name: str, error: type[Exception] = ArgumentError) -> bool:
    """A yes/no -M argument by the one rule of `adbench.args.parse_bool` (a typo such as `-M cache=flase`
    is an error, not a silent True), raised as `error`."""
    try:
        return parse_bool(value, f"-M {name}")
    except ArgumentError as e:
        if error is ArgumentError:
            raise
        raise error(str(e)) from None


def read_instruction(path: str | Path, error: type[Exception] = ArgumentError) -> str:
    """The text of `-M instruction_file=PATH` (UTF-8), sent as is; any problem is one line naming the path."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"-M instruction_file: cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise error(f"-M instruction_file: {path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    if not text.strip():
        raise error(f"-M instruction_file: {path} is empty")
    return text


def question_number(query_id: str) -> int:
    """The 1-based position of a question within its image's conversation.

    MMAD-style sample ids are `<image key>#<index in the conversation>`; an id without
    that suffix belongs to a one-question image (the cross-dataset tasks): question 1.
    """
    _, sep, tail = query_id.rpartition("#")
    return int(tail) + 1 if sep and tail.isdigit() else 1


def template_reads(processor: Any, variable: str) -> bool:
    """Whether the processor's chat template(s) use `variable` (e.g. Qwen's `add_vision_id`)."""
    template = getattr(processor, "chat_template", None)
    texts = template.values() if isinstance(template, dict) else [template]
    return any(isinstance(t, str) and variable in t for t in texts)


class MMADPrompting:
    """MMAD's 1-shot prompt as the task rendered it; the reply's option letter by the strict parser."""

    name = "mmad"
    prompt = "task"
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
        if status != ParseStatus.PARSED:
            meta["parse_problems"] = ["no option letter or option text found in the reply"] + (
                ["generation stopped at max_new_tokens"] if truncated else [])
        if truncated:
            meta["truncated"] = True
        return Response(text=text, answer=letter, parse_status=status, meta=meta)

    def template_kwargs(self) -> dict[str, Any]:
        """Extra variables for the chat template (`apply_chat_template(..., **template_kwargs())`)."""
        return {}

    def prompt_text(self) -> str:
        return ""  # the task's prompt is the whole prompt (already hashed by the runner)

    def config(self) -> dict[str, Any]:
        return {"prompting": self.name, "prompt": self.prompt,
                "parser": "adbench.answers.parse_option (strict)"}


class MMADScriptPrompting(MMADPrompting):
    """The user message of MMAD's Qwen2.5-VL script, built from the Query (`-M prompt=mmad`).

    Content blocks in the script's order: instruction; "answer directly"; with references,
    their caption and one image block each; the query caption and image; the question
    caption; the question block `"{question} \\n"` + one `"{letter}. {text}\\n"` line per
    option (with `question_id`, prefixed `"Question {n}: "` as MMAD's gpt4v.py numbers
    them). No system message (the chat template adds its default one, as in the script),
    and the template numbers the images ("Picture 1: ") where it knows `add_vision_id`.
    """

    name = "mmad-script"
    prompt = "mmad"

    def __init__(self, instruction_file: str | None = None, question_id: bool = False) -> None:
        self.instruction = read_instruction(instruction_file) if instruction_file else MMAD_INSTRUCTION
        self.instruction_source = str(instruction_file) if instruction_file else "adbench (MMAD_INSTRUCTION)"
        self.question_id = parse_flag(question_id, "question_id")

    def messages(self, query: Query) -> list[dict[str, Any]]:
        content = [_text(self.instruction), _text(SCRIPT_ANSWER_DIRECTLY)]
        if query.references:
            content.append(_text(script_templates_caption(len(query.references))))
            content += [_image(p) for p in query.references]
        content += [_text(SCRIPT_QUERY_CAPTION), _image(query.image), _text(SCRIPT_QUESTION_CAPTION),
                    _text(self.question_block(query))]
        return [{"role": "user", "content": content}]

    def interpret(self, query: Query, text: str, *, truncated: bool = False, **_: Any) -> Response:
        """The letter MMAD's script would record (`mmad_answer`), with how it was found in `meta`."""
        letter = mmad_answer(text, query.options)
        meta: dict[str, Any] = {}
        problems = []
        if letter is None:
            problems.append("no reply to read")
        elif mmad_answer(text, {}) is None:  # no A-E letter in the reply: the rule fell back to difflib
            meta["answer_rule"] = "closest option text (difflib), no A-E letter in the reply"
        if letter is not None and letter not in query.options:
            problems.append(f"the letter {letter} is not one of the options (MMAD's rule keeps it: it counts as wrong)")
        if truncated:
            meta["truncated"] = True
            problems.append("generation stopped at max_new_tokens")
        if problems:
            meta["parse_problems"] = problems
        status = ParseStatus.PARSED if letter else ParseStatus.UNPARSED
        return Response(text=text, answer=letter, parse_status=status, meta=meta)

    def template_kwargs(self) -> dict[str, Any]:
        # Qwen2-VL/2.5-VL templates then write "Picture N: " before the Nth image, as in the
        # script; a template that does not read the variable ignores it (no image ids)
        return {"add_vision_id": True}

    def question_block(self, query: Query) -> str:
        options = "".join(f"{letter}. {text}\n" for letter, text in query.options.items())
        number = f"Question {question_number(query.id)}: " if self.question_id else ""
        return f"{number}{query.question} \n{options}"

    def prompt_text(self) -> str:
        # what the runner hashes into prompt_hash: every fixed text of the message
        return "\n".join([self.instruction, SCRIPT_ANSWER_DIRECTLY, script_templates_caption(1),
                          SCRIPT_QUERY_CAPTION, SCRIPT_QUESTION_CAPTION, f"question_id={self.question_id}"])

    def config(self) -> dict[str, Any]:
        return {**super().config(), "parser": "adbench.answers.mmad_answer (MMAD's parse_answer)",
                "question_id": self.question_id,
                "instruction": {"source": self.instruction_source,
                                "sha256": hashlib.sha256(self.instruction.encode("utf-8")).hexdigest()}}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image(path: str) -> dict[str, Any]:
    return {"type": "image", "image": path}


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
            parse_status=ParseStatus.PARSED if parsed.ok else ParseStatus.UNPARSED,
            meta=meta,
        )

    def template_kwargs(self) -> dict[str, Any]:
        return {}

    def prompt_text(self) -> str:
        return proto.prompt_text(self.stages)

    def config(self) -> dict[str, Any]:
        return {"prompting": self.name, "stages": self.stages, "system": self.system,
                "parser": "adbench.models.adfm_protocol.parse_reply"}


def make_prompting(protocol: ProtocolName, stages: str = proto.MULTI_STAGE, prompt: PromptName = "task",
                   question_id: bool = False, instruction_file: str | None = None) -> MMADPrompting | ADFMPrompting:
    """The prompting style of `-M protocol` / `-M prompt`; the instruction file is read here, before any model loads."""
    if protocol not in PROTOCOLS:  # -M values are checked by their Literal type; Python callers here
        raise ArgumentError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if prompt not in PROMPTS:
        raise ArgumentError(f"-M prompt must be one of {', '.join(PROMPTS)}, got {prompt!r}")
    if prompt == "mmad":
        if protocol == "adfm":
            raise ArgumentError("-M prompt=mmad is MMAD's zero-shot prompt and cannot be combined with the AD-FM "
                             "protocol; add -M protocol=mmad to ask this model MMAD's way")
        return MMADScriptPrompting(instruction_file, question_id)
    for value, flag in ((instruction_file, "instruction_file"), (parse_flag(question_id, "question_id"), "question_id")):
        if value:  # not silently ignored: both shape only MMAD's script prompt
            raise ArgumentError(f"-M {flag} applies to -M prompt=mmad only")
    return MMADPrompting() if protocol == "mmad" else ADFMPrompting(stages)
