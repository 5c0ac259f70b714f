"""What every runner shares: run options, the run handle's lifecycle, statistics."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .errors import NodeFailed
from .redact import exception_text

if TYPE_CHECKING:
    from .graph import Plan

__all__ = [
    "QUEUE_OPTIONS",
    "NodeCounters",
    "NodeStats",
    "Run",
    "RunOptions",
    "RunState",
    "check_queue_option",
    "downstream_names",
    "local_stats",
]

QUEUE_OPTIONS = ("queue_size", "batch_size", "queue_bytes")
"""The options that size a node's input queue and batches (per node and run-wide)."""


def check_queue_option(key: str, value: Any) -> str | None:
    """An error message if ``value`` is not valid for the queue option ``key``, else None.

    Example:
        >>> from nanostream._core.run import check_queue_option
        >>> check_queue_option("queue_bytes", 64 * 2**20) is None
        True
        >>> check_queue_option("queue_bytes", 0)
        'queue_bytes must be a positive integer (bytes), got 0'
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        unit = " (bytes)" if key == "queue_bytes" else ""
        return f"{key} must be a positive integer{unit}, got {value!r}"
    return None


log = logging.getLogger("nanostream")

RunState = Literal["running", "stopping", "finished", "failed", "aborted"]
NodeState = Literal["created", "running", "finished", "failed", "aborted"]


@dataclass(frozen=True)
class RunOptions:
    """Pipeline-wide options, given as keyword arguments to ``global_start()``.

    - ``queue_size``: capacity of each node's input queue, in items (default 8192).
    - ``queue_bytes``: capacity of each node's input queue in bytes, as well (default
      None: items only). Sizes are approximate (see :func:`~nanostream._engine.channel.item_size`);
      a producer waits while the queue is full, but one item always goes into an empty
      queue, however large.
    - ``batch_size``: most items moved between nodes in one batch (default 512).
    - ``monitor_interval``: seconds between the monitor's checks (default 1.0).
    - ``log_interval``: seconds between the monitor's per-node count lines (default 30.0).
    - ``stall_timeout``: seconds a node may wait on a full output queue, or work on one
      input slice, before the monitor warns about it by name (default 10.0).
    - ``drain_timeout``: seconds the graceful drain after SIGINT/SIGTERM may take before
      the run is aborted (default None: no limit).
    - ``state``: the run's state store, a file path (SQLite) or a SQLAlchemy URL (default
      None: no checkpoints). See docs/state.md.
    - ``checkpoint_interval``: seconds between checkpoints (default 5.0).
    - ``checkpoint_items``: a checkpoint also starts once a source has emitted this many
      items since the last one (default None: by time only).
    - ``checkpoint_unaligned``: whether a checkpoint's barriers overtake the items queued
      before them, which the checkpoint then keeps as items in flight (``True``), or follow
      them, so that a checkpoint waits behind a backlog (``False``). Default ``None``:
      unaligned where the runner can (threads, cooperative) and ``checkpoint_items`` is
      not set, else aligned; the run logs which. See docs/state.md.
    - ``drop_state``: start afresh the nodes whose stored state no longer fits (default
      False: that is a ``StateError``).
    - ``share_cores``: on the threads runner, whether the node threads that only compute
      share one core (docs/design.md, *Where the threads run*): ``None`` (default) while
      the machine has room, ``False`` never, ``True`` whatever the load (Linux with two
      cores or more). Refused on a runner that does not place threads.

    Example:
        >>> import nanostream
        >>> nanostream.RunOptions(queue_size=100).queue_size
        100
    """

    queue_size: int = 8192
    batch_size: int = 512
    queue_bytes: int | None = None
    monitor_interval: float = 1.0
    log_interval: float = 30.0
    stall_timeout: float = 10.0
    drain_timeout: float | None = None
    state: str | None = None
    checkpoint_interval: float = 5.0
    checkpoint_items: int | None = None
    checkpoint_unaligned: bool | None = None
    drop_state: bool = False
    share_cores: bool | None = None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RunOptions:
        """Options from keyword arguments; an unknown one is a ``GraphError``."""
        from .errors import GraphError

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise GraphError(
                f"unknown run option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if isinstance(kwargs.get("state"), os.PathLike):
            kwargs["state"] = os.fspath(kwargs["state"])
        opts = cls(**kwargs)
        for name in QUEUE_OPTIONS:
            value = getattr(opts, name)
            if value is None and name == "queue_bytes":
                continue
            problem = check_queue_option(name, value)
            if problem is not None:
                raise GraphError(problem)
        for name in ("monitor_interval", "log_interval", "stall_timeout", "drain_timeout"):
            seconds = getattr(opts, name)
            if seconds is None and name == "drain_timeout":
                continue
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                seconds_ok = False
            else:
                seconds_ok = seconds > 0  # False for NaN too
            if not seconds_ok:
                raise GraphError(f"{name} must be a number of seconds > 0, got {seconds!r}")
        check_checkpoint_options(opts)
        if opts.share_cores is not None and not isinstance(opts.share_cores, bool):
            raise GraphError(
                f"share_cores must be True, False or None (the default), got {opts.share_cores!r}"
            )
        return opts


def check_checkpoint_options(opts: RunOptions) -> None:
    """Raise ``GraphError`` unless the state and checkpoint options are usable."""
    from .errors import GraphError

    state = opts.state
    if state is not None and (not isinstance(state, str) or not state):
        raise GraphError(f"state must be a file path or a SQLAlchemy URL (a string), got {state!r}")
    every = opts.checkpoint_interval
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not every > 0:
        raise GraphError(f"checkpoint_interval must be a number of seconds > 0, got {every!r}")
    items = opts.checkpoint_items
    if items is not None and (isinstance(items, bool) or not isinstance(items, int) or items < 1):
        raise GraphError(f"checkpoint_items must be a whole number >= 1, got {items!r}")
    unaligned = opts.checkpoint_unaligned
    if unaligned is not None and not isinstance(unaligned, bool):
        raise GraphError(
            f"checkpoint_unaligned must be True, False or None (the default), got {unaligned!r}"
        )
    if unaligned and state is None:
        raise GraphError(
            "checkpoint_unaligned=True changes how checkpoints are taken, and a run without "
            "state= takes none: give the run a state store (state='run.state', --state), "
            "or drop checkpoint_unaligned"
        )


@dataclass(frozen=True)
class NodeStats:
    """A snapshot of one node's figures, from :meth:`Run.stats`.

    ``blocked_input_s`` is time spent waiting for input, ``blocked_output_s`` time spent
    waiting for room downstream (back-pressure).

    Example:
        >>> import nanostream
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> nanostream.from_iterable(range(10), name="src") > sink
        Collect(name='sink')
        >>> run = sink.global_start(block=False)
        >>> run.wait(10)
        True
        >>> s = run.stats()["src"]
        >>> (s.items_out, s.state, run.stats()["sink"].items_in)
        (10, 'finished', 10)
    """

    name: str
    state: NodeState
    items_in: int
    items_out: int
    errors: int
    queue_depth: int
    queue_capacity: int
    blocked_input_s: float
    blocked_output_s: float
    #: Approximate bytes of the items in its input queue, when it has a ``queue_bytes``
    #: budget (else 0), and that budget (else None).
    queue_depth_bytes: int = 0
    queue_capacity_bytes: int | None = None


class NodeCounters:
    """Mutable figures of one node, written only by the node's own thread."""

    __slots__ = (
        "blocked_input_s",
        "blocked_output_s",
        "busy_since",
        "errors",
        "items_in",
        "items_out",
        "output_wait_since",
        "state",
    )

    def __init__(self) -> None:
        self.items_in = 0
        self.items_out = 0
        self.errors = 0
        self.blocked_input_s = 0.0
        self.blocked_output_s = 0.0
        self.output_wait_since: float | None = None
        self.busy_since: float | None = None  # working on an input slice since (monotonic)
        self.state: NodeState = "created"


class Run:
    """The handle of a started pipeline: wait for it, stop it, read its statistics.

    A run moves ``running`` → (``stopping``) → ``finished`` | ``failed`` | ``aborted``.

    Example:
        >>> import nanostream, itertools
        >>> src = nanostream.from_iterable(itertools.count(), name="counter")
        >>> run = src.global_start(block=False)
        >>> run.state
        'running'
        >>> run.stop(timeout=10)
        >>> run.state, run.stats()["counter"].state
        ('finished', 'finished')
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self._state: RunState = "running"
        self._failure: NodeFailed | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self.interrupted_by: int | None = None

    # ----------------------------------------------------------------- public
    @property
    def state(self) -> RunState:
        """``running``, ``stopping``, ``finished``, ``failed`` or ``aborted``."""
        return self._state

    @property
    def done(self) -> bool:
        """True once every node of the run has ended and its threads are joined."""
        return self._done.is_set()

    @property
    def failure(self) -> NodeFailed | None:
        """The first node failure, or None."""
        return self._failure

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run ends; True if it ended, False on timeout.

        Raises :class:`~nanostream.NodeFailed` if a node failed.
        """
        if not self._done.wait(timeout):
            return False
        self._join()
        if self._failure is not None:
            raise self._failure
        return True

    def wait_interruptibly(self, *, drain_timeout: float | None = None) -> int | None:
        """Wait for the end; SIGINT or SIGTERM drains gracefully, a second one aborts.

        On the main thread it handles SIGINT and SIGTERM while it waits (signals set to be
        ignored stay ignored) and puts the previous handlers back after. The first signal
        stops the sources and lets everything already produced reach the sinks, running
        every ``cleanup()``; a second one aborts at once; ``drain_timeout`` seconds of
        draining also abort. Returns the number of the signal that stopped the run (also
        kept in :attr:`interrupted_by`), or None if the run ended by itself. Raises
        :class:`~nanostream.NodeFailed` if a node failed. ``global_start(block=True)``
        waits this way, with the handlers installed before the run starts (so a signal
        that comes as the first nodes start drains the run too).

        Example:
            >>> import nanostream
            >>> run = nanostream.from_iterable(range(3)).global_start(block=False)
            >>> run.wait_interruptibly() is None
            True
        """
        received: list[int] = []
        with signals_recorded(received.append) as handling:
            return self._wait_recorded(received, handling, drain_timeout)

    def _wait_recorded(
        self, received: list[int], handling: bool, drain_timeout: float | None
    ) -> int | None:
        """:meth:`wait_interruptibly` with the signals ``signals_recorded`` puts in
        ``received`` (some may have come before the run started)."""
        poll = _SIGNAL_POLL_S if handling else None
        handled = 0
        deadline: float | None = None
        while True:
            while handled < len(received):
                signum = received[handled]
                handled += 1
                if handled == 1:
                    self.interrupted_by = signum
                    log.warning(
                        "%s: stopping pipeline %r; draining (send it again to abort)",
                        signal.Signals(signum).name,
                        self.name,
                    )
                    self.request_stop()
                    if drain_timeout is not None:
                        deadline = time.monotonic() + drain_timeout
                else:
                    log.warning(
                        "%s again: aborting pipeline %r; items in flight are lost",
                        signal.Signals(signum).name,
                        self.name,
                    )
                    self.abort()
            if deadline is not None and time.monotonic() >= deadline:
                log.warning(
                    "pipeline %r did not drain within %ss: aborting", self.name, drain_timeout
                )
                deadline = None
                self.abort()
            try:
                if self.wait(poll if deadline is None else _SIGNAL_POLL_S):
                    break
            except KeyboardInterrupt:
                received.append(signal.SIGINT)
        return self.interrupted_by

    def exit_code(self, *, signal_codes: bool = False) -> int:
        """The process exit status this run calls for (for command-line programs).

        1 if a node failed; ``128 + signal`` if a signal stopped the run and
        ``signal_codes`` is true, or a second signal aborted it (130 for SIGINT, 143 for
        SIGTERM); otherwise 0, also after a complete graceful drain.

        Example:
            >>> import nanostream
            >>> run = nanostream.from_iterable(range(3)).global_start(block=False)
            >>> run.wait(10), run.exit_code()
            (True, 0)
        """
        if self._failure is not None:
            return 1
        signum = self.interrupted_by
        if signum is not None and (signal_codes or self._state == "aborted"):
            return 128 + int(signum)
        return 0

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: sources stop, what they produced drains to the sinks, cleanups run.

        Blocks until the run has ended. If ``timeout`` seconds pass first, the run is
        aborted. Raises :class:`~nanostream.NodeFailed` if a node failed.
        """
        self.request_stop()
        if not self.wait(timeout):
            log.warning("pipeline %r did not drain within %ss: aborting", self.name, timeout)
            self.abort()
            self.wait()

    def request_stop(self) -> None:
        """Ask the sources to stop, without waiting (see :meth:`stop`)."""
        with self._lock:
            if self._state != "running":
                return
            self._state = "stopping"
        self._on_stop()

    def abort(self) -> None:
        """Stop at once, without draining; blocks until every thread has ended."""
        with self._lock:
            if self._done.is_set():
                return
            if self._state in ("running", "stopping"):
                self._state = "aborted"
        self._on_abort()
        self._done.wait()
        self._join()

    def stats(self) -> dict[str, NodeStats]:
        """Per-node figures, keyed by node name (see :class:`NodeStats`)."""
        raise NotImplementedError

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the run ends (at once if it has ended)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    # ----------------------------------------------------------------- for runners
    def _fail(self, node: str, exc: BaseException) -> None:
        """Record a node failure (the first one wins) and abort the rest of the run."""
        with self._lock:
            if self._failure is None:
                self._failure = NodeFailed(node, exc)
                self._state = "failed"
                first = True
            else:
                first = False
        if first:
            log.error("node %r failed: %s", node, exception_text(exc))
            self._on_abort()

    def _finish(self) -> None:
        """Called by the runner when every node has ended."""
        with self._lock:
            if self._state in ("running", "stopping"):
                self._state = "finished"
            self.finished_at = time.monotonic()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # pragma: no cover - defensive
                log.exception("run callback failed")
        self._done.set()

    def _on_stop(self) -> None:
        raise NotImplementedError

    def _on_abort(self) -> None:
        raise NotImplementedError

    def _join(self) -> None:
        """Join the run's threads (called once the run is done)."""


# While a run waits on the main thread, it looks at received signals this often.
_SIGNAL_POLL_S = 0.05


@contextmanager
def signals_recorded(record: Callable[[int], Any]) -> Iterator[bool]:
    """On the main thread, make SIGINT and SIGTERM call ``record(signum)`` for a while.

    Yields whether any handler was installed. Signals that are ignored (``SIG_IGN``) stay
    ignored; the previous handlers are put back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return

    def handler(signum: int, frame: Any) -> None:
        record(signum)

    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue
                previous[signum] = signal.signal(signum, handler)
            except (ValueError, OSError):  # pragma: no cover - e.g. an embedded interpreter
                continue
        yield bool(previous)
    finally:
        for number, old in previous.items():
            signal.signal(number, old if old is not None else signal.SIG_DFL)


class _Queue(Protocol):
    capacity: int
    capacity_bytes: int | None

    def depth(self) -> int: ...

    def depth_bytes(self) -> int: ...


def local_stats(
    plan: Plan, counters: Sequence[NodeCounters], queues: Sequence[_Queue | None]
) -> dict[str, NodeStats]:
    """``Run.stats()`` of a run in this process: each node's counters and input queue."""
    result = {}
    for pn in plan.nodes:
        c = counters[pn.index]
        queue = queues[pn.index]
        result[pn.name] = NodeStats(
            name=pn.name,
            state=c.state,
            items_in=c.items_in,
            items_out=c.items_out,
            errors=c.errors,
            queue_depth=queue.depth() if queue is not None else 0,
            queue_capacity=queue.capacity if queue is not None else 0,
            blocked_input_s=c.blocked_input_s,
            blocked_output_s=c.blocked_output_s,
            queue_depth_bytes=queue.depth_bytes() if queue is not None else 0,
            queue_capacity_bytes=queue.capacity_bytes if queue is not None else None,
        )
    return result


def downstream_names(plan: Plan, index: int) -> list[str]:
    """Names of the nodes fed by node ``index`` of ``plan`` (for the monitor's messages)."""
    pn = plan.nodes[index]
    return [plan.nodes[t].name for ts in pn.outputs.values() for t in ts]
