"""Composite nodes: expanded into their inner nodes when the pipeline is checked."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

import nanostream
from nanostream.testing import Collect


class Add(nanostream.NanoNode):
    def __init__(self, k: int, **options: Any) -> None:
        super().__init__(**options)
        self.k = k

    def process_item(self, item: int) -> Iterator[int]:
        yield item + self.k


class Numbers(nanostream.NanoNode):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def generator(self) -> Iterator[int]:
        yield from range(self.n)


def chain(*nodes: nanostream.NanoNode, name: str | None = None) -> nanostream.Composite:
    for a, b in itertools.pairwise(nodes):
        a > b
    return nanostream.Composite(list(nodes), name=name)


def test_processing_composite_in_the_middle(runner: str) -> None:
    comp = chain(Add(1), Add(10), name="c")
    sink = Collect()
    nanostream.from_iterable([0, 1]) > comp > sink
    sink.global_start(runner=runner)
    assert sink.items == [11, 12]


def test_source_composite_is_a_source(runner: str) -> None:
    comp = chain(Numbers(3), Add(1), name="src")
    assert comp.is_source
    sink = Collect()
    comp > sink
    comp.global_start(runner=runner)
    assert sink.items == [1, 2, 3]
    with pytest.raises(nanostream.GraphError, match="is a source"):
        nanostream.from_iterable([]) > chain(Numbers(1), Add(1))


def test_nested_composites_and_names() -> None:
    inner = chain(Add(1, name="a"), Add(2, name="b"), name="inner")
    outer = chain(inner, Add(3, name="c"), name="outer")
    src = nanostream.from_iterable([0], name="src")
    src > outer
    names = [n.name for n in nanostream.pipeline_of(src).plan().nodes]
    assert names == ["src", "outer.inner.a", "outer.inner.b", "outer.c"]


def test_fan_out_of_a_composite_with_two_exits(runner: str) -> None:
    a = Add(0, name="a")
    b, c = Add(1, name="b"), Add(2, name="c")
    a > b
    a > c
    comp = nanostream.Composite([a, b, c], name="fork")
    sink = Collect()
    nanostream.from_iterable([10]) > comp > sink
    sink.global_start(runner=runner)
    assert sorted(sink.items) == [11, 12]


def test_inner_nodes_must_be_linked_together() -> None:
    with pytest.raises(nanostream.GraphError, match="not all linked"):
        nanostream.Composite([Add(1), Add(2)], name="loose")
