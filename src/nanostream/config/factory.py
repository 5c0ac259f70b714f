"""``class_factory``: composite node classes made from a configuration.

The configuration (usually YAML) names the composite, lists its inner nodes with their
class, their ``frozen_arguments`` and how the composite's own arguments map onto theirs
(``arg_mapping``), and optionally how they are linked (``edges``; by default they are
chained in list order). The class this makes is a :class:`~nanostream.Composite`: each
instance builds fresh inner nodes and stands in a pipeline as one node.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar

from .._core.composite import Composite
from .._core.errors import ConfigError, GraphError
from .._core.node import NanoNode
from . import registry
from ._common import (
    Document,
    NodeKind,
    Path,
    Problems,
    build_node,
    check_arguments,
    close_matches,
    is_identifier_like,
    node_options,
    parse_yaml,
    read_node_options,
)
from ._convert import annotations_of, convert_arguments

if TYPE_CHECKING:
    from .pipeline import PipelineSpec

__all__ = ["ConfiguredComposite", "class_factory", "read_config"]

_COMPOSITE_KEYS = ("name", "description", "imports", "nodes", "edges", "entries", "exits")
# What only a composite configuration has: a file with one of these is read as a composite.
_COMPOSITE_MARKS = ("entries", "exits")
_INNER_MARKS = ("frozen_arguments", "arg_mapping")
_INNER_KEYS = ("name", "class", "function", "frozen_arguments", "arg_mapping")
_RESERVED_ARGUMENTS = ("name",)


@dataclass
class _Inner:
    name: str
    ref: str
    kind: NodeKind
    target: Any
    frozen: dict[str, Any]
    mapping: dict[str, str]  # inner argument -> the composite's argument
    options: dict[str, Any]


@dataclass
class _Design:
    """A checked composite configuration: what each instance builds."""

    name: str
    inner: list[_Inner]
    edges: list[tuple[str, str, str]]  # (from, port, to)
    entries: list[str] | None
    exits: list[str] | None
    arguments: dict[str, list[tuple[str, str]]]  # composite argument -> [(inner, argument)]

    def build(
        self, given: Mapping[str, Any]
    ) -> tuple[list[NanoNode], list[NanoNode] | None, list[NanoNode] | None]:
        unknown = [a for a in given if a not in self.arguments]
        if unknown:
            takes = ", ".join(self.arguments) or "no arguments"
            raise ConfigError(
                f"{self.name}() got an unknown argument {unknown[0]!r}"
                f"{close_matches(unknown[0], self.arguments)}; it takes: {takes}"
            )
        nodes: dict[str, NanoNode] = {}
        for inner in self.inner:
            what = f"{self.name}: inner node {inner.name!r} ({inner.ref})"
            kwargs = dict(inner.frozen)
            for argument, outer in inner.mapping.items():
                if outer in given:
                    kwargs[argument] = given[outer]
            if inner.kind == "class":
                missing = check_arguments(inner.target, kwargs).missing
                if missing:
                    mapped = {a: o for a, o in inner.mapping.items()}
                    arg = missing[0]
                    if arg in mapped:
                        todo = f"pass {self.name}({mapped[arg]}=...)"
                    else:
                        todo = "give it in the inner node's frozen_arguments or arg_mapping"
                    raise ConfigError(f"{what} is missing its argument {arg!r}: {todo}")
            node = build_node(inner.target, inner.kind, kwargs, what)
            try:
                node.configure(name=inner.name, **inner.options)
            except GraphError as exc:
                raise ConfigError(f"{what}: {exc}") from None
            nodes[inner.name] = node
        for source, port, target in self.edges:
            try:
                nodes[source][port] > nodes[target]
            except GraphError as exc:
                raise ConfigError(
                    f"{self.name}: cannot link inner node {source!r} to {target!r}: {exc}"
                ) from None
        entries = [nodes[n] for n in self.entries] if self.entries is not None else None
        exits = [nodes[n] for n in self.exits] if self.exits is not None else None
        return list(nodes.values()), entries, exits


class ConfiguredComposite(Composite):
    """Base class of the composite classes that :func:`class_factory` makes.

    Instantiate a subclass with the composite's own keyword arguments (those named in the
    configuration's ``arg_mapping``) and optionally ``name=``. ``config`` is the
    configuration the class was made from, ``arguments`` the argument names it takes,
    and ``given_arguments`` (on an instance) the arguments it was built with.

    Example:
        >>> import nanostream
        >>> from nanostream.config import ConfiguredComposite
        >>> class Scale(nanostream.NanoNode):
        ...     def __init__(self, factor):
        ...         super().__init__()
        ...         self.factor = factor
        ...     def process_item(self, item):
        ...         yield item * self.factor
        >>> Times = nanostream.class_factory({"name": "Times", "nodes": [
        ...     {"name": "scale", "class": "Scale", "arg_mapping": {"factor": "by"}}]})
        >>> issubclass(Times, ConfiguredComposite), Times.arguments
        (True, ('by',))
        >>> Times(by=3).given_arguments
        {'by': 3}
    """

    config: ClassVar[dict[str, Any]] = {}
    arguments: ClassVar[tuple[str, ...]] = ()
    _ns_design: ClassVar[_Design | None] = None

    def __init__(self, *, name: str | None = None, **arguments: Any) -> None:
        design = type(self)._ns_design
        if design is None:
            raise ConfigError(
                "ConfiguredComposite is a base class; make composite classes with class_factory()"
            )
        nodes, entries, exits = design.build(arguments)
        self.given_arguments: dict[str, Any] = dict(arguments)
        try:
            super().__init__(nodes, entries=entries, exits=exits, name=name)
        except GraphError as exc:  # pragma: no cover - the design was checked
            raise ConfigError(f"{design.name}: {exc}") from None


def class_factory(
    config: Mapping[str, Any], *, inject: bool = True, register: bool = True
) -> type[ConfiguredComposite]:
    """Make a composite node class from a configuration mapping (e.g. parsed YAML).

    ``config`` has a ``name`` (the new class's name) and ``nodes``: a list of inner nodes,
    each with a ``name``, a ``class`` (a bare name is looked up first among the caller's
    local and global names, then like any class name in a configuration), optional
    ``frozen_arguments`` (fixed arguments) and ``arg_mapping`` (``inner_argument:
    composite_argument``; ``null`` means the node takes none of the composite's
    arguments). The inner nodes are chained
    in list order, unless ``edges`` (a list of ``{from, to}`` and optionally ``port``)
    links them as any other acyclic graph. ``entries`` and ``exits`` (lists of inner
    names) override which inner nodes take the composite's input and give its output.
    ``imports`` (optional) lists modules to import first, whose names are looked up before
    the caller's.

    The class is returned, registered under its name for other configurations
    (``register=False`` to skip), and — as the guide uses it — also bound as a global
    name in the module that calls ``class_factory`` (``inject=False`` to skip; that
    never replaces a global that is not itself a composite class). Errors are
    :class:`~nanostream.ConfigError` naming the composite and the inner node.

    What a ``class``/``function`` may name is what a pipeline file may (see
    :func:`~nanostream.config.registry.check_trusted`), with the calling module added to
    the configuration's ``imports``: a ``NanoNode`` class, a registered name, one of
    nanostream's node constructors, or a function defined in the calling module or in a
    module of ``imports``. Anything else is refused before anything is called.

    Example:
        >>> import nanostream
        >>> class Numbers(nanostream.NanoNode):
        ...     def __init__(self, start, count):
        ...         super().__init__()
        ...         self.start, self.count = start, count
        ...     def generator(self):
        ...         yield from range(self.start, self.start + self.count)
        >>> class Square(nanostream.NanoNode):
        ...     def process_item(self, item):
        ...         yield item * item
        >>> nanostream.class_factory({
        ...     "name": "Squares",
        ...     "nodes": [
        ...         {"name": "numbers", "class": "Numbers",
        ...          "frozen_arguments": {"start": 1}, "arg_mapping": {"count": "how_many"}},
        ...         {"name": "square", "class": "Square", "arg_mapping": None},
        ...     ],
        ... })
        <class '...Squares'>
        >>> sink = nanostream.testing.Collect()
        >>> Squares(how_many=3) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [1, 4, 9]
    """
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    # Bare class names are looked up where the caller would look them up: its local
    # names, then its module's globals (then the registry).
    namespaces: list[Mapping[str, Any]] = (
        [dict(caller.f_locals), caller.f_globals] if caller is not None else []
    )
    module = str(caller.f_globals.get("__name__", __name__)) if caller is not None else __name__
    del frame
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"class_factory() takes the configuration as a mapping (e.g. yaml.safe_load(...)), "
            f"got {type(config).__name__}"
        )
    scope = registry.Scope(tuple(namespaces), code=(module,))
    cls = make_composite_class(Document(dict(config)), (), module=module, scope=scope)
    if inject and caller is not None:
        _check_injection(caller.f_globals, cls.__name__, module)
    if register:
        registry.register(cls, cls.__name__)
    if inject and caller is not None:
        caller.f_globals[cls.__name__] = cls
    del caller
    return cls


def _check_injection(globals_: dict[str, Any], name: str, module: str) -> None:
    existing = globals_.get(name)
    if existing is not None and not (
        isinstance(existing, type) and issubclass(existing, ConfiguredComposite)
    ):
        raise ConfigError(
            f"class_factory() would replace {name!r}, which module {module!r} already defines; "
            "rename the composite or call class_factory(config, inject=False) and use the "
            "class it returns"
        )


def make_composite_class(
    doc: Document,
    path: Path,
    *,
    module: str,
    scope: registry.Scope | None = None,
) -> type[ConfiguredComposite]:
    """The composite class for the configuration at ``path`` in ``doc`` (checked first).

    The configuration's ``imports`` (modules, found next to the file too) are imported
    first; their names are looked up before those of ``scope``, and their functions are
    trusted as those of ``scope``'s modules are.
    """
    scope = scope or registry.Scope()
    imported = _import_modules(doc, path)
    if imported:
        scope = registry.Scope(
            (*imported, *scope.namespaces),
            (*scope.imports, *(str(namespace["__name__"]) for namespace in imported)),
            scope.code,
        )
    design = _read_design(doc, path, scope)
    cls_dict: dict[str, Any] = {
        "__module__": module,
        "__qualname__": design.name,
        "__doc__": _docstring(design),
        "config": copy.deepcopy(doc.sub(path).data),
        "arguments": tuple(design.arguments),
        "_ns_design": design,
        "__signature__": _signature(design),
    }
    cls = type(design.name, (ConfiguredComposite,), cls_dict)
    return cls


def _import_modules(doc: Document, path: Path) -> list[Mapping[str, Any]]:
    """The namespaces of the modules a composite configuration lists under ``imports``."""
    problems = Problems()
    modules = read_imports(doc, path, problems)
    problems.raise_if_any()
    return import_namespaces(modules, doc.directory)


def read_imports(doc: Document, path: Path, problems: Problems) -> list[tuple[str, str | None]]:
    """The ``(module, location)`` pairs listed under ``imports`` at ``path`` of ``doc``."""
    data = doc.sub(path).data
    raw = data.get("imports") if isinstance(data, Mapping) else None
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add("'imports' is a list of module names", doc.where((*path, "imports")))
        return []
    modules = []
    for i, module in enumerate(raw):
        at = doc.where((*path, "imports", i))
        if not isinstance(module, str) or not all(p.isidentifier() for p in module.split(".")):
            problems.add(
                f"{module!r} is not a module name; 'imports' lists dotted module names such as "
                "mypackage.nodes",
                at,
            )
            continue
        problem = registry.undeclarable(module)
        if problem is not None:
            problems.add(problem, at)
            continue
        modules.append((module, at))
    return modules


def import_namespaces(
    modules: Sequence[tuple[str, str | None]], directory: str | None
) -> list[Mapping[str, Any]]:
    """Import ``(module, location)`` pairs (``directory`` first on the path); their names."""
    from .pipeline import _import_lock, _on_path

    problems = Problems()
    namespaces: list[Mapping[str, Any]] = []
    for module, at in modules:
        try:
            with _import_lock, _on_path(directory):
                namespaces.append(vars(importlib.import_module(module)))
        except Exception as exc:  # noqa: BLE001 - any error of the user's module is reported
            problems.add(
                f"cannot import module {module!r}: {type(exc).__name__}: {exc}; 'imports:' "
                "lists importable module names (modules next to the file are found too)",
                at,
            )
    problems.raise_if_any()
    return namespaces


def is_composite_config(data: Any) -> bool:
    """Whether ``data`` (a parsed YAML document) is a composite configuration.

    It is when its ``nodes`` is a list and it has what only a composite has: ``entries``
    or ``exits``, or an inner node with ``frozen_arguments`` or ``arg_mapping``. Any
    other document is read as a pipeline file (one whose nodes have neither describes
    the same graph either way).

    Example:
        >>> from nanostream.config.factory import is_composite_config
        >>> is_composite_config({"name": "C", "nodes": [
        ...     {"name": "a", "class": "A", "arg_mapping": None}]})
        True
        >>> is_composite_config({"nodes": {"a": {"class": "A", "args": {"x": 1}}}})
        False
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list):
        return False
    if any(key in data for key in _COMPOSITE_MARKS):
        return True
    return any(
        isinstance(node, Mapping) and any(key in node for key in _INNER_MARKS)
        for node in data["nodes"]
    )


def read_config(
    source: str | os.PathLike[str] | IO[str],
    *,
    env: Mapping[str, str] | None = None,
    imports: Sequence[str] = (),
) -> PipelineSpec | type[ConfiguredComposite]:
    """Read a YAML file that is either a pipeline file or a composite configuration.

    This is what the ``nanostream`` command reads. A composite configuration (the
    ``class_factory`` file of the guide; see :func:`is_composite_config`) gives its
    composite class, made as :func:`class_factory` makes it but neither registered nor
    bound to a global name; bare class names are looked up among the modules of its
    optional ``imports:`` (found next to the file too) and the imported node classes.
    Any other file gives the :class:`~nanostream.config.PipelineSpec` that
    :func:`~nanostream.config.read_pipeline` gives. ``${NAME}`` in values is taken from
    ``env`` (by default the process environment). ``imports`` are more modules to import,
    as if listed under the file's ``imports:`` (the command line's ``--import``). Errors
    are :class:`~nanostream.ConfigError` with ``FILE:LINE:COLUMN``.

    Example:
        >>> import io, nanostream
        >>> from nanostream.config import read_config
        >>> Numbers = read_config(io.StringIO('''
        ... name: Numbers
        ... nodes:
        ...   - name: numbers
        ...     class: IterableSource
        ...     arg_mapping: {iterable: items}
        ... '''))
        >>> Numbers.arguments
        ('items',)
        >>> sink = nanostream.testing.Collect()
        >>> Numbers(items=[1, 2]) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [1, 2]
        >>> type(read_config(io.StringIO("nodes:\\n  src: {class: IterableSource}\\n")))
        <class 'nanostream.config.pipeline.PipelineSpec'>
    """
    from .pipeline import _read_source, _read_spec

    text, filename, directory = _read_source(source)
    doc = parse_yaml(
        text, filename, env=dict(os.environ) if env is None else env, directory=directory
    )
    extra = [(module, f"--import {module}") for module in imports]
    if not is_composite_config(doc.data):
        spec = _read_spec(doc, env)
        spec.imports.extend(extra)
        return spec
    namespaces = import_namespaces(extra, doc.directory)
    scope = registry.Scope(tuple(namespaces), tuple(module for module, _ in extra))
    return make_composite_class(doc, (), module=__name__, scope=scope)


def _signature(design: _Design) -> inspect.Signature:
    params = [inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None)]
    inner = {i.name: i for i in design.inner}
    for outer, uses in design.arguments.items():
        default: Any = inspect.Parameter.empty
        for node_name, argument in uses:
            node = inner[node_name]
            if node.kind != "class":
                continue
            try:
                param = inspect.signature(node.target).parameters.get(argument)
            except (TypeError, ValueError):
                param = None
            if param is not None and param.default is not param.empty:
                default = param.default
            else:
                default = inspect.Parameter.empty
                break
        # the annotation of the inner parameters it feeds, if they agree (so that a pipeline
        # file's ${NAME} value for this argument is converted as it would be for them)
        found = {
            repr(annotations_of(inner[n].target).get(a, inspect.Parameter.empty)) for n, a in uses
        }
        annotation: Any = inspect.Parameter.empty
        if len(found) == 1:
            node_name, argument = uses[0]
            annotation = annotations_of(inner[node_name].target).get(
                argument, inspect.Parameter.empty
            )
        params.append(
            inspect.Parameter(
                outer, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    return inspect.Signature(params)


def _docstring(design: _Design) -> str:
    chain = ", ".join(f"{i.name} ({i.ref})" for i in design.inner)
    lines = [f"Composite node {design.name!r} made by class_factory: {chain}."]
    if design.arguments:
        lines.append("")
        lines.append("Arguments:")
        for outer, uses in design.arguments.items():
            targets = ", ".join(f"{n}.{a}" for n, a in uses)
            lines.append(f"    {outer}: passed to {targets}")
    return "\n".join(lines)


def _read_design(doc: Document, root: Path, scope: registry.Scope) -> _Design:
    problems = Problems()
    data = doc.sub(root).data

    def where(*path: str | int, key: bool = False) -> str | None:
        return doc.where((*root, *path), key=key)

    if not isinstance(data, Mapping):
        raise ConfigError(
            f"a composite configuration is a mapping with 'name' and 'nodes', got "
            f"{type(data).__name__}",
            location=where(),
        )
    for key in data:
        if key not in _COMPOSITE_KEYS:
            problems.add(
                f"unknown key {key!r} in a composite configuration"
                f"{close_matches(str(key), _COMPOSITE_KEYS)}; known keys: "
                f"{', '.join(_COMPOSITE_KEYS)}",
                where(key, key=True),
            )
    name = data.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        problems.add(
            f"the composite's 'name' must be a valid Python class name, got {name!r}",
            where("name") if "name" in data else where(),
        )
        name = "<composite>"
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        problems.add(
            f"composite {name!r} needs 'nodes': a non-empty list of inner nodes, each with "
            "a 'name' and a 'class'",
            where("nodes") if "nodes" in data else where(),
        )
        problems.raise_if_any()
        raise AssertionError  # pragma: no cover
    inner: list[_Inner] = []
    for index, raw in enumerate(raw_nodes):
        at = (*root, "nodes", index, "frozen_arguments")
        texts = {p[-1]: t for p, t in doc.texts.items() if p[:-1] == at and isinstance(p[-1], str)}
        node = _read_inner(
            raw, index, composite=name, where=where, scope=scope, texts=texts, problems=problems
        )
        if node is None:
            continue
        if any(n.name == node.name for n in inner):
            problems.add(
                f"composite {name!r} has two inner nodes named {node.name!r}; names must be unique",
                where("nodes", index, "name"),
            )
            continue
        inner.append(node)
    problems.raise_if_any()
    names = [n.name for n in inner]
    edges = _read_edges(data, name, names, where, problems)
    entries = _read_names(
        data, "entries", composite=name, names=names, where=where, problems=problems
    )
    exits = _read_names(data, "exits", composite=name, names=names, where=where, problems=problems)
    problems.raise_if_any()
    _check_shape(name, names, edges, where, problems)
    arguments: dict[str, list[tuple[str, str]]] = {}
    for node in inner:
        for argument, outer in node.mapping.items():
            arguments.setdefault(outer, []).append((node.name, argument))
    problems.raise_if_any()
    return _Design(name, inner, [(s, p, t) for s, p, t, _ in edges], entries, exits, arguments)


def _read_inner(
    raw: Any,
    index: int,
    *,
    composite: str,
    where: Any,
    scope: registry.Scope,
    texts: Mapping[str, str],
    problems: Problems,
) -> _Inner | None:
    at = ("nodes", index)
    if not isinstance(raw, Mapping):
        problems.add(
            f"composite {composite!r}: each entry of 'nodes' is a mapping with 'name' and "
            f"'class', got {raw!r}",
            where(*at),
        )
        return None
    node_name = raw.get("name")
    label = f"composite {composite!r}, inner node {node_name!r}"
    before = len(problems.errors)
    known = (*_INNER_KEYS, *node_options())
    for key in raw:
        if key not in known:
            problems.add(
                f"{label}: unknown key {key!r}{close_matches(str(key), known)}; known "
                f"keys: {', '.join(known)}",
                where(*at, key, key=True),
            )
    if not is_identifier_like(node_name) or "." in str(node_name):
        problems.add(
            f"composite {composite!r}: inner node #{index + 1} needs a 'name' (a word without "
            f"spaces or dots), got {node_name!r}",
            where(*at, "name") if "name" in raw else where(*at),
        )
        return None
    kinds = [k for k in ("class", "function") if k in raw]
    if len(kinds) != 1:
        problems.add(
            f"{label}: give exactly one of 'class' (a NanoNode class, composite or node "
            "constructor) and 'function' (a node function)",
            where(*at),
        )
        return None
    kind: NodeKind = "class" if kinds[0] == "class" else "function"
    ref = raw[kind]
    try:
        target = scope.resolve(ref, where(*at, kind))
    except ConfigError as exc:
        problems.add(f"{label}: {exc.message}", exc.location)
        return None
    frozen = raw.get("frozen_arguments")
    if frozen is None:
        frozen = {}
    if not isinstance(frozen, Mapping) or not all(isinstance(k, str) for k in frozen):
        problems.add(
            f"{label}: 'frozen_arguments' must map argument names to values",
            where(*at, "frozen_arguments"),
        )
        frozen = {}
    mapping = raw.get("arg_mapping")
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        problems.add(
            f"{label}: 'arg_mapping' maps the inner node's argument names to the composite's "
            "argument names (inner_name: outer_name), or is null",
            where(*at, "arg_mapping"),
        )
        mapping = {}
    for argument, outer in mapping.items():
        if not outer.isidentifier() or outer in _RESERVED_ARGUMENTS:
            problems.add(
                f"{label}: {outer!r} cannot be an argument name of the composite (it must be "
                f"a Python identifier other than {', '.join(_RESERVED_ARGUMENTS)})",
                where(*at, "arg_mapping", argument),
            )
        if argument in frozen:
            problems.add(
                f"{label}: argument {argument!r} is both frozen and mapped; keep one",
                where(*at, "arg_mapping", argument, key=True),
            )
    if kind == "function" and (frozen or mapping):
        problems.add(
            f"{label}: a node 'function' takes no arguments; use 'class' with a node "
            "constructor to pass arguments",
            where(*at),
        )
    if kind == "class":
        check = check_arguments(target, [*frozen, *mapping], for_missing=False)
        for argument in check.unknown:
            section = "frozen_arguments" if argument in frozen else "arg_mapping"
            takes = ", ".join(check.accepted) or "no arguments"
            problems.add(
                f"{label} ({ref}) has no argument {argument!r}"
                f"{close_matches(argument, check.accepted)}; it takes: {takes}",
                where(*at, section, argument, key=True),
            )
        # frozen values from ${NAME} are converted by annotation, and all are type-checked
        frozen, mistyped = convert_arguments(target, frozen, texts)
        for argument, problem in mistyped.items():
            source = " (from ${...})" if argument in texts else ""
            problems.add(
                f"{label} ({ref}): argument {argument!r} {problem}{source}; give a value of "
                "that type",
                where(*at, "frozen_arguments", argument, key=True),
            )
    options = read_node_options(raw, label, lambda key: where(*at, key), problems)
    if len(problems.errors) > before:
        return None
    return _Inner(str(node_name), str(ref), kind, target, dict(frozen), dict(mapping), options)


def _read_edges(
    data: Mapping[str, Any], composite: str, names: list[str], where: Any, problems: Problems
) -> list[tuple[str, str, str, str | None]]:
    raw = data.get("edges")
    if raw is None:
        return [(a, "out", b, where("nodes")) for a, b in itertools.pairwise(names)]
    if not isinstance(raw, list):
        problems.add(
            f"composite {composite!r}: 'edges' must be a list of {{from: NAME, to: NAME}}",
            where("edges"),
        )
        return []
    edges = []
    for i, edge in enumerate(raw):
        read = read_edge(
            edge,
            names=names,
            label=f"composite {composite!r}",
            where=where,
            at=("edges", i),
            problems=problems,
        )
        if read is not None:
            edges.append(read)
    return edges


def read_edge(
    edge: Any,
    *,
    names: list[str],
    label: str,
    where: Any,
    at: Path,
    problems: Problems,
) -> tuple[str, str, str, str | None] | None:
    """One ``{from, to, port}`` edge, checked against the node ``names``."""
    if not isinstance(edge, Mapping) or "from" not in edge or "to" not in edge:
        problems.add(
            f"{label}: an edge is a mapping {{from: NAME, to: NAME}} (optionally port: NAME), "
            f"got {edge!r}",
            where(*at),
        )
        return None
    ok = True
    for key in edge:
        if key not in ("from", "to", "port"):
            problems.add(
                f"{label}: unknown key {key!r} in an edge; an edge has from, to and "
                "optionally port",
                where(*at, key, key=True),
            )
            ok = False
    for key in ("from", "to"):
        if edge[key] not in names:
            problems.add(
                f"{label}: edge {key} {edge[key]!r} is not a node"
                f"{close_matches(str(edge[key]), names)}; nodes: {', '.join(names)}",
                where(*at, key),
            )
            ok = False
    port = edge.get("port", "out")
    if not isinstance(port, str) or not port:
        problems.add(f"{label}: an edge's port must be a name, got {port!r}", where(*at, "port"))
        ok = False
    if ok and edge["from"] == edge["to"]:
        problems.add(f"{label}: node {edge['from']!r} cannot be linked to itself", where(*at))
        ok = False
    if not ok:
        return None
    return (str(edge["from"]), str(port), str(edge["to"]), where(*at))


def _read_names(
    data: Mapping[str, Any],
    key: str,
    *,
    composite: str,
    names: list[str],
    where: Any,
    problems: Problems,
) -> list[str] | None:
    raw = data.get(key)
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        problems.add(
            f"composite {composite!r}: {key!r} must be a list of inner node names", where(key)
        )
        return None
    for i, n in enumerate(raw):
        if n not in names:
            problems.add(
                f"composite {composite!r}: {key} names {n!r}, which is not an inner node"
                f"{close_matches(n, names)}",
                where(key, i),
            )
    return list(raw)


def _check_shape(
    composite: str,
    names: list[str],
    edges: list[tuple[str, str, str, str | None]],
    where: Any,
    problems: Problems,
) -> None:
    cycle = find_cycle(names, [(s, t) for s, _, t, _ in edges])
    if cycle is not None:
        at = next((w for s, _, t, w in edges if s == cycle[-1] and t == cycle[0]), where())
        path = " > ".join([*cycle, cycle[0]])
        problems.add(
            f"composite {composite!r}: its edges form a cycle: {path}; the inner nodes must "
            "form an acyclic graph",
            at,
        )
        return
    loose = disconnected(names, [(s, t) for s, _, t, _ in edges])
    if loose:
        problems.add(
            f"composite {composite!r}: inner node {loose[0]!r} is not linked to the others; "
            "link it with an edge",
            where("nodes", names.index(loose[0])),
        )


def find_cycle(names: list[str], edges: list[tuple[str, str]]) -> list[str] | None:
    """The nodes of one cycle of the graph (in order), or ``None`` if it is acyclic."""
    children: dict[str, list[str]] = {n: [] for n in names}
    for s, t in edges:
        children[s].append(t)
    done: set[str] = set()
    for root in names:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        iters = [iter(children[root])]
        while iters:
            child = next(iters[-1], None)
            if child is None:
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                iters.pop()
            elif child in on_path:
                return path[path.index(child) :]
            elif child not in done:
                path.append(child)
                on_path.add(child)
                iters.append(iter(children[child]))
    return None


def disconnected(names: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """The names not (weakly) connected to the first one."""
    if not names:
        return []
    neighbours: dict[str, set[str]] = {n: set() for n in names}
    for s, t in edges:
        neighbours[s].add(t)
        neighbours[t].add(s)
    seen = {names[0]}
    todo = [names[0]]
    while todo:
        for other in neighbours[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return [n for n in names if n not in seen]
