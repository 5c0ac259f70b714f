"""The Ray runner's actor, in this process: the shared runtime, and what is Ray's own.

``NodeHost`` is a plain class that Ray makes an actor; here its remote methods are called
directly on an event loop, so the node's input (calls taken in stream order, waiting for
room) and its notices to the driver are checked without a cluster.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install 'nanostream[ray]'")

import nanostream
from nanostream._core.acks import AckRouting
from nanostream._engine.channel import Channel
from nanostream._engine.node import EngineContext
from nanostream._engine.outbox import CheckedOutbox
from nanostream._engine.reader import InputReader
from nanostream.runners.ray import _actor
from nanostream.runners.ray._actor import HostSpec, NodeHost
from nanostream.runners.ray._transport import LoopCondition, Receiver
from nanostream.runners.ray._wire import dumps, loads
from nanostream.testing import Collect

STREAM = "0:0:out"  # node 0, replica 0, port "out": the source's stream into the sink


@pytest.fixture(autouse=True)
def logging_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``load`` relays the process's ``nanostream`` records to the driver, as in a worker:
    in this process, that ends with the test."""
    logger = logging.getLogger("nanostream")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    monkeypatch.setattr(_actor, "_relay", None)
    yield
    logger.handlers[:] = handlers
    logger.propagate = propagate
    logger.setLevel(level)


class Stopper(nanostream.NanoNode):
    """Asks its run to stop at every item."""

    def process_item(self, item: Any) -> Any:
        self.request_stop()
        yield item


def _host_spec(sink: nanostream.NanoNode) -> tuple[HostSpec, Any]:
    source = nanostream.from_iterable([], name="src")
    source > sink
    plan = nanostream.pipeline_of(source).plan()
    entry = plan.nodes[1]
    spec = HostSpec(
        run_id="run-1",
        name=entry.name,
        index=1,
        replica=0,
        payload=dumps((entry, {})),
        batch_size=4,
        n_streams=1,
        max_in_flight=2,
        linger=0.01,
        sync_state=True,
        ack_routing=dumps(AckRouting(plan)),
    )
    return spec, entry


def _run(scenario: Coroutine[Any, Any, Any]) -> Any:
    try:
        return asyncio.run(scenario)
    finally:  # the node thread reports its end just before it ends
        for thread in threading.enumerate():
            if thread.name.startswith("nanostream-ray"):
                thread.join(10)


async def _finish(host: NodeHost, seq: int) -> dict[str, Any]:
    assert await host.push("run-1", STREAM, seq, [], True)
    return await host.wait_done()


def test_the_actor_runs_its_node_on_the_shared_runtime() -> None:
    spec, entry = _host_spec(Collect(name="sink"))

    async def scenario() -> dict[str, Any]:
        host = NodeHost()
        assert await host.load(spec, {}, {}) == (None, ["ended", "seen"])  # its events
        instance = host.instance
        assert instance is not None
        assert type(instance.context) is EngineContext
        assert type(instance.reader) is InputReader
        assert type(instance.channel) is Channel
        assert [type(b) for b in instance.boxes.values()] == [CheckedOutbox]
        await host.start()
        assert await host.push("run-1", STREAM, 0, [1, 2, 3], False)
        return await _finish(host, 1)

    outcome = _run(scenario())
    assert outcome["state"] == "finished"
    entry.restore_state(loads(outcome["node_state"]))
    assert outcome["stats"]["items_in"] == 3
    assert entry.state()["items"] == [1, 2, 3]


def test_calls_of_a_stream_are_taken_in_their_order() -> None:
    spec, entry = _host_spec(Collect(name="sink"))

    async def scenario() -> dict[str, Any]:
        host = NodeHost()
        await host.load(spec, {}, {})
        second = asyncio.ensure_future(host.push("run-1", STREAM, 1, [3, 4], False))
        await asyncio.sleep(0)  # its turn has not come: it waits on the event loop
        assert not second.done()
        assert await host.push("run-1", STREAM, 0, [1, 2], False)
        assert await second
        await host.start()
        return await _finish(host, 2)

    outcome = _run(scenario())
    entry.restore_state(loads(outcome["node_state"]))
    assert entry.state()["items"] == [1, 2, 3, 4]


def test_a_call_waits_for_room_and_the_node_reading_wakes_it() -> None:
    spec, entry = _host_spec(Collect(name="sink").configure(queue_size=2))

    async def scenario() -> dict[str, Any]:
        host = NodeHost()
        await host.load(spec, {}, {})
        assert await host.push("run-1", STREAM, 0, [1, 2], False)  # full now
        waiting = asyncio.ensure_future(host.push("run-1", STREAM, 1, [3], False))
        await asyncio.sleep(0)
        assert not waiting.done()
        await host.start()  # the node takes [1, 2]: its channel wakes the call
        assert await waiting
        return await _finish(host, 2)

    outcome = _run(scenario())
    entry.restore_state(loads(outcome["node_state"]))
    assert entry.state()["items"] == [1, 2, 3]


def test_a_waiting_call_returns_false_when_the_run_aborts() -> None:
    channel = Channel(1, 1, n_producers=1, waiter=(waiter := LoopCondition()))

    async def scenario() -> bool:
        receiver = Receiver(channel, waiter, asyncio.get_running_loop())
        assert await receiver.put("s", 0, [1], False)
        waiting = asyncio.ensure_future(receiver.put("s", 1, [2], False))
        await asyncio.sleep(0)
        receiver.abort()
        return await waiting

    assert _run(scenario()) is False
    assert list(channel.batches) == [[1]]


def test_the_driver_is_told_each_notice_once() -> None:
    spec, _entry = _host_spec(Stopper(name="stopper"))

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        host = NodeHost()
        await host.load(spec, {}, {})
        await host.start()
        assert await host.push("run-1", STREAM, 0, [1, 2, 3], False)
        first = await host.events("run-1", [])
        await _finish(host, 1)
        return first, await host.events("run-1", [])

    first, last = _run(scenario())
    assert first["notices"] == ["stop"]  # three request_stop() calls: one notice
    assert last["notices"] == [] and last["ended"]


class _Gates:
    """What the slow acknowledgement of :class:`SlowLastAck` and the test wait for (in
    this process: the actor's node is a copy of the test's, these events are shared)."""

    def __init__(self) -> None:
        self.last_ack_running = threading.Event()
        self.last_ack_may_end = threading.Event()
        self.checked = threading.Event()  # the source checked its acks while it ran
        self.seen: list[int] = []  # what it saw: pending acks

    def reset(self) -> None:
        for event in (self.last_ack_running, self.last_ack_may_end, self.checked):
            event.clear()
        self.seen.clear()


GATES = _Gates()


class SlowLastAck(nanostream.NanoNode):
    """Emits 4 acked items; its last ack returns only once ``GATES.last_ack_may_end`` is
    set. ``acked`` records each ack."""

    def __init__(self) -> None:
        super().__init__(name="src", batch_size=1)
        self.acked: list[int] = []

    def generator(self) -> Iterator[Any]:
        for i in range(4):
            yield nanostream.Acked(i, lambda i=i: self._ack(i))

    def _ack(self, i: int) -> None:
        if i == 3:
            GATES.last_ack_running.set()
            assert GATES.last_ack_may_end.wait(10)
        self.acked.append(i)


def test_a_source_reports_its_end_only_after_its_last_ack_has_returned() -> None:
    """The source's actor waits for its acks before it reports its end (with its state):
    an ack that is still running counts as pending.

    The sink's ``reached`` call comes from the test. While the last ack runs, the driver's
    ``run_outcome`` wakes the source waiting for its acks: it looks at its pending acks
    (recorded here) and must go on waiting; its state comes back with every ack.
    """
    GATES.reset()
    source = SlowLastAck()
    source > Collect(name="sink")
    plan = nanostream.pipeline_of(source).plan()
    spec = HostSpec(
        run_id="run-1",
        name="src",
        index=0,
        replica=0,
        payload=dumps((plan.nodes[0], {})),
        batch_size=1,
        n_streams=0,
        max_in_flight=2,
        linger=0.01,
        sync_state=True,
        ack_routing=dumps(AckRouting(plan)),
    )

    async def scenario() -> dict[str, Any]:
        host = NodeHost()
        await host.load(spec, {}, {})
        instance = host.instance
        assert instance is not None
        pending = instance.acks.pending

        def watched() -> int:
            n = pending()
            if GATES.last_ack_running.is_set() and not GATES.last_ack_may_end.is_set():
                GATES.seen.append(n)
                GATES.checked.set()
            return n

        instance.acks.pending = watched  # type: ignore[method-assign]
        await host.start()
        notices: list[str] = []
        while "emitted_all" not in notices:  # it has ended and waits for its acks
            notices += (await host.events("run-1", []))["notices"]
        # Every item and its marker went out (into no channel: the test is the sink).
        reached = asyncio.ensure_future(host.reached("run-1", 0, 1_000_000))
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, GATES.last_ack_running.wait, 10)
        await host.run_outcome("run-1")  # wakes the waiting source: it looks again
        assert await loop.run_in_executor(None, GATES.checked.wait, 10)
        GATES.last_ack_may_end.set()
        await reached
        outcome = await host.wait_done()
        assert host._ack_executor is not None  # the actor's, which its process ends
        host._ack_executor.shutdown()
        return outcome

    outcome = _run(scenario())
    assert outcome["state"] == "finished"
    assert GATES.seen and all(GATES.seen), GATES.seen  # the running ack was pending
    plan.nodes[0].restore_state(loads(outcome["node_state"]))
    assert source.acked == [0, 1, 2, 3]
