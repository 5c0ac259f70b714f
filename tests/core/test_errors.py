"""Every public exception is in one tree under NanoStreamError, drawn in its docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import nanostream
from nanostream import NanoStreamError


def _public_exceptions() -> dict[str, type[BaseException]]:
    """Each exception class a nanostream module lists in its ``__all__``, by name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(nanostream.__path__, "nanostream."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # a module of an optional dependency that is not installed
            continue
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name, None)
            if inspect.isclass(value) and issubclass(value, BaseException):
                assert found.setdefault(name, value) is value, f"two exceptions named {name}"
    return found


def _drawn_tree() -> dict[str, str | None]:
    """Each class drawn in NanoStreamError's docstring, with the class it hangs from."""
    doc = inspect.getdoc(NanoStreamError) or ""
    parents: dict[str, str | None] = {"NanoStreamError": None}
    stack = ["NanoStreamError"]
    root = next(line for line in doc.splitlines() if line.strip() == "NanoStreamError")
    indent = len(root) - len(root.lstrip())
    for line in doc.splitlines():
        match = re.match(r"^([│ ]*)[├└]── (\w+)", line)
        if match is None:
            continue
        depth = (len(match.group(1)) - indent) // 4 + 1
        del stack[depth:]
        parents[match.group(2)] = stack[-1]
        stack.append(match.group(2))
    return parents


def test_every_public_exception_is_a_nanostream_error_or_one_of_the_two_signals() -> None:
    exceptions = _public_exceptions()
    signals = {nanostream.SourceStopped, nanostream.RunAborted}
    outside = [
        name
        for name, cls in exceptions.items()
        if not issubclass(cls, NanoStreamError) and cls not in signals
    ]
    assert outside == []
    assert not any(issubclass(cls, Exception) for cls in signals)  # not caught as errors


def test_the_base_docstring_draws_the_whole_tree_as_it_is() -> None:
    drawn = _drawn_tree()
    errors = {
        name: cls for name, cls in _public_exceptions().items() if issubclass(cls, NanoStreamError)
    }
    assert sorted(drawn) == sorted(errors)
    for name, cls in errors.items():
        bases = [b.__name__ for b in cls.__bases__ if issubclass(b, NanoStreamError)]
        assert drawn[name] == (bases[0] if bases else None), name
