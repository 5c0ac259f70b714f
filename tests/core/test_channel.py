"""The shared output buffer (``TripwireBuffer``): what its full-batch hand-off does with
errors; a source's outbox (``CheckedOutbox``): demand while it sends; the channel
(``Channel``): when a producer waiting for room is woken."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import pytest

import nanostream
import support
from nanostream._core.run import NodeCounters
from nanostream._core.signals import RunAborted
from nanostream._engine import channel as channel_module
from nanostream._engine.channel import END, Channel
from nanostream._engine.outbox import CheckedOutbox, TripwireBuffer


def test_a_full_batch_is_handed_on_and_the_buffer_rearms() -> None:
    batches: list[list[Any]] = []
    buffer = TripwireBuffer(3, batches.append, lambda exc: None)
    for i in range(7):
        buffer.append(i)
    assert batches == [[0, 1, 2], [3, 4, 5]]
    assert buffer.take() == [6]


def test_an_error_in_the_error_handler_of_the_hand_off_is_not_lost() -> None:
    # An abort interrupts a node thread with an exception that may land anywhere, also in
    # the error handler the tripwire calls from __del__: it must be kept, not printed as
    # "Exception ignored in __del__" (which fails this test: warnings are errors).
    kept: list[BaseException] = []
    interrupted = [False]

    def full(items: list[Any]) -> None:
        raise ValueError("the send failed")

    def keep(exc: BaseException) -> None:
        if not interrupted[0]:
            interrupted[0] = True
            raise KeyboardInterrupt  # stands for the interruption landing here
        kept.append(exc)

    buffer = TripwireBuffer(2, full, keep)
    buffer.append(1)
    buffer.append(2)
    assert [type(e) for e in kept] == [KeyboardInterrupt]


def test_a_buffer_collected_with_items_in_it_sends_nothing() -> None:
    """An outbox of a run that never started (its buffer garbage now) must not hand its
    items on from the collector: a send there could wait on a channel nobody reads."""
    sent: list[list[Any]] = []
    buffer = TripwireBuffer(4, sent.append, lambda exc: None)
    buffer.append(1)
    buffer.append(2)
    del buffer
    gc.collect()
    assert sent == []


class DryConsumer:
    """A downstream channel whose consumer runs dry while each batch is being put."""

    def __init__(self) -> None:
        self.batches: list[Any] = []
        self.box: CheckedOutbox | None = None

    def put(self, batch: Any, counters: NodeCounters) -> None:
        self.batches.append(batch)
        assert self.box is not None
        self.box.demand()  # it took the batch at once and asks for the next item

    def put_nowait(self, batch: Any) -> None:
        self.batches.append(batch)

    def room_for(self, batch: list[Any]) -> int:
        return len(batch)


def test_a_demand_while_a_source_sends_is_not_lost() -> None:
    """A consumer that runs dry while a source's batch is on its way asks for the next
    item at once; the source's next item must then go out, not wait in the outbox for a
    full batch (a source that then goes quiet would hold it indefinitely)."""
    consumer = DryConsumer()
    box = CheckedOutbox([consumer], 100, NodeCounters())
    consumer.box = box
    box.demand()  # the consumer is waiting before the source emits anything
    for i in range(3):
        box.outp(i)
    assert consumer.batches == [[0], [1], [2]]  # each sent at once, none held back


class CountingCondition:
    """A ``threading.Condition`` that counts its ``notify_all`` calls."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.notified = 0

    def __enter__(self) -> bool:
        return self.cond.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.cond.__exit__(None, None, None)

    def wait(self, timeout: float | None = None) -> bool:
        return self.cond.wait(timeout)

    def wait_for(self, predicate: Any, timeout: float | None = None) -> Any:
        return self.cond.wait_for(predicate, timeout)

    def notify_all(self) -> None:
        self.notified += 1
        self.cond.notify_all()


def test_a_producer_waiting_for_room_is_woken_once_the_channel_is_half_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A producer blocked on a full channel must be woken by the consumer's gets (else it
    waits for ever); it is woken once the channel is down to half, not at every batch
    taken (each wake-up would put one batch and wait again)."""
    monkeypatch.setattr(channel_module, "WAKE_AFTER_S", 3600.0)  # no wake-up by time here
    waiter = CountingCondition()
    channel = Channel(8, 1, n_producers=1, waiter=waiter)  # 8 batches of one item
    counters = NodeCounters()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(9):  # the ninth waits for room
                channel.put([i], counters)
            channel.put(END, counters)
        except BaseException as exc:
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert support.wait_until(lambda: channel._producers_waiting == 1)
        assert [channel.get(counters) for _ in range(3)] == [[0], [1], [2]]
        assert channel._producers_waiting == 1 and waiter.notified == 0  # 5 left: not yet
        assert channel.get(counters) == [3]  # 4 left, half of 8: the producer is woken
        assert waiter.notified == 1
        assert support.wait_until(lambda: not producer.is_alive()), "never woken"
    finally:
        channel.abort()
        producer.join()
    assert errors == []
    got = []
    while (batch := channel.get(counters)) is not END:
        got.extend(batch)
    assert got == [4, 5, 6, 7, 8]
    assert counters.blocked_output_s > 0


def test_a_producer_that_waited_long_enough_is_woken_at_the_next_batch_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind a slow consumer a producer is not held for half a queue: once it has waited
    ``WAKE_AFTER_S``, the next get wakes it (a node waiting in a put does nothing else;
    a checkpoint's barrier waits for it)."""
    monkeypatch.setattr(channel_module, "WAKE_AFTER_S", 0.0)  # waited long enough at once
    waiter = CountingCondition()
    channel = Channel(8, 1, n_producers=1, waiter=waiter)
    counters = NodeCounters()
    for i in range(8):
        channel.put([i], counters)
    producer = threading.Thread(target=channel.put, args=([8], counters))
    producer.start()
    try:
        assert support.wait_until(lambda: channel._producers_waiting == 1)
        assert channel.get(counters) == [0]  # 7 left, far above half
        assert waiter.notified == 1
        assert support.wait_until(lambda: not producer.is_alive()), "never woken"
    finally:
        channel.abort()
        producer.join()
    assert channel.depth() == 8


def test_producers_that_found_no_room_after_a_wake_up_wait_again_for_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two producers wait on a full channel (fan-in); a get wakes both by time, one puts,
    the other waits again: the next get does not wake it again at once (the time counts
    from the wake-up), or every batch taken would wake the producers, as before."""
    monkeypatch.setattr(channel_module, "WAKE_AFTER_S", 3600.0)
    waiter = CountingCondition()
    channel = Channel(8, 1, n_producers=2, waiter=waiter)
    counters = NodeCounters()
    for i in range(8):
        channel.put([i], counters)
    errors: list[BaseException] = []

    def produce(item: int) -> None:
        try:
            channel.put([item], NodeCounters())
        except BaseException as exc:
            errors.append(exc)

    producers = [threading.Thread(target=produce, args=(item,)) for item in (8, 9)]
    for producer in producers:
        producer.start()
    try:
        assert support.wait_until(lambda: channel._producers_waiting == 2)
        channel._wake_by = 0.0  # as if they had waited WAKE_AFTER_S
        assert channel.get(counters) == [0]  # 7 left: woken by time
        assert waiter.notified == 1
        assert support.wait_until(lambda: channel.depth() == 8 and channel._producers_waiting == 1)
        assert channel.get(counters) == [1]  # 7 left again: the other is not woken at once
        assert waiter.notified == 1
    finally:
        channel.abort()
        for producer in producers:
            producer.join()
    assert [type(e) for e in errors] == [RunAborted]


def test_an_abort_wakes_a_producer_waiting_for_room() -> None:
    channel = Channel(2, 1, n_producers=1)
    counters = NodeCounters()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(3):
                channel.put([i], counters)
        except BaseException as exc:
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    assert support.wait_until(lambda: channel._producers_waiting == 1)
    channel.abort()  # no get will come: the abort alone must wake it
    producer.join()
    assert [type(e) for e in errors] == [RunAborted]


@pytest.mark.parametrize("queue_size", [1, 2, 3, 16])
def test_back_pressure_through_small_queues_loses_nothing(runner: str, queue_size: int) -> None:
    """Producers that wait for room at every size of queue (one batch: woken when it is
    empty; three: at one) pass every item, in order, on every runner."""

    def double(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(2 * x)

    sink = nanostream.testing.Collect()
    nanostream.from_iterable(range(2000)) > nanostream.as_node(double) > sink
    sink.global_start(runner=runner, queue_size=queue_size, batch_size=1)
    assert sink.items == [2 * x for x in range(2000)]


def test_the_design_page_gives_the_wake_up_rule_in_use() -> None:
    text = " ".join((Path(__file__).parents[2] / "docs" / "design.md").read_text().split())
    assert "once the channel is down to half (or once that producer has waited 5 ms" in text
    assert channel_module.WAKE_AFTER_S == 0.005
    assert Channel(8192, 512, n_producers=1).refill_at == 8  # half of 16 batches
