"""Bounded channels between threads, and the outboxes that fill them in batches.

Items move between threads as *batches* (lists). A node's ``outp`` appends to its outbox;
the outbox sends a batch downstream when it holds ``batch_size`` items, and a node that
reads input sends whatever it holds before it reads its next batch. So under load batches
are full, and under light load a lone item is sent as soon as the node looks for more work.

Two outboxes exist, for speed:

* :class:`TripwireOutbox`, for nodes that read input. Its ``outp`` is the ``append`` of a
  ``collections.deque`` with ``maxlen=batch_size``, a C method with no Python frame. The
  deque's leftmost slot holds a *tripwire* object; the append that fills the deque pushes
  the tripwire out, and the tripwire's ``__del__`` (which CPython runs at once, in the
  appending thread) sends the batch. That bounds the outbox without a Python-level check per
  item. On interpreters without reference counting a plain checked ``outp`` is used.
* :class:`CheckedOutbox`, for sources (which never read, so there is no read to flush at).
  Its ``outp`` is a small Python function that also honours *demand*: when a consumer runs
  dry it asks its producers to send at once, so a slow source's items are never held back.

A queue is bounded by items (``queue_size``) and, with the ``queue_bytes`` option, also by
the approximate bytes of the items waiting in it (:class:`ByteBudget`, shared by every
runner's channel): a producer then puts only as many items of a batch as fit, and waits
for the rest; one item always passes into an empty queue, however large.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from .._core import fast
from .._core.errors import NodeProtocolError
from .._core.monitor import ABORT_GRACE_S
from .._core.run import NodeCounters
from .._core.signals import RunAborted, SourceStopped

__all__ = [
    "END",
    "Downstream",
    "Waiter",
    "IDLE",
    "ByteBudget",
    "Channel",
    "TripwireFlush",
    "batch_extend",
    "checked_outp",
    "next_slice_len",
    "CheckedOutbox",
    "Outbox",
    "TripwireBuffer",
    "TripwireOutbox",
    "item_size",
]


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Any = _End()
"""Put into a channel by each producer when it has finished."""


class _Idle:
    __slots__ = ()

    def __repr__(self) -> str:
        return "IDLE"


IDLE: Any = _Idle()
"""Returned by :meth:`Channel.get` when its timeout passed with nothing to read."""

_REFCOUNTED = sys.implementation.name == "cpython"

_FLAT = (bytes, bytearray, str)
_CONTAINERS = (list, tuple, dict, set, frozenset)
_SIZE_DEPTH = 4  # how deep item_size looks into nested containers
_SIZE_SAMPLE = 32  # the elements it looks at in one container; more are extrapolated


def item_size(item: Any, _depth: int = _SIZE_DEPTH) -> int:
    """The approximate size of ``item`` in bytes, as a ``queue_bytes`` budget counts it.

    ``len()`` of ``bytes``, ``bytearray`` and ``str``, ``nbytes`` of a ``memoryview``;
    a ``list``, ``tuple``, ``set`` or ``dict`` adds the sizes of its elements (of a dict,
    its values), nested up to 4 deep; of a container with more than 32 elements the first
    32 are measured and the rest counted at their average. Anything else is
    ``sys.getsizeof(item)``, which does not look inside the object.

    Example:
        >>> from nanostream._engine.channel import item_size
        >>> item_size(b"x" * 65536), item_size({"id": 1, "data": b"x" * 65536}) > 65536
        (65536, True)
        >>> item_size({"payload": {"body": b"x" * 65536}}) > 65536   # nested: counted too
        True
    """
    if isinstance(item, _FLAT):
        return len(item)
    if isinstance(item, memoryview):
        return item.nbytes
    if _depth and isinstance(item, _CONTAINERS):
        values = item.values() if isinstance(item, dict) else item
        total = sys.getsizeof(item)
        n = len(item)
        if n <= _SIZE_SAMPLE:
            return total + sum(item_size(x, _depth - 1) for x in values)
        sample = sum(item_size(x, _depth - 1) for x in itertools.islice(values, _SIZE_SAMPLE))
        return total + sample * n // _SIZE_SAMPLE
    return sys.getsizeof(item)


class ByteBudget:
    """The bytes waiting in one queue with a ``queue_bytes`` budget (any runner's channel).

    The channel calls :meth:`added` for everything it appends (batches, ends, markers, in
    order) and :meth:`removed` for everything it pops, so ``held`` is the approximate
    size of the items waiting. :meth:`fit` says how many items of a batch may go in now.
    Not thread-safe: a threaded channel uses it under its lock.

    Example:
        >>> from nanostream._engine.channel import ByteBudget
        >>> budget = ByteBudget(100)
        >>> sizes = [60, 60, 60]
        >>> budget.fit(sizes, 0)                # items 0 .. 1 (excluded) fit
        1
        >>> part, end = budget.take(["a", "b", "c"], sizes, 0)
        >>> part, end, budget.held
        (['a'], 1, 60)
        >>> budget.fit(sizes, end) == end       # full: item 1 must wait
        True
        >>> budget.removed()                    # the consumer took 'a'
        >>> budget.fit([500], 0)                # one item always goes into an empty queue
        1
    """

    __slots__ = ("_sizes", "held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._sizes: deque[int] = deque()

    def fit(self, sizes: list[int], start: int) -> int:
        """The end of the items ``start``, ``start + 1``, ... that fit in the queue now."""
        held = self.held
        end, n = start, len(sizes)
        while end < n and (held + sizes[end] <= self.limit or held == 0):
            held += sizes[end]
            end += 1
        return end

    def added(self, nbytes: int) -> None:
        """Something of ``nbytes`` was appended to the queue (0 for an end or a marker)."""
        self._sizes.append(nbytes)
        self.held += nbytes

    def removed(self) -> None:
        """The oldest thing in the queue was taken out."""
        self.held -= self._sizes.popleft()

    def take(self, batch: list[Any], sizes: list[int], start: int) -> tuple[list[Any], int]:
        """The part of ``batch`` from ``start`` that fits now, counted as added; and its end.

        The caller appends the part to the queue; it checks first that :meth:`fit` lets at
        least one item in.
        """
        end = self.fit(sizes, start)
        part = batch if start == 0 and end == len(batch) else batch[start:end]
        self.added(sum(sizes[start:end]))
        return part, end


class Waiter(Protocol):
    """How the two sides of a :class:`Channel` wait for each other and wake each other.

    A ``threading.Condition`` is one (the threads runner); the cooperative runner's waits
    switch greenlets instead (``runners._hub``); on Ray, its ``notify_all`` also wakes the
    remote calls waiting for room (``runners.ray._transport``). ``wait`` may raise
    ``RunAborted``.
    """

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Any: ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until notified (or for ``timeout`` seconds)."""

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true (or for ``timeout`` seconds); its last value."""

    def notify_all(self) -> None:
        """Wake every waiter."""


class Downstream(Protocol):
    """Where an outbox sends: the producer side of a :class:`Channel`.

    A :class:`Channel` is one; so is what stands for another process's channel (the Ray
    runner's ``Target``, whose ``put`` is a remote call). ``batch`` is a list of items,
    ``END`` or an acknowledgement marker.
    """

    def put(self, batch: Any, counters: NodeCounters) -> None:
        """Add a batch, waiting while there is no room (back-pressure)."""

    def put_nowait(self, batch: Any) -> None:
        """Add a batch without waiting for room."""

    def room_for(self, batch: list[Any]) -> int:
        """How many leading items of ``batch`` would go in now without waiting."""


class Channel:
    """The input queue of one node: batches from one or more producers, bounded.

    At most ``max_batches`` batches wait in it (each producer may exceed that by one batch
    when several race for the last slot). With ``queue_bytes``, the items waiting also
    take at most that many bytes (see :class:`ByteBudget`; a batch goes in in parts), and
    the channel's bookkeeping is done under its lock. The consumer sees the end once every
    producer has put ``END``. How the two sides wait and wake is the ``waiter``'s (by
    default a ``threading.Condition``): the same channel serves every runner.

    Example:
        >>> from nanostream._core.run import NodeCounters
        >>> channel, counters = Channel(8, 2, n_producers=1), NodeCounters()
        >>> channel.put([1, 2], counters)
        >>> channel.put(END, counters)
        >>> channel.get(counters), channel.get(counters)
        ([1, 2], END)
    """

    __slots__ = (
        "_aborted",
        "_cond",
        "_consumer_waiting",
        "_ends",
        "_producers_waiting",
        "batches",
        "budget",
        "capacity",
        "capacity_bytes",
        "max_batches",
        "producers",
    )

    def __init__(
        self,
        queue_size: int,
        batch_size: int,
        n_producers: int,
        queue_bytes: int | None = None,
        waiter: Waiter | None = None,
    ) -> None:
        self.max_batches = max(1, queue_size // max(1, batch_size))
        self.capacity = queue_size
        self.capacity_bytes = queue_bytes
        self.budget = ByteBudget(queue_bytes) if queue_bytes is not None else None
        self.batches: deque[Any] = deque()  # oldest first
        self._cond = waiter if waiter is not None else threading.Condition(threading.Lock())
        self._consumer_waiting = False
        self._producers_waiting = 0
        self._ends = n_producers
        self._aborted = False
        self.producers: list[Outbox] = []

    def depth(self) -> int:
        """Items waiting in the channel now."""
        return sum(len(b) for b in list(self.batches) if b is not END)

    def producer_waits(self, waiting: bool) -> None:
        """A producer that waits for room outside :meth:`put` (the Ray runner's remote calls,
        on the actor's event loop) starts or stops waiting: meanwhile every ``get`` wakes
        the waiter, whose ``notify_all`` wakes that producer too."""
        with self._cond:
            self._producers_waiting += 1 if waiting else -1

    def depth_bytes(self) -> int:
        """Approximate bytes of the items waiting now (0 without a ``queue_bytes`` budget)."""
        return self.budget.held if self.budget is not None else 0

    # ----------------------------------------------------------------- producer side
    def put(self, batch: Any, counters: NodeCounters) -> None:
        """Add a batch, waiting while the channel is full."""
        if self.budget is not None:
            self._put_within_budget(batch, counters)
            return
        dq = self.batches
        if len(dq) >= self.max_batches:
            cond = self._cond
            start = time.monotonic()
            counters.output_wait_since = start
            with cond:
                self._producers_waiting += 1
                try:
                    while len(dq) >= self.max_batches and not self._aborted:
                        cond.wait()
                finally:
                    self._producers_waiting -= 1
                    counters.output_wait_since = None
                    counters.blocked_output_s += time.monotonic() - start
            if self._aborted:
                raise RunAborted
        dq.append(batch)
        if self._consumer_waiting:
            with self._cond:
                self._cond.notify_all()

    def _put_within_budget(self, batch: Any, counters: NodeCounters) -> None:
        """``put`` with a byte budget: the batch goes in in parts that fit, in order."""
        budget = self.budget
        assert budget is not None
        dq, cond = self.batches, self._cond
        if type(batch) is not list:  # END or a marker: no items, no bytes
            batch, sizes = [batch], [0]
            whole = True
        else:
            sizes = [item_size(x) for x in batch]
            whole = False
        start, n = 0, len(batch)
        while start < n:
            with cond:
                if len(dq) >= self.max_batches or budget.fit(sizes, start) == start:
                    waited_from = time.monotonic()
                    counters.output_wait_since = waited_from
                    self._producers_waiting += 1
                    try:
                        while not self._aborted and (
                            len(dq) >= self.max_batches or budget.fit(sizes, start) == start
                        ):
                            cond.wait()
                    finally:
                        self._producers_waiting -= 1
                        counters.output_wait_since = None
                        counters.blocked_output_s += time.monotonic() - waited_from
                    if self._aborted:
                        raise RunAborted
                part, start = budget.take(batch, sizes, start)
                dq.append(part[0] if whole else part)
                if self._consumer_waiting:
                    cond.notify_all()

    def put_nowait(self, batch: Any) -> None:
        """Add a batch without waiting (the bound is soft by one batch here)."""
        budget = self.budget
        if budget is not None:
            with self._cond:
                self.batches.append(batch)
                budget.added(sum(map(item_size, batch)) if type(batch) is list else 0)
                self._cond.notify_all()
            return
        self.batches.append(batch)
        if self._consumer_waiting:
            with self._cond:
                self._cond.notify_all()

    def room_for(self, batch: list[Any]) -> int:
        """How many leading items of ``batch`` would go in now without waiting."""
        if len(self.batches) >= self.max_batches:
            return 0
        budget = self.budget
        return len(batch) if budget is None else budget.fit([item_size(x) for x in batch], 0)

    def _pop_counted(self) -> Any:
        """``popleft`` with a byte budget: under the lock, waking waiting producers."""
        budget = self.budget
        assert budget is not None
        with self._cond:
            batch = self.batches.popleft()
            budget.removed()
            if self._producers_waiting:
                self._cond.notify_all()
        return batch

    # ----------------------------------------------------------------- consumer side
    def get(self, counters: NodeCounters, timeout: float | None = None) -> Any:
        """The next batch, waiting for one; ``END`` once every producer has finished.

        With ``timeout``, :data:`IDLE` when nothing arrived for that many seconds.
        """
        dq = self.batches
        pop = dq.popleft if self.budget is None else self._pop_counted
        while True:
            try:
                batch = pop()
            except IndexError:
                for producer in self.producers:
                    producer.demand()
                if dq:
                    continue
                start = time.monotonic()
                with self._cond:
                    self._consumer_waiting = True
                    try:
                        self._cond.wait_for(lambda: dq or self._aborted, timeout)
                    finally:
                        self._consumer_waiting = False
                counters.blocked_input_s += time.monotonic() - start
                if self._aborted:
                    raise RunAborted from None
                if not dq:
                    return IDLE
                continue
            if self._producers_waiting:
                with self._cond:
                    self._cond.notify_all()
            if batch is END:
                self._ends -= 1
                if self._ends <= 0:
                    return END
                continue
            return batch

    def take_head(self, kind: type) -> Any:
        """The batch at the head when it is a ``kind`` (taken out), else None; the consumer's
        thread only: a node amid an item takes a checkpoint barrier that follows it so."""
        dq = self.batches
        if not dq or type(dq[0]) is not kind:
            return None
        batch = dq.popleft() if self.budget is None else self._pop_counted()
        if self._producers_waiting:
            with self._cond:
                self._cond.notify_all()
        return batch

    def abort(self) -> None:
        """Wake every waiter; they raise ``RunAborted``."""
        self._aborted = True
        with self._cond:
            self._cond.notify_all()


AFTER_END = (
    "the node emitted an item after it ended its outputs (end_outputs()); from then on it "
    "may only read its input"
)


class Outbox:
    """Collects one node's outputs and sends them to its downstream channels in batches.

    The same outboxes serve every runner; a runner adds its own turns through the
    hooks of :class:`TripwireOutbox` and :class:`CheckedOutbox`.
    """

    outp: Callable[[Any], Any]

    def __init__(
        self, channels: Sequence[Downstream], batch_size: int, counters: NodeCounters
    ) -> None:
        self.channels = channels
        self.batch_size = batch_size
        self.counters = counters
        self.aborted = False
        self.ended = False

    def _send(self, items: list[Any]) -> None:
        self.counters.items_out += len(items)
        for channel in self.channels:
            channel.put(items, self.counters)

    def flush(self) -> None:
        """Send what is buffered (called by the node's own thread)."""
        raise NotImplementedError

    def close(self) -> None:
        """Send what is buffered, then the end-of-stream marker (once)."""
        self.flush()
        if self.ended:
            return
        self.ended = True
        self._dispose()
        for channel in self.channels:
            channel.put(END, self.counters)

    def _dispose(self) -> None:
        """Release the buffer (after close or abort)."""

    def demand(self) -> None:
        """A consumer has run dry: send buffered items soon (called from its thread)."""

    def request_stop(self) -> None:
        """The run is stopping (sources end at their next ``outp``)."""

    def abort(self) -> None:
        """The run is aborting."""
        self.aborted = True

    def preempt(self, within: int = 0) -> None:
        """The node's time slice is over: a source sends at its next ``outp`` (or once
        ``within`` more items are buffered: a checkpoint counted in items is due then)."""

    def holds_items(self) -> bool:
        """True while items wait in the outbox."""
        return False


class _Tripwire:
    __slots__ = ("buffer",)

    def __init__(self, buffer: TripwireBuffer) -> None:
        self.buffer = buffer

    def __del__(self) -> None:
        try:
            self.buffer._tripped(self)
        except BaseException as exc:  # noqa: BLE001 - e.g. an abort's interruption landed here
            while True:  # nothing may escape __del__ (it would be lost as "unraisable")
                try:
                    self.buffer.on_error(exc)
                    return
                except BaseException as again:  # noqa: BLE001 - an interruption landed there
                    exc = again


class TripwireBuffer:
    """A bounded output buffer whose ``append`` is a C-level ``deque.append``.

    The deque (``maxlen=batch_size``) keeps a tripwire in its leftmost slot; the append that
    fills it pushes the tripwire out, and the tripwire's ``__del__`` (run at once, in the
    appending thread or greenlet) hands the full batch to ``on_full`` and re-arms. Nothing
    can be raised from ``__del__``: an exception there goes to ``on_error``, for the owner
    to raise at the node's next read. ``take()`` empties the buffer, keeping the tripwire.
    On interpreters without reference counting, or with ``batch_size`` 1, ``append`` is a
    small Python function with the same behaviour. Shared by every runner's outbox.
    """

    __slots__ = ("_buf", "_dq", "append", "closed", "on_error", "on_full")

    def __init__(
        self,
        batch_size: int,
        on_full: Callable[[list[Any]], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.on_full = on_full
        self.on_error = on_error
        self.closed = False
        self._dq: deque[Any] | None = None
        self._buf: list[Any] = []
        self.append: Callable[[Any], None]
        if _REFCOUNTED and batch_size > 1:
            self._dq = deque(maxlen=batch_size)
            self._dq.append(_Tripwire(self))
            self.append = self._dq.append
        else:
            buf = self._buf
            take = self.take

            def append(item: Any) -> None:
                buf.append(item)
                if len(buf) >= batch_size:
                    try:
                        on_full(take())
                    except BaseException as exc:  # noqa: BLE001 - as from the tripwire
                        on_error(exc)

            self.append = append

    def _tripped(self, wire: _Tripwire) -> None:
        dq = self._dq
        assert dq is not None
        if self.closed or (dq and dq[0] is wire):
            # Closed, or the tripwire is still in its slot: the buffer is being collected
            # (an outbox of a run that never started), not filled. Never send from there.
            return
        items = list(dq)
        dq.clear()
        dq.append(_Tripwire(self))
        self.on_full(items)

    def take(self) -> list[Any]:
        """Everything buffered, in order (an empty list if nothing is)."""
        dq = self._dq
        if dq is None:
            items = self._buf[:]
            self._buf.clear()
            return items
        if len(dq) <= 1:
            return []
        wire = dq.popleft()
        items = list(dq)
        dq.clear()
        dq.append(wire)
        del wire
        return items

    def close(self) -> None:
        """Drop the buffer and its tripwire; ``on_full`` is not called again."""
        self.closed = True
        if self._dq is not None:
            self._dq.clear()
        self._buf.clear()

    def used_after_close(self) -> bool:
        """True if anything was appended since :meth:`close`."""
        return bool(self._dq) or bool(self._buf)


class TripwireFlush:
    """What every outbox around a :class:`TripwireBuffer` shares (threads, cooperative).

    A send that failed inside the buffer's append is kept in ``error`` and raised at the
    next :meth:`flush` (the node's next read); after the outbox ended, an item emitted
    anyway is a ``NodeProtocolError``.
    """

    error: BaseException | None
    ended: bool
    _buffer: TripwireBuffer

    if TYPE_CHECKING:

        def _send(self, items: list[Any]) -> None: ...

    def _keep_error(self, exc: BaseException) -> None:
        if self.error is None:  # it is raised at the node's next read
            self.error = exc

    def flush(self) -> None:
        """Raise a kept error, else send what is buffered."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if self.ended:
            if self._buffer.used_after_close():
                raise NodeProtocolError(AFTER_END)
            return
        items = self._buffer.take()
        if items:
            self._send(items)


def next_slice_len(slice_len: int, elapsed: float, linger: float, max_slice: int) -> int:
    """The size of a node's next input slice, after one of ``slice_len`` took ``elapsed`` s.

    Slices start at one item and double while the node is quick (a slice well under
    ``linger``), up to ``max_slice``; one that took longer than ``linger`` shrinks so the
    next takes about half of it. So a slow node delivers each output promptly, and a fast
    node works on whole batches.

    Example:
        >>> from nanostream._engine.channel import next_slice_len
        >>> next_slice_len(4, 0.0001, 0.05, 512), next_slice_len(64, 0.2, 0.05, 512)
        (8, 8)
    """
    if elapsed > linger and slice_len > 1:
        return max(1, int(slice_len * linger / elapsed / 2))
    if elapsed < linger / 8 and slice_len < max_slice:
        return min(max_slice, slice_len * 2)
    return slice_len


def checked_outp(
    buf: list[Any], limit: list[int], flush: Callable[[], None], batch_size: int
) -> Callable[[Any], None]:
    """A source's ``outp``: append to ``buf``, ``flush()`` once it holds ``limit[0]`` items.

    ``limit`` is a one-item list so that other threads can lower it (demand, stop). The
    ``outp`` is compiled when ``nanostream._speedups`` is built (see
    :mod:`nanostream._core.fast`). It has ``outp.extend(items)``, which emits many items in
    batches of ``batch_size`` (``from_iterable`` uses it for sized sequences).
    """
    outp: Any = fast.checked_outp(buf, limit, flush)
    outp.extend = batch_extend(buf, flush, batch_size)
    return outp  # type: ignore[no-any-return]


def batch_extend(
    buf: list[Any], flush: Callable[[], None], batch_size: int
) -> Callable[[list[Any]], None]:
    """``extend(items)`` for a source's ``outp``: add and flush ``batch_size`` at a time."""

    def extend(items: list[Any]) -> None:
        for start in range(0, len(items), batch_size):
            buf.extend(items[start : start + batch_size])
            flush()

    return extend


class TripwireOutbox(TripwireFlush, Outbox):
    """Outbox whose ``outp`` is a :class:`TripwireBuffer`'s C-level append.

    With ``park``, a node that goes on emitting after an abort gets ``RunAborted`` at its
    next read, and if it still emits ``ABORT_GRACE_S`` later, ``park()`` is called (the
    cooperative runner gives up such a node; the threads runner interrupts its thread).
    """

    def __init__(
        self,
        channels: Sequence[Downstream],
        batch_size: int,
        counters: NodeCounters,
        park: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(channels, batch_size, counters)
        self.error: BaseException | None = None
        self._park = park
        self._abort_seen: float | None = None
        self._buffer = TripwireBuffer(max(1, batch_size), self._full, self._keep_error)
        self.outp = self._buffer.append

    def _full(self, items: list[Any]) -> None:
        # Runs inside the append that filled the buffer, in the node's own thread.
        if self.aborted:
            if self._park is not None:
                now = time.monotonic()
                if self._abort_seen is None:
                    self._abort_seen = now
                    self.error = RunAborted()  # raised at the node's next read
                elif now - self._abort_seen > ABORT_GRACE_S:
                    self._park()  # it kept emitting without reading: it never will
            return
        if self.error is not None:
            return
        try:
            self._send(items)
        except BaseException as exc:  # noqa: BLE001 - re-raised at the node's next read
            self.error = exc

    def _dispose(self) -> None:
        self._buffer.close()


class CheckedOutbox(Outbox):
    """Outbox for sources (and every node on Ray): ``outp`` checks the batch size in Python.

    Its buffer may be sent from another thread, under its lock: a consumer that runs dry
    takes what it holds (:meth:`demand`), a runner's timer sends what waited too long
    (:meth:`linger`). Hooks: ``after_send`` runs after each batch the node's own flush
    sent, and ``after_outp`` after each flush from ``outp`` (the cooperative runner's
    acknowledgement marks and time slices there); ``after_demand`` after each demand (the
    threads runner's acknowledgement marks).
    """

    def __init__(
        self, channels: Sequence[Downstream], batch_size: int, counters: NodeCounters
    ) -> None:
        super().__init__(channels, batch_size, counters)
        buf: list[Any] = []
        self._buf = buf
        self._limit = [batch_size]
        self._lock = threading.Lock()
        self._stopping = False
        self._stop_raised = False
        self._sent = False  # a batch went out since the last linger()
        # A send that failed in another thread (linger): raised at the node's next flush.
        self.error: BaseException | None = None
        # Called (from the consumer's thread) after each demand: a source with pending
        # acknowledgements sends a marker then (see nanostream._core.acks).
        self.after_demand: Callable[[], None] | None = None
        self.after_send: Callable[[], None] | None = None
        self.after_outp: Callable[[], None] | None = None
        # Called (in the source's thread) after each flush from outp, in a run with a
        # state store: a due checkpoint's barrier goes out there (_engine/checkpoint.py).
        self.on_flush: Callable[[], None] | None = None
        self.outp = checked_outp(buf, self._limit, self._flush_from_outp, batch_size)

    def clocked_outp(
        self, deadline: list[float], clock: Callable[[], float]
    ) -> Callable[[Any], None]:
        """An ``outp`` that also sends once ``clock()`` passed ``deadline[0]`` (for a runner
        with no thread to preempt the source)."""
        buf, limit, flush = self._buf, self._limit, self._flush_from_outp
        append = buf.append

        def outp(item: Any) -> None:
            append(item)
            if len(buf) >= limit[0] or clock() >= deadline[0]:
                flush()

        outp.extend = batch_extend(buf, flush, self.batch_size)  # type: ignore[attr-defined]
        return outp

    def _take(self) -> list[Any]:
        buf = self._buf
        items = buf[:]
        del buf[: len(items)]
        return items

    def flush(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        with self._lock:
            if not self._buf:
                return
            if self.ended:
                raise NodeProtocolError(AFTER_END)
            self._send(self._take())
            self._sent = True
        if self.after_send is not None:
            self.after_send()

    def close(self) -> None:
        """Send what is buffered, then ``END`` (once); no send from another thread follows."""
        self.flush()
        with self._lock:
            if self.ended:
                return
            self.ended = True
        self._dispose()
        for channel in self.channels:
            channel.put(END, self.counters)

    def linger(self) -> None:
        """Send what is buffered unless a batch went out since the last call (a timer's).

        For a runner whose consumers cannot ask for demand (Ray: they are in other
        processes), called every ``linger`` seconds from a thread of its own, so that a
        partial batch does not wait for the node's next send. Skipped while the node is
        sending; a failure is raised at the node's next flush.
        """
        if self._sent:
            self._sent = False
            return
        if not self._buf or self.error is not None or not self._lock.acquire(blocking=False):
            return
        try:
            if not self._buf or self.ended:  # after the end, the node's own flush complains
                return
            self._send(self._take())
            self._sent = True
        except BaseException as exc:  # noqa: BLE001 - raised at the node's next flush
            self.error = exc
            return
        finally:
            self._lock.release()
        if self.after_send is not None:
            try:
                self.after_send()
            except BaseException as exc:  # noqa: BLE001 - raised at the node's next flush
                self.error = exc

    def holds_items(self) -> bool:
        return bool(self._buf)

    def _flush_from_outp(self) -> None:
        self._limit[0] = self.batch_size  # before the send: a demand during it must hold
        self.flush()
        if self.aborted:
            raise RunAborted
        if self._stopping and not self._stop_raised:
            self._stop_raised = True
            raise SourceStopped
        if self.on_flush is not None:
            self.on_flush()
        if self.after_outp is not None:
            self.after_outp()

    def demand(self) -> None:
        if self._stopping or self.aborted:
            return
        self._limit[0] = 1
        # Take what the source already buffered (as much as there is room for), unless the
        # source is sending right now.
        buf = self._buf
        if buf and self._lock.acquire(blocking=False):
            try:
                n = min((c.room_for(buf) for c in self.channels), default=len(buf))
                if n:
                    items = buf[:n]
                    del buf[:n]
                    self.counters.items_out += n
                    for channel in self.channels:
                        channel.put_nowait(items)
            finally:
                self._lock.release()
        hook = self.after_demand
        if hook is not None:
            hook()

    def request_stop(self) -> None:
        self._stopping = True
        self._limit[0] = 0

    def abort(self) -> None:
        super().abort()
        self._limit[0] = 0

    def preempt(self, within: int = 0) -> None:
        self._limit[0] = max(0, min(self._limit[0], within))
