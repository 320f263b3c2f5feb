"""What `adbench run` is asked to run: models x tasks, their arguments, labels and run options.

One configuration, read from three places with the same rules:

- the command line: `--model a,b --task t,GROUP -M key=value -M a:key=value -T ... --label ...`
  and the run options (`--limit`, `--out`, `--seed`, ...);
- a YAML file (`--config run.yaml`) whose keys are the flags' names (`model`, `task`,
  `model_args` for -M, `task_args` for -T, `label`, and the options as `RunSpec` names them:
  `data_root`, `limit`, `batch_size`, `seed`, `out`, `run_id`, `max_cost`, `max_failed`,
  `retry_failed`, `progress`); flags given on the command line override it (lists and
  options are replaced, -M / -T / --label keys are set over the file's);
- the Python API (`adbench.evaluate(**options)`): the same option names.

Options are typed from `RunSpec`'s annotations and -M / -T values from the receiving
factory's signature (`adbench.args`), so a wrong type is one line naming the flag or the
file and key. With several models, `-M key=value` goes to every model (each must take
it) and `-M MODEL:key=value` to that model only; `-T` likewise with a task, or a group
for all its members. `--label NAME` names the runs of the one model given;
`--label MODEL:NAME` one of several.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adbench import registry
from adbench.args import convert, split_assignment, unknown_key_message
from adbench.errors import MissingFileError, UserError
from adbench.runner import RunSpec

#: Separates a scope (a model, a task or a group) from the key: `-M patchcore:backbone=wide_resnet50`.
SCOPE = ":"
#: RunSpec fields that are not run options: the configuration's own keys say them (lists, scoped args).
_NOT_OPTIONS = ("model", "task", "model_args", "task_args", "label")
#: The run options: RunSpec's fields, with its defaults and (`option_hints`) its types.
OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunSpec) if f.name not in _NOT_OPTIONS)
#: The keys a configuration file may have, in the order --print-config writes them.
FILE_KEYS: tuple[str, ...] = ("model", "task", "model_args", "task_args", "label", *OPTIONS)
_PATH_OPTIONS = ("data_root", "out")


class RunConfigError(UserError):
    """A configuration that cannot run: an unknown key or scope, a label that names no model, no model given."""


def option_hints() -> dict[str, Any]:
    hints = typing.get_type_hints(RunSpec)
    return {k: hints[k] for k in OPTIONS}


def option_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(RunSpec) if f.name in OPTIONS}


def read_options(values: dict[str, Any], where: Callable[[str], str], whose: str,
                 also: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run options (`limit`, `out`, ...) typed from RunSpec's annotations; an unknown name is an error that
    suggests the closest (among the options and the names `also` valid there). `where(key)` names a value in
    errors; `whose` names the place of an unknown key."""
    hints = option_hints()
    out = {}
    for key, value in values.items():
        if key not in hints:
            raise RunConfigError(unknown_key_message(whose, str(key), (*also, *OPTIONS), "options"))
        typed = convert(value, hints[key], where(key))
        out[key] = Path(typed).expanduser() if key in _PATH_OPTIONS and typed is not None else typed
    return out


@dataclass(frozen=True)
class Assignment:
    """One -M / -T value (or label): for every model or task (scope None) or for the one `scope` names."""

    scope: str | None
    key: str
    value: Any
    where: str  # how errors name it: "-M patchcore:backbone", "run.yaml: model_args.patchcore:backbone"
    source: str = ""  # "" for the command line, "run.yaml: " for a file: prefixes errors about it


def split_scope(text: str) -> tuple[str | None, str]:
    """`scope:rest` -> (scope, rest); text without the separator -> (None, text)."""
    scope, sep, rest = text.partition(SCOPE)
    return (scope.strip(), rest) if sep else (None, text)


def parse_scoped(item: str, flag: str) -> Assignment:
    """`-M key=value` or `-M scope:key=value` -> an Assignment (dashes in the key become underscores)."""
    left, sep, raw = item.partition("=")
    scope, key = split_scope(left) if sep else (None, left)
    if scope == "":
        raise RunConfigError(f"{flag} {item!r}: expected key=value or NAME:key=value")
    key, raw = split_assignment(f"{key}={raw}" if sep else item, flag, RunConfigError)
    return Assignment(scope, key, raw, f"{flag} {scope + SCOPE if scope else ''}{key}")


def _names(values: Iterable[str]) -> list[str]:
    """`--model a,b --model c` -> [a, b, c]: comma-separated, trimmed, each once."""
    out: list[str] = []
    for value in values:
        out += [n.strip() for n in str(value).split(",") if n.strip() and n.strip() not in out]
    return out


@dataclass
class RunConfig:
    """What the user asked for, before it is checked against the registry (`resolve` does that)."""

    models: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    model_args: dict[tuple[str | None, str], Assignment] = field(default_factory=dict)
    task_args: dict[tuple[str | None, str], Assignment] = field(default_factory=dict)
    #: key "label"; scope None: the one model (a --label's `MODEL:` prefix is read once the models are known)
    labels: list[Assignment] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # only those given; RunSpec's defaults for the rest

    def override(self, other: RunConfig) -> RunConfig:
        """`other` (the command line) over this (the file): lists and options replaced, args and labels set over.

        Where `other` replaces the models (tasks), this one's settings scoped to a model (task) no longer
        given are dropped: `--model chance` on a file that also configures patchcore runs chance alone.
        """
        mine_args, mine_labels, mine_tasks = self.model_args, self.labels, self.task_args
        if other.models:
            mine_args = {k: a for k, a in mine_args.items() if a.scope in (None, *other.models)}
            mine_labels = [a for a in mine_labels if a.scope in (None, *other.models)]
        if other.tasks:
            try:
                named = {*other.tasks, *registry.expand_tasks(other.tasks)}
            except registry.RegistryError:
                named = set(other.tasks)  # `resolve` names the unknown one
            mine_tasks = {k: a for k, a in mine_tasks.items() if a.scope is None or a.scope in named}
        return RunConfig(other.models or self.models, other.tasks or self.tasks,
                         {**mine_args, **other.model_args}, {**mine_tasks, **other.task_args},
                         [*mine_labels, *other.labels], {**self.options, **other.options})  # later labels win

    def resolve(self) -> Resolved:
        """Every pair checked and typed (names, scopes, -M / -T values, labels, options); nothing is built."""
        if not self.models or not self.tasks:
            missing = " and ".join(f"--{k} (or `{k}:` in the --config file)"
                                   for k, v in (("model", self.models), ("task", self.tasks)) if not v)
            raise RunConfigError(f"give {missing}")
        for name in self.models:
            registry.check_model(name)
        tasks = registry.expand_tasks(self.tasks)
        groups = registry.groups()
        labels = self._labels()
        _check_scopes(self.model_args.values(), set(self.models), "models", "--model")
        _check_scopes(self.task_args.values(), {*self.tasks, *tasks}, "tasks or groups", "--task")
        model_args = {m: _typed("models", m, self._for_model(m), len(self.models)) for m in self.models}
        task_args = {t: _typed("tasks", t, self._for_task(t, groups), len(tasks)) for t in tasks}
        options = {**option_defaults(), **self.options}
        specs = [RunSpec(model=m, task=t, model_args=model_args[m], task_args=task_args[t], label=labels.get(m),
                         **options) for m in self.models for t in tasks]
        for spec in specs:
            spec.check()
        return Resolved(self, specs, model_args, task_args, labels, options)

    def _labels(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for a in self.labels:
            scope, text = a.scope, str(a.value)
            if not a.source and scope is None and split_scope(text)[0] in self.models:
                scope, text = split_scope(text)  # --label MODEL:NAME, MODEL one of the models given
            if scope is None and len(self.models) > 1:
                how = f"label: {{MODEL: {text}}}" if a.source else f"--label MODEL{SCOPE}{text}"
                raise RunConfigError(f"{a.source}{a.where} {text!r}: with several models, say whose label it is: "
                                     f"{how} (MODEL one of {', '.join(self.models)})")
            model = scope or self.models[0]
            if model not in self.models:
                raise RunConfigError(f"{a.source}{a.where}: {model!r} is not one of the models given "
                                     f"({', '.join(self.models)})")
            out[model] = text
        return out

    def _for_model(self, model: str) -> list[Assignment]:
        return ([a for a in self.model_args.values() if a.scope is None]
                + [a for a in self.model_args.values() if a.scope == model])

    def _for_task(self, task: str, groups: dict[str, registry.Group]) -> list[Assignment]:
        """A task's -T values: those for every task, then its groups', then its own (the narrowest wins)."""
        in_group = {g for g in self.tasks if g in groups and task in groups[g].members}
        return ([a for a in self.task_args.values() if a.scope is None]
                + [a for a in self.task_args.values() if a.scope in in_group]
                + [a for a in self.task_args.values() if a.scope == task])


def _check_scopes(assignments: Iterable[Assignment], valid: set[str], what: str, flag: str) -> None:
    for a in assignments:
        if a.scope is not None and a.scope not in valid:
            raise RunConfigError(f"{a.source}{a.where}: {a.scope!r} is not one of the {what} given "
                                 f"({flag} {', '.join(sorted(valid))})")


def _typed(kind: str, name: str, assignments: list[Assignment], n_receivers: int) -> dict[str, Any]:
    """One model's (task's) arguments, typed by its factory; an unknown key names where it was given."""
    last = {a.key: a for a in assignments}  # the narrowest scope was listed last
    try:
        return registry.convert_arguments(kind, name, {k: a.value for k, a in last.items()},
                                          lambda key: f"{last[key].source}{last[key].where}")
    except registry.RegistryError as e:  # an unknown key (a bad value is an ArgumentError, named where it was given)
        params = {p.name for p in registry.arguments(kind, name)[0]}
        a = next((a for key, a in last.items() if key not in params), None)
        if a is None:  # not about a key (an unknown name): as it is
            raise
        hint = ""
        if a.scope is None and n_receivers > 1:
            flag, section = registry.FLAGS[kind], f"{kind[:-1]}_args"
            hint = (f" ({section} keys without a scope go to every {kind[:-1]} given; write NAME{SCOPE}{a.key} "
                    f"for the {kind} that take it)" if a.source else
                    f" ({flag} without a scope goes to every {kind[:-1]} given; give it as "
                    f"{flag} NAME{SCOPE}{a.key}=VALUE for the {kind} that take it)")
        raise RunConfigError(f"{a.source}{e}{hint}") from None


@dataclass
class Resolved:
    """A checked configuration: one RunSpec per (model, task) pair, and what --print-config writes."""

    config: RunConfig
    specs: list[RunSpec]
    model_args: dict[str, dict[str, Any]]  # model -> its typed -M values
    task_args: dict[str, dict[str, Any]]  # task -> its typed -T values
    labels: dict[str, str]
    options: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a --config file would give it, values typed (what --print-config prints)."""
        c = self.config
        return {
            "model": list(c.models),
            "task": list(c.tasks),
            "model_args": _args_view(c.model_args, self.model_args, c.models),
            "task_args": _args_view(c.task_args, self.task_args, [s.task for s in self.specs]),
            "label": dict(self.labels),
            **{k: str(v) if k in _PATH_OPTIONS and v is not None else v for k, v in self.options.items()},
        }

    def to_yaml(self) -> str:
        pairs = "".join(f"#   {s.model} on {s.task}\n" for s in self.specs)
        head = f"# adbench run: {len(self.specs)} run{'s' if len(self.specs) != 1 else ''} (model x task)\n{pairs}"
        return head + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, allow_unicode=True)


def _args_view(given: dict[tuple[str | None, str], Assignment], typed: dict[str, dict[str, Any]],
               receivers: list[str]) -> dict[str, Any]:
    """`key` / `scope:key` -> the typed value (an unscoped key: as its first receiver typed it)."""
    out = {}
    for (scope, key), a in given.items():
        takers = [scope] if scope in typed else [r for r in receivers if key in typed.get(r, {})]
        value = typed[takers[0]].get(key, a.value) if takers else a.value
        out[f"{scope}{SCOPE}{key}" if scope else key] = value
    return out


# -- reading ------------------------------------------------------------------------------------------


def from_cli(model: list[str] | None, task: list[str] | None, model_args: list[str] | None,
             task_args: list[str] | None, labels: list[str] | None, options: dict[str, Any]) -> RunConfig:
    """The command line's part: names, -M / -T / --label items and the options given (None = not given)."""
    config = RunConfig(_names(model or []), _names(task or []))
    for item in model_args or []:
        a = parse_scoped(item, "-M")
        config.model_args[(a.scope, a.key)] = a
    for item in task_args or []:
        a = parse_scoped(item, "-T")
        config.task_args[(a.scope, a.key)] = a
    config.labels = [Assignment(None, "label", text, "--label") for text in labels or []]
    config.options = {k: v for k, v in options.items() if v is not None}
    return config


def read_file(path: Path) -> RunConfig:
    """A --config YAML file: unknown keys and wrong types are one-line errors naming the file and key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingFileError(f"--config: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunConfigError(f"--config: cannot read {path}: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RunConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RunConfigError(f"{path}: a run configuration is a mapping of keys ({', '.join(FILE_KEYS)}), "
                             f"got {type(data).__name__}")
    prefix = f"{path}: "
    config = RunConfig()
    for key, value in data.items():
        if key not in FILE_KEYS:
            raise RunConfigError(unknown_key_message(str(path), str(key), FILE_KEYS, "keys"))
        if key in ("model", "task"):
            setattr(config, f"{key}s", _names(convert(value, list[str], f"{prefix}{key}")))
        elif key in ("model_args", "task_args"):
            getattr(config, key).update(_file_args(value, key, prefix))
        elif key == "label":
            config.labels = _file_labels(value, prefix)
    config.options = read_options({k: v for k, v in data.items() if k in OPTIONS}, lambda key: f"{prefix}{key}",
                                  str(path))
    return config


def _file_args(value: Any, key: str, prefix: str) -> dict[tuple[str | None, str], Assignment]:
    """`model_args:` / `task_args:`: a mapping of `key` or `NAME:key` to values (typed later, by the receiver)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RunConfigError(f"{prefix}{key}: expected a mapping of key: value (NAME{SCOPE}key for one "
                             f"{key[:-5]}), got {value!r}")
    out = {}
    for name, item in value.items():
        scope, arg = split_scope(str(name))
        arg = arg.strip().replace("-", "_")
        if scope == "" or not arg:
            raise RunConfigError(f"{prefix}{key}.{name}: expected a key or NAME{SCOPE}key")
        out[(scope, arg)] = Assignment(scope, arg, item, f"{key}.{name}", prefix)
    return out


def _file_labels(value: Any, prefix: str) -> list[Assignment]:
    """`label: NAME` (the one model) or `label: {MODEL: NAME, ...}`."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Assignment(None, "label", value, "label", prefix)]
    labels = convert(value, dict[str, str], f"{prefix}label")
    return [Assignment(model, "label", text, f"label.{model}", prefix) for model, text in labels.items()]
