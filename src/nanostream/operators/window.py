"""Windows: tumbling, sliding and session windows, in event or processing time.

Running aggregates, reductions and dedupe (keyed state without windows) are in
:mod:`nanostream.operators.aggregate`.

**Time.** A window operator works in *event time* when given ``timestamp=func`` (taken
from each item) and in *processing time* otherwise (``clock()`` when the item arrives;
``time.time`` unless replaced, e.g. by a fake clock in tests). Time is written in one of
two kinds, chosen by the durations (``size``, ``step``, ``offset``, ``gap``,
``allowed_lateness``): numbers mean seconds, with numeric timestamps; ``timedelta``
durations mean timezone-aware ``datetime`` timestamps (a naive one is refused: it could be
in any time zone), and windows then start at ``offset`` past the Unix epoch in UTC and
their bounds come out as UTC datetimes. With the default clock a ``timedelta`` window
reads the current UTC time; a clock of your own returns the window's kind. Mixing the kinds
in one window is an error naming it (docs/operators.md, "Time as numbers or datetimes").

**Watermark.** The watermark is the largest timestamp seen so far minus
``allowed_lateness``. A window ``[start, end)`` closes — its result is emitted — as soon
as the watermark reaches ``end``; every window still open is emitted when the input ends
(so also on ``stop()``, which ends the sources and drains the pipeline). An item whose
windows have all closed is *late*: ``late="drop"`` (the default) drops it, ``late="port"``
sends it unchanged to the node's ``"late"`` port (``window["late"] > sink``). In
processing time items are never late.

**Results.** Each closed window emits a :class:`WindowResult` ``(key, start, end,
value)``: ``key`` is ``key(item)`` for a keyed window (``key=func``, one set of windows per
key) and ``None`` for a global one; ``value`` is the list of the window's items in arrival
order, or ``reduce(acc, item)`` folded over them (from ``initial`` when given, otherwise
from the first item). Windows close in order of ``end``, then ``start``, then the order
they opened in.

**When windows close.** In event time only items move time on, so a window whose end has
passed is emitted when a later item arrives (or at the end of the input). In processing
time the clock moves on by itself: on an idle input the operator is woken every
``tick_interval`` seconds (by default a quarter of the window's ``step``, ``size`` or
``gap``, at least 1 ms, at most 1 s; see :data:`nanostream.TICK`) and emits the windows
whose end has passed. Ticks come from the ``threads`` and ``cooperative`` runners, and
only with the default clock (a test clock does not move with real time; give
``tick_interval=`` to have ticks anyway).

**Error policies** (``on_error=`` ...) apply to ``timestamp``, ``key`` and ``reduce`` per
item, and for a session window to ``reduce`` per window when it closes; a failed item
changes no window. See docs/operators.md.

Example:
    >>> import nanostream
    >>> from nanostream.nodes import TumblingWindow
    >>> sink = nanostream.testing.Collect()
    >>> events = [(0.5, "a"), (1.2, "b"), (1.7, "c"), (3.1, "d")]
    >>> per_second = TumblingWindow(1.0, timestamp=lambda e: e[0])
    >>> nanostream.from_iterable(events) > per_second > sink
    Collect(name=None)
    >>> sink.global_start()
    >>> [(w.start, w.end, [e[1] for e in w.value]) for w in sink.items]
    [(0.0, 1.0, ['a']), (1.0, 2.0, ['b', 'c']), (3.0, 4.0, ['d'])]
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from datetime import timedelta
from typing import Any, NamedTuple

from .._core.context import node_label
from .._core.errors import OptionError
from .._core.ports import TaggedOutput
from .._core.ticks import TICK
from ._operator import (
    MISSING,
    Fold,
    Operator,
    Outp,
    PolicyGuard,
    check_callable,
    check_choice,
    kept_reads,
    oldest_open,
    tick_for,
)
from ._time import TimeKind

__all__ = [
    "SessionWindow",
    "SlidingWindow",
    "TumblingWindow",
    "WindowResult",
]

_NEG_INF = float("-inf")


class WindowResult(NamedTuple):
    """What a window emits when it closes: its key, bounds and value.

    ``key`` is ``None`` for a global (unkeyed) window. The window holds the items with
    ``start <= timestamp < end``; ``start`` and ``end`` are seconds, or UTC datetimes for a
    window whose durations are ``timedelta`` values.

    Example:
        >>> from nanostream.nodes import WindowResult
        >>> w = WindowResult(key="eu", start=0, end=10, value=3)
        >>> w.key, w.end - w.start, w.value
        ('eu', 10, 3)
    """

    key: Any
    start: Any
    end: Any
    value: Any


class _Windowed(Operator):
    """What every window operator shares: time, key, fold, lateness."""

    holds_items = True

    def __init__(
        self,
        *,
        durations: dict[str, Any],
        timestamp: Callable[[Any], Any] | None,
        key: Callable[[Any], Hashable] | None,
        reduce: Callable[[Any, Any], Any] | None,
        initial: Any,
        allowed_lateness: float | timedelta,
        late: str,
        clock: Callable[[], Any],
        name: str | None,
        options: dict[str, Any],
    ) -> None:
        super().__init__(name=name, **options)
        owner = type(self).__name__
        label = node_label(self, with_class=True)
        check_callable(label, "timestamp", timestamp, optional=True)
        check_callable(label, "key", key, optional=True)
        check_callable(label, "clock", clock)
        check_choice(label, "late", late, ("drop", "port"))
        # Seconds or datetimes, fixed by the durations (see nanostream.operators._time).
        self._time_kind = TimeKind.of(
            owner, label=label, **durations, allowed_lateness=allowed_lateness
        )
        self._lateness = self._time_kind.duration(
            "allowed_lateness", allowed_lateness, "non-negative"
        )
        if timestamp is None and allowed_lateness:
            raise OptionError(
                f"{label}: allowed_lateness applies to event time; give timestamp=func too"
            )
        self.timestamp = timestamp
        self.key = key
        self.fold = Fold.of(owner, reduce, initial)
        self.allowed_lateness = allowed_lateness
        self.late = late
        self.clock = clock
        if late == "port":
            self.ports = ("out", "late")

    def _user_functions(self) -> tuple[str, ...]:
        names = [("timestamp", self.timestamp), ("key", self.key)]
        given = tuple(name for name, func in names if func is not None)
        return given if self.fold.collects else (*given, "reduce")

    def _tick_every(self, period: Any) -> None:
        """In processing time on the real clock, check for closed windows while idle
        (``period`` in the node's units of time)."""
        if self.timestamp is None and self.clock is time.time:
            self.tick_interval = tick_for(self._time_kind.seconds(period))

    def _now(self) -> Callable[[], Any]:
        """The clock's reading, in the node's units of time."""
        return self._time_kind.clock(self.clock, self.label)

    def _time_of(self) -> Callable[[Any], Any]:
        """``item -> time`` in the node's units: its timestamp, or the clock's reading."""
        if self.timestamp is None:
            now = self._now()
            return lambda _item: now()
        return self._time_kind.reader(self.timestamp, "timestamp", self.label)

    def _handles_ticks(self) -> bool:
        return self.timestamp is None  # in event time, only items move time on

    # ----------------------------------------------------------------- state
    _restored: dict[str, Any] | None = None
    _live: tuple[dict[Any, Any], list[Any], list[Any]] | None = None

    def _begin(self) -> tuple[dict[Any, Any], list[Any], Any, Any, int, deque[tuple[int, Any]]]:
        """What a run starts from: ``windows, heap, max_ts, watermark, seq, opened``
        (restored, or empty); the snapshot reads the windows and heap, and ``max_ts``
        from the mark the loop sets (``self._live``)."""
        restored, self._restored = self._restored, None
        if restored is None:
            windows: dict[Any, Any] = {}
            heap: list[Any] = []
            max_ts: Any = _NEG_INF
            watermark: Any = _NEG_INF
        else:
            windows, heap = dict(restored["windows"]), list(restored["heap"])
            heapq.heapify(heap)
            max_ts = restored["max_ts"]
            if max_ts is None:
                max_ts = watermark = _NEG_INF
            else:
                watermark = max_ts - self._lateness
        seq = max((entry[2] for entry in heap), default=-1) + 1
        # The restored windows keep every item read so far until they close.
        opened: deque[tuple[int, Any]] = deque((0, (e[3], e[1])) for e in sorted(heap))
        self._live = (windows, heap, [max_ts])
        return windows, heap, max_ts, watermark, seq, opened

    def _closer(
        self, windows: dict[Any, Any], heap: list[Any], opened: deque[tuple[int, Any]], outp: Outp
    ) -> Callable[[Any, int | None, int], None]:
        """``close(limit, reads, pending)`` for a loop started by :meth:`_begin`: emit every
        window whose end is at most ``limit`` (every one for ``None``), in closing order;
        then, unless ``reads`` is ``None`` (the input has ended), release the items no open
        window holds (``reads`` and ``pending`` as for :func:`kept_reads`)."""
        bound, result, release = self._time_kind.out, self.fold.result, self.release_items
        pop = heapq.heappop

        def close(limit: Any, reads: int | None, pending: int) -> None:
            while heap and (limit is None or heap[0][0] <= limit):
                end, start, _, wkey = pop(heap)
                value = result(windows.pop((wkey, start)))
                outp(WindowResult(wkey, bound(start), bound(end), value))
            if reads is not None:
                release(keep=kept_reads(reads, oldest_open(opened, windows), pending))

        return close


class SlidingWindow(_Windowed):
    """Windows of ``size`` starting every ``step`` (they overlap): seconds or timedeltas.

    An item belongs to every window ``[start, start + size)`` that contains its timestamp,
    where the starts are ``offset + k * step``. Time, watermark, lateness, keys and results:
    see the module documentation (``help(nanostream.operators.window)``).

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import SlidingWindow
        >>> sink = nanostream.testing.Collect()
        >>> counts = SlidingWindow(
        ...     2, step=1, timestamp=lambda t: t, reduce=lambda n, _: n + 1, initial=0
        ... )
        >>> nanostream.from_iterable([0, 1, 1, 2, 5]) > counts > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> [(w.start, w.end, w.value) for w in sink.items]
        [(-1, 1, 1), (0, 2, 3), (1, 3, 3), (2, 4, 1), (4, 6, 1), (5, 7, 1)]
    """

    def __init__(
        self,
        size: float | timedelta,
        step: float | timedelta,
        *,
        offset: float | timedelta = 0,
        timestamp: Callable[[Any], Any] | None = None,
        key: Callable[[Any], Hashable] | None = None,
        reduce: Callable[[Any, Any], Any] | None = None,
        initial: Any = MISSING,
        allowed_lateness: float | timedelta = 0,
        late: str = "drop",
        clock: Callable[[], Any] = time.time,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            durations={"size": size, "step": step, "offset": offset},
            timestamp=timestamp,
            key=key,
            reduce=reduce,
            initial=initial,
            allowed_lateness=allowed_lateness,
            late=late,
            clock=clock,
            name=name,
            options=options,
        )
        kind = self._time_kind
        self.size = size
        self.step = step
        self.offset = offset
        self._size = kind.duration("size", size, "positive")
        self._step = kind.duration("step", step, "positive")
        self._offset = kind.duration("offset", offset, "any")
        self._tick_every(self._step)

    def snapshot_state(self) -> dict[str, Any]:
        """The open windows, the order they close in and the latest time seen.

        Example:
            >>> from nanostream.nodes import TumblingWindow
            >>> TumblingWindow(10).snapshot_state()
            {'windows': {}, 'heap': [], 'max_ts': None}
        """
        windows, heap, mark = self._live if self._live is not None else ({}, [], [_NEG_INF])
        max_ts = None if mark[0] == _NEG_INF else mark[0]
        return {"windows": windows, "heap": heap, "max_ts": max_ts}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Open again the windows :meth:`snapshot_state` took (when the node starts).

        Example:
            >>> from nanostream.nodes import TumblingWindow
            >>> node = TumblingWindow(10)
            >>> node.restore_state({"windows": {}, "heap": [], "max_ts": 5.0})
            >>> node._begin()[2:]
            (5.0, 5.0, 0, deque([]))
        """
        self._restored = state

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        if self.error_policy.guarded:
            self._run_guarded(inp, outp)
            return
        size, step, offset = self._size, self._step, self._offset
        time_of, key_of, now = self._time_of(), self.key, self._now()
        first, add = self.fold.first, self.fold.add
        lateness = self._lateness
        late_port = self.late == "port"
        windows, heap, max_ts, watermark, seq, opened = self._begin()
        mark = self._live[2]  # type: ignore[index]  # set by _begin
        close = self._closer(windows, heap, opened, outp)
        ticks = 0
        for number, item in enumerate(inp, 1):
            if item is TICK:  # processing time, no item for a while: the clock moves on
                ticks += 1
                ts = now()
                if ts > max_ts and heap and heap[0][0] <= ts:
                    max_ts = watermark = mark[0] = ts
                    close(watermark, number - ticks, 0)
                continue
            reads = number - ticks
            ts = time_of(item)
            k = key_of(item) if key_of is not None else None
            if ts > max_ts:
                max_ts = mark[0] = ts
                watermark = ts - lateness
                if heap and heap[0][0] <= watermark:
                    close(watermark, reads, 1)
            last_start = ts - (ts - offset) % step
            if last_start + size <= watermark:
                if late_port:
                    outp(TaggedOutput("late", item))
                continue
            j = 0
            start = last_start
            while start + size > ts:
                if start + size > watermark:
                    wk = (k, start)
                    acc = windows.get(wk, MISSING)
                    if acc is MISSING:
                        windows[wk] = first(item)
                        heapq.heappush(heap, (start + size, start, seq, k))
                        opened.append((reads, wk))
                        seq += 1
                    else:
                        windows[wk] = add(acc, item)
                j += 1
                start = last_start - j * step
        close(None, None, 0)

    def _run_guarded(self, inp: Iterable[Any], outp: Outp) -> None:
        """The loop above with the error policy: an item's user code runs first, under the
        policy, and only an item whose code succeeded changes the windows."""
        size, step, offset = self._size, self._step, self._offset
        time_of, key_of, now = self._time_of(), self.key, self._now()
        first, add = self.fold.first, self.fold.add
        collects = self.fold.collects
        lateness = self._lateness
        late_port = self.late == "port"
        windows, heap, max_ts, watermark, seq, opened = self._begin()
        mark = self._live[2]  # type: ignore[index]  # set by _begin
        close = self._closer(windows, heap, opened, outp)

        def prepare(item: Any) -> tuple[Any, Any, list[tuple[Any, Any]] | None]:
            """The item's time, key and new accumulators, changing nothing."""
            ts = time_of(item)
            k = key_of(item) if key_of is not None else None
            wm = ts - lateness if ts > max_ts else watermark
            last_start = ts - (ts - offset) % step
            if last_start + size <= wm:
                return ts, k, None  # late
            updates: list[tuple[Any, Any]] = []
            j = 0
            start = last_start
            while start + size > ts:
                if start + size > wm:
                    wk = (k, start)
                    acc = windows.get(wk, MISSING)
                    if collects:  # appended when committed: no user code
                        updates.append((wk, acc))
                    else:
                        updates.append((wk, first(item) if acc is MISSING else add(acc, item)))
                j += 1
                start = last_start - j * step
            return ts, k, updates

        reads = 0
        with PolicyGuard.of(self, outp) as guard:
            for item in inp:
                prepared: tuple[Any, Any, list[tuple[Any, Any]] | None]
                if item is TICK:
                    prepared = (now(), None, [])
                else:
                    reads += 1
                    prepared = guard.prepare(item, prepare)
                    if prepared is MISSING:
                        continue
                ts, _, updates = prepared
                if ts > max_ts:
                    max_ts = mark[0] = ts
                    watermark = ts - lateness
                    if heap and heap[0][0] <= watermark:
                        close(watermark, reads, 0 if item is TICK else 1)
                if updates is None:
                    if late_port:
                        outp(TaggedOutput("late", item))
                    continue
                for wk, acc in updates:
                    is_new = wk not in windows
                    if collects:
                        if is_new:
                            windows[wk] = [item]
                        else:
                            acc.append(item)
                    else:
                        windows[wk] = acc
                    if is_new:
                        heapq.heappush(heap, (wk[1] + size, wk[1], seq, wk[0]))
                        opened.append((reads, wk))
                        seq += 1
        close(None, None, 0)


class TumblingWindow(SlidingWindow):
    """Back-to-back windows of ``size``: ``[offset + k*size, offset + (k+1)*size)``.

    Each item belongs to exactly one window. Time, watermark, lateness, keys and results:
    see the module documentation (``help(nanostream.operators.window)``).

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import TumblingWindow
        >>> sink = nanostream.testing.Collect()
        >>> sales = [(0, "eu", 5), (3, "us", 1), (4, "eu", 2), (12, "eu", 1)]
        >>> totals = TumblingWindow(
        ...     10,
        ...     timestamp=lambda s: s[0],
        ...     key=lambda s: s[1],
        ...     reduce=lambda total, s: total + s[2],
        ...     initial=0,
        ... )
        >>> nanostream.from_iterable(sales) > totals > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items  # doctest: +NORMALIZE_WHITESPACE
        [WindowResult(key='eu', start=0, end=10, value=7),
         WindowResult(key='us', start=0, end=10, value=1),
         WindowResult(key='eu', start=10, end=20, value=1)]

        With datetimes, the size is a ``timedelta`` and the bounds are UTC datetimes:

        >>> from datetime import datetime, timedelta, timezone
        >>> paris = timezone(timedelta(hours=1))
        >>> logins = [datetime(2026, 1, 5, 11, 30, tzinfo=paris)]
        >>> hourly = TumblingWindow(timedelta(hours=1), timestamp=lambda t: t)
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(logins) > hourly > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> print(sink.items[0].start, sink.items[0].end)
        2026-01-05 10:00:00+00:00 2026-01-05 11:00:00+00:00
    """

    def __init__(
        self,
        size: float | timedelta,
        *,
        offset: float | timedelta = 0,
        timestamp: Callable[[Any], Any] | None = None,
        key: Callable[[Any], Hashable] | None = None,
        reduce: Callable[[Any, Any], Any] | None = None,
        initial: Any = MISSING,
        allowed_lateness: float | timedelta = 0,
        late: str = "drop",
        clock: Callable[[], Any] = time.time,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            size,
            size,
            offset=offset,
            timestamp=timestamp,
            key=key,
            reduce=reduce,
            initial=initial,
            allowed_lateness=allowed_lateness,
            late=late,
            clock=clock,
            name=name,
            **options,
        )

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        # The sliding loop with one window per item, unrolled: this is the hot path (event
        # time; in processing time the sliding loop, which reads ticks, does the work).
        if self.error_policy.guarded or self.timestamp is None:
            super()._run(inp, outp)
            return
        size, offset = self._size, self._offset
        ts_of, key_of, label = self.timestamp, self.key, self.label
        point = self._time_kind.point  # the reader of _time_of(), inline: the hot path
        plain = () if self._time_kind.datetimes else (float, int)
        first, add = self.fold.first, self.fold.add
        lateness = self._lateness
        late_port = self.late == "port"
        windows, heap, max_ts, watermark, seq, opened = self._begin()
        mark = self._live[2]  # type: ignore[index]  # set by _begin
        close = self._closer(windows, heap, opened, outp)
        get = windows.get
        push = heapq.heappush
        for reads, item in enumerate(inp, 1):
            ts = ts_of(item)
            if ts.__class__ not in plain:
                ts = point("timestamp", ts, label)
            if ts > max_ts:
                max_ts = mark[0] = ts
                watermark = ts - lateness
                if heap and heap[0][0] <= watermark:
                    close(watermark, reads, 1)
            start = ts - (ts - offset) % size
            wk = (key_of(item) if key_of is not None else None, start)
            acc = get(wk, MISSING)
            if acc is not MISSING:
                windows[wk] = add(acc, item)
            elif start + size > watermark:
                windows[wk] = first(item)
                push(heap, (start + size, start, seq, wk[0]))
                opened.append((reads, wk))
                seq += 1
            elif late_port:
                outp(TaggedOutput("late", item))
        close(None, None, 0)


class _Session:
    __slots__ = ("alive", "items", "key", "last", "start")

    def __init__(self, key: Any, start: Any, last: Any, items: list[tuple[int, Any]]) -> None:
        self.key = key
        self.start = start
        self.last = last
        self.items = items
        self.alive = True


class SessionWindow(_Windowed):
    """Windows of activity: items less than ``gap`` apart (seconds or a timedelta) share a
    session.

    A session ``[start, end)`` runs from its first timestamp to its last plus ``gap``; an
    item within ``gap`` of two sessions merges them. A session closes when the watermark
    reaches its end. Time, watermark, lateness, keys and results: see the module
    documentation (``help(nanostream.operators.window)``).

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import SessionWindow
        >>> sink = nanostream.testing.Collect()
        >>> clicks = [("ann", 0), ("bob", 1), ("ann", 3), ("ann", 20)]
        >>> sessions = SessionWindow(
        ...     5, timestamp=lambda c: c[1], key=lambda c: c[0],
        ...     reduce=lambda n, _: n + 1, initial=0,
        ... )
        >>> nanostream.from_iterable(clicks) > sessions > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> [(w.key, w.start, w.end, w.value) for w in sink.items]
        [('bob', 1, 6, 1), ('ann', 0, 8, 2), ('ann', 20, 25, 1)]
    """

    def __init__(
        self,
        gap: float | timedelta,
        *,
        timestamp: Callable[[Any], Any] | None = None,
        key: Callable[[Any], Hashable] | None = None,
        reduce: Callable[[Any, Any], Any] | None = None,
        initial: Any = MISSING,
        allowed_lateness: float | timedelta = 0,
        late: str = "drop",
        clock: Callable[[], Any] = time.time,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            durations={"gap": gap},
            timestamp=timestamp,
            key=key,
            reduce=reduce,
            initial=initial,
            allowed_lateness=allowed_lateness,
            late=late,
            clock=clock,
            name=name,
            options=options,
        )
        self.gap = gap
        self._gap = self._time_kind.duration("gap", gap, "positive")
        self._tick_every(self._gap)

    # (open sessions by key, their heap, [max_ts, watermark]) of the loop, for snapshots
    _open: tuple[dict[Any, list[_Session]], list[Any], list[Any]] | None = None

    def snapshot_state(self) -> dict[str, Any]:
        """The open sessions (key, first and last time, items) and the time seen.

        Example:
            >>> from nanostream.nodes import SessionWindow
            >>> node = SessionWindow(5, timestamp=lambda e: e[1], key=lambda e: e[0])
            >>> node.restore_state(
            ...     {"sessions": [("a", 1, 2, [(1, ("a", 1)), (2, ("a", 2))], 2)],
            ...      "time": [2, 2]})
            >>> out = []
            >>> node.as_function()(iter([("a", 4)]), out.append)
            >>> [(w.key, w.start, w.end, [t for _, t in w.value]) for w in out]
            [('a', 1, 9, [1, 2, 4])]
        """
        if self._open is None:
            return {"sessions": [], "time": [_NEG_INF, _NEG_INF]}
        open_by_key, heap, mark = self._open
        gap = self._gap
        current = {id(s): reads for end, reads, s in heap if s.alive and s.last + gap == end}
        sessions = [
            (s.key, s.start, s.last, list(s.items), current[id(s)])
            for group in open_by_key.values()
            for s in group
        ]
        return {"sessions": sessions, "time": list(mark)}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Open again the sessions :meth:`snapshot_state` took (when the node starts).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        self._restored = state

    def _reopen(self) -> tuple[dict[Any, list[_Session]], list[Any], list[Any], list[Any]]:
        """The restored sessions (or none): by key, their heap, their firsts, the time.

        Their read numbers are moved below 1 (this run's first read), in the same order."""
        restored, self._restored = self._restored, None
        open_by_key: dict[Any, list[_Session]] = {}
        heap: list[Any] = []
        firsts: list[Any] = []
        if restored is None:
            return open_by_key, heap, firsts, [_NEG_INF, _NEG_INF]
        saved = restored["sessions"]
        numbers = [r for *_, entries, at in saved for r in (at, *(n for n, _ in entries))]
        shift = max(numbers, default=0) + 1
        for k, start, last, entries, at in saved:
            session = _Session(k, start, last, [(n - shift, item) for n, item in entries])
            open_by_key.setdefault(k, []).append(session)
            heap.append((last + self._gap, at - shift, session))
            firsts.append((session.items[0][0], at - shift, session))
        heapq.heapify(heap)
        heapq.heapify(firsts)
        return open_by_key, heap, firsts, list(restored["time"])

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        if self.error_policy.guarded:
            with PolicyGuard.of(self, outp) as guard:
                self._sessions(inp, outp, guard)
        else:
            self._sessions(inp, outp, None)

    def _sessions(self, inp: Iterable[Any], outp: Outp, guard: PolicyGuard | None) -> None:
        gap = self._gap
        time_of, key_of, now = self._time_of(), self.key, self._now()
        fold = self.fold
        guard_fold = guard is not None and not fold.collects
        bound = self._time_kind.out
        lateness = self._lateness
        late_port = self.late == "port"
        release = self.release_items
        # open sessions by key; heap: (end, read number, session), an entry whose session
        # grew or merged away is stale; firsts: (read number of its first item, session),
        # for the oldest session still open; mark: [max_ts, watermark] for snapshots
        open_by_key, heap, firsts, mark = self._reopen()
        max_ts, watermark = mark
        self._open = (open_by_key, heap, mark)

        def prepare(item: Any) -> tuple[Any, Any]:
            return time_of(item), key_of(item) if key_of is not None else None

        def folded(window: WindowResult) -> Iterable[Any]:
            return (window._replace(value=fold.over(window.value)),)

        def close(session: _Session) -> None:
            session.alive = False
            sessions = open_by_key[session.key]
            sessions.remove(session)
            if not sessions:
                del open_by_key[session.key]
            items = [item for _, item in session.items]
            start, end = bound(session.start), bound(session.last + gap)
            window = WindowResult(session.key, start, end, items)
            if guard_fold:
                assert guard is not None
                guard.unit(window, folded)  # the policy covers reduce per window
            else:
                outp(window._replace(value=fold.over(items)))

        def close_until(limit: Any, reads: int | None, pending: int) -> None:
            closed = False
            while heap and heap[0][0] <= limit:
                end, _, session = heapq.heappop(heap)
                if session.alive and session.last + gap == end:
                    close(session)
                    closed = True
            if closed and reads is not None:
                while firsts and not firsts[0][2].alive:
                    heapq.heappop(firsts)
                release(keep=kept_reads(reads, firsts[0][0] if firsts else None, pending))

        ticks = 0
        for number, item in enumerate(inp, 1):
            if item is TICK:  # processing time, no item for a while: the clock moves on
                ticks += 1
                ts = now()
                if ts > max_ts:
                    max_ts = watermark = mark[0] = mark[1] = ts
                    close_until(watermark, number - ticks, 0)
                continue
            reads = number - ticks
            if guard is None:
                ts = time_of(item)
                k = key_of(item) if key_of is not None else None
            else:
                prepared = guard.prepare(item, prepare)
                if prepared is MISSING:
                    continue
                ts, k = prepared
            if ts > max_ts:
                max_ts = mark[0] = ts
                watermark = mark[1] = ts - lateness
                close_until(watermark, reads, 1)
            sessions = open_by_key.get(k)
            touching = (
                [s for s in sessions if s.start < ts + gap and ts < s.last + gap]
                if sessions
                else []
            )
            if not touching and ts + gap <= watermark:
                if late_port:
                    outp(TaggedOutput("late", item))
                continue
            entry = (reads, item)
            if len(touching) == 1:
                session = touching[0]
                session.items.append(entry)
                session.start = min(session.start, ts)
                if ts <= session.last:
                    continue  # its end did not move
                session.last = ts
            else:
                items = [e for s in touching for e in s.items]
                items.sort(key=_first)
                items.append(entry)
                session = _Session(
                    k,
                    min([ts, *(s.start for s in touching)]),
                    max([ts, *(s.last for s in touching)]),
                    items,
                )
                for old in touching:
                    old.alive = False
                if sessions is None:
                    sessions = open_by_key[k] = []
                else:
                    sessions[:] = [s for s in sessions if s.alive]
                sessions.append(session)
                heapq.heappush(firsts, (items[0][0], reads, session))
            heapq.heappush(heap, (session.last + gap, reads, session))
        close_until(float("inf"), None, 0)  # every open session has a current heap entry


def _first(entry: tuple[int, Any]) -> int:
    return entry[0]
