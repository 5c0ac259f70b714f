"""The graph model: checking, naming, cycles; random DAGs against a reference."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nanostream
from nanostream.testing import Collect


def passthrough() -> Any:
    def node(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x)

    return nanostream.as_node(node)


def test_cycle_is_refused_naming_its_nodes() -> None:
    a = nanostream.from_iterable([1], name="src")
    b = passthrough().configure(name="b")
    c = passthrough().configure(name="c")
    a > b > c > b
    with pytest.raises(nanostream.CycleError) as info:
        a.global_start()
    assert info.value.cycle in (["b", "c"], ["c", "b"])
    assert "b > c > b" in str(info.value) or "c > b > c" in str(info.value)


def test_duplicate_names_are_refused() -> None:
    a = nanostream.from_iterable([1], name="x")
    b = Collect(name="x")
    a > b
    with pytest.raises(nanostream.GraphError, match="two nodes are named 'x'"):
        a.global_start()


def test_automatic_names_are_unique_and_stable() -> None:
    src = nanostream.from_iterable([1])
    s1, s2 = Collect(), Collect()
    src > s1
    src > s2
    names = [n.name for n in nanostream.pipeline_of(src).plan().nodes]
    assert names == ["from_iterable", "Collect", "Collect-2"]


def test_plan_is_topological() -> None:
    a = nanostream.from_iterable([1], name="a")
    b, c, d = (passthrough().configure(name=n) for n in "bcd")
    c > d
    a > b > c
    order = [n.name for n in nanostream.pipeline_of(a).plan().nodes]
    assert order.index("a") < order.index("b") < order.index("c") < order.index("d")


def test_cannot_link_or_start_after_start() -> None:
    src = nanostream.from_iterable([1])
    sink = Collect()
    src > sink
    src.global_start()
    with pytest.raises(nanostream.RunStateError):
        src.global_start()
    with pytest.raises(nanostream.RunStateError):
        sink > Collect()


def test_unknown_run_option_and_runner() -> None:
    with pytest.raises(nanostream.GraphError, match="unknown run option"):
        nanostream.from_iterable([1]).global_start(colour=1)
    with pytest.raises(nanostream.GraphError, match="unknown runner"):
        nanostream.from_iterable([1]).global_start(runner="nope")


def test_global_stop_before_start() -> None:
    with pytest.raises(nanostream.RunStateError, match="not running"):
        nanostream.from_iterable([1]).global_stop()


# ----------------------------------------------------------------------------- random DAGs
@st.composite
def dags(draw: Any) -> tuple[int, list[tuple[int, int]], list[list[int]]]:
    """A random DAG: n nodes, edges i -> j with i < j, and each source's items."""
    n = draw(st.integers(2, 7))
    edges = []
    for j in range(1, n):
        parents = draw(st.lists(st.integers(0, j - 1), unique=True, max_size=3))
        edges += [(i, j) for i in parents]
    has_parent = {j for _, j in edges}
    data = [
        draw(st.lists(st.integers(-50, 50), max_size=20)) if i not in has_parent else []
        for i in range(n)
    ]
    return n, edges, data


def _build(
    n: int, edges: list[tuple[int, int]], data: list[list[int]], fail_at: tuple[int, int] | None
) -> tuple[list[nanostream.NanoNode], dict[int, Collect]]:
    has_parent = {j for _, j in edges}
    has_child = {i for i, _ in edges}
    nodes: list[nanostream.NanoNode] = []
    for i in range(n):
        if i not in has_parent:
            nodes.append(nanostream.from_iterable(data[i], name=f"n{i}"))
            continue

        def make(i: int) -> Any:
            def node(inp: Any, outp: Any) -> None:
                for k, x in enumerate(inp):
                    if fail_at == (i, k):
                        raise RuntimeError(f"injected at node {i} item {k}")
                    outp(x + i)

            return node

        nodes.append(nanostream.as_node(make(i), name=f"n{i}"))
    for i, j in edges:
        nodes[i] > nodes[j]
    sinks = {}
    for i in range(n):
        if i not in has_child:
            sinks[i] = Collect(name=f"sink{i}")
            nodes[i] > sinks[i]
    return nodes, sinks


def _start_all(nodes: list[nanostream.NanoNode], runner: str) -> None:
    """Start every connected part of a graph (a random DAG may have several)."""
    started: list[nanostream.Pipeline] = []
    for node in nodes:
        pipeline = nanostream.pipeline_of(node)
        if all(pipeline is not p for p in started):
            started.append(pipeline)
            node.global_start(runner=runner)


def _reference(n: int, edges: list[tuple[int, int]], data: list[list[int]]) -> dict[int, list[int]]:
    has_parent = {j for _, j in edges}
    out: dict[int, list[int]] = {}
    for j in range(n):
        if j not in has_parent:
            out[j] = list(data[j])
        else:
            out[j] = [x + j for i, jj in edges if jj == j for x in out[i]]
    return out


def examples(runner: str, n: int) -> int:
    """Hypothesis examples per test: ``n``, a quarter on ray (each run there starts actors)."""
    return max(5, n // 4) if runner == "ray" else n


def test_random_dag_matches_reference(runner: str) -> None:
    @settings(max_examples=examples(runner, 40), deadline=None)
    @given(dag=dags())
    def check(dag: Any) -> None:
        n, edges, data = dag
        nodes, sinks = _build(n, edges, data, None)
        _start_all(nodes, runner)
        expected = _reference(n, edges, data)
        for i, sink in sinks.items():
            assert sorted(sink.items) == sorted(expected[i])

    check()


def test_random_failure_raises_node_failed(runner: str) -> None:
    @settings(max_examples=examples(runner, 40), deadline=None)
    @given(dag=dags(), data=st.data())
    def check(dag: Any, data: Any) -> None:
        n, edges, items = dag
        expected = _reference(n, edges, items)
        candidates = [
            (j, k)
            for j in range(n)
            if j in {b for _, b in edges}
            for k in range(sum(len(expected[i]) for i, jj in edges if jj == j))
        ]
        if not candidates:
            return
        fail_at = data.draw(st.sampled_from(candidates))
        nodes, _ = _build(n, edges, items, fail_at)
        with pytest.raises(nanostream.NodeFailed) as info:
            _start_all(nodes, runner)
        assert info.value.node == f"n{fail_at[0]}"
        assert isinstance(info.value.__cause__, RuntimeError)
        assert info.value.__cause__.__traceback__ is not None

    check()
