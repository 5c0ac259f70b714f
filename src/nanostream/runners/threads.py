"""The default runner: every node function in its own thread, bounded channels between them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from .._core.acks import AckCoordinator, Marker
from .._core.errors import GraphError
from .._core.graph import Plan, PlanNode
from .._core.monitor import Monitor
from .._core.ports import port_dispatcher
from .._core.run import Run
from .._core.signals import RunAborted, clear_async_exception, raise_async_exception
from .._engine.channel import Channel
from .._engine.node import EngineContext, LocalRun, forward_marker, inject_marker, run_function
from .._engine.outbox import CheckedOutbox, Outbox, TripwireOutbox
from .._engine.reader import InputReader
from ._placement import CoreSharing, supported

__all__ = ["ThreadRun", "ThreadsRunner"]

# After an abort, a node thread that is still alive is interrupted again this often.
_REINTERRUPT_S = 1.0


class ThreadRun(LocalRun):
    """A pipeline running on :class:`ThreadsRunner`."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.aborting = False
        nodes = plan.nodes
        self.channels = [
            Channel(pn.queue_size, pn.batch_size, len(pn.inputs), pn.queue_bytes)
            if pn.inputs
            else None
            for pn in nodes
        ]
        self.outboxes: list[dict[str, Outbox]] = []
        for pn in nodes:
            boxes: dict[str, Outbox] = {}
            ports = dict(pn.outputs)
            ports.setdefault("out", ())
            for port, targets in ports.items():
                chans = [c for c in (self.channels[t] for t in targets) if c is not None]
                cls = CheckedOutbox if pn.is_source else TripwireOutbox
                box = cls(chans, pn.batch_size, self.counters[pn.index])
                for chan in chans:
                    chan.producers.append(box)
                boxes[port] = box
            self.outboxes.append(boxes)
        self.threads = [
            threading.Thread(target=self._node_main, args=(pn,), name=f"nanostream:{pn.name}")
            for pn in nodes
        ]
        self._remaining = len(nodes)
        self._remaining_lock = threading.Lock()
        # Nodes that ended, and nodes waiting for the rest of the run (wait_for_outcome).
        self._outcome = threading.Condition()
        self._ended = [False for _ in nodes]
        self._awaiting: set[int] = set()
        self._exit_locks = [threading.Lock() for _ in nodes]
        self._exiting = [False for _ in nodes]
        self._interrupted: list[float | None] = [None for _ in nodes]
        self.abort_event = threading.Event()
        self.acks = AckCoordinator(plan, self._inject_marker)
        self.contexts = [
            EngineContext(
                pn,
                self.counters[pn.index],
                self.acks,
                list(self.outboxes[pn.index].values()),
                self._reader(pn),
                abort_event=self.abort_event,
                stop_event=self._stop_event,
                request_stop=self.request_stop,
                wait_for_outcome=partial(self.wait_for_outcome, pn.index),
                on_first_ack=partial(self._mark_on_demand, pn.index),
            )
            for pn in nodes
        ]
        self._on_end = self._install_checkpoints(
            [list(boxes.values()) for boxes in self.outboxes], [c.reader for c in self.contexts]
        )
        self.monitor = Monitor(self)
        # The nodes that compute share one core (see _placement.py).
        self.placement = CoreSharing(
            self.threads, plan.name, share=plan.options.share_cores, hold=self._hold
        )
        self._joined = False

    def start(self) -> None:
        self._bind()
        self.monitor.start()
        for thread in self.threads:
            thread.start()
        self.placement.start()
        if not self.threads:
            self._node_ended()

    @property
    def _stop_event(self) -> threading.Event:
        event = getattr(self, "_stop_event_obj", None)
        if event is None:
            event = self._stop_event_obj = threading.Event()
        return event

    # ----------------------------------------------------------------- node thread
    def _node_main(self, pn: PlanNode) -> None:
        counters = self.counters[pn.index]
        boxes = self.outboxes[pn.index]
        lock = self._exit_locks[pn.index]
        try:
            try:
                self._execute(pn, boxes)
            except RunAborted:  # injected by the monitor after an abort (see interrupt)
                counters.state = "aborted"
        finally:
            # Nothing here may call Python code before the flag is set and any pending
            # injected exception is cleared, so an injection cannot hit the exit path.
            lock.acquire()
            self._exiting[pn.index] = True
            clear_async_exception(threading.get_ident())
            lock.release()
            for box in boxes.values():
                box._dispose()
            self._node_ended(pn.index)

    def _execute(self, pn: PlanNode, boxes: dict[str, Outbox]) -> None:
        counters = self.counters[pn.index]
        box_list = list(boxes.values())
        channel = self.channels[pn.index]
        use_ports = len(boxes) > 1 or bool(pn.ports)
        outp = port_dispatcher(boxes) if use_ports else boxes["out"].outp
        reader = self.contexts[pn.index].reader
        inp: Any = iter(())
        if reader is not None and channel is not None:

            def get(timeout: float | None) -> Any:
                if self.aborting:
                    raise RunAborted
                return channel.get(counters, timeout)

            def flush() -> None:
                for box in box_list:
                    box.flush()

            inp = reader.items(get, flush)
        try:
            run_function(
                pn.function,
                inp,
                outp,
                name=pn.name,
                index=pn.index,
                reader=reader,
                boxes=box_list,
                acks=self.acks,
                on_end=self._on_end[pn.index],
            )
            counters.state = "finished"
        except RunAborted:
            counters.state = "aborted"
        except BaseException as exc:  # noqa: BLE001 - reported as NodeFailed
            counters.state = "failed"
            counters.errors += 1
            self._fail(pn.name, exc)

    def _reader(self, pn: PlanNode) -> InputReader | None:
        """The input reader of a node that reads input."""
        if not pn.inputs:
            return None
        counters = self.counters[pn.index]
        boxes = list(self.outboxes[pn.index].values())
        return InputReader(
            pn.name,
            pn.index,
            counters,
            max_slice=pn.batch_size,
            tick=pn.tick_interval,
            acks=self.acks,
            holds=pn.holds_items,
            forward=partial(forward_marker, boxes, counters),
            track_busy=True,
        )

    def _mark_on_demand(self, index: int) -> None:
        """A source acknowledges: each demand for its items may send a marker."""
        mark = partial(self.acks.mark, index)
        for box in self.outboxes[index].values():
            if isinstance(box, CheckedOutbox):
                box.after_demand = mark

    @contextmanager
    def _hold(self, index: int) -> Iterator[bool]:
        """Node thread ``index`` cannot end inside; gives True if it has started and not
        reached its exit (so its native id is still its own)."""
        with self._exit_locks[index]:
            thread = self.threads[index]
            yield thread.is_alive() and not self._exiting[index]

    def interrupt_stuck_nodes(self) -> None:
        """After an abort, raise ``RunAborted`` inside node threads that have not ended.

        A node that never reads its input or calls a checked ``outp`` (a tight loop in
        user code) would otherwise keep its thread alive. Called by the monitor once the
        abort grace period has passed. A thread is interrupted again every
        ``_REINTERRUPT_S`` while it lives: an interruption that lands in code that
        swallows it (a ``__del__``, an ``except BaseException``) is not the end of it.
        """
        now = time.monotonic()
        for pn in self.plan.nodes:
            i = pn.index
            thread = self.threads[i]
            last = self._interrupted[i]
            if (last is not None and now - last < _REINTERRUPT_S) or thread.ident is None:
                continue
            with self._exit_locks[i]:
                if not self._exiting[i] and thread.is_alive():
                    self._interrupted[i] = now
                    raise_async_exception(thread.ident, RunAborted)

    def wait_for_outcome(self, index: int) -> None:
        """Node ``index`` waits for the rest of the run (see ``NodeContext``; its thread)."""
        with self._outcome:
            self._awaiting.add(index)
            self._outcome.notify_all()  # the rest of the run may be this node alone
            self._outcome.wait_for(lambda: self.aborting or self._rest_has_ended())
        if self.aborting:
            raise RunAborted

    def _rest_has_ended(self) -> bool:
        """True when every node has ended but those waiting for it and their downstreams."""
        awaiting = self._awaiting
        reach = self.acks.routing.reach
        spared = set().union(*(reach(i) for i in awaiting)) if awaiting else set()
        return all(ended or i in spared for i, ended in enumerate(self._ended))

    def _node_ended(self, index: int | None = None) -> None:
        if index is not None:
            with self._outcome:
                self._ended[index] = True
                self._outcome.notify_all()
        with self._remaining_lock:
            self._remaining -= 1
            last = self._remaining <= 0
        if last:
            self.monitor.finish()
            self.placement.finish()
            self._finish()

    # ----------------------------------------------------------------- control
    def _on_stop(self) -> None:
        self._stop_event.set()
        for pn in self.plan.nodes:
            if pn.is_source:
                for box in self.outboxes[pn.index].values():
                    box.request_stop()

    def _inject_marker(self, source: int, marker: Marker, final: bool) -> bool:
        return inject_marker(list(self.outboxes[source].values()), marker, final)

    def _on_abort(self) -> None:
        self.aborting = True
        with self._outcome:
            self._outcome.notify_all()
        self.abort_event.set()
        self._stop_event.set()
        for boxes in self.outboxes:
            for box in boxes.values():
                box.abort()
        for channel in self.channels:
            if channel is not None:
                channel.abort()

    def _join(self) -> None:
        if self._joined:
            return
        current = threading.current_thread()
        for thread in self.threads:
            if thread is not current:
                thread.join()
        self.monitor.join()
        self.placement.join()
        self._joined = True


class ThreadsRunner:
    """Runs each node function in its own thread (the default, ``runner="threads"``).

    Example:
        >>> import nanostream
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([1, 2, 3]) > sink
        Collect(name=None)
        >>> sink.global_start(runner="threads")
        >>> sink.items
        [1, 2, 3]
    """

    name = "threads"
    #: It takes checkpoints into a run's state store (``state=``, see docs/state.md).
    checkpoints = True
    #: Its checkpoints may be unaligned (``checkpoint_unaligned=True``).
    unaligned_checkpoints = True
    #: It places its computing node threads on one core (``share_cores=``).
    shares_cores = True

    def start(self, plan: Plan) -> Run:
        """Start ``plan``; returns its run handle."""
        if plan.options.share_cores and not supported():
            raise GraphError(
                "share_cores=True needs Linux and two cores or more for this process: "
                "leave share_cores unset (node threads are then placed where the machine "
                "allows it) or set it to False"
            )
        run = ThreadRun(plan)
        run.start()
        return run
