"""Figures over time: rates, waiting shares, the bottleneck and per-item times.

A :class:`Sampler` is fed successive ``run.stats()`` snapshots and turns the counters into
what a person watching a pipeline wants: items per second, the share of time each node
waited for input or for room downstream, which node is the bottleneck, and an estimate of
the time each node spends per item. It needs nothing but the public ``NodeStats`` record.

How the estimates are made, and their limits:

- *Rates and waiting shares* are taken over a sliding window (3 s by default) between the
  oldest and newest snapshot in it.
- The engine adds a wait to ``blocked_input_s`` / ``blocked_output_s`` when the wait
  *ends*. While a node is inside a long wait, the sampler infers it: a running node that
  took no input during the whole window and whose queue is empty is counted as waiting for
  input; one that moved nothing while a downstream queue is at least half full is counted
  as waiting for room downstream (this needs the ``downstream`` map).
- The *bottleneck* is the running node that was busy (neither kind of waiting) the largest
  share of the window, at least half of it; near ties go to the fuller input queue.
- *Per-item time* is not measured item by item (that would cost a clock call per item).
  Each node's busy time (elapsed time minus recorded waits) is accumulated between
  snapshots together with the items it took in (items sent, for sources); whenever both
  are positive, the mean busy time per item is reported for that many items. Over a run,
  the reported total time and item count match the engine's counters; the spread of times
  within one sampling interval is not visible.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .._core.run import NodeStats

__all__ = ["NodeView", "Sample", "Sampler"]

_INFERRED = 1.0
_BOTTLENECK_MIN_BUSY = 0.5
_TIE = 0.05


@dataclass(frozen=True)
class NodeView:
    """One node as the progress view shows it: totals, rate, waiting shares.

    ``rate`` is items per second over the sampler's window (items taken in; items sent for
    a source). ``wait_input`` and ``wait_output`` are shares (0 to 1) of the window spent
    waiting for input and for room downstream.

    Example:
        >>> from nanostream.observe import NodeView
        >>> v = NodeView("parse", "running", False, 10, 10, 0, 40, 100, 5.0, 0.25, 0.5, False)
        >>> v.busy, v.queue_fill
        (0.25, 0.4)
    """

    name: str
    state: str
    is_source: bool
    items_in: int
    items_out: int
    errors: int
    queue_depth: int
    queue_capacity: int
    rate: float
    wait_input: float
    wait_output: float
    bottleneck: bool

    @property
    def busy(self) -> float:
        """Share of the window the node was working (neither kind of waiting)."""
        return max(0.0, 1.0 - self.wait_input - self.wait_output)

    @property
    def queue_fill(self) -> float:
        """How full the input queue is, 0 to 1 (0 for a source, which has none)."""
        if self.queue_capacity <= 0:
            return 0.0
        return min(1.0, self.queue_depth / self.queue_capacity)


@dataclass(frozen=True)
class Sample:
    """What one call of :meth:`Sampler.sample` found.

    ``item_times`` maps a node to ``(mean_seconds_per_item, items)`` for the items it
    finished accounting for since the previous sample (absent when none).

    Example:
        >>> from nanostream.observe import Sample
        >>> Sample(elapsed=1.5, nodes=()).bottleneck is None
        True
    """

    elapsed: float
    nodes: tuple[NodeView, ...]
    item_times: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def bottleneck(self) -> NodeView | None:
        """The node marked as the bottleneck, if any."""
        return next((n for n in self.nodes if n.bottleneck), None)


class _ItemClock:
    """Busy time and items of one node not yet reported as per-item times."""

    __slots__ = ("busy", "items")

    def __init__(self) -> None:
        self.busy = 0.0
        self.items = 0

    def add(self, busy: float, items: int) -> tuple[float, int] | None:
        self.busy += busy
        self.items += items
        if self.items > 0 and self.busy > 0:
            return self.flush()
        return None

    def flush(self) -> tuple[float, int] | None:
        if self.items <= 0:
            self.busy = 0.0
            return None
        result = (max(0.0, self.busy) / self.items, self.items)
        self.busy, self.items = 0.0, 0
        return result


class Sampler:
    """Turns successive ``run.stats()`` snapshots into :class:`Sample` records.

    ``downstream`` maps a node name to the names of the nodes it feeds; with it, a node
    stuck in a long wait for room downstream is recognised before the wait ends.

    Example:
        >>> import nanostream
        >>> from nanostream.observe import Sampler
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> nanostream.from_iterable(range(100), name="src") > sink
        Collect(name='sink')
        >>> run = sink.global_start(block=False)
        >>> run.wait(10)
        True
        >>> sampler = Sampler()
        >>> sample = sampler.sample(run.stats(), now=0.0)
        >>> [(n.name, n.items_in, n.items_out) for n in sample.nodes]
        [('src', 0, 100), ('sink', 100, 0)]
    """

    def __init__(
        self,
        *,
        window: float = 3.0,
        downstream: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.window = window
        self.downstream = {k: tuple(v) for k, v in (downstream or {}).items()}
        self._history: deque[tuple[float, dict[str, NodeStats]]] = deque()
        self._clocks: dict[str, _ItemClock] = {}
        self._first: float | None = None

    def baseline(self, stats: Mapping[str, NodeStats], at: float) -> None:
        """Record zero counters for the nodes of ``stats`` at ``at``, the run's start.

        Call it before the first :meth:`sample` when observing a run that started a
        while ago, so what happened before is counted (and ``elapsed`` is the run's time).
        """
        zero = {
            name: replace(
                s,
                state="running",
                items_in=0,
                items_out=0,
                errors=0,
                queue_depth=0,
                blocked_input_s=0.0,
                blocked_output_s=0.0,
            )
            for name, s in stats.items()
        }
        self.sample(zero, now=at)

    def sample(self, stats: Mapping[str, NodeStats], now: float | None = None) -> Sample:
        """Record a snapshot taken at ``now`` (``time.monotonic()`` by default)."""
        t = time.monotonic() if now is None else now
        snapshot = dict(stats)
        previous = self._history[-1] if self._history else None
        if self._first is None:
            self._first = t
        self._history.append((t, snapshot))
        while len(self._history) > 2 and self._history[1][0] <= t - self.window:
            self._history.popleft()
        item_times = self._clock(previous, t, snapshot)
        base_t, base = self._history[0]
        span = t - base_t
        views = [self._view(s, base.get(name), span, snapshot) for name, s in snapshot.items()]
        views = _mark_bottleneck(views, span)
        return Sample(elapsed=t - self._first, nodes=tuple(views), item_times=item_times)

    def flush(self) -> dict[str, tuple[float, int]]:
        """Report the items still being accounted for (call once, when the run has ended)."""
        result = {}
        for name, clock in self._clocks.items():
            got = clock.flush()
            if got is not None:
                result[name] = got
        return result

    # ----------------------------------------------------------------- internals
    def _clock(
        self,
        previous: tuple[float, dict[str, NodeStats]] | None,
        t: float,
        snapshot: dict[str, NodeStats],
    ) -> dict[str, tuple[float, int]]:
        result: dict[str, tuple[float, int]] = {}
        if previous is None:
            return result
        prev_t, prev = previous
        dt = t - prev_t
        for name, cur in snapshot.items():
            old = prev.get(name)
            if old is None or (old.state != "running" and cur.state != "running"):
                continue
            items = _processed(cur) - _processed(old)
            waited = (cur.blocked_input_s - old.blocked_input_s) + (
                cur.blocked_output_s - old.blocked_output_s
            )
            clock = self._clocks.setdefault(name, _ItemClock())
            got = clock.add(dt - waited, items)
            if got is not None:
                result[name] = got
        return result

    def _view(
        self,
        cur: NodeStats,
        old: NodeStats | None,
        span: float,
        snapshot: dict[str, NodeStats],
    ) -> NodeView:
        is_source = cur.queue_capacity == 0
        rate = wait_in = wait_out = 0.0
        if old is not None and span > 0:
            moved = _processed(cur) - _processed(old)
            rate = moved / span
            d_in = cur.blocked_input_s - old.blocked_input_s
            d_out = cur.blocked_output_s - old.blocked_output_s
            wait_in = min(1.0, max(0.0, d_in / span))
            wait_out = min(1.0, max(0.0, d_out / span))
            if cur.state == "running":
                still = cur.items_in == old.items_in and cur.items_out == old.items_out
                idle = d_in == 0 and cur.items_in == old.items_in and cur.queue_depth == 0
                if idle and not is_source:
                    wait_in = _INFERRED
                if still and d_out == 0 and self._downstream_full(cur.name, snapshot):
                    wait_out = _INFERRED
            total = wait_in + wait_out
            if total > 1.0:
                wait_in, wait_out = wait_in / total, wait_out / total
        return NodeView(
            name=cur.name,
            state=cur.state,
            is_source=is_source,
            items_in=cur.items_in,
            items_out=cur.items_out,
            errors=cur.errors,
            queue_depth=cur.queue_depth,
            queue_capacity=cur.queue_capacity,
            rate=rate,
            wait_input=wait_in,
            wait_output=wait_out,
            bottleneck=False,
        )

    def _downstream_full(self, name: str, snapshot: dict[str, NodeStats]) -> bool:
        for target in self.downstream.get(name, ()):
            s = snapshot.get(target)
            if s is not None and s.queue_capacity > 0 and s.queue_depth * 2 >= s.queue_capacity:
                return True
        return False


def _processed(s: NodeStats) -> int:
    """Items a node has handled: taken in, or sent for a source."""
    return s.items_out if s.queue_capacity == 0 else s.items_in


def _mark_bottleneck(views: list[NodeView], span: float) -> list[NodeView]:
    if span <= 0:
        return views
    running = [v for v in views if v.state == "running"]
    if not running:
        return views
    best = max(v.busy for v in running)
    if best < _BOTTLENECK_MIN_BUSY:
        return views
    candidates = [v for v in running if v.busy >= best - _TIE]
    # near ties: the fuller input queue, then the one furthest downstream
    chosen = max(candidates, key=lambda v: (v.queue_fill, views.index(v)))
    return [NodeView(**{**v.__dict__, "bottleneck": True}) if v is chosen else v for v in views]
