"""A node's life on any runner: its context, and how its function is run and ended.

Every runner gives each node an :class:`EngineContext` (counters, acknowledgements,
markers, ending the outputs) and runs its function with :func:`run_function`; a runner
only says how the node stops the run and waits for the rest of it. :class:`LocalRun` is
what the two runners in the driver's process share besides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from .._core.acks import AckCoordinator, Acked, Marker
from .._core.context import NodeContext
from .._core.errors import NodeProtocolError
from .._core.fast import drive_acked
from .._core.graph import Plan, PlanNode
from .._core.run import NodeCounters, NodeStats, Run, downstream_names, local_stats
from .._core.signals import SourceStopped
from .checkpoint import CheckpointCoordinator
from .checkpoint import install as install_checkpoints
from .outbox import CheckedOutbox, Outbox
from .reader import InputReader

__all__ = [
    "EngineContext",
    "LocalRun",
    "forward_marker",
    "inject_marker",
    "mark_final",
    "run_function",
]


class LocalRun(Run):
    """What the runs of the local runners share: the plan, counters, channels, contexts."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan.name)
        self.plan = plan
        self.counters = [NodeCounters() for _ in plan.nodes]
        self.channels: list[Any] = []  # each node's Channel (None for a source)
        self.contexts: list[EngineContext] = []
        self.checkpoints: CheckpointCoordinator | None = None

    def _install_checkpoints(
        self, boxes: Sequence[Sequence[Outbox]], readers: Sequence[InputReader | None]
    ) -> list[Callable[[], None] | None]:
        """With a state store: restore the nodes' state and hook checkpoints in (before any
        node runs). Returns what each node's ``run_function`` calls when it ends well."""
        self.checkpoints, ends = install_checkpoints(
            self.plan, self.contexts, boxes, readers, self.channels
        )
        if self.checkpoints is not None:
            self.add_done_callback(self.checkpoints.close)
        return ends

    def _bind(self) -> None:
        """Every node is running, with its context bound (before any node runs)."""
        for counters in self.counters:
            counters.state = "running"
        for pn in self.plan.nodes:
            pn.bind(self.contexts[pn.index])

    def stats(self) -> dict[str, NodeStats]:
        return local_stats(self.plan, self.counters, self.channels)

    def downstream_names(self, index: int) -> list[str]:
        """Names of the nodes fed by node ``index`` (for the monitor's messages)."""
        return downstream_names(self.plan, index)


class EngineContext(NodeContext):
    """A node's context on any runner: its counters, acks, markers and outputs.

    ``stop()`` asks the run to stop (``request_stop``); ``wait_for_run_outcome`` is the
    runner's way to wait for the rest of the run; ``on_first_ack`` runs when the node
    attaches its first acknowledgement.
    """

    def __init__(
        self,
        pn: PlanNode,
        counters: NodeCounters,
        acks: AckCoordinator,
        boxes: list[Outbox],
        reader: InputReader | None,
        *,
        abort_event: Any,
        stop_event: Any,
        request_stop: Callable[[], None],
        wait_for_outcome: Callable[[], None],
        on_first_ack: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            pn.name, linked_ports=pn.outputs, abort_event=abort_event, stop_event=stop_event
        )
        self.index = pn.index
        self.counters = counters
        self.acks = acks
        self.boxes = boxes
        self.reader = reader
        self._request_stop = request_stop
        self._wait_for_outcome = wait_for_outcome
        self._on_first_ack = on_first_ack
        self._append_ack: Callable[[Callable[[], Any]], None] | None = None
        self._bufs: list[list[Any]] = []  # the buffers of the node's checked outboxes

    def count_error(self) -> None:
        self.errors += 1
        self.counters.errors += 1

    def attach_ack(self, ack: Callable[[], Any]) -> None:
        append = self._append_ack
        if append is None:
            append = self._first_ack()
        append(ack)
        self._mark_if_sent()

    def emit_source(self, items: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        # Per acked item (compiled): one append, and a look at the outbox buffers. A marker
        # is asked for after each batch the source sends (installed with the first ack),
        # and here only when the item went out with its batch (its ack came after that
        # send); a runner may also ask on demand (``on_first_ack``).
        mark = partial(self.acks.mark, self.index)
        drive_acked(items, outp, Acked, self._first_ack, self._bufs, mark)

    def acked_outp(self, outp: Callable[[Any], Any]) -> Callable[[Any], None]:
        # As emit_source, for a source that emits item by item (an async generator).
        append: Callable[[Callable[[], Any]], None] | None = None
        bufs = self._bufs
        mark = partial(self.acks.mark, self.index)

        def emit(acked: Any) -> None:
            nonlocal append
            item, ack = acked
            try:
                outp(item)
            finally:
                if append is None:
                    append = self._first_ack()
                append(ack)
                for buf in bufs:
                    if not buf:
                        mark()
                        break

        return emit

    def _mark_if_sent(self) -> None:
        for buf in self._bufs:
            if not buf:
                self.acks.mark(self.index)
                break

    def _first_ack(self) -> Callable[[Callable[[], Any]], None]:
        """The node attaches its first ack: markers follow its sends from now on."""
        if self._append_ack is not None:
            return self._append_ack
        mark = partial(self.acks.mark, self.index)
        bufs = self._bufs
        for box in self.boxes:
            if isinstance(box, CheckedOutbox):
                bufs.append(box._buf)
                if box.after_send is None:
                    box.after_send = mark
        if not bufs:  # no buffer to watch (no outputs): ask at every item
            bufs.append([])
        if self._on_first_ack is not None:
            self._on_first_ack()
            self._on_first_ack = None
        append = self._append_ack = self.acks.appender(self.index)
        return append

    def flush_outputs(self) -> None:
        for box in self.boxes:
            box.flush()

    def release_items(self, keep: int = 0) -> None:
        if self.reader is not None:
            self.reader.release(keep)

    def request_stop(self) -> None:
        self._request_stop()

    def end_outputs(self) -> None:
        if self.reader is not None:
            self.reader.end_outputs()
        else:  # a source: its last marker goes before its end
            mark_final(self.index, self.boxes, self.acks)
        for box in self.boxes:
            box.close()

    def wait_for_run_outcome(self) -> None:
        self._wait_for_outcome()


def run_function(
    function: Callable[[Iterable[Any], Callable[[Any], Any]], Any],
    inp: Iterable[Any],
    outp: Callable[[Any], Any],
    *,
    name: str,
    index: int,
    reader: InputReader | None,
    boxes: list[Outbox],
    acks: AckCoordinator | None,
    on_end: Callable[[], None] | None = None,
) -> None:
    """Run a node's function to its end, then end its outputs (its markers before ``END``).

    A source stopped by the run (``SourceStopped``) ends normally; a node that returns
    before its input ended breaks the node contract (``NodeProtocolError``). ``on_end``
    runs once the function has ended well, before the outputs end (a run with a state
    store takes the node's final state there, see ``_engine/checkpoint.py``); for a sink,
    before the items it holds are passed on as done.
    """
    try:
        function(inp, outp)
    except SourceStopped:
        pass
    if reader is not None:
        if not reader.exhausted:
            raise NodeProtocolError(
                f"node function of {name!r} returned before its input ended; a node "
                "function must iterate over its entire input"
            )
        if on_end is not None and reader.terminal:
            # A sink's last state is committed first (an exactly-once sink writes its last
            # rows as that checkpoint commits), then the items it holds are done: no source
            # commits its progress past rows not written. (Its markers go to no channel.)
            on_end()
            on_end = None
        reader.finish()  # the held markers go out before the end
    elif acks is not None:
        mark_final(index, boxes, acks)
    if on_end is not None:
        on_end()
    for box in boxes:
        box.close()


def mark_final(index: int, boxes: list[Outbox], acks: AckCoordinator) -> None:
    """A source has ended (or ended its outputs): its last marker follows all it emitted."""
    if acks.has_acks(index):
        for box in boxes:
            box.flush()
        acks.mark(index, final=True)


def forward_marker(boxes: list[Outbox], counters: NodeCounters, marker: Marker) -> None:
    """A node passes ``marker`` on, after everything it has emitted (its own thread)."""
    for box in boxes:
        box.flush()
    for box in boxes:
        if not box.ended:
            for channel in box.channels:
                channel.put(marker, counters)


def inject_marker(boxes: list[Outbox], marker: Marker, final: bool) -> bool:
    """Put a source's ``marker`` into every output channel, after all the source has sent.

    Only when no item is buffered or being sent (else False: a later call will); with
    ``final`` (the source has ended and flushed) it waits for the outbox locks.
    """
    checked = [b for b in boxes if isinstance(b, CheckedOutbox)]
    locked: list[Any] = []
    try:
        for box in checked:
            if not box._lock.acquire(blocking=final):
                return False
            locked.append(box._lock)
            if box._buf or box.ended:
                return False
        for box in checked:
            for channel in box.channels:
                channel.put_nowait(marker)
        return True
    finally:
        for lock in locked:
            lock.release()
