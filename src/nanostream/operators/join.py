"""Several inputs and outputs: merging with origin tags, windowed and interval joins, routing.

**Knowing where an item came from.** Every link into a node feeds one input queue, so a
node cannot tell its upstreams apart by itself. A node that needs to know asks for *named
inputs*: ``merge.input("orders")`` (and a join's ``join.left`` / ``join.right``) is a small
node, linked into its owner, that wraps each item as :class:`Tagged` ``(origin, value)``.
Link upstreams to those inputs, not to the owner itself::

    orders > join.left
    payments > join.right
    join > sink

A :class:`Merge` emits the tagged items, so any node downstream can read ``item.origin``;
a :class:`Join` (pairs in the same tumbling window) and an :class:`IntervalJoin` (pairs
whose times lie within bounds of each other) consume them.

**Named outputs.** A node emits ``TaggedOutput(port, value)`` to send ``value`` on a named
port, and ``node["port"] > other`` links that port; :class:`Router` does this with a
function that picks the port of each item.

Example:
    >>> import nanostream
    >>> from nanostream.nodes import Merge
    >>> sink = nanostream.testing.Collect()
    >>> merge = Merge(a=nanostream.from_iterable([1]), b=nanostream.from_iterable([2]))
    >>> merge > sink
    Collect(name=None)
    >>> sink.global_start()
    >>> sorted(sink.items)
    [Tagged(origin='a', value=1), Tagged(origin='b', value=2)]
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from .._core.context import node_label
from .._core.errors import GraphError, OptionError
from .._core.graph import pipeline_of
from .._core.node import DEFAULT_PORT, ERRORS_PORT, NODE_OPTIONS, NanoNode
from .._core.ports import TaggedOutput
from .._core.ticks import TICK
from ._operator import (
    MISSING,
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

__all__ = ["IntervalJoin", "Join", "JoinResult", "Merge", "Router", "Tagged"]

_NEG_INF = float("-inf")
_INF = float("inf")


class Tagged(NamedTuple):
    """An item with the name of the input it came through (see :meth:`Merge.input`).

    Example:
        >>> from nanostream.nodes import Tagged
        >>> item = Tagged("orders", {"id": 1})
        >>> item.origin, item.value
        ('orders', {'id': 1})
    """

    origin: str
    value: Any


class _InputEnded(NamedTuple):
    """Sent by a join's named input after its last item: that side has ended."""

    origin: str


class _NamedInput(Operator):
    """A named input of ``owner``: wraps each item as ``Tagged(origin, item)``."""

    holds_items = False

    def __init__(self, owner: _WithNamedInputs, origin: str, *, announce_end: bool) -> None:
        super().__init__()
        self.owner = owner
        self.origin = origin
        self.announce_end = announce_end

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        origin = self.origin
        for item in inp:
            outp(Tagged(origin, item))
        if self.announce_end:
            outp(_InputEnded(origin))

    def default_name(self) -> str:
        return f"{self.owner.label}.{self.origin}"

    def __repr__(self) -> str:
        return f"{self.owner!r}.input({self.origin!r})"


class _WithNamedInputs(Operator):
    _announce_end = False
    holds_items = False

    def input(self, origin: str) -> NanoNode:
        """The input called ``origin``: link upstreams to it; its items arrive ``Tagged``."""
        if not isinstance(origin, str) or not origin:
            raise GraphError(f"{self.label}: an input name is a non-empty string, got {origin!r}")
        inputs: dict[str, _NamedInput] = self.__dict__.setdefault("_inputs", {})
        node = inputs.get(origin)
        if node is None:
            node = inputs[origin] = _NamedInput(self, origin, announce_end=self._announce_end)
            node > self
        return node


class Merge(_WithNamedInputs):
    """Merge several streams into one, tagging each item with its origin.

    Give the inputs as keyword arguments (``Merge(orders=a, payments=b)``) or as a mapping,
    or link them later: ``a > merge.input("orders")``. Each item comes out as
    :class:`Tagged` ``(origin, value)``, in the order the items reach the merge.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Merge
        >>> sink = nanostream.testing.Collect()
        >>> merge = Merge()
        >>> nanostream.from_iterable(["x"]) > merge.input("left")
        Merge(name=None).input('left')
        >>> merge > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items[0].origin, sink.items[0].value
        ('left', 'x')
    """

    def __init__(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        queue_size: int | None = None,
        batch_size: int | None = None,
        **named_inputs: Any,
    ) -> None:
        options = {key: named_inputs.pop(key) for key in NODE_OPTIONS if key in named_inputs}
        super().__init__(name=name, queue_size=queue_size, batch_size=batch_size, **options)
        for origin, upstream in {**(inputs or {}), **named_inputs}.items():
            upstream > self.input(origin)

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        for item in inp:
            outp(item)


class JoinResult(NamedTuple):
    """A pair found by :class:`Join` or :class:`IntervalJoin`: ``right`` is ``None`` for an
    unmatched left item.

    Example:
        >>> from nanostream.nodes import JoinResult
        >>> JoinResult(key=7, left="order 7", right=None).right is None
        True
    """

    key: Any
    left: Any
    right: Any


class _Group:
    __slots__ = ("lefts", "matched", "rights")

    def __init__(self) -> None:
        self.lefts: list[Any] = []
        self.matched: list[bool] = []
        self.rights: list[Any] = []


class _TwoSided(_WithNamedInputs):
    """What the joins share: the inputs ``left`` and ``right``, keys and timestamps per side,
    lateness, and the watermark of two inputs."""

    _announce_end = True
    holds_items = True  # items wait for matches

    def _setup_sides(
        self,
        key: Callable[[Any], Hashable],
        *,
        right_key: Callable[[Any], Hashable] | None,
        how: str,
        timestamp: Callable[[Any], Any] | None,
        right_timestamp: Callable[[Any], Any] | None,
        late: str,
    ) -> None:
        owner = node_label(self, with_class=True)
        check_callable(owner, "key", key)
        check_callable(owner, "right_key", right_key, optional=True)
        check_choice(owner, "how", how, ("inner", "left"))
        check_callable(owner, "timestamp", timestamp, optional=True)
        check_callable(owner, "right_timestamp", right_timestamp, optional=True)
        check_choice(owner, "late", late, ("drop", "port"))
        self.key = key
        self.right_key = right_key if right_key is not None else key
        self.how = how
        self.timestamp = timestamp
        self.right_timestamp = right_timestamp if right_timestamp is not None else timestamp
        self.late = late
        if late == "port":
            self.ports = ("out", "late")

    @property
    def left(self) -> NanoNode:
        """The left input: link the left stream to it (``stream > join.left``)."""
        return self.input("left")

    @property
    def right(self) -> NanoNode:
        """The right input: link the right stream to it (``stream > join.right``)."""
        return self.input("right")

    def input(self, origin: str) -> NanoNode:
        """The input ``"left"`` or ``"right"`` (the same as :attr:`left` / :attr:`right`)."""
        if origin not in ("left", "right"):
            raise GraphError(f"{self.label}: a join has the inputs 'left' and 'right' only")
        return super().input(origin)

    def _user_functions(self) -> tuple[str, ...]:
        return ("key", "right_key", "timestamp", "right_timestamp")

    def _readers(self, kind: TimeKind) -> dict[str, Callable[[Any], Any] | None]:
        """Per side, ``item -> time`` in the units of ``kind`` (``None``: processing time)."""
        return {
            side: None if stamp is None else kind.reader(stamp, what, self.label)
            for side, stamp, what in (
                ("left", self.timestamp, "timestamp"),
                ("right", self.right_timestamp, "right_timestamp"),
            )
        }

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        if self.error_policy.guarded:
            with PolicyGuard.of(self, outp) as guard:
                self._join(inp, outp, guard)
        else:
            self._join(inp, outp, None)

    def _join(self, inp: Iterable[Any], outp: Outp, guard: PolicyGuard | None) -> None:
        raise NotImplementedError  # pragma: no cover - each join defines it

    def _not_a_side(self, tagged: Any) -> ValueError:
        return ValueError(
            f"join {self.label!r} got {tagged!r}; link its upstreams to join.left and "
            "join.right (or feed it Tagged('left'|'right', item), e.g. from a Merge)"
        )


class Join(_TwoSided):
    """Join two streams by key within tumbling windows of ``window`` (seconds or a timedelta).

    Link the streams to ``join.left`` and ``join.right``, or feed the join
    :class:`Tagged` ``("left" | "right", item)`` values (from a :class:`Merge` whose inputs
    are called ``"left"`` and ``"right"``, or made by your own node). A left and a right
    item *match* when ``key(left) == right_key(right)`` (``right_key`` defaults to ``key``)
    and their timestamps fall in the same window ``[k*window, (k+1)*window)``. Each match
    is emitted as a :class:`JoinResult` ``(key, left, right)`` as soon as its second item
    arrives. With ``how="left"``, a left item that found no match is emitted as
    ``(key, left, None)`` when its window closes.

    Time is event time with ``timestamp=func`` (``right_timestamp`` for the right items if
    it differs) and processing time otherwise (``clock()`` on arrival). Time is seconds, or
    timezone-aware datetimes when ``window`` is a ``timedelta``, as for the windows (see
    ``help(nanostream.operators.window)``). The watermark is
    the smaller of the largest timestamps seen on each side (a side whose input has ended
    no longer holds it back) minus ``allowed_lateness``; a window closes when the watermark
    reaches its end, and every window closes when the input ends. In processing time the
    windows also close while the input is idle (the join gets ticks every quarter
    ``window``, at most every second, with the default clock). An item whose window has
    closed is late: dropped, or with ``late="port"`` sent to the ``"late"`` port as
    ``Tagged(side, item)``.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Join
        >>> orders = nanostream.from_iterable([(1, "o1", 0.5), (2, "o2", 0.7)])
        >>> payments = nanostream.from_iterable([(1, "p1", 0.9)])
        >>> join = Join(lambda r: r[0], window=1.0, timestamp=lambda r: r[2], how="left")
        >>> orders > join.left
        Join(name=None).input('left')
        >>> payments > join.right
        Join(name=None).input('right')
        >>> sink = nanostream.testing.Collect()
        >>> join > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sorted((r.key, r.left[1], r.right and r.right[1]) for r in sink.items)
        [(1, 'o1', 'p1'), (2, 'o2', None)]
    """

    def __init__(
        self,
        key: Callable[[Any], Hashable],
        window: float | timedelta,
        *,
        right_key: Callable[[Any], Hashable] | None = None,
        how: str = "inner",
        timestamp: Callable[[Any], Any] | None = None,
        right_timestamp: Callable[[Any], Any] | None = None,
        allowed_lateness: float | timedelta = 0,
        late: str = "drop",
        clock: Callable[[], Any] = time.time,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        self._setup_sides(
            key,
            right_key=right_key,
            how=how,
            timestamp=timestamp,
            right_timestamp=right_timestamp,
            late=late,
        )
        label = node_label(self, with_class=True)
        check_callable(label, "clock", clock)
        self._time_kind = kind = TimeKind.of(
            "Join", label=label, window=window, allowed_lateness=allowed_lateness
        )
        self._window = kind.duration("window", window, "positive")
        self._lateness = kind.duration("allowed_lateness", allowed_lateness, "non-negative")
        if timestamp is None and (right_timestamp is not None or allowed_lateness):
            raise GraphError(
                "Join: right_timestamp and allowed_lateness apply to event time; "
                "give timestamp=func too"
            )
        self.window = window
        self.allowed_lateness = allowed_lateness
        self.clock = clock
        if timestamp is None and clock is time.time:
            # windows close while the input is idle
            self.tick_interval = tick_for(kind.seconds(self._window))

    def _handles_ticks(self) -> bool:
        return self.timestamp is None  # in event time, only items move time on

    _restored: dict[str, Any] | None = None
    # (groups, their heap, each side's latest time, [watermark]) of the loop, for snapshots
    _open: tuple[dict[Any, _Group], list[Any], dict[str, Any], list[Any]] | None = None

    def snapshot_state(self) -> dict[str, Any]:
        """The open windows (each key's left items, whether each matched, right items),
        the order they close in, each side's latest time and the watermark.

        Example:
            >>> from nanostream.nodes import Join, Tagged
            >>> join = Join(lambda e: e[0], window=10, timestamp=lambda e: e[1], how="left")
            >>> join.restore_state({"groups": {("a", 0): ([("a", 1)], [False], [])},
            ...     "heap": [(10, 0, 0, "a")], "sides": {"left": 1, "right": 1}, "watermark": 1})
            >>> out = []
            >>> join.as_function()(iter([Tagged("right", ("a", 2))]), out.append)
            >>> out
            [JoinResult(key='a', left=('a', 1), right=('a', 2))]
        """
        if self._open is None:
            return {"groups": {}, "heap": [], "sides": {}, "watermark": _NEG_INF}
        groups, heap, side_max, mark = self._open
        return {
            "groups": {at: (g.lefts, g.matched, g.rights) for at, g in groups.items()},
            "heap": list(heap),
            "sides": dict(side_max),
            "watermark": mark[0],
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """Open again the windows :meth:`snapshot_state` took (when the node starts).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        self._restored = state

    def _join(self, inp: Iterable[Any], outp: Outp, guard: PolicyGuard | None) -> None:
        size, lateness = self._window, self._lateness
        key_of = {"left": self.key, "right": self.right_key}
        ts_of = self._readers(self._time_kind)
        event_time = self.timestamp is not None
        clock = self._time_kind.clock(self.clock, self.label)
        left_join = self.how == "left"
        late_port = self.late == "port"
        groups: dict[tuple[Any, Any], _Group] = {}
        heap: list[tuple[Any, Any, int, Any]] = []
        opened: deque[tuple[int, tuple[Any, Any]]] = deque()  # (read number, group), in order
        release = self.release_items
        reads = 0  # items read so far (close_until reads it)
        side_max: dict[str, Any] = {"left": _NEG_INF, "right": _NEG_INF}
        mark: list[Any] = [_NEG_INF]  # the watermark, for snapshots
        restored, self._restored = self._restored, None
        if restored is not None:  # the restored windows keep what they hold until they close
            for at, (lefts, matched, rights) in restored["groups"].items():
                kept = groups[at] = _Group()
                kept.lefts, kept.matched, kept.rights = list(lefts), list(matched), list(rights)
            heap = sorted(restored["heap"])
            opened.extend((0, (k, start)) for _, start, _, k in heap)
            side_max.update(restored["sides"])
            mark[0] = restored["watermark"]
        seq = max((entry[2] for entry in heap), default=-1) + 1
        watermark: Any = mark[0]
        self._open = (groups, heap, side_max, mark)

        def close_until(limit: Any, pending: int | None) -> None:
            """Close the windows ending by ``limit``; release what they held (``pending``:
            whether the last item read is still to be placed, ``None`` at the end)."""
            if not (heap and heap[0][0] <= limit):
                return
            while heap and heap[0][0] <= limit:
                _, start, _, k = heapq.heappop(heap)
                group = groups.pop((k, start))
                if left_join:
                    for left, matched in zip(group.lefts, group.matched, strict=True):
                        if not matched:
                            outp(JoinResult(k, left, None))
            if pending is not None:
                release(keep=kept_reads(reads, oldest_open(opened, groups), pending))

        def advance(new_watermark: Any, pending: int = 1) -> None:
            nonlocal watermark
            if new_watermark > watermark:
                watermark = mark[0] = new_watermark
                close_until(watermark, pending)

        def prepare(tagged: Tagged) -> tuple[Any, Any]:
            side, item = tagged
            stamp = ts_of[side]
            return stamp(item) if stamp is not None else clock(), key_of[side](item)

        ticks = 0
        for number, tagged in enumerate(inp, 1):
            if tagged is TICK:  # processing time, no item for a while: the clock moves on
                ticks += 1
                reads = number - ticks
                advance(clock(), 0)
                continue
            reads = number - ticks
            kind = type(tagged)
            if kind is _InputEnded:
                side_max[tagged.origin] = _INF
                if event_time:
                    advance(min(side_max.values()) - lateness)
                continue
            if kind is not Tagged or tagged.origin not in key_of:
                raise self._not_a_side(tagged)
            side, item = tagged
            if guard is None:
                stamp = ts_of[side]
                ts = stamp(item) if stamp is not None else clock()
                k = key_of[side](item)
            else:
                prepared = guard.prepare(tagged, prepare)
                if prepared is MISSING:
                    continue
                ts, k = prepared
            if event_time:
                if ts > side_max[side]:
                    side_max[side] = ts
                    advance(min(side_max.values()) - lateness)
            else:
                advance(ts)
            start = ts - ts % size
            group = groups.get((k, start))
            if group is None:
                if start + size <= watermark:
                    if late_port:
                        outp(TaggedOutput("late", tagged))
                    continue
                group = groups[(k, start)] = _Group()
                heapq.heappush(heap, (start + size, start, seq, k))
                opened.append((reads, (k, start)))
                seq += 1
            if side == "left":
                group.lefts.append(item)
                group.matched.append(bool(group.rights))
                for right in group.rights:
                    outp(JoinResult(k, item, right))
            else:
                group.rights.append(item)
                for i, left in enumerate(group.lefts):
                    outp(JoinResult(k, left, item))
                    group.matched[i] = True
        close_until(_INF, None)


class _Held:
    """An item an interval join keeps while items of the other side may still match it."""

    __slots__ = ("alive", "item", "matched", "time")

    def __init__(self, time: Any, item: Any, matched: bool) -> None:
        self.time = time
        self.item = item
        self.matched = matched
        self.alive = True


class IntervalJoin(_TwoSided):
    """Pair the items of two streams whose times lie within a bound of each other.

    A left item and a right item with the same key (``key(left) == right_key(right)``;
    ``right_key`` defaults to ``key``) are paired when ``time(left) + lower <= time(right)
    <= time(left) + upper``: an order and its payment up to 50 s later is ``lower=0,
    upper=50``; ``lower=-5, upper=5`` pairs items at most 5 s apart either way. Each pair
    is emitted as a :class:`JoinResult` ``(key, left, right)`` as soon as its second item
    arrives. With ``how="left"``, a left item that found no match is emitted as ``(key,
    left, None)`` once no right item can match it any more (see below) or the input ends.

    Link the streams to ``join.left`` and ``join.right``, or feed the join :class:`Tagged`
    ``("left" | "right", item)`` values, as for :class:`Join`.

    **Time** is event time only: ``timestamp=func`` (``right_timestamp`` for the right
    items if it differs) gives each item's time, in seconds, or as a timezone-aware
    ``datetime`` when ``lower`` and ``upper`` are ``timedelta`` values (see
    ``help(nanostream.operators.window)``). The watermark is the smaller of the largest times
    seen on each side (a side whose input has ended no longer holds it back) minus
    ``allowed_lateness``. An item older than the watermark is late: dropped, or with
    ``late="port"`` sent to the ``"late"`` port as ``Tagged(side, item)``. A left item
    is kept until the watermark passes ``time + upper``, a right item until it passes
    ``time - lower``: after that no item on time can match it, and it is forgotten.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import IntervalJoin
        >>> orders = nanostream.from_iterable([("o1", 0), ("o2", 10)])
        >>> payments = nanostream.from_iterable([("o1", 30), ("o2", 90)])
        >>> paid = IntervalJoin(
        ...     lambda r: r[0], lower=0, upper=50, timestamp=lambda r: r[1], how="left"
        ... )
        >>> orders > paid.left
        IntervalJoin(name=None).input('left')
        >>> payments > paid.right
        IntervalJoin(name=None).input('right')
        >>> sink = nanostream.testing.Collect()
        >>> paid > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sorted((r.key, r.right) for r in sink.items)
        [('o1', ('o1', 30)), ('o2', None)]
    """

    def __init__(
        self,
        key: Callable[[Any], Hashable],
        *,
        lower: float | timedelta,
        upper: float | timedelta,
        timestamp: Callable[[Any], Any],
        right_key: Callable[[Any], Hashable] | None = None,
        right_timestamp: Callable[[Any], Any] | None = None,
        how: str = "inner",
        allowed_lateness: float | timedelta = 0,
        late: str = "drop",
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        if timestamp is None:
            raise GraphError(
                "IntervalJoin: give timestamp=func; an interval join pairs items by their "
                "own times (event time)"
            )
        self._setup_sides(
            key,
            right_key=right_key,
            how=how,
            timestamp=timestamp,
            right_timestamp=right_timestamp,
            late=late,
        )
        label = node_label(self, with_class=True)
        self._time_kind = kind = TimeKind.of(
            "IntervalJoin", label=label, lower=lower, upper=upper, allowed_lateness=allowed_lateness
        )
        self._lower = kind.duration("lower", lower, "any")
        self._upper = kind.duration("upper", upper, "any")
        self._lateness = kind.duration("allowed_lateness", allowed_lateness, "non-negative")
        if self._lower > self._upper:
            raise OptionError(
                f"{label}: lower ({lower!r}) is above upper ({upper!r}); items pair when "
                "left time + lower <= right time <= left time + upper"
            )
        self.lower = lower
        self.upper = upper
        self.allowed_lateness = allowed_lateness

    _restored: dict[str, Any] | None = None
    # (the expiry heap of the items held, each side's latest time, [watermark]), for snapshots
    _open: tuple[list[Any], dict[str, Any], list[Any]] | None = None

    def snapshot_state(self) -> dict[str, Any]:
        """The items held (in the order read, with their side, key, time, the time they
        expire and whether they matched), each side's latest time and the watermark.

        Example:
            >>> from nanostream.nodes import IntervalJoin, Tagged
            >>> join = IntervalJoin(lambda e: e[0], lower=0, upper=5, timestamp=lambda e: e[1])
            >>> join.restore_state({"held": [(6, 1, "left", "a", 1, ("a", 1), False)],
            ...     "sides": {"left": 1, "right": 1}, "watermark": 1})
            >>> out = []
            >>> join.as_function()(iter([Tagged("right", ("a", 4))]), out.append)
            >>> out
            [JoinResult(key='a', left=('a', 1), right=('a', 4))]
        """
        if self._open is None:
            return {"held": [], "sides": {}, "watermark": _NEG_INF}
        expiry, side_max, mark = self._open
        held = [(until, n, side, k, e.time, e.item, e.matched) for until, n, side, k, e in expiry]
        held.sort(key=lambda entry: entry[1])  # in the order read
        return {"held": held, "sides": dict(side_max), "watermark": mark[0]}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Hold again the items :meth:`snapshot_state` took (when the node starts).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        self._restored = state

    def _join(self, inp: Iterable[Any], outp: Outp, guard: PolicyGuard | None) -> None:
        lower, upper, lateness = self._lower, self._upper, self._lateness
        key_of = {"left": self.key, "right": self.right_key}
        time_of = {
            side: read for side, read in self._readers(self._time_kind).items() if read is not None
        }
        left_join = self.how == "left"
        late_port = self.late == "port"
        release = self.release_items
        # side -> key -> read number -> held item (in arrival order)
        held: dict[str, dict[Any, dict[int, _Held]]] = {"left": {}, "right": {}}
        # (time after which the item cannot match, read number, side, key, item)
        expiry: list[tuple[Any, int, str, Any, _Held]] = []
        kept: deque[tuple[int, _Held]] = deque()  # (read number, item), in order
        side_max: dict[str, Any] = {"left": _NEG_INF, "right": _NEG_INF}
        mark: list[Any] = [_NEG_INF]  # the watermark, for snapshots
        restored, self._restored = self._restored, None
        if restored is not None:  # read numbers moved below this run's first, in order
            saved = restored["held"]
            shift = max((entry[1] for entry in saved), default=0) + 1
            for until, n, side, k, t, item, matched in saved:
                entry = _Held(t, item, matched)
                held[side].setdefault(k, {})[n - shift] = entry
                expiry.append((until, n - shift, side, k, entry))
                kept.append((n - shift, entry))
            heapq.heapify(expiry)
            side_max.update(restored["sides"])
            mark[0] = restored["watermark"]
        watermark: Any = mark[0]
        self._open = (expiry, side_max, mark)
        reads = 0

        def forget_until(limit: Any, pending: int | None) -> None:
            """Forget the items that expire before ``limit`` (emitting an unmatched left one
            with ``how="left"``); release what they held (``pending``: whether the last item
            read is still to be placed, ``None`` at the end)."""
            if not (expiry and expiry[0][0] < limit):
                return
            while expiry and expiry[0][0] < limit:
                _, number, side, k, entry = heapq.heappop(expiry)
                entry.alive = False
                by_key = held[side][k]
                del by_key[number]
                if not by_key:
                    del held[side][k]
                if left_join and side == "left" and not entry.matched:
                    outp(JoinResult(k, entry.item, None))
            if pending is None:
                return
            while kept and not kept[0][1].alive:
                kept.popleft()
            release(keep=kept_reads(reads, kept[0][0] if kept else None, pending))

        def prepare(tagged: Tagged) -> tuple[Any, Any]:
            side, item = tagged
            return time_of[side](item), key_of[side](item)

        for reads, tagged in enumerate(inp, 1):  # forget_until reads `reads`
            kind = type(tagged)
            if kind is _InputEnded:
                side_max[tagged.origin] = _INF
                new = min(side_max.values()) - lateness
                if new > watermark:
                    watermark = mark[0] = new
                    forget_until(watermark, 1)
                continue
            if kind is not Tagged or tagged.origin not in key_of:
                raise self._not_a_side(tagged)
            if guard is None:
                t, k = prepare(tagged)
            else:
                prepared = guard.prepare(tagged, prepare)
                if prepared is MISSING:
                    continue
                t, k = prepared
            side, item = tagged
            if t > side_max[side]:
                side_max[side] = t
                new = min(side_max.values()) - lateness
                if new > watermark:
                    watermark = mark[0] = new
                    forget_until(watermark, 1)
            if t < watermark:
                if late_port:
                    outp(TaggedOutput("late", tagged))
                continue
            matched = False
            others = held["right" if side == "left" else "left"].get(k)
            if others:
                if side == "left":
                    low, high = t + lower, t + upper
                    for other in others.values():
                        if low <= other.time <= high:
                            outp(JoinResult(k, item, other.item))
                            matched = True
                else:
                    low, high = t - upper, t - lower
                    for other in others.values():
                        if low <= other.time <= high:
                            outp(JoinResult(k, other.item, item))
                            other.matched = True
            until = t + upper if side == "left" else t - lower
            if until < watermark:  # no item on time can match it
                if left_join and side == "left" and not matched:
                    outp(JoinResult(k, item, None))
                continue
            entry = _Held(t, item, matched)
            held[side].setdefault(k, {})[reads] = entry
            heapq.heappush(expiry, (until, reads, side, k, entry))
            kept.append((reads, entry))
        forget_until(_INF, None)


class Router(Operator):
    """Send each item to the output port named by ``route(item)``.

    Link each port with ``router["name"] > node``; ``router > node`` links the default port
    ``"out"``, which ``route`` selects by returning ``"out"``. An item routed to a port
    that has no link is dropped, and so is an item for which ``route`` returns ``None``.
    With ``ports=("a", "b")`` the router checks, before the run, that only those ports
    (and ``"out"``) are linked, and fails if ``route`` returns another name.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Router
        >>> big, small = nanostream.testing.Collect(), nanostream.testing.Collect()
        >>> router = Router(lambda x: "big" if x >= 10 else "small")
        >>> nanostream.from_iterable([1, 50, 7, 12]) > router
        Router(name=None)
        >>> router["big"] > big
        Collect(name=None)
        >>> router["small"] > small
        Collect(name=None)
        >>> router.global_start()
        >>> big.items, small.items
        ([50, 12], [1, 7])
    """

    def __init__(
        self,
        route: Callable[[Any], str | None],
        *,
        ports: Iterable[str] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        check_callable("Router", "route", route)
        declared = tuple(ports) if ports is not None else None
        if declared is not None and not all(isinstance(p, str) and p for p in declared):
            raise GraphError(f"Router: ports must be non-empty strings, got {declared!r}")
        self.route = route
        self.declared_ports = declared
        # Always non-empty, so the runner routes this node's tagged outputs by port.
        self.ports = (DEFAULT_PORT, *(p for p in declared or () if p != DEFAULT_PORT))

    holds_items = False

    def _user_functions(self) -> tuple[str, ...]:
        return ("route",)

    def validate(self) -> None:
        """With declared ``ports``, refuse links from a port that is not declared."""
        super().validate()
        if self.declared_ports is None:
            return
        for edge in pipeline_of(self).edges:
            if edge.source is self and edge.port not in (*self.ports, ERRORS_PORT):
                raise GraphError(
                    f"router {self.label!r} has no port {edge.port!r}; its ports are "
                    f"{', '.join(repr(p) for p in self.ports)}"
                )

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        route = self.route
        allowed = set(self.ports) if self.declared_ports is not None else None
        if self.error_policy.guarded:
            with PolicyGuard.of(self, outp) as guard:
                for item in inp:
                    guard.process(item, self._routed)
            return
        for item in inp:
            port = route(item)
            if port is None:
                continue
            if allowed is not None and port not in allowed:
                raise self._unknown_port(item, port)
            if port == DEFAULT_PORT:
                outp(item)
            else:
                outp(TaggedOutput(port, item))

    def _routed(self, item: Any) -> Iterable[Any]:
        """The item on its port (the loop above, for the error policy)."""
        port = self.route(item)
        if port is None:
            return ()
        if self.declared_ports is not None and port not in self.ports:
            raise self._unknown_port(item, port)
        return (item,) if port == DEFAULT_PORT else (TaggedOutput(port, item),)

    def _unknown_port(self, item: Any, port: str) -> ValueError:
        return ValueError(
            f"router {self.label!r}: route returned {port!r} for {item!r}, which is "
            f"not one of its ports {sorted(self.ports)!r}"
        )
