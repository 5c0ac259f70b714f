"""How items cross between actors: remote calls that carry batches, in order, bounded.

Everything else a node does on Ray is the shared runtime of :mod:`nanostream._engine` (its
``Channel`` as the node's input, its ``CheckedOutbox`` for every output port, its
``InputReader``, context and acknowledgement routing). What differs is only the wire:

* **Sending** (:class:`Target`, a :class:`~nanostream._engine.channel.Downstream`). An
  outbox puts a batch into a ``Target``: one downstream node, i.e. its actors. A batch goes
  to one of them (round-robin, or split by a stable hash of ``key(item)``), a marker and
  the end to each of them. Each (sender instance, port, receiver actor) is a :class:`Link`:
  a numbered stream of ``push`` calls with at most ``max_in_flight`` unfinished, so a
  sender waits while its receiver has no room (back-pressure across processes).
* **Receiving** (:class:`Receiver`). ``push`` runs on the receiving actor's event loop:
  it puts each stream's batches into the node's ``Channel`` in their order, whatever order
  the calls run in, and waits (as a coroutine, holding no thread) while the channel holds
  ``queue_size`` items. The channel's waiter (:class:`LoopCondition`) wakes both sides:
  the node thread with a condition, the waiting calls through the event loop.
* **Acknowledgements** (:class:`RemoteAcks`). A marker reaches a sink in another actor
  than its source's: the sink tells the source's actor with a ``reached`` call.

Imported only where Ray is installed (by the actor).
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import ray

from ..._core.acks import AckCoordinator, AckRouting, Inject, Marker
from ..._core.run import NodeCounters
from ..._core.signals import RunAborted
from ..._engine.channel import END, Channel
from ..._engine.checkpoint import ENDED, Barrier

__all__ = ["Link", "LoopCondition", "Receiver", "RemoteAcks", "Target", "stable_hash"]

_WAIT_TICK_S = 0.1  # how often a sender waiting for its calls looks for an abort


def stable_hash(key: Any) -> int:
    """A hash of ``key`` that is the same in every process (``hash(str)`` is not).

    Used to route items to replicas by key. Ints, strings, bytes, floats, None, booleans
    and tuples of them hash by value; other objects by their ``repr``.

    Example:
        >>> from nanostream.runners.ray._transport import stable_hash
        >>> stable_hash("user-1") == stable_hash("user-1"), stable_hash(7), stable_hash(7.0)
        (True, 7, 7)
    """
    if key is None or isinstance(key, bool):
        return zlib.crc32(repr(key).encode())
    if isinstance(key, int):
        return key
    if isinstance(key, float) and key.is_integer():
        return int(key)
    if isinstance(key, (str, bytes)):
        data = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
        return zlib.crc32(data)
    if isinstance(key, tuple):
        value = 0x345678
        for part in key:
            value = ((value * 1000003) ^ stable_hash(part)) & 0xFFFFFFFFFFFF
        return value
    return zlib.crc32(repr(key).encode())


# --------------------------------------------------------------------- receiving
class LoopCondition(threading.Condition):
    """The waiter of a node's channel in an actor: its ``notify_all`` also wakes the
    ``push`` calls that wait on the event loop for room (see :class:`Receiver`)."""

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self.receiver: Receiver | None = None

    def notify_all(self) -> None:
        super().notify_all()
        if self.receiver is not None:
            self.receiver.wake()


class Receiver:
    """The receiving end of the calls into one actor: each stream's batches, in order.

    A *stream* is one (upstream node, replica, port); its calls are numbered, and a call
    whose turn has not come waits, as does one for which the channel has no room (the
    channel holds at most ``capacity`` items; one batch always goes into an empty one).
    """

    def __init__(self, channel: Channel, waiter: LoopCondition, loop: asyncio.AbstractEventLoop):
        self.channel = channel
        self.loop = loop
        self.aborted = False
        self._next_seq: dict[str, int] = {}
        self._change: asyncio.Future[None] = loop.create_future()
        self._waiting = 0
        waiter.receiver = self

    def _signal(self) -> None:  # on the event loop
        change, self._change = self._change, self.loop.create_future()
        if not change.done():
            change.set_result(None)

    def wake(self) -> None:
        """The channel changed (any thread): waiting calls look again."""
        if self._waiting:
            self.loop.call_soon_threadsafe(self._signal)

    def _admits(self, stream: str, seq: int, size: int) -> bool:
        if self._next_seq.get(stream, 0) != seq:
            return False
        if size == 0:
            return True
        depth = self.channel.depth()
        return depth == 0 or depth + size <= self.channel.capacity

    async def put(
        self, stream: str, seq: int, batch: list[Any] | Marker | Barrier, end: bool
    ) -> bool:
        """Put a batch, a marker or a stream's end into the channel in its stream's order,
        waiting for room; False once aborted."""
        size = 0 if end else len(batch)
        if not self._admits(stream, seq, size):
            self._waiting += 1
            self.channel.producer_waits(True)  # from now on a get wakes us
            try:
                while not self._admits(stream, seq, size):
                    if self.aborted:
                        return False
                    await self._change
            finally:
                self._waiting -= 1
                self.channel.producer_waits(False)
        if self.aborted:
            return False
        self._next_seq[stream] = seq + 1
        if end:
            self.channel.put_nowait(END)
        elif type(batch) is Barrier:  # a checkpoint's barrier (ENDED is one per process)
            self.channel.put_nowait(ENDED if batch.epoch == ENDED.epoch else batch)
        elif size or type(batch) is Marker:
            self.channel.put_nowait(batch)
        if self._waiting:  # the next call of this stream may be waiting for its turn
            self._signal()
        return True

    def abort(self) -> None:
        """Waiting calls return False (any thread)."""
        self.aborted = True
        self.loop.call_soon_threadsafe(self._signal)


# --------------------------------------------------------------------- sending
class Link:
    """One sender instance's port to one receiver actor: ordered, bounded calls in flight."""

    def __init__(
        self,
        actor: Any,
        stream: str,
        *,
        run_id: str,
        max_in_flight: int,
        counters: NodeCounters,
        aborted: Callable[[], bool],
    ) -> None:
        self.actor = actor
        self.run_id = run_id
        self.stream = stream
        self.max_in_flight = max_in_flight
        self.counters = counters
        self.aborted = aborted
        self.seq = 0
        self.in_flight: deque[Any] = deque()

    def send(self, items: list[Any] | Marker | Barrier, end: bool = False) -> None:
        self.wait_below(self.max_in_flight)
        call = self.actor.push.remote(self.run_id, self.stream, self.seq, items, end)
        self.in_flight.append(call)
        self.seq += 1

    def wait_below(self, limit: int) -> None:
        """Wait until fewer than ``limit`` calls are unfinished (back-pressure)."""
        in_flight = self.in_flight
        if len(in_flight) < limit:
            return
        counters = self.counters
        start = time.monotonic()
        counters.output_wait_since = start
        try:
            while len(in_flight) >= limit:
                if self.aborted():
                    raise RunAborted
                ready, _ = ray.wait([in_flight[0]], timeout=_WAIT_TICK_S)
                if ready:
                    # Finished; if the receiver refused (aborted) or died, the driver is
                    # aborting the run and this actor hears of it at once.
                    in_flight.popleft()
        finally:
            counters.output_wait_since = None
            counters.blocked_output_s += time.monotonic() - start


class Target:
    """A downstream node as an outbox sees it: its actors, and how a batch is spread.

    Items go to one actor (round-robin, or by ``key``); a marker, a checkpoint's barrier
    and the end go to each (every replica aligns its own markers and barriers and counts
    its own ends). After the end, the
    sender waits until every call has been taken, so its node ends after its data arrived.
    """

    def __init__(self, links: list[Link], key: Callable[[Any], Any] | None) -> None:
        self.links = links
        self.key = key
        self._next = 0

    def put(self, batch: Any, counters: NodeCounters | None = None) -> None:
        links = self.links
        if batch is END:
            for link in links:
                link.send([], end=True)
            for link in links:
                link.wait_below(1)
        elif type(batch) is Marker or type(batch) is Barrier:
            for link in links:
                link.send(batch)
        elif len(links) == 1:
            links[0].send(batch)
        elif self.key is None:
            links[self._next].send(batch)
            self._next = (self._next + 1) % len(links)
        else:
            n, key = len(links), self.key
            parts: list[list[Any]] = [[] for _ in links]
            for item in batch:
                parts[stable_hash(key(item)) % n].append(item)
            for link, part in zip(links, parts, strict=True):
                if part:
                    link.send(part)

    def put_nowait(self, batch: Any) -> None:
        """As :meth:`put`: a remote call waits only for the calls in flight."""
        self.put(batch)

    def room_for(self, batch: list[Any]) -> int:
        """Unknown here (the receiver decides): everything."""
        return len(batch)


# --------------------------------------------------------------------- acknowledgements
class RemoteAcks(AckCoordinator):
    """The acknowledgements as one actor sees them.

    In a source's actor, the source's pending acks and markers (as on the local runners);
    elsewhere, the routing its markers align with. A sink tells the source's actor that a
    marker reached it with a ``reached`` call (``sources``: the source actors by node
    index), and waits for those calls to be taken (:meth:`wait_delivered`) before its
    actor reports the node's end.
    """

    def __init__(
        self,
        inject: Inject,
        routing: AckRouting,
        *,
        index: int,
        run_id: str,
        sources: dict[int, Any],
        aborted: Callable[[], bool],
    ) -> None:
        super().__init__(None, inject, routing)
        self.index = index
        self.run_id = run_id
        self.sources = sources
        self.aborted = aborted
        self._calls: list[Any] = []

    def reached(self, marker: Marker) -> None:
        if marker.source == self.index:  # a source without outputs
            AckCoordinator.reached(self, marker)
            return
        actor = self.sources.get(marker.source)
        if actor is None:
            return
        calls = self._calls
        calls.append(actor.reached.remote(self.run_id, marker.source, marker.seq))
        if len(calls) >= 64:  # forget the delivered ones
            _, calls[:] = ray.wait(calls, num_returns=len(calls), timeout=0)

    def reached_here(self, marker: Marker) -> None:
        """(The source's actor.) One sink instance has ``marker``."""
        AckCoordinator.reached(self, marker)

    def wait_delivered(self) -> None:
        """Wait until the source actors have taken this sink's ``reached`` calls."""
        calls = self._calls
        while calls and not self.aborted():
            _, calls[:] = ray.wait(calls, num_returns=len(calls), timeout=_WAIT_TICK_S)
