"""A source's progress, committed only once the pipeline is done with its items.

A source that remembers how far it got (a ledger of files, an incremental value, stream
entries to acknowledge) records an item as done on *acknowledgement*, not on emission:
see ``nanostream.Acked`` and docs/reliability.md. :class:`AckedProgress` is the part such
sources share. Acks come from any of the pipeline's threads, in emission order, and may
keep coming after the source's generator has ended (while the run drains); some never come
(an aborted run, a runner without acknowledgements), and then nothing is committed, so a
restarted source delivers those items again.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

__all__ = ["AckedProgress"]

log = logging.getLogger("nanostream")

T = TypeVar("T")


class AckedProgress(Generic[T]):
    """Values acknowledged by the pipeline, committed in order, from whichever thread.

    For each item it emits, a source yields ``Acked(item, progress.ack(value))``. When the
    pipeline acknowledges the item, ``value`` joins the acknowledged values, and those are
    committed — ``commit(values)``, in acknowledgement order, never two at once, so
    ``commit`` needs no locking of its own but must not use a resource that only the
    source's thread may touch; no lock is held while it runs, so a slow commit holds up
    neither the source handing out acks nor the acks themselves (an ack that comes while
    another thread commits adds its value to the next commit) —

    - by the ack itself, once ``interval`` seconds have passed since the last commit
      (``0``: at every ack);
    - when the source calls :meth:`commit` (between two items, say);
    - when the source ends (:meth:`finish`), and after the last outstanding ack: then
      ``close()`` runs, after the last commit. If some acks never come, ``close()`` runs
      when this object is garbage collected.

    A commit that fails keeps its values for the next one; it is logged, or raised when
    the source called :meth:`commit`.

    Example:
        >>> import nanostream
        >>> from nanostream.connectors._acked_progress import AckedProgress
        >>> committed = []
        >>> class Numbers(nanostream.NanoNode):
        ...     def generator(self):
        ...         progress = AckedProgress(committed.extend, name="numbers")
        ...         try:
        ...             for i in range(3):
        ...                 yield nanostream.Acked(i, progress.ack(i))
        ...         finally:
        ...             progress.finish()
        >>> sink = nanostream.testing.Collect()
        >>> Numbers() > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> committed
        [0, 1, 2]
    """

    def __init__(
        self,
        commit: Callable[[Sequence[T]], object],
        *,
        close: Callable[[], object] | None = None,
        interval: float = 0.0,
        name: str = "source",
    ) -> None:
        self._commit_values = commit
        self.interval = interval
        self.name = name
        # ``_lock`` guards the counts and the values waiting; ``_committing`` is held by
        # the one thread committing, from taking the values to the outcome, so commits go
        # one at a time and in order while acks and the source go on. Whoever takes both
        # takes ``_committing`` first.
        self._lock = threading.Lock()
        self._committing = threading.Lock()
        self._done: list[T] = []
        self._outstanding = 0
        self._finished = False
        self._closed = False
        self._last = time.monotonic()
        self._close = weakref.finalize(self, close) if close is not None else None
        self.committed = 0

    @property
    def outstanding(self) -> int:
        """Acks handed out and not called yet."""
        with self._lock:
            return self._outstanding

    def ack(self, value: T) -> Callable[[], None]:
        """The acknowledgement of an item about to be emitted; it commits ``value``."""
        with self._lock:
            self._outstanding += 1
        return partial(self._acked, value)

    def done(self, value: T) -> None:
        """Count ``value`` as acknowledged now (an entry the source skips, say)."""
        with self._lock:
            self._done.append(value)

    def commit(self) -> None:
        """Commit what has been acknowledged so far, if anything (the source's thread).

        Unlike the commits acks make (which log a failure and go on), a failure here
        raises, so that a source that cannot commit its progress stops with the reason.
        A commit already under way (an ack's) is waited for first.
        """
        with self._committing:
            self._commit(raise_errors=True)

    def finish(self) -> None:
        """The source has ended: commit now, and again (then close) after the last ack."""
        with self._lock:
            self._finished = True
            last = self._outstanding == 0
        with self._committing:
            if last:
                self._end()
            else:
                self._commit()

    def _acked(self, value: T) -> None:
        with self._lock:
            self._outstanding -= 1
            self._done.append(value)
            last = self._finished and self._outstanding == 0
            due = time.monotonic() - self._last >= self.interval
        if last:
            with self._committing:  # after a commit under way: the last one, then close
                self._end()
        elif due and self._committing.acquire(blocking=False):
            # (with a commit under way, this value goes with the one after it)
            try:
                while self._commit() and self._due():
                    pass  # values acknowledged while it committed, and due already
            finally:
                self._committing.release()

    def _due(self) -> bool:
        with self._lock:
            return bool(self._done) and time.monotonic() - self._last >= self.interval

    def _commit(self, *, raise_errors: bool = False) -> bool:
        """Commit the values waiting (the caller holds ``_committing``, not ``_lock``)."""
        with self._lock:
            values = self._done
            if not values or self._closed:
                return True
            self._done = []
            self._last = time.monotonic()
        try:
            self._commit_values(values)
        except Exception as exc:
            with self._lock:
                self._done = values + self._done  # they wait for the next commit
            if raise_errors:
                raise
            log.warning(
                "%s could not commit its progress (%s: %s); it tries again with the next "
                "acknowledgement",
                self.name,
                type(exc).__name__,
                exc,
            )
            return False
        self.committed += len(values)
        return True

    def _end(self) -> None:
        """The last commit, then close (the caller holds ``_committing``)."""
        if self._closed:
            return
        if not self._commit():
            log.warning(
                "%s: %d acknowledged items are not committed; a restart delivers them again",
                self.name,
                len(self._done),
            )
        self._closed = True
        if self._close is not None:
            self._close()
