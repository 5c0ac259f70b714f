"""A node controls its run: ``end_outputs()`` (downstream ends while it reads on) and
``request_stop()`` (the run stops gracefully)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import nanostream
from nanostream.testing import Collect

WAIT = 10.0


def wait_until(predicate: Callable[[], bool]) -> bool:
    """Poll ``predicate`` for at most ``WAIT`` s (it asks the run: no event to wait on)."""
    deadline, pause = time.monotonic() + WAIT, threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.005)
    return True


class FirstN(nanostream.NanoNode):
    """Passes the first ``n`` items, then ends its outputs and drops the rest."""

    def __init__(self, n: int, *, late: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.n = n
        self.late = late

    def setup(self) -> None:
        self.seen = 0

    def process_item(self, item: Any) -> Iterator[Any]:
        self.seen += 1
        if self.seen <= self.n:
            yield item
        if self.seen == self.n:
            self.end_outputs()
        elif self.late and self.seen == self.n + 5:
            yield "late"


class Summary(Collect):
    """Collects, and emits ("end", count) in cleanup (so it shows its end came)."""

    def cleanup(self) -> None:
        with self._lock:
            self.items.append(("end", len(self.items)))
        super().cleanup()


def test_downstream_ends_while_the_node_reads_on(runner: str) -> None:
    sink = Summary(name="sink")
    first = FirstN(3, name="first")
    nanostream.from_iterable(range(20_000), name="src") > first > sink
    run = sink.global_start(runner=runner, block=False)
    assert run is not None and run.wait(WAIT)
    assert sink.items == [0, 1, 2, ("end", 3)]
    stats = run.stats()
    assert stats["first"].items_in == 20_000  # it read its whole input
    assert stats["first"].items_out == 3


def test_the_downstream_ends_before_the_source_does(runner: str) -> None:
    class Endless(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            yield from itertools.count()

    sink = Summary(name="sink")
    Endless(name="src") > FirstN(2) > sink
    run = sink.global_start(runner=runner, block=False)
    assert run is not None
    try:
        assert sink.ended.wait(WAIT), "the downstream did not see the end"
        # on ray, the sink's items are copied back once the sink has finished
        assert wait_until(lambda: run.stats()["sink"].state == "finished")
        assert sink.items == [0, 1, ("end", 2)]
        assert run.state == "running"  # the source goes on until stopped
    finally:
        run.stop(timeout=WAIT)
    assert run.state == "finished"


def test_emitting_after_end_outputs_fails_the_run(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(1000)) > FirstN(3, late=True, name="first") > sink
    with pytest.raises(nanostream.NodeFailed, match="'first'") as info:
        sink.global_start(runner=runner)
    assert isinstance(info.value.__cause__, nanostream.NodeProtocolError)
    assert "after it ended its outputs" in str(info.value.__cause__)


def test_a_fan_in_downstream_ends_when_its_other_inputs_end(runner: str) -> None:
    sink = Summary(name="sink")
    first = FirstN(2, name="first")
    nanostream.from_iterable(range(1000), name="a") > first > sink
    nanostream.from_iterable(["x", "y"], name="b") > sink
    sink.global_start(runner=runner)
    assert sorted(map(str, sink.items[:-1])) == ["0", "1", "x", "y"]
    assert sink.items[-1] == ("end", 4)


def test_every_port_ends(runner: str) -> None:
    class Split(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[Any]:
            if item < 4:
                yield nanostream.TaggedOutput("odd" if item % 2 else "even", item)
            if item == 3:
                self.end_outputs()

    split = Split(name="split")
    odd, even = Summary(name="odd"), Summary(name="even")
    nanostream.from_iterable(range(500)) > split
    split["odd"] > odd
    split["even"] > even
    odd.global_start(runner=runner)
    assert odd.items == [1, 3, ("end", 2)] and even.items == [0, 2, ("end", 2)]


def test_by_hand_end_outputs_does_nothing() -> None:
    out: list[Any] = []
    FirstN(2).as_function()(range(10), out.append)
    assert out == [0, 1]


@pytest.mark.parametrize("runner_name", ["threads", "cooperative"])
def test_acks_of_items_read_after_the_end_are_not_called(runner_name: str) -> None:
    acked: list[int] = []

    class Src(nanostream.NanoNode):
        def generator(self) -> Iterator[Any]:
            for i in range(100):
                yield nanostream.Acked(i, lambda i=i: acked.append(i))

    sink = Collect()
    Src(batch_size=1) > FirstN(10) > sink
    sink.global_start(runner=runner_name)
    assert sink.items == list(range(10))
    # Items whose markers passed before the end are acked; those read after it are not
    # (nor the last ones, whose marker comes after the end): a restart sends them again.
    assert acked == list(range(len(acked))) and 0 < len(acked) <= 10


def test_a_node_can_ask_its_run_to_stop(runner: str) -> None:
    class StopAt(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            if item == 100:
                self.request_stop()
            yield item

    sink = Collect()
    nanostream.from_iterable(itertools.count(), name="src") > StopAt() > sink
    run = sink.global_start(runner=runner, block=False)
    assert run is not None and run.wait(WAIT)
    assert run.state == "finished"  # a graceful stop: everything in flight drained
    items = list(sink.items)
    assert items[:101] == list(range(101)) and items == list(range(len(items)))


def test_request_stop_by_hand_does_nothing() -> None:
    class StopAt(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            self.request_stop()
            yield item

    out: list[int] = []
    StopAt().as_function()(range(3), out.append)
    assert out == [0, 1, 2]
