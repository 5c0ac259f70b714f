"""The commit thread of :class:`~nanostream.nodes.sql.SQLSink` on SQLite.

A commit on SQLite waits for the disk (its sync to the file), with the interpreter's lock
released. Run in a thread of its own, it lets the node's thread read and convert the next
batch meanwhile; the node collects each commit's outcome before it writes again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["CommitThread"]


class CommitThread:
    """One worker thread (a ``ThreadPoolExecutor`` of one) that runs one commit at a time
    for one node and one run.

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
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"nanostream-commit:{name}")
        self._future: Future[object] | None = None  # started and not collected by result()
        self._taken = threading.Event()  # the thread began the commit started last
        self._error: BaseException | None = None
        self._closed = False

    def start(self, commit: Callable[[], object]) -> None:
        """Run ``commit()`` in the thread; the one before must have been collected.

        It returns at once; the caller then calls :meth:`begun` soon (e.g. after its next
        slice of input), so that the commit begins then at the latest rather than when
        the caller next waits (a woken thread waits for the interpreter's lock, and the
        caller holds it while it computes).
        """
        if self._future is not None or self._closed:
            raise RuntimeError("CommitThread: a commit is running, or the thread is closed")
        taken = self._taken
        taken.clear()

        def job() -> object:
            taken.set()
            return commit()

        self._error = None
        self._future = self._pool.submit(job)

    def begun(self) -> None:
        """Wait until the thread has taken the commit started last (if not yet)."""
        if self._future is not None:
            self._taken.wait()

    def done(self) -> bool:
        """Whether the commit started last has ended (no wait); True if none was started."""
        return self._future is None or self._future.done()

    def result(self) -> BaseException | None:
        """Wait for the commit started last to end; what it raised, or None."""
        future, self._future = self._future, None
        if future is not None:
            self._error = future.exception()
        return self._error

    def run(self, call: Callable[[], object]) -> BaseException | None:
        """:meth:`start` ``call`` and return its :meth:`result`."""
        self.start(call)
        return self.result()

    def close(self) -> None:
        """Let a commit still running end (its outcome stays for :meth:`result`), then end
        and join the thread."""
        self._closed = True
        self._pool.shutdown(wait=True)
