"""What the file and format nodes share: their errors, text that knows its file, path
confinement, and files published atomically (written under a temporary name, then renamed).
"""

from __future__ import annotations

import codecs
import io
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .._core.errors import GraphError, NanoStreamError
from .._core.node import NanoNode, NodeFunction
from .._core.policy import POLICY_OPTIONS

__all__ = [
    "AtomicFile",
    "FileBytes",
    "FileSink",
    "FileText",
    "FormatError",
    "PathRefusedError",
    "confine",
    "decode_error_line",
    "describe",
    "uses_standard_path",
]


class FormatError(NanoStreamError, ValueError):
    """Input data is malformed: a bad CSV row, a bad JSON line, bytes that do not decode.

    ``source`` names where the data came from (a file path, or a description of the item)
    and ``line`` is the 1-based line number, when known; both are in the message.

    Example:
        >>> import nanostream
        >>> err = nanostream.FormatError("expected 2 fields, got 3", source="a.csv", line=4)
        >>> print(err)
        a.csv, line 4: expected 2 fields, got 3
        >>> err.source, err.line
        ('a.csv', 4)
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        self.message = message
        self.source = source
        self.line = line
        where = ", ".join(
            part for part in (source, f"line {line}" if line is not None else None) if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class PathRefusedError(NanoStreamError, PermissionError):
    """A node was asked for a path outside the directory it is confined to.

    Example:
        >>> from nanostream.nodes import LocalFileReader, PathRefusedError
        >>> reader = LocalFileReader(directory="/srv/data")
        >>> try:
        ...     list(reader.process_item("../../etc/passwd"))
        ... except PathRefusedError as exc:
        ...     print(exc)
        '../../etc/passwd' is outside the directory '/srv/data' that LocalFileReader is confined to
    """


class FileText(str):
    """Text read from a file: a ``str`` that also carries the file's ``path``.

    It is an ordinary string in every other way; downstream nodes use ``path`` to name the
    file in their error messages.

    Example:
        >>> from nanostream.nodes import FileText
        >>> text = FileText("a,b\\n", path="/data/x.csv")
        >>> text == "a,b\\n", text.path
        (True, '/data/x.csv')
    """

    path: str

    def __new__(cls, text: str, path: str) -> FileText:
        obj = super().__new__(cls, text)
        obj.path = path
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.path))


class FileBytes(bytes):
    """Bytes read from a file: a ``bytes`` that also carries the file's ``path``.

    Example:
        >>> from nanostream.nodes import FileBytes
        >>> data = FileBytes(b"\\x00\\x01", path="/data/x.bin")
        >>> data == b"\\x00\\x01", data.path
        (True, '/data/x.bin')
    """

    path: str

    def __new__(cls, data: bytes, path: str) -> FileBytes:
        obj = super().__new__(cls, data)
        obj.path = path
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (bytes(self), self.path))


def describe(item: object, index: int) -> str:
    """Where an item of text came from, for error messages: its file, or its position."""
    path = getattr(item, "path", None)
    if isinstance(path, str):
        return path
    return f"input item #{index}"


def confine(directory: str | None, item: object, node: str) -> str:
    """The path ``item`` names; inside ``directory`` (resolved) when one is given."""
    if not isinstance(item, (str, os.PathLike)):
        raise FormatError(
            f"{node} expects a file path (str or os.PathLike), got {type(item).__name__}: "
            f"{item!r:.80}"
        )
    name = os.fspath(item)
    if not isinstance(name, str):
        raise FormatError(f"{node} expects a text path, got bytes {name!r:.80}")
    if directory is None:
        return name
    root = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        raise PathRefusedError(
            f"{name!r} is outside the directory {directory!r} that {node} is confined to"
        )
    return path


def decode_error_line(path: str, encoding: str, errors: str) -> tuple[int, str] | None:
    """The 1-based line of ``path`` where decoding first fails, and the decoder's message."""
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    with open(path, "rb") as file:
        for number, raw in enumerate(file, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as exc:
                return number, str(exc)
    return None


def decode_failure(
    path: str,
    encoding: str,
    errors: str,
    exc: UnicodeDecodeError,
    *,
    errors_option: str | None = None,
) -> FormatError:
    """A :class:`FormatError` naming the line of ``path`` that is not ``encoding``.

    ``errors_option`` names the node's option for the decoding errors mode, if it has one.
    """
    found = decode_error_line(path, encoding, errors)
    line, message = found if found is not None else (None, str(exc))
    hint = "pass encoding=... (e.g. 'latin-1')"
    if errors_option is not None:
        hint += f" or {errors_option}='replace'"
    return FormatError(f"not valid {encoding} ({message}); {hint}", source=path, line=line)


# ----------------------------------------------------------------------------- atomic files
class AtomicFile:
    """A file written under a hidden temporary name beside ``target``, renamed when done.

    A reader never sees half a file: ``target`` appears (or is replaced) only by
    :meth:`commit`; :meth:`discard` removes the temporary file. With ``append=True`` the
    temporary file starts as a copy of ``target``'s existing content.

    Example:
        >>> import tempfile, pathlib
        >>> from nanostream.nodes._common import AtomicFile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> f = AtomicFile(target)
        >>> _ = f.file.write("hello\\n")
        >>> target.exists()
        False
        >>> f.commit() == str(target), target.read_text()
        (True, 'hello\\n')
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        binary: bool = False,
        encoding: str = "utf-8",
        newline: str | None = None,
        append: bool = False,
        fsync: bool = False,
    ) -> None:
        self.target = Path(target)
        self.fsync = fsync
        self.target.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = self.target.with_name(f".{self.target.name}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:  # pragma: no cover - 32 random bits collided
                continue
            break
        self.tmp = tmp
        raw = os.fdopen(fd, "wb", buffering=1 << 16)
        self.existing = 0
        try:
            if append and self.target.exists():
                with open(self.target, "rb") as old:
                    shutil.copyfileobj(old, raw)
                self.existing = raw.tell()
        except BaseException:
            raw.close()
            os.unlink(tmp)
            raise
        self._raw = raw
        self.file: IO[Any] = (
            raw if binary else io.TextIOWrapper(raw, encoding=encoding, newline=newline)
        )
        self.done = False

    def commit(self) -> str:
        """Flush, close and rename into place; returns the target path."""
        if self.done:
            return str(self.target)
        self.done = True
        try:
            self.file.flush()
            if self.fsync:
                os.fsync(self._raw.fileno())
            self.file.close()
            os.replace(self.tmp, self.target)
        except BaseException:
            self._remove()
            raise
        return str(self.target)

    def discard(self) -> None:
        """Close and delete the temporary file; ``target`` is left as it was."""
        if self.done:
            return
        self.done = True
        self._remove()

    def _remove(self) -> None:
        try:
            self.file.close()
        except (OSError, ValueError):
            pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class FileSink(NanoNode):
    """Base of the writers that put a stream of items into one file (or one per part).

    A subclass implements :meth:`write_items` (the loop over its input) using
    :meth:`current` for the open file. The output is published atomically when the
    input ends, on a graceful stop, or every ``rotate_items`` items (``path`` then has a
    ``{part}`` field, e.g. ``"out-{part:04d}.jsonl"``); each finished file's path is
    emitted downstream. If the run fails or is aborted, the unfinished file is deleted.
    """

    binary = False
    newline: str | None = None
    holds_items = True  # items are done once the file holding them is published
    policy_options = POLICY_OPTIONS  # with options, as_function runs NanoNode's (per item)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        append: bool = False,
        rotate_items: int | None = None,
        encoding: str = "utf-8",
        fsync: bool = False,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        self.path = os.fspath(path)
        has_part = "{part" in self.path
        if rotate_items is not None:
            if not isinstance(rotate_items, int) or rotate_items < 1:
                raise GraphError(f"rotate_items must be a positive integer, got {rotate_items!r}")
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
        self.rotate_items = rotate_items
        self.encoding = encoding
        self.fsync = fsync
        self.configure(**options)
        self._file: AtomicFile | None = None
        self._part = 0
        self._count = 0

    # ------------------------------------------------------------------ for subclasses
    def current(self) -> AtomicFile:
        """The open output file, opening the next part if needed."""
        if self._file is None:
            target = self.path.format(part=self._part) if "{part" in self.path else self.path
            self._file = AtomicFile(
                target,
                binary=self.binary,
                encoding=self.encoding,
                newline=self.newline,
                append=self.append,
                fsync=self.fsync,
            )
            self.opened(self._file)
        return self._file

    def opened(self, file: AtomicFile) -> None:
        """Called when a new output file is opened (e.g. to write a header)."""

    def finish(self) -> str | None:
        """Publish the open file, if any; returns its path."""
        file, self._file = self._file, None
        if file is None:
            return None
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

    # ------------------------------------------------------------------ node protocol
    def setup(self) -> None:
        self._file = None
        self._part = 0
        self._count = 0

    def process_item(self, item: Any) -> Iterator[Any]:
        """Write one item (as the node function does); yields a finished part's path."""
        finished: list[Any] = []
        self.write_items((item,), finished.append)
        yield from finished

    def cleanup(self) -> Iterator[Any]:
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
            try:
                node.write_items(inp, outp)
            except BaseException:
                node.discard()
                raise
            for out in node.cleanup():
                outp(out)

        return write_function

    def discard(self) -> None:
        """Delete the unfinished output file, if any (the run failed or was aborted)."""
        file, self._file = self._file, None
        if file is not None:
            file.discard()


def uses_standard_path(node: NanoNode) -> bool:
    """True when ``node`` has options (such as an error policy) beyond the queue and batch
    sizes: its ``as_function`` then runs ``process_item`` per item, as ``NanoNode`` does,
    instead of a faster loop of its own."""
    return bool(set(node.options) - {"queue_size", "batch_size"})
