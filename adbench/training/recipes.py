"""Training recipes: YAML files in `adbench/training/recipes/`, with `extends` and `--set`.

A recipe names the base model, the training samples (a registered task and its
arguments, normally `-T split=train`), the response protocol, the reward components,
LoRA and the `trl.GRPOConfig` settings. A recipe may `extends:` another one and
override any nested key; `--set grpo.beta=0.1` overrides a key from the command line.

Every key is checked against `SCHEMA` (the keys the training code reads; for `grpo:`,
the fields of trl.GRPOConfig), in every file of an `extends` chain and in every `--set`:
an unknown key is an error that lists the valid ones, and every value is converted to
its key's type by `adbench.args` (`--set grpo.bf16=no` is False, `--set grpo.beta=abc`
an error). `data.task_args` are typed from the task's factory, as `-T` values are.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from adbench.args import UNTYPED, ArgumentError, convert, split_assignment, unknown_key_message
from adbench.errors import UserError

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
RewardComponent = Literal["format", "cls", "loc", "count", "random"]
REWARD_COMPONENTS: tuple[str, ...] = get_args(RewardComponent)
REQUIRED = ("base", "data", "protocol", "rewards", "lora", "grpo")

#: Every key a recipe may set, and its type. One place for what the training code reads:
#: trainer.py (base, tiny_seed, data.data_root), grpo_data.py (data, protocol), reward_funcs.py
#: (rewards), config.py (model, grpo, rollout, vllm), lora.py (lora), warmup.py (sft_warmup). The `grpo`
#: section is trl.GRPOConfig's fields (`grpo_schema`); `data.task_args` the task factory's arguments.
SCHEMA: dict[str, Any] = {
    "extends": str,
    "description": str,
    "base": str,  # a hub id, a folder, or "tiny"
    "tiny_seed": int,
    "data": {"task": str, "task_args": dict[str, Any], "min_pixels": int, "max_pixels": int, "limit": int | None,
             "seed": int, "data_root": str | None},
    "protocol": {"stages": Literal["multi", "one"]},
    "rewards": {"components": list[RewardComponent], "variant": Literal["paper", "released"], "alpha": float,
                "random_sigma": float, "random_seed": int},
    "model": {"dtype": str, "attn_implementation": str | None},
    "lora": {"r": int, "alpha": int, "dropout": float, "target": Literal["language", "all-linear"]},
    "grpo": "trl.GRPOConfig",
    "rollout": {"path": Literal["generate", "static"]},
    "vllm": {"enabled": bool | Literal["auto"], "mode": Literal["colocate", "server"]},
    "sft_warmup": {"max_steps": int, "epochs": float, "learning_rate": float, "lr_scheduler_type": str,
                   "batch_size": int, "limit": int | None, "seed": int, "logging_steps": int},
}
#: Sections that may be `null` (sft_warmup: null = no warm-up).
OPTIONAL_SECTIONS = ("model", "rollout", "vllm", "sft_warmup")
#: Keys without a default in the code that reads them.
REQUIRED_KEYS = {"data": ("task", "min_pixels", "max_pixels"), "protocol": ("stages",), "rewards": ("components",),
                 "lora": ("r", "alpha")}


class RecipeError(UserError):
    """A recipe that cannot be used; the message names the recipe file (or --set) and key."""


def available() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    candidate = RECIPE_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise RecipeError(f"unknown recipe {name_or_path!r}. Valid recipes: {', '.join(available())} (or a .yaml path)")


def description(name: str) -> str:
    """A recipe's `description` (its own or inherited), read without checking the recipe or importing trl."""
    path: Path | None = _path(name)
    seen: set[Path] = set()
    while path is not None and path not in seen:
        seen.add(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            return ""
        if data.get("description"):
            return str(data["description"])
        path = _path(str(data["extends"])) if data.get("extends") else None
    return ""


@functools.cache
def grpo_schema() -> dict[str, Any]:
    """trl.GRPOConfig's fields and their types, plus `warmup_ratio` (config.grpo_kwargs translates it).

    Empty when trl is not installed: the section is then not checked (training needs trl anyway).
    """
    import dataclasses
    import typing

    try:  # the class itself, not the name `trl.GRPOConfig` (a test replaces that name with a spy)
        from trl.trainer.grpo_config import GRPOConfig
    except ImportError:
        return {}
    try:
        hints = typing.get_type_hints(GRPOConfig)
    except Exception:  # an annotation this trl cannot resolve: its fields stay, untyped
        hints = {}
    out = {f.name: hints.get(f.name, UNTYPED) for f in dataclasses.fields(GRPOConfig) if f.init}
    out.setdefault("warmup_ratio", float)
    return out


def _keys_of(section: str) -> dict[str, Any] | None:
    """The schema of a section (key -> type); None when it is a plain key or is not checked."""
    spec = SCHEMA.get(section)
    if spec == "trl.GRPOConfig":
        return grpo_schema() or None
    return spec if isinstance(spec, dict) else None


def _unknown(where: str, key: str, valid: list[str], what: str) -> RecipeError:
    return RecipeError(unknown_key_message(where, key, valid, what))


def _read_yaml(text: str) -> Any:
    """A --set value whose type is not declared: YAML, as a recipe file would give it."""
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def _check(data: dict[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """`data` (a recipe file, or the --set overrides) with unknown keys refused and values converted.

    `where("grpo.beta")` names a key in errors. `data.task_args` is left for `_task_args`.
    """
    out: dict[str, Any] = {}
    for section, value in data.items():
        if section not in SCHEMA:
            raise _unknown(where(section), section, list(SCHEMA), "recipe keys")
        keys = _keys_of(section)
        if SCHEMA[section] == "trl.GRPOConfig" and keys is None:
            out[section] = value  # trl is not installed: nothing to check against
        elif keys is None:
            out[section] = _convert(value, SCHEMA[section], where(section))
        else:
            out[section] = _check_section(section, value, keys, where)
    return out


def _check_section(section: str, value: Any, keys: dict[str, Any], where: Callable[[str], str]) -> Any:
    if isinstance(value, str):  # --set sft_warmup=null, --set data={...}
        value = _read_yaml(value)
    if value is None and section in OPTIONAL_SECTIONS:
        return None
    if not isinstance(value, dict):
        raise RecipeError(f"{where(section)}: expected a mapping of keys, got {value!r}")
    what = "grpo keys (the fields of trl.GRPOConfig)" if SCHEMA[section] == "trl.GRPOConfig" else f"{section} keys"
    out = {}
    for key, item in value.items():
        name = f"{section}.{key}"
        if key not in keys:
            raise _unknown(where(name), str(key), list(keys), what)
        if name == "data.task_args" and not isinstance(item, str):
            out[key] = item  # typed from the task's factory once the task is known (`_task_args`)
        else:
            out[key] = _convert(item, keys[key], where(name))
    return out


def _convert(value: Any, hint: Any, where: str) -> Any:
    try:
        return convert(value, hint, where, untyped=_read_yaml)
    except ArgumentError as e:
        raise RecipeError(str(e)) from None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, recursively for nested dicts (lists and scalars replace)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The file merged onto its `extends` chain, checked file by file; and which file set each data.task_args key."""
    if path in seen:
        raise RecipeError(f"{path}: 'extends' loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: malformed YAML: {e}") from e
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got {type(data).__name__}")
    data = _check(data, lambda key: f"{path}: {key}")  # each file of the chain, so the error names it
    sources = dict.fromkeys(_task_keys(data), str(path))
    parent = data.pop("extends", None)
    if parent:
        inherited, inherited_sources = _read(_path(str(parent)), (*seen, path))
        data, sources = deep_merge(inherited, data), {**inherited_sources, **sources}
    return data, sources


def _task_keys(data: dict[str, Any]) -> list[str]:
    """The data.task and data.task_args.* keys `data` sets (to say where a bad one came from)."""
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    task_args = section.get("task_args")
    keys = ["data.task"] if "task" in section else []
    return keys + [f"data.task_args.{k}" for k in (task_args if isinstance(task_args, dict) else {})]


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`key.sub=value` strings -> a nested dict, checked against the schema and typed by it."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, raw = split_assignment(item, "--set", RecipeError)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"--set {item!r}: {key} sets a key inside a value set by another --set")
        node[parts[-1]] = raw
    return _check(out, lambda key: f"--set {key}")


def _task_args(recipe: dict[str, Any], sources: dict[str, str], default_source: str) -> None:
    """data.task_args typed from the task factory's signature, as `-T` values are; unknown keys refused."""
    from adbench import registry

    data = recipe.get("data") or {}
    args = data.get("task_args") or {}
    if not isinstance(args, dict):
        raise RecipeError(f"data.task_args: expected a mapping of task arguments, got {args!r}")
    if "task" not in data:
        return  # `validate` reports it

    def where(key: str) -> str:
        source = sources.get(key, default_source)
        return f"--set {key}" if source == "--set" else f"{source}: {key}"

    if data["task"] not in registry.tasks():
        raise RecipeError(f"{where('data.task')}: unknown task {data['task']!r}; valid tasks: "
                          f"{', '.join(registry.tasks())}")
    try:
        data["task_args"] = registry.convert_arguments("tasks", data["task"], args,
                                                       lambda key: where(f"data.task_args.{key}"))
    except registry.RegistryError as e:  # keys the task does not take
        origins = sorted({sources.get(f"data.task_args.{k}", default_source) for k in args})
        label = "--set data.task_args" if "--set" in origins else f"{origins[0]}: data.task_args"
        raise RecipeError(f"{label}: {e}") from None
    except ArgumentError as e:
        raise RecipeError(str(e)) from None


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """The resolved recipe: file (with its `extends` chain), then `--set` overrides, checked and typed."""
    path = _path(name_or_path)
    base, sources = _read(path)
    over = parse_set(overrides)
    sources.update(dict.fromkeys(_task_keys(over), "--set"))
    recipe = deep_merge(base, over)
    recipe["name"] = path.stem
    _task_args(recipe, sources, str(path))
    validate(recipe, str(path))
    return recipe


def validate(recipe: dict[str, Any], source: str) -> None:
    """What the schema's types cannot say: required sections and keys, and r_cls among the rewards."""
    missing = [k for k in REQUIRED if recipe.get(k) is None]
    missing += [f"{s}.{k}" for s, keys in REQUIRED_KEYS.items() for k in keys
                if isinstance(recipe.get(s), dict) and recipe[s].get(k) is None]
    if missing:
        raise RecipeError(f"{source}: missing key(s) {', '.join(missing)}")
    comps = recipe["rewards"]["components"]
    if "cls" not in comps:
        raise RecipeError(f"{source}: rewards.components must include 'cls' (and only use "
                          f"{', '.join(REWARD_COMPONENTS)}); got {comps}")
