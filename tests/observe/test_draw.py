"""Pictures of the graph: Mermaid and DOT text, composites as clusters, counts, PNG/SVG."""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest

import nanostream
from nanostream.observe import GraphvizNotFoundError, draw
from nanostream.testing import Collect
from support import missing

HAS_DOT = shutil.which("dot") is not None


def functions() -> tuple[Any, Any, Any]:
    """Fresh node functions (a function is its node: each test needs its own)."""

    def double(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(2 * x)

    def plus_one(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x + 1)

    def split(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(nanostream.TaggedOutput("small" if x < 10 else "big", x))

    return double, plus_one, split


class MathPair(nanostream.Composite):
    """A composite subclass, as class_factory makes them."""


def build() -> tuple[nanostream.NanoNode, Collect, Collect]:
    """numbers > math(double > plus_one) > split; split[small] > small, split[big] > big."""
    double, plus_one, split = functions()
    a, b = nanostream.as_node(double), nanostream.as_node(plus_one)
    _ = a > b
    both = MathPair([a, b], name="math")
    src = nanostream.from_iterable(range(10), name="numbers")
    small, big = Collect(name="small"), Collect(name="big")
    src > both > split
    node = nanostream.as_node(split)
    node["small"] > small
    node["big"] > big
    return src, small, big


def test_mermaid_text() -> None:
    double, _, _ = functions()
    src = nanostream.from_iterable([1], name="src")
    sink = Collect(name="sink")
    src > double > sink
    assert draw(src) == "\n".join(
        [
            "flowchart LR",
            '  n0(["src<br/><small>IterableSource</small>"]):::source',
            '  n1["double<br/><small>function</small>"]',
            '  n2["sink<br/><small>Collect</small>"]:::sink',
            "  n0 --> n1",
            "  n1 --> n2",
            "  classDef source fill:#dbeafe,stroke:#1e40af",
            "  classDef sink fill:#dcfce7,stroke:#166534",
            "  classDef failed stroke:#b91c1c,stroke-width:3px",
        ]
    )


def test_dot_text_has_nodes_ports_edges_and_a_cluster_per_composite() -> None:
    src, _, _ = build()
    dot = draw(nanostream.pipeline_of(src), "dot")
    assert isinstance(dot, str)
    assert dot.startswith('digraph "pipeline" {\n  rankdir=LR;')
    names = dict(re.findall(r"(n\d+) \[label=<<b>(\w+)</b>", dot))
    ids = {name: n for n, name in names.items()}
    assert set(ids) == {"numbers", "double", "plus_one", "split", "small", "big"}
    assert "IterableSource" in dot and "Collect" in dot
    cluster = re.search(r"subgraph cluster_1 \{\n(.*?)\n  \}", dot, re.S)
    assert cluster is not None
    assert 'label="math (MathPair)"' in cluster.group(1)
    assert f"{ids['double']} [" in cluster.group(1) and f"{ids['plus_one']} [" in cluster.group(1)
    assert f"{ids['numbers']} [" not in cluster.group(1)
    edges = set(re.findall(r"(n\d+) -> (n\d+)(?: \[label=\"([^\"]*)\"\])?;", dot))
    assert edges == {
        (ids["numbers"], ids["double"], ""),
        (ids["double"], ids["plus_one"], ""),
        (ids["plus_one"], ids["split"], ""),
        (ids["split"], ids["small"], "small"),
        (ids["split"], ids["big"], "big"),
    }


def test_nested_composites_are_nested_clusters() -> None:
    double, plus_one, split = functions()
    a, b = nanostream.as_node(double), nanostream.as_node(plus_one)
    _ = a > b
    inner = nanostream.Composite([a, b], name="inner")
    c = nanostream.as_node(split, name="tail")
    _ = inner > c
    outer = nanostream.Composite([inner, c], name="outer")
    src = nanostream.from_iterable([1], name="src")
    src > outer
    mermaid = draw(src, "mermaid")
    assert isinstance(mermaid, str)
    lines = mermaid.splitlines()
    start_outer = lines.index('  subgraph c1["outer"]')
    start_inner = lines.index('    subgraph c2["inner"]')
    assert start_outer < start_inner
    assert lines[start_inner + 1].startswith("      n") and "double" in lines[start_inner + 1]
    dot = draw(src, "dot")
    assert dot.count("subgraph cluster_") == 2


def test_counts_from_a_finished_run(runner: str) -> None:
    src, small, big = build()
    run = src.global_start(block=False, runner=runner)
    assert run is not None and run.wait(10)
    # numbers 0..9 -> 1, 3, ..., 19: five below 10, five above
    assert len(small.items) == 5 and len(big.items) == 5
    mermaid = draw(nanostream.pipeline_of(src), "mermaid", stats=run.stats())
    assert isinstance(mermaid, str)
    assert '-->|"10"|' in mermaid
    assert '-->|"small: 5"|' in mermaid and '-->|"big: 5"|' in mermaid
    assert "IterableSource</small><br/>out 10" in mermaid
    assert "Collect</small><br/>in 5" in mermaid
    dot = draw(src, "dot", stats=run)
    assert '[label="small: 5"]' in dot and '[label="10"]' in dot


def test_edge_counts_only_where_they_are_exact() -> None:
    a = nanostream.from_iterable(range(3), name="a")
    b = nanostream.from_iterable(range(4), name="b")
    merge = Collect(name="merge")
    a > merge
    b > merge
    run = a.global_start(block=False)
    assert run is not None and run.wait(10)
    # two inputs into merge: each edge counts what its source sent (one port, one target)
    dot = draw(a, "dot", stats=run)
    assert '[label="3"]' in dot and '[label="4"]' in dot

    def fork(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(nanostream.TaggedOutput("left" if x % 2 else "right", x))

    src = nanostream.from_iterable(range(5), name="src")
    join = Collect(name="join")
    _ = src > fork
    node = nanostream.as_node(fork)
    node["left"] > join
    node["right"] > join
    run = src.global_start(block=False)
    assert run is not None and run.wait(10)
    # two ports into one node with two inputs: the split is unknown, only ports are shown
    dot = draw(src, "dot", stats=run)
    assert '[label="left"]' in dot and '[label="right"]' in dot
    assert "in 5" in dot  # the node totals are still there


def test_a_failed_node_is_marked() -> None:
    def boom(inp: Any, outp: Any) -> None:
        for _ in inp:
            raise ValueError("no")

    src = nanostream.from_iterable([1], name="src")
    _ = src > boom
    run = src.global_start(block=False)
    assert run is not None
    with pytest.raises(nanostream.NodeFailed):
        run.wait(10)
    mermaid = draw(src, "mermaid", stats=run)
    assert isinstance(mermaid, str)
    line = next(x for x in mermaid.splitlines() if "boom" in x)
    assert line.endswith(":::failed") and "errors 1" in line and "failed" in line
    assert 'color="#b91c1c"' in draw(src, "dot", stats=run)


def test_labels_are_escaped() -> None:
    src = nanostream.from_iterable([1], name='say "hi" <now> & then')
    src > Collect(name="sink")
    mermaid = draw(src, "mermaid")
    assert "say #quot;hi#quot; #lt;now#gt; #amp; then" in mermaid
    dot = draw(src, "dot")
    assert "say &quot;hi&quot;" not in dot  # HTML labels escape only &, < and >
    assert 'say "hi" &lt;now&gt; &amp; then' in dot


def test_a_plan_can_be_drawn() -> None:
    src = nanostream.from_iterable([1], name="src")
    src > Collect(name="sink")
    plan = nanostream.pipeline_of(src).plan()
    assert draw(plan, "dot") == draw(src, "dot")


def test_unknown_format_and_object() -> None:
    src = nanostream.from_iterable([1], name="src")
    with pytest.raises(nanostream.ConfigError, match="choose one of mermaid, dot, png, svg"):
        draw(src, "jpg")
    with pytest.raises(nanostream.ConfigError, match="pass a Plan, a Pipeline or a node"):
        draw(42, "dot")  # type: ignore[arg-type]


def test_png_and_svg_through_graphviz(tmp_path: Any) -> None:
    if not HAS_DOT:
        missing("Graphviz 'dot' is not installed (apt-get install graphviz)")
    src, _, _ = build()
    run = src.global_start(block=False)
    assert run is not None and run.wait(10)
    png = draw(src, "png", stats=run)
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "pipeline.png").write_bytes(png)
    svg = draw(src, "svg", stats=run)
    assert isinstance(svg, str) and "<svg" in svg
    assert ">numbers</text>" in svg and ">math (MathPair)</text>" in svg
    assert ">small: 5</text>" in svg


def test_png_without_graphviz_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    src = nanostream.from_iterable([1], name="src")
    with pytest.raises(GraphvizNotFoundError, match="apt-get install graphviz") as info:
        draw(src, "png")
    assert isinstance(info.value, nanostream.MissingDependencyError)
    assert isinstance(draw(src, "dot"), str)  # text formats need nothing
