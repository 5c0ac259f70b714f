"""Typed arguments: text from ``${NAME}`` and ``--set`` converted by parameter annotations.

A value that came as text is converted to the type its parameter is annotated with, when
that annotation is ``int``, ``float``, ``bool``, ``str``, ``None`` or a union of them; every
argument with such an annotation is then type-checked, so that a check of a configuration
reports a mistyped one where it was written. A union that also admits other types
(``float | timedelta``) converts the text by the members it can (``"60"`` is ``60.0``) and
leaves it alone when none fits, for the node's own check; a parameter without an annotation
(or annotated ``Any``) gets the text typed as YAML types a plain value (``"5"`` is ``5``).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from ._common import Problems, typed_scalar

__all__ = [
    "admits",
    "annotations_of",
    "as_text",
    "convert_arguments",
    "convert_set_arguments",
    "from_text",
    "simple_members",
    "simple_types",
]

_SIMPLE_TYPES: tuple[type, ...] = (bool, int, float, str, type(None))


def simple_types(annotation: Any) -> tuple[type, ...] | None:
    """The types an annotation of ``int``, ``float``, ``bool``, ``str``, ``None`` and unions
    of them (``Optional[int]``, ``int | str``) admits; ``None`` for any other annotation.

    Example:
        >>> from typing import Optional
        >>> from nanostream.config._convert import simple_types
        >>> simple_types(int), simple_types(Optional[float]), simple_types(list[int])
        ((<class 'int'>,), (<class 'float'>, <class 'NoneType'>), None)
    """
    if annotation is None:
        return (type(None),)
    if annotation in _SIMPLE_TYPES:
        return (annotation,)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found: list[type] = []
        for part in typing.get_args(annotation):
            admitted = simple_types(part)
            if admitted is None:
                return None
            found.extend(admitted)
        return tuple(found)
    return None


def simple_members(annotation: Any) -> tuple[type, ...]:
    """The ``int``, ``float``, ``bool``, ``str`` and ``None`` an annotation admits, whatever
    else it admits too (``()`` if none): what a text can be converted to for it.

    Example:
        >>> from datetime import timedelta
        >>> from pathlib import Path
        >>> from nanostream.config._convert import simple_members
        >>> simple_members(float | timedelta), simple_members(Path | None), simple_members(Path)
        ((<class 'float'>,), (<class 'NoneType'>,), ())
    """
    if annotation is None or annotation in _SIMPLE_TYPES:
        return simple_types(annotation) or ()
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(t for part in typing.get_args(annotation) for t in simple_members(part))
    return ()


def admits(admitted: tuple[type, ...], value: Any) -> bool:
    """Whether ``value`` is of one of the ``admitted`` types (an int is a float too)."""
    if isinstance(value, bool):
        return bool in admitted
    if isinstance(value, int):
        return int in admitted or float in admitted
    if isinstance(value, (float, str)) or value is None:
        return type(value) in admitted
    return False


def type_name(admitted: tuple[type, ...]) -> str:
    """``int``, ``float or None``, ... for messages."""
    return " or ".join("None" if t is type(None) else t.__name__ for t in admitted)


def from_text(text: str, admitted: tuple[type, ...]) -> Any:
    """``text`` (from the environment or ``--set``) as a value of one of ``admitted``.

    It is typed as YAML types a plain value (``5000``, ``2.5``, ``true``, ``null``) when
    that type is admitted, else kept as the string if ``str`` is; raises ``ValueError``
    otherwise.

    Example:
        >>> from nanostream.config._convert import from_text
        >>> from_text("5000", (int,)), from_text("5000", (str,)), from_text("5", (float,))
        (5000, '5000', 5.0)
        >>> from_text("false", (bool, type(None))), from_text("", (int, type(None)))
        (False, None)
    """
    typed = typed_scalar(text)
    if admits(admitted, typed):
        if type(typed) is int and int not in admitted:
            return float(typed)
        return typed
    if str in admitted:
        return text
    raise ValueError(text)


def annotations_of(target: Any) -> dict[str, Any]:
    """The parameter annotations of a class's constructor or a function (``{}`` if unknown).

    A class that gives its own ``__signature__`` (a composite made by ``class_factory``)
    is described by it.
    """
    signature = vars(target).get("__signature__") if isinstance(target, type) else None
    if isinstance(signature, inspect.Signature):
        return {
            p.name: p.annotation
            for p in signature.parameters.values()
            if p.annotation is not p.empty
        }
    function = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve is not checked
        return {}
    hints.pop("return", None)
    return hints


def convert_arguments(
    target: Any, args: Mapping[str, Any], texts: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``args`` converted by ``target``'s annotations, and what is wrong with the others.

    ``texts`` holds the text of the arguments that came as text (``${NAME}`` substitution,
    ``--set``). Each is converted by its parameter's annotation:

    - a simple one (see :func:`simple_types`) converts it with :func:`from_text`; any
      argument with a simple annotation must then have a value of that type, otherwise its
      name maps to a message;
    - a union that admits other types as well (``float | timedelta``) converts it by its
      simple members (:func:`simple_members`) when one fits, and otherwise leaves the value
      as it is for the node's own check;
    - no annotation (or ``Any``) types it as YAML types a plain value (``"5"`` is ``5``),
      whether the ``${NAME}`` was quoted or not;
    - any other annotation (``Path``, ``list[str]``) leaves the value as it is.

    Example:
        >>> from datetime import timedelta
        >>> from nanostream.config._convert import convert_arguments
        >>> def make(count: int, label: str = "", ratio: float | None = None): ...
        >>> convert_arguments(make, {"count": "50", "label": 7, "ratio": 1}, {"count": "50"})
        ({'count': 50, 'label': 7, 'ratio': 1}, {'label': 'expects str, got 7 (int)'})
        >>> def window(size: float | timedelta, name=None): ...
        >>> convert_arguments(window, {"size": "60", "name": "5"}, {"size": "60", "name": "5"})
        ({'size': 60.0, 'name': 5}, {})
        >>> convert_arguments(window, {"size": "1m"}, {"size": "1m"})
        ({'size': '1m'}, {})
    """
    hints = annotations_of(target)
    converted = dict(args)
    problems: dict[str, str] = {}
    for name, value in args.items():
        hint = hints.get(name, Any)
        if hint is Any:
            if name in texts:
                converted[name] = typed_scalar(texts[name])
            continue
        admitted = simple_types(hint)
        if admitted is None:
            members = simple_members(hint)
            if members and name in texts:
                try:
                    converted[name] = from_text(texts[name], members)
                except ValueError:
                    pass  # another member of the union may take it: the node checks it
            continue
        if name in texts:
            try:
                converted[name] = from_text(texts[name], admitted)
            except ValueError:
                problems[name] = (
                    f"expects {type_name(admitted)}, got {texts[name]!r}, which is not one"
                )
        elif not admits(admitted, value):
            problems[name] = (
                f"expects {type_name(admitted)}, got {value!r} ({type(value).__name__})"
            )
    return converted, problems


def convert_set_arguments(target: Any, given: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``given`` (``--set NAME=VALUE`` arguments for ``target``) converted by annotation.

    Each scalar value is taken as the text it was given as; raises
    :class:`ConfigError` (at ``--set NAME``) for one that does not convert. ``what`` names
    the node in the message.

    Example:
        >>> from nanostream.config._convert import convert_set_arguments
        >>> def make(count: int, label: str = ""): ...
        >>> convert_set_arguments(make, {"count": "3", "label": 42}, "composite 'C'")
        {'count': 3, 'label': '42'}
    """
    texts = {k: t for k, v in given.items() if (t := as_text(v)) is not None}
    converted, mistyped = convert_arguments(target, given, texts)
    problems = Problems()
    for name, problem in mistyped.items():
        problems.add(
            f"{what}: argument {name!r} {problem} (from --set); give a value of that type",
            f"--set {name}",
        )
    problems.raise_if_any()
    return converted


def as_text(value: Any) -> str | None:
    """The text a scalar ``value`` is written as in YAML (``None`` for a list or mapping).

    Example:
        >>> from nanostream.config._convert import as_text
        >>> as_text(True), as_text(None), as_text(12), as_text([1])
        ('true', 'null', '12', None)
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float, str)):
        return str(value)
    return None
