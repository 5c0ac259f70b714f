"""nanostream.canal.Graph: the reference's push API, with correct ends across fan-in.

(Named test_canal_graph.py: tests/core/test_graph.py exists and test modules need unique
basenames.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nanostream
import nanostream.canal as canal
from nanostream.runners.cooperative import run_inline


def recorder(log: list[Any], label: str, *, emit: bool = True) -> Any:
    """A node function that logs (label, value) and passes values on."""

    def node(inp: Any, outp: Any) -> None:
        for value in inp:
            log.append((label, value))
            if emit:
                outp(value)
        log.append((label, "end"))

    node.__name__ = label
    return node


def build(edges: list[tuple[str, str]], log: list[Any]) -> tuple[canal.Graph, Any]:
    """A graph with source "s" and nodes named in ``edges``; sinks do not emit."""
    graph = canal.Graph()
    feed = graph.add_source()
    names = list(dict.fromkeys(n for e in edges for n in e if n != "s"))
    parents = {a for a, _ in edges}
    nodes = {n: recorder(log, n, emit=n in parents) for n in names}
    for n in names:
        graph.add_node(nodes[n])
    for a, b in edges:
        graph.add_edge(feed if a == "s" else nodes[a], nodes[b])
    return graph, feed


# ----------------------------------------------------------------------------- delivery
def test_feed_is_synchronous_and_depth_first() -> None:
    log: list[Any] = []
    graph, feed = build([("s", "a"), ("a", "b"), ("b", "d"), ("a", "c")], log)
    feed(1)
    assert log == [("a", 1), ("b", 1), ("d", 1), ("c", 1)]
    feed(2)
    assert log[4:] == [("a", 2), ("b", 2), ("d", 2), ("c", 2)]
    graph.terminate()


def test_targets_get_values_in_the_order_the_edges_were_added() -> None:
    log: list[Any] = []
    graph, feed = build([("s", "z"), ("s", "y"), ("s", "x")], log)
    feed("v")
    assert log == [("z", "v"), ("y", "v"), ("x", "v")]
    graph.terminate()


def test_several_edges_into_one_node_merge_into_its_input() -> None:
    log: list[Any] = []
    graph, feed = build([("s", "a"), ("s", "b"), ("a", "m"), ("b", "m")], log)
    feed(1)
    assert [v for label, v in log if label == "m"] == [1, 1]
    graph.terminate()
    assert log.count(("m", "end")) == 1


def test_two_sources_feed_one_node() -> None:
    graph = canal.Graph()
    one, two = graph.add_source(), graph.add_source()
    seen: list[Any] = []
    sink = canal.nodes.sink_to_callable(seen.append)
    graph.add_node(sink)
    graph.add_edge(one, sink)
    graph.add_edge(two, sink)
    one("a")
    two("b")
    one("c")
    assert seen == ["a", "b", "c"]


def test_add_node_runs_set_up_code_at_once() -> None:
    events: list[str] = []

    def node(inp: Any, outp: Any) -> None:
        events.append("set up")
        for value in inp:
            events.append(value)
        events.append("finished")

    graph = canal.Graph()
    graph.add_node(node)
    assert events == ["set up"]
    feed = graph.add_source()
    graph.add_edge(feed, node)
    feed("x")
    graph.terminate()
    assert events == ["set up", "x", "finished"]


def test_node_ending_before_reading_is_a_value_error() -> None:
    def lazy(inp: Any, outp: Any) -> None:
        return None

    graph = canal.Graph()
    with pytest.raises(ValueError, match="lazy"):
        graph.add_node(lazy)
    assert issubclass(canal.NodeEndedEarlyError, nanostream.NanoStreamError)


def test_node_ending_while_its_input_goes_on_is_an_error() -> None:
    def first_only(inp: Any, outp: Any) -> None:
        for _ in inp:
            return

    graph = canal.Graph()
    graph.add_node(first_only)
    feed = graph.add_source()
    graph.add_edge(feed, first_only)
    with pytest.raises(canal.NodeEndedEarlyError, match="before its input ended"):
        feed(1)
    with pytest.raises(nanostream.RunStateError, match="ended"):
        feed(2)


def test_edges_may_come_before_nodes() -> None:
    out: list[Any] = []
    sink = canal.nodes.sink_to_callable(out.append)
    graph = canal.Graph()
    feed = graph.add_source()
    graph.add_edge(feed, sink)
    with pytest.raises(nanostream.GraphError, match="add_node"):
        feed(0)
    graph.add_node(sink)
    feed(1)
    assert out == [1]


def test_a_nanonode_class_is_a_node() -> None:
    class Upper(nanostream.NanoNode):
        def process_item(self, item: str) -> Iterator[str]:
            yield item.upper()

    out: list[str] = []
    graph = canal.Graph()
    feed = graph.add_source()
    upper = Upper()
    sink = canal.nodes.sink_to_callable(out.append)
    graph.add_node(upper)
    graph.add_node(sink)
    graph.add_edge(feed, upper)
    graph.add_edge(upper, sink)
    feed("a")
    assert out == ["A"]


def test_building_mistakes_are_refused() -> None:
    log: list[Any] = []
    a, b = recorder(log, "a"), recorder(log, "b")
    graph = canal.Graph()
    feed = graph.add_source()
    graph.add_node(a)
    graph.add_node(b)
    with pytest.raises(nanostream.GraphError, match="already"):
        graph.add_node(a)
    with pytest.raises(nanostream.GraphError, match="function"):
        graph.add_node(42)
    with pytest.raises(nanostream.GraphError, match="source"):
        graph.add_edge(a, feed)
    graph.add_edge(a, b)
    with pytest.raises(nanostream.CycleError, match="b > a > b"):
        graph.add_edge(b, a)
    with pytest.raises(nanostream.CycleError):
        graph.add_edge(a, a)


# ----------------------------------------------------------------------------- terminate
def test_terminate_ends_parents_before_children_so_final_outputs_arrive() -> None:
    def buffered(inp: Any, outp: Any) -> None:
        held = list(inp)
        outp(("flushed", held))

    log: list[Any] = []
    graph = canal.Graph()
    feed = graph.add_source()
    sink = recorder(log, "sink", emit=False)
    graph.add_node(buffered)
    graph.add_node(sink)
    graph.add_edge(feed, buffered)
    graph.add_edge(buffered, sink)
    feed(1)
    feed(2)
    assert log == []
    graph.terminate()
    assert log == [("sink", ("flushed", [1, 2])), ("sink", "end")]


def test_terminate_waits_for_every_parent_of_a_fan_in() -> None:
    """The reference ends a node when its first parent ends; its other parent's flush is lost."""

    def counter(label: str) -> Any:
        def node(inp: Any, outp: Any) -> None:
            n = sum(1 for _ in inp)
            outp((label, n))

        node.__name__ = label
        return node

    log: list[Any] = []
    graph = canal.Graph()
    feed = graph.add_source()
    left, right = counter("left"), counter("right")
    merge = recorder(log, "merge", emit=False)
    for node in (left, right, merge):
        graph.add_node(node)
    graph.add_edge(feed, left)
    graph.add_edge(feed, right)
    graph.add_edge(left, merge)
    graph.add_edge(right, merge)
    feed("x")
    feed("y")
    graph.terminate()
    assert log == [("merge", ("left", 2)), ("merge", ("right", 2)), ("merge", "end")]


def test_feed_after_terminate_is_refused_and_terminate_is_idempotent() -> None:
    log: list[Any] = []
    graph, feed = build([("s", "a")], log)
    graph.terminate()
    graph.terminate()
    with pytest.raises(nanostream.RunStateError, match="terminated"):
        feed(1)
    with pytest.raises(nanostream.RunStateError):
        graph.add_node(recorder(log, "late"))
    assert log == [("a", "end")]


def test_zombie_node_is_reported() -> None:
    def undead(inp: Any, outp: Any) -> None:
        while True:
            for _ in inp:
                pass

    log: list[Any] = []
    graph = canal.Graph()
    graph.add_node(undead)
    fine = recorder(log, "fine")
    graph.add_node(fine)
    with pytest.raises(canal.ZombieNodeError, match="'undead'"):
        graph.terminate()
    assert log == [("fine", "end")]  # the others still ended


def test_sink_that_emits_raises_sink_emit_error() -> None:
    def shout(inp: Any, outp: Any) -> None:
        for value in inp:
            outp(value)

    graph = canal.Graph()
    feed = graph.add_source()
    with pytest.raises(canal.SinkEmitError, match="'feed'"):
        feed(1)  # a source with no edge, as in the reference
    graph.add_node(shout)
    graph.add_edge(feed, shout)
    with pytest.raises(canal.SinkEmitError, match="'shout' emitted 1"):
        feed(1)


def test_emitting_during_set_up_without_edges_fails_add_node() -> None:
    def eager(inp: Any, outp: Any) -> None:
        outp("hello")
        for _ in inp:
            pass

    with pytest.raises(canal.SinkEmitError):
        canal.Graph().add_node(eager)


# ----------------------------------------------------------------------------- errors
def test_exception_in_a_node_surfaces_from_feed() -> None:
    def picky(inp: Any, outp: Any) -> None:
        for value in inp:
            if value == "bad":
                raise KeyError(value)
            outp(value)

    out: list[Any] = []
    graph = canal.Graph()
    feed = graph.add_source()
    sink = canal.nodes.sink_to_callable(out.append)
    graph.add_node(picky)
    graph.add_node(sink)
    graph.add_edge(feed, picky)
    graph.add_edge(picky, sink)
    feed("good")
    with pytest.raises(KeyError, match="bad") as info:
        feed("bad")
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "picky" in frames
    assert out == ["good"]
    with pytest.raises(nanostream.RunStateError, match=r"'picky'.*ended"):
        feed("more")


def test_exception_travels_up_through_the_parents_outp() -> None:
    caught: list[BaseException] = []

    def careful(inp: Any, outp: Any) -> None:
        for value in inp:
            try:
                outp(value)
            except ZeroDivisionError as exc:
                caught.append(exc)

    def divide(inp: Any, outp: Any) -> None:
        for value in inp:
            outp(1 / value)

    out: list[float] = []
    graph = canal.Graph()
    feed = graph.add_source()
    sink = canal.nodes.sink_to_callable(out.append)
    for node in (careful, divide, sink):
        graph.add_node(node)
    graph.add_edge(feed, careful)
    graph.add_edge(careful, divide)
    graph.add_edge(divide, sink)
    feed(2)
    feed(0)  # divide fails; careful catches the error from its outp and goes on
    assert out == [0.5] and len(caught) == 1
    with pytest.raises(nanostream.RunStateError, match="'divide'"):
        feed(4)  # divide has ended; careful does not catch that


# ----------------------------------------------------------------------------- run_inline
def test_a_whole_plan_runs_as_one_node_of_a_graph() -> None:
    def double(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(2 * x)

    def plus_one(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x + 1)

    nanostream.as_node(double) > nanostream.as_node(plus_one)
    plan = nanostream.pipeline_of(nanostream.as_node(double)).plan()

    def composite(inp: Any, outp: Any) -> None:
        run_inline(plan, inp, outp)

    out: list[int] = []
    graph = canal.Graph()
    feed = graph.add_source()
    sink = canal.nodes.sink_to_callable(out.append)
    graph.add_node(composite)
    graph.add_node(sink)
    graph.add_edge(feed, composite)
    graph.add_edge(composite, sink)
    feed(1)
    assert out == [3]  # delivered before feed returned
    feed(5)
    assert out == [3, 11]
    graph.terminate()


def test_a_composite_node_is_a_node_of_a_graph() -> None:
    class Add(nanostream.NanoNode):
        def __init__(self, k: int) -> None:
            super().__init__()
            self.k = k

        def process_item(self, item: int) -> Iterator[int]:
            yield item + self.k

    a, b = Add(1), Add(10)
    a > b
    composite = nanostream.Composite([a, b], name="add_eleven")
    out: list[int] = []
    graph = canal.Graph()
    feed = graph.add_source()
    sink = canal.nodes.sink_to_callable(out.append)
    graph.add_node(composite)
    graph.add_node(sink)
    graph.add_edge(feed, composite)
    graph.add_edge(composite, sink)
    feed(1)
    assert out == [12]
    feed(2)
    graph.terminate()
    assert out == [12, 13]


# ----------------------------------------------------------------------------- random DAGs
@st.composite
def dags(draw: Any) -> tuple[int, list[tuple[int, int]], list[int]]:
    """Nodes 1..n-1 fed by parents with smaller numbers; node 0 is the source."""
    n = draw(st.integers(2, 7))
    edges = []
    for j in range(1, n):
        parents = draw(st.lists(st.integers(0, j - 1), min_size=1, max_size=3, unique=True))
        edges += [(i, j) for i in parents]
    values = draw(st.lists(st.integers(-100, 100), max_size=6))
    return n, edges, values


@settings(max_examples=60, deadline=None)
@given(dag=dags())
def test_random_dags_match_a_reference_model(dag: Any) -> None:
    """Each node forwards what it gets (+ its number) and, at the end, its count."""
    n, edges, values = dag
    children = {i: [b for a, b in edges if a == i] for i in range(n)}
    received: dict[int, list[Any]] = {i: [] for i in range(1, n)}

    def make(i: int) -> Any:
        def node(inp: Any, outp: Any) -> None:
            count = 0
            for value in inp:
                received[i].append(value)
                count += 1
                if children[i]:
                    outp(value + i if isinstance(value, int) else value)
            if children[i]:
                outp(("count", i, count))

        return node

    graph = canal.Graph()
    feed = graph.add_source()
    funcs = {i: make(i) for i in range(1, n)}
    for i in range(1, n):
        graph.add_node(funcs[i])
    for a, b in edges:
        graph.add_edge(feed if a == 0 else funcs[a], funcs[b])
    for value in values:
        feed(value)
    graph.terminate()

    # the model: values flow along every path; each count reaches every child
    out: dict[int, list[Any]] = {0: list(values)}
    for j in range(1, n):
        got = [v for a, b in edges if b == j for v in out[a]]
        out[j] = [v + j if isinstance(v, int) else v for v in got] + [("count", j, len(got))]
        # every parent's count arrived: each parent ended before its child
        assert sorted(map(repr, received[j])) == sorted(map(repr, got))
