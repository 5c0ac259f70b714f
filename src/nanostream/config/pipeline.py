"""Pipeline files: a whole runnable pipeline described in YAML.

A pipeline file names its nodes (a class, composite or node constructor, with arguments
and options), how they are linked (a linear ``chain``, a list of ``edges``, or by default
the order the nodes are listed in), run options, modules to import and composites to
define. :func:`read_pipeline` parses and checks the file's structure;
:meth:`PipelineSpec.build` makes the same :class:`~nanostream.Pipeline` that linking nodes
with ``>`` in Python makes. See ``docs/config.md`` for the format.
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import IO, Any

from .._core.errors import ConfigError, GraphError
from .._core.graph import Pipeline, pipeline_of
from .._core.node import NanoNode
from .._core.run import RunOptions
from . import registry
from ._common import (
    Document,
    NodeKind,
    Path,
    Problems,
    build_node,
    check_arguments,
    close_matches,
    describe_argument_problems,
    is_identifier_like,
    node_options,
    parse_yaml,
    read_node_options,
)
from ._convert import as_text, convert_arguments
from .factory import disconnected, find_cycle, make_composite_class, read_edge, read_imports

__all__ = ["EdgeSpec", "NodeSpec", "PipelineSpec", "load_pipeline", "read_pipeline"]

_TOP_KEYS = (
    "name",
    "description",
    "imports",
    "composites",
    "options",
    "runner",
    "otel",
    "nodes",
    "chain",
    "edges",
)
_NODE_KEYS = ("class", "function", "args", "description")
_RUN_OPTIONS = tuple(f.name for f in fields(RunOptions))

# What each node built from a configuration was made from: (reference, kind, arguments,
# the class or function it names). ``to_yaml`` writes these back out.
built_from: weakref.WeakKeyDictionary[NanoNode, tuple[str, NodeKind, dict[str, Any], Any]] = (
    weakref.WeakKeyDictionary()
)
_import_lock = threading.Lock()

Source = str | os.PathLike[str] | IO[str]


@dataclass
class NodeSpec:
    """One node of a pipeline file: what to build and where each part was written.

    ``kind`` is ``"class"`` (a class, composite or node constructor, called with ``args``)
    or ``"function"`` (a node function used as is). ``locations`` maps ``"node"``,
    ``"class"``, ``"args"`` and ``"args.NAME"`` to ``FILE:LINE:COLUMN``. ``texts`` holds
    the text of the arguments given as text (made by ``${NAME}`` substitution, or by
    ``--set``), which :meth:`PipelineSpec.build` converts by the parameter's annotation.

    Example:
        >>> import io
        >>> from nanostream.config import read_pipeline
        >>> spec = read_pipeline(io.StringIO("nodes:\\n  src: {class: IterableSource}\\n"))
        >>> node = spec.nodes["src"]
        >>> node.ref, node.kind, node.at("class")
        ('IterableSource', 'class', '<string>:2:16')
    """

    name: str
    ref: str
    kind: NodeKind
    args: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    locations: dict[str, str | None] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def at(self, part: str = "node") -> str | None:
        """Where ``part`` of the node was written (the node itself if unknown)."""
        found = self.locations.get(part)
        if found is None and part.startswith("args."):
            found = self.locations.get("args")
        return found if found is not None else self.locations.get("node")


@dataclass
class EdgeSpec:
    """A link of a pipeline file: ``source``'s ``port`` to ``target``.

    Example:
        >>> from nanostream.config import EdgeSpec
        >>> EdgeSpec("read", "out", "write").port
        'out'
    """

    source: str
    port: str
    target: str
    location: str | None = None


@dataclass
class PipelineSpec:
    """A checked pipeline file, before its nodes are built.

    ``override("node.argument", value)`` changes one argument (what the CLI's ``--set``
    does); :meth:`build` imports the listed modules, defines the composites, builds the
    nodes, links them and checks the graph, returning a :class:`~nanostream.Pipeline`.
    ``options`` are the run options to give ``Pipeline.start`` and ``runner`` the runner
    the file asks for (or ``None``).

    Example:
        >>> import io
        >>> from nanostream.config import read_pipeline
        >>> spec = read_pipeline(io.StringIO('''
        ... options: {queue_size: 100}
        ... nodes:
        ...   numbers: {class: IterableSource, args: {iterable: [1, 2]}}
        ...   sink: {class: "nanostream.testing:Collect"}
        ... '''))
        >>> spec.override("numbers.iterable", [5, 6, 7])
        >>> pipeline = spec.build()
        >>> pipeline.start(**spec.options).wait(10)
        True
        >>> {n.name: n for n in pipeline.nodes}["sink"].items
        [5, 6, 7]
    """

    filename: str
    name: str
    nodes: dict[str, NodeSpec]
    edges: list[EdgeSpec]
    options: dict[str, Any] = field(default_factory=dict)
    runner: str | None = None
    runner_location: str | None = None
    #: The file's ``otel:``: None (not asked), or the settings of
    #: :meth:`nanostream.observe.otel.Telemetry.otlp` (``endpoint``, ``service_name``).
    otel: dict[str, str] | None = None
    imports: list[tuple[str, str | None]] = field(default_factory=list)
    composites: list[tuple[Document, Path]] = field(default_factory=list)
    directory: str | None = None

    def override(self, key: str, value: Any) -> None:
        """Set argument ``ARG`` of node ``NODE`` from ``"NODE.ARG"`` (raises ConfigError)."""
        where = f"--set {key}"
        matches = sorted((n for n in self.nodes if key.startswith(n + ".")), key=len)
        if not matches:
            node = key.split(".", 1)[0]
            raise ConfigError(
                f"there is no node {node!r}{close_matches(node, self.nodes)} to set "
                f"{key!r} on; write NODE.ARGUMENT=VALUE with a node of: "
                f"{', '.join(self.nodes)}",
                location=where,
            )
        spec = self.nodes[matches[-1]]
        argument = key[len(spec.name) + 1 :]
        if not argument.isidentifier():
            raise ConfigError(
                f"{argument!r} is not an argument name; write NODE.ARGUMENT=VALUE", location=where
            )
        if spec.kind == "function":
            raise ConfigError(
                f"node {spec.name!r} is a node function, which takes no arguments", location=where
            )
        spec.args[argument] = value
        spec.locations[f"args.{argument}"] = where
        text = as_text(value)  # a scalar from the command line is text, typed on build
        if text is not None:
            spec.texts[argument] = text
        else:
            spec.texts.pop(argument, None)

    # ------------------------------------------------------------------ building
    def build(self) -> Pipeline:
        """Build the nodes, link them and check the graph; returns the ``Pipeline``.

        Every error is a :class:`~nanostream.ConfigError` with ``FILE:LINE:COLUMN`` (a
        :class:`~nanostream.config.ConfigErrors` when there are several).
        """
        problems = Problems()
        namespaces: list[Mapping[str, Any]] = []
        composites: dict[str, Any] = {}
        namespaces.append(composites)
        for module, where in self.imports:
            try:
                namespaces.append(vars(self._import(module)))
            except Exception as exc:  # noqa: BLE001 - any error of the user's module is reported
                problems.add(
                    f"cannot import module {module!r}: {type(exc).__name__}: {exc}; "
                    "'imports:' lists importable module names (modules next to the pipeline "
                    "file are found too)",
                    where,
                )
        problems.raise_if_any()
        # the composites defined so far are found by name too (filled in below)
        scope = registry.Scope(tuple(namespaces), tuple(m for m, _ in self.imports))
        for doc, path in self.composites:
            try:
                cls = make_composite_class(doc, path, module=__name__, scope=scope)
            except ConfigError as exc:
                problems.add_error(exc)
                continue
            composites[cls.__name__] = cls
            registry.register(cls, cls.__name__)
        problems.raise_if_any()
        targets = self._resolve(scope, problems)
        problems.raise_if_any()
        nodes = self._construct(targets, problems)
        problems.raise_if_any()
        for edge in self.edges:
            try:
                nodes[edge.source][edge.port] > nodes[edge.target]
            except GraphError as exc:
                problems.add(
                    f"cannot link {edge.source!r} to {edge.target!r}: {exc}", edge.location
                )
        problems.raise_if_any()
        pipeline = pipeline_of(nodes[next(iter(self.nodes))])
        pipeline.name = self.name
        try:
            pipeline.plan(RunOptions.from_kwargs(**self.options))
        except GraphError as exc:
            raise ConfigError(str(exc), location=f"{self.filename}:1:1") from None
        if self.runner is not None:
            from ..runners import get_runner

            try:
                get_runner(self.runner)
            except (GraphError, ImportError) as exc:
                raise ConfigError(str(exc), location=self.runner_location) from None
        for spec in self.nodes.values():
            built_from[nodes[spec.name]] = (
                spec.ref,
                spec.kind,
                dict(spec.args),
                targets[spec.name],
            )
        return pipeline

    def _import(self, module: str) -> Any:
        with _import_lock, _on_path(self.directory):
            return importlib.import_module(module)

    def _resolve(self, scope: registry.Scope, problems: Problems) -> dict[str, Any]:
        targets: dict[str, Any] = {}
        for spec in self.nodes.values():
            try:
                targets[spec.name] = scope.resolve(spec.ref, spec.at("class"))
            except ConfigError as exc:
                problems.add(f"node {spec.name!r}: {exc.message}", exc.location)
                continue
            if spec.kind != "class":
                continue
            check = check_arguments(targets[spec.name], spec.args)
            what = f"node {spec.name!r} ({spec.ref})"
            spec.args, mistyped = convert_arguments(targets[spec.name], spec.args, spec.texts)
            for name, problem in mistyped.items():
                source = ""
                if name in spec.texts:
                    at = spec.at(f"args.{name}") or ""
                    source = " (from --set)" if at.startswith("--set") else " (from ${...})"
                problems.add(
                    f"{what}: argument {name!r} {problem}{source}; give a value of that type",
                    spec.at(f"args.{name}"),
                )
            for message, name in zip(
                describe_argument_problems(check, what),
                [*check.unknown, *check.missing],
                strict=True,
            ):
                if name in spec.args:
                    where = spec.at(f"args.{name}")
                else:
                    where = spec.locations.get("args") or spec.at("class")
                problems.add(message, where)
        return targets

    def _construct(self, targets: dict[str, Any], problems: Problems) -> dict[str, NanoNode]:
        nodes: dict[str, NanoNode] = {}
        for spec in self.nodes.values():
            what = f"node {spec.name!r} ({spec.ref})"
            try:
                node = build_node(targets[spec.name], spec.kind, spec.args, what)
            except ConfigError as exc:
                problems.add(exc.message, spec.at("args") if spec.args else spec.at("class"))
                continue
            except GraphError as exc:
                problems.add(f"{what}: {exc}", spec.at("class"))
                continue
            try:  # its node options (an OptionError is a ConfigError too)
                node.configure(name=spec.name, **spec.options)
                node.validate()
            except (GraphError, ConfigError) as exc:
                problems.add(f"{what}: {exc}", spec.at("class"))
                continue
            nodes[spec.name] = node
        return nodes


@contextmanager
def _on_path(directory: str | None) -> Iterator[None]:
    if directory is None:
        yield
        return
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        try:
            sys.path.remove(directory)
        except ValueError:  # pragma: no cover - the import removed it
            pass


def read_pipeline(source: Source, *, env: Mapping[str, str] | None = None) -> PipelineSpec:
    """Read and check a pipeline file (a path, or an open text file); nothing is built yet.

    ``${NAME}`` / ``${NAME:-default}`` in string values are taken from ``env`` (by default
    the process environment). Raises :class:`~nanostream.ConfigError` with
    ``FILE:LINE:COLUMN`` for bad YAML, an unknown key, a bad value, an edge to no node, a
    cycle or a part not linked to the rest.

    Example:
        >>> import io
        >>> from nanostream.config import read_pipeline
        >>> spec = read_pipeline(io.StringIO('''
        ... nodes:
        ...   read: {class: IterableSource, args: {iterable: ["${WHO:-world}"]}}
        ...   show: {class: "nanostream.testing:Collect"}
        ... '''), env={})
        >>> spec.nodes["read"].args, [(e.source, e.target) for e in spec.edges]
        ({'iterable': ['world']}, [('read', 'show')])
    """
    text, filename, directory = _read_source(source)
    doc = parse_yaml(
        text, filename, env=dict(os.environ) if env is None else env, directory=directory
    )
    return _read_spec(doc, env)


def load_pipeline(
    source: Source,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Pipeline:
    """Read a pipeline file and build it: the :class:`~nanostream.Pipeline` it describes.

    ``overrides`` maps ``"node.argument"`` to a value that replaces the file's. Start the
    result with ``pipeline.start()`` (or :func:`read_pipeline` to get the file's run
    options too).

    Example:
        >>> import io, nanostream
        >>> pipeline = nanostream.load_pipeline(io.StringIO('''
        ... name: numbers
        ... nodes:
        ...   numbers: {class: IterableSource, args: {iterable: [1, 2, 3]}}
        ...   sink: {class: "nanostream.testing:Collect"}
        ... '''), overrides={"numbers.iterable": [4]})
        >>> run = pipeline.start()
        >>> run.wait(10), pipeline.name
        (True, 'numbers')
        >>> [n.items for n in pipeline.nodes if n.name == "sink"]
        [[4]]
    """
    spec = read_pipeline(source, env=env)
    for key, value in (overrides or {}).items():
        spec.override(key, value)
    return spec.build()


def _read_source(source: Source) -> tuple[str, str, str | None]:
    read = getattr(source, "read", None)
    if callable(read):
        text = read()
        name = getattr(source, "name", None)
        filename = name if isinstance(name, str) else "<string>"
        if not isinstance(text, str):
            raise ConfigError(
                "read_pipeline() needs a text file, not a binary one", location=filename
            )
        return text, filename, None
    path = os.fspath(source)  # type: ignore[arg-type]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the pipeline file: {exc.strerror or exc}", location=str(path)
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the pipeline file is not UTF-8 text: {exc}", location=str(path)
        ) from None
    return text, str(path), os.path.dirname(os.path.abspath(path))


def _read_spec(doc: Document, env: Mapping[str, str] | None) -> PipelineSpec:
    problems = Problems()
    data = doc.data
    where = doc.where
    if not isinstance(data, Mapping):
        raise ConfigError(
            "a pipeline file is a mapping with at least 'nodes:' (see docs/config.md), got "
            f"{type(data).__name__ if data is not None else 'an empty file'}",
            location=where(()),
        )
    for key in data:
        if key not in _TOP_KEYS:
            problems.add(
                f"unknown key {key!r}{close_matches(str(key), _TOP_KEYS)}; a pipeline file has: "
                f"{', '.join(_TOP_KEYS)}",
                where((key,), key=True),
            )
    name = data.get("name", "pipeline")
    if not isinstance(name, str) or not name:
        problems.add(f"'name' must be a non-empty string, got {name!r}", where(("name",)))
        name = "pipeline"
    runner = data.get("runner")
    if runner is not None and not isinstance(runner, str):
        problems.add(
            f"'runner' must be a runner name such as threads, got {runner!r}", where(("runner",))
        )
        runner = None
    options = _read_options(doc, problems)
    otel = _read_otel(doc, problems)
    imports = read_imports(doc, (), problems)
    composites = _read_composites(doc, env, problems)
    nodes = _read_nodes(doc, problems)
    problems.raise_if_any()
    edges = _read_links(doc, list(nodes), problems)
    problems.raise_if_any()
    names = list(nodes)
    cycle = find_cycle(names, [(e.source, e.target) for e in edges])
    if cycle is not None:
        closing = next(
            (e for e in edges if e.source == cycle[-1] and e.target == cycle[0]), edges[0]
        )
        raise ConfigError(
            f"the edges form a cycle: {' > '.join([*cycle, cycle[0]])}; a pipeline must be "
            f"acyclic: remove the edge from {closing.source!r} to {closing.target!r} or "
            "reroute it",
            location=closing.location,
        )
    loose = disconnected(names, [(e.source, e.target) for e in edges])
    if loose:
        problems.add(
            f"node {loose[0]!r} is not linked to the rest of the pipeline; link it in 'chain' "
            "or 'edges' (or put unrelated pipelines in separate files)",
            nodes[loose[0]].at("node"),
        )
    problems.raise_if_any()
    return PipelineSpec(
        filename=doc.filename,
        name=name,
        nodes=nodes,
        edges=edges,
        options=options,
        runner=runner,
        runner_location=where(("runner",)) if "runner" in data else None,
        otel=otel,
        imports=imports,
        composites=composites,
        directory=doc.directory,
    )


def _read_options(doc: Document, problems: Problems) -> dict[str, Any]:
    raw = doc.data.get("options")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.add(
            f"'options' maps run options to values ({', '.join(_RUN_OPTIONS)})",
            doc.where(("options",)),
        )
        return {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        at = ("options", key)
        if key not in _RUN_OPTIONS:
            problems.add(
                f"unknown run option {key!r}{close_matches(str(key), _RUN_OPTIONS)}; run "
                f"options: {', '.join(_RUN_OPTIONS)}",
                doc.where(at, key=True),
            )
        else:
            try:  # the run's own check of that option, as global_start makes it
                RunOptions.from_kwargs(**{key: value})
            except GraphError as exc:
                problems.add(str(exc), doc.where(at))
            else:
                options[key] = value
    return options


_OTEL_KEYS = ("endpoint", "service_name")


def _read_otel(doc: Document, problems: Problems) -> dict[str, str] | None:
    """``otel: true`` or ``otel: {endpoint: URL, service_name: NAME}``: export the run's
    metrics and spans over OTLP (see :mod:`nanostream.observe.otel`)."""
    raw = doc.data.get("otel")
    if raw is None or raw is False:
        return None
    if raw is True:
        return {}
    if not isinstance(raw, Mapping):
        problems.add(
            f"'otel' is true, or a mapping with {' and/or '.join(_OTEL_KEYS)}, got {raw!r}",
            doc.where(("otel",)),
        )
        return None
    settings: dict[str, str] = {}
    for key, value in raw.items():
        if key not in _OTEL_KEYS:
            problems.add(
                f"unknown otel setting {key!r}{close_matches(str(key), _OTEL_KEYS)}; otel "
                f"settings: {', '.join(_OTEL_KEYS)} (the rest comes from the OTEL_* "
                "environment variables)",
                doc.where(("otel", key), key=True),
            )
        elif not isinstance(value, str) or not value:
            problems.add(
                f"otel {key} must be a non-empty string, got {value!r}", doc.where(("otel", key))
            )
        else:
            settings[key] = value
    return settings


def _read_composites(
    doc: Document, env: Mapping[str, str] | None, problems: Problems
) -> list[tuple[Document, Path]]:
    raw = doc.data.get("composites")
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add(
            "'composites' is a list of composite definitions (as for class_factory) or of "
            "YAML files holding one",
            doc.where(("composites",)),
        )
        return []
    found: list[tuple[Document, Path]] = []
    for i, item in enumerate(raw):
        if isinstance(item, Mapping):
            found.append((doc, ("composites", i)))
            continue
        if not isinstance(item, str):
            problems.add(
                f"a composite is a mapping (name, nodes) or a file name, got {item!r}",
                doc.where(("composites", i)),
            )
            continue
        path = item if doc.directory is None else os.path.join(doc.directory, item)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            problems.add(
                f"cannot read composite file {item!r}: {exc.strerror or exc} (paths are "
                "relative to the pipeline file)",
                doc.where(("composites", i)),
            )
            continue
        filename = os.path.relpath(path) if not os.path.isabs(item) else path
        try:
            sub = parse_yaml(
                text,
                filename,
                env=dict(os.environ) if env is None else env,
                directory=os.path.dirname(os.path.abspath(path)),
            )
        except ConfigError as exc:
            problems.add_error(exc)
            continue
        found.append((sub, ()))
    return found


def _read_nodes(doc: Document, problems: Problems) -> dict[str, NodeSpec]:
    raw = doc.data.get("nodes")
    entries: list[tuple[Any, Any, Path]] = []
    if isinstance(raw, Mapping) and raw:
        entries = [(name, value, ("nodes", name)) for name, value in raw.items()]
    elif isinstance(raw, list) and raw:
        for i, item in enumerate(raw):
            name = item.get("name") if isinstance(item, Mapping) else None
            rest = (
                {k: v for k, v in item.items() if k != "name"}
                if isinstance(item, Mapping)
                else item
            )
            entries.append((name, rest, ("nodes", i)))
    else:
        problems.add(
            "a pipeline file needs 'nodes': a mapping of node names to nodes, e.g.\n"
            "  nodes:\n    read: {class: CSVReader, args: {path: data.csv}}",
            doc.where(("nodes",)) if "nodes" in doc.data else doc.where(()),
        )
        return {}
    nodes: dict[str, NodeSpec] = {}
    for name, value, at in entries:
        spec = _read_node(doc, name, value, at, problems)
        if spec is None:
            continue
        if spec.name in nodes:
            problems.add(
                f"two nodes are named {spec.name!r}; node names must be unique", doc.where(at)
            )
            continue
        nodes[spec.name] = spec
    return nodes


def _read_node(
    doc: Document, name: Any, value: Any, at: Path, problems: Problems
) -> NodeSpec | None:
    where = doc.where
    if not is_identifier_like(name):
        problems.add(
            f"a node name must be a word without spaces, '>' or brackets, got {name!r}",
            where(at, key=True),
        )
        return None
    locations: dict[str, str | None] = {"node": where(at, key=True), "class": where(at)}
    if isinstance(value, str):
        value = {"class": value}
    if not isinstance(value, Mapping):
        problems.add(
            f"node {name!r} must be a mapping with 'class' (and 'args'), or just a class name, "
            f"got {value!r}",
            where(at),
        )
        return None
    before = len(problems.errors)
    known = (*_NODE_KEYS, *node_options())
    for key in value:
        if key not in known:
            problems.add(
                f"node {name!r}: unknown key {key!r}{close_matches(str(key), known)}; a "
                f"node has: {', '.join(known)}",
                where((*at, key), key=True),
            )
    kinds = [k for k in ("class", "function") if k in value]
    if len(kinds) != 1:
        problems.add(
            f"node {name!r} needs exactly one of 'class' (a NanoNode class, a composite or a "
            "node constructor 'module:function') and 'function' (a node function "
            "'module:function')",
            where(at),
        )
        return None
    kind: NodeKind = "class" if kinds[0] == "class" else "function"
    ref = value[kind]
    locations["class"] = where((*at, kind))
    if not isinstance(ref, str) or not ref.strip():
        problems.add(f"node {name!r}: {kind} must be a name, got {ref!r}", locations["class"])
        return None
    args = value.get("args")
    if args is None:
        args = {}
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        problems.add(
            f"node {name!r}: 'args' maps argument names to values (name: value lines)",
            where((*at, "args")),
        )
        args = {}
    if kind == "function" and args:
        problems.add(
            f"node {name!r}: a node 'function' takes no arguments; to pass arguments, name a "
            "node constructor with 'class'",
            where((*at, "args")),
        )
    texts: dict[str, str] = {}
    if "args" in value:
        locations["args"] = where((*at, "args"))
        for arg in args:
            locations[f"args.{arg}"] = where((*at, "args", arg), key=True)
            if (*at, "args", arg) in doc.texts:
                texts[arg] = doc.texts[(*at, "args", arg)]
    options = read_node_options(value, f"node {name!r}", lambda key: where((*at, key)), problems)
    if len(problems.errors) > before:
        return None
    return NodeSpec(str(name), ref.strip(), kind, dict(args), options, locations, texts)


def _read_links(doc: Document, names: list[str], problems: Problems) -> list[EdgeSpec]:
    data = doc.data
    edges: list[EdgeSpec] = []
    chain = data.get("chain")
    raw_edges = data.get("edges")
    if chain is None and raw_edges is None:
        # no links given: the nodes are chained in the order they are listed
        at = doc.where(("nodes",))
        return [EdgeSpec(a, "out", b, at) for a, b in itertools.pairwise(names)]
    if chain is not None:
        if not isinstance(chain, list) or len(chain) < 2:
            problems.add(
                "'chain' is a list of at least two node names, linked in that order",
                doc.where(("chain",)),
            )
        else:
            for i, n in enumerate(chain):
                if n not in names:
                    problems.add(
                        f"'chain' names {n!r}, which is not a node{close_matches(str(n), names)}; "
                        f"nodes: {', '.join(names)}",
                        doc.where(("chain", i)),
                    )
            if not problems.errors:
                for i in range(len(chain) - 1):
                    if chain[i] == chain[i + 1]:
                        problems.add(
                            f"'chain' links node {chain[i]!r} to itself",
                            doc.where(("chain", i + 1)),
                        )
                    edges.append(
                        EdgeSpec(
                            str(chain[i]), "out", str(chain[i + 1]), doc.where(("chain", i + 1))
                        )
                    )
    if raw_edges is not None:
        if not isinstance(raw_edges, list):
            problems.add("'edges' is a list of {from: NAME, to: NAME}", doc.where(("edges",)))
        else:
            for i, raw in enumerate(raw_edges):
                read = read_edge(
                    raw,
                    names=names,
                    label="pipeline",
                    where=lambda *p, key=False: doc.where(p, key=key),
                    at=("edges", i),
                    problems=problems,
                )
                if read is not None:
                    edges.append(EdgeSpec(*read))
    seen: dict[tuple[str, str, str], EdgeSpec] = {}
    for edge in edges:
        key = (edge.source, edge.port, edge.target)
        if key in seen:
            problems.add(
                f"the link from {edge.source!r} to {edge.target!r} is given twice", edge.location
            )
        seen[key] = edge
    return edges
