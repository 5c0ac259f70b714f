"""Ticks: a node with ``tick_interval`` learns that time passed while no item came."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.testing import Collect
from support import FlagSink

WAIT = 10.0


class Signal(nanostream.NanoNode):
    """Emits ``first``; waits (cooperatively) until ``flag`` exists; emits ``second``.

    The flag is a file, so it works across processes (the ray runner) too.
    """

    def __init__(self, flag: Path, first: Any = 1, second: Any = 2) -> None:
        super().__init__(name="src")
        self.flag, self.first, self.second = str(flag), first, second

    def generator(self) -> Iterator[Any]:
        yield self.first
        for _ in range(int(WAIT / 0.01)):
            if Path(self.flag).exists() or self.sleep(0.01):
                break
        yield self.second


class HoldUntilTick(nanostream.NanoNode):
    """Keeps items; emits them tagged ``tick`` on a tick, ``end`` at the end."""

    tick_interval = 0.01

    def setup(self) -> None:
        self.kept: list[Any] = []

    def process_item(self, item: Any) -> Iterator[Any]:
        self.kept.append(item)
        yield from ()

    def tick(self) -> Iterator[Any]:
        for item in self.kept:
            yield (item, "tick")
        self.kept = []

    def cleanup(self) -> Iterator[Any]:
        for item in self.kept:
            yield (item, "end")


def test_a_process_item_node_gets_tick_calls_while_idle(runner: str, tmp_path: Path) -> None:
    sink = FlagSink(tmp_path / "got", name="sink")
    Signal(tmp_path / "got") > HoldUntilTick() > sink
    sink.global_start(runner=runner)
    assert sink.items[0] == (1, "tick")  # before the source's next item: by a tick
    assert [i for i, _ in sink.items] == [1, 2]


def hold_function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
    """A node function with ticks: emits what it holds when idle."""
    kept: list[Any] = []
    for item in inp:
        if item is nanostream.TICK:
            for x in kept:
                outp((x, "tick"))
            kept.clear()
        else:
            kept.append(item)
    for x in kept:
        outp((x, "end"))


def test_a_node_function_gets_tick_in_its_input(runner: str, tmp_path: Path) -> None:
    sink = FlagSink(tmp_path / "got", name="sink")
    Signal(tmp_path / "got") > nanostream.as_node(hold_function, tick_interval=0.01) > sink
    sink.global_start(runner=runner)
    assert sink.items[0] == (1, "tick")


def test_ticks_are_not_items(runner: str, tmp_path: Path) -> None:
    sink = FlagSink(tmp_path / "got", name="sink")
    Signal(tmp_path / "got") > HoldUntilTick(name="hold") > sink
    run = sink.global_start(runner=runner, block=False)
    assert run is not None and run.wait(WAIT)
    assert run.stats()["hold"].items_in == 2


def test_a_node_without_tick_interval_never_sees_a_tick(runner: str, tmp_path: Path) -> None:
    def strict(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        for item in inp:
            if item is nanostream.TICK:
                raise AssertionError("a tick reached a node that did not ask for ticks")
            outp(item)

    sink = FlagSink(tmp_path / "got", name="sink")
    Signal(tmp_path / "got") > strict > sink
    sink.global_start(runner=runner)
    assert sink.items == [1, 2]


def test_ticks_come_again_while_idle(runner: str, tmp_path: Path) -> None:
    class CountTicks(nanostream.NanoNode):
        tick_interval = 0.01

        def setup(self) -> None:
            self.ticks = 0

        def process_item(self, item: Any) -> Iterator[Any]:
            yield item

        def tick(self) -> Iterator[Any]:
            self.ticks += 1
            if self.ticks == 3:
                yield "third tick"

    sink = FlagSink(tmp_path / "got", name="sink")
    Signal(tmp_path / "got", first="go") > CountTicks() > sink
    sink.global_start(runner=runner)
    # The flag is set by "go"; the source may end before or after the third tick.
    assert sink.items[0] == "go" and set(sink.items) <= {"go", "third tick", 2}


def test_by_hand_there_are_no_ticks() -> None:
    out: list[Any] = []
    HoldUntilTick().as_function()([1, 2], out.append)
    assert out == [(1, "end"), (2, "end")]


@pytest.mark.parametrize("bad", [0, -1.0, "1", True])
def test_a_bad_tick_interval_is_refused_when_configured(bad: Any) -> None:
    with pytest.raises(nanostream.GraphError, match="tick_interval must be a positive number"):
        Collect().configure(tick_interval=bad)


def test_a_bad_tick_interval_attribute_is_refused_when_the_graph_is_built() -> None:
    class Bad(Collect):
        tick_interval = -1  # type: ignore[assignment]

    sink = Bad(name="bad")
    nanostream.from_iterable([1]) > sink
    with pytest.raises(nanostream.GraphError, match=r"Bad.*tick_interval"):
        sink.global_start()


def test_tick_is_one_object_even_through_pickle() -> None:
    assert pickle.loads(pickle.dumps(nanostream.TICK)) is nanostream.TICK
    assert nanostream.Tick() is nanostream.TICK and repr(nanostream.TICK) == "TICK"
