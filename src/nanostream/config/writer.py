"""``to_yaml``: write a pipeline, however it was built, as a pipeline file.

What each node was built from is known exactly for nodes built from a configuration
(pipeline files and ``class_factory`` composites record it). For a node built in Python,
its constructor arguments are read back from the instance: each ``__init__`` argument
must be kept as the attribute ``self.<name>`` (or ``self._<name>``), which is the common
convention; when it is not, ``to_yaml`` says so instead of guessing.
"""

from __future__ import annotations

import copy
import heapq
import importlib
import inspect
import itertools
from collections.abc import Mapping
from typing import Any

import yaml

from .._core.composite import Composite
from .._core.errors import ConfigError, GraphError
from .._core.graph import Pipeline, pipeline_of
from .._core.node import FunctionNode, NanoNode
from .._core.redact import hide_secrets
from ._common import describe_target, node_options
from .factory import ConfiguredComposite
from .pipeline import built_from
from .registry import check_trusted

__all__ = ["to_yaml"]


def to_yaml(pipeline: Pipeline | NanoNode) -> str:
    """The pipeline file for ``pipeline`` (or the pipeline a node belongs to).

    Reading the result back with :func:`~nanostream.load_pipeline` builds the same graph:
    the same node names, classes, arguments, options and links. Composites made by
    :func:`~nanostream.class_factory` are written with their definitions. Raises
    :class:`~nanostream.ConfigError` when a node cannot be described: a lambda or a class
    defined inside a function, a composite built in Python with ``Composite(...)``, an
    argument the node does not keep, or a value YAML cannot hold.

    Example:
        >>> import nanostream
        >>> source = nanostream.from_iterable([1, 2], name="numbers")
        >>> sink = nanostream.testing.Collect(wait_for=2, name="sink")
        >>> _ = source > sink.configure(queue_size=64)
        >>> print(nanostream.to_yaml(source))
        name: pipeline
        nodes:
          numbers:
            class: nanostream:IterableSource
            args:
              iterable:
              - 1
              - 2
          sink:
            class: nanostream.testing:Collect
            args:
              wait_for: 2
            queue_size: 64
        chain:
        - numbers
        - sink
        <BLANKLINE>
    """
    if isinstance(pipeline, NanoNode):
        pipeline = pipeline_of(pipeline)
    try:
        names = pipeline.node_names()
    except GraphError as exc:
        raise ConfigError(str(exc)) from None
    order = _order(pipeline, names)
    composites: dict[str, Any] = {}
    imports: set[str] = set()
    nodes = {
        names[id(node)]: _describe(node, names[id(node)], composites, imports) for node in order
    }
    data: dict[str, Any] = {"name": pipeline.name}
    if imports:
        data["imports"] = sorted(imports)
    if composites:
        data["composites"] = list(composites.values())
    data["nodes"] = nodes
    edges = [(names[id(e.source)], e.port, names[id(e.target)]) for e in pipeline.edges]
    ordered = [names[id(n)] for n in order]
    chain_pairs = {(a, "out", b) for a, b in itertools.pairwise(ordered)}
    if len(edges) == len(ordered) - 1 and set(edges) == chain_pairs:
        if edges:
            data["chain"] = ordered
    else:
        data["edges"] = [
            {"from": s, "to": t} if p == "out" else {"from": s, "to": t, "port": p}
            for s, p, t in edges
        ]
    return yaml.safe_dump(
        _escape(data), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )


def _order(pipeline: Pipeline, names: dict[int, str]) -> list[NanoNode]:
    """Topological order; among nodes that are ready together, by name."""
    indegree = {id(n): 0 for n in pipeline.nodes}
    children: dict[int, list[NanoNode]] = {id(n): [] for n in pipeline.nodes}
    for edge in pipeline.edges:
        indegree[id(edge.target)] += 1
        children[id(edge.source)].append(edge.target)
    by_id = {id(n): n for n in pipeline.nodes}
    ready = [(names[id(n)], id(n)) for n in pipeline.nodes if indegree[id(n)] == 0]
    heapq.heapify(ready)
    order: list[NanoNode] = []
    while ready:
        _, key = heapq.heappop(ready)
        order.append(by_id[key])
        for child in children[key]:
            indegree[id(child)] -= 1
            if indegree[id(child)] == 0:
                heapq.heappush(ready, (names[id(child)], id(child)))
    if len(order) < len(pipeline.nodes):
        raise ConfigError("the pipeline has a cycle; only an acyclic pipeline can be written")
    return order


def _needs_import(target: Any, imports: set[str]) -> None:
    """Add the module of ``target`` to ``imports`` if a pipeline file must declare it.

    A file may call a function only of a module it lists under ``imports:``; node classes,
    registered names and nanostream's own node constructors need no import.
    """
    try:
        check_trusted(target, describe_target(target))
    except ConfigError:
        module = getattr(target, "__module__", None)
        if isinstance(module, str):
            imports.add(module)


def _describe(
    node: NanoNode, name: str, composites: dict[str, Any], imports: set[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    args: Mapping[str, Any]
    record = built_from.get(node)
    if isinstance(node, ConfiguredComposite):
        _add_composite(type(node), composites, imports)
        out["class"] = type(node).__name__
        args = node.given_arguments
    elif record is not None:
        ref, kind, args, target = record
        out[kind] = ref
        _needs_import(target, imports)
    elif isinstance(node, Composite):
        raise ConfigError(
            f"cannot write node {name!r} as YAML: it is a composite built in Python with "
            "Composite(...); define it with class_factory() so that it has a configuration"
        )
    elif isinstance(node, FunctionNode):
        out["function"] = _importable(node.function, name, "function")
        _needs_import(node.function, imports)
        args = {}
    else:
        out["class"] = _importable(type(node), name, "class")
        args = _init_arguments(node, name)
    if args:
        out["args"] = {k: _yaml_value(v, name, k) for k, v in args.items()}
    for option, value in node.options.items():
        out[option] = value
    return out


def _public_path(obj: Any) -> str | None:
    """``module:name`` where nanostream exports its own class or function ``obj``, if it does.

    nanostream's nodes live in private modules that may move (``nanostream._core``,
    ``nanostream.operators``, ``nanostream.connectors``); a pipeline file names them by the
    path users import them from, which stays: ``nanostream``, ``nanostream.testing``,
    ``nanostream.nodes`` or its family module (``nanostream.nodes.sql``).

    Example:
        >>> import nanostream
        >>> from nanostream.config.writer import _public_path
        >>> _public_path(nanostream.IterableSource), _public_path(nanostream.testing.Collect)
        ('nanostream:IterableSource', 'nanostream.testing:Collect')
        >>> from nanostream.connectors.sql import SQLSink
        >>> _public_path(SQLSink)
        'nanostream.nodes.sql:SQLSink'
    """
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(name, str) or "." in name:
        return None
    parts = module.split(".")
    if parts[0] != "nanostream":
        return None
    candidates = ["nanostream", "nanostream.testing", "nanostream.nodes"]
    if len(parts) > 2 and parts[1] in ("operators", "connectors"):
        candidates.append(f"nanostream.nodes.{parts[2]}")
    for candidate in candidates:
        try:
            found = importlib.import_module(candidate)
        except ImportError:  # no family module of that name: the path is the next one
            continue
        if getattr(found, name, None) is obj:
            return f"{candidate}:{name}"
    return None


def _importable(obj: Any, name: str, what: str) -> str:
    public = _public_path(obj)
    if public is not None:
        return public
    path = describe_target(obj)
    module_name, _, qualname = path.partition(":")
    problem = None
    if "<" in qualname:
        problem = f"its {what} {path} is a lambda or is defined inside a function"
    else:
        try:
            found: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            found = None
        if found is not obj:
            problem = f"its {what} cannot be found again as {path}"
    if problem is not None:
        raise ConfigError(
            f"cannot write node {name!r} as YAML: {problem}; a pipeline file names module-level "
            "classes and functions"
        )
    return path


def _init_arguments(node: NanoNode, name: str) -> dict[str, Any]:
    cls = type(node)
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - every class has a signature
        return {}
    state = vars(node)
    options = ("name", *node_options())
    args: dict[str, Any] = {}
    for p in params:
        if p.name in options or p.kind is p.VAR_KEYWORD:
            continue  # node options, written from node.options
        if p.kind is p.VAR_POSITIONAL:
            raise ConfigError(
                f"cannot write node {name!r} ({describe_target(cls)}) as YAML: its constructor "
                f"takes *{p.name}, which a pipeline file cannot give"
            )
        for attribute in (p.name, f"_{p.name}"):
            if attribute in state:
                value = state[attribute]
                break
        else:
            raise ConfigError(
                f"cannot write node {name!r} ({describe_target(cls)}) as YAML: the value of its "
                f"argument {p.name!r} is unknown; keep it as self.{p.name} in __init__, or build "
                "the node from a pipeline file"
            )
        if p.default is not p.empty and _same(value, p.default):
            continue
        args[p.name] = value
    return args


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001  # pragma: no cover - an exotic __eq__
        return False


def _escape(value: Any) -> Any:
    """``value`` with ``${`` in every string value written ``$${`` (mapping keys are kept)."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def _yaml_value(value: Any, node: str, argument: str) -> Any:
    """``value`` if a YAML file can hold it; raises ConfigError otherwise.

    A secret that a connector holds (a password, a token, a storage credential: see
    ``remember_secret``) is written as ``***``: a pipeline file written out never holds one.
    """
    if isinstance(value, str):
        return hide_secrets(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list):
        return [_yaml_value(v, node, argument) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _yaml_value(v, node, argument) for k, v in value.items()}
    raise ConfigError(
        f"cannot write node {node!r} as YAML: its argument {argument!r} is a "
        f"{type(value).__name__}, which a pipeline file cannot hold (use lists, mappings, "
        "strings, numbers, booleans or null)"
    )


def _add_composite(
    cls: type[ConfiguredComposite], composites: dict[str, Any], imports: set[str]
) -> None:
    """Add ``cls``'s definition (and those of composites it uses, first) to ``composites``."""
    if cls.__name__ in composites:
        return
    design = cls._ns_design
    if design is None:  # pragma: no cover - only class_factory makes these
        raise ConfigError(f"{cls.__name__} has no configuration")
    config = copy.deepcopy(cls.config)
    for raw, inner in zip(config.get("nodes", []), design.inner, strict=True):
        target = inner.target
        if isinstance(target, type) and issubclass(target, ConfiguredComposite):
            _add_composite(target, composites, imports)
            raw[inner.kind] = target.__name__
        else:
            raw[inner.kind] = _importable(target, f"{cls.__name__}.{inner.name}", inner.kind)
            _needs_import(target, imports)
    composites[cls.__name__] = _yaml_value(config, cls.__name__, "configuration")
