"""Training recipes: YAML files in `adbench/training/recipes/`, with `extends` and `--set`.

A recipe names the base model, the training samples (a registered task and its
arguments, normally `-T split=train`), the response protocol, the reward components,
LoRA and the `trl.GRPOConfig` settings. A recipe may `extends:` another one and
override any nested key; `--set grpo.beta=0.1` overrides a key from the command line
(values read as YAML: numbers, booleans, lists).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
REWARD_COMPONENTS = ("format", "cls", "loc", "count", "random")
REQUIRED = ("base", "data", "protocol", "rewards", "lora", "grpo")


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the recipe file and key."""


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


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, recursively for nested dicts (lists and scalars replace)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise RecipeError(f"{path}: 'extends' loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: malformed YAML: {e}") from e
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent:
        data = deep_merge(_read(_path(str(parent)), (*seen, path)), data)
    return data


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`key.sub=value` strings -> a nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: expected key=value (e.g. grpo.beta=0.1)")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else raw
    return out


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """The resolved recipe: file (with its `extends` chain), then `--set` overrides, validated."""
    path = _path(name_or_path)
    recipe = deep_merge(_read(path), parse_set(overrides))
    recipe["name"] = path.stem
    validate(recipe, str(path))
    return recipe


def validate(recipe: dict[str, Any], source: str) -> None:
    missing = [k for k in REQUIRED if k not in recipe]
    if missing:
        raise RecipeError(f"{source}: missing key(s) {', '.join(missing)}")
    comps = recipe["rewards"].get("components") or []
    bad = [c for c in comps if c not in REWARD_COMPONENTS]
    if bad or "cls" not in comps:
        raise RecipeError(f"{source}: rewards.components must include 'cls' and only use "
                          f"{', '.join(REWARD_COMPONENTS)}; got {comps}")
    if recipe["protocol"].get("stages") not in ("multi", "one"):
        raise RecipeError(f"{source}: protocol.stages must be 'multi' or 'one'")
    if recipe["rewards"].get("variant", "paper") not in ("paper", "released"):
        raise RecipeError(f"{source}: rewards.variant must be 'paper' or 'released'")
    if recipe["lora"].get("target", "language") not in ("language", "all-linear"):
        raise RecipeError(f"{source}: lora.target must be 'language' (vision frozen) or 'all-linear'")
