"""Bounded channels between threads: a node's input queue, in batches.

Items move between threads as *batches* (lists), put by the producers' outboxes (see
:mod:`nanostream._engine.outbox`) and taken by the consumer's input reader. A queue is
bounded by items (``queue_size``) and, with the ``queue_bytes`` option, also by the
approximate bytes of the items waiting in it (:class:`ByteBudget`, shared by every
runner's channel): a producer then puts only as many items of a batch as fit, and waits
for the rest; one item always passes into an empty queue, however large. How the two sides
wait and wake is a :class:`Waiter`'s: the same channel serves every runner.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from .._core.run import NodeCounters
from .._core.signals import RunAborted

if TYPE_CHECKING:
    from .outbox import Outbox

__all__ = [
    "END",
    "IDLE",
    "ByteBudget",
    "Channel",
    "Downstream",
    "Waiter",
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

#: A producer that has waited this long for room in a channel is woken at the next batch
#: taken, however full the channel still is (see :class:`Channel`).
WAKE_AFTER_S = 0.005

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

    def added_first(self, nbytes: int) -> None:
        """Something of ``nbytes`` was put at the head of the queue (a checkpoint's barrier
        overtaking the items waiting)."""
        self._sizes.appendleft(nbytes)
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
    when several race for the last slot). A producer that waits for room is woken once the
    consumer has taken the channel down to ``refill_at`` batches (half of it), or at the
    first batch taken after it has waited ``WAKE_AFTER_S`` (since it began waiting, or
    since the last wake-up, when several wait), not at every batch taken:
    under load it then puts several batches while the consumer reads the rest, rather
    than one batch per wake-up, and behind a slow consumer it is not held for half a
    queue (a node waiting in a put does nothing else: a checkpoint's barrier waits for
    it). With ``queue_bytes``, the items waiting also
    take at most that many bytes (see :class:`ByteBudget`; a batch goes in in parts), and
    the channel's bookkeeping is done under its lock; a producer waiting for bytes is woken
    at every batch taken. The consumer sees the end once every
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
        "_remote_waiting",
        "_wake_by",
        "_wake_depth",
        "batches",
        "budget",
        "capacity",
        "capacity_bytes",
        "max_batches",
        "n_producers",
        "producers",
        "refill_at",
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
        self.refill_at = self.max_batches // 2
        self.capacity = queue_size
        self.capacity_bytes = queue_bytes
        self.budget = ByteBudget(queue_bytes) if queue_bytes is not None else None
        self.batches: deque[Any] = deque()  # oldest first
        self._cond = waiter if waiter is not None else threading.Condition(threading.Lock())
        self._consumer_waiting = False
        self._producers_waiting = 0  # producers waiting for room (in put or remote)
        self._remote_waiting = 0  # of them, those waiting outside put (producer_waits)
        # A get wakes the waiting producers when it leaves at most this many batches
        # (-1: never; with a byte budget, the pop itself wakes them).
        self._wake_depth = self.refill_at if self.budget is None else -1
        self._wake_by = float("inf")  # ... or once the clock has passed this (see put)
        self._ends = self.n_producers = n_producers
        self._aborted = False
        self.producers: list[Outbox] = []

    def depth(self) -> int:
        """Items waiting in the channel now."""
        return sum(len(b) for b in list(self.batches) if b is not END)

    def producer_waits(self, waiting: bool) -> None:
        """A producer that waits for room outside :meth:`put` (the Ray runner's remote calls,
        on the actor's event loop) starts or stops waiting: meanwhile every ``get`` wakes
        the waiter, whose ``notify_all`` wakes that producer too (it waits for room by
        its own measure, so it is not left until the channel is down to ``refill_at``)."""
        with self._cond:
            step = 1 if waiting else -1
            self._producers_waiting += step
            self._remote_waiting += step
            if self.budget is None:
                self._wake_depth = sys.maxsize if self._remote_waiting else self.refill_at

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
                if not self._producers_waiting:
                    self._wake_by = start + WAKE_AFTER_S
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
                self._wake_producers(len(dq))
            if batch is END:
                self._ends -= 1
                if self._ends <= 0:
                    return END
                continue
            return batch

    def put_first(self, barrier: Any) -> None:
        """Put a checkpoint's ``barrier`` at the head, ahead of the batches waiting (an
        unaligned checkpoint, see :mod:`nanostream._engine.checkpoint`), without waiting
        for room: ``barrier.overtaken`` gets the batches it overtook. The consumer may take
        some of them meanwhile (it alone takes from the head); those still here when it
        reads the barrier are the items in flight its snapshot keeps.

        Example:
            >>> from types import SimpleNamespace
            >>> from nanostream._core.run import NodeCounters
            >>> channel = Channel(8, 2, n_producers=1)
            >>> channel.put([1, 2], NodeCounters())
            >>> barrier = SimpleNamespace(overtaken=None)
            >>> channel.put_first(barrier)
            >>> channel.get(NodeCounters()) is barrier, barrier.overtaken
            (True, [[1, 2]])
        """
        dq = self.batches
        with self._cond:
            barrier.overtaken = [b for b in dq if type(b) is list]
            dq.appendleft(barrier)
            if self.budget is not None:
                self.budget.added_first(0)
            if self._consumer_waiting:
                self._cond.notify_all()

    def take_head(self, kind: type) -> Any:
        """The batch at the head when it is a ``kind`` (taken out), else None; the consumer's
        thread only: a node amid an item takes a checkpoint barrier that follows it so."""
        dq = self.batches
        if not dq or type(dq[0]) is not kind:
            return None
        batch = dq.popleft() if self.budget is None else self._pop_counted()
        if self._producers_waiting:
            self._wake_producers(len(dq))
        return batch

    def _wake_producers(self, depth: int) -> None:
        """A batch was taken, leaving ``depth``, while producers wait for room: wake them
        once the channel is down to ``_wake_depth``, or ``WAKE_AFTER_S`` after they began
        waiting or were last woken (those that find no room then wait again)."""
        if depth > self._wake_depth and time.monotonic() < self._wake_by:
            return
        with self._cond:
            self._wake_by = time.monotonic() + WAKE_AFTER_S
            self._cond.notify_all()

    def abort(self) -> None:
        """Wake every waiter; they raise ``RunAborted``."""
        self._aborted = True
        with self._cond:
            self._cond.notify_all()
