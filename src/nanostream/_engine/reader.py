"""The ``inp`` of a node, the same on every runner: slices, ticks, markers.

A node's channel hands over *batches*; :class:`InputReader` gives the node its items in
*slices* of those batches, and between two slices the runner gets a turn (``after_slice``:
the threads runner sends the node's outputs, the cooperative one lets other nodes run once
the node's time slice is over, the Ray one does nothing: a remote call is too dear for a
partial batch). Slices start at one item and double while the node is
quick, so a slow node delivers its first outputs at once and a fast one works on whole
batches (:func:`next_slice_len`).

With a ``tick_interval``, the runner's ``get`` returns ``IDLE`` when no batch came for
that long, and the node reads :data:`TICKS`. Acknowledgement markers (see
:mod:`nanostream._core.acks`) and checkpoint barriers (see
:mod:`nanostream._engine.checkpoint`) are taken out of the channel here: a marker or a
barrier is read only once the node has consumed every item before it, which is when it may
pass it on.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import chain
from operator import length_hint
from typing import Any, cast

from .._core.acks import AckCoordinator, Marker, NodeMarkers
from .._core.errors import NodeProtocolError
from .._core.run import NodeCounters
from .._core.ticks import TICKS
from .channel import END, IDLE
from .checkpoint import Barrier, NodeBarriers

__all__ = [
    "COOPERATIVE_LINGER_S",
    "THREADS_LINGER_S",
    "TICKS",
    "Input",
    "InputReader",
    "next_slice_len",
]

#: A node whose input slice takes longer than this gets smaller slices, so its outputs
#: (sent when it reads again) are not held back behind a long backlog. On one thread a
#: slice holds up every other node too, so the cooperative runner aims shorter.
THREADS_LINGER_S = 0.05
COOPERATIVE_LINGER_S = 0.005


def next_slice_len(slice_len: int, elapsed: float, linger: float, max_slice: int) -> int:
    """The size of a node's next input slice, after one of ``slice_len`` took ``elapsed`` s.

    Slices start at one item and double while the node is quick (a slice well under
    ``linger``), up to ``max_slice``; one that took longer than ``linger`` shrinks so the
    next takes about half of it. So a slow node delivers each output promptly, and a fast
    node works on whole batches.

    Example:
        >>> from nanostream._engine.reader import next_slice_len
        >>> next_slice_len(4, 0.0001, 0.05, 512), next_slice_len(64, 0.2, 0.05, 512)
        (8, 8)
    """
    if elapsed > linger and slice_len > 1:
        return max(1, int(slice_len * linger / elapsed / 2))
    if elapsed < linger / 8 and slice_len < max_slice:
        return min(max_slice, slice_len * 2)
    return slice_len


class Input(chain[Any]):
    """A node's ``inp``: its items one by one, or (:meth:`slices`) a slice at a time.

    Iterating gives the items at C speed (an ``itertools.chain`` of the slices). A node
    that takes its items in runs rather than one by one (a sink that buffers rows) may
    read the slices themselves instead, with no step per item; as a source's ``outp``
    may offer ``extend``, a node's ``inp`` may offer ``slices``, so a node function
    looks for it with ``getattr`` and reads its items one by one without it.

    Example:
        >>> from nanostream._core.run import NodeCounters
        >>> from nanostream._engine.channel import END
        >>> batches = [[1, 2, 3], END]
        >>> reader = InputReader(
        ...     "n", 0, NodeCounters(), max_slice=512, tick=None, acks=None, holds=None,
        ...     forward=print,
        ... )
        >>> inp = reader.items(lambda timeout: batches.pop(0), lambda: None)
        >>> [list(part) for part in inp.slices()]
        [[1], [2, 3]]
    """

    __slots__ = ("_slices",)

    _slices: Generator[Iterable[Any], None, None]

    def slices(self) -> Iterator[Iterable[Any]]:
        """The input's slices: each an iterator over a run of items, or :data:`TICKS`.

        Read each slice to its end before taking the next (else the node fails): what
        the node has read is what it has consumed (acknowledgements, checkpoints). A
        node reads its input either by items or by slices: once an item has been read,
        this is refused.
        """
        if inspect.getgeneratorstate(self._slices) != inspect.GEN_CREATED:
            raise NodeProtocolError(
                "a node function reads its input either item by item or by slices; "
                "inp.slices() came after items were read"
            )
        return self._slices


class InputReader:
    """The items of one node's input, in slices, with the runner's turn between slices.

    ``get(timeout)`` is the runner's way to take the next batch from the node's channel
    (waiting for one): a list of items, a ``Marker``, ``IDLE`` after ``timeout`` seconds
    without input, or ``END``. ``after_slice()`` runs after each slice the node consumed.

    Example:
        >>> from nanostream._core.run import NodeCounters
        >>> from nanostream._engine.channel import END
        >>> batches = [[1, 2, 3], END]
        >>> reader = InputReader(
        ...     "n", 0, NodeCounters(), max_slice=512, tick=None, acks=None, holds=None,
        ...     forward=print,
        ... )
        >>> items = reader.items(lambda timeout: batches.pop(0), lambda: print("turn"))
        >>> list(items)
        turn
        turn
        [1, 2, 3]
        >>> reader.exhausted
        True
    """

    __slots__ = (
        "acks",
        "barriers",
        "batch",
        "counters",
        "exhausted",
        "forward",
        "holds",
        "index",
        "linger",
        "markers",
        "max_slice",
        "name",
        "priority",
        "slice",
        "slice_end",
        "tick",
        "track_busy",
    )

    def __init__(
        self,
        name: str,
        index: int,
        counters: NodeCounters,
        *,
        max_slice: int,
        tick: float | None,
        acks: AckCoordinator | None,
        holds: bool | None,
        forward: Callable[[Marker], None],
        linger: float = THREADS_LINGER_S,
        track_busy: bool = False,
    ) -> None:
        self.name = name
        self.index = index
        self.counters = counters
        self.max_slice = max_slice
        self.tick = tick
        self.acks = acks
        self.holds = holds
        self.forward = forward  # passes a marker on: flush the outputs, then put it
        self.linger = linger
        self.track_busy = track_busy  # set counters.busy_since (for the monitor)
        self.exhausted = False
        self.markers: NodeMarkers | None = None
        # The node's checkpoint barriers, in a run with a state store (set by the run).
        self.barriers: NodeBarriers | None = None
        # Called after each slice in a run with unaligned checkpoints: takes a barrier put
        # at the head of the channel, so it does not wait for the rest of the batch.
        self.priority: Callable[[], None] | None = None
        # The batch being read (its items not read yet are in flight at such a barrier).
        self.batch: Any = ()
        # The slice the node is reading, and how many items it and those before it hold:
        # the node has read slice_end - (what is left in the slice) items.
        self.slice: Iterator[Any] = iter(())
        self.slice_end = 0

    def items(self, get: Callable[[float | None], Any], after_slice: Callable[[], None]) -> Input:
        """The node's ``inp``: an iterator over the items of every batch ``get`` returns
        (or, :meth:`Input.slices`, over its slices)."""
        slices = self.slices(get, after_slice)
        inp = cast(Input, Input.from_iterable(slices))
        inp._slices = slices
        return inp

    def slices(
        self, get: Callable[[float | None], Any], after_slice: Callable[[], None]
    ) -> Generator[Iterable[Any], None, None]:
        """The slices of the input, ``TICKS`` when idle; ends at ``END``."""
        counters = self.counters
        clock = time.monotonic
        slice_len = 1
        tick, linger, max_slice, busy = self.tick, self.linger, self.max_slice, self.track_busy
        while True:
            batch = get(tick)
            if batch is END:
                self.exhausted = True
                return
            if batch is IDLE:
                self.slice, self.slice_end = iter(()), counters.items_in
                yield TICKS
                after_slice()
                if self.markers is not None:
                    self.markers.apply()
                continue
            if type(batch) is Marker:
                self.markers_of().arrived(batch, counters.items_in)
                continue
            if type(batch) is Barrier:
                assert self.barriers is not None, "a barrier reached a run without a store"
                self.barriers.arrived(batch)
                continue
            n = len(batch)
            self.batch = batch
            base = counters.items_in
            counters.items_in += n
            start = 0
            while start < n:
                part = (
                    batch if (start == 0 and n <= slice_len) else batch[start : start + slice_len]
                )
                start += len(part)
                self.slice = it = iter(part)
                self.slice_end = base + start
                blocked = counters.blocked_output_s
                t0 = clock()
                if busy:
                    counters.busy_since = t0
                yield it
                if busy:
                    counters.busy_since = None
                if length_hint(it):  # only by slices: the node took the next one early
                    raise NodeProtocolError(
                        f"node {self.name!r} took its next input slice before reading "
                        "this one to its end (its items would be lost)"
                    )
                elapsed = clock() - t0 - (counters.blocked_output_s - blocked)
                after_slice()
                if self.markers is not None:
                    self.markers.apply()
                if self.priority is not None:
                    self.priority()
                slice_len = next_slice_len(slice_len, elapsed, linger, max_slice)

    def unread(self) -> list[Any]:
        """The items of the batch being read that the node has not read yet."""
        n = self.counters.items_in - (self.slice_end - length_hint(self.slice))
        batch = self.batch
        return list(batch[len(batch) - n :]) if n > 0 else []

    # ----------------------------------------------------------------- acknowledgements
    def markers_of(self) -> NodeMarkers:
        """The node's markers (made when first needed)."""
        markers = self.markers
        if markers is None:
            assert self.acks is not None, "a marker reached a run without acknowledgements"
            markers = self.markers = NodeMarkers(
                self.name, self.index, self.acks, self.holds, self.forward
            )
        return markers

    def release(self, keep: int) -> None:
        """The node has emitted all it read except its last ``keep`` items."""
        read = self.slice_end - length_hint(self.slice)
        self.markers_of().request_release(read - keep)

    def end_outputs(self) -> None:
        """The node ended its outputs: what it read so far was emitted; markers stop here."""
        if self.acks is not None:
            markers = self.markers_of()
            markers.finish()
            markers.ended = True
        if self.barriers is not None:
            self.barriers.end_outputs()

    @property
    def terminal(self) -> bool:
        """True when the node's markers go to no channel: it is a sink, whose markers
        reach the acknowledgement coordinator when they pass."""
        return self.markers is not None and self.markers.terminal

    def finish(self) -> None:
        """The node function returned: its held markers go out (before its end)."""
        if self.markers is not None:
            self.markers.finish()
