"""The shared output buffer (``TripwireBuffer``): what its full-batch hand-off does with
errors; a source's outbox (``CheckedOutbox``): demand while it sends."""

from __future__ import annotations

import gc
from typing import Any

from nanostream._core.run import NodeCounters
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
