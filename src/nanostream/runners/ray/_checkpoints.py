"""Checkpoints on Ray: aligned barriers through the actors, committed by the driver.

A run with a state store (``state=``, see docs/state.md) takes the same checkpoints on Ray
as on the local runners, with the shared machinery of :mod:`nanostream._engine.checkpoint`:

* the **driver** (:class:`DriverCheckpoints`) opens the store, restores each node's state
  (shipped to its actor with the node), and every ``checkpoint_interval`` begins an epoch:
  it tells each source's actor (``NodeHost.begin_checkpoint``);
* in each **actor** (:class:`ActorCheckpoints`), a source sends the barriers of the
  epochs begun at its next flush, after its snapshot; a node aligns them with the engine's
  ``NodeBarriers`` as on the threads runner (a barrier crosses to every replica of a
  target, as a marker does, and each input stream counts once); each snapshot, each
  barrier that reached a sink and each node's final state is reported to the driver with
  the answer to its ``events`` call, in order;
* the driver hands those reports to the run's ``CheckpointCoordinator``, which commits an
  epoch to the store once every instance of every sink has passed its barrier, and the
  final states once every node ended well;
* a sink that writes exactly once waits in its thread, as its barrier passes (and at its
  end), until the driver tells its actor that the epoch (the final states) is committed
  (``NodeHost.checkpoint_committed``); then it writes what it kept, as on the local
  runners, where the commit happens in the sink's thread.

Refused on Ray (when the run starts, naming the node): a node that keeps state with
``replicas`` > 1 (each replica would hold a part of it under one name), and a sink that
writes exactly once in a pipeline with replicas (the node after them reads an input per
replica, and aligns their barriers by count).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..._core.context import NO_STATE
from ..._core.errors import GraphError
from ..._core.graph import Plan, PlanNode
from ..._core.signals import RunAborted
from ..._engine.checkpoint import Barrier, CheckpointCoordinator, restore
from ..._engine.node import inject_marker
from ..._engine.outbox import CheckedOutbox, Outbox
from ...state.store import encode_state

if TYPE_CHECKING:
    from ._runner import RayNodeOptions

__all__ = ["ActorCheckpoints", "DriverCheckpoints", "check_checkpoints", "put_barrier"]

#: A report of an actor to the driver: ("record", epoch, blob), ("reached", epoch),
#: ("ended", blob or None), ("due",) (a source emitted ``checkpoint_items`` items).
Report = tuple[Any, ...]


def check_checkpoints(plan: Plan, options: Sequence[RayNodeOptions]) -> None:
    """Refuse, naming the node, what Ray cannot checkpoint (with ``state=``).

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Reduce
        >>> from nanostream.runners.ray._runner import RayNodeOptions
        >>> src = nanostream.from_iterable([1], name="src")
        >>> _ = src > Reduce(lambda a, b: a + b, name="total") > nanostream.testing.Collect()
        >>> plan = nanostream.pipeline_of(src).plan(nanostream.RunOptions(state="x.state"))
        >>> check_checkpoints(plan, [RayNodeOptions(), RayNodeOptions(replicas=2),
        ...                          RayNodeOptions()])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        nanostream...GraphError: node 'total' keeps state and has replicas=2 on the ray ...
    """
    if plan.options.state is None:
        return
    for pn, opts in zip(plan.nodes, options, strict=True):
        if pn.snapshot is not None and opts.replicas > 1:
            raise GraphError(
                f"node {pn.name!r} keeps state and has replicas={opts.replicas} on the ray "
                "runner: each replica would hold a part of its state under one name in the "
                "state store; run it with replicas=1 in a run with state="
            )
    sinks = [pn for pn in plan.nodes if pn.exactly_once]
    replicated = [pn for pn, o in zip(plan.nodes, options, strict=True) if o.replicas > 1]
    if sinks and replicated:
        raise GraphError(
            f"{sinks[0].name!r} writes exactly once, but node {replicated[0].name!r} has "
            "replicas on the ray runner, and the node after it reads an input per replica "
            "(checkpoints are exact only along single-input paths): run it with "
            "replicas=1, or drop exactly_once=True (at-least-once)"
        )


def put_barrier(boxes: Sequence[Outbox], barrier: Barrier) -> None:
    """Send ``barrier`` down every output after everything the node emitted (its thread).

    Under the outboxes' locks, so that no batch the linger thread sends passes it.
    """
    for box in boxes:
        box.flush()
    marker: Any = barrier  # crosses like a marker: to every instance of each target
    inject_marker(list(boxes), marker, True)


class ActorCheckpoints:
    """One node's checkpoints inside its actor: the engine's ``NodeBarriers`` report here.

    ``report`` sends a :data:`Report` to the driver (any thread, in order). ``committed`` is
    the epoch the run was restored from (the Ray runner has no sink that waits for
    commits). For a source, :meth:`begin` (the driver's call) asks for the barriers of an
    epoch, sent at the source's next flush (:meth:`source_flushed`) or while it sleeps.

    Example:
        >>> reports = []
        >>> checkpoints = ActorCheckpoints(reports.append, committed=3, items=None)
        >>> checkpoints.record(0, 4, b"state"); checkpoints.reached(1, 4)
        >>> reports
        [('record', 4, b'state'), ('reached', 4)]
    """

    def __init__(
        self,
        report: Callable[[Report], None],
        *,
        committed: int,
        items: int | None,
        exactly_once: bool = False,
    ):
        self.committed = committed
        self.exactly_once = exactly_once
        self._final = False  # the driver committed the final states
        self._aborted = False
        self._told = threading.Condition(threading.Lock())
        self._report = report
        self._begun = committed  # the last epoch the driver began
        self._sent = committed  # the last epoch whose barrier this source sent
        self._items = items
        self._items_at = 0
        self._asked = False
        self._boxes: Sequence[Outbox] = ()

    def begin(self, epoch: int, boxes: Sequence[Outbox]) -> None:
        """(A source's actor, the event loop.) Epoch ``epoch`` has begun: send its barrier
        at the next item (the outboxes send at once)."""
        if epoch > self._begun:
            self._begun = epoch
            for box in boxes:
                if isinstance(box, CheckedOutbox):
                    box.preempt()

    def source_flushed(self, pn: PlanNode, boxes: Sequence[Outbox], items_out: int) -> None:
        """(The source's thread, after a flush or while it sleeps.) Send the barriers of
        the epochs begun since the last ones, after the source's snapshot."""
        target = self._begun
        if target <= self._sent:
            if (
                self._items is not None
                and not self._asked
                and items_out - self._items_at >= self._items
            ):
                self._asked = True
                self._report(("due",))
            return
        self._items_at = items_out
        self._asked = False
        blob = encode_state(pn.snapshot()) if pn.snapshot is not None else None
        for epoch in range(self._sent + 1, target + 1):
            if blob is not None:
                self.record(pn.index, epoch, blob)
            if pn.outputs:
                put_barrier(boxes, Barrier(epoch))
            else:
                self.reached(pn.index, epoch)
        self._sent = target

    def record(self, index: int, epoch: int, blob: bytes) -> None:
        """The node's state at ``epoch``."""
        self._report(("record", epoch, blob))

    def reached(self, sink: int, epoch: int) -> None:
        """The barrier of ``epoch`` has reached this sink instance. A sink that writes
        exactly once waits until the driver committed ``epoch`` (as on the local runners,
        where the sink's thread commits it), then writes what it kept."""
        self._report(("reached", epoch))
        if self.exactly_once:
            self._wait(lambda: self.committed >= epoch)

    def ended(self, index: int, blob: bytes | None) -> None:
        """The node instance ended well, with this final state (a sink that writes exactly
        once waits for the driver's final commit)."""
        self._report(("ended", blob))
        if self.exactly_once:
            self._wait(lambda: self._final)

    @property
    def final(self) -> bool:
        """The driver has committed the final states (what an exactly-once sink's
        :meth:`ended` waits for)."""
        return self._final

    def told(self, epoch: int, final: bool) -> None:
        """(The driver's call, the event loop.) Epoch ``epoch`` is committed; ``final``:
        the final states too."""
        with self._told:
            self.committed = max(self.committed, epoch)
            self._final = self._final or final
            self._told.notify_all()

    def abort(self) -> None:
        """The run is aborting: a sink waiting for a commit stops waiting."""
        with self._told:
            self._aborted = True
            self._told.notify_all()

    def _wait(self, done: Callable[[], bool]) -> None:
        with self._told:
            self._told.wait_for(lambda: done() or self._aborted)
        if self._aborted:
            raise RunAborted


class _Holder:
    """Stands for a node's context in the driver while the store restores its state."""

    def __init__(self) -> None:
        self.restored_state: Any = NO_STATE


class DriverCheckpoints:
    """A Ray run's checkpoints in the driver: the store, the epochs, the actors' reports.

    Opening it restores the state of the nodes (:meth:`restored`, shipped to the actors).
    Called from the driver's watcher thread only (and :meth:`close` once it has ended).

    Example:
        >>> import os, tempfile, nanostream
        >>> src = nanostream.from_iterable([1], name="src")
        >>> _ = src > nanostream.testing.Collect(name="sink")
        >>> path = os.path.join(tempfile.mkdtemp(), "run.state")
        >>> plan = nanostream.pipeline_of(src).plan(nanostream.RunOptions(state=path))
        >>> checkpoints = DriverCheckpoints(plan, [1, 1])
        >>> checkpoints.report(0, 0, ("ended", None))
        >>> checkpoints.report(1, 0, ("ended", None))
        >>> checkpoints.coordinator.committed
        1
        >>> checkpoints.close()
    """

    def __init__(self, plan: Plan, replicas: Sequence[int]) -> None:
        self.plan = plan
        self.replicas = list(replicas)
        holders = [_Holder() for _ in plan.nodes]
        store, restored = restore(plan, holders)
        self._restored = [h.restored_state for h in holders]
        self.coordinator = CheckpointCoordinator(plan, store, restored, {})
        self.interval = plan.options.checkpoint_interval
        self._due = time.monotonic() + self.interval
        self._reached: dict[tuple[int, int], set[int]] = {}
        self._ended: dict[int, set[int]] = {}
        self._final: dict[int, bytes] = {}
        # The reports come from each actor in order, but not in order across actors: a
        # sink's barrier (or its end) may be told before the snapshot a node took as the
        # barrier passed it. An epoch's snapshots and barriers reach the coordinator once
        # every node that keeps state recorded it (or ended: its final state counts).
        self._keeps = {pn.index for pn in plan.nodes if pn.snapshot is not None}
        self._records: dict[int, dict[int, bytes]] = {}  # epoch: node: snapshot
        self._waiting: list[tuple[int, int]] = []  # (sink, epoch) passed by every instance
        self._done: set[int] = set()  # nodes whose every instance ended
        self._given: set[int] = set()  # epochs whose snapshots the coordinator has
        self._closed = threading.Lock()

    @property
    def final(self) -> bool:
        """Every node has ended well: the final states are committed."""
        return len(self._done) == len(self.plan.nodes)

    @property
    def committed(self) -> int:
        """The last epoch committed (or restored)."""
        return self.coordinator.committed

    def restored(self, index: int) -> tuple[Any] | None:
        """Node ``index``'s restored state, as ``(state,)``; None when it has none."""
        state = self._restored[index]
        return None if state is NO_STATE else (state,)

    def due(self) -> int | None:
        """The epoch to begin now (every ``checkpoint_interval``), or None."""
        if time.monotonic() < self._due:
            return None
        return self.begin()

    def begin(self) -> int:
        """Begin the next epoch: the sources are to send its barriers."""
        self.coordinator.epoch += 1
        self._due = time.monotonic() + self.interval
        return self.coordinator.epoch

    def report(self, index: int, replica: int, report: Report) -> int | None:
        """Take one report of instance ``replica`` of node ``index``; an epoch to begin
        now when a source asked for one (``checkpoint_items``)."""
        kind = report[0]
        coordinator = self.coordinator
        if kind == "record":
            self._records.setdefault(report[1], {})[index] = report[2]
            self._forward()
        elif kind == "reached":
            self._reached.setdefault((index, report[1]), set()).add(replica)
            self._pass(index)
        elif kind == "ended":
            ended = self._ended.setdefault(index, set())
            ended.add(replica)
            if report[1] is not None:
                self._final[index] = report[1]
            self._pass(index)
            if len(ended) == self.replicas[index]:
                self._done.add(index)
                coordinator.ended(index, self._final.get(index))
                self._forward()
        elif kind == "due":
            return self.begin()
        return None

    def _pass(self, index: int) -> None:
        """An epoch has reached a sink once every instance of it passed the barrier or
        ended."""
        every = set(range(self.replicas[index])) - self._ended.get(index, set())
        for key in sorted(k for k in self._reached if k[0] == index):
            if every <= self._reached[key]:
                del self._reached[key]
                self._waiting.append(key)
            else:
                break
        self._forward()

    def _forward(self) -> None:
        """Give the coordinator the snapshots of each epoch every node recorded, then the
        sinks' barriers of those epochs."""
        coordinator = self.coordinator
        for epoch in sorted(self._records):
            records = self._records[epoch]
            if self._keeps <= records.keys() | self._done:
                del self._records[epoch]
                for index, blob in records.items():
                    coordinator.record(index, epoch, blob)
                self._given.add(epoch)
        waiting = []
        for sink, epoch in self._waiting:
            if epoch in self._given or self._keeps <= self._done:
                coordinator.reached(sink, epoch)
            else:  # some snapshot of it is still on its way
                waiting.append((sink, epoch))
        self._waiting = waiting

    def close(self) -> None:
        """Release the store (once the run has ended)."""
        if self._closed.acquire(blocking=False):
            self.coordinator.close()
