"""Config values checked against the annotations of what they build, before anything is built.

Hydra hands a constructor whatever a command line typed: ``loss.lam=abc`` reaches the loss as the
string ``'abc'`` and fails at the first training step, deep inside torch. Every gipc constructor
already says what it takes in its annotations; :func:`check_node` reads them and refuses a value of
the wrong kind in one line that names the key (``loss.lam must be a number, got 'abc'``; a
``Literal``'s choices by name). Ranges stay with each constructor, which knows them, and so does
any annotation that is not a plain value (a class, a callable).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from hydra.utils import get_object

from gipc.errors import ConfigError

PACKAGE = "gipc."
"""Targets whose annotations are read: gipc's own (Lightning's and W&B's check their arguments themselves)."""


def fits(value: Any, hint: Any) -> bool:
    """Whether ``value``, as YAML or a command line gives it (lists for tuples), is of the kind ``hint`` names."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not _is_list(value):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(fits(item, args[0]) for item in value)
        return len(value) == len(args) and all(fits(item, arg) for item, arg in zip(value, args))
    if origin in (list, Sequence):
        return _is_list(value) and (not args or all(fits(item, args[0]) for item in value))
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    return True  # a class, a callable: the constructor checks it


def _is_list(value: Any) -> bool:
    """A list as YAML gives it: a Python list or tuple, or OmegaConf's ListConfig inside a constructor."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def describe(hint: Any) -> str:
    """``hint`` in words, as :func:`fits` reads it (``a number``, ``an integer or null``, ``true, false or null``)."""
    words = _alternatives(hint)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _alternatives(hint: Any) -> list[str]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return [word for arg in args if arg is not type(None) for word in _alternatives(arg)] + (["null"] if type(None) in args else [])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return [f"a list of {_plural(args[0])}"]
        same = all(arg == args[0] for arg in args)
        return [f"a list of {len(args)} {_plural(args[0])}" if same else f"a list ({'; '.join(describe(arg) for arg in args)})"]
    if origin in (list, Sequence):
        return [f"a list of {_plural(args[0])}" if args else "a list"]
    if origin in (dict, Mapping):
        return ["a mapping"]
    if origin is typing.Literal:
        return [str(arg) for arg in args]
    if hint is bool:
        return ["true", "false"]
    return [{int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))]


def _plural(hint: Any) -> str:
    return {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}.get(hint, describe(hint))


@functools.cache
def hints(target: Callable[..., Any]) -> Mapping[str, Any]:
    """The annotations of ``target``'s parameters: a dataclass's fields, a function's, or a class's
    ``__init__`` and those of the classes it extends (whose arguments it passes on, such as
    Lightning's ``ModelCheckpoint``'s), the nearest first. Annotations that cannot be read are left out.
    Read once per target (``typing.get_type_hints`` evaluates every annotation: 0.1 ms for the map's)."""
    if dataclasses.is_dataclass(target):
        return typing.get_type_hints(target)
    functions = [c.__dict__["__init__"] for c in inspect.getmro(target) if "__init__" in c.__dict__] if inspect.isclass(target) else [target]
    found: dict[str, Any] = {}
    for function in functions:
        try:
            read = typing.get_type_hints(function)
        except (NameError, TypeError):  # a name another package imports for type checkers only
            continue
        for name, hint in read.items():
            found.setdefault(name, hint)
    found.pop("return", None)
    return found


def check_values(annotated: Mapping[str, Any], values: Mapping[str, Any], prefix: str) -> None:
    """Each of ``values`` against its annotation in ``annotated`` (:func:`hints`), named ``<prefix><name>``
    when refused; a name without one is left to the code that takes it (Hydra's ``_target_``, a misspelt key)."""
    for name, value in values.items():
        if name in annotated and not fits(value, annotated[name]):
            raise ConfigError(f"{prefix}{name} must be {describe(annotated[name])}, got {value!r}")


def check_node(node: Mapping[str, Any], key: str) -> None:
    """A Hydra node (resolved to plain values) and every node it nests: each value that a gipc
    ``_target_`` takes, against that target's annotations. ``key`` names the node (``data``,
    ``callbacks.test_report``), as the messages name its keys."""
    for name, value in node.items():
        if isinstance(value, Mapping) and "_target_" in value:
            check_node(value, f"{key}.{name}")
    target = node.get("_target_")
    if not (isinstance(target, str) and target.startswith(PACKAGE)):
        return
    try:
        built = get_object(target)
    except ImportError:  # a misspelt target: instantiating it says so
        return
    check_values(hints(built), {k: v for k, v in node.items() if not k.startswith("_")}, f"{key}.")
