"""The commit thread of :class:`~nanostream.nodes.sql.SQLSink` on SQLite.

A commit on SQLite waits for the disk (its sync to the file), with the interpreter's lock
released. Run in a thread of its own, it lets the node's thread read and convert the next
batch meanwhile; the node collects each commit's outcome before it writes again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["CommitThread"]


class CommitThread:
    """A thread that runs one commit at a time for one node and one run.

    :meth:`start` hands it a commit (a function) once the one before was collected;
    :meth:`result` waits for it to end and returns the exception it raised (None: it
    committed); :meth:`close` lets a commit still running end and joins the thread. The
    node that owns it calls them from its own thread, one at a time.

    Example:
        >>> from nanostream.connectors.sql._commits import CommitThread
        >>> commits = CommitThread("example")
        >>> commits.start(lambda: None)
        >>> commits.result() is None
        True
        >>> def full():
        ...     raise OSError("disk full")
        >>> commits.run(full)
        OSError('disk full')
        >>> commits.close()
    """

    def __init__(self, name: str) -> None:
        # Three locks used as signals (each released by one side, taken by the other):
        # a job is there; the thread took it; it ended.
        self._go = threading.Lock()
        self._taken = threading.Lock()
        self._ended = threading.Lock()
        for lock in (self._go, self._taken, self._ended):
            lock.acquire()
        self._job: Callable[[], object] | None = None
        self._error: BaseException | None = None
        self._running = False  # started and not collected by result()
        self._handed = False  # started and not known to be taken (begun)
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=f"nanostream-commit:{name}")
        self._thread.start()

    def start(self, commit: Callable[[], object]) -> None:
        """Run ``commit()`` in the thread; the one before must have been collected.

        It returns at once; the caller then calls :meth:`begun` soon (e.g. after its next
        slice of input), so that the commit begins then at the latest rather than when
        the caller next waits (a woken thread waits for the interpreter's lock, and the
        caller holds it while it computes).
        """
        if self._running or self._closed:
            raise RuntimeError("CommitThread: a commit is running, or the thread is closed")
        self._running = self._handed = True
        self._error = None
        self._job = commit
        self._go.release()

    def begun(self) -> None:
        """Wait until the thread has taken the commit started last (if not yet)."""
        if self._handed:
            self._taken.acquire()
            self._handed = False

    def done(self) -> bool:
        """Whether the commit started last has ended (no wait); True if none was started."""
        return not self._running or not self._ended.locked()

    def result(self) -> BaseException | None:
        """Wait for the commit started last to end; what it raised, or None."""
        if self._running:
            self.begun()
            self._ended.acquire()
            self._running = False
        return self._error

    def run(self, call: Callable[[], object]) -> BaseException | None:
        """:meth:`start` ``call`` and return its :meth:`result`."""
        self.start(call)
        return self.result()

    def close(self) -> None:
        """Let a commit still running end (its outcome stays for :meth:`result`), then end
        and join the thread."""
        if self._closed:
            return
        if self._running:
            self.begun()
            self._ended.acquire()
            self._ended.release()  # result() takes it
        self._closed = True
        self._go.release()
        self._thread.join()

    def _main(self) -> None:
        while True:
            self._go.acquire()
            job, self._job = self._job, None
            if job is None:
                return  # closed
            self._taken.release()
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - handed to the node's thread, raised there
                self._error = exc
            self._ended.release()
