"""What the file and format nodes read: their errors, text and bytes that know their file,
path confinement, JSON parsing with the line that failed, and reading through a file.

Example:
    >>> from nanostream.connectors._fileread import FileText
    >>> FileText("a,b", path="data.csv").path
    'data.csv'
"""

from __future__ import annotations

import codecs
import io
import json
import os
import posixpath
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from .._core.errors import NanoStreamError
from .._core.node import NanoNode, NodeFunction
from .._core.policy import POLICY_OPTIONS
from ._filesystems import (
    COMPRESSIONS,
    StorageOptions,
    compression_of,
    decompressing,
    filesystem,
    is_decompression_error,
    is_url,
    local_path,
    require_compression,
)

__all__ = [
    "FileBytes",
    "FilePath",
    "FilePosition",
    "FileText",
    "FormatError",
    "PathRefusedError",
    "ReadThrough",
    "as_a_path",
    "confine",
    "decode_error_line",
    "decode_failure",
    "describe",
    "is_one_line",
    "parse_json",
    "text_of",
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


class FilePath(str):
    """The path of a file, as :class:`~nanostream.nodes.LocalDirectoryWatchdog` emits it.

    An ordinary ``str`` in every way, so any node that takes a path takes it; the type
    only tells the readers of text (:class:`~nanostream.nodes.CSVReader`,
    :class:`~nanostream.nodes.JSONLinesReader`) that the item is a file to read, not text
    to parse, so that without ``paths=True`` they say so instead of parsing the path.

    Example:
        >>> from nanostream.nodes import FilePath
        >>> path = FilePath("/data/in/orders.csv")
        >>> path == "/data/in/orders.csv", isinstance(path, str)
        (True, True)
    """

    __slots__ = ()


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
    if is_url(directory) or is_url(name):
        return _confine_url(directory, name, node)
    root = os.path.realpath(local_path(directory))
    path = os.path.realpath(os.path.join(root, local_path(name)))
    if os.path.commonpath([root, path]) != root:
        raise PathRefusedError(
            f"{name!r} is outside the directory {directory!r} that {node} is confined to"
        )
    return path


def _confine_url(directory: str, name: str, node: str) -> str:
    """The URL ``name`` names under the URL ``directory``; refused if it leads out of it."""
    scheme, _, rest = directory.partition("://")
    root = posixpath.normpath("/" + rest.rstrip("/"))
    if is_url(name):
        other, _, inner = name.partition("://")
        path = posixpath.normpath("/" + inner)
        same = other.lower() == scheme.lower()
    else:
        path = posixpath.normpath(posixpath.join(root, name))
        same = True
    if not same or (path != root and not path.startswith(root.rstrip("/") + "/")):
        raise PathRefusedError(
            f"{name!r} is outside the directory {directory!r} that {node} is confined to"
        )
    return f"{scheme}://{path[1:]}"


def decode_error_line(
    path: str, encoding: str, errors: str, storage_options: StorageOptions | None = None
) -> tuple[int, str] | None:
    """The 1-based line of ``path`` where decoding first fails, and the decoder's message."""
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    with ReadThrough(path, "rb", storage_options=storage_options) as whole:
        for number, raw in enumerate(whole.file, 1):
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
    storage_options: StorageOptions | None = None,
) -> FormatError:
    """A :class:`FormatError` naming the line of ``path`` that is not ``encoding``.

    ``errors_option`` names the node's option for the decoding errors mode, if it has one.
    """
    found = decode_error_line(path, encoding, errors, storage_options)
    line, message = found if found is not None else (None, str(exc))
    hint = "pass encoding=... (e.g. 'latin-1')"
    if errors_option is not None:
        hint += f" or {errors_option}='replace'"
    return FormatError(f"not valid {encoding} ({message}); {hint}", source=path, line=line)


def parse_json(
    text: str | bytes,
    *,
    source: str | None = None,
    line: int | None = None,
    loads: Callable[[Any], Any] = json.loads,
) -> Any:
    """The value of the JSON ``text``, or a :class:`FormatError` for that ``source`` and ``line``.

    Every reader of JSON in nanostream parses through it (the HTTP nodes turn its error into
    a ``ConnectorError``), so that each bad piece of text is one :class:`FormatError`
    naming where it came from, whatever went wrong: text that is not JSON, bytes that are
    not UTF-8, or arrays and objects nested deeper than the parser can follow (a bare
    ``RecursionError`` otherwise). ``loads`` is the parser
    (``json.loads`` by default, which also takes UTF-8 bytes).

    Example:
        >>> from nanostream.connectors._fileread import parse_json
        >>> parse_json('{"a": [1, 2]}')
        {'a': [1, 2]}
        >>> try:
        ...     parse_json("[" * 100_000, source="deep.jsonl", line=3)
        ... except ValueError as exc:
        ...     print(type(exc).__name__, exc)
        FormatError deep.jsonl, line 3: not readable JSON: its arrays and objects are nested ...
    """
    try:
        return loads(text)
    except RecursionError:
        raise FormatError(
            "not readable JSON: its arrays and objects are nested deeper than the "
            f"parser can follow ({sys.getrecursionlimit():,} levels at most)",
            source=source,
            line=line,
        ) from None
    except UnicodeDecodeError as exc:
        raise FormatError(f"not valid UTF-8: {exc}", source=source, line=line) from None
    except ValueError as exc:
        raise FormatError(f"not valid JSON: {exc}", source=source, line=line) from None


class ReadThrough:
    """A file opened to be read to its end, that can tell whether it was truncated meanwhile.

    Open it as a context manager and read ``file``; once the end is reached,
    :meth:`truncated` is a :class:`FormatError` if the file got shorter while it was read
    (its end came before the size it had when it was opened, or it is shorter now), so
    the data read may be incomplete; otherwise None. A file that grows while it is read
    is read up to where it ends when the reader gets there. Only regular local files are
    checked (a pipe or a device has no size to compare; an object in a store is replaced
    whole, never cut).

    ``path`` may be a URL (``s3://bucket/key``, ``memory://...``: any ``fsspec`` protocol,
    opened with ``storage_options``), and a path ending in ``.gz``, ``.bz2``, ``.xz`` or
    ``.zst`` is read decompressed; ``file`` then streams, in bounded memory. Compressed
    data that is cut short or corrupt raises a :class:`FormatError` naming the file when
    it leaves the ``with`` block.

    Example:
        >>> import os, pathlib, tempfile
        >>> from nanostream.connectors._fileread import ReadThrough
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "rows.txt"
        >>> _ = path.write_text("one\\ntwo\\nthree\\n")
        >>> with ReadThrough(path, "rb", buffering=0) as whole:
        ...     first = whole.file.readline()
        ...     os.truncate(path, 4)                 # another program truncates it
        ...     rest = whole.file.read()
        ...     print(first, rest, whole.truncated())
        b'one\\n' b'' .../rows.txt: the file was truncated while it was read: ...
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "r",
        *,
        storage_options: StorageOptions | None = None,
        **options: Any,
    ) -> None:
        self.path = os.fspath(path)
        self.compression = compression_of(self.path)
        self.size: int | None = None
        self._fd: int | None = None
        if self.compression is None and not is_url(self.path):
            self.file: IO[Any] = open(local_path(self.path), mode, **options)  # noqa: SIM115
            self._raw: IO[Any] | None = None
            self._measure(self.file)
            return
        buffering = options.pop("buffering", -1)
        if is_url(self.path):
            fs, inner = filesystem(self.path, storage_options)
            raw: IO[Any] = fs.open(inner, "rb")
        else:
            raw = open(local_path(self.path), "rb", buffering=buffering)  # noqa: SIM115
            self._measure(raw)
        try:
            require_compression(self.path)
            binary: IO[bytes] = decompressing(raw, self.compression)
            if "b" in mode:
                self.file = binary
            else:
                self.file = io.TextIOWrapper(binary, **options)
        except BaseException:
            raw.close()
            raise
        self._raw = raw

    def _measure(self, file: IO[Any]) -> None:
        """Note the size of a regular local file, to compare at the end."""
        try:
            st = os.fstat(file.fileno())
        except BaseException:
            file.close()
            raise
        if stat.S_ISREG(st.st_mode):
            self.size = st.st_size
            self._fd = file.fileno()

    def __enter__(self) -> ReadThrough:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        try:
            self.file.close()
        finally:
            if self._raw is not None:
                self._raw.close()
        if exc is not None and is_decompression_error(exc, self.compression):
            raise FormatError(
                f"not readable as {self.compression}: {exc}; the file is cut short or "
                "corrupt (read it again once it is complete, or check how it was written)",
                source=self.path,
            ) from exc

    def truncated(self, *, ended: bool = True) -> FormatError | None:
        """A :class:`FormatError` if the file got shorter while it was read, else None.

        Once the end is reached (``ended``), also if the end came before the size the file
        had when it was opened; before that (``ended=False``, say on a record that does
        not parse), only if the file is shorter now.
        """
        if self.size is None or self._fd is None:
            return None
        fd = self._fd
        reached = os.lseek(fd, 0, os.SEEK_CUR)  # how far it has been read
        now = os.fstat(fd).st_size
        if (reached >= self.size or not ended) and now >= self.size:
            return None
        where = f"its end came at byte {reached:,}" if ended else f"{reached:,} were read"
        return FormatError(
            f"the file was truncated while it was read: it had {self.size:,} bytes when "
            f"it was opened, {where} and it has {now:,} now, so "
            "what was read of it may be incomplete; read it again once it is complete "
            "(a program that writes files for others to read should write under a "
            "temporary name and rename, as nanostream's writers do)",
            source=self.path,
        )


def text_of(item: object, encoding: str, index: int, node: str) -> tuple[str, str]:
    """The text of a str or bytes item, and where it came from (a reader of text)."""
    source = describe(item, index)
    if isinstance(item, str):
        return item, source
    if isinstance(item, (bytes, bytearray)):
        try:
            return bytes(item).decode(encoding), source
        except UnicodeDecodeError as exc:
            line = item.count(b"\n", 0, exc.start) + 1
            raise FormatError(
                f"not valid {encoding} ({exc}); pass encoding=...", source=source, line=line
            ) from None
    raise FormatError(
        f"{node} takes text, bytes or a path (os.PathLike, or str with paths=True), got "
        f"{type(item).__name__}: {item!r:.80}; turn the items into one of these first "
        "(e.g. with a Map)"
    )


def is_one_line(text: str) -> bool:
    """Whether ``text`` has no line break."""
    return "\n" not in text and "\r" not in text


_FILE_ENDINGS = (".csv", ".tsv", ".jsonl", ".json", ".txt", *COMPRESSIONS)


def as_a_path(item: object, text_characters: str = "") -> str | None:
    """What a text item is, if it is one line that is a path rather than text; else None.

    It is a path if it names an existing file; or, with none of the characters of text
    (commas, tabs, quotes, and ``text_characters``, say a CSV delimiter), if it ends like
    the name of a data file (``.csv``, ``.jsonl``, ...) or holds a path separator.
    """
    if (
        not isinstance(item, str)
        or isinstance(item, FileText)
        or not is_one_line(item)
        or item.strip() == ""
    ):
        return None
    if os.path.isfile(item):
        return "which names an existing file"
    if any(c in item for c in ",\t\"'" + text_characters):
        return None
    separators = os.sep + (os.altsep or "")
    if item.strip().lower().endswith(_FILE_ENDINGS) or any(c in item for c in separators):
        return "which looks like the path of a file, but no such file exists"
    return None


class FilePosition(NanoNode):
    """A reader of files by path that keeps its place inside the file in checkpoints.

    In a run with a state store (docs/state.md) the reader's state is the file it is
    reading and how many of its records (rows, values, lines) it has emitted; between two
    files it is None. While it reads a file it offers the run a checkpoint after each
    record (``between_items``): when the file's path was the last item it read and a
    checkpoint's barrier follows it, the barrier goes out there, after the records so far.
    A restarted reader first reads the file of its restored state again from its start,
    skipping the records it had emitted (also for a compressed file), then reads its
    input. With an error policy (``on_error="skip"`` or ``"retry"``) the records of an
    item are held back at first, so checkpoints wait for the end of the file.

    Subclasses read a file with :meth:`positioned` and define :meth:`records_of_path`;
    their node function (``as_function``) emits the rest of a restored file before it
    reads its first item (a subclass with its own node function calls
    ``nanostream._core.node_function.restore_state`` after ``setup()``, then
    :meth:`resume`).

    Example:
        >>> import pathlib, tempfile
        >>> class Words(FilePosition):
        ...     def records_of_path(self, path):
        ...         return pathlib.Path(path).read_text().split()
        ...     def process_item(self, path):
        ...         yield from self.positioned(path, self.records_of_path(path))
        >>> path = pathlib.Path(tempfile.mkdtemp(), "words.txt")
        >>> _ = path.write_text("a b c")
        >>> node = Words()
        >>> node.restore_state((str(path), 2))  # a checkpoint taken after two records
        >>> list(node.resume()), node.snapshot_state()
        (['c'], None)
    """

    policy_options = POLICY_OPTIONS  # its node function is NanoNode's, resuming first
    _at: list[Any] | None = None  # [path, records emitted] while a file is read
    _resume_at: tuple[str, int] | None = None
    _read_again: Callable[[str], Iterable[Any]] | None = None

    def snapshot_state(self) -> tuple[str, int] | None:
        """The file being read and how many of its records were emitted (None between files).

        Example: the one of the class shows the pair.
        """
        at = self._at
        return None if at is None else (at[0], at[1])

    def restore_state(self, state: tuple[str, int] | None) -> None:
        """Read the rest of this file first (what :meth:`snapshot_state` took).

        Example: the one of the class shows the pair.
        """
        self._resume_at = None if state is None else (str(state[0]), int(state[1]))

    def positioned(self, path: str, records: Iterable[Any], skip: int = 0) -> Iterator[Any]:
        """``records``, the records of the file ``path``, with the reader's place kept.

        The first ``skip`` records are left out (read, not emitted).
        """
        ctx = self._ns_context
        offer = None
        if ctx is not None and ctx.on_idle is not None and not self.error_policy.guarded:
            offer = ctx.between_items
        at = self._at = [path, skip]
        try:
            it = iter(records)
            for _ in range(skip):
                if next(it, _SKIPPED) is _SKIPPED:
                    return
            for record in it:
                yield record
                at[1] += 1
                if offer is not None:
                    offer()
        finally:
            self._at = None

    def as_function(self) -> NodeFunction:
        function = super().as_function()
        node = self

        def resuming(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            def first_the_rest(inp: Iterable[Any]) -> Iterator[Any]:
                # first pulled after setup() and restore_state(), before the first item
                for record in node.resume():
                    outp(record)
                yield from inp

            function(first_the_rest(inp), outp)

        return resuming

    def resume(self) -> Iterator[Any]:
        """The rest of the file the restored state was in, if any (once)."""
        resume_at, self._resume_at = self._resume_at, None
        if resume_at is not None:
            path, done = resume_at
            yield from self.positioned(path, self.records_of_path(path), done)

    def records_of_path(self, path: str) -> Iterable[Any]:
        """The records of the file ``path``, as the reader emits them."""
        raise NotImplementedError


_SKIPPED = object()
