"""One reading of user-given values: `-M` / `-T key=value` and recipe values and `--set` overrides.

A value is typed from what receives it: the adapter's or task's factory signature
(`typing.get_type_hints`, so `from __future__ import annotations` is fine), a
`trl.GRPOConfig` field, or the recipe schema. What does not convert is an
`ArgumentError` naming the flag and key, raised before anything is built.

Rules (`convert`), for text as the command line gives it and for values already typed
(YAML, JSON, Python callers), so converting twice changes nothing:

- bool: true/false, yes/no, on/off, 1/0 (any case), or a boolean; nothing else.
- int: an integer literal (`3`, `-2`); not `1.7`, `1.5`, `x`, nor a boolean.
- float: any finite number; integers are accepted.
- str and paths: kept as text (a number given by YAML or JSON becomes its text).
- `Literal[...]`: one of the choices; `Enum`: a member's value or name.
- `X | None`: `null` (any case) is None; `none` too, unless the type also takes text.
- `A | B`: the first member that takes the value, choices and numbers before text (so
  `Literal[...] | float` reads `0.5` as a number); where text is also accepted, text
  becomes a list or mapping only when it starts with `[` or `{`.
- list / Sequence / tuple / set: a JSON or YAML list (`[a, b]`), or comma-separated
  text (`a,b`); every item converted to the item type.
- dict / Mapping: a JSON or YAML mapping (`{"a": 1}`).
- no annotation, `Any`, or a type not listed here: text is read as JSON when it parses,
  else kept as text (the reading before types were checked); typed values pass.
"""

from __future__ import annotations

import collections.abc as cabc
import difflib
import enum
import functools
import inspect
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Literal, Union

from adbench.errors import UserError

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
NULL_WORDS = ("null", "none")
_INT = re.compile(r"[+-]?\d+")
#: The hint of a parameter without an annotation.
UNTYPED: Any = inspect.Parameter.empty
_SEQUENCES = (list, tuple, set, frozenset, cabc.Sequence, cabc.MutableSequence, cabc.Set, cabc.MutableSet,
              cabc.Collection, cabc.Iterable)
_MAPPINGS = (dict, cabc.Mapping, cabc.MutableMapping)


class ArgumentError(UserError):
    """A -M / -T / --set value (or recipe value) that is not of the type its receiver declares."""

    def __init__(self, message: str, where: str = "", expected: str = "") -> None:
        super().__init__(message)
        self.where, self.expected = where, expected


def _fail(where: str, expected: str, value: Any) -> ArgumentError:
    return ArgumentError(f"{where}: expected {expected}, got {value!r}", where, expected)


def read_untyped(text: str) -> Any:
    """A value with no declared type: JSON when it parses (1, 0.5, true, [1, 2]), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _read_structure(text: str) -> Any:
    """`[...]` / `{...}` text as JSON, else as YAML flow syntax (`[a, b]`, `{split: train}`)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    import yaml  # a core dependency; imported here so that `import adbench.args` stays light

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_bool(value: Any, where: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case) or a boolean; anything else is an ArgumentError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise _fail(where, "true or false", value)


def _int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip())
    raise _fail(where, "an integer", value)


def _float(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _fail(where, "a number", value) from None
    else:
        raise _fail(where, "a number", value)
    if not math.isfinite(number):
        raise _fail(where, "a number", value)
    return number


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, PurePath) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return str(value)
    raise _fail(where, "text", value)


def _literal(value: Any, choices: tuple[Any, ...], where: str) -> Any:
    for choice in choices:
        if value == choice and type(value) is type(choice):
            return choice
        if isinstance(value, str) and not isinstance(choice, str):  # Literal[0, 1] given as text
            try:
                if convert(value, type(choice), where) == choice:
                    return choice
            except ArgumentError:
                pass
    raise _fail(where, f"one of {', '.join(map(str, choices))}", value)


def _enum(value: Any, hint: type[enum.Enum], where: str) -> Any:
    if isinstance(value, hint):
        return value.value
    for member in hint:
        if value in (member.value, member.name):
            return member.value
    raise _fail(where, f"one of {', '.join(str(m.value) for m in hint)}", value)


def _sequence(value: Any, item: Any, where: str) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        parsed = _read_structure(text) if text.startswith("[") else None
        if isinstance(parsed, list):  # JSON / YAML items as written: a stop string may be white space
            value = parsed
        else:  # comma-separated text, or `[a, b` that does not parse: its items by commas, trimmed
            body = text.strip("[]") if text.startswith("[") else text
            value = [v.strip().strip("'\"") for v in body.split(",")] if body else []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, cabc.Mapping):
        raise _fail(where, "a list", value)
    return [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]


def _mapping(value: Any, key: Any, item: Any, where: str) -> dict[Any, Any]:
    if isinstance(value, str) and value.strip().startswith("{"):
        value = _read_structure(value.strip())
    if not isinstance(value, cabc.Mapping):
        raise _fail(where, "a mapping such as {\"key\": 1}", value)
    return {convert(k, key, f"{where} key"): convert(v, item, f"{where}.{k}") for k, v in value.items()}


def _union(value: Any, members: tuple[Any, ...], where: str) -> Any:
    takes_text = any(_is_text(m) for m in members)
    if type(None) in members and (value is None or (
            isinstance(value, str) and value.strip().lower() in (("null",) if takes_text else NULL_WORDS))):
        return None
    expected: list[str] = []
    deeper: list[ArgumentError] = []
    for member in sorted((m for m in members if m is not type(None)), key=_union_order):
        if isinstance(value, str) and not value.strip().startswith(("[", "{")) and takes_text \
                and (_is_sequence(member) or _is_mapping(member)):
            continue  # plain text goes to the text member, not into a one-item list
        try:
            return convert(value, member, where)
        except ArgumentError as e:
            if e.where != where:  # an item of a list or mapping: that message is the precise one
                deeper.append(e)
            expected.append(e.expected)
    if deeper:
        raise deeper[0]
    if type(None) in members:
        expected.append("null")
    raise _fail(where, _join(expected), value)


def _join(parts: list[str]) -> str:
    """'one of a, b or a number': the expectations of a union's members."""
    parts = list(dict.fromkeys(parts))
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"


def _is_text(hint: Any) -> bool:
    return hint is str or hint is UNTYPED or hint is Any or (isinstance(hint, type) and issubclass(hint, PurePath))


def _is_sequence(hint: Any) -> bool:
    return (typing.get_origin(hint) or hint) in _SEQUENCES


def _is_mapping(hint: Any) -> bool:
    return (typing.get_origin(hint) or hint) in _MAPPINGS


def _union_order(hint: Any) -> int:
    """Choices first, then booleans and numbers, then containers, then text: `str | float` reads '0.5' as 0.5."""
    if typing.get_origin(hint) is Literal or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return 0
    if hint in (bool, int, float):
        return (bool, int, float).index(hint) + 1
    if _is_sequence(hint) or _is_mapping(hint):
        return 4
    return 6 if hint is UNTYPED or hint is Any else 5


def convert(value: Any, hint: Any, where: str, untyped: Callable[[str], Any] = read_untyped) -> Any:
    """`value` as the type `hint` declares (rules: module docstring); `where` names it in errors ("-M seed").

    `untyped` reads text whose type is not declared (JSON-else-text for -M/-T; the recipe's YAML for --set).
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        return _union(value, args, where)
    if origin is Literal:
        return _literal(value, args, where)
    if hint is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in NULL_WORDS):
            return None
        raise _fail(where, "null", value)
    if hint is bool:
        return parse_bool(value, where)
    if hint is int:
        return _int(value, where)
    if hint is float:
        return _float(value, where)
    if hint is str or (isinstance(hint, type) and issubclass(hint, PurePath)):
        return _text(value, where)  # a path stays text: JSON-safe in run configs; the receiver resolves it
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(value, hint, where)
    if _is_sequence(hint):  # list[X], Sequence[X], tuple[X, ...]: items of type X
        return _sequence(value, args[0] if args else UNTYPED, where)
    if _is_mapping(hint):
        key, item = args if len(args) == 2 else (UNTYPED, UNTYPED)
        return _mapping(value, key, item, where)
    return untyped(value) if isinstance(value, str) else value  # Any, no annotation, or a type we cannot check


# -- signatures -----------------------------------------------------------------------------------------


def _annotations(func: Callable[..., Any]) -> dict[str, Any]:
    """Resolved parameter annotations; one that cannot be resolved counts as untyped (not an error)."""
    try:
        return typing.get_type_hints(func)
    except Exception:  # a name only imported under TYPE_CHECKING, a bad string: resolve one by one
        hints: dict[str, Any] = {}
        namespace = getattr(func, "__globals__", {})
        for name, annotation in getattr(func, "__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
            except Exception:
                hints[name] = UNTYPED
        return hints


@dataclass(frozen=True)
class Parameter:
    """One keyword argument a factory takes: its name, type hint and default
    (`inspect.Parameter.empty` when it has none)."""

    name: str
    hint: Any = UNTYPED
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def _own_parameters(func: Callable[..., Any]) -> tuple[dict[str, Parameter], bool]:
    """(name -> Parameter of each keyword parameter, whether it also takes **kwargs); private names left out."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return {}, True
    hints = _annotations(func)
    out: dict[str, Parameter] = {}
    open_ = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            open_ = True
        elif p.kind not in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) and p.name != "self" and not p.name.startswith("_"):
            out[p.name] = Parameter(p.name, hints.get(p.name, UNTYPED), p.default)
    return out, open_


@functools.cache
def parameters(target: Callable[..., Any], forwards: tuple[Callable[..., Any], ...] = ()) -> tuple[
        dict[str, Parameter], bool]:
    """The keyword arguments a call of `target` takes (hint and default each), and whether it takes others too.

    A class: the `__init__` parameters of every class in its MRO (subclasses hand **kwargs up);
    it takes other keys when the base-most `__init__` takes **kwargs.
    A function (or such a class) with **kwargs: also the parameters of `forwards` (the callables
    it hands them to); without `forwards`, it takes any key (`open` is True).
    """
    if inspect.isclass(target):
        params: dict[str, Parameter] = {}
        open_ = False
        for klass in target.__mro__:
            init = klass.__dict__.get("__init__")
            if init is not None and klass is not object:
                own, open_ = _own_parameters(init)  # the last one decides: does the base take **kwargs?
                for name, param in own.items():
                    params.setdefault(name, param)  # the subclass's hint and default win
    else:
        params, open_ = _own_parameters(target)
    if open_ and forwards:
        for other in forwards:
            for name, param in parameters(other)[0].items():
                params.setdefault(name, param)
        open_ = False
    return params, open_


def parameter_hints(target: Callable[..., Any], forwards: tuple[Callable[..., Any], ...] = ()) -> tuple[
        dict[str, Any], bool]:
    """`parameters`, as name -> type hint."""
    params, open_ = parameters(target, forwards)
    return {name: p.hint for name, p in params.items()}, open_


def type_text(hint: Any) -> str:
    """A type hint as `adbench list -v` prints it: `bool`, `int | None`, `one of eval, train, all`, `list[str]`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is UNTYPED or hint is Any:
        return "any"  # read as JSON where it parses, else as text
    if hint is Ellipsis:
        return "..."
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_text(a) for a in args)
    if origin is Literal:
        return f"one of {', '.join(map(str, args))}"
    if hint is type(None):
        return "null"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return f"one of {', '.join(str(m.value) for m in hint)}"
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return "path"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(a) for a in args)}]" if args else name
    return getattr(hint, "__name__", str(hint))


def unknown_key_message(where: str, key: str, valid: Iterable[str], what: str) -> str:
    """`where: unknown key KEY; did you mean K?; valid WHAT: ...` (the closest valid key, by difflib)."""
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{where}: unknown key {key}{hint}; valid {what}: {', '.join(valid)}"


def convert_all(values: dict[str, Any], hints: dict[str, Any], label: Callable[[str], str],
                untyped: Callable[[str], Any] = read_untyped) -> dict[str, Any]:
    """Every value converted by its key's hint (keys without one: `untyped`); `label(key)` names it in errors."""
    return {k: convert(v, hints.get(k, UNTYPED), label(k), untyped) for k, v in values.items()}


def split_assignment(item: str, flag: str, error: type[UserError] = ArgumentError) -> tuple[str, str]:
    """`key=value` -> (key, raw value); dashes in the key become underscores (`max-pixels` = `max_pixels`)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise error(f"{flag} {item!r}: expected key=value")
    return key.strip().replace("-", "_"), raw
