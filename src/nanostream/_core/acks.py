"""Acknowledgements: a source learns when the items it emitted have been fully processed.

A source yields ``Acked(item, ack)`` instead of ``item``; nanostream calls ``ack()`` once
every item derived from ``item`` (through any fan-out, batch, window or join) has been
processed by every sink it reaches, or dead-lettered, and never before. docs/reliability.md
states the guarantee; this module is how runners keep it.

How it works: *markers* (Chandy-Lamport style barriers, without state snapshots).

- A source that has acknowledgements waiting puts a :class:`Marker` into its output
  channels right after items it has sent (never in the middle of a batch). The marker
  covers every ack attached before it.
- A node that reads a marker has consumed everything before it on that channel. When the
  marker has arrived on every input that can carry it (*alignment*, see
  :class:`AckRouting`), the node passes it on to its outputs after the outputs of those
  items; a node that keeps items between reads (``holds_items``) holds it until the node
  says it has emitted them (``release_items()``) or ends.
- When the marker has reached every sink (node without outputs) that the source reaches,
  everything the source emitted before it is done: its acks are called, in emission order.

Items move as plain batches; markers are separate entries in a channel, so a pipeline
without acknowledgements pays one type check per batch and nothing per item.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .graph import Plan

__all__ = ["MAX_IN_FLIGHT", "AckCoordinator", "AckRouting", "Acked", "Marker", "NodeMarkers"]

log = logging.getLogger("nanostream")

Ack = Callable[[], Any]


class Acked(NamedTuple):
    """Yield this from a source's ``generator()`` to be told when ``item`` is fully processed.

    ``ack()`` is called once every item derived from ``item`` has been processed by every
    sink it reaches (or dead-lettered), never before; acks are called in the order the
    items were emitted. A source that remembers its progress (a file ledger, a database
    cursor, a stream offset) commits it in ``ack``, so a crash re-delivers what was in
    flight. Supported by the ``threads``, ``cooperative`` and ``ray`` runners; see
    docs/reliability.md.

    Example:
        >>> import nanostream
        >>> done = []
        >>> class Numbers(nanostream.NanoNode):
        ...     def generator(self):
        ...         for i in range(3):
        ...             yield nanostream.Acked(i, lambda i=i: done.append(i))
        >>> sink = nanostream.testing.Collect()
        >>> Numbers() > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items, done
        ([0, 1, 2], [0, 1, 2])
    """

    item: Any
    ack: Ack


class Marker:
    """A barrier in a channel: everything source ``source`` sent before it is covered."""

    __slots__ = ("seq", "source")

    def __init__(self, source: int, seq: int) -> None:
        self.source = source
        self.seq = seq

    def __len__(self) -> int:  # counts as no items in a channel's depth
        return 0

    def __repr__(self) -> str:
        return f"Marker(source={self.source}, seq={self.seq})"


class AckRouting:
    """Where a source's markers go in a plan: how many inputs carry them, which sinks.

    ``replicas`` (one count per node, default 1 each) is for runners that run several
    instances of a node, each sending its own copy of a marker to every instance of each
    downstream node: inputs and sinks are then counted per instance.

    Example:
        >>> import nanostream
        >>> from nanostream._core.acks import AckRouting
        >>> src = nanostream.from_iterable([], name="src")
        >>> a, b = nanostream.testing.Collect(name="a"), nanostream.testing.Collect(name="b")
        >>> _ = src > a
        >>> _ = src > b
        >>> routing = AckRouting(nanostream.pipeline_of(src).plan())
        >>> routing.sinks(0), routing.expected(1, 0)
        (2, 1)
    """

    def __init__(self, plan: Plan, replicas: Sequence[int] | None = None) -> None:
        n = len(plan.nodes)
        self.names = [pn.name for pn in plan.nodes]
        self._weight = list(replicas) if replicas is not None else [1] * n
        self._children: list[list[int]] = [[] for _ in range(n)]
        self._parents: list[list[int]] = [[] for _ in range(n)]  # one entry per edge
        for s, _port, t in plan.edges:
            self._children[s].append(t)
            self._parents[t].append(s)
        self.terminal = [not c for c in self._children]
        self._reach: dict[int, frozenset[int]] = {}
        self._lock = threading.Lock()

    def reach(self, source: int) -> frozenset[int]:
        """The nodes ``source``'s items can reach, itself included."""
        with self._lock:
            found = self._reach.get(source)
            if found is None:
                seen = {source}
                stack = [source]
                while stack:
                    for child in self._children[stack.pop()]:
                        if child not in seen:
                            seen.add(child)
                            stack.append(child)
                found = self._reach[source] = frozenset(seen)
            return found

    def expected(self, node: int, source: int) -> int:
        """How many of ``node``'s inputs carry ``source``'s markers."""
        reach = self.reach(source)
        weight = self._weight
        return sum(weight[parent] for parent in self._parents[node] if parent in reach)

    def sinks(self, source: int) -> int:
        """How many sinks (nodes without outputs) ``source``'s markers reach."""
        weight = self._weight
        return sum(weight[i] for i in self.reach(source) if self.terminal[i])


MAX_IN_FLIGHT = 64
"""Markers of one source on their way to its sinks at once (besides its last one)."""


class _SourceAcks:
    """One source's acks: ``acks`` holds them in emission order, the first ``assigned`` of
    them covered by the markers in ``waiting`` (``(seq, count)``, in order).

    The source's thread appends to ``acks`` without a lock (a deque's append is atomic);
    everything else happens under ``lock``, once per marker.
    """

    __slots__ = ("acks", "arrivals", "assigned", "lock", "seq", "sinks", "waiting")

    def __init__(self, sinks: int) -> None:
        self.lock = threading.Lock()
        self.acks: deque[Ack] = deque()
        self.assigned = 0
        self.waiting: deque[tuple[int, int]] = deque()
        self.arrivals: dict[int, int] = {}
        self.seq = 0
        self.sinks = sinks


Inject = Callable[[int, Marker, bool], bool]
"""``inject(source, marker, final)``: put ``marker`` after everything the source has sent;
False if that cannot be done now without waiting (``final`` means: the source has ended
and flushed, so wait for the outbox locks)."""


class AckCoordinator:
    """One run's acknowledgements: pending acks per source, markers, completion.

    The runner supplies ``inject``; nodes report markers that reach a sink with
    :meth:`reached`. Safe to call from any thread. ``routing`` replaces the plan's own
    (a runner that counts instances, or that has no plan at hand, passes ``plan=None``).

    The cost is per marker, not per item: attaching an ack appends it to a deque; a marker
    covers every ack attached before it, and at most :data:`MAX_IN_FLIGHT` markers of a
    source travel at once (the next one goes out when one has come back, or at the
    source's next send), so however often a runner asks for a marker, a busy source sends
    few of them, each covering many acks.
    """

    def __init__(
        self, plan: Plan | None, inject: Inject, routing: AckRouting | None = None
    ) -> None:
        self.plan = plan
        self._inject = inject
        self._routing: AckRouting | None = routing
        self._sources: dict[int, _SourceAcks] = {}
        self._lock = threading.Lock()

    @property
    def routing(self) -> AckRouting:
        """The plan's :class:`AckRouting` (computed on first use)."""
        routing = self._routing
        if routing is None:
            with self._lock:
                if self._routing is None:
                    assert self.plan is not None
                    self._routing = AckRouting(self.plan)
                routing = self._routing
        return routing

    def _source(self, source: int) -> _SourceAcks:
        state = self._sources.get(source)
        if state is None:
            sinks = self.routing.sinks(source)
            with self._lock:
                state = self._sources.setdefault(source, _SourceAcks(sinks))
        return state

    def appender(self, source: int) -> Callable[[Ack], None]:
        """Attach an ack to the item ``source`` has just emitted, without asking for a
        marker (for the source's own thread; the runner marks after each send)."""
        return self._source(source).acks.append

    def attach(self, source: int, ack: Ack) -> None:
        """``ack`` is due once the item ``source`` has just emitted is fully processed."""
        self._source(source).acks.append(ack)
        self.mark(source)

    def has_acks(self, source: int) -> bool:
        """True once ``source`` has attached an acknowledgement."""
        return source in self._sources

    def mark(self, source: int, *, final: bool = False) -> None:
        """Put a marker after ``source``'s items if acks wait for one and it can be done now.

        Not while :data:`MAX_IN_FLIGHT` markers of the source are on their way, unless
        ``final``: the one that comes back asks for the next.
        """
        state = self._sources.get(source)
        if state is None:
            return
        with state.lock:
            # Counted before the marker goes in: an ack counted here belongs to an item
            # appended before it, which the marker follows once the outboxes are empty.
            count = len(state.acks) - state.assigned
            if count <= 0 or (len(state.waiting) >= MAX_IN_FLIGHT and not final):
                return
            marker = Marker(source, state.seq + 1)
            if not self._inject(source, marker, final):
                return
            state.seq = marker.seq
            state.assigned += count
            state.waiting.append((marker.seq, count))
        if self.routing.terminal[source]:  # a source without outputs: its items are done
            self.reached(marker)

    def reached(self, marker: Marker) -> None:
        """``marker`` has reached one sink; when it has reached all, call the acks it covers."""
        state = self._sources[marker.source]
        with state.lock:
            count = state.arrivals.pop(marker.seq, 0) + 1
            if count < state.sinks:
                state.arrivals[marker.seq] = count
                return
            # Calling under the lock keeps acks in emission order across sink threads. An
            # ack leaves ``acks`` only once it has returned, so :meth:`pending` counts it
            # while it runs (a runner that waits for a source's acks must not see none
            # left while the last one is still being called).
            waiting, acks = state.waiting, state.acks
            while waiting and waiting[0][0] <= marker.seq:
                covered = waiting[0][1]
                for _ in range(covered):
                    ack = acks[0]
                    try:
                        ack()
                    except Exception:
                        log.exception(
                            "the acknowledgement callback %r of source %r failed",
                            ack,
                            self.routing.names[marker.source],
                        )
                    finally:
                        acks.popleft()
                waiting.popleft()
                state.assigned -= covered
            more = len(acks) > state.assigned
        if more:  # acks attached meanwhile: their marker may go now
            self.mark(marker.source)

    def pending(self) -> int:
        """Acks attached and not yet called (or being called), over all sources."""
        return sum(len(state.acks) for state in list(self._sources.values()))


class NodeMarkers:
    """The markers that reach one node: aligned, held or passed on (the node's thread only).

    ``holds`` is the node's ``holds_items``: False passes a marker on as soon as it is
    aligned; True holds it until :meth:`request_release` covers it; None (not declared, for
    node functions) holds it until the node ends. ``position`` arguments count the items
    the node has read.
    """

    def __init__(
        self,
        name: str,
        index: int,
        coordinator: AckCoordinator,
        holds: bool | None,
        forward: Callable[[Marker], None],
    ) -> None:
        self.name = name
        self.index = index
        self.coordinator = coordinator
        self.holds = holds
        self.forward = forward
        self.terminal = coordinator.routing.terminal[index]
        self._arrivals: dict[tuple[int, int], int] = {}
        self._held: deque[tuple[Marker, int]] = deque()
        self._bound = -1
        self._warned = False
        # Set once the node has ended its outputs: markers then stop here, uncalled.
        self.ended = False

    def arrived(self, marker: Marker, position: int) -> None:
        """``marker`` was read after ``position`` items, all of them consumed by the node."""
        expected = self.coordinator.routing.expected(self.index, marker.source)
        if expected > 1:
            key = (marker.source, marker.seq)
            count = self._arrivals.pop(key, 0) + 1
            if count < expected:
                self._arrivals[key] = count
                return
        if self.holds is False:
            self._pass(marker)
            return
        self._held.append((marker, position))
        if position <= self._bound:  # the node has already released the items before it
            self.apply()
        if self.holds is None and not self._warned:
            self._warned = True
            log.warning(
                "node %r may keep items between reads (it is a node function, or overrides "
                "as_function) and does not say; acknowledgements of items passing through it "
                "wait until it ends. Configure it with holds_items=False if it emits each "
                "item's outputs before reading the next one",
                self.name,
            )

    def request_release(self, position: int) -> None:
        """The node has emitted the outputs of its first ``position`` items read."""
        self._bound = max(self._bound, position)

    def apply(self) -> None:
        """Pass on the held markers the node has released (its outputs are flushed)."""
        held = self._held
        bound = self._bound
        while held and held[0][1] <= bound:
            self._pass(held.popleft()[0])

    def finish(self) -> None:
        """The node has ended and flushed: pass on every held marker."""
        held = self._held
        while held:
            self._pass(held.popleft()[0])

    def _pass(self, marker: Marker) -> None:
        if self.ended:
            return
        if self.terminal:
            self.coordinator.reached(marker)
        else:
            self.forward(marker)
