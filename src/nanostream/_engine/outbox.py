"""The outboxes that fill a node's downstream channels in batches.

A node's ``outp`` appends to its outbox; the outbox sends a batch downstream when it holds
``batch_size`` items, and a node that reads input sends whatever it holds before it reads
its next batch. So under load batches are full, and under light load a lone item is sent
as soon as the node looks for more work.

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

Both send to :class:`~nanostream._engine.channel.Downstream` objects: a
:class:`~nanostream._engine.channel.Channel`, or a stand-in for another process's channel.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from .._core import fast
from .._core.errors import NodeProtocolError
from .._core.monitor import ABORT_GRACE_S
from .._core.run import NodeCounters
from .._core.signals import RunAborted, SourceStopped
from .channel import END, Downstream

__all__ = [
    "AFTER_END",
    "CheckedOutbox",
    "Outbox",
    "TripwireBuffer",
    "TripwireFlush",
    "TripwireOutbox",
    "batch_extend",
    "checked_outp",
]

_REFCOUNTED = sys.implementation.name == "cpython"


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
    #: Held while a send from another thread runs (:class:`CheckedOutbox`); none here.
    _lock: AbstractContextManager[Any] = nullcontext()

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
        """Send what is buffered, then the end-of-stream marker (once); no send from
        another thread follows."""
        self.flush()
        with self._lock:
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
        self._lock: threading.Lock = threading.Lock()
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
