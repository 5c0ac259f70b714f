"""Pictures of a pipeline: Mermaid or Graphviz DOT text, PNG or SVG through Graphviz.

Each node is drawn with its name and class; edges carry the output port when it is not the
default ``out``. The inner nodes of a composite (named ``composite.inner``) are drawn
inside a box for the composite, nested for nested composites. Given a finished run's
``stats()``, nodes show their totals and edges the items that went along them, when that
count is known exactly (see :func:`draw`).

PNG and SVG need Graphviz's ``dot`` program (Debian/Ubuntu: ``apt-get install graphviz``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .._core.composite import Composite
from .._core.context import node_label
from .._core.errors import ConfigError, MissingDependencyError, NanoStreamError
from .._core.graph import Pipeline, Plan, PlanNode, pipeline_of
from .._core.node import FunctionNode, NanoNode
from .._core.run import NodeStats, Run

__all__ = ["FORMATS", "GraphvizNotFoundError", "draw"]

Format = Literal["mermaid", "dot", "png", "svg"]
FORMATS: tuple[str, ...] = ("mermaid", "dot", "png", "svg")


class GraphvizNotFoundError(MissingDependencyError):
    """Graphviz's ``dot`` program, needed for PNG and SVG, is not installed.

    Example:
        >>> from nanostream.observe import GraphvizNotFoundError
        >>> print(GraphvizNotFoundError())  # doctest: +ELLIPSIS
        drawing PNG or SVG needs Graphviz's 'dot' program: apt-get install graphviz ...
    """

    def __init__(self) -> None:
        self.package = "graphviz"
        self.extra = ""
        Exception.__init__(
            self,
            "drawing PNG or SVG needs Graphviz's 'dot' program: apt-get install graphviz "
            "(Debian/Ubuntu), brew install graphviz (macOS), or see graphviz.org; "
            "format='dot' and format='mermaid' work without it",
        )


@dataclass
class _Cluster:
    path: str
    label: str
    nodes: list[int] = field(default_factory=list)
    children: dict[str, _Cluster] = field(default_factory=dict)


def draw(
    graph: Plan | Pipeline | NanoNode,
    format: Format | str = "mermaid",
    *,
    stats: Mapping[str, NodeStats] | Run | None = None,
) -> str | bytes:
    """Draw a pipeline: ``mermaid`` or ``dot`` text, ``svg`` text or ``png`` bytes.

    ``graph`` is a :class:`~nanostream.Plan`, a :class:`~nanostream.Pipeline` or any node
    of one. ``stats`` is a finished run's ``run.stats()`` (or the run): nodes then show
    items in and out, and each edge the items that went along it where that is exact (the
    target has only that input, or the source has only that port, whose targets each get
    every item).

    Example:
        >>> import nanostream
        >>> from nanostream.observe import draw
        >>> src = nanostream.from_iterable([1, 2], name="src")
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> src > sink
        Collect(name='sink')
        >>> print(draw(src, "mermaid"))
        flowchart LR
          n0(["src<br/><small>IterableSource</small>"]):::source
          n1["sink<br/><small>Collect</small>"]:::sink
          n0 --> n1
          classDef source fill:#dbeafe,stroke:#1e40af
          classDef sink fill:#dcfce7,stroke:#166534
          classDef failed stroke:#b91c1c,stroke-width:3px
    """
    plan, composites = _plan_of(graph)
    if format not in FORMATS:
        raise ConfigError(f"unknown drawing format {format!r}; choose one of {', '.join(FORMATS)}")
    snapshot = dict(stats.stats() if isinstance(stats, Run) else stats or {})
    if format == "mermaid":
        return _mermaid(plan, composites, snapshot)
    dot = _dot(plan, composites, snapshot)
    if format == "dot":
        return dot
    rendered = _graphviz(dot, format)
    return rendered.decode() if format == "svg" else rendered


# ----------------------------------------------------------------- the model
def _plan_of(graph: Plan | Pipeline | NanoNode) -> tuple[Plan, dict[str, str]]:
    if isinstance(graph, Plan):
        return graph, {}
    if isinstance(graph, NanoNode):
        graph = pipeline_of(graph)
    if not isinstance(graph, Pipeline):
        raise ConfigError(f"cannot draw {graph!r}: pass a Plan, a Pipeline or a node")
    composites: dict[str, str] = {}
    _composite_classes(graph.nodes, "", composites)
    return graph.plan(), composites


def _composite_classes(nodes: list[NanoNode], prefix: str, out: dict[str, str]) -> None:
    for node in nodes:
        if isinstance(node, Composite):
            path = prefix + node_label(node, in_run=False)
            out[path] = type(node).__name__
            _composite_classes(node.inner, path + ".", out)


def _class_label(pn: PlanNode) -> str:
    node = pn.node
    if isinstance(node, FunctionNode):
        func = node.function
        name = getattr(func, "__name__", None) or type(func).__name__
        return "function" if pn.name.rsplit(".", 1)[-1] == name else f"function {name}"
    return type(node).__name__


def _kind(pn: PlanNode) -> str:
    if pn.is_source:
        return "source"
    if not pn.outputs:
        return "sink"
    return "node"


def _clusters(plan: Plan, composites: dict[str, str]) -> _Cluster:
    root = _Cluster("", "")
    for pn in plan.nodes:
        parts = pn.name.split(".")
        cluster = root
        for i in range(len(parts) - 1):
            path = ".".join(parts[: i + 1])
            if parts[i] not in cluster.children:
                cls = composites.get(path)
                label = parts[i] if cls in (None, "Composite") else f"{parts[i]} ({cls})"
                cluster.children[parts[i]] = _Cluster(path, label)
            cluster = cluster.children[parts[i]]
        cluster.nodes.append(pn.index)
    return root


def _edge_counts(plan: Plan, stats: dict[str, NodeStats]) -> dict[tuple[int, str, int], int]:
    if not stats:
        return {}
    inputs: dict[int, int] = {}
    ports: dict[int, set[str]] = {}
    for s, port, t in plan.edges:
        inputs[t] = inputs.get(t, 0) + 1
        ports.setdefault(s, set()).add(port)
    counts = {}
    for edge in plan.edges:
        s, _, t = edge
        target = stats.get(plan.nodes[t].name)
        source = stats.get(plan.nodes[s].name)
        if inputs[t] == 1 and target is not None:
            counts[edge] = target.items_in
        elif len(ports[s]) == 1 and source is not None:
            counts[edge] = source.items_out
    return counts


def _edge_label(port: str, count: int | None) -> str:
    parts = [] if port == "out" else [port]
    if count is not None:
        parts.append(f"{count:,}")
    return ": ".join(parts)


def _node_lines(pn: PlanNode, stats: dict[str, NodeStats]) -> list[str]:
    lines = [pn.name.rsplit(".", 1)[-1], _class_label(pn)]
    s = stats.get(pn.name)
    if s is not None:
        figures = [] if pn.is_source else [f"in {s.items_in:,}"]
        if pn.outputs or pn.is_source:
            figures.append(f"out {s.items_out:,}")
        if s.errors:
            figures.append(f"errors {s.errors}")
        if s.state not in ("finished", "running"):
            figures.append(s.state)
        lines.append(" · ".join(figures))
    return lines


def _failed(pn: PlanNode, stats: dict[str, NodeStats]) -> bool:
    s = stats.get(pn.name)
    return s is not None and (s.errors > 0 or s.state == "failed")


# ----------------------------------------------------------------- mermaid
def _mm(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def _mermaid(plan: Plan, composites: dict[str, str], stats: dict[str, NodeStats]) -> str:
    out = ["flowchart LR"]
    shapes = {"source": ('(["', '"])'), "sink": ('["', '"]'), "node": ('["', '"]')}

    def node_line(i: int, indent: str) -> str:
        pn = plan.nodes[i]
        name, cls, *rest = (_mm(x) for x in _node_lines(pn, stats))
        label = f"{name}<br/><small>{cls}</small>" + "".join(f"<br/>{x}" for x in rest)
        left, right = shapes[_kind(pn)]
        kind = "failed" if _failed(pn, stats) else _kind(pn)
        style = "" if kind == "node" else f":::{kind}"
        return f"{indent}n{i}{left}{label}{right}{style}"

    n_clusters = 0

    def emit(cluster: _Cluster, indent: str) -> None:
        nonlocal n_clusters
        for child in cluster.children.values():
            n_clusters += 1
            out.append(f'{indent}subgraph c{n_clusters}["{_mm(child.label)}"]')
            emit(child, indent + "  ")
            out.append(f"{indent}end")
        out.extend(node_line(i, indent) for i in cluster.nodes)

    emit(_clusters(plan, composites), "  ")
    counts = _edge_counts(plan, stats)
    for edge in plan.edges:
        s, port, t = edge
        label = _edge_label(port, counts.get(edge))
        arrow = f' -->|"{_mm(label)}"| ' if label else " --> "
        out.append(f"  n{s}{arrow}n{t}")
    out.append("  classDef source fill:#dbeafe,stroke:#1e40af")
    out.append("  classDef sink fill:#dcfce7,stroke:#166534")
    out.append("  classDef failed stroke:#b91c1c,stroke-width:3px")
    return "\n".join(out)


# ----------------------------------------------------------------- dot
def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _dq(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot(plan: Plan, composites: dict[str, str], stats: dict[str, NodeStats]) -> str:
    out = [
        f'digraph "{_dq(plan.name)}" {{',
        "  rankdir=LR;",
        f'  label="{_dq(plan.name)}"; labelloc=t; fontname="Helvetica";',
        '  node [shape=box, style="rounded,filled", fillcolor="#f5f5f5", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    fills = {"source": "#dbeafe", "sink": "#dcfce7", "node": "#f5f5f5"}
    n_clusters = 0

    def node_line(i: int, indent: str) -> str:
        pn = plan.nodes[i]
        name, cls, *rest = (_html(x) for x in _node_lines(pn, stats))
        label = f'<<b>{name}</b><br/><font point-size="10" color="#444444">{cls}</font>'
        label += "".join(f'<br/><font point-size="10">{x}</font>' for x in rest) + ">"
        attrs = [f"label={label}"]
        if _kind(pn) != "node":
            attrs.append(f'fillcolor="{fills[_kind(pn)]}"')
        if _failed(pn, stats):
            attrs.append('color="#b91c1c", penwidth=3')
        return f"{indent}n{i} [{', '.join(attrs)}];"

    def emit(cluster: _Cluster, indent: str) -> None:
        nonlocal n_clusters
        for child in cluster.children.values():
            n_clusters += 1
            out.append(f"{indent}subgraph cluster_{n_clusters} {{")
            out.append(f'{indent}  label="{_dq(child.label)}"; style="dashed,rounded";')
            emit(child, indent + "  ")
            out.append(f"{indent}}}")
        out.extend(node_line(i, indent) for i in cluster.nodes)

    emit(_clusters(plan, composites), "  ")
    counts = _edge_counts(plan, stats)
    for edge in plan.edges:
        s, port, t = edge
        label = _edge_label(port, counts.get(edge))
        attrs = f' [label="{_dq(label)}"]' if label else ""
        out.append(f"  n{s} -> n{t}{attrs};")
    out.append("}")
    return "\n".join(out) + "\n"


def _graphviz(dot: str, format: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFoundError()
    try:
        done = subprocess.run(
            [exe, f"-T{format}"], input=dot.encode(), capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NanoStreamError(f"Graphviz 'dot' could not draw the pipeline: {exc}") from exc
    if done.returncode != 0:
        raise NanoStreamError(
            f"Graphviz 'dot' could not draw the pipeline: {done.stderr.decode().strip()}"
        )
    return done.stdout
