"""The actor of the Ray runner: it hosts one instance of one plan node for a run.

Imported only where Ray is installed (the driver imports it when a run starts; Ray workers
import it to build the actor). See :mod:`nanostream.runners.ray` for the mapping as a whole.

A node runs in its actor as on the threads runner, on the shared runtime of
:mod:`nanostream._engine`: a thread runs its function with ``run_function``, reading its
``Channel`` through an ``InputReader`` (slices, ticks, markers) and emitting into a
``CheckedOutbox`` per output port; its context is an ``EngineContext``. What is Ray's:

* how items cross (:mod:`._transport`): an outbox's downstream is a ``Target`` whose
  ``put`` is a remote ``push`` call, which the receiving actor's ``Receiver`` puts into
  its node's channel in order, waiting for room;
* how a node waits and wakes: the node thread waits on its channel's condition, and
  before it waits it sends what it has emitted; a *linger* thread sends a partial batch
  that waited longer than ``linger`` (no consumer can ask for demand across processes);
* how the driver hears of the node (:meth:`NodeHost.events`): the node's events that
  were set, its log records, and *notices* told once (it asked the run to stop, it waits
  for the rest of the run, a source has emitted everything);
* acknowledgements (see :mod:`nanostream._core.acks`): a marker goes to every instance
  of a target; a sink instance tells the source's actor with a ``reached`` call, where
  the acks are called on one thread of the actor's own; a sink waits for those calls to
  be taken before its actor reports the node's end, and a source's actor waits for its
  acks (or for the driver's ``settle``: every other node has ended) before it reports
  its own.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import ray

from ..._core.acks import Marker
from ..._core.graph import PlanNode
from ..._core.ports import port_dispatcher
from ..._core.redact import exception_text
from ..._core.run import NodeCounters
from ..._core.signals import RunAborted
from ..._engine.channel import IDLE, Channel
from ..._engine.checkpoint import hook_node
from ..._engine.node import EngineContext, forward_marker, inject_marker, run_function
from ..._engine.outbox import CheckedOutbox, Outbox
from ..._engine.reader import InputReader
from ._checkpoints import ActorCheckpoints, Report, put_barrier
from ._transport import Link, LoopCondition, Receiver, RemoteAcks, Target
from ._wire import describe_failure, dumps, loads, portable

__all__ = ["HostSpec", "NodeHost", "Routes"]

_ACK_THREAD = "nanostream-ray-acks"  # the actor's thread that calls a source's acks
_MAX_LOGS = 10_000  # records kept between two deliveries to the driver


@dataclass(frozen=True)
class HostSpec:
    """What one actor needs to host one instance of a plan node.

    ``payload`` is ``dumps((plan_node, keys))`` (its :class:`~nanostream.PlanNode`) where
    ``keys`` maps each output port to the key functions of its targets (None where a
    target is not keyed). ``batch_size`` is the node's on Ray (see ``min_batch_size``);
    ``ack_routing`` is ``dumps`` of the run's ``AckRouting``, counting replicas.
    """

    run_id: str
    name: str
    index: int
    replica: int
    payload: bytes
    batch_size: int
    n_streams: int
    max_in_flight: int
    linger: float
    sync_state: bool
    ack_routing: bytes
    log_level: int = logging.WARNING
    #: The driver's machine (Ray node id) and import path: an actor on the same machine
    #: imports from there too, as the node would in the driver's own process.
    driver_node: str | None = None
    driver_path: tuple[str, ...] = ()
    #: In a run with a state store: the epoch restored (0 on a first run) and the run's
    #: ``checkpoint_items``; and the node's restored state, as ``(state,)``.
    checkpoints: tuple[int, int | None] | None = None
    restored: tuple[Any] | None = None


# A port's targets: (target node name, its actors) in edge order.
Routes = dict[str, list[tuple[str, list[Any]]]]


class _Instance:
    """One running instance of a node inside its actor: its runtime, threads and notices."""

    def __init__(
        self,
        *,
        spec: HostSpec,
        entry: PlanNode,
        keys: dict[str, list[Any]],
        routes: Routes,
        loop: asyncio.AbstractEventLoop,
        sources: dict[int, Any],
    ) -> None:
        self.spec = spec
        self.entry = entry
        self.loop = loop
        self.counters = counters = NodeCounters()
        self.aborted = False
        self.stop_event = threading.Event()
        self.threads_before: set[threading.Thread] = set()
        self.done: asyncio.Future[dict[str, Any]] = loop.create_future()
        # What the driver is told once each (see tell_driver), and has not been told yet.
        self.notices: list[str] = []
        self._told: set[str] = set()
        self.outcome_released = False  # by the driver (NodeHost.run_outcome)
        self._settled = threading.Condition(threading.Lock())
        self._settle = False

        # The node's input: its channel, fed by the remote calls of its upstream actors.
        self.channel: Channel | None = None
        self.receiver: Receiver | None = None
        if spec.n_streams:
            waiter = LoopCondition()
            self.channel = Channel(entry.queue_size, spec.batch_size, spec.n_streams, waiter=waiter)
            self.receiver = Receiver(self.channel, waiter, loop)
        # Its outputs: a checked outbox per port, whose downstreams are remote targets.
        aborted = self.is_aborted
        ports = dict(routes)
        ports.setdefault("out", [])
        self.boxes: dict[str, Outbox] = {}
        for port, targets in ports.items():
            stream = f"{spec.index}:{spec.replica}:{port}"
            link = partial(
                Link,
                stream=stream,
                run_id=spec.run_id,
                max_in_flight=spec.max_in_flight,
                counters=counters,
                aborted=aborted,
            )
            downstream = [
                Target([link(a) for a in actors], key)
                for (_, actors), key in zip(targets, keys.get(port, []), strict=True)
            ]
            self.boxes[port] = CheckedOutbox(downstream, spec.batch_size, counters)
        box_list = list(self.boxes.values())
        self.acks = RemoteAcks(
            lambda _source, marker, final: inject_marker(box_list, marker, final),
            loads(spec.ack_routing),
            index=spec.index,
            run_id=spec.run_id,
            sources=sources,
            aborted=aborted,
        )
        self.reader: InputReader | None = None
        if self.channel is not None:
            self.reader = InputReader(
                spec.name,
                spec.index,
                counters,
                max_slice=spec.batch_size,
                tick=entry.tick_interval,
                acks=self.acks,
                holds=entry.holds_items,
                forward=partial(forward_marker, box_list, counters),
            )
        self.context = EngineContext(
            entry,
            counters,
            self.acks,
            box_list,
            self.reader,
            abort_event=threading.Event(),
            stop_event=self.stop_event,
            request_stop=self.request_stop,
            wait_for_outcome=self.wait_for_outcome,
            on_first_ack=self._mark_after_sends,
        )
        # Checkpoints (a run with a state store): the node's state back, barriers hooked in.
        self.reports: list[Report] = []  # for the driver, with the next events answer
        self.checkpoints: ActorCheckpoints | None = None
        self.on_end: Any = None
        if spec.checkpoints is not None:
            if spec.restored is not None:
                self.context.restored_state = spec.restored[0]
            committed, items = spec.checkpoints
            self.checkpoints = ActorCheckpoints(
                self.report, committed=committed, items=items, exactly_once=entry.exactly_once
            )
            self.on_end = hook_node(
                entry,
                self.checkpoints,
                self.context,
                boxes=box_list,
                reader=self.reader,
                channel=self.channel,
                forward=partial(put_barrier, box_list),
            )
            if self.reader is not None and self.reader.barriers is not None:
                self.reader.barriers.live = spec.n_streams  # a barrier per upstream instance
        # The node's adapter reads its context when it starts; sleep() waits on stop_event.
        entry.bind(self.context)
        self.events: dict[str, threading.Event] = entry.events() if spec.sync_state else {}
        self.events_set: list[str] = []  # changed on the event loop only
        self.logs: deque[dict[str, Any]] = deque()  # records for the driver
        self.logs_dropped = 0
        self._logs_lock = threading.Lock()
        self.events_changed: asyncio.Future[None] = loop.create_future()
        self._events_seen: set[str] = set()  # the linger thread's view

    def is_aborted(self) -> bool:
        return self.aborted

    # ----------------------------------------------------------------- the driver
    def tell_driver(self, notice: str) -> None:
        """Tell the driver ``notice`` once, with the answer to its ``events`` call (any
        thread): ``stop`` (the node asked the run to stop), ``awaiting`` (it waits for
        the rest of the run), ``emitted_all`` (a source has emitted everything)."""
        self.loop.call_soon_threadsafe(self._note, notice)

    def _note(self, notice: str) -> None:  # on the event loop
        if notice not in self._told:
            self._told.add(notice)
            self.notices.append(notice)
        self._events_signal([])

    def report(self, report: Report) -> None:
        """Send a checkpoint's report to the driver, in order (any thread)."""
        self.loop.call_soon_threadsafe(self._add_report, report)

    def _add_report(self, report: Report) -> None:  # on the event loop
        self.reports.append(report)
        self._events_signal([])

    def request_stop(self) -> None:
        """(The node's context.) This node stops at once (a source at its next outp), as
        on the other runners; the driver hears of it and stops the rest of the run."""
        self.stop(self.entry.is_source)
        self.tell_driver("stop")

    def wait_for_outcome(self) -> None:
        """(The node's context.) Wait until the driver says the rest of the run ended well."""
        self.tell_driver("awaiting")
        with self._settled:
            self._settled.wait_for(lambda: self.outcome_released or self.aborted)
        if self.aborted:
            raise RunAborted

    def release_outcome(self) -> None:
        """The rest of the run has ended well: ``wait_for_run_outcome`` returns."""
        with self._settled:  # the condition abort() notifies too
            self.outcome_released = True
            self._settled.notify_all()

    # ----------------------------------------------------------------- acknowledgements
    def _mark_after_sends(self) -> None:
        """A source acknowledges: each batch it sends may be followed by a marker."""
        mark = partial(self.acks.mark, self.spec.index)
        for box in self.boxes.values():
            assert isinstance(box, CheckedOutbox)
            box.after_send = mark

    def ack_reached(self, marker: Marker) -> None:
        """(Source actor, the acks thread.) One sink instance has the marker."""
        if self.aborted:
            return
        self.acks.reached_here(marker)
        with self._settled:
            self._settled.notify_all()

    def settle(self) -> None:
        """No more markers can come back: a source waiting for acks ends."""
        with self._settled:
            self._settle = True
            self._settled.notify_all()

    def wait_for_acks(self) -> None:
        """(Source, after it ended.) Wait until its acks have been called and returned
        (an ack still running counts as pending), or none can be called any more."""
        acks = self.acks
        if not acks.has_acks(self.spec.index):
            return
        with self._settled:
            self._settled.wait_for(lambda: self._settle or self.aborted or not acks.pending())

    # ----------------------------------------------------------------- control
    def start(self) -> None:
        self.threads_before = set(threading.enumerate())
        self.counters.state = "running"
        thread = threading.Thread(
            target=self.main, name=f"nanostream-ray:{self.spec.name}", daemon=True
        )
        thread.start()

    def stop(self, source: bool) -> None:
        self.stop_event.set()
        if source:
            for box in self.boxes.values():
                box.request_stop()

    def abort(self) -> None:
        self.aborted = True
        self.stop_event.set()
        self.settle()
        if self.checkpoints is not None:
            self.checkpoints.abort()
        self.context.abort_event.set()  # wakes a retry's back-off
        for box in self.boxes.values():
            box.abort()
        if self.receiver is not None:
            self.receiver.abort()
        if self.channel is not None:
            self.channel.abort()

    def stats(self) -> dict[str, Any]:
        c, channel = self.counters, self.channel
        since = c.output_wait_since
        return {
            "state": c.state,
            "items_in": c.items_in,
            "items_out": c.items_out,
            "errors": c.errors,
            "queue_depth": channel.depth() if channel is not None else 0,
            "queue_capacity": channel.capacity if channel is not None else 0,
            "blocked_input_s": c.blocked_input_s,
            "blocked_output_s": c.blocked_output_s,
            "output_waiting_s": time.monotonic() - since if since is not None else 0.0,
        }

    # ----------------------------------------------------------------- events and logs
    def check_events(self) -> None:
        """Tell the event loop about node events that have been set since last time."""
        new = [k for k, e in self.events.items() if k not in self._events_seen and e.is_set()]
        if new:
            self._events_seen.update(new)
            self.loop.call_soon_threadsafe(self._events_signal, new)

    def keep_log(self, record: logging.LogRecord) -> None:
        """Keep a log record of the node (any thread) for the driver."""
        data = portable(record)
        with self._logs_lock:
            if len(self.logs) >= _MAX_LOGS:
                self.logs_dropped += 1
                return
            first = not self.logs
            self.logs.append(data)
        if first:
            self.loop.call_soon_threadsafe(self._events_signal, [])

    def take_logs(self) -> list[dict[str, Any]]:
        """The records kept since the last call."""
        with self._logs_lock:
            records = list(self.logs)
            self.logs.clear()
            dropped, self.logs_dropped = self.logs_dropped, 0
        if dropped:
            note = logging.LogRecord(
                "nanostream",
                logging.WARNING,
                __file__,
                0,
                "%d more log records of node %r "
                "were dropped (at most %d are kept between two deliveries)",
                (dropped, self.spec.name, _MAX_LOGS),
                None,
            )
            records.append(portable(note))
        return records

    def _events_signal(self, new: list[str]) -> None:
        self.events_set.extend(new)
        changed, self.events_changed = self.events_changed, self.loop.create_future()
        if not changed.done():
            changed.set_result(None)

    # ----------------------------------------------------------------- the node's threads
    def linger_main(self, finished: threading.Event) -> None:
        boxes = [box for box in self.boxes.values() if isinstance(box, CheckedOutbox)]
        while not finished.wait(self.spec.linger):
            for box in boxes:
                box.linger()
            if self.events:
                self.check_events()

    def main(self) -> None:
        """The node thread: run the node function, then report the outcome."""
        finished = threading.Event()
        linger = threading.Thread(
            target=self.linger_main, args=(finished,), name="nanostream-ray-linger", daemon=True
        )
        linger.start()
        counters = self.counters
        outcome: dict[str, Any]
        try:
            self.execute()
            counters.state = "finished"
            outcome = {"state": "finished"}
        except RunAborted:
            counters.state = "aborted"
            outcome = {"state": "aborted"}
        except BaseException as exc:  # noqa: BLE001 - reported to the driver
            counters.state = "failed"
            counters.errors += 1
            outcome = {"state": "failed", **describe_failure(exc)}
        finally:
            finished.set()
        linger.join()
        self.check_events()
        outcome["node_state"] = self.node_state()  # whatever the ending, as on threads
        # The actor may host another run if the node left no thread of its own behind.
        current = threading.current_thread()
        outcome["clean"] = all(
            t in self.threads_before or t is current or t.name.startswith(_ACK_THREAD)
            for t in threading.enumerate()
        )
        outcome["stats"] = self.stats()
        self.loop.call_soon_threadsafe(self._report, outcome)

    def _report(self, outcome: dict[str, Any]) -> None:
        if not self.done.done():
            outcome["logs"] = self.take_logs()
            self.done.set_result(outcome)
        self._events_signal([])

    def execute(self) -> None:
        entry, boxes, channel, reader = self.entry, self.boxes, self.channel, self.reader
        use_ports = len(boxes) > 1 or bool(entry.ports)
        outp = port_dispatcher(boxes) if use_ports else boxes["out"].outp
        inp: Any = iter(())
        if reader is not None and channel is not None:
            counters, box_list = self.counters, list(boxes.values())
            ticked = [False]

            def get(timeout: float | None) -> Any:
                if self.aborted:
                    raise RunAborted
                if ticked[0] or not channel.batches:  # after a tick, or before a wait:
                    for box in box_list:  # what was emitted goes first
                        box.flush()
                batch = channel.get(counters, timeout)
                ticked[0] = batch is IDLE
                return batch

            inp = reader.items(get, _no_turn)
        run_function(
            entry.function,
            inp,
            outp,
            name=self.spec.name,
            index=self.spec.index,
            reader=reader,
            boxes=list(boxes.values()),
            acks=self.acks,
            on_end=self.on_end,
        )
        self.acks.wait_delivered()  # a sink's "reached" calls, before it reports its end
        if reader is None:
            # The driver hears that the source emitted everything (its actor reports its
            # end only once its acks are called, which a writer waiting for the rest of
            # the run holds back).
            self.tell_driver("emitted_all")
            self.wait_for_acks()

    def node_state(self) -> bytes | None:
        """The node object's attributes, for the driver's copy (class nodes only)."""
        state = self.entry.state() if self.spec.sync_state else None
        if state is None:
            return None
        try:
            return dumps(state)
        except Exception:  # noqa: BLE001 - some attribute cannot travel (an open file, ...)
            pass
        travels = {}
        for key, value in state.items():
            try:
                dumps(value)
            except Exception:  # noqa: BLE001 - that one stays remote
                continue
            travels[key] = value
        try:
            return dumps(travels)
        except Exception:  # noqa: BLE001 - they travel alone, not together
            return None


def _no_turn() -> None:
    """Between two input slices on Ray: nothing (outputs go when full, before a wait,
    or after ``linger``: a remote call costs too much for a partial batch per slice)."""


def _follow_driver_path(spec: HostSpec) -> None:
    """On the driver's machine, import from the driver's path too (after our own)."""
    if spec.driver_node is None or not spec.driver_path:
        return
    try:
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - unknown: do not guess
        return
    if here != spec.driver_node:
        return
    added = False
    for entry in spec.driver_path:
        if entry and entry not in sys.path and os.path.exists(entry):
            sys.path.append(entry)
            added = True
    if added:
        importlib.invalidate_caches()


class _LogRelay(logging.Handler):
    """In an actor: passes the ``nanostream`` loggers' records to the hosted node, whose
    driver emits them again on its own loggers (so they show where the run was started)."""

    def __init__(self) -> None:
        super().__init__()
        self.instance: _Instance | None = None

    def emit(self, record: logging.LogRecord) -> None:
        instance = self.instance
        if instance is not None:
            instance.keep_log(record)


_relay: _LogRelay | None = None


def _relay_logs(instance: _Instance) -> None:
    """Send this process's ``nanostream`` log records to ``instance``'s driver."""
    global _relay
    logger = logging.getLogger("nanostream")
    if _relay is None:
        _relay = _LogRelay()
        logger.addHandler(_relay)
        logger.propagate = False  # shown by the driver, not in the worker's own log too
    logger.setLevel(instance.spec.log_level)
    _relay.instance = instance


# --------------------------------------------------------------------- the actor
class NodeHost:
    """Hosts one instance of one plan node; made a Ray actor by the driver.

    Only the remote methods live here (Ray wraps every method of an actor class); the
    node's thread and outboxes are a :class:`_Instance`.

    Example:
        >>> from nanostream.runners.ray._actor import NodeHost
        >>> NodeHost().instance is None
        True
    """

    def __init__(self) -> None:
        self.instance: _Instance | None = None
        self._ack_executor: ThreadPoolExecutor | None = None

    async def load(
        self, spec: HostSpec, routes: Routes, sources: dict[int, Any] | None = None
    ) -> tuple[str | None, list[str]]:
        """Unpack the node and wire its outputs.

        ``sources`` are the actors of the run's sources by node index: a sink tells them
        when their acknowledgement markers reach it (see :meth:`reached`).

        Returns an error message (None if all went well) and the names of the node's
        events that the driver should mirror (see :meth:`events`).
        """
        _follow_driver_path(spec)
        try:
            entry, keys = loads(spec.payload)
        except Exception as exc:  # noqa: BLE001 - reported to the driver as text
            return exception_text(exc), []
        self.instance = _Instance(
            spec=spec,
            entry=entry,
            keys=keys,
            routes=routes,
            loop=asyncio.get_running_loop(),
            sources=sources or {},
        )
        _relay_logs(self.instance)
        return None, sorted(self.instance.events)

    async def start(self) -> None:
        """Start the node thread."""
        assert self.instance is not None
        self.instance.start()

    def _current(self, run_id: str) -> _Instance | None:
        instance = self.instance
        return instance if instance is not None and instance.spec.run_id == run_id else None

    async def push(
        self, run_id: str, stream: str, seq: int, batch: list[Any] | Marker, end: bool
    ) -> bool:
        """Take a batch (a marker, or a stream's end) from upstream; False if the run was
        aborted."""
        instance = self._current(run_id)
        if instance is None or instance.receiver is None:
            return False
        return await instance.receiver.put(stream, seq, batch, end)

    async def reached(self, run_id: str, source: int, seq: int) -> None:
        """Marker ``seq`` of this (source) node has reached one sink instance; when it has
        reached them all, the acknowledgements it covers are called (here, off the loop)."""
        instance = self._current(run_id)
        if instance is None:
            return
        if self._ack_executor is None:  # the actor's own: one thread, acks in order
            self._ack_executor = ThreadPoolExecutor(1, thread_name_prefix=_ACK_THREAD)
        loop = asyncio.get_running_loop()
        marker = Marker(source, seq)
        await loop.run_in_executor(self._ack_executor, instance.ack_reached, marker)

    async def settle(self, run_id: str) -> None:
        """Every other node has ended: a source waits for no more acknowledgements."""
        instance = self._current(run_id)
        if instance is not None:
            instance.settle()

    async def begin_checkpoint(self, run_id: str, epoch: int) -> None:
        """(A source.) Checkpoint ``epoch`` has begun: send its barrier at the next item."""
        instance = self._current(run_id)
        if instance is not None and instance.checkpoints is not None:
            instance.checkpoints.begin(epoch, list(instance.boxes.values()))

    async def checkpoint_committed(self, run_id: str, epoch: int, final: bool) -> None:
        """(A sink that writes exactly once.) Checkpoint ``epoch`` is committed (``final``:
        the final states too): the sink writes what it kept for it."""
        instance = self._current(run_id)
        if instance is not None and instance.checkpoints is not None:
            instance.checkpoints.told(epoch, final)

    async def stop(self, run_id: str, source: bool) -> None:
        """The run is stopping: a source ends at its next ``outp``."""
        instance = self._current(run_id)
        if instance is not None:
            instance.stop(source)

    async def abort(self, run_id: str) -> None:
        """The run is aborting: reads and sends raise ``RunAborted`` in the node thread."""
        instance = self._current(run_id)
        if instance is not None:
            instance.abort()

    async def events(self, run_id: str, known: list[str]) -> dict[str, Any]:
        """Wait until one of the node's events not in ``known`` is set, the node logs,
        or the node ends; the names of all its events that are set (``events``) and the
        log records since the last call (``logs``).

        The driver keeps one such call pending per node, sets its own copies of the
        events (so ``Collect.seen.wait()`` works in the driver while the run goes on) and
        hands the records to its own loggers. ``notices`` are those the node told the
        driver since the last call, each once (see ``_Instance.tell_driver``); ``reports``
        the node's checkpoint reports since the last call, in order (see
        :mod:`._checkpoints`).
        """
        instance = self._current(run_id)
        if instance is None:
            return {"events": [], "logs": [], "ended": True, "notices": [], "reports": []}
        while (
            not (set(instance.events_set) - set(known))
            and not instance.logs
            and not instance.notices
            and not instance.reports
            and not instance.done.done()
        ):
            await instance.events_changed
        notices, instance.notices = instance.notices, []
        reports, instance.reports = instance.reports, []
        return {
            "events": sorted(instance.events_set),
            "logs": instance.take_logs(),
            "ended": instance.done.done(),
            "notices": notices,
            "reports": reports,
        }

    async def run_outcome(self, run_id: str) -> None:
        """The rest of the run has ended well: the node's ``wait_for_run_outcome`` returns."""
        instance = self._current(run_id)
        if instance is not None:
            instance.release_outcome()

    async def stats(self) -> dict[str, Any]:
        """The node's figures now."""
        assert self.instance is not None
        return self.instance.stats()

    async def wait_done(self) -> dict[str, Any]:
        """Wait until the node thread has ended; its outcome (see ``_Instance.main``)."""
        assert self.instance is not None
        return await self.instance.done
