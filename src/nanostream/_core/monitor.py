"""The monitor: a thread per run that watches node threads and queues and logs problems.

It logs to the ``nanostream`` logger:

- ``WARNING`` when a node has waited more than ``stall_timeout`` seconds for room in a full
  downstream queue, naming the downstream node as the bottleneck (once per stall);
- ``WARNING`` when a node has worked on one input slice for more than ``stall_timeout``
  seconds (it may be blocked for good), naming it and the line its thread is at (once per
  stall);
- ``ERROR`` when a node's thread has died while the node was still marked running;
- ``INFO`` every ``log_interval`` seconds, one line of per-node counts.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .graph import Plan
    from .run import NodeCounters, NodeStats

__all__ = ["Monitor", "RunThread"]

log = logging.getLogger("nanostream")

# After an abort, node threads get this long to notice before they are interrupted.
ABORT_GRACE_S = 0.5


class _Watched(Protocol):
    name: str
    plan: Plan
    counters: list[NodeCounters]
    threads: list[threading.Thread]

    @property
    def aborting(self) -> bool: ...

    def stats(self) -> dict[str, NodeStats]: ...

    def interrupt_stuck_nodes(self) -> None: ...

    def downstream_names(self, index: int) -> list[str]: ...


class RunThread:
    """A thread of a run's own, beside its nodes: the run starts it, asks it to end
    (:meth:`finish`: ``_done`` is set) and joins it; ``name`` is the thread's."""

    _main: Callable[[], None]  # what the thread runs: each subclass's

    def __init__(self, name: str) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name)
        self._started = False

    def start(self) -> None:
        """Start the thread."""
        self._started = True
        self._thread.start()

    def finish(self) -> None:
        """Ask the thread to end (the run has ended); safe to call from any thread."""
        self._done.set()

    def join(self) -> None:
        """Wait for the thread to end (if it started, and from any other thread)."""
        if self._started and self._thread is not threading.current_thread():
            self._thread.join()


class Monitor(RunThread):
    """Watches one run; started and joined by the run itself."""

    def __init__(self, run: _Watched) -> None:
        super().__init__(f"nanostream-monitor:{run.name}")
        self.run = run
        self.options = run.plan.options
        self._warned_stall: set[int] = set()
        self._warned_dead: set[int] = set()
        self._warned_busy: dict[int, float] = {}

    def _main(self) -> None:
        interval = self.options.monitor_interval
        next_log = time.monotonic() + self.options.log_interval
        abort_seen: float | None = None
        while not self._done.wait(min(interval, ABORT_GRACE_S) if abort_seen is None else 0.05):
            try:
                if self.run.aborting:
                    now = time.monotonic()
                    if abort_seen is None:
                        abort_seen = now
                    elif now - abort_seen >= ABORT_GRACE_S:
                        self.run.interrupt_stuck_nodes()
                    continue
                self.check()
                now = time.monotonic()
                if now >= next_log:
                    next_log = now + self.options.log_interval
                    self.log_counts()
            except Exception:  # pragma: no cover - the monitor must never kill a run
                log.exception("nanostream monitor failed")

    def check(self) -> None:
        """One round of checks (public so tests can call it directly)."""
        run = self.run
        now = time.monotonic()
        for pn in run.plan.nodes:
            counters = run.counters[pn.index]
            since = counters.output_wait_since
            if since is not None and now - since >= self.options.stall_timeout:
                if pn.index not in self._warned_stall:
                    self._warned_stall.add(pn.index)
                    stats = run.stats()
                    full = [
                        f"{name} ({stats[name].queue_depth}/{stats[name].queue_capacity})"
                        for name in run.downstream_names(pn.index)
                    ]
                    self._log(pn.name).warning(
                        "node %r has waited %.1fs for room downstream; bottleneck: %s",
                        pn.name,
                        now - since,
                        ", ".join(full),
                        extra=self._figures(pn.name, seconds=now - since, bottleneck=full),
                    )
            elif since is None:
                self._warned_stall.discard(pn.index)
            thread = run.threads[pn.index] if pn.index < len(run.threads) else None
            busy = counters.busy_since
            if (
                busy is not None
                and since is None
                and counters.state == "running"
                and now - busy >= self.options.stall_timeout
                and self._warned_busy.get(pn.index) != busy
            ):
                self._warned_busy[pn.index] = busy
                self._log(pn.name).warning(
                    "node %r has been working on one input slice for %.1fs (stall_timeout="
                    "%ss); it may be blocked%s",
                    pn.name,
                    now - busy,
                    self.options.stall_timeout,
                    _location(thread),
                    extra=self._figures(pn.name, seconds=now - busy),
                )
            if (
                thread is not None
                and counters.state == "running"
                and thread.ident is not None
                and not thread.is_alive()
                and pn.index not in self._warned_dead
            ):
                self._warned_dead.add(pn.index)
                self._log(pn.name).error(
                    "the thread of node %r has died while the node was running",
                    pn.name,
                    extra=self._figures(pn.name),
                )

    def _log(self, node: str) -> logging.Logger:
        """The logger of one node: ``nanostream.<pipeline>.<node>``."""
        return logging.getLogger(f"nanostream.{self.run.name}.{node}")

    def _figures(self, node: str, **figures: object) -> dict[str, object]:
        """``extra=`` for a warning: the pipeline, the node and the figures behind it."""
        rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
        return {"pipeline": self.run.name, "node": node, **rounded}

    def log_counts(self) -> None:
        """Log one line of per-node counts at INFO."""
        parts = [
            f"{s.name}: in={s.items_in} out={s.items_out} q={s.queue_depth}/{s.queue_capacity}"
            for s in self.run.stats().values()
        ]
        log.info("pipeline %r: %s", self.run.name, "; ".join(parts))


_ENGINE_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(__file__)), d) + os.sep
    for d in ("_core", "runners")
)


def _location(thread: threading.Thread | None) -> str:
    """``: at FILE:LINE in FUNC`` for where ``thread`` is now (its innermost user frame)."""
    if thread is None or thread.ident is None:
        return ""
    frame = sys._current_frames().get(thread.ident)
    if frame is None:
        return ""
    stack = traceback.extract_stack(frame)
    del frame
    stdlib = sysconfig.get_paths()["stdlib"]
    user = next(
        (f for f in reversed(stack) if not f.filename.startswith((stdlib, *_ENGINE_DIRS))),
        None,
    )
    inner = stack[-1]
    parts = []
    if user is not None:
        parts.append(f"at {user.filename}:{user.lineno} in {user.name}")
    if user is not inner:
        parts.append(f"now in {inner.filename}:{inner.lineno} in {inner.name}")
    return ": " + ", ".join(parts) if parts else ""
