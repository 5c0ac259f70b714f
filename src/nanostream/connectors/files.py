"""File nodes: read files, write files, print items.

* :class:`LocalFileReader` takes paths and emits each file's content, whole or line by line.
* :class:`FileWriter` writes items to one file, or each item to its own file.
* :class:`PrinterOfThings` prints each item and passes it on.

Watching a folder for new files is :class:`~nanostream.nodes.LocalDirectoryWatchdog`
(in :mod:`nanostream.nodes.watch`); CSV and JSON lines are in :mod:`nanostream.nodes.formats`.
"""

from __future__ import annotations

import glob
import os
import pprint
import string
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import IO, Any

from .._core.context import node_label
from .._core.errors import GraphError
from .._core.node import NanoNode
from ..operators._operator import check_positive
from ._fileread import (
    FileBytes,
    FilePosition,
    FileText,
    FormatError,
    PathRefusedError,
    ReadThrough,
    confine,
    decode_failure,
)
from ._filesink import FileSink
from ._filesystems import StorageOptions, is_url, local_path, require_reader
from ._publish import AtomicFile, OutputExistsError, numbered_files, refusal, remove_leftovers

__all__ = ["FileWriter", "LocalFileReader", "PrinterOfThings"]


class LocalFileReader(FilePosition):
    """Takes file paths and emits each file's content.

    Each input item is a path (``str`` or ``os.PathLike``). With ``directory`` set, it is a
    name relative to that directory (absolute paths are accepted too), and a path that
    resolves outside the directory — ``..``, an absolute path elsewhere, a symbolic link
    pointing out — is refused with :class:`PathRefusedError`. Without ``directory``,
    relative paths are relative to the current directory.

    * ``serialize=False`` (default): one item per file, the whole text as a
      :class:`FileText` (a ``str`` that knows its ``path``).
    * ``serialize=True``: one item per line, streamed, so a file of any size is read in
      bounded memory; line ends are removed unless ``keep_line_ends=True``.
    * ``chunk_size=n``: with ``serialize=True``, pieces of ``n`` characters (or bytes)
      instead of lines — for files that are not line-oriented.
    * ``binary=True``: bytes instead of text (whole files as :class:`FileBytes`).

    ``encoding``, ``encoding_errors`` and ``newline`` are :func:`open`'s ``encoding``,
    ``errors`` and ``newline`` (``encoding_errors="replace"`` puts U+FFFD in place of
    bytes that do not decode). Text that does not decode raises
    :class:`~nanostream.FormatError` naming the file and the line; so does a file that is
    truncated while it is read, once its end is reached.

    A file whose name ends in ``.gz``, ``.bz2``, ``.xz`` or ``.zst`` is read
    decompressed (``binary=True`` included; ``.zst`` needs ``pip install
    'nanostream[compress]'``). A path that is a URL (``s3://bucket/key``,
    ``memory://...``: any ``fsspec`` protocol; ``directory`` may be one too) is read
    through ``fsspec`` with ``storage_options`` (see docs/storage.md); its credentials are
    masked wherever the node is shown. (The old keyword
    ``errors=`` still works, with a ``DeprecationWarning``: a node's ``errors`` is its
    error port.)

    Example:
        >>> import pathlib, tempfile, nanostream
        >>> from nanostream.nodes import LocalFileReader
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.txt").write_text("one\\ntwo\\n")
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(["a.txt"]) > LocalFileReader(folder, serialize=True) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        ['one', 'two']
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        serialize: bool = False,
        *,
        encoding: str = "utf-8",
        encoding_errors: str = "strict",
        binary: bool = False,
        newline: str | None = None,
        keep_line_ends: bool = False,
        chunk_size: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        self._storage = StorageOptions(storage_options)
        self.storage_options = None if storage_options is None else self._storage.shown
        require_reader(storage_options, None if directory is None else os.fspath(directory))
        if "errors" in options:  # the old name, before the errors port existed
            warnings.warn(
                "LocalFileReader(errors=...) is deprecated: use encoding_errors=... "
                "(a node's errors is its error port)",
                DeprecationWarning,
                stacklevel=2,
            )
            encoding_errors = options.pop("errors")
        self.directory = None if directory is None else local_path(os.fspath(directory))
        self.serialize = serialize
        self.encoding = encoding
        self.encoding_errors = encoding_errors
        self.binary = binary
        self.newline = newline
        self.keep_line_ends = keep_line_ends
        label = node_label(self, with_class=True)
        check_positive(label, "chunk_size", chunk_size, integer=True, optional=True)
        self.chunk_size = chunk_size
        self.configure(**options)

    def process_item(self, item: Any) -> Iterator[Any]:
        path = confine(self.directory, item, node_label(self))
        try:
            if self.serialize:
                yield from self.positioned(path, self.records_of_path(path))
                return
            (data,) = self._read_through(path, _whole)  # read and checked before it goes out
            yield (FileBytes if self.binary else FileText)(data, path)
        except UnicodeDecodeError as exc:
            raise decode_failure(
                path,
                self.encoding,
                self.encoding_errors,
                exc,
                errors_option="encoding_errors",
                storage_options=self._storage,
            ) from None

    def records_of_path(self, path: str) -> Iterator[Any]:
        """The pieces (lines or chunks) of the file ``path`` (see ``FilePosition``)."""
        return self._read_through(path, self._binary_lines if self.binary else self._text_lines)

    def _read_through(self, path: str, read: Callable[[IO[Any]], Iterator[Any]]) -> Iterator[Any]:
        """``read(file)`` of the file ``path`` opened as this node reads it (bytes, or text
        in its encoding), then the error of a file truncated while it was read."""
        if self.binary:
            opened = ReadThrough(path, "rb", storage_options=self._storage)
        else:
            opened = ReadThrough(
                path,
                encoding=self.encoding,
                errors=self.encoding_errors,
                newline=self.newline,
                storage_options=self._storage,
            )
        with opened as whole:
            yield from read(whole.file)
            truncated = whole.truncated()
        if truncated is not None:
            raise truncated

    def _text_lines(self, f: IO[str]) -> Iterator[str]:
        if self.chunk_size is not None:
            yield from iter(partial(f.read, self.chunk_size), "")
        elif self.keep_line_ends:
            yield from f
        elif self.newline is None or self.newline == "\n":
            for line in f:
                yield line[:-1] if line[-1:] == "\n" else line
        else:
            for line in f:
                yield _strip_line_end(line)

    def _binary_lines(self, f: IO[bytes]) -> Iterator[bytes]:
        if self.chunk_size is not None:
            yield from iter(partial(f.read, self.chunk_size), b"")
        elif self.keep_line_ends:
            yield from f
        else:
            for line in f:
                if line[-1:] != b"\n":
                    yield line
                else:
                    yield line[:-2] if line[-2:-1] == b"\r" else line[:-1]


def _whole(f: IO[Any]) -> Iterator[Any]:
    yield f.read()


def _same_place(path: str, directory: str) -> bool:
    """True when ``path`` names ``directory`` itself."""
    if is_url(path):
        return path.rstrip("/") == directory.rstrip("/")
    return os.path.realpath(path) == os.path.realpath(directory)


def _strip_line_end(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line[-1:] in ("\n", "\r"):
        return line[:-1]
    return line


class FileWriter(FileSink):
    """Writes items to files: all into one file, or each into a file of its own.

    * ``FileWriter(path)``: every item is written to ``path``, each followed by
      ``line_end`` (``"\\n"``; ``""`` for none). The file is built under a hidden temporary
      name and renamed to ``path`` when the input ends or the run stops gracefully, so a
      reader never sees half of it. A ``path`` that exists is refused
      (:class:`~nanostream.nodes.OutputExistsError`) unless ``append=True`` (keep its
      content and add to it) or ``overwrite=True`` (replace it). ``rotate_items=n``
      publishes a part every ``n`` items (``path`` then has a ``{part}`` field, e.g.
      ``"log-{part:04d}.txt"``); parts are numbered on from the highest one there.
    * ``FileWriter(directory=..., filename="{n:06d}.txt")``: each item is a file of its
      own, written to a temporary name and renamed. ``filename`` is a format string (fields
      ``n``, the item's number, and ``item``) or a function ``(item, n) -> name``; a name
      that leads outside ``directory`` is refused. When ``n`` is the only field, ``n``
      counts on after the highest number of the files already there (from 0 in an empty
      directory, or with ``overwrite=True``), so a run that resumes keeps every earlier
      run's files. When the name comes from the item (an ``{item}`` field, or a
      function), a file that exists is refused (:class:`~nanostream.nodes.OutputExistsError`,
      saying what to pass) unless ``overwrite=True``; ``n`` then counts from 0.

    Temporary files that an earlier run left behind (it was killed) are deleted when a run
    starts (with ``directory=``, those in the directory itself, not in its sub-folders).

    A file name ending in ``.gz``, ``.bz2``, ``.xz`` or ``.zst`` is written compressed; a
    ``path`` or ``directory`` that is a URL (``s3://bucket/out``, ``memory://...``) is
    uploaded whole when each file is done, with ``storage_options`` (see
    :class:`~nanostream.connectors._filesink.FileSink` and docs/storage.md).

    With ``exactly_once=True`` (in a run with a state store, ``state=``) ``path`` is a
    template with a ``{part}`` field and the output is a folder of parts, one per checkpoint:
    the rows since the checkpoint before, published (renamed from a hidden name) once the
    checkpoint is committed, so a restart after a crash writes each row into exactly one
    published part (see :class:`~nanostream.connectors._filesink.FileSink` and
    docs/state.md). Not with ``directory=``, ``append`` or ``rotate_items``.

    Items are text (other objects are written as ``str(item)``), or bytes with
    ``binary=True``. The path of every finished file is emitted downstream. If the run
    fails or is aborted, unfinished files are deleted.

    Example:
        >>> import pathlib, tempfile, nanostream
        >>> from nanostream.nodes import FileWriter
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> writer = FileWriter(directory=folder, filename="{n}.txt")
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(["alpha", "beta"]) > writer > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> [pathlib.Path(p).read_text() for p in sink.items]
        ['alpha', 'beta']
        >>> sorted(p.name for p in folder.iterdir())
        ['0.txt', '1.txt']
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        filename: str | Callable[[Any, int], str] = "{n:06d}.txt",
        line_end: str = "\n",
        binary: bool = False,
        append: bool = False,
        overwrite: bool = False,
        rotate_items: int | None = None,
        encoding: str = "utf-8",
        fsync: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        if (path is None) == (directory is None):
            raise GraphError(
                "FileWriter needs either path= (all items into one file) or directory= "
                "(one file per item), not both"
            )
        if directory is not None and (append or rotate_items is not None):
            raise GraphError("append and rotate_items apply to FileWriter(path=...) only")
        if directory is not None and options.get("exactly_once"):
            raise GraphError(
                f"{name or 'FileWriter'}: exactly_once=True writes a part per checkpoint, with "
                "path='out/part-{part:05d}.txt', not a file per item (directory=)"
            )
        super().__init__(
            path if path is not None else os.fspath(directory),  # type: ignore[arg-type]
            append=append,
            overwrite=overwrite,
            rotate_items=rotate_items,
            encoding=encoding,
            fsync=fsync,
            storage_options=storage_options,
            name=name,
            **options,
        )
        self.directory = None if directory is None else local_path(os.fspath(directory))
        self.filename = filename
        self.line_end = line_end
        self.binary = binary
        self._n = 0

    def setup(self) -> None:
        if self.directory is None:
            super().setup()
            self._n = 0
            return
        self._file = None
        if is_url(self.directory):
            pattern = self.directory.rstrip("/") + "/*"
            remove_leftovers(pattern, self.label, self._storage)
        else:
            remove_leftovers(os.path.join(glob.escape(self.directory), "*"), self.label)
        numbers: list[int] = []
        if isinstance(self.filename, str) and self.numbered and not self.overwrite:
            numbers = numbered_files(self.filename, "n", self.directory, self._storage)
        self._n = numbers[-1] + 1 if numbers else 0  # on after an earlier run's files

    @property
    def numbered(self) -> bool:
        """True when ``filename`` is a template whose only field is ``n``.

        Its files are then numbered on after the highest one in ``directory``, so a run
        never meets a file of an earlier run.

        Example:
            >>> from nanostream.nodes import FileWriter
            >>> FileWriter(directory="out", filename="{n:06d}.txt").numbered
            True
            >>> FileWriter(directory="out", filename="{item}.txt").numbered
            False
        """
        if callable(self.filename):
            return False
        fields = [f for _, f, _, _ in string.Formatter().parse(self.filename) if f is not None]
        return bool(fields) and all(f == "n" for f in fields)

    def validate(self) -> None:
        if self.directory is None:
            super().validate()
        else:
            NanoNode.validate(self)

    def _text(self, item: Any) -> Any:
        if self.binary:
            if not isinstance(item, (bytes, bytearray, memoryview)):
                raise FormatError(
                    f"FileWriter(binary=True) writes bytes, got {type(item).__name__}; "
                    "encode the items first, or drop binary=True"
                )
            return item
        if isinstance(item, str):
            return item
        if isinstance(item, (bytes, bytearray)):
            raise FormatError("FileWriter got bytes; pass binary=True to write bytes")
        return str(item)

    def write_chunk(self, file: AtomicFile, items: Iterable[Any]) -> None:
        write = file.file.write
        end: Any = self.line_end.encode(self.encoding) if self.binary else self.line_end
        text = self._text
        if end:
            for item in items:
                write(text(item))
                write(end)
        else:
            for item in items:
                write(text(item))

    def write_items(self, items: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        if self.directory is None:
            super().write_items(items, outp)
            return
        for item in items:
            n = self._n
            self._n += 1
            if callable(self.filename):
                relative = self.filename(item, n)
            else:
                relative = self.filename.format(n=n, item=item)
            target = confine(self.directory, relative, self.name or "FileWriter")
            if _same_place(target, self.directory):
                raise PathRefusedError(f"filename {relative!r} names the directory itself")
            if not self.overwrite and self.exists(target):
                raise self._exists_error(target)
            self._file = AtomicFile(
                target,
                binary=self.binary,
                encoding=self.encoding,
                fsync=self.fsync,
                replace=self.overwrite,
                node=self.label,
                can_append=False,
                storage_options=self._storage,
            )
            self._file.file.write(self._text(item))
            file, self._file = self._file, None
            outp(self.published(file.commit()))

    def _exists_error(self, target: str) -> OutputExistsError:
        """The error for a file of the same name that exists, saying what to pass."""
        if self.numbered:  # it appeared during the run
            return refusal(self.label, target, can_append=False)
        source = "a filename function" if callable(self.filename) else f"{self.filename!r}"
        return refusal(
            self.label,
            target,
            what_to_do=(
                f"the name comes from the item ({source}), so a run cannot number on after "
                "the files there: pass a filename whose only field is {n} (e.g. "
                "'{n:06d}.txt': each run numbers its files on after the highest one), make "
                "the names differ from run to run, or pass overwrite=True to replace the files"
            ),
        )

    def cleanup(self) -> Iterator[Any]:
        if self.directory is None:
            yield from super().cleanup()


class PrinterOfThings(NanoNode):
    """Prints each item and passes it on, so it can sit anywhere in a pipeline.

    Each item is printed as ``prepend + str(item)``, or laid out by :mod:`pprint` when
    ``pretty=True`` (strings are printed as they are). ``stream`` is the file to print to;
    the default is ``sys.stdout`` as it is when each item is printed.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import PrinterOfThings
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([{"a": 1}, "b"]) > PrinterOfThings(prepend="> ") > sink
        Collect(name=None)
        >>> sink.global_start()
        > {'a': 1}
        > b
        >>> sink.items
        [{'a': 1}, 'b']
    """

    def __init__(
        self,
        pretty: bool = False,
        prepend: str = "",
        stream: IO[str] | None = None,
        *,
        width: int = 80,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        self.pretty = pretty
        self.prepend = prepend
        self.stream = stream
        check_positive(node_label(self, with_class=True), "width", width, integer=True)
        self.width = width
        self.configure(**options)

    def format(self, item: Any) -> str:
        """The text printed for ``item`` (without the line end).

        Example:
            >>> from nanostream.nodes import PrinterOfThings
            >>> PrinterOfThings(prepend="row: ").format([1, 2])
            'row: [1, 2]'
        """
        if self.pretty and not isinstance(item, str):
            text = pprint.pformat(item, width=self.width)
        else:
            text = str(item)
        if self.prepend:
            if "\n" in text:
                text = text.replace("\n", "\n" + " " * len(self.prepend))
            text = self.prepend + text
        return text

    def process_item(self, item: Any) -> Iterator[Any]:
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(self.format(item) + "\n")
        yield item

    def cleanup(self) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
