"""The :class:`FileSink` base of the file and format writers: buffering, rotation into
numbered parts, compression, object stores, and exactly-once parts per checkpoint; the
atomic publishing they build on is in :mod:`._publish`.
"""

from __future__ import annotations

import glob
import logging
import os
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .._core.context import node_label
from .._core.errors import GraphError, StateError
from .._core.node import NanoNode, NodeFunction
from .._core.node_function import restore_state
from .._core.policy import POLICY_OPTIONS
from .._core.run import QUEUE_OPTIONS
from ..operators._operator import check_positive
from ._filesystems import (
    StorageOptions,
    is_url,
    local_path,
    require_compression,
    require_url,
    url_exists,
)
from ._publish import (
    AtomicFile,
    numbered_files,
    publish_once,
    refusal,
    remove_leftovers,
)

__all__ = ["FileSink", "uses_standard_path"]


log = logging.getLogger("nanostream")


class FileSink(NanoNode):
    """Base of the writers that put a stream of items into one file (or one per part).

    A subclass implements :meth:`write_items` (the loop over its input) using
    :meth:`current` for the open file. The output is published atomically when the
    input ends, on a graceful stop, or every ``rotate_items`` items (``path`` then has a
    ``{part}`` field, e.g. ``"out-{part:04d}.jsonl"``); each finished file's path is
    emitted downstream. If the run fails or is aborted, the unfinished file is deleted.
    The file open when the input ends is published only once the rest of the run has
    ended well (``NodeContext.wait_for_run_outcome``): a run that fails elsewhere, even
    after this node's input ended, publishes nothing from it (parts published on the way
    by ``rotate_items`` stay).

    What was there before is never replaced silently: a ``path`` that exists is refused
    (:class:`OutputExistsError`, before any thread starts) unless ``append=True`` (add to
    it) or ``overwrite=True`` (replace it); parts are numbered on from the highest part
    there (from 0 with ``overwrite=True``). Temporary files an earlier run left behind
    (it was killed) are deleted when the run starts.

    A ``path`` ending in ``.gz``, ``.bz2``, ``.xz`` or ``.zst`` is written compressed (a
    rotated part keeps the ending: ``"out-{part:04d}.jsonl.gz"``; ``append=True`` adds a
    compressed stream after the existing ones). A ``path`` that is a URL
    (``s3://bucket/out.jsonl``, ``memory://...``, any ``fsspec`` protocol) is built in a
    local temporary folder and uploaded whole when it is published, with
    ``storage_options`` (credentials and settings for ``fsspec``, masked wherever the
    node is shown).

    With ``exactly_once=True`` (in a run with a state store, ``state=``; see
    docs/state.md) the output is a folder of part files, one per checkpoint, as Flink's
    and Spark's file sinks write: ``path`` is a template with a ``{part}`` field (e.g.
    ``"out/part-{part:05d}.jsonl"``). At each checkpoint the rows since the one before
    are finished under a hidden name (``.part-00003.jsonl.pending``), which the
    checkpoint records; once the checkpoint is committed the file is renamed to its part
    name. A restart publishes the part its restored checkpoint recorded (if the crash
    came before the rename) and deletes the hidden parts of checkpoints that were not
    committed; their rows come again from the sources. So every row is in exactly one
    published part, and a reader of the folder never sees a part of a checkpoint that
    was not committed. A checkpoint with no rows publishes no part; numbers go on from
    the restored checkpoint's (a first run numbers on after the parts there). At a URL
    (``s3://bucket/out/part-{part:05d}.jsonl``, any ``fsspec`` store) a store has no
    rename: the sealed part's bytes wait in the checkpoint (in the state store), and once
    it is committed they are put under the part's key, conditionally where the store can
    (S3's and Azure's ``If-None-Match``); a restart that puts them again finds the same
    bytes there and leaves them. Not with ``append`` or ``rotate_items``; the pipeline is
    refused unless every source can replay from a checkpoint and this is its only sink.
    """

    binary = False
    newline: str | None = None
    can_append = True  # False for a format that cannot be added to (refusals say so)
    holds_items = True  # items are done once the file holding them is published
    policy_options = POLICY_OPTIONS  # with options, as_function runs NanoNode's (per item)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        append: bool = False,
        overwrite: bool = False,
        rotate_items: int | None = None,
        encoding: str = "utf-8",
        fsync: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        exactly_once: bool = False,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        self.path = local_path(os.fspath(path))
        self._storage = StorageOptions(storage_options)
        self.storage_options = None if storage_options is None else self._storage.shown
        check_location(self.path, storage_options, name or type(self).__name__)
        has_part = "{part" in self.path
        if append and overwrite:
            raise GraphError(
                f"{name or type(self).__name__}: append=True adds to the file and "
                "overwrite=True replaces it; pass one of them"
            )
        if rotate_items is not None:
            check_positive(name or type(self).__name__, "rotate_items", rotate_items, integer=True)
            if not has_part:
                raise GraphError(
                    f"rotate_items needs a '{{part}}' field in path to name each part, "
                    f"e.g. 'out-{{part:04d}}.jsonl'; got {self.path!r}"
                )
        if has_part:
            try:
                self.path.format(part=0)
            except (KeyError, IndexError, ValueError) as exc:
                raise GraphError(f"bad path template {self.path!r}: {exc}") from None
        self.append = append
        self.overwrite = overwrite
        self.rotate_items = rotate_items
        self.encoding = encoding
        self.fsync = fsync
        self.exactly_once = _check_exactly_once(self, exactly_once, name)
        self.keeps_no_state = not exactly_once  # snapshots (a part per checkpoint) only then
        self.configure(**options)
        self._file: AtomicFile | None = None
        self._part = 0
        self._count = 0
        self._pending: list[str] = []  # exactly_once: parts sealed, published on commit
        self._sealed: dict[str, bytes] = {}  # exactly_once at a URL: their content
        self._seals = 0  # exactly_once: how many parts checkpoints have sealed
        self._since = 0  # exactly_once: items read since the last checkpoint
        self._swept = False

    @property
    def label(self) -> str:
        """The node's name in messages: its name in the run, else the name it was given."""
        return node_label(self)

    @property
    def rotates(self) -> bool:
        """True when ``path`` is a template with a ``{part}`` field."""
        return "{part" in self.path

    def validate(self) -> None:
        """Refuse a target that exists unless ``append`` or ``overwrite`` says what to do."""
        super().validate()
        if not self.rotates and not (self.append or self.overwrite) and self.exists(self.path):
            raise refusal(self.label, self.path, can_append=self.can_append)

    def exists(self, path: str) -> bool:
        """True when a file (or, for a URL, an object) is at ``path`` now.

        Example:
            >>> from nanostream.nodes import JSONLinesWriter
            >>> JSONLinesWriter("memory://exists-demo/a.jsonl").exists("memory://exists-demo/a.jsonl")
            False
        """
        if is_url(path):
            return url_exists(path, self._storage)
        return os.path.exists(path)

    def existing_parts(self) -> list[int]:
        """The part numbers of the files that ``path`` (a ``{part}`` template) names now."""
        return numbered_files(self.path, "part", storage_options=self._storage)

    def leftover_pattern(self) -> str:
        """The target (with wildcards for parts) whose temporary files belong to this node."""
        if not self.rotates:
            return self.path
        return "".join(
            glob.escape(literal) + ("*" if field is not None else "")
            for literal, field, _spec, _conversion in string.Formatter().parse(self.path)
        )

    # ------------------------------------------------------------------ for subclasses
    def current(self) -> AtomicFile:
        """The open output file, opening the next part if needed."""
        if self._file is None:
            if self.exactly_once:
                self._sweep()
            target = self.path.format(part=self._part) if self.rotates else self.path
            replace = self.append or self.overwrite
            if not replace and self.exists(target):
                raise refusal(self.label, target, can_append=self.can_append)
            self._file = AtomicFile(
                target,
                binary=self.binary,
                encoding=self.encoding,
                newline=self.newline,
                append=self.append,
                fsync=self.fsync,
                replace=replace,
                node=self.label,
                storage_options=self._storage,
                can_append=self.can_append,
            )
            self.opened(self._file)
        return self._file

    def opened(self, file: AtomicFile) -> None:
        """Called when a new output file is opened (e.g. to write a header)."""

    def closing(self, file: AtomicFile) -> None:
        """Called before the open output file is published (e.g. to write a footer)."""

    def finish(self) -> str | None:
        """Publish the open file, if any; returns its path."""
        file = self._file
        if file is None:
            return None
        self.closing(file)
        self._file = None
        self._part += 1
        return self.published(file.commit())

    def published(self, path: str) -> str:
        """Called with each published file's path: the items in it are done."""
        release = getattr(self, "release_items", None)  # sources' acknowledgements, if any
        if release is not None:
            release()
        return path

    def write_chunk(self, file: AtomicFile, items: Iterable[Any]) -> None:
        """Write ``items`` to ``file`` (all of them belong to the same part)."""
        raise NotImplementedError

    def write_items(self, items: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        """Write every item of ``items``; call ``outp(path)`` for each finished part."""
        if self.exactly_once:
            self._write_per_checkpoint(items)
            return
        if self.rotate_items is None:
            self.write_chunk(self.current(), items)
            return
        it = iter(items)
        while True:
            room = self.rotate_items - self._count
            chunk = [x for _, x in zip(range(room), it, strict=False)]
            if not chunk:
                return
            self.write_chunk(self.current(), chunk)
            self._count += len(chunk)
            if self._count >= self.rotate_items:
                self._count = 0
                path = self.finish()
                if path is not None:
                    outp(path)

    def _write_per_checkpoint(self, items: Iterable[Any]) -> None:
        """Write ``items`` into the part of the current checkpoint: a checkpoint taken
        while the next item is read seals the part, and that item opens the next one."""
        it = iter(items)
        carry = [x for _, x in zip(range(1), it, strict=False)]

        def chunk(first: Any, seals: int) -> Iterator[Any]:
            self._since += 1
            yield first
            for item in it:
                if self._seals != seals:  # this part is sealed: the item opens the next
                    carry.append(item)
                    return
                self._since += 1
                yield item

        while carry:
            self.write_chunk(self.current(), chunk(carry.pop(), self._seals))

    # ------------------------------------------------------------------ exactly once
    @staticmethod
    def pending_name(target: str) -> str:
        """The hidden name of part ``target`` between its checkpoint and the commit.

        Example:
            >>> FileSink.pending_name("out/part-00003.jsonl")
            'out/.part-00003.jsonl.pending'
        """
        head, tail = os.path.split(target)
        return os.path.join(head, f".{tail}.pending")

    def snapshot_state(self) -> Any:
        """With ``exactly_once``: seal the open part under its hidden name; the state is
        the next part's number and the parts sealed and not yet published.

        Example:
            >>> import pathlib, tempfile
            >>> from nanostream.nodes import JSONLinesWriter
            >>> folder = pathlib.Path(tempfile.mkdtemp())
            >>> writer = JSONLinesWriter(folder / "part-{part}.jsonl", exactly_once=True)
            >>> writer.setup()
            >>> writer.write_items([{"a": 1}], print)
            >>> state = writer.snapshot_state()
            >>> state["part"], [pathlib.Path(p).name for p in state["pending"]]
            (1, ['part-0.jsonl'])
            >>> writer.checkpoint_committed()  # the checkpoint is committed: published
            >>> (folder / "part-0.jsonl").read_text()
            '{"a":1}\\n'
        """
        self._sweep()
        file = self._file
        if file is not None:
            self.closing(file)
            self._file = None
            if is_url(file.destination):  # no rename in a store: the content waits
                self._sealed[file.destination] = file.sealed_bytes()
            else:
                file.seal(self.pending_name(file.destination))
            self._pending.append(file.destination)
            self._part += 1
        self._seals += 1
        self._since = 0
        if is_url(self.path):
            sealed = {target: self._sealed[target] for target in self._pending}
            return {"part": self._part, "pending": list(self._pending), "sealed": sealed}
        return {"part": self._part, "pending": list(self._pending)}

    def restore_state(self, state: Any) -> None:
        """With ``exactly_once``: go on from the restored checkpoint, publishing the parts
        it sealed if the crash came before they were.

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        self._part = state["part"]
        self._pending = list(state["pending"])
        self._sealed = dict(state.get("sealed", {}))
        self.checkpoint_committed()
        self._sweep()

    def checkpoint_committed(self) -> None:
        """The checkpoint that sealed the pending parts is committed: publish them (rename
        each to its part name); the items in them are done.

        Example: the one of :meth:`snapshot_state` shows it.
        """
        for target in self._pending:
            if is_url(target):
                self._publish_sealed(target)
                continue
            hidden = self.pending_name(target)
            if os.path.exists(hidden):
                if os.path.exists(target) and not self.overwrite:
                    raise refusal(self.label, target, can_append=False)
                os.replace(hidden, target)
            elif not os.path.exists(target):
                raise StateError(
                    f"node {self.label!r}: the part {target!r} of a committed checkpoint is "
                    f"missing (neither it nor {hidden!r} is there); restart with "
                    "drop_state=True (--drop-state) to start the writer afresh"
                )
            self.published(target)
        self._pending.clear()
        self.release_items(keep=self._since)

    def _publish_sealed(self, target: str) -> None:
        """Put a sealed part under its key in the store, once (a replayed checkpoint finds
        it there, with the same bytes, and leaves it)."""
        data = self._sealed.pop(target, None)
        if data is None:  # pragma: no cover - every sealed part's content is in the state
            raise StateError(f"node {self.label!r}: the content of the part {target!r} is lost")
        publish_once(target, data, self._storage, replace=self.overwrite, node=self.label)
        self.published(target)

    def _sweep(self) -> None:
        """Delete (once a run) the hidden parts of checkpoints that were not committed (at a
        URL there are none: a sealed part waits in the state store, not in the store)."""
        if self._swept or is_url(self.path):
            return
        self._swept = True
        pattern = self.pending_name(self.leftover_pattern())
        keep = {self.pending_name(target) for target in self._pending}
        for hidden in sorted(glob.glob(pattern)):
            if hidden not in keep:
                log.info("node %r deletes %s of a checkpoint not committed", self.label, hidden)
                os.unlink(hidden)

    # ------------------------------------------------------------------ node protocol
    def setup(self) -> None:
        """Delete an earlier run's temporary files; number parts on from the last one."""
        self._file = None
        self._count = 0
        self._pending, self._seals, self._since, self._swept = [], 0, 0, False
        self._sealed = {}
        remove_leftovers(self.leftover_pattern(), self.label, self._storage)
        parts = [] if self.overwrite or not self.rotates else self.existing_parts()
        self._part = parts[-1] + 1 if parts else 0

    def process_item(self, item: Any) -> Iterator[Any]:
        """Write one item (as the node function does); yields a finished part's path."""
        finished: list[Any] = []
        self.write_items((item,), finished.append)
        yield from finished

    def cleanup(self) -> Iterator[Any]:
        """Publish the open file once the rest of the run has ended well (see the class;
        with ``exactly_once`` the final checkpoint publishes it)."""
        if self.exactly_once:
            return
        if self._file is not None:
            self._context().wait_for_run_outcome()  # raises RunAborted if the run failed
        path = self.finish()
        if path is not None:
            yield path

    def as_function(self) -> NodeFunction:
        self.validate()
        node = self
        if uses_standard_path(self):
            standard = super().as_function()

            def guarded_write(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
                try:
                    standard(inp, outp)
                except BaseException:
                    node.discard()
                    raise

            return guarded_write

        def write_function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            node.setup()
            restore_state(node)
            try:
                node.write_items(inp, outp)
                finished = list(node.cleanup())
            except BaseException:
                node.discard()
                raise
            for out in finished:
                outp(out)

        return write_function

    def discard(self) -> None:
        """Delete the unfinished output file, if any (the run failed or was aborted)."""
        file, self._file = self._file, None
        if file is not None:
            file.discard()


def _check_exactly_once(sink: FileSink, exactly_once: Any, name: str | None) -> bool:
    """Refuse ``exactly_once`` where a writer cannot publish a part per checkpoint."""
    label = name or type(sink).__name__
    if not isinstance(exactly_once, bool):
        raise GraphError(f"{label}: exactly_once must be true or false, got {exactly_once!r}")
    if not exactly_once:
        return False
    why = None
    if not sink.rotates:
        why = (
            "needs a '{part}' field in path to name the part of each checkpoint, e.g. "
            f"'out/part-{{part:05d}}.jsonl'; got {sink.path!r}"
        )
    elif sink.append or sink.rotate_items is not None:
        why = "writes a part per checkpoint: drop append= and rotate_items="
    if why is not None:
        raise GraphError(f"{label}: exactly_once=True {why} (or drop exactly_once=True)")
    return True


def check_location(path: str, storage_options: Mapping[str, Any] | None, node: str) -> None:
    """Refuse, before any thread starts, what ``path`` needs and does not have: the package
    of its URL's protocol or of its compression; ``storage_options`` for a local path."""
    require_compression(path)
    if is_url(path):
        require_url(path)
    elif storage_options is not None:
        raise GraphError(
            f"{node}: storage_options apply to URLs (s3://..., memory://...), and "
            f"{path!r} is a local path; drop storage_options, or write to a URL"
        )


def uses_standard_path(node: NanoNode) -> bool:
    """True when ``node`` has options (such as an error policy) beyond the queue and batch
    sizes: its ``as_function`` then runs ``process_item`` per item, as ``NanoNode`` does,
    instead of a faster loop of its own."""
    return bool(set(node.options) - set(QUEUE_OPTIONS))
