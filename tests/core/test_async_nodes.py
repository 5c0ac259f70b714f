"""Nodes with ``async def process_item`` / ``async def generator``, under every runner."""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.testing import Collect
from support import Numbers, Total

WAIT = 10.0


class AsyncDouble(nanostream.NanoNode):
    async def process_item(self, item: int) -> AsyncIterator[int]:
        await asyncio.sleep(0)
        yield item * 2
        yield -item


def test_an_async_node_yields_its_outputs_in_order(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(50)) > AsyncDouble() > sink
    sink.global_start(runner=runner)
    assert sink.items == [x for i in range(50) for x in (i * 2, -i)]


class AsyncSink(nanostream.NanoNode):
    def setup(self) -> None:
        self.seen: list[Any] = []

    async def process_item(self, item: Any) -> None:
        await asyncio.sleep(0)
        self.seen.append(item)


def test_an_async_sink_is_awaited_once_per_item(runner: str) -> None:
    sink = AsyncSink()
    nanostream.from_iterable("abc") > sink
    sink.global_start(runner=runner)
    assert sink.seen == ["a", "b", "c"]


class AsyncCount(nanostream.NanoNode):
    def __init__(self, n: int, **options: Any) -> None:
        super().__init__(**options)
        self.n = n
        self.acked: list[int] = []

    async def generator(self) -> AsyncIterator[Any]:
        for i in range(self.n):
            await asyncio.sleep(0)
            yield nanostream.Acked(i, lambda i=i: self.acked.append(i))


def test_an_async_source_emits_its_items_and_they_are_acknowledged(runner: str) -> None:
    if runner == "ray":
        pytest.skip("the test reads the acknowledgements the source's copy recorded")
    src, sink = AsyncCount(100), Collect()
    src > AsyncDouble() > sink
    src.global_start(runner=runner)
    assert sink.items == [x for i in range(100) for x in (i * 2, -i)]
    assert src.acked == list(range(100))


class AsyncFails(nanostream.NanoNode):
    def __init__(self, bad: set[int], times: int = 1_000_000, **options: Any) -> None:
        super().__init__(**options)
        self.bad = bad
        self.times = times
        self.calls: dict[int, int] = {}

    async def process_item(self, item: int) -> AsyncIterator[int]:
        self.calls[item] = self.calls.get(item, 0) + 1
        await asyncio.sleep(0)
        if item in self.bad and self.calls[item] <= self.times:
            raise ValueError(f"bad {item}")
        yield item


def test_an_error_in_async_process_item_fails_the_run_naming_the_node(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(10)) > AsyncFails({3}, name="fetch") > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start(runner=runner)
    assert info.value.node == "fetch"
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "bad 3"
    frames = [frame.name for frame in traceback.extract_tb(cause.__traceback__)]
    assert "process_item" in frames  # the coroutine's own frame, where it raised
    assert set(sink.items) <= {0, 1, 2}


def test_async_skip_sends_error_records_to_the_errors_port(runner: str) -> None:
    node = AsyncFails({2, 5}, on_error="skip")
    sink, dead = Collect(), Collect()
    nanostream.from_iterable(range(8)) > node > sink
    node.errors > dead
    sink.global_start(runner=runner)
    assert sink.items == [0, 1, 3, 4, 6, 7]
    assert [(r.item, r.exception_type, r.attempt) for r in dead.items] == [
        (2, "ValueError", 1),
        (5, "ValueError", 1),
    ]


def test_async_retry_tries_an_item_again(runner: str) -> None:
    node = AsyncFails({4}, times=2, on_error="retry", retries=3, backoff=0)
    sink = Collect()
    nanostream.from_iterable(range(6)) > node > sink
    sink.global_start(runner=runner)
    assert sink.items == list(range(6))


class Hangs(nanostream.NanoNode):
    """Awaits forever on item 1; records that its attempt was cancelled."""

    def setup(self) -> None:
        self.cancelled: list[int] = []

    async def process_item(self, item: int) -> AsyncIterator[int]:
        if item == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(item)
                raise
        yield item


def test_a_timeout_cancels_the_attempt_and_the_policy_skips_it(runner: str) -> None:
    if runner == "ray":
        pytest.skip("the test reads what the node's copy recorded")
    node = Hangs(on_error="skip", timeout=0.05)
    sink, dead = Collect(), Collect()
    nanostream.from_iterable(range(3)) > node > sink
    node.errors > dead
    sink.global_start(runner=runner)
    assert sink.items == [0, 2]
    assert node.cancelled == [1]
    (record,) = dead.items
    assert record.exception_type == "TimeoutError"
    assert "took longer than timeout=0.05s" in record.message


class Endless(nanostream.NanoNode):
    def __init__(self) -> None:
        super().__init__()
        self.closed = threading.Event()

    async def generator(self) -> AsyncIterator[int]:
        i = 0
        try:
            while True:
                await asyncio.sleep(0)
                yield i
                i += 1
        finally:
            self.closed.set()


class FirstSeen(Collect):
    def __init__(self) -> None:
        super().__init__()
        self.first = threading.Event()

    def process_item(self, item: Any) -> Iterator[Any]:
        self.first.set()
        yield from super().process_item(item)


def test_stop_ends_an_endless_async_source_and_closes_its_generator(runner: str) -> None:
    if runner == "ray":
        pytest.skip("the test waits on events of the node objects")
    src, sink = Endless(), FirstSeen()
    src > AsyncDouble() > sink
    run = src.global_start(block=False, runner=runner)
    assert run is not None
    assert sink.first.wait(WAIT)
    run.stop()
    run.wait()
    assert src.closed.is_set()
    n = len(sink.items) // 2
    assert n > 0 and sink.items == [x for i in range(n) for x in (i * 2, -i)]


class WaitsForFlag(nanostream.NanoNode):
    """Item 0 awaits a flag that another branch of the graph sets."""

    def __init__(self, flag: threading.Event) -> None:
        super().__init__()
        self.flag = flag

    async def process_item(self, item: int) -> AsyncIterator[Any]:
        if item == 0:
            yield await asyncio.to_thread(self.flag.wait, WAIT)
        else:
            yield item


class SetsFlag(nanostream.NanoNode):
    def __init__(self, flag: threading.Event) -> None:
        super().__init__()
        self.flag = flag

    def process_item(self, item: int) -> None:
        self.flag.set()


def test_a_waiting_async_node_lets_the_other_nodes_run(runner: str) -> None:
    """On the cooperative runner too: the other branch runs while item 0 is awaited."""
    if runner == "ray":
        pytest.skip("the two nodes share an event of the test process")
    flag = threading.Event()
    src, sink = nanostream.from_iterable(range(3), batch_size=1), Collect()
    src > WaitsForFlag(flag) > sink
    src > SetsFlag(flag)
    src.global_start(runner=runner)
    assert sink.items == [True, 1, 2]  # True: the flag was set while item 0 waited


class AsyncNumbers(Numbers):
    """``support.Numbers`` (its position is its state) as an async source."""

    async def generator(self) -> AsyncIterator[int]:
        while self.position < self.stop:
            self.position += 1
            await asyncio.sleep(0)
            yield 1


class AsyncTotal(Total):
    """``support.Total`` (a running total) from an async ``process_item``."""

    async def process_item(self, item: int) -> AsyncIterator[int]:
        await asyncio.sleep(0)
        self.total += item
        yield self.total


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_async_nodes_get_their_state_back_on_a_restart(tmp_path: Path, local_runner: str) -> None:
    """An async source and an async operator resume from the store like plain nodes."""
    path = str(tmp_path / "run.state")
    first = Collect(name="sink")
    AsyncNumbers(3, name="src") > AsyncTotal(name="total") > first
    first.global_start(state=path, runner=local_runner)
    second = Collect(name="sink")
    AsyncNumbers(5, name="src") > AsyncTotal(name="total") > second
    second.global_start(state=path, runner=local_runner)
    assert first.items == [1, 2, 3]
    assert second.items == [4, 5]
