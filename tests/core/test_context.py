"""The node context's helpers: how a node is named, and the wait an abort cuts short."""

from __future__ import annotations

import threading
import time

import pytest

import nanostream
from nanostream import NanoNode, RunAborted
from nanostream._core.context import NodeContext, node_label
from nanostream.testing import Collect


class Echo(NanoNode):
    def process_item(self, item: object) -> object:
        yield item


# ------------------------------------------------------------------------------ node_label
def test_a_node_is_named_by_its_name_else_its_default_name_else_its_class() -> None:
    def double(inp: object, outp: object) -> None: ...

    assert node_label(Echo(name="echo")) == "echo"
    assert node_label(Echo()) == "Echo"
    assert node_label(nanostream.as_node(double)) == "double"
    assert node_label(nanostream.from_iterable([1])) == "from_iterable"


def test_with_class_the_class_comes_first_and_the_name_quoted() -> None:
    assert node_label(Echo(name="x y"), with_class=True) == "Echo 'x y'"
    assert node_label(Echo(), with_class=True) == "Echo"


def test_in_a_run_a_node_is_named_as_the_run_names_it(runner: str) -> None:
    class Inner(NanoNode):
        def process_item(self, item: object) -> object:
            yield (node_label(self), node_label(self, in_run=False))

    sink = Collect()
    nanostream.from_iterable([1]) > nanostream.Composite([Inner(name="inner")], name="wrap") > sink
    sink.global_start(runner=runner)
    assert sink.items == [("wrap.inner", "inner")]


# ------------------------------------------------------------------------------ pause
def _context() -> tuple[NodeContext, threading.Event, threading.Event]:
    stop, abort = threading.Event(), threading.Event()
    return NodeContext("n", stop_event=stop, abort_event=abort), stop, abort


def test_pause_waits_its_time_when_nothing_happens() -> None:
    ctx, _, _ = _context()
    started = time.monotonic()
    assert ctx.pause(0.01) is False
    assert ctx.pause(0.01, until_stop=True) is False
    assert time.monotonic() - started >= 0.02
    assert ctx.pause(0) is False and ctx.pause(-1, until_stop=True) is False


def test_a_stop_ends_only_a_pause_until_stop() -> None:
    ctx, stop, abort = _context()
    stop.set()
    assert ctx.pause(30, until_stop=True) is True
    # without until_stop the stop does not end the wait: only the abort does
    threading.Timer(0.05, abort.set).start()
    with pytest.raises(RunAborted):
        ctx.pause(30)


@pytest.mark.parametrize("until_stop", [False, True])
def test_an_abort_raises_run_aborted_at_once(until_stop: bool) -> None:
    ctx, stop, abort = _context()
    abort.set()
    stop.set()  # a runner sets both on an abort
    started = time.monotonic()
    with pytest.raises(RunAborted):
        ctx.pause(30, until_stop=until_stop)
    assert time.monotonic() - started < 10


def test_a_pause_in_a_node_ends_when_another_node_fails(runner: str) -> None:
    """A node waiting out a long back-off is cut short by the run's abort, on every runner."""

    class Patient(NanoNode):
        def process_item(self, item: object) -> object:
            self._context().pause(60)
            yield item

    class Fails(NanoNode):
        def process_item(self, item: object) -> object:
            raise ValueError("boom")
            yield item

    source = nanostream.from_iterable([1])
    source > Patient(name="patient") > Collect()
    source > Fails(name="fails")
    started = time.monotonic()
    with pytest.raises(nanostream.NodeFailed) as info:
        source.global_start(runner=runner)
    assert info.value.node == "fails"
    assert time.monotonic() - started < 30
