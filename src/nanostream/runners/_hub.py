"""The scheduler of the cooperative runner: node functions as greenlets on one thread.

:class:`Scheduler` (the *hub*) runs in the thread that calls :meth:`Scheduler.run` and
switches to one node's greenlet at a time. A node gives up the thread when it waits for
input, waits for room downstream (back-pressure), or when its time slice is over. Values move
in batches, as on the threaded runner: a node that reads input emits through a C-level
``deque.append`` whose overflow hands the full batch on (the *tripwire* of
:mod:`nanostream._engine.outbox`); a source emits through a small Python function.

Used by :mod:`nanostream.runners.cooperative`; not a public API.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from greenlet import getcurrent, greenlet

from .._core.acks import AckCoordinator
from .._core.graph import Plan, PlanNode
from .._core.ports import port_dispatcher
from .._core.run import NodeCounters
from .._core.signals import RunAborted, SourceStopped
from .._engine.channel import END, Channel
from .._engine.node import forward_marker, run_function
from .._engine.outbox import CheckedOutbox, Outbox, TripwireOutbox
from .._engine.reader import COOPERATIVE_LINGER_S, InputReader

__all__ = ["ABANDONED", "TIMESLICE_S", "Scheduler"]

log = logging.getLogger("nanostream")

# A node that has held the thread this long gives it up at its next chance (after an input
# slice, or at a source's next outp), so slow nodes and slow sources deliver promptly.
TIMESLICE_S = 0.02
_clock = time.perf_counter

# Greenlets of nodes that ignored an abort (see TripwireOutbox's park). They must never be
# garbage-collected in a thread that is still alive (that would run code inside them), so
# they are kept here until their thread has ended, or for good for run_inline.
ABANDONED: list[Any] = []


class _HubWaiter:
    """How the two sides of a channel wait on the cooperative runner: through the hub.

    The :class:`~nanostream._engine.channel.Channel` is the threads runner's; its waits here
    switch the waiting task's greenlet to the hub, and a wake-up makes it ready again. Only
    the run's thread touches it, so entering it (the channel's lock) does nothing. After
    an abort, a wait raises ``RunAborted``.
    """

    __slots__ = ("sched", "waiting")

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.waiting: list[_Task] = []

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        return None

    def wait(self, timeout: float | None = None) -> bool:
        """Give up the thread until notified (False: ``timeout`` seconds passed first)."""
        sched = self.sched
        if sched.aborting:
            raise RunAborted
        task = sched.current
        assert task is not None, "a channel wait outside a task of its run"
        self.waiting.append(task)
        if timeout is not None:
            sched._sleeps += 1
            task.timer = sched._sleeps
            heapq.heappush(sched.timers, (_clock() + timeout, sched._sleeps, task))
        sched._block(task)
        timed_out = timeout is not None and task.timer == 0  # the hub fired the timer
        task.timer = 0
        if timed_out and task in self.waiting:
            self.waiting.remove(task)
        if sched.aborting:
            raise RunAborted
        return not timed_out

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true, or for ``timeout`` seconds."""
        end = None if timeout is None else _clock() + timeout
        while not (result := predicate()):
            if end is None:
                self.wait()
            elif (left := end - _clock()) <= 0 or not self.wait(left):
                return predicate()
        return result

    def notify_all(self) -> None:
        """Make every waiting task ready."""
        waiting = self.waiting
        if waiting:
            for task in waiting:
                self.sched.make_ready(task)
            waiting.clear()


class _Task:
    """One node function of a plan, with its greenlet, input channel and outboxes."""

    __slots__ = (
        "batch_size",
        "box_list",
        "boxes",
        "channel",
        "counters",
        "deadline",
        "done",
        "function",
        "greenlet",
        "index",
        "inp",
        "is_source",
        "name",
        "on_end",
        "outp",
        "parked",
        "queued",
        "reader",
        "timer",
        "waker",
    )

    def __init__(
        self,
        name: str,
        function: Callable[[Iterable[Any], Callable[[Any], Any]], Any],
        counters: NodeCounters,
        batch_size: int,
        is_source: bool,
    ) -> None:
        self.name = name
        self.function = function
        self.counters = counters
        self.batch_size = batch_size
        self.is_source = is_source
        self.channel: Channel | None = None
        self.boxes: dict[str, Outbox] = {}
        self.box_list: list[Outbox] = []
        self.inp: Iterable[Any] = ()
        self.outp: Callable[[Any], Any] = _drop
        self.deadline = [0.0]
        self.greenlet: Any = None
        self.waker: Any = None  # the greenlet to resume (the task's own, unless nested)
        self.queued = False
        self.done = False
        self.parked = False
        self.timer = 0  # the id of the input timer that may wake the task (0: none)
        # Called when the function ended well, before its outputs end (checkpoints).
        self.on_end: Callable[[], None] | None = None
        self.index = -1  # the node's plan index
        self.reader: InputReader | None = None  # its inp, if it reads input


def _drop(item: Any) -> None:
    """The outp of a node whose outputs go nowhere."""


class Scheduler:
    """The hub: runs ready tasks one at a time in the thread that calls :meth:`run`."""

    def __init__(self, on_fail: Callable[[str, BaseException], None], *, watched: bool) -> None:
        self.tasks: list[_Task] = []
        self.ready: deque[_Task] = deque()
        self.aborting = False
        self.on_fail = on_fail
        # With a watcher thread (see CooperativeRun), sources are told when their time
        # slice is over; without one, a source's outp reads the clock at every call.
        self.watched = watched
        self.current: _Task | None = None
        self.idle: _Task | None = None  # run only when no other task is ready (run_inline)
        self.sleepers: list[tuple[float, int, _Task]] = []  # a heap, by wake-up time
        # Input timeouts of nodes with a tick_interval (a heap); unlike sleeps, a stop
        # does not end them.
        self.timers: list[tuple[float, int, _Task]] = []
        self._sleeps = 0
        self.stop_event = _StopEvent(self)
        self.abort_event = _AbortEvent(self)
        self.thread_id: int | None = None
        self.hub: Any = None
        self.remaining = 0
        self.parked: list[Any] = []
        self.acks: AckCoordinator | None = None  # set by a run that supports acks
        # Tasks waiting for the rest of the run (wait_for_outcome), and which nodes each
        # node's outputs reach (set by a run that offers that wait).
        self.awaiting: list[_Task] = []
        self.reach: Callable[[int], frozenset[int]] | None = None

    # ----------------------------------------------------------------- building
    def add_plan(
        self,
        plan: Plan,
        counters: list[NodeCounters],
        *,
        feed: Iterable[Any] | None = None,
        outp: Callable[[Any], Any] | None = None,
        entries: Sequence[str] | None = None,
        exits: Sequence[str] | None = None,
    ) -> None:
        """Make the tasks of ``plan``; with ``feed``/``outp``, wire the plan to them."""
        nodes = plan.nodes
        inline = outp is not None
        entry_set = (
            set(entries)
            if entries is not None
            else {pn.name for pn in nodes if not pn.inputs and not pn.makes_own_data}
        )
        exit_set = set(exits) if exits is not None else {pn.name for pn in nodes if not pn.outputs}
        if inline:
            unknown = sorted((entry_set | exit_set) - {pn.name for pn in nodes})
            if unknown:
                raise KeyError(f"no node named {', '.join(unknown)} in plan {plan.name!r}")
        tasks = []
        for pn, c in zip(nodes, counters, strict=True):
            fed = inline and pn.name in entry_set
            task = _Task(pn.name, pn.function, c, pn.batch_size, not pn.inputs and not fed)
            task.index = pn.index
            producers = len(pn.inputs) + (1 if fed else 0)
            if producers:
                task.channel = Channel(
                    pn.queue_size, pn.batch_size, producers, pn.queue_bytes, _HubWaiter(self)
                )
                task.reader = InputReader(
                    pn.name,
                    pn.index,
                    c,
                    max_slice=pn.batch_size,
                    tick=pn.tick_interval,
                    acks=self.acks,
                    holds=None if inline else pn.holds_items,
                    forward=partial(forward_marker, task.box_list, c),
                    linger=COOPERATIVE_LINGER_S,
                )
            tasks.append(task)
        for pn, task in zip(nodes, tasks, strict=True):
            self._wire(pn, task, tasks)
            if inline and pn.name in exit_set:
                assert outp is not None
                self._wire_exit(task, outp)
        if inline:
            feeder = _Task("<input>", _feeder(feed or ()), NodeCounters(), 1, True)
            chans = [t.channel for pn, t in zip(nodes, tasks, strict=True) if pn.name in entry_set]
            box = _FeedBox(self, feeder, [c for c in chans if c is not None])
            feeder.boxes = {"out": box}
            feeder.box_list = [box]
            feeder.outp = box.outp
            tasks.insert(0, feeder)
        self.tasks.extend(tasks)

    def _wire(self, pn: PlanNode, task: _Task, tasks: list[_Task]) -> None:
        ports = dict(pn.outputs)
        ports.setdefault("out", ())
        boxes: dict[str, Outbox] = {}
        for port, targets in ports.items():
            channels = [c for c in (tasks[t].channel for t in targets) if c is not None]
            if task.is_source:
                boxes[port] = self._source_box(task, channels)
            else:
                park = partial(self.park, task)
                boxes[port] = TripwireOutbox(channels, task.batch_size, task.counters, park)
        task.boxes = boxes
        task.box_list.extend(boxes.values())  # the list the reader already holds
        use_ports = len(boxes) > 1 or bool(pn.ports)
        task.outp = port_dispatcher(boxes) if use_ports else boxes["out"].outp
        if task.channel is not None and task.reader is not None:
            task.inp = task.reader.items(
                partial(self._next_batch, task, task.channel), partial(self._after_slice, task)
            )

    def _wire_exit(self, task: _Task, outp: Callable[[Any], Any]) -> None:
        """Send a node's outputs to the caller's ``outp`` (as well as to its inner targets)."""
        counters = task.counters
        deadline = task.deadline

        def exit_outp(item: Any) -> None:
            if self.aborting:
                raise RunAborted
            counters.items_out += 1
            try:
                outp(item)
            except SourceStopped:
                # The caller is a source being stopped: stop the sources inside too.
                self.request_stop()
                if task.is_source:
                    raise
            if task.is_source and _clock() >= deadline[0]:
                self.time_slice(task)  # a source exit: let the other nodes have a turn

        if all(not box.channels for box in task.box_list):
            task.outp = exit_outp
        else:
            inner = task.outp

            def both(item: Any) -> None:
                inner(item)
                exit_outp(item)

            task.outp = both

    # ----------------------------------------------------------------- the hub
    def run(self) -> None:
        """Run every task to its end (or until the run aborts) in the current greenlet."""
        hub = self.hub = getcurrent()
        self.thread_id = threading.get_ident()
        ready = self.ready
        sleepers = self.sleepers
        timers = self.timers
        stop = self.stop_event
        for task in self.tasks:
            task.greenlet = task.waker = greenlet(partial(self._task_main, task), parent=hub)
            task.queued = True
            ready.append(task)
        self.remaining = len(self.tasks)
        clock = _clock
        while self.remaining:
            if self.aborting:
                self._unwind()
                break
            if sleepers:
                stopping = stop.is_set()
                now = clock()
                while sleepers and (stopping or sleepers[0][0] <= now):
                    self.make_ready(heapq.heappop(sleepers)[2])
            if timers:
                now = clock()
                while timers and timers[0][0] <= now:
                    _, timer, waiting = heapq.heappop(timers)
                    if waiting.timer == timer:
                        waiting.timer = 0
                        self.make_ready(waiting)
            if ready:
                task = ready.popleft()
                task.queued = False
            elif self.idle is not None:
                task, self.idle = self.idle, None
            elif sleepers or timers:  # everyone waits: so does the thread, until a wake-up
                wake = min(h[0][0] for h in (sleepers, timers) if h)
                if sleepers:  # a stop wakes the sleepers
                    threading.Event.wait(stop, max(0.0, wake - clock()))
                else:
                    time.sleep(max(0.0, wake - clock()))
                continue
            else:  # pragma: no cover - a scheduler bug, never a user error
                waiting = next(t for t in self.tasks if not t.done)
                self.on_fail(
                    waiting.name, RuntimeError("cooperative scheduler: no node can make progress")
                )
                continue
            task.deadline[0] = clock() + TIMESLICE_S
            self.current = task
            task.waker.switch()
        self.current = None
        self.stop_event.detach()  # nodes keep the event, not the whole finished run
        self.abort_event.detach()
        for task in self.tasks:
            for box in task.box_list:
                box._dispose()
            if task.parked:
                self.parked.append(task.greenlet)
                task.greenlet = task.waker = None

    def _unwind(self) -> None:
        """After an abort, resume every suspended task once so that it ends."""
        for task in self.tasks:
            if task.done or task.parked:
                continue
            task.deadline[0] = _clock() + TIMESLICE_S
            task.waker.switch()
            if not task.done:  # pragma: no cover - every path after an abort ends or parks
                task.parked = True
                task.counters.state = "aborted"

    def _source_box(self, task: _Task, channels: list[Channel]) -> CheckedOutbox:
        """A source's outbox: its ``outp`` also ends the source's time slice."""
        box = CheckedOutbox(channels, task.batch_size, task.counters)
        deadline = task.deadline
        if not self.watched:  # no watcher to preempt it: outp reads the clock
            box.outp = box.clocked_outp(deadline, _clock)

        def after_outp() -> None:
            if _clock() >= deadline[0]:
                self.time_slice(task)

        box.after_outp = after_outp
        if self.acks is not None:  # acks waiting for the items sent get a marker
            box.after_send = partial(self.acks.mark, task.index)
        return box

    def _task_main(self, task: _Task) -> None:
        counters = task.counters
        try:
            if self.aborting:
                counters.state = "aborted"
                return
            run_function(
                task.function,
                task.inp,
                task.outp,
                name=task.name,
                index=task.index,
                reader=task.reader,
                boxes=task.box_list,
                acks=self.acks,
                on_end=task.on_end,
            )
            counters.state = "finished"
        except RunAborted as exc:
            if self.aborting:
                counters.state = "aborted"
            else:  # raised by the caller's inp or outp (run_inline): pass it on
                counters.state = "failed"
                self.on_fail(task.name, exc)
        except BaseException as exc:  # noqa: BLE001 - reported through on_fail
            counters.state = "failed"
            counters.errors += 1
            self.on_fail(task.name, exc)
        finally:
            task.done = True
            self.remaining -= 1
            for box in task.box_list:
                box._dispose()
            for waiting in self.awaiting:  # the rest of the run may have ended now
                self.make_ready(waiting)

    # ----------------------------------------------------------------- waiting (in tasks)
    def make_ready(self, task: _Task) -> None:
        if not task.queued and not task.done:
            task.queued = True
            self.ready.append(task)

    def _block(self, task: _Task) -> None:
        task.waker = getcurrent()
        self.hub.switch()

    def park(self, task: _Task) -> None:
        """Give up the thread for good (a node that ignores an abort); never returns."""
        task.parked = True
        task.counters.state = "aborted"
        log.warning(
            "node %r keeps emitting without reading its input after the run was aborted; "
            "it is abandoned",
            task.name,
        )
        while True:
            self.hub.switch()

    def sleep(self, task: _Task, seconds: float | None) -> bool:
        """``NanoNode.sleep()`` inside a task: the other tasks run meanwhile.

        Returns True if the run is stopping (at once if it already is); raises
        ``RunAborted`` if it is aborting.
        """
        if self.aborting:
            raise RunAborted
        for box in task.box_list:
            box.flush()  # what was made before the sleep goes on now
        if self.stop_event.is_set():
            if self.ready or self.idle is not None:  # a node looping on sleep() cannot hog
                self.make_ready(task)
                self._block(task)
        else:
            wake = _clock() + (seconds if seconds is not None else 365 * 86400.0)
            self._sleeps += 1
            heapq.heappush(self.sleepers, (wake, self._sleeps, task))
            self._block(task)
        if self.aborting:
            raise RunAborted
        return self.stop_event.is_set()

    def pause(self, task: _Task, seconds: float) -> bool:
        """Wait ``seconds`` inside a task while the others run; a stop does not end it.

        Returns True (at once, or when woken early) if the run is aborting.
        """
        if self.aborting:
            return True
        for box in task.box_list:
            box.flush()
        self._sleeps += 1
        task.timer = self._sleeps
        heapq.heappush(self.timers, (_clock() + seconds, self._sleeps, task))
        self._block(task)
        task.timer = 0
        return self.aborting

    def wait_for_outcome(self, task: _Task) -> None:
        """``NodeContext.wait_for_run_outcome()`` inside a task: the other tasks run meanwhile.

        Returns once every task has ended but those waiting here and the tasks downstream of
        them; raises ``RunAborted`` if the run aborts (or fails) first.
        """
        for box in task.box_list:
            box.flush()
        awaiting = self.awaiting
        awaiting.append(task)
        for other in awaiting:  # each of them may have been waiting for this task alone
            if other is not task:
                self.make_ready(other)
        while not self.aborting and not self._rest_has_ended():
            self._block(task)  # woken when a task ends, or by the abort's unwinding
        if self.aborting:
            raise RunAborted

    def _rest_has_ended(self) -> bool:
        reach = self.reach
        assert reach is not None, "wait_for_outcome needs a run that sets reach"
        spared: set[int] = set()
        for waiting in self.awaiting:
            spared |= reach(waiting.index)
        return all(t.done or t.index in spared for t in self.tasks)

    def time_slice(self, task: _Task) -> None:
        """The task has had the thread for a while: send its outputs, let others run."""
        for box in task.box_list:
            box.flush()
        if self.aborting:
            raise RunAborted
        if self.idle is not None:  # a busy graph must not starve run_inline's input
            idle, self.idle = self.idle, None
            self.make_ready(idle)
        now = _clock()  # nor a task whose sleep or wait is over (a source's due barrier)
        due = (self.sleepers and self.sleepers[0][0] <= now) or (
            self.timers and self.timers[0][0] <= now
        )
        if self.ready or due:
            self.make_ready(task)
            self._block(task)
            if self.aborting:
                raise RunAborted
        else:
            task.deadline[0] = _clock() + TIMESLICE_S

    def _next_batch(self, task: _Task, channel: Channel, timeout: float | None) -> Any:
        """The next batch of a task's input (see ``Channel.get``); it sends its outputs
        before it waits."""
        if not channel.batches:
            for box in task.box_list:
                box.flush()
        batch = channel.get(task.counters, timeout)
        if self.aborting and batch is not END:
            raise RunAborted
        return batch

    def _after_slice(self, task: _Task) -> None:
        """Between two input slices: give up the thread once the time slice is over."""
        if _clock() >= task.deadline[0]:
            self.time_slice(task)

    # ----------------------------------------------------------------- acknowledgements
    # ----------------------------------------------------------------- control
    def preempt_if_due(self) -> None:
        """Tell the running task that its time slice is over (from the watcher thread).

        A source then ends its slice at its next ``outp``; other nodes check the clock
        themselves between input slices. A stale read of ``current`` is harmless: a
        source told too early only sends a partial batch.
        """
        task = self.current
        if task is not None and _clock() >= task.deadline[0]:
            for box in task.box_list:
                box.preempt()

    def request_stop(self) -> None:
        """Sources end at their next ``outp`` (safe to call from any thread)."""
        self.stop_event.set()
        for task in self.tasks:
            if task.is_source:
                for box in task.box_list:
                    box.request_stop()

    def abort(self) -> None:
        """Every task ends at its next chance (safe to call from any thread)."""
        self.aborting = True
        self.stop_event.set()
        self.abort_event.set()
        for task in self.tasks:
            for box in task.box_list:
                box.abort()


class _TaskEvent(threading.Event):
    """A run's event that a node may wait on: inside a task of the run, cooperatively.

    Waited on inside a node of the run, the other nodes run meanwhile (see
    :meth:`_wait_in`); anywhere else, or once :meth:`detach` ed, it is a plain event.
    """

    def __init__(self, sched: Scheduler) -> None:
        super().__init__()
        self._sched: Scheduler | None = sched

    def detach(self) -> None:
        """The run has ended: from now on this is a plain event."""
        self._sched = None

    def wait(self, timeout: float | None = None) -> bool:
        sched = self._sched
        task = sched.current if sched is not None else None
        if (
            sched is None
            or task is None
            or sched.thread_id != threading.get_ident()
            or getcurrent() is sched.hub
        ):
            return super().wait(timeout)
        return self._wait_in(sched, task, timeout)

    def _wait_in(self, sched: Scheduler, task: _Task, timeout: float | None) -> bool:
        raise NotImplementedError


class _StopEvent(_TaskEvent):
    """The run's stop event, which ``NanoNode.sleep()`` waits on; a stop ends the wait."""

    def _wait_in(self, sched: Scheduler, task: _Task, timeout: float | None) -> bool:
        return sched.sleep(task, timeout)


class _AbortEvent(_TaskEvent):
    """The run's abort event, which a retry's back-off waits on; only an abort ends it."""

    def _wait_in(self, sched: Scheduler, task: _Task, timeout: float | None) -> bool:
        if timeout is None:  # waiting for the abort itself: nothing to do cooperatively
            return threading.Event.wait(self)
        return sched.pause(task, timeout)


class _FeedBox(Outbox):
    """Outbox of :func:`run_inline`'s input: each item goes through the graph at once."""

    def __init__(self, sched: Scheduler, task: _Task, channels: list[Channel]) -> None:
        super().__init__(channels, 1, task.counters)

        def outp(item: Any) -> None:
            if sched.aborting:
                raise RunAborted
            self._send([item])
            if sched.ready:  # let the graph handle it before reading the next one
                sched.idle = task
                sched._block(task)
                if sched.aborting:
                    raise RunAborted

        self.outp = outp

    def flush(self) -> None:
        """Nothing is buffered."""


def _feeder(inp: Iterable[Any]) -> Callable[[Iterable[Any], Callable[[Any], Any]], None]:
    def read_input(_: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        for item in inp:
            outp(item)

    return read_input
