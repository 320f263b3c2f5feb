"""Model and task registries: name -> "module:factory" strings, imported only when used.

Built-in entries are listed here as strings so that `import adbench` and `adbench
list` import no adapter (and so no torch, transformers or openai). Third-party
packages add entries through the entry-point groups `adbench.models` and
`adbench.tasks`, e.g. in their pyproject.toml:

    [project.entry-points."adbench.models"]
    my-model = "my_package.adapter:make_model"

A factory is called with the `-M key=value` (or `-T key=value`) arguments as keyword
arguments and returns the adapter or task. The values are typed from the factory's
signature first (`adbench.args`: `-M trust_remote_code=false` is False, `-M seed=1.7` an
error), and keys it does not take are refused, before anything is built. A factory (or an adapter class) that
takes `**kwargs` and hands them to other callables names them in an attribute
`kwargs_from` (callables or "module:attr" strings), so those keys are typed too; the
built-in ones are listed in `KWARGS_FROM`. A factory's `renamed_args` ({old: new})
makes the error for an argument it no longer takes name the new one.

A task *group* is a name for several tasks, each run on its own (its own run directory,
resumed on its own): `--task mmad-all` runs `mmad-binary` and `mmad-multitask`. Groups are
listed in `BUILTIN_GROUPS` (and added at run time with `register_group`); a name used as
both a task and a group is refused where it is used. `cross-dataset` is not a group but one
task whose samples are the four cross-dataset test splits: one run holds Table 2's four
columns, so their average (and its bootstrap interval) is computed over one run's records.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from adbench.args import Parameter, convert_all, parameters, read_untyped, split_assignment
from adbench.errors import UserError

if TYPE_CHECKING:
    from adbench.task import Task


class RegistryError(UserError, LookupError):
    """Unknown name, bad factory string, or arguments the factory does not take."""


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:factory"
    description: str
    source: str = "built-in"


BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "chance": ("adbench.models.baselines.chance:ChanceModel", "Seeded uniform choice among the options (the floor)."),
    "patchcore": (
        "adbench.models.baselines.patchcore:PatchCoreModel",
        "PatchCore: ImageNet CNN patch features, nearest-neighbour memory bank of normal images.",
    ),
    "gpt-4.1": (
        "adbench.models.api.openai_chat:GPT41",
        "OpenAI GPT-4.1 (snapshot gpt-4.1-2025-04-14); key from $OPENAI_API_KEY; -M mmad=true: MMAD's.",
    ),
    "gpt-4o": (
        "adbench.models.api.openai_chat:GPT4o",
        "OpenAI GPT-4o (snapshot gpt-4o-2024-08-06); key from $OPENAI_API_KEY; -M mmad=true: MMAD's.",
    ),
    "gpt-4o-mini": (
        "adbench.models.api.openai_chat:GPT4oMini",
        "OpenAI GPT-4o-mini (snapshot gpt-4o-mini-2024-07-18); key from $OPENAI_API_KEY; -M mmad=true: MMAD's.",
    ),
    "openai-compatible": (
        "adbench.models.api.openai_chat:OpenAIChatModel",
        "Any chat-completions server (e.g. vLLM serve): -M base_url=http://HOST:PORT/v1 -M model=NAME.",
    ),
    "winclip": (
        "adbench.models.baselines.winclip:WinCLIPModel",
        "WinCLIP / WinCLIP+ (open_clip ViT-B-16-plus-240): prompt ensemble, multi-scale windows; score in [0, 1].",
    ),
    "anomalyclip": (
        "adbench.models.baselines.anomalyclip:AnomalyCLIPModel",
        "AnomalyCLIP (CLIP ViT-L/14@336px + learned object-agnostic prompts, local checkpoint); score in [0, 1].",
    ),
    "adfm": (
        "adbench.models.presets.adfm:adfm",
        "AD-FM: Qwen2.5-VL + LoRA (-M adapter=DIR, -M base=...), think/rethink/answer protocol, boxes.",
    ),
    "qwen2.5-vl-7b": (
        "adbench.models.presets.qwen:qwen25_vl_7b",
        "Qwen2.5-VL-7B-Instruct zero-shot, MMAD prompt (-M prompt=mmad: MMAD's script's; -M backend=vllm).",
    ),
    "qwen2.5-vl-3b": (
        "adbench.models.presets.qwen:qwen25_vl_3b",
        "Qwen2.5-VL-3B-Instruct zero-shot, MMAD prompt (-M prompt=mmad: MMAD's script's; -M backend=vllm).",
    ),
    "internvl3-8b": ("adbench.models.presets.open_vlms:internvl3_8b", "InternVL3-8B (-hf checkpoint), MMAD prompt."),
    "internvl3-38b": ("adbench.models.presets.open_vlms:internvl3_38b", "InternVL3-38B (-hf checkpoint), MMAD prompt."),
    "internvl2-76b": (
        "adbench.models.presets.open_vlms:internvl2_76b",
        "InternVL2-Llama3-76B, MMAD prompt (remote-code release: -M backend=vllm -M trust_remote_code=true).",
    ),
    "llava-next-34b": ("adbench.models.presets.open_vlms:llava_next_34b", "LLaVA-NeXT-34B (llava-hf), MMAD prompt."),
    "hf-vlm": (
        "adbench.models.presets.open_vlms:hf_vlm",
        "Any transformers image-text-to-text model: -M base=<hub id or folder>, MMAD prompt.",
    ),
}

BUILTIN_TASKS: dict[str, tuple[str, str]] = {
    "demo-binary": (
        "adbench.tasks.demo:binary",
        "Built-in demo suite: Anomaly Detection question (yes/no), 1-shot, MMAD balanced accuracy.",
    ),
    "demo-multitask": (
        "adbench.tasks.demo:multitask",
        "Built-in demo suite: defect classification / localization and object questions.",
    ),
    "mmad-binary": (
        "adbench.tasks.mmad:binary",
        "MMAD (MVTec, VisA, LOCO, GoodsAD) Anomaly Detection, eval split, 1-shot (Table 1).",
    ),
    "mmad-multitask": (
        "adbench.tasks.mmad:multitask",
        "MMAD defect and object questions, Object Analysis merged, eval split (Table 3).",
    ),
    "mmad": ("adbench.tasks.mmad:all_questions", "MMAD, every question type, eval split."),
    "cross-visa": ("adbench.tasks.cross:visa", "VisA test split, yes/no, one normal reference (Table 2)."),
    "cross-mpdd": ("adbench.tasks.cross:mpdd", "MPDD test split, yes/no, one normal reference (Table 2)."),
    "cross-dtd": ("adbench.tasks.cross:dtd", "DTD-Synthetic test split, yes/no, one normal reference (Table 2)."),
    "cross-dagm": ("adbench.tasks.cross:dagm", "DAGM 2007 test split, yes/no, one normal reference (Table 2)."),
    "cross-dataset": (
        "adbench.tasks.cross:suite",
        "VisA + MPDD + DTD + DAGM test splits in one run, one normal reference (Table 2).",
    ),
}

#: Task groups: name -> (member tasks, each run on its own; description).
BUILTIN_GROUPS: dict[str, tuple[tuple[str, ...], str]] = {
    "demo-all": (("demo-binary", "demo-multitask"), "every question of the demo suite"),
    "mmad-all": (("mmad-binary", "mmad-multitask"), "MMAD as the paper reports it: Table 1 and Table 3"),
}

#: Built-in factories that take **kwargs and hand them to these callables: their -M values are typed, and
#: unknown keys refused, from the callables' signatures before anything is built. The generative adapters
#: take the decoding settings (`GenerationConfig`'s fields, one set of names for all) through **kwargs too.
_GENERATION = "adbench.models.generation:GenerationConfig"
_VLLM = "adbench.models.engines.vllm_offline:VLLMModel"
_OPEN_VLMS = ("adbench.models.presets.open_vlms:GenericVLM", _VLLM, _GENERATION)
_QWEN = ("adbench.models.engines.qwen:QwenVLModel", _VLLM, _GENERATION)
KWARGS_FROM: dict[str, tuple[str, ...]] = {
    **{f"adbench.models.presets.open_vlms:{f}": _OPEN_VLMS
       for f in ("hf_vlm", "internvl3_8b", "internvl3_38b", "internvl2_76b", "llava_next_34b")},
    "adbench.models.presets.adfm:adfm": _QWEN,
    **{f"adbench.models.presets.qwen:{f}": _QWEN for f in ("qwen25_vl_7b", "qwen25_vl_3b")},
    **{f"adbench.models.api.openai_chat:{c}": (_GENERATION,)
       for c in ("OpenAIChatModel", "GPT41", "GPT4o", "GPT4oMini")},
}
FLAGS = {"models": "-M", "tasks": "-T"}

_extra: dict[str, dict[str, Entry]] = {"models": {}, "tasks": {}}


@dataclass(frozen=True)
class Group:
    """A name for several tasks, each run on its own."""

    name: str
    members: tuple[str, ...]
    description: str
    source: str = "built-in"


_extra_groups: dict[str, Group] = {}


def register_model(name: str, target: str, description: str = "") -> None:
    """Register a model factory at run time (tests, notebooks)."""
    _extra["models"][name] = Entry(name, target, description, "runtime")


def register_task(name: str, target: str, description: str = "") -> None:
    """Register a task factory at run time (tests, notebooks)."""
    _extra["tasks"][name] = Entry(name, target, description, "runtime")


def register_group(name: str, members: list[str] | tuple[str, ...], description: str = "") -> None:
    """Register a task group at run time (tests, notebooks): `name` stands for the tasks `members`."""
    _extra_groups[name] = Group(name, tuple(members), description, "runtime")


def _entries(kind: str) -> dict[str, Entry]:
    builtin = BUILTIN_MODELS if kind == "models" else BUILTIN_TASKS
    table = {n: Entry(n, t, d) for n, (t, d) in builtin.items()}
    for ep in entry_points(group=f"adbench.{kind}"):
        dist = getattr(ep, "dist", None)
        source = f"plugin {dist.name}" if dist is not None else "plugin"
        table.setdefault(ep.name, Entry(ep.name, ep.value, f"third-party ({source})", source))
    table.update(_extra[kind])
    return dict(sorted(table.items()))


def models() -> dict[str, Entry]:
    return _entries("models")


def tasks() -> dict[str, Entry]:
    return _entries("tasks")


def groups() -> dict[str, Group]:
    """The task groups, by name."""
    table = {n: Group(n, members, d) for n, (members, d) in BUILTIN_GROUPS.items()}
    table.update(_extra_groups)
    return dict(sorted(table.items()))


def expand_tasks(names: list[str] | tuple[str, ...]) -> list[str]:
    """Task names with every group replaced by its members, in order, each task once.

    An unknown name is a RegistryError listing the tasks and the groups; so is a group
    with a member that is not a registered task.
    """
    task_table, group_table = tasks(), groups()
    out: list[str] = []
    for name in names:
        if name in group_table and name in task_table:  # a plugin's task under a group's name
            raise RegistryError(f"{name!r} is registered both as a task ({task_table[name].source}) and as a task "
                                f"group ({group_table[name].source}); a name must mean one thing")
        if name in group_table:
            members = group_table[name].members
            missing = [m for m in members if m not in task_table]
            if missing:
                raise RegistryError(f"task group {name!r} names tasks that are not registered: {', '.join(missing)}")
        elif name in task_table:
            members = (name,)
        else:
            raise RegistryError(f"unknown task {name!r}. Valid tasks: {', '.join(task_table)}; "
                                f"task groups: {', '.join(group_table) or '(none)'}")
        out += [m for m in members if m not in out]
    return out


def load_target(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise RegistryError(f"bad factory string {target!r}: expected 'package.module:factory'")
    module = importlib.import_module(module_name)
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as e:
        raise RegistryError(f"{target!r}: module {module_name} has no attribute {attr!r}") from e
    return obj


def _lookup(kind: str, name: str) -> Entry:
    table = _entries(kind)
    if name not in table:
        singular = kind[:-1]
        valid = ", ".join(table) or "(none)"
        raise RegistryError(f"unknown {singular} {name!r}. Valid {kind}: {valid}")
    return table[name]


def check_model(name: str) -> Entry:
    """Fail early (before reading data) on an unknown model name."""
    return _lookup("models", name)


def _signature(entry: Entry) -> tuple[Callable[..., Any], dict[str, Parameter], bool]:
    """(factory, keyword -> Parameter, whether it takes keys beyond those): known without building anything."""
    factory = load_target(entry.target)
    names = KWARGS_FROM.get(entry.target) or getattr(factory, "kwargs_from", ())
    forwards = tuple(load_target(t) if isinstance(t, str) else t for t in names)
    params, open_ = parameters(factory, forwards)
    return factory, params, open_


def arguments(kind: str, name: str) -> tuple[list[Parameter], bool]:
    """The `-M` (kind "models") or `-T` ("tasks") arguments `name` takes, with type hints and defaults,
    and whether it takes other keys too; what `convert_arguments` types values against. Builds nothing."""
    _, params, open_ = _signature(_lookup(kind, name))
    return list(params.values()), open_


def _convert(entry: Entry, kind: str, values: dict[str, Any],
             where: Callable[[str], str] | None = None) -> tuple[Callable[..., Any], dict[str, Any], dict[str, Any], bool]:
    factory, params, open_ = _signature(entry)
    hints = {key: p.hint for key, p in params.items()}
    flag = FLAGS[kind]
    if not open_:
        unknown = sorted(set(values) - set(hints))
        if unknown:
            renamed = getattr(factory, "renamed_args", {})  # old names an adapter no longer takes: say the new one
            now = "".join(f" ({flag} {k} is now {flag} {renamed[k]})" for k in unknown if k in renamed)
            raise RegistryError(
                f"{kind[:-1]} {entry.name!r} does not take {flag} {', '.join(unknown)}{now}; "
                f"it takes: {', '.join(hints) or '(no arguments)'}"
            )
    label = where or (lambda key: f"{flag} {key}")
    return factory, convert_all(values, hints, label), hints, open_


def convert_arguments(kind: str, name: str, values: dict[str, Any],
                      where: Callable[[str], str] | None = None) -> dict[str, Any]:
    """`values` for the model (kind "models") or task ("tasks") `name`, typed from its factory's signature.

    Unknown keys are a RegistryError, values that do not convert an `args.ArgumentError`
    named by `where(key)` (default "-M key" / "-T key"). Nothing is built: the factory's
    module is imported, no weights or data are read.
    """
    return _convert(_lookup(kind, name), kind, values, where)[1]


def _call(entry: Entry, kind: str, kwargs: dict[str, Any], defaults: dict[str, Any] | None = None) -> Any:
    factory, kwargs, hints, open_ = _convert(entry, kind, kwargs)  # typed again: Python callers get the same rule
    for key, value in (defaults or {}).items():  # e.g. the run's --seed, where the factory takes one
        if key not in kwargs and (open_ or key in hints):
            kwargs[key] = value
    return factory(**kwargs)


def make_model(name: str, defaults: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Build the adapter registered as `name` with keyword arguments from `-M`: what its factory returns.

    `defaults` (e.g. the run's seed) are passed only where the factory takes them and
    the user did not set them. `adbench.model.as_adapter` makes the result a full
    `ModelAdapter` (the runner calls it): a duck-typed adapter gets the hooks it lacks.
    """
    model = _call(_lookup("models", name), "models", kwargs, defaults)
    if not getattr(model, "name", None):
        model.name = name
    return model


def make_task(name: str, **kwargs: Any) -> Task:
    """Build the task registered as `name` with keyword arguments from `-T`; it must be a `Task`."""
    from adbench.task import missing_members  # the task module imports the results engine: not for `list`

    task = _call(_lookup("tasks", name), "tasks", kwargs)
    if not getattr(task, "name", None):
        task.name = name
    missing = missing_members(task)
    if missing:
        raise RegistryError(f"task {name!r} is not a task: it has no {', '.join(missing)} "
                            "(adbench.task.Task; build it as a QuestionTask)")
    return task


def parse_assignments(items: list[str] | None, flag: str, name: str | None = None) -> dict[str, Any]:
    """`-M` / `-T` `key=value` strings -> keyword arguments of the model or task `name`.

    With `name`, values are typed from its factory's signature and checked now, before
    any task or model is built (`convert_arguments`); without it, or for a parameter
    without an annotation, a value is read as JSON when it parses (1, 0.5, true, [1,2]),
    else kept as text.
    """
    raw: dict[str, str] = {}
    for item in items or []:
        key, value = split_assignment(item, flag, RegistryError)
        raw[key] = value
    if name is None:
        return {k: read_untyped(v) for k, v in raw.items()}
    kind = {flag: kind for kind, flag in FLAGS.items()}[flag]
    return convert_arguments(kind, name, raw)
