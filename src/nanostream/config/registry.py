"""The class registry: how a name in a configuration becomes a node class or constructor.

A ``class:`` entry is resolved in this order:

1. ``module:Name`` or ``package.module.Name``: the module is imported and the name looked up
   in it (``module:Outer.Inner`` works too). This is the only way a configuration imports
   code, and it names that code explicitly.
2. A bare ``Name``: a composite made by :func:`~nanostream.class_factory` (or anything
   given to :func:`register`) of that name; otherwise the ``NanoNode`` subclass of that
   name, among all the subclasses defined so far (the built-in nodes of
   ``nanostream.nodes`` are imported when a name is not found). Two classes of the same
   name make it ambiguous: write the full path then.

Nothing else runs: names are looked up, never evaluated.
"""

from __future__ import annotations

import gc
import importlib
import pkgutil
import threading
from typing import Any, TypeVar

from .._core.errors import ConfigError
from .._core.node import NanoNode
from ._common import close_matches, describe_target

__all__ = ["known_names", "register", "resolve", "unregister"]

T = TypeVar("T")

_registered: dict[str, Any] = {}
_lock = threading.Lock()
_builtin_import_failures: dict[str, str] = {}
_builtins_imported = False


def register(obj: T, name: str | None = None) -> T:
    """Make ``obj`` (a node class or node constructor) resolvable by ``name`` in configs.

    ``name`` defaults to ``obj.__name__``. A registered name wins over a ``NanoNode``
    subclass of the same name; registering a name again replaces it. Usable as a
    decorator. :func:`~nanostream.class_factory` registers the composites it makes.

    Example:
        >>> from nanostream.config import register, resolve, unregister
        >>> def add(amount):                 # a node constructor
        ...     def add_impl(inp, outp):
        ...         for x in inp:
        ...             outp(x + amount)
        ...     return add_impl
        >>> _ = register(add, "add_amount")
        >>> resolve("add_amount") is add
        True
        >>> unregister("add_amount")
    """
    key = name if name is not None else getattr(obj, "__name__", None)
    if not isinstance(key, str) or not key:
        raise ConfigError(f"register(): give a name for {obj!r}")
    if not callable(obj):
        raise ConfigError(f"register(): {obj!r} is not a class or a node constructor")
    with _lock:
        _registered[key] = obj
    return obj


def unregister(name: str) -> None:
    """Forget a name given to :func:`register` (no error if it is unknown).

    Example:
        >>> from nanostream.config import unregister
        >>> unregister("never-registered")
    """
    with _lock:
        _registered.pop(name, None)


def _node_classes() -> list[type[NanoNode]]:
    """Every NanoNode subclass alive now, except class_factory products (registered)."""
    from .factory import ConfiguredComposite

    seen: dict[int, type[NanoNode]] = {}
    stack: list[type[NanoNode]] = list(NanoNode.__subclasses__())
    while stack:
        cls = stack.pop()
        if id(cls) in seen or issubclass(cls, ConfiguredComposite):
            continue
        seen[id(cls)] = cls
        stack.extend(cls.__subclasses__())
    return list(seen.values())


def _import_builtin_nodes() -> None:
    """Import every module of ``nanostream.nodes`` once, so their classes are known."""
    global _builtins_imported
    if _builtins_imported:
        return
    _builtins_imported = True
    import nanostream.nodes as package

    for info in pkgutil.iter_modules(package.__path__):
        name = f"{package.__name__}.{info.name}"
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional dependency is missing
            _builtin_import_failures[name] = str(exc)


def known_names() -> list[str]:
    """The bare names a configuration can use now (registered names and node classes).

    Example:
        >>> from nanostream.config import known_names
        >>> "IterableSource" in known_names()
        True
    """
    _import_builtin_nodes()
    with _lock:
        names = set(_registered)
    names.update(cls.__name__ for cls in _node_classes())
    return sorted(names)


def _by_bare_name(name: str) -> list[Any]:
    with _lock:
        if name in _registered:
            return [_registered[name]]
    return [cls for cls in _node_classes() if cls.__name__ == name]


def resolve(ref: str, *, location: str | None = None) -> Any:
    """The class or node constructor that ``ref`` names (see the module's docstring).

    Raises :class:`~nanostream.ConfigError` (at ``location``) for an unknown or ambiguous
    name, listing close matches.

    Example:
        >>> import nanostream
        >>> from nanostream.config import resolve
        >>> resolve("nanostream:IterableSource") is nanostream.IterableSource
        True
        >>> resolve("nanostream.testing.Collect") is nanostream.testing.Collect
        True
        >>> try:
        ...     resolve("IterableSorce")
        ... except nanostream.ConfigError as exc:
        ...     print(str(exc).split(";")[0])
        unknown class 'IterableSorce' (did you mean 'IterableSource'?)
    """
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(
            f"a class name must be a non-empty string, got {ref!r}", location=location
        )
    ref = ref.strip()
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        return _from_module(ref, module_name, attr, location)
    if "." in ref:
        parts = ref.split(".")
        for i in range(len(parts) - 1, 0, -1):
            module_name = ".".join(parts[:i])
            try:
                importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                missing = exc.name or ""
                if module_name == missing or module_name.startswith(missing + "."):
                    continue  # that prefix is not a module: try a shorter one
                raise _import_error(ref, module_name, exc, location) from exc
            except Exception as exc:
                raise _import_error(ref, module_name, exc, location) from exc
            return _from_module(ref, module_name, ".".join(parts[i:]), location)
        raise ConfigError(
            f"cannot find {ref!r}: no prefix of it is an importable module; write "
            "'module:Class' (and add the module's directory to PYTHONPATH if needed)",
            location=location,
        )
    found = _by_bare_name(ref)
    if not found:
        _import_builtin_nodes()
        found = _by_bare_name(ref)
    if len(found) > 1:
        gc.collect()  # classes of finished scopes may linger until collected
        found = _by_bare_name(ref)
    if len(found) == 1:
        return found[0]
    if found:
        paths = sorted(describe_target(c) for c in found)
        raise ConfigError(
            f"ambiguous class name {ref!r}: it names {', '.join(paths)}; write the full "
            f"path instead, e.g. {paths[0]!r}",
            location=location,
        )
    hint = close_matches(ref, known_names())
    failures = ""
    if _builtin_import_failures:
        failures = " (built-in node modules not importable: " + "; ".join(
            f"{m}: {e}" for m, e in sorted(_builtin_import_failures.items())
        )
        failures += ")"
    raise ConfigError(
        f"unknown class {ref!r}{hint}; a bare name must be a NanoNode subclass that is "
        "imported (list its module under 'imports:') or a composite made by class_factory; "
        f"or write the full path 'module:Class'{failures}",
        location=location,
    )


def _import_error(
    ref: str, module_name: str, exc: BaseException, location: str | None
) -> ConfigError:
    return ConfigError(
        f"cannot import module {module_name!r} for {ref!r}: {type(exc).__name__}: {exc}",
        location=location,
    )


def _from_module(ref: str, module_name: str, attr: str, location: str | None) -> Any:
    if not module_name or not attr:
        raise ConfigError(
            f"{ref!r} is not a valid path; write 'module:Name' (e.g. 'mypackage.nodes:Parser')",
            location=location,
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise _import_error(ref, module_name, exc, location) from exc
    where = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ConfigError(
                f"{where!r} has no attribute {part!r}{close_matches(part, public)}",
                location=location,
            )
        obj = getattr(obj, part)
        where = f"{where}.{part}"
    return obj
