"""Where the threads runner's node threads run: the nodes that compute share one core.

Under the GIL only one thread runs Python at a time, so node threads that only compute
gain nothing from a second core; they lose by it: each item made by one thread is read
and freed by the next one on the other core, and its cache lines cross between the cores
at every edge (see docs/design.md, *Performance*). Threads that share one core hand their
items over in that core's cache, as one thread would.

:class:`CoreSharing` decides while the run goes, from what each node thread does (Linux:
each thread's CPU clock, read with the clock of the sampling thread right after it; a
read never waits, so a sample is not stretched by waiting for the GIL, as reading a file
under ``/proc`` would be). Every node keeps its own thread; only where the kernel runs the
thread changes:

- node threads that use the CPU (at least ``COMPUTING`` of a core each) while together
  they use no more than ``GIL_BOUND`` cores (they take turns: Python under the GIL) are
  placed on one core, the one the busiest of them is on;
- a node thread that waits (a socket, a disk, a sleep) uses little CPU: it keeps every
  core; and whatever core it is on, it waits in parallel with the others as before;
- only while the machine has room: when the other processes alone keep every core busy
  (the load average over the last minute, less what the run's own node threads are using
  now, is at least one runnable task per core), a thread that may run on any core gets a
  turn sooner than one that must wait for its own. The run's own threads do not count:
  a group that takes turns under the GIL adds about one runnable task itself, so counting
  it made one other busy process on two cores look like a full machine, although that is
  where sharing helps most (the group on one core, the other process on the other);
- when the threads on the shared core get less CPU than they had before they shared it
  (less than ``STARVED`` of it, counting at most one core, all that one core can give:
  another process holds that core, or they would compute in parallel with the GIL
  released), every thread gets every core back, and sharing is tried again only after a
  back-off that doubles each time.

A thread that a node thread on the shared core starts (a pool of its own, a library's
workers) inherits that one core from it; at each check, every thread of the process
started since the sharing began that is bound to that core alone, and is not a shared
node thread, gets every core back.

It checks soon after the start (``FIRST_CHECK_S``), then less often, up to every
``MAX_CHECK_S`` (a check reads a clock per node thread: microseconds), so that nodes that
begin to compute late in a run are placed soon. Elsewhere than on Linux, or where a
thread's placement cannot be set, it does nothing. The run option ``share_cores``
(:class:`~nanostream.RunOptions`) turns it off (``False``) or lets it share a core
whatever the load average (``True``); ``None``, the default, is the rule above.

A node thread is placed (``os.sched_setaffinity`` on its id) only while the run's
``hold(i)`` is held and says that thread has not reached its exit: the thread cannot end
meanwhile, so its id cannot have been given to another thread, here or in another
process. Not a public API.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from .._core.monitor import RunThread

__all__ = [
    "COMPUTING",
    "GIL_BOUND",
    "STARVED",
    "CoreSharing",
    "Sample",
    "Hold",
    "choose_shared",
    "supported",
]

log = logging.getLogger("nanostream")

#: A node thread using at least this share of a core computes.
COMPUTING = 0.05
#: Computing threads using more cores than this together run in parallel: leave them spread.
GIL_BOUND = 1.2
#: Threads on the shared core getting less than this share of the CPU time they had
#: before they shared it are starved there: spread them again.
STARVED = 0.8
FIRST_CHECK_S = 0.01
#: The longest time between two checks: a run whose nodes start computing late (a Kafka
#: source after its group's join, a folder's first file) is placed within this.
MAX_CHECK_S = 0.04
#: How long sharing is not tried again after a contended core (doubles each time).
FIRST_BACKOFF_S = 1.0

_TASKS = "/proc/self/task"
SUPPORTED = hasattr(os, "sched_setaffinity") and os.path.isdir(_TASKS)

#: ``hold(i)``: a context in which node thread ``i`` cannot end; it gives True if the
#: thread has started and not reached its exit.
Hold = Callable[[int], AbstractContextManager[bool]]


def supported() -> bool:
    """True where node threads can be placed: Linux, and two cores or more for the process.

    Example:
        >>> from nanostream.runners._placement import supported
        >>> isinstance(supported(), bool)
        True
    """
    return SUPPORTED and len(os.sched_getaffinity(0)) >= 2


@contextmanager
def _alive(thread: threading.Thread) -> Iterator[bool]:
    """The hold of a thread without an exit guard: only whether it is alive now."""
    yield thread.native_id is not None and thread.is_alive()


@dataclass(frozen=True)
class Sample:
    """What one thread did over the last interval, as shares of the interval's length."""

    cpu: float  # running on a core


def choose_shared(samples: dict[int, Sample]) -> frozenset[int]:
    """The threads (by key) to place on one core, from a sample of every unshared thread.

    The threads that compute, if there are two or more and together they use no more
    than ``GIL_BOUND`` cores; else none.

    Example:
        >>> from nanostream.runners._placement import Sample, choose_shared
        >>> sorted(choose_shared({0: Sample(0.4), 1: Sample(0.5), 2: Sample(0.01)}))
        [0, 1]
        >>> sorted(choose_shared({0: Sample(0.9), 1: Sample(0.9)}))  # in parallel
        []
    """
    computing = {key for key, s in samples.items() if s.cpu >= COMPUTING}
    if len(computing) < 2 or sum(samples[k].cpu for k in computing) > GIL_BOUND:
        return frozenset()
    return frozenset(computing)


def _thread_clock(tid: int) -> int:
    """The id of the CPU-time clock of this process's thread ``tid`` (its native id).

    Linux encodes a thread's clock id from its id as ``glibc``'s
    ``pthread_getcpuclockid`` does: ``~tid << 3 | 6`` (per thread, scheduler time).
    """
    return (~tid << 3) | 6


def _cpu_ns(tid: int) -> int | None:
    """A thread's CPU time so far, in ns; None once it has ended (or for a thread of
    another process: the kernel answers only for the caller's own threads).

    A clock read, which never releases the GIL: the value and the time it is read at
    are a moment apart, however busy the other threads are.
    """
    try:
        return time.clock_gettime_ns(_thread_clock(tid))
    except OSError:
        return None


def _current_cpu(tid: int) -> int | None:
    """The core a thread ran on last."""
    try:
        with open(f"{_TASKS}/{tid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def _task_ids() -> list[int]:
    """The ids of the process's threads now."""
    try:
        return [int(name) for name in os.listdir(_TASKS)]
    except (OSError, ValueError):
        return []


class CoreSharing(RunThread):
    """Places a run's computing node threads on one core while the run goes (see above).

    ``threads`` are the run's node threads; it starts its own thread
    (``nanostream-placement:<run>``), which :meth:`finish` ends and :meth:`join` joins.
    ``shared`` holds the indices of the threads on the shared core now, ``core`` that
    core.
    """

    def __init__(
        self,
        threads: Sequence[threading.Thread],
        name: str,
        *,
        share: bool | None = None,
        hold: Hold | None = None,
    ) -> None:
        super().__init__(f"nanostream-placement:{name}")
        self.threads = threads
        self.shared: frozenset[int] = frozenset()
        self.core: int | None = None
        self.share = share
        self.hold: Hold = hold if hold is not None else (lambda i: _alive(self.threads[i]))
        self.enabled = SUPPORTED and share is not False
        self._all_cores: set[int] = os.sched_getaffinity(0) if SUPPORTED else set()
        if len(self._all_cores) < 2:
            self.enabled = False
        self._last: dict[int, tuple[int, float]] = {}  # each thread's CPU time and when
        self._before = 0.0  # the CPU the shared threads used before they shared a core
        self._backoff = FIRST_BACKOFF_S
        self._not_before = 0.0
        self._older: set[int] | None = None  # the process's threads when sharing began
        self.clock: Callable[[], float] = time.monotonic

    def start(self) -> None:
        """Start watching (after the node threads have started)."""
        if self.enabled:
            super().start()

    def _main(self) -> None:
        interval = FIRST_CHECK_S
        self._sample()
        while not self._done.wait(interval):
            try:
                self.step()
            except Exception:  # pragma: no cover - placement must never harm a run
                log.exception("nanostream thread placement failed")
                self._spread(self.shared)
                return
            interval = min(MAX_CHECK_S, interval * 2)
        self.free_inherited()  # a pool a node started may outlive the run
        self.shared = frozenset()

    def _sample(self) -> dict[int, Sample]:
        """Each live node thread's sample since the last call.

        Each thread's interval is timed by itself (the clock is read right after its CPU
        time), so a pause of this thread between two reads stretches no thread's share. A
        thread's clock is read inside its ``hold``, as it is placed: one that has reached
        its exit is not sampled (its id may already be another thread's of this process).
        """
        clock = self.clock
        samples: dict[int, Sample] = {}
        for i, thread in enumerate(self.threads):
            with self.hold(i) as running:
                tid = thread.native_id
                if not running or tid is None:
                    continue
                cpu = _cpu_ns(tid)
            now = clock()
            if cpu is None:
                continue
            last = self._last.get(i)
            self._last[i] = (cpu, now)
            if last is not None and now > last[1]:
                samples[i] = Sample((cpu - last[0]) * 1e-9 / (now - last[1]))
        return samples

    def busy_machine(self, own: float = 0.0) -> bool:
        """True when the other processes alone want every core: the load average less
        ``own`` (the cores the run's node threads use now) is at least one runnable task
        per core (never with ``share=True``)."""
        return self.share is None and os.getloadavg()[0] - own >= len(self._all_cores)

    def step(self) -> None:
        """One check: share a core, widen the group, or spread the threads again."""
        samples = self._sample()
        busy = self.busy_machine(sum(s.cpu for s in samples.values()))
        if self.shared:
            self.free_inherited()
            used = sum(s.cpu for i, s in samples.items() if i in self.shared)
            if busy or used < STARVED * min(self._before, 1.0):
                self._spread(self.shared)
                self._not_before = self.clock() + self._backoff
                self._backoff *= 2
                return
            joining = choose_shared(
                {i: s for i, s in samples.items() if i not in self.shared}
                | {i: Sample(COMPUTING) for i in self.shared}
            )
            added = joining - self.shared
            self._before += sum(samples[i].cpu for i in added)
            self._place(added)
            return
        if busy or self.clock() < self._not_before:
            return
        chosen = choose_shared(samples)
        if not chosen:
            return
        busiest = max(chosen, key=lambda i: samples[i].cpu)
        tid = self.threads[busiest].native_id
        core = _current_cpu(tid) if tid is not None else None
        if core is None or core not in self._all_cores:
            return
        self.core = core
        self._before = sum(samples[i].cpu for i in chosen)
        self._place(chosen)

    def free_inherited(self) -> None:
        """Give every core back to the threads that inherited the shared one."""
        if self.core is None or self._older is None:
            return
        ours = {self.threads[i].native_id for i in self.shared}
        for tid in _task_ids():
            if tid in self._older or tid in ours:
                continue
            try:
                if os.sched_getaffinity(tid) == {self.core}:
                    os.sched_setaffinity(tid, self._all_cores)
            except OSError:
                continue  # it has ended

    def _place(self, indices: frozenset[int]) -> None:
        assert self.core is not None
        if self._older is None:
            self._older = set(_task_ids())
        placed = {i for i in indices if self._set_cores(i, {self.core})}
        self.shared = self.shared | placed

    def _spread(self, indices: frozenset[int]) -> None:
        for i in indices:
            self._set_cores(i, self._all_cores)
        self.free_inherited()
        self.shared = self.shared - indices

    def _set_cores(self, i: int, cores: set[int]) -> bool:
        """Place node thread ``i`` on ``cores``, unless it has ended; True if placed."""
        with self.hold(i) as running:
            tid = self.threads[i].native_id
            if not running or tid is None:
                return False
            try:
                os.sched_setaffinity(tid, cores)
            except OSError:
                return False
            return True
