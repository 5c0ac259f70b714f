"""The cooperative runner: every node function of a plan on one OS thread, as greenlets.

``global_start(runner="cooperative")`` runs the same :class:`~nanostream.Plan` as the
threaded runner, with the same end-of-stream, stop, abort and error semantics, but each node
function is a greenlet and a small scheduler (the *hub*, :mod:`nanostream.runners._hub`)
switches between them in one thread. A node gives up the thread only when it waits: for
input (its queue is empty), for room (a downstream queue is full: back-pressure), or when its
time slice is over. So **a blocking call inside one node (``time.sleep``, a socket read)
blocks the whole graph** until it returns; use the threaded runner for nodes that block.
``NanoNode.sleep()`` is the exception: inside a node it is cooperative, so polling sources
work here (the other nodes run while one sleeps, and ``stop()`` wakes it).

:func:`run_inline` runs a whole plan inside the *calling* thread as one node function would
(composite nodes use it for ``as_function()``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from .._core.acks import AckCoordinator, Marker
from .._core.graph import Plan
from .._core.monitor import Monitor
from .._core.run import NodeCounters, Run
from .._engine.node import EngineContext, LocalRun, inject_marker
from ._hub import ABANDONED, TIMESLICE_S, Scheduler

__all__ = ["CooperativeRun", "CooperativeRunner", "run_inline"]

log = logging.getLogger("nanostream")


# --------------------------------------------------------------------------- the runner
class CooperativeRun(LocalRun):
    """A pipeline running on :class:`CooperativeRunner`.

    Every node function runs in the run's thread ``nanostream-coop:<pipeline>``. A second
    thread, ``nanostream-coop-watch:<pipeline>``, runs no node code: it tells a source
    when its time slice is over and does the monitor's checks and logging (see
    :mod:`nanostream._core.monitor`). The run joins both.

    Example:
        >>> import nanostream
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> nanostream.from_iterable(range(5)) > sink
        Collect(name='sink')
        >>> run = sink.global_start(runner="cooperative", block=False)
        >>> type(run).__name__, run.wait(10), sink.items
        ('CooperativeRun', True, [0, 1, 2, 3, 4])
    """

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.threads: list[threading.Thread] = []  # no thread per node (for the monitor)
        self.sched = Scheduler(self._fail, watched=True)
        self.acks = self.sched.acks = AckCoordinator(plan, self._inject_marker)
        self.sched.add_plan(plan, self.counters)
        self.sched.reach = self.acks.routing.reach
        self.contexts = [
            EngineContext(
                pn,
                task.counters,
                self.acks,
                task.box_list,
                task.reader,
                abort_event=self.sched.abort_event,
                stop_event=self.sched.stop_event,  # inside a node, the others run meanwhile
                request_stop=self.request_stop,
                wait_for_outcome=partial(self.sched.wait_for_outcome, task),
            )
            for pn, task in zip(plan.nodes, self.sched.tasks, strict=True)
        ]
        tasks = self.sched.tasks
        self.channels = [task.channel for task in tasks]
        ends = self._install_checkpoints([t.box_list for t in tasks], [t.reader for t in tasks])
        for task, on_end in zip(tasks, ends, strict=True):
            task.on_end = on_end
        # NanoNode.sleep() waits on it: inside a node, the other nodes run meanwhile
        self.stop_event: threading.Event = self.sched.stop_event
        self.monitor = Monitor(self)  # its checks run in the watcher thread
        self.thread = threading.Thread(target=self._main, name=f"nanostream-coop:{plan.name}")
        self.watcher = threading.Thread(
            target=self._watch, name=f"nanostream-coop-watch:{plan.name}"
        )
        self._watch_done = threading.Event()
        self._parked: list[Any] = []
        self._joined = False

    @property
    def aborting(self) -> bool:
        """True once the run is aborting."""
        return self.sched.aborting

    def start(self) -> None:
        """Start the run's threads."""
        self._bind()
        self.watcher.start()
        self.thread.start()

    def _main(self) -> None:
        try:
            self.sched.run()
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - a scheduler bug
            self._fail(self.name, exc)
        finally:
            # Greenlets abandoned by the scheduler are released only once this thread
            # has ended (see _join), when releasing them runs no code.
            self._parked = self.sched.parked
            ABANDONED.extend(self._parked)
            self._watch_done.set()
            self._finish()

    def _watch(self) -> None:
        options = self.plan.options
        now = time.monotonic()
        next_check = now + options.monitor_interval
        next_log = now + options.log_interval
        while not self._watch_done.wait(TIMESLICE_S / 2):
            try:
                self.sched.preempt_if_due()
                now = time.monotonic()
                if now >= next_check and not self.aborting:
                    next_check = now + options.monitor_interval
                    self.monitor.check()
                if now >= next_log and not self.aborting:
                    next_log = now + options.log_interval
                    self.monitor.log_counts()
            except Exception:  # pragma: no cover - the watcher must never kill a run
                log.exception("nanostream cooperative watcher failed")

    def _inject_marker(self, source: int, marker: Marker, final: bool) -> bool:
        # Called in the run's thread only (by the source's outbox, or at its end).
        return inject_marker(self.sched.tasks[source].box_list, marker, final)

    def _on_stop(self) -> None:
        self.sched.request_stop()

    def _on_abort(self) -> None:
        self.sched.abort()

    def _join(self) -> None:
        if self._joined:
            return
        current = threading.current_thread()
        if self.watcher is not current:
            self.watcher.join()
        if self.thread is not current:
            self.thread.join()
            for g in self._parked:
                ABANDONED.remove(g)
            self._parked = []
            self.sched.parked = []
            self._joined = True

    def interrupt_stuck_nodes(self) -> None:
        """Nothing to do: a node ignoring an abort is abandoned when it next emits."""


class CooperativeRunner:
    """Runs every node function of a pipeline in one thread, as greenlets.

    Choose it with ``global_start(runner="cooperative")``. Results, end of stream, errors,
    ``stop()`` and ``stats()`` are the same as on the threaded runner; a blocking call in a
    node blocks the whole graph.

    Example:
        >>> import threading, nanostream
        >>> seen = set()
        >>> def where(inp, outp):
        ...     for x in inp:
        ...         seen.add(threading.current_thread().name)
        ...         outp(x * 10)
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([1, 2, 3], name="nums") > where > sink
        Collect(name=None)
        >>> sink.global_start(runner="cooperative", name="demo")
        >>> sink.items, seen
        ([10, 20, 30], {'nanostream-coop:demo'})
    """

    name = "cooperative"
    #: It takes checkpoints into a run's state store (``state=``, see docs/state.md).
    checkpoints = True
    #: Its checkpoints may be unaligned (``checkpoint_unaligned=True``).
    unaligned_checkpoints = True

    def start(self, plan: Plan) -> Run:
        """Start ``plan``; returns its run handle."""
        run = CooperativeRun(plan)
        run.start()
        return run


def run_inline(
    plan: Plan,
    inp: Iterable[Any],
    outp: Callable[[Any], Any],
    *,
    entries: Sequence[str] | None = None,
    exits: Sequence[str] | None = None,
) -> None:
    """Run a whole plan inside the calling thread, as if it were one node function.

    The plan's *entries* read ``inp``: by default the nodes that nothing feeds and that are
    not sources (a ``generator()`` source makes its own data). The plan's *exits* send their
    outputs to ``outp``: by default the nodes that feed nothing. ``entries`` and ``exits``
    name other nodes instead. ``inp`` is read to its end, as the node contract requires.
    Each value read from ``inp`` goes through the graph before the next one is read, so a
    slow ``inp`` does not hold earlier values back. ``TaggedOutput`` values an exit emits
    reach ``outp`` as they are, for the caller to route.

    It returns when every node has ended. If a node raises, the other nodes are aborted and
    the exception is raised from here, with a note naming the node; an exception from
    ``inp`` or ``outp`` is raised from here too. If ``outp`` raises
    :class:`~nanostream.SourceStopped` (the caller is a source being stopped), the plan's
    own sources are stopped and the rest drains.

    The nodes run as greenlets on the calling thread, like on the cooperative runner, so
    this works in a thread of the threaded runner, inside a greenlet, or in a
    ``canal.Graph`` node. Composite nodes use it for ``as_function()``.

    Example:
        >>> import nanostream
        >>> from nanostream.runners.cooperative import run_inline
        >>> def double(inp, outp):
        ...     for x in inp:
        ...         outp(2 * x)
        >>> def plus_one(inp, outp):
        ...     for x in inp:
        ...         outp(x + 1)
        >>> _ = nanostream.as_node(double) > nanostream.as_node(plus_one)
        >>> plan = nanostream.pipeline_of(nanostream.as_node(double)).plan()
        >>> out = []
        >>> run_inline(plan, [1, 2, 3], out.append)
        >>> out
        [3, 5, 7]
    """
    failure: list[tuple[str, BaseException]] = []

    def on_fail(name: str, exc: BaseException) -> None:
        if not failure:
            failure.append((name, exc))
        sched.abort()

    sched = Scheduler(on_fail, watched=False)
    counters = [NodeCounters() for _ in plan.nodes]
    for c in counters:
        c.state = "running"
    sched.add_plan(plan, counters, feed=inp, outp=outp, entries=entries, exits=exits)
    for pn in plan.nodes:  # the nodes keep their context; sleep() wakes when this stops
        context = pn.context()
        context.stop_event = sched.stop_event
        pn.bind(context)
    sched.run()
    # Abandoned greenlets live in this thread, which goes on: keep them (see ABANDONED).
    ABANDONED.extend(sched.parked)
    if failure:
        name, exc = failure[0]
        if name != "<input>":
            exc.add_note(f"(raised in node {name!r} of {plan.name!r}, run inline)")
        raise exc
