"""Watching a folder: :class:`LocalDirectoryWatchdog` emits the path of every file that
appears in it or changes, once the file has stopped changing.

How it works: file system events (from the ``watchdog`` library), or a periodic scan with
``polling=True``, say *which* files may have changed. A changed file becomes a
*candidate*; it is emitted once its size and modification time have stayed the same for
``settle`` seconds, so a file that is still being written is never emitted half-written.
Emitted files are remembered by ``(size, mtime)``: a file is emitted again when it changes
again. With ``state=`` the memory is an SQLite *ledger* that also keeps each file's
content hash. A file enters the ledger when the pipeline has acknowledged it (see
``nanostream.Acked``), not when it is emitted, so a restarted watchdog emits again the
files that were in flight when it stopped, does not emit again the files the pipeline was
done with, and does not miss files that arrived while it was down.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from .._core.acks import Acked
from .._core.context import node_label
from .._core.errors import GraphError, require
from .._core.node import NanoNode
from ..operators._operator import check_non_negative, check_positive
from ._acked_progress import AckedProgress
from ._fileread import FilePath

__all__ = ["LocalDirectoryWatchdog"]

log = logging.getLogger("nanostream.watch")

Signature = tuple[int, int]
"""A file's ``(size, mtime_ns)``: when it differs from the last one seen, the file changed."""


_require_watchdog: Callable[[], Any] = partial(
    require, "watchdog.observers", extra="files", package="watchdog"
)


def _signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime_ns)


def _content_hash(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "blake2b").hexdigest()[:32]


class _Changes:
    """What the ``watchdog`` library's thread reports, kept for the node's own thread.

    An instance is the event handler: the observer calls :meth:`dispatch` per event.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files: set[str] = set()
        self.trees: set[str] = set()
        self.gone_trees: set[str] = set()

    def dispatch(self, event: Any) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        src = os.path.abspath(os.fsdecode(event.src_path))
        dest_raw = getattr(event, "dest_path", "")
        dest = os.path.abspath(os.fsdecode(dest_raw)) if dest_raw else ""
        with self._lock:
            if not event.is_directory:
                self.files.add(src)
                if dest:
                    self.files.add(dest)
            elif kind == "created":
                self.trees.add(src)
            elif kind == "deleted":
                self.gone_trees.add(src)
            elif kind == "moved":
                self.gone_trees.add(src)
                if dest:
                    self.trees.add(dest)

    def take(self) -> tuple[set[str], set[str], set[str]]:
        with self._lock:
            taken = (self.files, self.trees, self.gone_trees)
            self.files, self.trees, self.gone_trees = set(), set(), set()
        return taken


class _Ledger:
    """The SQLite record of the files a watchdog is done with: path, size, mtime and hash.

    The source's thread reads and updates it, and acknowledgements (from other threads)
    record the files the pipeline is done with: every use holds ``lock``.
    """

    def __init__(self, path: str, root: str) -> None:
        import sqlite3

        self.root = root
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT "
                "NULL, mtime_ns INTEGER NOT NULL, hash TEXT, emitted INTEGER NOT NULL, "
                "recorded_at REAL NOT NULL)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS roots "
                "(root TEXT PRIMARY KEY, first_start REAL NOT NULL)"
            )
            seen = self.db.execute("SELECT 1 FROM roots WHERE root = ?", (root,)).fetchone()
            self.first_start = seen is None
            if self.first_start:
                self.db.execute("INSERT INTO roots VALUES (?, ?)", (root, time.time()))
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise GraphError(
                f"the watchdog ledger {path!r} is not a usable SQLite database ({exc}); "
                "point state= at a new file"
            ) from exc

    def known(self) -> dict[str, Signature]:
        prefix = self.root.rstrip(os.sep) + os.sep
        with self.lock:
            rows = self.db.execute("SELECT path, size, mtime_ns FROM files").fetchall()
        return {path: (size, mtime) for path, size, mtime in rows if path.startswith(prefix)}

    def get(self, path: str) -> tuple[int, str | None] | None:
        with self.lock:
            row = self.db.execute("SELECT size, hash FROM files WHERE path = ?", (path,)).fetchone()
        return None if row is None else (row[0], row[1])

    def record(self, path: str, sig: Signature, digest: str | None, *, emitted: bool) -> None:
        self.record_many([(path, sig, digest)], emitted=emitted)

    def record_many(
        self, entries: Sequence[tuple[str, Signature, str | None]], *, emitted: bool = True
    ) -> None:
        """Record files in one transaction (by default: files the pipeline is done with)."""
        now = time.time()
        rows = [(path, sig[0], sig[1], digest, int(emitted), now) for path, sig, digest in entries]
        with self.lock:
            self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)
            self.db.commit()

    def forget(self, path: str) -> None:
        with self.lock:
            self.db.execute("DELETE FROM files WHERE path = ?", (path,))
            self.db.commit()

    def close(self) -> None:
        with self.lock:
            self.db.close()


class _Folder:
    """Which files of the watched folder count, and their signatures."""

    def __init__(
        self,
        root: str,
        patterns: Sequence[str],
        recursive: bool,
        ignore_hidden: bool,
        excluded: set[str],
    ) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.patterns = patterns
        self.recursive = recursive
        self.ignore_hidden = ignore_hidden
        self.excluded = excluded

    def outside(self, path: str) -> str | None:
        """Where ``path`` really is, if symbolic links lead from it out of the folder."""
        real = os.path.realpath(path)
        if os.path.commonpath([self.real_root, real]) == self.real_root:
            return None
        return real

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in self.patterns)

    def _parts(self, path: str) -> list[str] | None:
        """``path``'s components below the root; None if it is not below it or hidden."""
        rel = os.path.relpath(path, self.root)
        if rel in (os.curdir, os.pardir) or rel.startswith(os.pardir + os.sep):
            return None
        parts = rel.split(os.sep)
        if self.ignore_hidden and any(p.startswith(".") for p in parts):
            return None
        return parts

    def wanted(self, path: str) -> bool:
        if path in self.excluded:
            return False
        parts = self._parts(path)
        if parts is None or (not self.recursive and len(parts) != 1):
            return False
        return self.matches(parts[-1])

    def wanted_dir(self, path: str) -> bool:
        return self.recursive and self._parts(path) is not None

    def scan(self, top: str) -> dict[str, Signature]:
        """Every wanted file under ``top`` (the root or one of its folders)."""
        found: dict[str, Signature] = {}
        if top != self.root and not self.wanted_dir(top):
            return found
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                entries = os.scandir(folder)
            except OSError:
                continue
            with entries:
                for entry in entries:
                    name = entry.name
                    if self.ignore_hidden and name.startswith("."):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if self.recursive:
                                stack.append(entry.path)
                            continue
                        if not entry.is_file() or not self.matches(name):
                            continue
                        if entry.path in self.excluded:
                            continue
                        st = entry.stat()
                    except OSError:
                        continue
                    found[entry.path] = (st.st_size, st.st_mtime_ns)
        return found


class _Tracker:
    """Candidates waiting to settle, files already accounted for, and the ledger.

    ``known`` is every file accounted for in this run (emitted, or already in the
    ledger); the ledger itself learns of an emitted file only when the pipeline is done
    with it. ``emitted`` keeps the size and hash of the files emitted in this run.
    """

    def __init__(
        self,
        settle: float,
        ledger: _Ledger | None,
        folder: _Folder,
        restored: dict[str, Signature] | None = None,
    ) -> None:
        self.settle = settle
        self.ledger = ledger
        self.known: dict[str, Signature] = {}
        if ledger is not None:
            self.known = {p: sig for p, sig in ledger.known().items() if folder.wanted(p)}
        if restored:  # what a checkpoint counted as emitted
            self.known.update((p, tuple(sig)) for p, sig in restored.items() if folder.wanted(p))  # type: ignore[misc]
        self.pending: dict[str, tuple[Signature, float]] = {}
        self.emitted: dict[str, tuple[int, str]] = {}

    def observe(self, path: str, sig: Signature, now: float) -> None:
        if self.known.get(path) == sig:
            self.pending.pop(path, None)
            return
        current = self.pending.get(path)
        if current is None or current[0] != sig:
            self.pending[path] = (sig, now)

    def check(self, path: str, now: float) -> None:
        sig = _signature(path)
        if sig is None:
            self.vanish(path)
        else:
            self.observe(path, sig, now)

    def baseline(self, path: str, sig: Signature) -> None:
        """Account for a file without emitting it (``only_new``)."""
        self.known[path] = sig
        if self.ledger is not None:
            self.ledger.record(path, sig, None, emitted=False)

    def vanish(self, path: str) -> None:
        self.pending.pop(path, None)
        self.emitted.pop(path, None)
        if self.known.pop(path, None) is not None and self.ledger is not None:
            self.ledger.forget(path)

    def vanish_tree(self, folder: str) -> None:
        prefix = folder.rstrip(os.sep) + os.sep
        for path in [p for p in (*self.known, *self.pending) if p.startswith(prefix)]:
            self.vanish(path)

    def sync(self, present: dict[str, Signature], now: float) -> None:
        """Reconcile with a full scan: ``present`` is every wanted file there is."""
        for path in [p for p in (*self.known, *self.pending) if p not in present]:
            self.vanish(path)
        for path, sig in present.items():
            self.observe(path, sig, now)

    def restat(self, now: float) -> None:
        for path, (sig, _) in list(self.pending.items()):
            new = _signature(path)
            if new is None:
                self.vanish(path)
            elif new != sig:
                self.pending[path] = (new, now)

    def due(self, now: float) -> list[str]:
        ready = [
            (since, path) for path, (_, since) in self.pending.items() if now - since >= self.settle
        ]
        ready.sort()
        return [path for _, path in ready]

    def set_aside(self, path: str) -> None:
        """Account for a settled candidate that is not to be emitted, nor recorded."""
        entry = self.pending.pop(path, None)
        if entry is not None:
            self.known[path] = entry[0]

    def accept(self, path: str) -> tuple[Signature, str | None] | None:
        """Account for a settled candidate; its signature and hash if it is to be emitted.

        The caller records an emitted file in the ledger once the pipeline is done with it.
        A candidate stays pending until it is accounted for, so that if the ledger fails,
        the next look (or a retry of this one) accepts it again.
        """
        entry = self.pending.get(path)
        if entry is None:
            return None
        sig = entry[0]
        if self.ledger is None:
            self._settled(path, sig)
            return sig, None
        try:
            digest = _content_hash(path)
        except OSError:
            self.vanish(path)
            return None
        content = (sig[0], digest)
        if self.emitted.get(path) == content:
            # Touched, not changed, since this run emitted it. Its ledger entry is written
            # when the pipeline is done with it; writing one now could record it too early.
            self._settled(path, sig)
            return None
        if path not in self.emitted and self.ledger.get(path) == content:
            self.ledger.record(path, sig, digest, emitted=True)  # touched, not changed
            self._settled(path, sig)
            return None
        self._settled(path, sig)
        self.emitted[path] = content
        return sig, digest

    def _settled(self, path: str, sig: Signature) -> None:
        del self.pending[path]
        self.known[path] = sig


class LocalDirectoryWatchdog(NanoNode):
    """A source that emits the path of every file that appears in a folder or changes.

    It emits absolute paths while the run lives, until the run is stopped: each a
    :class:`~nanostream.nodes.FilePath`, a ``str`` that tells the readers of text it is a
    file to read (``CSVReader()`` after it says to pass ``paths=True`` or to put a
    :class:`~nanostream.nodes.LocalFileReader` before it).

    * Files already in the folder when it starts are emitted too, unless
      ``only_new=True``.
    * A file is emitted only once it has stopped changing: its size and modification time
      must stay the same for ``settle`` seconds (default 1.0). A modified file is emitted
      again, once it has settled again.
    * ``pattern`` is a shell-style pattern for file names (``"*.csv"``) or a list of them;
      ``recursive=True`` watches sub-folders too. Hidden files and folders (names starting
      with ``.``, such as the temporary files nanostream's writers use) are ignored unless
      ``ignore_hidden=False``.
    * A file whose real path is outside the folder — a symbolic link pointing out of it —
      is not emitted (a warning names it once per run) unless
      ``follow_outside_links=True``; a link to a file inside the folder is emitted by its
      own path.
    * Events come from the ``watchdog`` package (``pip install 'nanostream[files]'``); in
      case some are lost, the whole folder is also rescanned every ``rescan_interval``
      seconds (default 60; ``None`` for never). With ``polling=True`` the folder is
      scanned every ``poll_interval`` seconds instead: for network and other file systems
      where events do not arrive, and it needs no extra package.
    * ``state="ledger.sqlite"`` keeps a ledger of the files the pipeline is done with
      (path, size, modification time, content hash). A restarted watchdog emits the files
      that arrived or changed while it was down, and nothing the pipeline was done with;
      a file touched but not changed (same content) is not emitted again. With a ledger,
      ``only_new`` applies to the very first start only.
    * In a run with a state store (``state=`` of ``global_start``, see docs/state.md) each
      checkpoint keeps the files emitted so far (path, size, modification time): a
      restart emits the files that arrived or changed since, and repeats at most what
      was emitted after the last checkpoint. With a state store a file is emitted once,
      even to a sink that writes exactly once.

    Delivery with a ledger is at-least-once: a file is recorded when its acknowledgement
    comes, once everything made from it has reached every sink (written and, for
    buffering sinks such as :class:`~nanostream.nodes.sql.SQLSink`, committed), never when
    it is emitted. After a crash (even ``kill -9``) or an aborted run, a restart emits
    again the files that were in flight: a sink may see their rows twice (use an upsert
    to write them once). A graceful ``stop()`` records everything it delivered. On a runner
    that does not call acknowledgements (the built-in runners all do; one from another
    package may not) nothing is recorded, so a restart emits every file again.

    The node's error policy applies to each look at the folder (every ``look_interval``
    seconds): a look that fails (the ledger cannot be read or written) fails the run
    (``on_error="fail"``, the default), or with ``on_error="skip"`` is recorded (an error
    record on the ``errors`` port, counted for ``max_errors`` and ``max_error_rate``) and
    the watchdog looks again, the files it could not account for included; ``"retry"``
    looks again after the node's ``backoff`` first. Opening the ledger and the first scan
    happen before the looks: a failure there fails the run.

    ``ready`` is a :class:`threading.Event` set once the watchdog is watching: files
    present before then are the files "already in the folder". ``stop()`` takes effect at
    once: the node waits with :meth:`~nanostream.NanoNode.sleep`.

    Example:
        >>> import pathlib, tempfile, nanostream
        >>> from nanostream.nodes import LocalDirectoryWatchdog
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "old.csv").write_text("a,b\\n")
        >>> watch = LocalDirectoryWatchdog(folder, "*.csv", settle=0.05)
        >>> sink = nanostream.testing.Collect(wait_for=2)
        >>> watch > sink
        Collect(name=None)
        >>> run = watch.global_start(block=False)
        >>> _ = (folder / "new.csv").write_text("c,d\\n")
        >>> sink.seen.wait(10)
        True
        >>> run.stop(timeout=10)
        >>> sorted(pathlib.Path(p).name for p in sink.items)
        ['new.csv', 'old.csv']
    """

    policy_per_poll = True  # applied to each look at the folder

    def __init__(
        self,
        directory: str | os.PathLike[str],
        pattern: str | Sequence[str] = "*",
        *,
        recursive: bool = False,
        only_new: bool = False,
        polling: bool = False,
        poll_interval: float = 1.0,
        settle: float = 1.0,
        rescan_interval: float | None = 60.0,
        state: str | os.PathLike[str] | None = None,
        ignore_hidden: bool = True,
        follow_outside_links: bool = False,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        self.directory = os.fspath(directory)
        self.patterns: tuple[str, ...] = (pattern,) if isinstance(pattern, str) else tuple(pattern)
        if not self.patterns or not all(isinstance(p, str) for p in self.patterns):
            raise GraphError(f"pattern must be a string or a list of strings, got {pattern!r}")
        label = node_label(self, with_class=True)
        check_positive(label, "poll_interval", poll_interval, unit="seconds")
        check_non_negative(label, "settle", settle)
        check_positive(label, "rescan_interval", rescan_interval, unit="seconds", optional=True)
        self.recursive = recursive
        self.only_new = only_new
        self.polling = polling
        self.poll_interval = float(poll_interval)
        self.settle = float(settle)
        self.rescan_interval = None if rescan_interval is None else float(rescan_interval)
        self.state = None if state is None else os.fspath(state)
        self.ignore_hidden = ignore_hidden
        self.follow_outside_links = follow_outside_links
        self.ready = threading.Event()
        self.configure(**options)
        if not polling:
            _require_watchdog()

    # ----------------------------------------------------------------- state
    _tracker: _Tracker | None = None
    _restored: dict[str, Signature] | None = None

    def snapshot_state(self) -> dict[str, Signature]:
        """The files emitted or accounted for so far: path -> (size, modification time).

        Example:
            >>> from nanostream.nodes import LocalDirectoryWatchdog
            >>> LocalDirectoryWatchdog(".", polling=True).snapshot_state()
            {}
        """
        tracker = self._tracker
        return dict(tracker.known) if tracker is not None else {}

    def restore_state(self, state: dict[str, Signature]) -> None:
        """Count these files as emitted (what :meth:`snapshot_state` took).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        self._restored = dict(state)

    def validate(self) -> None:
        super().validate()
        if "://" in self.directory and not self.directory.startswith("file://"):
            raise GraphError(
                f"{self.name or type(self).__name__} watches a local folder, and "
                f"{self.directory!r} is a URL; watch an object-store prefix with "
                "PrefixWatcher (nanostream.nodes.PrefixWatcher)"
            )
        if not os.path.isdir(self.directory):
            raise GraphError(
                f"{node_label(self)} watches {self.directory!r}, which is not "
                "an existing directory; create it first"
            )

    @property
    def look_interval(self) -> float:
        """Seconds between two looks at the candidates (a fraction of ``settle``)."""
        base = self.settle / 4 if self.settle > 0 else 0.02
        if self.polling:
            base = min(base, self.poll_interval)
        return min(max(base, 0.005), 0.25)

    def generator(self) -> Iterator[FilePath | Acked]:
        root = os.path.abspath(self.directory)
        excluded: set[str] = set()
        if self.state is not None:
            ledger_path = os.path.abspath(self.state)
            excluded = {ledger_path + suffix for suffix in ("", "-wal", "-shm", "-journal")}
        folder = _Folder(root, self.patterns, self.recursive, self.ignore_hidden, excluded)
        ledger = _Ledger(self.state, root) if self.state is not None else None
        progress: AckedProgress[tuple[str, Signature, str | None]] | None = None
        if ledger is not None:
            label = node_label(self)
            progress = AckedProgress(ledger.record_many, close=ledger.close, name=label)
        observer: Any = None
        try:
            restored, self._restored = self._restored, None
            tracker = self._tracker = _Tracker(self.settle, ledger, folder, restored)
            changes: _Changes | None = None
            if not self.polling:
                changes = _Changes()
                observer = self._observe(root, changes)
            now = time.monotonic()
            present = folder.scan(root)
            first = restored is None and (ledger is None or ledger.first_start)
            if self.only_new and first:
                for path, sig in sorted(present.items()):
                    tracker.baseline(path, sig)
            tracker.sync(present, now)
            self.ready.set()
            interval = self.poll_interval if changes is None else self.rescan_interval
            next_scan = now + interval if interval is not None else float("inf")
            tick = self.look_interval
            warned: set[str] = set()

            def look() -> Iterator[FilePath | Acked]:
                """One look at the folder: what changed, then the candidates now settled."""
                nonlocal next_scan
                now = time.monotonic()
                if now >= next_scan and interval is not None:
                    tracker.sync(folder.scan(root), now)
                    next_scan = now + interval
                if changes is not None:
                    files, trees, gone = changes.take()
                    for tree in gone:
                        tracker.vanish_tree(tree)
                    for tree in trees:
                        for path, sig in folder.scan(tree).items():
                            tracker.observe(path, sig, now)
                    for path in files:
                        if folder.wanted(path):
                            tracker.check(path, now)
                tracker.restat(now)
                for path in tracker.due(time.monotonic()):
                    real = None if self.follow_outside_links else folder.outside(path)
                    if real is not None:
                        tracker.set_aside(path)
                        if path not in warned:
                            warned.add(path)
                            log.warning(
                                "%s leaves out %s: it is a symbolic link to %s, outside the "
                                "watched folder %s; pass follow_outside_links=True to emit "
                                "such files",
                                node_label(self, with_class=True),
                                path,
                                real,
                                root,
                            )
                        continue
                    entry = tracker.accept(path)
                    if entry is None:
                        continue
                    if progress is None:
                        yield FilePath(path)
                    else:  # recorded in the ledger once the pipeline is done with it
                        yield Acked(FilePath(path), progress.ack((path, *entry)))

            with self.guard_polls() as guard:
                while True:
                    yield from guard(look)
                    if self.sleep(tick):
                        return
        finally:
            if observer is not None:
                observer.stop()
                observer.join()
            if progress is not None:
                progress.finish()  # the ledger closes after the last acknowledgement

    def _observe(self, root: str, changes: _Changes) -> Any:
        observers = _require_watchdog()
        observer = observers.Observer()
        observer.name = f"nanostream:{node_label(self)}:watchdog"
        try:
            observer.schedule(changes, root, recursive=self.recursive)
            observer.start()
        except OSError as exc:
            exc.add_note(
                f"watching {root!r} failed; LocalDirectoryWatchdog(polling=True) scans the "
                "folder instead (on Linux, also check fs.inotify.max_user_watches)"
            )
            raise
        return observer
