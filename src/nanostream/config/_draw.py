"""A minimal text drawing of a checked plan, as Mermaid or Graphviz dot.

Used by ``nanostream graph`` when ``nanostream.observe.draw`` is not available.
"""

from __future__ import annotations

import json

from .._core.graph import Plan

__all__ = ["render"]


def _quote(text: str) -> str:
    return json.dumps(text)  # a double-quoted string with \" and \\ escaped


def render(plan: Plan, fmt: str = "mermaid") -> str:
    """The plan's graph as Mermaid (``fmt="mermaid"``) or Graphviz dot (``fmt="dot"``).

    Example:
        >>> import nanostream
        >>> from nanostream.config._draw import render
        >>> src = nanostream.from_iterable([1], name="numbers")
        >>> _ = src > nanostream.testing.Collect(name="sink")
        >>> print(render(nanostream.pipeline_of(src).plan()))
        flowchart LR
            n0["numbers"]
            n1["sink"]
            n0 --> n1
    """
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        for pn in plan.nodes:
            label = pn.name.replace('"', "#quot;")
            lines.append(f'    n{pn.index}["{label}"]')
        for source, port, target in plan.edges:
            arrow = "-->" if port == "out" else f"-->|{port}|"
            lines.append(f"    n{source} {arrow} n{target}")
        return "\n".join(lines)
    if fmt == "dot":
        lines = [f"digraph {_quote(plan.name)} {{", "    rankdir=LR;", "    node [shape=box];"]
        for pn in plan.nodes:
            lines.append(f"    n{pn.index} [label={_quote(pn.name)}];")
        for source, port, target in plan.edges:
            label = "" if port == "out" else f" [label={_quote(port)}]"
            lines.append(f"    n{source} -> n{target}{label};")
        lines.append("}")
        return "\n".join(lines)
    raise ValueError(f"unknown graph format {fmt!r}; use mermaid or dot")
