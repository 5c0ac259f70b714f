"""The generic node constructors, in a canal Graph and on every nanostream runner.

(Named test_canal_nodes.py so that its basename is unique among the test modules.)
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nanostream
import nanostream.canal as canal
import nanostream.nodes
from nanostream.canal import nodes as cn
from nanostream.testing import Collect


def through_graph(node: Callable[..., Any], values: list[Any]) -> list[Any]:
    """Feed ``values`` through ``node`` in a canal Graph; return what reached a sink."""
    graph = canal.Graph()
    feed = graph.add_source()
    out: list[Any] = []

    def sink(inp: Any, outp: Any) -> None:
        for value in inp:
            out.append(value)

    graph.add_node(node)
    graph.add_node(sink)
    graph.add_edge(feed, node)
    graph.add_edge(node, sink)
    for value in values:
        feed(value)
    graph.terminate()
    return out


def through_pipeline(node: Callable[..., Any], values: list[Any], runner: str) -> list[Any]:
    sink = Collect()
    nanostream.from_iterable(values) > nanostream.as_node(node) > sink
    sink.global_start(runner=runner)
    return sink.items


CASES: list[tuple[str, Callable[[], Callable[..., Any]], list[Any], list[Any]]] = [
    ("grep", lambda: cn.grep(lambda x: x > 5), [1, 3, 5, 7, 9, 2, 6, 10], [7, 9, 6, 10]),
    ("transform", lambda: cn.transform(lambda x: x + 3), [1, 3, 5], [4, 6, 8]),
    (
        "uniq",
        cn.uniq,
        [None, None, 1, 2, 3, 3, 4, None, 7, 7, 7, 10, None],
        [None, 1, 2, 3, 4, None, 7, 10, None],
    ),
    ("uniq-key", lambda: cn.uniq(abs), [1, -1, 2, -2, 1], [1, 2, 1]),
    (
        "aggregate",
        lambda: cn.aggregate(key_func=lambda x: x[0], close_func=lambda a: a[-1][1] == "end"),
        [
            (1, "start"),
            (1, "end"),
            (1, "start"),
            (1, "middle"),
            (1, "end"),
            (3, "start"),
            (2, "start"),
            (3, "middle"),
            (2, "end"),
            (3, "end"),
            (1, "end"),
            (5, "start"),  # never closed: dropped
            (4, "end"),
        ],
        [
            [(1, "start"), (1, "end")],
            [(1, "start"), (1, "middle"), (1, "end")],
            [(2, "start"), (2, "end")],
            [(3, "start"), (3, "middle"), (3, "end")],
            [(1, "end")],
            [(4, "end")],
        ],
    ),
    (
        "aggregate-flush",
        lambda: cn.aggregate(lambda x: x % 3, lambda g: len(g) == 2, flush=True),
        [1, 2, 4, 3, 7, 5],
        [[1, 4], [2, 5], [3], [7]],  # open lists in the order they were started
    ),
    (
        "json_encode",
        lambda: cn.json_encode(indent=4),
        [{}, [1], True],
        ["{}", "[\n    1\n]", "true"],
    ),
    ("json_decode", cn.json_decode, ["{}", "[]", "true", '{"a": 1.5}'], [{}, [], True, {"a": 1.5}]),
    (
        "json_decode-kwargs",
        lambda: cn.json_decode(parse_float=str),
        ['{"a": 1.5}'],
        [{"a": "1.5"}],
    ),
]


@pytest.mark.parametrize(("name", "make", "values", "expected"), CASES, ids=[c[0] for c in CASES])
def test_node_in_a_canal_graph(
    name: str, make: Callable[[], Any], values: list[Any], expected: list[Any]
) -> None:
    assert through_graph(make(), values) == expected


@pytest.mark.parametrize(("name", "make", "values", "expected"), CASES, ids=[c[0] for c in CASES])
def test_node_in_a_pipeline(
    runner: str, name: str, make: Callable[[], Any], values: list[Any], expected: list[Any]
) -> None:
    assert through_pipeline(make(), values, runner) == expected


def test_aggregate_flush_defaults_to_false_like_the_reference() -> None:
    assert through_graph(cn.aggregate(len, lambda g: False), ["a", "b"]) == []


def test_uniq_compares_only_neighbours_and_keys_not_values() -> None:
    out: list[Any] = []
    cn.uniq(lambda s: s.lower())(["a", "A", "b", "a"], out.append)
    assert out == ["a", "b", "a"]  # the first of a run passes, as given


def test_sink_to_file_writes_str_and_separator() -> None:
    lines, spaced = io.StringIO(), io.StringIO()
    graph = canal.Graph()
    feed = graph.add_source()
    a, b = cn.sink_to_file(lines), cn.sink_to_file(spaced, separator=" ")
    graph.add_node(a)
    graph.add_node(b)
    graph.add_edge(feed, a)
    graph.add_edge(feed, b)
    for value in ("a", 2, None):
        feed(value)
    graph.terminate()
    assert lines.getvalue() == "a\n2\nNone\n"
    assert spaced.getvalue() == "a 2 None "
    assert not lines.closed


class AppendLine:
    """A callable that appends ``repr(value)`` as a line to a file (seen from any process)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __call__(self, value: Any) -> None:
        with open(self.path, "a") as f:
            f.write(f"{value!r}\n")


def test_sink_to_callable_calls_for_each_value(runner: str, tmp_path: Path) -> None:
    out = tmp_path / "got.txt"
    src = nanostream.from_iterable(range(5))
    src > cn.sink_to_callable(AppendLine(out))
    src.global_start(runner=runner)
    assert out.read_text().splitlines() == ["0", "1", "2", "3", "4"]


def test_sinks_emit_nothing() -> None:
    emitted: list[Any] = []
    cn.sink_to_callable(lambda v: None)([1, 2], emitted.append)
    cn.sink_to_file(io.StringIO())([1, 2], emitted.append)
    assert emitted == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: cn.grep(bool),
        lambda: cn.transform(str),
        cn.uniq,
        lambda: cn.aggregate(len, bool),
        cn.json_encode,
        cn.json_decode,
        lambda: cn.sink_to_file(io.StringIO()),
        lambda: cn.sink_to_callable(print),
    ],
)
def test_each_call_returns_a_new_node_function(make: Callable[[], Any]) -> None:
    first, second = make(), make()
    assert callable(first) and first is not second
    graph = canal.Graph()
    graph.add_node(first)
    graph.add_node(second)  # two distinct nodes in one graph


def test_same_names_in_nanostream_nodes() -> None:
    for name in cn.__all__:
        assert getattr(nanostream.nodes, name) is getattr(cn, name)
        assert name in nanostream.nodes.__all__


def test_json_decode_of_deep_nesting_is_a_format_error_naming_the_value(runner: str) -> None:
    src = nanostream.from_iterable(["[1]", "[" * 100_000, "[2]"])
    src > cn.json_decode() > Collect()
    with pytest.raises(nanostream.NodeFailed) as info:
        src.global_start(runner=runner)
    error = info.value.__cause__
    assert isinstance(error, nanostream.FormatError)
    assert error.source == "input item #2" and error.line is None
    assert "nested deeper than the parser can follow" in str(error)


def test_json_decode_of_text_that_is_not_json_is_a_format_error_and_a_value_error() -> None:
    with pytest.raises(nanostream.FormatError, match=r"input item #1: not valid JSON") as info:
        through_graph(cn.json_decode(), ["{oops"])
    assert isinstance(info.value, ValueError)  # as json.loads raised before
    with pytest.raises(nanostream.FormatError, match="nested deeper"):
        through_graph(cn.json_decode(), ["[" * 100_000])
