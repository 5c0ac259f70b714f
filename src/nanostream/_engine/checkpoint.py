"""Checkpoints on the local runners: barriers through the graph, snapshots, commits.

A run with a state store (``RunOptions.state``) takes a checkpoint every
``checkpoint_interval`` seconds (or ``checkpoint_items`` items of a source) without
stopping the stream, in the manner of Chandy and Lamport's snapshots:

- *Barriers.* When a checkpoint is due, each source, right after it has handed on an item
  (its outbox flushed, in its own thread), snapshots its state (``PlanNode.snapshot``: its
  position) and puts a :class:`Barrier` with the checkpoint's epoch into every output
  channel, after everything it has sent. The other sources are asked to send at their next
  item, and do the same then.
- *Alignment.* A node reads a barrier only once it has consumed every item before it on
  that channel (see :mod:`nanostream._engine.reader`). When the barrier of an epoch has
  arrived from each of its live inputs, the node snapshots its state, and passes the
  barrier on after the outputs of those items (:class:`NodeBarriers`). A node whose input
  ended sends :data:`ENDED` instead of further barriers, so its consumers stop counting on
  it.
- *Unaligned* (the default on the local runners, see docs/state.md): a barrier goes to
  the head of a channel with one producer, and the node that takes it keeps the items it
  overtook (:class:`InFlight`). Once every source has ended, a node whose producers have
  all ended puts a due checkpoint's barriers at the head of its own channel in their
  stead (:func:`_drain_hook`): checkpoints go on while the pipeline drains.
- *Commit.* When the barrier of an epoch has reached every sink (or the sink has ended),
  the snapshots of that epoch are the state of one consistent cut: the coordinator
  commits them to the store in one transaction (:class:`CheckpointCoordinator`). When every
  node has ended well, their final states are committed too.

A restarted run hands each node the state its name has in the store
(``NodeContext.restored_state``), which its adapter gives to ``restore_state`` after
``setup()``. See docs/state.md for the guarantees and the limits (a node that merges
several inputs aligns by count, which is exact for state but not for exactly-once sinks).
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from operator import length_hint
from typing import TYPE_CHECKING, Any, Protocol

from .._core.checkpointing import unaligned_by_default
from .._core.context import NodeContext
from .._core.errors import StateError
from .._core.graph import Plan, PlanNode
from ..state.store import Checkpoint, StateStore, encode_state, open_store
from .channel import Channel
from .outbox import CheckedOutbox, Outbox

if TYPE_CHECKING:
    from .reader import InputReader

__all__ = [
    "ENDED",
    "Barrier",
    "InFlight",
    "CheckpointCoordinator",
    "Checkpoints",
    "NodeBarriers",
    "hook_node",
    "install",
    "overtaken_items",
    "place_barrier",
    "restore",
    "unaligned",
]

log = logging.getLogger("nanostream")


class Barrier:
    """A checkpoint's barrier in a channel: the items before it belong to epoch ``epoch``.

    ``overtaken`` is None for a barrier put after everything sent before it (aligned);
    for one put at the head of its channel (unaligned, :meth:`Channel.put_first
    <nanostream._engine.channel.Channel.put_first>`) it holds the batches it overtook.
    """

    __slots__ = ("epoch", "overtaken")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.overtaken: list[list[Any]] | None = None

    def __len__(self) -> int:  # counts as no items in a channel's depth
        return 0

    def __repr__(self) -> str:
        return f"Barrier({self.epoch})"


#: Sent by a node whose outputs end: no more barriers come from it on that channel.
ENDED = Barrier(-1)

#: How often a sink that writes exactly once, ended before the nodes before it, looks
#: whether the final checkpoint is committed (an abort ends the wait at once).
_FINAL_WAIT_S = 0.005


class InFlight:
    """What an unaligned checkpoint keeps of a node: its state and the items in flight.

    ``items`` are the items a barrier overtook on its way to the node (in the node's
    input, read by the node after the barrier): a restart puts them back into the
    node's input before anything else. ``state`` is what ``snapshot_state()`` returned,
    when the node keeps state (``has_state``).

    Example:
        >>> InFlight(None, False, [1, 2])
        InFlight(state=None, items=2)
    """

    __slots__ = ("has_state", "items", "state")

    def __init__(self, state: Any, has_state: bool, items: list[Any]) -> None:
        self.state = state
        self.has_state = has_state
        self.items = items

    def __getstate__(self) -> tuple[Any, bool, list[Any]]:
        return self.state, self.has_state, self.items

    def __setstate__(self, data: tuple[Any, bool, list[Any]]) -> None:
        self.state, self.has_state, self.items = data

    def __repr__(self) -> str:
        return f"InFlight(state={self.state!r}, items={len(self.items)})"


def unaligned(plan: Plan) -> bool:
    """Whether a local run of ``plan`` takes unaligned checkpoints (``Pipeline.start`` has
    decided it already, see :func:`~nanostream._core.checkpointing.choose_checkpoints`; a
    plan started otherwise gets the same default, the local runners being able to)."""
    chosen = plan.options.checkpoint_unaligned
    return chosen if chosen is not None else unaligned_by_default(plan.options, True)


def place_barrier(channel: Any, epoch: int, counters: Any, unaligned: bool) -> None:
    """Put the barrier of ``epoch`` into ``channel``: at its head when checkpoints are
    unaligned and the channel has one producer (a merging node aligns its inputs' barriers
    by count, so they keep their place there), else after everything sent before it."""
    if unaligned and isinstance(channel, Channel) and channel.n_producers == 1:
        channel.put_first(Barrier(epoch))
    else:
        channel.put(Barrier(epoch), counters)


def overtaken_items(channel: Any, barrier: Barrier) -> list[Any]:
    """The items of the batches ``barrier`` overtook that are still in ``channel`` (read
    by the consumer after the barrier: they are in flight at its checkpoint)."""
    if not barrier.overtaken:
        return []
    ids = {id(batch) for batch in barrier.overtaken}
    barrier.overtaken = None
    return [item for batch in list(channel.batches) if id(batch) in ids for item in batch]


class Checkpoints(Protocol):
    """What a node's barriers report to: the run's :class:`CheckpointCoordinator`, or on
    a runner whose nodes are in other processes, a stand-in that reports to it."""

    committed: int

    @property
    def final(self) -> bool:
        """Every node has ended well: the final states are committed."""

    def source_flushed(self, pn: PlanNode, boxes: Sequence[Outbox], items_out: int) -> None:
        """A source has just handed on an item (its thread)."""

    def record(self, index: int, epoch: int, blob: bytes) -> None:
        """Node ``index``'s state at ``epoch``."""

    def reached(self, sink: int, epoch: int) -> None:
        """The barrier of ``epoch`` has reached ``sink``."""

    def ended(self, index: int, blob: bytes | None) -> None:
        """Node ``index`` ended well, with this final state."""


class CheckpointCoordinator:
    """One run's checkpoints: when they are due, their snapshots, their commits.

    Safe to call from any node's thread. ``sources`` holds each source's outboxes (to ask
    it to send at its next item when a checkpoint begins).

    Example:
        >>> import os, tempfile, nanostream
        >>> from nanostream.state import open_store
        >>> src = nanostream.from_iterable([1], name="src")
        >>> _ = src > nanostream.testing.Collect(name="sink")
        >>> plan = nanostream.pipeline_of(src).plan()
        >>> store = open_store(os.path.join(tempfile.mkdtemp(), "run.state"))
        >>> coordinator = CheckpointCoordinator(plan, store, None, {})
        >>> coordinator.ended(0, None); coordinator.ended(1, None)
        >>> store.load().epoch
        1
        >>> store.close()
    """

    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        restored: Checkpoint | None,
        sources: dict[int, Sequence[Outbox]],
    ) -> None:
        self.plan = plan
        self.store = store
        self.sources = sources
        opts = plan.options
        self.interval = opts.checkpoint_interval
        self.items = opts.checkpoint_items
        self.unaligned = unaligned(plan)
        self.epoch = restored.epoch if restored is not None else 0  # the last one begun
        self.committed = self.epoch
        self.final = False  # every node has ended well: the final states are committed
        self.commits = 0
        self._lock = threading.Lock()
        self._due = time.monotonic() + self.interval
        self._injected = dict.fromkeys(sources, self.epoch)
        self._items_at = dict.fromkeys(sources, 0)
        self._keeps = [pn.index for pn in plan.nodes if pn.snapshot is not None]
        self._sinks = {pn.index for pn in plan.nodes if not pn.outputs}
        self._snaps: dict[int, dict[int, bytes]] = {}
        self._reached: dict[int, set[int]] = {}
        self._final: dict[int, bytes] = {}
        self._ended: set[int] = set()
        # Once every source has ended (unaligned only): the last epoch they began, and the
        # producers of each node, whose barriers the node then puts in their stead.
        self.drained_from: int | None = None
        self._producers = {pn.index: set(pn.inputs) for pn in plan.nodes}

    # ----------------------------------------------------------------- sources
    def source_flushed(self, pn: PlanNode, boxes: Sequence[Outbox], items_out: int) -> None:
        """A source has just handed on an item (its thread): begin or join a checkpoint.

        A source sends the barrier of every epoch begun since its last one, in order (the
        same snapshot for each), so that every node sees each epoch from each input.
        """
        index = pn.index
        done = self._injected[index]
        if done >= self.epoch:
            if time.monotonic() < self._due and (
                self.items is None or items_out - self._items_at[index] < self.items
            ):
                self.count_down(boxes, items_out - self._items_at[index])
                return
            with self._lock:
                # else another source began one meanwhile; unaligned barriers overtake
                # items, so one checkpoint at a time (two would overtake each other)
                begun = self.epoch <= done and (not self.unaligned or self.committed >= self.epoch)
                if begun:
                    self.epoch += 1
                    self._due = time.monotonic() + self.interval
            if begun:
                for others in self.sources.values():  # they send at their next item
                    for box in others:
                        if isinstance(box, CheckedOutbox):
                            box.preempt()
        target = self.epoch
        self._items_at[index] = items_out
        blob = encode_state(pn.snapshot()) if pn.snapshot is not None else None
        for box in boxes:
            box.flush()
        for epoch in range(done + 1, target + 1):
            if blob is not None:
                self.record(index, epoch, blob)
            for box in boxes:
                for channel in box.channels:
                    place_barrier(channel, epoch, box.counters, self.unaligned)
            if index in self._sinks:
                self.reached(index, epoch)
        self._injected[index] = target
        self.count_down(boxes, 0)

    def count_down(self, boxes: Sequence[Outbox], counted: int) -> None:
        """With ``checkpoint_items``, a source that has emitted ``counted`` items since its
        last barrier sends its batch when the next checkpoint is due, even in the middle of
        a batch (a listing of many paths at once): the barrier follows that item."""
        if self.items is not None:
            for box in boxes:
                if isinstance(box, CheckedOutbox):
                    box.preempt(within=self.items - counted)

    # ----------------------------------------------------------------- nodes
    def record(self, index: int, epoch: int, blob: bytes) -> None:
        """Node ``index``'s state at ``epoch`` (taken in its thread as the barrier passed)."""
        with self._lock:
            self._snaps.setdefault(epoch, {})[index] = blob

    def reached(self, sink: int, epoch: int) -> None:
        """The barrier of ``epoch`` has reached ``sink``; commit what is complete."""
        with self._lock:
            self._reached.setdefault(epoch, set()).add(sink)
            self._commit_complete()

    def ended(self, index: int, blob: bytes | None) -> None:
        """Node ``index`` ended well, with this final state; the last one commits them all."""
        with self._lock:
            if blob is not None:
                self._final[index] = blob
            self._ended.add(index)
            if self.unaligned and self.drained_from is None and self.sources.keys() <= self._ended:
                self.drained_from = self.epoch
            self._commit_complete()
            if len(self._ended) == len(self.plan.nodes):
                self.epoch += 1
                self._commit(self.epoch, {})
                self.final = True

    def drain_epoch(self, index: int, seen: int) -> int | None:
        """Once every source has ended, the epoch whose barriers node ``index`` (running,
        every producer of it ended, ``seen`` the last epoch that reached it) puts at the
        head of its own channel now, in its producers' stead; None when none is due.

        Their final states are known, so a checkpoint goes on while the rest of the
        pipeline drains a backlog: the items queued at the node are in flight at it.
        """
        if self.drained_from is None or time.monotonic() < self._due:
            return None
        if not self._producers[index] <= self._ended:
            return None
        with self._lock:
            if self.committed >= self.epoch:  # one at a time, as the sources begin them
                self.epoch += 1
                self._due = time.monotonic() + self.interval
            epoch = self.epoch
        return epoch if epoch > max(seen, self.drained_from) else None

    def _commit_complete(self) -> None:
        """Commit, in order, each begun epoch whose barrier every live sink has passed."""
        for epoch in sorted(self._reached.keys() | self._snaps.keys()):
            reached = self._reached.get(epoch, set())
            if not self._sinks <= (reached | self._ended):
                return
            snaps = self._snaps.pop(epoch, {})
            self._reached.pop(epoch, None)
            if epoch > self.committed:
                self._commit(epoch, snaps)

    def _commit(self, epoch: int, snaps: dict[int, bytes]) -> None:
        nodes = self.plan.nodes
        states: dict[str, tuple[str, bytes]] = {}
        for i in self._keeps:
            blob = snaps.get(i, self._final.get(i))
            if blob is None:  # pragma: no cover - every node passes each barrier
                raise StateError(f"checkpoint {epoch} has no state of node {nodes[i].name!r}")
            states[nodes[i].name] = (nodes[i].kind, blob)
        for i, blob in snaps.items():  # the items in flight at nodes that keep no state
            states.setdefault(nodes[i].name, (nodes[i].kind, blob))
        self.store.commit(epoch, self.plan.name, states)
        self.committed = epoch
        self.commits += 1

    def close(self) -> None:
        """Release the store (when the run has ended)."""
        self.store.close()


class NodeBarriers:
    """The barriers that reach one node: counted per epoch, then snapshot and pass on.

    Runs in the node's thread. ``inputs`` is how many input edges the node has. With
    ``reader`` and ``channel``, a barrier that overtook items (unaligned) snapshots them
    with the node's state: those left in the batch being read and in the channel.
    """

    def __init__(
        self,
        pn: PlanNode,
        coordinator: Checkpoints,
        forward: Callable[[Any], None],
        reader: InputReader | None = None,
        channel: Any = None,
        *,
        pause: Callable[[float], object] | None = None,
    ) -> None:
        self.pn = pn
        self.coordinator = coordinator
        self.forward = forward
        self.reader = reader
        self.channel = channel
        self.pause = pause  # the node's abortable wait (NodeContext.pause)
        self._inflight: dict[int, list[Any]] = {}
        self.live = len(pn.inputs)
        self.terminal = not pn.outputs
        self.outputs_ended = False
        self._arrivals: dict[int, int] = {}
        self._told = coordinator.committed
        self.seen = coordinator.committed  # the last epoch whose barrier reached the node

    def arrived(self, barrier: Barrier) -> None:
        """``barrier`` was read after every item before it on its channel."""
        if barrier is ENDED:
            self.live -= 1
        else:
            self.seen = max(self.seen, barrier.epoch)
            if barrier.overtaken is not None and self.reader is not None:
                self._inflight[barrier.epoch] = self.reader.unread() + overtaken_items(
                    self.channel, barrier
                )
            self._arrivals[barrier.epoch] = self._arrivals.get(barrier.epoch, 0) + 1
        for epoch in sorted(self._arrivals):
            if self._arrivals[epoch] < self.live:
                break
            del self._arrivals[epoch]
            self._align(epoch)

    def _align(self, epoch: int) -> None:
        pn = self.pn
        items = self._inflight.pop(epoch, None)
        if items:
            state = pn.snapshot() if pn.snapshot is not None else None
            blob = _encode_in_flight(pn, InFlight(state, pn.snapshot is not None, items))
            self.coordinator.record(pn.index, epoch, blob)
        elif pn.snapshot is not None:
            self.coordinator.record(pn.index, epoch, encode_state(pn.snapshot()))
        if self.terminal:
            self.coordinator.reached(pn.index, epoch)
            self._committed()
        elif not self.outputs_ended:
            self.forward(Barrier(epoch))

    def finish(self) -> None:
        """The node ended well: its final state, and :data:`ENDED` to its consumers."""
        for epoch in sorted(self._arrivals):  # inputs that ended before these barriers
            self._align(epoch)
        self._arrivals.clear()
        self.end()

    def end_outputs(self) -> None:
        """The node ends its outputs now (before its input ended): no barrier follows."""
        if not self.terminal and not self.outputs_ended:
            self.outputs_ended = True
            self.forward(ENDED)

    def end(self) -> None:
        """The node ended well (a source: its generator is done). Its final state is
        recorded before :data:`ENDED` goes out: a node after it that merges inputs aligns
        the next barrier without this node's once ENDED is in, and the checkpoint then
        holds this node's final state."""
        pn = self.pn
        snapshot = pn.snapshot
        self.coordinator.ended(pn.index, encode_state(snapshot()) if snapshot else None)
        self.end_outputs()
        if pn.on_commit is not None and self.pause is not None:
            # A sink that writes exactly once writes its last rows as the final checkpoint
            # commits, in its own thread: nodes before it that ended their outputs early
            # (``Take``) may still run, and the final checkpoint waits for them.
            while not self.coordinator.final:
                self.pause(_FINAL_WAIT_S)
        self._committed()

    def _committed(self) -> None:
        """Tell a sink that writes exactly once that its snapshot is committed (its thread:
        being the only sink, it commits every checkpoint itself)."""
        committed = self.coordinator.committed
        if self.pn.on_commit is not None and committed > self._told:
            self._told = committed
            self.pn.on_commit()


def _encode_in_flight(pn: PlanNode, kept: InFlight) -> bytes:
    """``kept`` pickled; items in flight that cannot be are a ``StateError`` that says
    what to do (a node's own state that cannot be fails as it would when aligned)."""
    try:
        return encode_state(kept)
    except Exception as exc:
        try:
            encode_state(kept.items)
        except (pickle.PicklingError, TypeError, AttributeError):
            raise StateError(
                f"node {pn.name!r}: an unaligned checkpoint keeps the items queued before the "
                f"node, and they cannot be pickled ({exc}): run with "
                "checkpoint_unaligned=False (--checkpoint-aligned), whose checkpoints keep "
                "no items, or send items that pickle"
            ) from exc
        raise


def _restore(
    plan: Plan,
    store: StateStore,
    contexts: Sequence[Any],
    replays: dict[int, list[Any]] | None,
) -> Checkpoint | None:
    """Give each node its stored state, and its items in flight to ``replays``; refuse
    state that no longer fits (or drop it)."""
    checkpoint = store.load()
    if checkpoint is None:
        return None
    by_name = {pn.name: pn for pn in plan.nodes}
    misfits: list[str] = []
    for name, (kind, state) in sorted(checkpoint.states.items()):
        pn = by_name.get(name)
        if isinstance(state, InFlight) and replays is None:
            raise StateError(
                f"the state store {store.where} holds items in flight at node {name!r}, "
                "from a run with unaligned checkpoints (the default on the 'threads' and "
                "'cooperative' runners), and this runner cannot put them back: restart on "
                "one of those; to move a run to this runner, restart it there first with "
                "checkpoint_unaligned=False until it has taken a checkpoint"
            )
        if pn is None:
            misfits.append(f"{name!r} (no node of that name now)")
        elif isinstance(state, InFlight) and not state.has_state and pn.inputs:
            if kind != pn.kind:
                misfits.append(f"{name!r} (stored by a {kind}, the node is a {pn.kind})")
        elif pn.snapshot is None:
            misfits.append(f"{name!r} (the node keeps no state now)")
        elif kind != pn.kind:
            misfits.append(f"{name!r} (stored by a {kind}, the node is a {pn.kind})")
    if misfits:
        if not plan.options.drop_state:
            raise StateError(
                f"the state store {store.where} holds state that does not fit this pipeline: "
                f"{', '.join(misfits)}; restart with drop_state=True (--drop-state) to drop "
                "it and start those nodes afresh, or rename the nodes back"
            )
        dropped = [m.split(" ", 1)[0].strip("'") for m in misfits]
        log.warning("dropping the stored state of %s", ", ".join(misfits))
        store.drop(dropped)
    for pn in plan.nodes:
        entry = checkpoint.states.get(pn.name)
        if entry is None or entry[0] != pn.kind:
            continue
        state = entry[1]
        if isinstance(state, InFlight):
            assert replays is not None
            replays[pn.index] = state.items
            if not state.has_state:
                continue
            state = state.state
        if pn.snapshot is not None:
            contexts[pn.index].restored_state = state
    return checkpoint


def install(
    plan: Plan,
    contexts: Sequence[NodeContext],
    boxes: Sequence[Sequence[Outbox]],
    readers: Sequence[InputReader | None],
    channels: Sequence[Any],
) -> tuple[CheckpointCoordinator | None, list[Callable[[], None] | None]]:
    """Open the run's store, restore the nodes' state and hook the checkpoints in.

    ``channels`` holds each node's input ``Channel`` (None for a source). Returns the
    coordinator (None without a store) and, per node, what to call when its function has
    returned well (before its outputs end).
    """
    if plan.options.state is None:
        return None, [None] * len(plan.nodes)
    replays: dict[int, list[Any]] = {}
    store, restored = restore(plan, contexts, replays)
    for index, items in replays.items():  # before anything the node's producers send
        channels[index].put_nowait(items)
    sources = {pn.index: boxes[pn.index] for pn in plan.nodes if pn.is_source}
    coordinator = CheckpointCoordinator(plan, store, restored, sources)
    ends: list[Callable[[], None] | None] = [
        hook_node(
            pn,
            coordinator,
            contexts[pn.index],
            boxes=boxes[pn.index],
            reader=readers[pn.index],
            channel=channels[pn.index],
            forward=barrier_forward(boxes[pn.index], coordinator.unaligned),
            unaligned=coordinator.unaligned,
        )
        for pn in plan.nodes
    ]
    return coordinator, ends


def restore(
    plan: Plan, contexts: Sequence[Any], replays: dict[int, list[Any]] | None = None
) -> tuple[StateStore, Checkpoint | None]:
    """Open the run's store and put each node's stored state in its context's
    ``restored_state``; the store, and the checkpoint restored (None on a first run).

    The items an unaligned checkpoint kept in flight at a node go to ``replays`` (by node
    index), for the runner to put into the node's input first; without ``replays``, a
    store that holds such items is a ``StateError``.
    """
    assert plan.options.state is not None
    store = open_store(plan.options.state)
    try:
        return store, _restore(plan, store, contexts, replays)
    except BaseException:
        store.close()
        raise


def hook_node(
    pn: PlanNode,
    coordinator: Checkpoints,
    context: NodeContext,
    *,
    boxes: Sequence[Outbox],
    reader: InputReader | None,
    channel: Any,
    forward: Callable[[Any], None] | None = None,
    unaligned: bool = False,
) -> Callable[[], None]:
    """Hook one node's checkpoints in (before it runs): a source sends barriers after its
    flushes and while it sleeps, a node aligns them as its reader reads them. ``forward``
    passes a barrier on (default: the source's :func:`partial_forward`, the reader's
    ``forward``). With ``unaligned``, a node also takes a barrier put at the head of its
    channel after each slice it reads. Returns what its ``run_function`` calls when it
    ends well."""
    if reader is None:
        counters = boxes[0].counters if boxes else None
        hook = _source_hook(coordinator, pn, boxes, counters)
        for box in boxes:
            if isinstance(box, CheckedOutbox):
                box.on_flush = hook
        if isinstance(coordinator, CheckpointCoordinator):  # on Ray the source asks the driver
            coordinator.count_down(boxes, 0)
            context.idle_every = coordinator.interval  # a long sleep lets a due barrier out
        context.on_idle = hook  # while it sleeps between items
        return NodeBarriers(pn, coordinator, forward or partial_forward(boxes)).end
    reader.barriers = barriers = NodeBarriers(
        pn,
        coordinator,
        forward or reader.forward,
        reader=reader,
        channel=channel,
        pause=context.pause,
    )
    drain = None
    if unaligned and isinstance(coordinator, CheckpointCoordinator):
        drain = _drain_hook(coordinator, barriers, channel)
    context.on_idle = _within_item_hook(reader, channel, drain)
    if unaligned:
        reader.priority = _priority_hook(barriers, channel, drain)
    return barriers.finish


def _source_hook(
    coordinator: Checkpoints, pn: PlanNode, boxes: Sequence[Outbox], counters: Any
) -> Callable[[], None]:
    def on_flush() -> None:
        coordinator.source_flushed(pn, boxes, counters.items_out if counters else 0)

    return on_flush


def _drain_hook(
    coordinator: CheckpointCoordinator, barriers: NodeBarriers, channel: Any
) -> Callable[[], None]:
    """What a node calls between slices (and within an item) with unaligned checkpoints:
    once every source and every producer of the node has ended, it puts a due
    checkpoint's barriers at the head of its own channel, one for each producer whose end
    it has not read (its thread: the producers put nothing more there)."""
    index = barriers.pn.index

    def drain() -> None:
        if coordinator.drained_from is None or barriers.live <= 0:
            return  # (per slice, and per record of a file reader: cheap until then)
        epoch = coordinator.drain_epoch(index, barriers.seen)
        if epoch is None:
            return
        queued = list(channel.batches)
        if any(type(b) is Barrier and b.epoch >= epoch for b in queued):
            return
        if sum(b is ENDED for b in queued) < barriers.live:
            return  # a producer has not sent all it emitted yet (it records its end first)
        for _ in range(barriers.live):
            channel.put_first(Barrier(epoch))

    return drain


def _within_item_hook(
    reader: InputReader, channel: Any, drain: Callable[[], None] | None = None
) -> Callable[[], None]:
    """What a node in the middle of an item calls between two outputs (``between_items``).

    When the item is the last one read and a barrier follows it in the channel, the barrier
    is taken now: the node's snapshot then describes how far into the item it is (a file
    reader: the records of the file emitted so far), its outputs so far go out, and the
    barrier after them, without waiting for the end of the item.
    """
    counters = reader.counters
    barriers = reader.barriers
    assert barriers is not None
    batches = channel.batches

    def within_item() -> None:
        if drain is not None:
            drain()
        if not batches or type(batches[0]) is not Barrier:
            return
        if batches[0].overtaken is None and (
            reader.slice_end != counters.items_in or length_hint(reader.slice)
        ):
            return  # items read after this one come before this barrier
        barrier = channel.take_head(Barrier)
        if barrier is not None:
            barriers.arrived(barrier)

    return within_item


def _priority_hook(
    barriers: NodeBarriers, channel: Any, drain: Callable[[], None] | None = None
) -> Callable[[], None]:
    """What a node's reader calls after each slice with unaligned checkpoints: a barrier
    at the head of the channel is taken then, ahead of the rest of the batch being read
    (those items are in flight at the checkpoint); with ``drain``, first the barriers a
    node whose producers have all ended puts there itself (:func:`_drain_hook`)."""
    batches = channel.batches

    def priority() -> None:
        if drain is not None:
            drain()
        while batches and type(batches[0]) is Barrier and batches[0].overtaken is not None:
            barrier = channel.take_head(Barrier)
            if barrier is not None:
                barriers.arrived(barrier)

    return priority


def barrier_forward(boxes: Sequence[Outbox], unaligned: bool) -> Callable[[Any], None]:
    """Pass a barrier on from a node, after all it has emitted: into every output channel
    (at its head where checkpoints are unaligned, see :func:`place_barrier`; ``ENDED``
    always after everything)."""

    def forward(barrier: Any) -> None:
        for box in boxes:
            box.flush()
        for box in boxes:
            if box.ended:
                continue
            for channel in box.channels:
                if barrier is ENDED:
                    channel.put(barrier, box.counters)
                else:
                    place_barrier(channel, barrier.epoch, box.counters, unaligned)

    return forward


def partial_forward(boxes: Sequence[Outbox]) -> Callable[[Any], None]:
    """Put a barrier into every output channel of a source, after all it has sent."""

    def forward(barrier: Any) -> None:
        for box in boxes:
            box.flush()
        for box in boxes:
            for channel in box.channels:
                channel.put(barrier, box.counters)

    return forward
