"""The buffered sink base (``connectors/_buffered_sink.py``): batches of ``flush_size``,
read a slice at a time from a runner, one item at a time from a plain iterable."""

from __future__ import annotations

from typing import Any

import nanostream
from nanostream.connectors._buffered_sink import BufferedSink


class Batches(BufferedSink):
    """Keeps each batch it flushes; with ``keep``, a flush keeps its rows until the end
    (as ``SQLSink(exactly_once=True)`` does until a checkpoint)."""

    def __init__(self, size: int, keep: bool = False) -> None:
        super().__init__(name="batches")
        self._start_buffer(flush_size=size, flush_interval=None)
        self.keep = keep
        self.ending = False
        self.written: list[list[Any]] = []
        self.flushes = 0

    def as_function(self) -> Any:
        return self._buffer_function()

    def setup(self) -> None:
        self._empty_buffer()

    def flush(self) -> None:
        self.flushes += 1
        if self._pending and (self.ending or not self.keep):
            self.written.append(self._pending)
            self._pending = []
            self.release_items()

    def cleanup(self) -> None:
        self.ending = True
        super().cleanup()


def test_items_are_written_in_batches_of_flush_size(runner: str) -> None:
    sink = Batches(1000)
    nanostream.from_iterable(range(2500)) > sink
    run = sink.global_start(runner=runner, block=False)
    assert run.wait(30)
    if runner != "ray":  # the node object stays in its actor there
        assert [len(b) for b in sink.written] == [1000, 1000, 500]
        assert [x for b in sink.written for x in b] == list(range(2500))
    assert run.stats()["batches"].items_in == 2500


def test_a_flush_that_keeps_its_rows_holds_them_until_the_end() -> None:
    sink = Batches(1000, keep=True)
    nanostream.from_iterable(range(2500)) > sink
    sink.global_start()
    assert sink.written == [list(range(2500))]
    assert sink.flushes >= 2  # asked at each full batch, and at the end


def test_the_node_function_takes_a_plain_iterable_one_item_at_a_time() -> None:
    sink = Batches(2)
    sink.as_function()(iter([0, 1, 2, nanostream.TICK, 3, 4]), print)
    assert sink.written == [[0, 1], [2], [3, 4]]  # the tick wrote what was pending
