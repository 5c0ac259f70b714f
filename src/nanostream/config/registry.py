"""The class registry: how a name in a configuration becomes a node class or constructor.

A ``class:`` (or ``function:``) entry is resolved in this order:

1. ``module:Name`` or ``package.module.Name``: the name is looked up in the module
   (``module:Outer.Inner`` works too). A module is imported only if it is nanostream's,
   listed under the file's ``imports:`` (or inside a package listed there), or named by an
   installed package's ``nanostream.nodes`` entry point; a module imported already is used
   as it is. Any other module is refused: importing it would run its code.
2. A bare ``Name``: a composite made by :func:`~nanostream.class_factory` (or anything
   given to :func:`register`) of that name; otherwise the ``NanoNode`` subclass of that
   name, among all the subclasses defined so far (the built-in nodes of
   ``nanostream.nodes`` are imported when a name is not found). Two classes of the same
   name make it ambiguous: write the full path then.

What a name resolves to must then be *trusted* (see :func:`check_trusted`) before anything
is called: a ``NanoNode`` class, something given to :func:`register`, one of nanostream's
node constructors, a callable defined in a module of an entry point, or a callable of the
user's own code defined in a module of ``imports:`` (not of the standard library, not of an
installed third-party distribution). Anything else — ``os:system``, ``subprocess:Popen``,
``builtins:open``, ``yaml:unsafe_load`` — is refused without being called. Names are looked
up, never evaluated.
"""

from __future__ import annotations

import gc
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .._core.errors import ConfigError
from .._core.node import NanoNode
from . import _origin
from ._common import close_matches, describe_target

__all__ = [
    "ENTRY_POINT_GROUP",
    "Scope",
    "check_trusted",
    "known_names",
    "register",
    "resolve",
    "unregister",
]

T = TypeVar("T")

_registered: dict[str, Any] = {}
_lock = threading.Lock()
_builtin_import_failures: dict[str, str] = {}
_builtins_imported = False

ENTRY_POINT_GROUP = "nanostream.nodes"
"""The entry-point group through which an installed package declares its node modules."""


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


def resolve(
    ref: str,
    *,
    location: str | None = None,
    imports: Iterable[str] = (),
    code: Iterable[str] = (),
) -> Any:
    """The class or node constructor that ``ref`` names (see the module's docstring).

    ``imports`` are the modules the configuration declares (its ``imports:``): they may be
    imported, and their functions called if they are your own code; ``code`` are modules
    named by Python code (see :func:`check_trusted`). Raises :class:`~nanostream.ConfigError` (at
    ``location``) for an unknown or ambiguous name, listing close matches, for a module that
    is neither imported already nor declared, and for what is not trusted (see
    :func:`check_trusted`) — before calling anything.

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
        >>> try:
        ...     resolve("os:system", location="p.yaml:3:12")
        ... except nanostream.ConfigError as exc:
        ...     print(str(exc).split(":", 3)[3].split(";")[0])
         'os:system' names posix:system, which is not a node
    """
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(
            f"a class name must be a non-empty string, got {ref!r}", location=location
        )
    ref = ref.strip()
    declared = tuple(imports)
    trusted = tuple(code)
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        found = _from_module(ref, module_name, attr, (*declared, *trusted), location)
        check_trusted(found, ref, imports=declared, location=location, code=trusted)
        return found
    if "." in ref:
        parts = ref.split(".")
        refused: str | None = None
        for i in range(len(parts) - 1, 0, -1):
            module_name = ".".join(parts[:i])
            if not may_import(module_name, (*declared, *trusted)):
                if _may_exist(module_name):
                    refused = refused or module_name
                continue
            try:
                importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                missing = exc.name or ""
                if module_name == missing or module_name.startswith(missing + "."):
                    continue  # that prefix is not a module: try a shorter one
                raise _import_error(ref, module_name, exc, location) from exc
            except Exception as exc:
                raise _import_error(ref, module_name, exc, location) from exc
            found = _from_module(
                ref, module_name, ".".join(parts[i:]), (*declared, *trusted), location
            )
            check_trusted(found, ref, imports=declared, location=location, code=trusted)
            return found
        if refused is not None:
            raise _undeclared(ref, ".".join(parts[:-1]), location)
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
        "imported (list its module under 'imports:', or on the command line name it with "
        "--import MODULE) or a composite made by class_factory; or write the full path "
        f"'module:Class'{failures}",
        location=location,
    )


def entry_point_modules() -> tuple[str, ...]:
    """The modules installed packages declare in the ``nanostream.nodes`` entry-point group.

    A package makes its nodes usable by name in any configuration, and its node
    constructors trusted, with (in its ``pyproject.toml``)::

        [project.entry-points."nanostream.nodes"]
        my_nodes = "my_package.nodes"

    Example:
        >>> from nanostream.config.registry import entry_point_modules
        >>> isinstance(entry_point_modules(), tuple)
        True
    """
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return tuple(sorted({ep.value.partition(":")[0].strip() for ep in found}))


def _within(module: str, packages: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def may_import(module: str, imports: Iterable[str] = ()) -> bool:
    """Whether resolving a name may import ``module`` (see the module's docstring).

    Example:
        >>> from nanostream.config.registry import may_import
        >>> may_import("nanostream.testing"), may_import("mypkg.nodes", ["mypkg"])
        (True, True)
        >>> may_import("some_module_nobody_imported")
        False
    """
    if module in sys.modules or _within(module, ("nanostream", *imports)):
        return True
    return _within(module, entry_point_modules())


def _builtin_constructors() -> list[Any]:
    """nanostream's node constructors (functions that return a node function)."""
    from ..nodes import generic

    return [getattr(generic, name) for name in generic.__all__]


def check_trusted(
    obj: Any,
    ref: str,
    *,
    imports: Iterable[str] = (),
    location: str | None = None,
    code: Iterable[str] = (),
) -> None:
    """Raise :class:`~nanostream.ConfigError` unless a configuration may call ``obj``.

    Trusted are:

    - a ``NanoNode`` class (a composite included): building a node is what a file asks for;
    - anything given to :func:`register` (your own code registered it);
    - nanostream's node constructors (``grep``, ``transform``, ...);
    - a callable of a module that an installed package declares in the ``nanostream.nodes``
      entry-point group (:func:`entry_point_modules`), defined in that package's files;
    - a callable of a module in ``imports`` (the modules the file declares, or given with
      ``--import``) that is your own code: defined in a file of a declared module, and not
      part of Python's standard library or of an installed third-party distribution (an
      editable install of your project counts as yours);
    - a callable defined in a module of ``code`` (modules named by Python code, such as the
      module that calls :func:`~nanostream.class_factory`), wherever it is installed.

    A callable is judged by where it is *defined* (the file of its code), not by the module
    that re-exports it. Anything else is refused, and nothing is called to decide it.

    Example:
        >>> import nanostream, subprocess, yaml
        >>> from nanostream.config.registry import check_trusted
        >>> check_trusted(nanostream.IterableSource, "IterableSource")
        >>> try:
        ...     check_trusted(subprocess.Popen, "subprocess:Popen", location="p.yaml:2:9")
        ... except nanostream.ConfigError as exc:
        ...     print(exc.location, exc.message.split(";")[0])
        p.yaml:2:9 'subprocess:Popen' names subprocess:Popen, which is not a node
        >>> try:
        ...     check_trusted(yaml.unsafe_load, "yaml:unsafe_load", imports=["yaml"])
        ... except nanostream.ConfigError as exc:
        ...     print(exc.message.split(": it is ")[1].split(";")[0])
        part of the installed distribution 'PyYAML', not your own code
    """
    if isinstance(obj, type) and issubclass(obj, NanoNode):
        return
    with _lock:
        if any(obj is known for known in _registered.values()):
            return
    if any(obj is known for known in _builtin_constructors()):
        return
    module = getattr(obj, "__module__", None)
    if not callable(obj) or not isinstance(module, str):
        raise _not_a_node(obj, ref, location)
    top = module.split(".", maxsplit=1)[0]
    if top in (*sys.stdlib_module_names, "nanostream"):
        raise _not_a_node(obj, ref, location)
    file = _origin.defining_file(obj)
    code = tuple(code)
    if file is not None and _within(module, code) and _origin.within_modules(file, code):
        return
    entry_points = entry_point_modules()
    if (
        file is not None
        and _within(module, entry_points)
        and _origin.within_modules(file, entry_points)
    ):
        return
    declared = tuple(imports)
    if not _within(module, declared):
        reason = _origin.not_own_code(file, module)
        if reason is not None:
            raise _not_a_node(obj, ref, location, f"it is {reason}, not your own code")
        raise ConfigError(
            f"{ref!r} names {describe_target(obj)}, defined in module {module!r}, which the "
            f"configuration does not list under 'imports:'; add {module!r} to 'imports:' "
            "(or, on the command line, name it with --import MODULE) if it holds your node "
            "constructors (nothing was called)",
            location=location,
        )
    if file is None or not _origin.within_modules(file, declared):
        where = f"defined in {file}" if file is not None else "not defined in a file"
        raise _not_a_node(
            obj, ref, location, f"it is {where}, not in a file of the modules under 'imports:'"
        )
    reason = _origin.not_own_code(file, module)
    if reason is not None:
        raise _not_a_node(obj, ref, location, f"it is {reason}, not your own code")


def _not_a_node(obj: Any, ref: str, location: str | None, why: str = "") -> ConfigError:
    return ConfigError(
        f"{ref!r} names {describe_target(obj)}, which is not a node"
        + (f": {why}" if why else "")
        + "; a configuration calls only a NanoNode class, a composite, a node constructor "
        "given to nanostream.config.register(), one of a package that declares it in the "
        f"{ENTRY_POINT_GROUP!r} entry-point group, or a function of your own code in a module "
        "it lists under 'imports:'; register it, declare the entry point, or wrap it in a "
        "NanoNode class (nothing was called)",
        location=location,
    )


@dataclass(frozen=True)
class Scope:
    """Where a configuration looks its names up, and the modules whose code it may call.

    ``namespaces`` are searched first for a bare name (a pipeline file's composites and
    ``imports:`` modules; for ``class_factory``, the caller's names); ``imports`` are the
    modules a file declares (a pipeline file's or composite's ``imports:``, and
    ``--import``): their functions are trusted if they are the user's own code; ``code``
    are modules named by Python code (for ``class_factory``, the calling module): their
    functions are trusted wherever they are installed (see :func:`check_trusted`).

    Example:
        >>> import nanostream
        >>> from nanostream.config.registry import Scope
        >>> Scope().resolve("IterableSource", None) is nanostream.IterableSource
        True
    """

    namespaces: tuple[Mapping[str, Any], ...] = ()
    imports: tuple[str, ...] = ()
    code: tuple[str, ...] = ()

    def resolve(self, ref: Any, location: str | None) -> Any:
        """What ``ref`` names here: a bare name in the namespaces first, then :func:`resolve`.

        Either way it must be trusted (:func:`check_trusted`); nothing is called.
        """
        if isinstance(ref, str) and ref.strip().isidentifier():
            for namespace in self.namespaces:
                found = namespace.get(ref.strip())
                if found is not None and callable(found):
                    check_trusted(
                        found, ref.strip(), imports=self.imports, location=location, code=self.code
                    )
                    return found
        return resolve(ref, location=location, imports=self.imports, code=self.code)


def undeclarable(module: str) -> str | None:
    """Why ``module`` cannot be listed under ``imports:``, or ``None`` if it can.

    A module of Python's standard library holds no nodes, and listing it would make its
    functions (``subprocess.Popen``, ``shutil.rmtree``, ...) callable by name.

    Example:
        >>> from nanostream.config.registry import undeclarable
        >>> undeclarable("my_package.nodes") is None
        True
        >>> undeclarable("subprocess").split(";")[0]
        "'subprocess' is a module of Python's standard library, which holds no nodes"
    """
    if module.split(".", maxsplit=1)[0] not in sys.stdlib_module_names:
        return None
    return (
        f"{module!r} is a module of Python's standard library, which holds no nodes; "
        "'imports:' lists the modules that define your nodes (their functions may then be "
        "named by 'class:')"
    )


def _may_exist(module: str) -> bool:
    """False if ``module``'s top-level package cannot be found (found without running it)."""
    top = module.split(".", maxsplit=1)[0]
    if top in sys.modules:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _undeclared(ref: str, module: str, location: str | None) -> ConfigError:
    return ConfigError(
        f"{ref!r}: module {module!r} is not imported, and a configuration imports only the "
        f"modules it lists under 'imports:' (importing runs a module's code); add {module!r} "
        "to 'imports:' if it holds your nodes",
        location=location,
    )


def _import_error(
    ref: str, module_name: str, exc: BaseException, location: str | None
) -> ConfigError:
    return ConfigError(
        f"cannot import module {module_name!r} for {ref!r}: {type(exc).__name__}: {exc}",
        location=location,
    )


def _from_module(
    ref: str, module_name: str, attr: str, imports: tuple[str, ...], location: str | None
) -> Any:
    if not module_name or not attr:
        raise ConfigError(
            f"{ref!r} is not a valid path; write 'module:Name' (e.g. 'mypackage.nodes:Parser')",
            location=location,
        )
    if not may_import(module_name, imports):
        if not _may_exist(module_name):
            raise ConfigError(
                f"cannot import module {module_name!r} for {ref!r}: there is no module "
                f"{module_name.split('.', maxsplit=1)[0]!r}",
                location=location,
            )
        raise _undeclared(ref, module_name, location)
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
