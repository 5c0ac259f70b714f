"""Sinks that write in batches: the buffering the SQL and Redis sinks share."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from operator import length_hint
from typing import Any

from .._core.context import node_label
from .._core.node import NanoNode, NodeFunction
from .._core.node_function import restore_state
from .._core.ticks import TICKS
from ..operators._operator import check_positive
from ._toolkit import input_slices

__all__ = ["BufferedSink"]


class BufferedSink(NanoNode):
    """A sink that writes its items in batches, and says when they are written.

    Items (as :meth:`encode` makes them) wait in ``_pending`` until ``flush_size`` of them
    are there, the oldest has waited ``flush_interval`` seconds (also on a quiet input:
    the node asks for ticks), or the input ends; then :meth:`flush` writes them (while
    the stream goes on, through :meth:`flush_batch`, which a subclass may make finish
    later). A subclass defines ``flush()`` (write ``_pending``, then empty it and call
    ``release_items()``, so that sources' acknowledgements wait until the write is done)
    and a ``setup()`` that calls :meth:`_empty_buffer`; its ``__init__`` calls
    :meth:`_start_buffer`.

    Example:
        >>> import nanostream
        >>> from nanostream.connectors._buffered_sink import BufferedSink
        >>> class Batches(BufferedSink):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self._start_buffer(flush_size=2, flush_interval=None)
        ...         self.written = []
        ...     def setup(self):
        ...         self._empty_buffer()
        ...     def flush(self):
        ...         if self._pending:
        ...             self.written.append(self._pending)
        ...             self._pending = []
        ...             self.release_items()
        >>> sink = Batches()
        >>> nanostream.from_iterable(range(5)) > sink
        Batches(name=None)
        >>> sink.global_start()
        >>> sink.written
        [[0, 1], [2, 3], [4]]
    """

    holds_items = True  # items are done once their batch is written (flush)

    flush_size: int
    flush_interval: float | None
    _pending: list[Any]
    _since: float  # when the oldest pending item arrived

    def _start_buffer(self, flush_size: int, flush_interval: float | None) -> None:
        """Set the batch options (from ``__init__``)."""
        self.flush_size = flush_size
        label = node_label(self, with_class=True)
        check_positive(label, "flush_interval", flush_interval, unit="seconds", optional=True)
        self.flush_interval = flush_interval
        self.tick_interval = self.flush_interval  # told when the input is quiet that long
        self._empty_buffer()

    def _empty_buffer(self) -> None:
        """Nothing pending (from ``setup()``, and after each write)."""
        self._pending = []
        self._since = 0.0

    def encode(self, item: Any) -> Any:
        """What is buffered for ``item`` (the item itself, unless a subclass says)."""
        return item

    def flush(self) -> None:
        """Write what is pending, and return once it is written (subclasses)."""
        raise NotImplementedError

    def flush_batch(self) -> None:
        """Write what is pending while the stream goes on (a full batch, or one due by
        ``flush_interval``): :meth:`flush` unless a subclass says.

        A subclass may return before the write ends (``SQLSink`` commits on SQLite in a
        thread of its own) if it releases the batch's items only once it is written, lets
        :meth:`flush` wait for it, and finishes it in :meth:`written` or the next write.
        """
        self.flush()

    def written(self) -> None:
        """Between slices of the input: finish a write that :meth:`flush_batch` began and
        that has ended (release its items); nothing unless a subclass says."""

    def process_item(self, item: Any) -> Iterator[Any]:
        pending = self._pending
        if not pending:
            self._since = time.monotonic()
        pending.append(self.encode(item))
        if len(pending) >= self.flush_size or self._due():
            self.flush()
        yield from ()

    def tick(self) -> None:
        """The input has been quiet for ``flush_interval``: write what is pending."""
        self.flush()
        self.release_items()  # everything read is written

    def cleanup(self) -> None:
        self.flush()

    def snapshot_state(self) -> Any:
        """At a checkpoint, write what is pending first (nothing to keep: at-least-once).

        So a checkpoint never counts as done a row that is not in the sink yet. A sink
        that writes exactly once (``SQLSink(exactly_once=True)``) keeps its rows instead.

        Example:
            >>> from nanostream.nodes.sql import SQLSink
            >>> sink = SQLSink("sqlite://", "t", flush_interval=None)
            >>> sink._pending.append({"a": 1})
            >>> sink.flush = lambda: print("written", sink._pending)
            >>> sink.snapshot_state()
            written [{'a': 1}]
        """
        pending = self._pending
        self.flush()
        if self._pending is not pending:  # the node function holds this list
            pending.clear()
            self._pending = pending
        return None

    def restore_state(self, state: Any) -> None:
        """Nothing to restore: :meth:`snapshot_state` wrote what was pending.

        Example: the one of :meth:`snapshot_state` shows the pair.
        """

    def _due(self) -> bool:
        interval = self.flush_interval
        return interval is not None and time.monotonic() - self._since >= interval

    def _buffer_function(self) -> NodeFunction:
        """The node function: :meth:`process_item` and ticks, without a step per item.

        It reads its input a slice at a time where the runner offers slices
        (``inp.slices()``): the items of a slice go into ``_pending`` in one C call, up to
        ``flush_size`` at a time, and the flush deadline is checked once per slice.
        """
        self.validate()
        node = self
        encode = None if type(self).encode is BufferedSink.encode else self.encode
        writes_behind = type(self).written is not BufferedSink.written

        def buffered_sink(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            node.setup()
            restore_state(node)
            parts = input_slices(inp)
            pending = node._pending
            size = node.flush_size
            interval = node.flush_interval
            clock = time.monotonic
            due = 0.0  # when the oldest pending item has waited flush_interval
            for part in parts:
                if part is TICKS:
                    node.tick()
                    pending = node._pending
                    continue
                while True:  # until the slice is read (flush_size at a time)
                    if interval is not None and not pending:
                        node._since = clock()
                        due = node._since + interval
                    room = size - len(pending)
                    # The rest of the slice goes in when it fits, or when the last flush
                    # kept its rows (exactly once: they wait for a checkpoint, see flush).
                    if room <= 0 or length_hint(part, room + 1) <= room:
                        pending.extend(part if encode is None else map(encode, part))
                        if len(pending) >= size:
                            node.flush_batch()
                            pending = node._pending
                        break
                    taken = islice(part, room)
                    pending.extend(taken if encode is None else map(encode, taken))
                    node.flush_batch()
                    pending = node._pending
                if interval is not None and pending and clock() >= due:
                    node.flush_batch()
                    pending = node._pending
                if writes_behind:
                    node.written()
            node.cleanup()

        return buffered_sink
