"""Watching an object-store prefix: :class:`PrefixWatcher` emits the URL of every object
that appears under it or changes.

How it works: every ``poll_interval`` seconds it lists the objects under the prefix
through ``fsspec`` (for S3, one ``ListObjectsV2`` per thousand keys). An object is new
when its URL was not seen before, changed when its ETag differs (its size and
modification time, where the store gives no ETag). An object store shows an object only
once its upload is complete, so a listed object is emitted at once; for a file system
written in place, ``settle`` holds a candidate back until it has stayed the same for that
long. With ``state=`` the objects the pipeline is done with are kept in an SQLite ledger,
the same as :class:`~nanostream.nodes.LocalDirectoryWatchdog`'s: recorded on
acknowledgement, so a restart neither repeats what was done nor misses what arrived while
it was down.
"""

from __future__ import annotations

import datetime
import fnmatch
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._core.acks import Acked
from .._core.errors import GraphError
from .._core.node import NanoNode
from ..operators._operator import check_non_negative, check_positive
from ._acked_progress import AckedProgress
from ._fileread import FilePath
from ._filesystems import StorageOptions, filesystem, require_url
from .watch import Signature, _Ledger

__all__ = ["PrefixWatcher"]

log = logging.getLogger("nanostream.watch")

Identity = str | Signature
"""What says an object changed: its ETag, or its ``(size, mtime_ns)`` without one."""


def _mtime_ns(info: Mapping[str, Any]) -> int:
    """The modification time that an ``fsspec`` listing gives, in nanoseconds (0: none)."""
    for key in ("LastModified", "mtime", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(value, datetime.datetime):
            return int(value.timestamp() * 1_000_000_000)
        if isinstance(value, (int, float)):
            return int(value * 1_000_000_000)
    return 0


def _etag(info: Mapping[str, Any]) -> str | None:
    for key in ("ETag", "etag", "md5Hash", "content_md5"):
        value = info.get(key)
        if isinstance(value, str) and value:
            return value.strip('"')
    return None


class PrefixWatcher(NanoNode):
    """A source that emits the URL of every object that appears under a prefix, or changes.

    ``prefix`` is an ``fsspec`` URL of a "folder" in an object store (``s3://bucket/in/``,
    ``gs://...``, ``az://...``, ``memory://...``; ``file://`` works too). Each URL is
    emitted as a :class:`~nanostream.nodes.FilePath`, for the readers' ``paths=True``
    (give them the same ``storage_options``). It polls until the run is stopped.

    * Objects already there when it starts are emitted too, unless ``only_new=True``.
    * An object is emitted again when it changes: a new ETag (or, where the store gives
      none, a new size or modification time). An object deleted and written again is new.
    * ``pattern`` is a shell-style pattern for object names (``"*.csv.gz"``) or a list of
      them; ``recursive=False`` leaves out the objects under sub-prefixes. Names starting
      with ``.`` (and everything under such a sub-prefix) are left out unless
      ``ignore_hidden=False``.
    * ``poll_interval`` is the seconds between two listings (default 5). ``settle``
      (default 0: an object store shows an object only once it is complete) holds an
      object back until it has stayed the same for that many seconds, for stores that
      are file systems written in place.
    * ``state="ledger.sqlite"`` keeps a ledger (a local SQLite file, the same kind as
      :class:`~nanostream.nodes.LocalDirectoryWatchdog`'s) of the objects the pipeline is
      done with: an object enters it on its acknowledgement, once everything made from it
      has reached every sink. A restart emits again what was in flight, nothing the
      pipeline was done with, and every object that arrived or changed while it was
      down. With a ledger, ``only_new`` applies to the very first start only.
    * ``storage_options`` are ``fsspec``'s (credentials, ``endpoint_url``, ...), masked
      wherever the node is shown; without them the store's usual chain applies (for S3,
      botocore's: environment variables, ``~/.aws``, the instance's role).

    The node's error policy applies to each listing, the first included: a listing that
    fails (the store is unreachable) fails the run by default; with ``on_error="skip"``
    it is recorded on the ``errors`` port and the next one comes after ``poll_interval``
    (``"retry"`` lists again after the node's ``backoff`` first). Opening the ledger
    fails the run. ``ready`` is a :class:`threading.Event` set once the first listing is
    done (or failed and was skipped).

    Example:
        >>> import fsspec, nanostream
        >>> from nanostream.nodes import PrefixWatcher
        >>> store = fsspec.filesystem("memory")
        >>> store.pipe("/inbox/a.csv", b"x,y\\n1,2\\n")
        >>> watch = PrefixWatcher("memory://inbox/", "*.csv", poll_interval=0.05)
        >>> sink = nanostream.testing.Collect(wait_for=2)
        >>> watch > sink
        Collect(name=None)
        >>> run = watch.global_start(block=False)
        >>> watch.ready.wait(10)
        True
        >>> store.pipe("/inbox/b.csv", b"x,y\\n3,4\\n")
        >>> sink.seen.wait(10)
        True
        >>> run.stop(timeout=10)
        >>> sorted(sink.items)
        ['memory:///inbox/a.csv', 'memory:///inbox/b.csv']
    """

    policy_per_poll = True  # applied to each listing

    def __init__(
        self,
        prefix: str,
        pattern: str | Sequence[str] = "*",
        *,
        recursive: bool = True,
        only_new: bool = False,
        poll_interval: float = 5.0,
        settle: float = 0.0,
        state: str | os.PathLike[str] | None = None,
        ignore_hidden: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        label = name or type(self).__name__
        if not isinstance(prefix, str) or "://" not in prefix:
            raise GraphError(
                f"{label}: prefix must be a URL such as 's3://bucket/in/', got {prefix!r} "
                "(to watch a local folder, use LocalDirectoryWatchdog)"
            )
        self.prefix = prefix
        self.pattern = pattern if isinstance(pattern, str) else list(pattern)
        self.patterns: tuple[str, ...] = (pattern,) if isinstance(pattern, str) else tuple(pattern)
        if not self.patterns or not all(isinstance(p, str) for p in self.patterns):
            raise GraphError(f"pattern must be a string or a list of strings, got {pattern!r}")
        check_positive(label, "poll_interval", poll_interval, unit="seconds")
        check_non_negative(label, "settle", settle)
        self.recursive = recursive
        self.only_new = only_new
        self.poll_interval = float(poll_interval)
        self.settle = float(settle)
        self.state = None if state is None else os.fspath(state)
        self.ignore_hidden = ignore_hidden
        self._storage = StorageOptions(storage_options)
        self.storage_options = None if storage_options is None else self._storage.shown
        self.ready = threading.Event()
        self.configure(**options)
        require_url(prefix)

    def _wanted(self, relative: str) -> bool:
        parts = relative.split("/")
        if not relative or (not self.recursive and len(parts) != 1):
            return False
        if self.ignore_hidden and any(p.startswith(".") for p in parts):
            return False
        return any(fnmatch.fnmatch(parts[-1], p) for p in self.patterns)

    def listing(self, fs: Any, root: str) -> dict[str, tuple[Signature, str | None]]:
        """The wanted objects under ``root`` now: URL → ``((size, mtime_ns), etag)``.

        Example:
            >>> import fsspec
            >>> from nanostream.nodes import PrefixWatcher
            >>> fs = fsspec.filesystem("memory")
            >>> fs.pipe("/listing-demo/a.csv", b"abc")
            >>> fs.pipe("/listing-demo/.part/b.csv", b"hidden")
            >>> found = PrefixWatcher("memory://listing-demo").listing(fs, "/listing-demo")
            >>> [(url, sig[0]) for url, (sig, etag) in found.items()]
            [('memory:///listing-demo/a.csv', 3)]
        """
        fs.invalidate_cache(root)
        found = fs.find(root, detail=True, withdirs=False)
        base = root.rstrip("/") + "/"
        objects: dict[str, tuple[Signature, str | None]] = {}
        for path, info in found.items():
            if info.get("type", "file") != "file" or not path.startswith(base):
                continue
            if not self._wanted(path[len(base) :]):
                continue
            size = int(info.get("size") or 0)
            objects[fs.unstrip_protocol(path)] = ((size, _mtime_ns(info)), _etag(info))
        return objects

    def generator(self) -> Iterator[FilePath | Acked]:
        fs, root = filesystem(self.prefix, self._storage)
        root_url = fs.unstrip_protocol(root.rstrip("/"))
        ledger = _Ledger(self.state, root_url) if self.state is not None else None
        progress: AckedProgress[tuple[str, Signature, str | None]] | None = None
        if ledger is not None:
            progress = AckedProgress(ledger.record_many, close=ledger.close, name=self._label())
        try:
            known: dict[str, Identity] = {}
            if ledger is not None:
                for url, sig in ledger.known().items():
                    entry = ledger.get(url)
                    known[url] = entry[1] if entry is not None and entry[1] else sig
            pending: dict[str, tuple[Identity, float]] = {}
            baseline = self.only_new and (ledger is None or ledger.first_start)

            def look() -> Iterator[FilePath | Acked]:
                """One listing: what is new or changed, emitted once it has settled."""
                nonlocal baseline
                objects = self.listing(fs, root)
                if baseline:  # only_new: what is there at the first listing is not new
                    baseline = False
                    for url, (sig, etag) in sorted(objects.items()):
                        known[url] = etag or sig
                        if ledger is not None:
                            ledger.record(url, sig, etag, emitted=False)
                self.ready.set()
                now = time.monotonic()
                for url in [u for u in (*known, *pending) if u not in objects]:
                    pending.pop(url, None)
                    if known.pop(url, None) is not None and ledger is not None:
                        ledger.forget(url)  # deleted: written again, it is new
                due = []
                for url, (sig, etag) in objects.items():
                    identity = etag or sig
                    if known.get(url) == identity:
                        pending.pop(url, None)
                        continue
                    seen = pending.get(url)
                    if seen is None or seen[0] != identity:
                        pending[url] = seen = (identity, now)
                    if now - seen[1] >= self.settle:
                        due.append((sig[1], url))
                for _, url in sorted(due):
                    sig, etag = objects[url]
                    del pending[url]
                    known[url] = etag or sig
                    if progress is None:
                        yield FilePath(url)
                    else:  # recorded in the ledger once the pipeline is done with it
                        yield Acked(FilePath(url), progress.ack((url, sig, etag)))

            with self.guard_polls() as guard:
                while True:
                    yield from guard(look)
                    self.ready.set()  # also when the first listing failed and was skipped
                    wait = self.poll_interval
                    if pending and self.settle > 0:
                        wait = min(wait, max(self.settle / 4, 0.005))
                    if self.sleep(wait):
                        return
        finally:
            if progress is not None:
                progress.finish()  # the ledger closes after the last acknowledgement
            elif ledger is not None:
                ledger.close()

    def _label(self) -> str:
        return self.name or type(self).__name__
