"""Format nodes: CSV and JSON lines, read from text or files, written to files.

* :class:`CSVReader` (a row an item, from text or a file), :class:`CSVWriter` (dicts or lists).
* :class:`JSONLinesReader` (a line an item), :class:`JSONLinesWriter` (an item a line).

JSON uses ``orjson`` when it is installed (falling back to the standard library for what
``orjson`` refuses, such as integers beyond 64 bits), otherwise the standard ``json``.
Malformed input raises :class:`~nanostream.FormatError` naming the file (or item) and line.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .._core.context import node_label
from .._core.errors import GraphError, MissingDependencyError
from .._core.node import NodeFunction
from .._core.node_function import restore_state
from .._core.policy import POLICY_OPTIONS
from ..operators._arrow import is_batch, rows_of
from ._fileread import (
    FileBytes,
    FilePath,
    FilePosition,
    FileText,
    FormatError,
    ReadThrough,
    as_a_path,
    decode_failure,
    is_one_line,
    parse_json,
    text_of,
)
from ._filesink import FileSink, uses_standard_path
from ._filesystems import StorageOptions, require_reader
from ._publish import AtomicFile

__all__ = ["CSVReader", "CSVWriter", "JSONLinesReader", "JSONLinesWriter"]

_JSON_TYPES = frozenset({dict, list, str, int, float, bool, type(None)})
_INT = re.compile(r"[+-]?\d+\Z", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)


def infer_type(value: str) -> Any:
    """``value`` as an ``int`` or ``float`` if it looks like one, else unchanged.

    Example:
        >>> from nanostream.nodes.formats import infer_type
        >>> infer_type("42"), infer_type("-1.5e3"), infer_type("n/a"), infer_type("")
        (42, -1500.0, 'n/a', '')
    """
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    return value


# ----------------------------------------------------------------------------- CSV
class _RecordReader(FilePosition):
    """A reader of many records per input item, whose error policy applies per record.

    With ``on_error="skip"`` (or ``"retry"``: parsing again gives the same answer, so a bad record
    is not retried), a record that does not parse becomes an :class:`~nanostream.ErrorRecord` (on
    the ``errors`` port if linked, counted, and subject to ``max_errors``) whose ``item`` is
    ``{"source", "line", "text"}``, and the reader goes on with the next record of the same file.
    Without a policy it fails the run with a :class:`~nanostream.FormatError`.
    """

    _record_failed: Callable[[Any, BaseException, int], None] | None = None
    policy_options = POLICY_OPTIONS  # applied per record by _per_record_function
    holds_items = False  # each input item is read whole before the next: acks go on at once
    paths = False
    encoding = "utf-8"
    language = "text"  # what the reader parses, for its messages
    _storage: StorageOptions | None = None  # fsspec's options for URLs (storage_options=)
    _open_options: dict[str, Any] = {}  # noqa: RUF012 - never changed

    def _keep_storage_options(self, storage_options: Mapping[str, Any] | None) -> None:
        """Keep ``storage_options`` (shown masked); check that fsspec is installed."""
        require_reader(storage_options)
        self._storage = StorageOptions(storage_options)
        self.storage_options = None if storage_options is None else self._storage.shown

    def _path_of(self, item: object) -> str | None:
        """The file to read for ``item``, or None when ``item`` is text to parse."""
        if isinstance(item, os.PathLike) or (self.paths and isinstance(item, str)):
            return os.fspath(item)
        if isinstance(item, FilePath):
            raise self._not_text(item, "the path of a file")
        return None

    def _not_text(self, item: str, what: str) -> FormatError:
        """The error for a path given as text: what it is, and what to write instead."""
        hint = ""
        if not isinstance(item, FilePath):
            hint = f"; to parse it as {self.language} text, end it with a line break"
        return FormatError(
            f"{node_label(self, with_class=True)} got {item!r:.200}, {what}, where it parses "
            f"{self.language} text: pass paths=True to read files by path (streamed), or put "
            f"a LocalFileReader before it to read each file's text{hint}"
        )

    def _parse(self, lines: Iterable[str], source: str) -> Iterator[Any]:
        """The records of ``lines``, the text of ``source``."""
        raise NotImplementedError

    def records_of_path(self, path: str) -> Iterator[Any]:
        """The records of the file ``path``, streamed (see ``FilePosition``)."""
        return self._records_of_file(path, **self._open_options)

    def _records_of_file(self, path: str, **open_options: Any) -> Iterator[Any]:
        """The records of the file ``path``, streamed.

        A file truncated while it is read is a bad record once its end is reached; and when
        a record fails to parse in a file that has got shorter, the truncation is the error
        (the cut record is its consequence).
        """
        try:
            with ReadThrough(
                path, encoding=self.encoding, storage_options=self._storage, **open_options
            ) as whole:
                try:
                    yield from self._parse(whole.file, path)
                except FormatError as exc:
                    cut = whole.truncated(ended=False)
                    if cut is None:
                        raise
                    raise cut from exc
                truncated = whole.truncated()
        except UnicodeDecodeError as exc:
            raise decode_failure(
                path, self.encoding, "strict", exc, storage_options=self._storage
            ) from None
        if truncated is not None:
            self._bad_record(truncated, "")

    def _bad_record(self, exc: FormatError, text: str) -> None:
        handler = self._record_failed
        if handler is None:
            raise exc from None
        handler({"source": exc.source, "line": exc.line, "text": text}, exc, 1)

    def _per_record_function(self) -> NodeFunction:
        """The node function that applies the node's error policy per record."""
        self.validate()
        node = self

        def reader(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            node.setup()
            restore_state(node)
            with node.guard_items(outp, node.process_item) as guard:
                node._record_failed = getattr(guard, "record_failure", None)
                try:
                    for row in node.resume():
                        outp(row)
                    for item in inp:
                        guard(item)
                finally:
                    node._record_failed = None
            node._run_cleanup(outp)

        return reader


class CSVReader(_RecordReader):
    """Parses CSV into one item per row.

    Each input item is CSV text (``str``, e.g. from :class:`~nanostream.nodes.LocalFileReader`, or
    ``bytes``), or a file to read: an ``os.PathLike``, or a ``str`` path when ``paths=True`` — files
    are streamed, so any size is read in bounded memory.

    * By default the first row is the header and each row is a dict keyed by it.
      ``header=False`` gives lists; ``fieldnames=[...]`` gives dicts keyed by those names
      (with ``header=True`` the file's own header row is then skipped).
    * ``delimiter`` and ``quotechar`` are those of :mod:`csv`.
    * ``types={"age": int, ...}`` converts columns (by name, or by index for lists) with
      any function of one string; ``infer_types=True`` turns every other value that looks
      like a number into an ``int`` or ``float``.
    * Blank lines are skipped. A row with a different number of fields than the header
      (or than the first row, without a header), a value that does not convert, text
      that does not decode, or malformed CSV — a quote that is never closed, text after a
      closing quote; ``strict=False`` lets :mod:`csv` accept these as best it can —
      raises :class:`~nanostream.FormatError` naming the file (or input item) and line.
      With ``on_error="skip"`` such a row becomes an error record instead and the rest of
      the file is read (see ``_RecordReader``).
    * ``encoding`` applies to paths and bytes; the default ``"utf-8-sig"`` reads UTF-8
      with or without a byte order mark.
    * Wirings that would give no rows without a word are refused with a
      :class:`~nanostream.FormatError` that says what to write instead: without
      ``paths=True``, an item that is a path (a :class:`~nanostream.nodes.FilePath` from
      a watchdog, or a one-line ``str`` that names an existing file, or that looks like
      the path of a file that does not exist: it ends in ``.csv``, ``.tsv``, ``.jsonl``,
      ``.json`` or ``.txt``, or holds a path separator, and has no comma, tab, quote or
      delimiter); with a header, a
      second item in a row that is one line without a line end (lines one at a time,
      from ``LocalFileReader(serialize=True)``).
    * A file read by path that is truncated while it is read raises
      :class:`~nanostream.FormatError` once its end is reached (an error record with
      ``on_error="skip"``).
    * A path ending in ``.gz``, ``.bz2``, ``.xz`` or ``.zst`` is read decompressed,
      streamed; a path that is a URL (``s3://bucket/rows.csv``, ``memory://...``) is read
      through ``fsspec`` with ``storage_options`` (see docs/storage.md).

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import CSVReader
        >>> sink = nanostream.testing.Collect()
        >>> text = "name,age\\nada,36\\nalan,41\\n"
        >>> nanostream.from_iterable([text]) > CSVReader(types={"age": int}) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [{'name': 'ada', 'age': 36}, {'name': 'alan', 'age': 41}]
    """

    language = "CSV"
    _open_options = {"newline": ""}  # noqa: RUF012 - never changed

    def __init__(
        self,
        *,
        delimiter: str = ",",
        quotechar: str = '"',
        header: bool = True,
        fieldnames: Sequence[str] | None = None,
        types: Mapping[Any, Callable[[str], Any]] | None = None,
        infer_types: bool = False,
        paths: bool = False,
        encoding: str = "utf-8-sig",
        strict: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        self._keep_storage_options(storage_options)
        try:
            csv.reader([], delimiter=delimiter, quotechar=quotechar)
        except (TypeError, ValueError) as exc:
            raise GraphError(f"bad CSV dialect for CSVReader: {exc}") from None
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.header = header
        self.fieldnames = None if fieldnames is None else list(fieldnames)
        self.types = dict(types or {})
        self.infer_types = infer_types
        self.paths = paths
        self.encoding = encoding
        self.strict = strict
        if self.fieldnames is None and not header:
            bad = [k for k in self.types if not isinstance(k, int)]
            if bad:
                raise GraphError(
                    f"without a header, CSVReader rows are lists: types= keys must be column "
                    f"indexes, got {bad}"
                )
        self.configure(**options)
        self._index = 0
        self._lone_line = False

    def setup(self) -> None:
        self._index = 0
        self._lone_line = False

    def process_item(self, item: Any) -> Iterator[Any]:
        yield from self.rows(item)

    def as_function(self) -> NodeFunction:
        if self.error_policy.guarded and type(self).process_item is CSVReader.process_item:
            return self._per_record_function()
        if uses_standard_path(self):
            return super().as_function()
        self.validate()
        node = self

        def csv_reader(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            node.setup()
            restore_state(node)
            for row in node.resume():
                outp(row)
            for item in inp:
                for row in node.rows(item):
                    outp(row)

        return csv_reader

    def rows(self, item: Any) -> Iterator[Any]:
        """The rows of one input item (text, bytes or path).

        Example:
            >>> from nanostream.nodes import CSVReader
            >>> list(CSVReader(header=False, delimiter=";").rows("1;2\\n3;4\\n"))
            [['1', '2'], ['3', '4']]
        """
        self._index += 1
        path = self._path_of(item)
        if path is not None:
            self._lone_line = False
            yield from self.positioned(path, self.records_of_path(path))
            return
        text, source = text_of(item, self.encoding, self._index, node_label(self, with_class=True))
        what = as_a_path(item, self.delimiter + self.quotechar)
        if what is not None:
            raise self._not_text(item, what)
        self._check_lone_line(item, text, source)
        if text[:1] == "\ufeff":
            text = text[1:]
        yield from self._parse(io.StringIO(text, newline=""), source)

    def _check_lone_line(self, item: object, text: str, source: str) -> None:
        """With a header, refuse a second item in a row that is one line without a line end.

        Such items are lines one at a time (``LocalFileReader(serialize=True)``): each
        would be read as a header, and no rows would come out.
        """
        lone = (
            self.header
            and not isinstance(item, (FileText, FileBytes))
            and is_one_line(text)
            and text.strip() != ""
        )
        if lone and self._lone_line:
            raise FormatError(
                f"{node_label(self, with_class=True)} got one line of text per item, such as "
                "LocalFileReader(serialize=True) emits: with header=True each would be read "
                "as a header and no rows would come out. Give it whole files: "
                "LocalFileReader(serialize=False) before it, or the paths with "
                "CSVReader(paths=True), which streams them; or pass header=False to read "
                "each line as a row",
                source=source,
            )
        self._lone_line = lone

    def _parse(self, lines: Iterable[str], source: str) -> Iterator[Any]:
        reader = csv.reader(
            lines, delimiter=self.delimiter, quotechar=self.quotechar, strict=self.strict
        )
        done = 0  # the last line of the last complete row
        try:
            header = self.fieldnames
            if self.header:
                first = next((row for row in reader if row), None)
                if first is None:
                    return
                done = reader.line_num
                if header is None:
                    header = first
                    duplicates = sorted({h for h in header if header.count(h) > 1})
                    if duplicates:
                        raise FormatError(
                            f"the header names {duplicates} more than once; pass "
                            "fieldnames=[...] to name the columns",
                            source=source,
                            line=done,
                        )
            convert = self._converter(header, source)
        except csv.Error as exc:
            raise self._malformed(exc, done, source, reader.line_num) from None
        width = None if header is None else len(header)
        row: list[str] = []
        while True:  # rows; after a bad row that the policy skips, on with the next
            try:
                if header is not None and convert is None:
                    size = len(header)
                    for row in reader:
                        if len(row) == size:
                            done = reader.line_num
                            yield dict(zip(header, row, strict=False))
                        elif row:
                            raise self._bad_width(row, size, source, reader.line_num)
                    return
                for row in reader:
                    if not row:
                        continue
                    if width is None:
                        width = len(row)
                    elif len(row) != width:
                        raise self._bad_width(row, width, source, reader.line_num)
                    done = reader.line_num
                    values: list[Any] = row if convert is None else convert(row, done)
                    yield values if header is None else dict(zip(header, values, strict=False))
                return
            except csv.Error as exc:
                error = self._malformed(exc, done, source, reader.line_num)
                done = reader.line_num
                self._bad_record(error, "")
            except FormatError as exc:
                done = reader.line_num
                self._bad_record(exc, self.delimiter.join(row))

    def _malformed(self, exc: csv.Error, done: int, source: str, line: int) -> FormatError:
        message = f"bad CSV: {exc}"
        if "end of data" in str(exc):
            message += f" (a quoted field opened at or after line {done + 1} is never closed)"
        message += "; strict=False accepts some malformed CSV" if self.strict else ""
        return FormatError(message, source=source, line=line)

    def _bad_width(self, row: list[str], width: int, source: str, line: int) -> FormatError:
        against = "the header" if self.header or self.fieldnames else "the first row"
        return FormatError(
            f"expected {width} fields (as in {against}), got {len(row)}: {row!r:.200}",
            source=source,
            line=line,
        )

    def _converter(
        self, header: list[str] | None, source: str
    ) -> Callable[[list[str], int], list[Any]] | None:
        if not self.types and not self.infer_types:
            return None
        default = infer_type if self.infer_types else None
        if header is not None:
            unknown = [k for k in self.types if k not in header]
            if unknown:
                raise FormatError(
                    f"types= names columns {unknown} that the header does not have "
                    f"(columns: {header})",
                    source=source,
                )
            funcs = [self.types.get(name, default) for name in header]
        else:
            size = max((k for k in self.types if isinstance(k, int)), default=-1) + 1
            funcs = [self.types.get(i, default) for i in range(size)]
        names = header

        def convert(row: list[str], line: int) -> list[Any]:
            out: list[Any] = list(row)
            for i, func in enumerate(funcs):
                if func is None:
                    continue
                if i >= len(out):
                    if default is not None:
                        break
                    continue
                try:
                    out[i] = func(row[i])
                except (TypeError, ValueError) as exc:
                    column = repr(names[i]) if names is not None else str(i)
                    raise FormatError(
                        f"column {column}: cannot convert {row[i]!r} with "
                        f"{getattr(func, '__name__', func)}: {exc}",
                        source=source,
                        line=line,
                    ) from None
            if default is not None and len(out) > len(funcs):
                out[len(funcs) :] = [default(v) for v in out[len(funcs) :]]
            return out

        return convert


class CSVWriter(FileSink):
    """Writes items as CSV rows to a file, published atomically when the input ends.

    Items are dicts (columns from ``fieldnames``, by default the first item's keys; a missing key is
    written as ``""``, an unknown one is a :class:`~nanostream.FormatError` naming the node and the
    field, subject to the node's error policy) or lists/tuples, or batches (Arrow record batches or
    tables, pandas or polars DataFrames): a row each. The header row is written first unless
    ``header=False``. With ``append=True`` and a file that has rows, no second header is written:
    the file's header row gives the columns and their order (``fieldnames``, if given, must name the
    same columns, else :class:`~nanostream.FormatError` before any thread starts), so a row's values
    go under the right names whatever the order of its keys.

    ``path``, ``append``, ``overwrite``, ``rotate_items``, ``encoding``, ``fsync``,
    ``storage_options`` and ``exactly_once`` are as for :class:`~nanostream.nodes.FileWriter` (a
    ``path`` that exists is refused unless ``append=True`` or ``overwrite=True``; a compressed
    ``path`` such as ``"rows.csv.gz"`` is written compressed; a URL is uploaded whole;
    ``exactly_once=True`` writes a part per checkpoint, each with its header row); each finished
    file's path is emitted downstream.

    Example:
        >>> import pathlib, tempfile, nanostream
        >>> from nanostream.nodes import CSVWriter
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "people.csv"
        >>> rows = [{"name": "ada", "age": 36}, {"name": "alan", "age": 41}]
        >>> writer = CSVWriter(out)
        >>> nanostream.from_iterable(rows) > writer
        CSVWriter(name=None)
        >>> writer.global_start()
        >>> print(out.read_text(), end="")
        name,age
        ada,36
        alan,41
    """

    newline = ""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fieldnames: Sequence[str] | None = None,
        header: bool = True,
        delimiter: str = ",",
        quotechar: str = '"',
        line_end: str = "\n",
        append: bool = False,
        overwrite: bool = False,
        rotate_items: int | None = None,
        encoding: str = "utf-8",
        fsync: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            path,
            append=append,
            overwrite=overwrite,
            rotate_items=rotate_items,
            encoding=encoding,
            fsync=fsync,
            storage_options=storage_options,
            name=name,
            **options,
        )
        try:
            csv.writer(io.StringIO(), delimiter=delimiter, quotechar=quotechar)
        except (TypeError, ValueError) as exc:
            raise GraphError(f"bad CSV dialect for CSVWriter: {exc}") from None
        self.fieldnames = None if fieldnames is None else list(fieldnames)
        self.header = header
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.line_end = line_end
        self._fields: list[str] | None = self.fieldnames
        self._writer: Any = None
        self._need_header = False

    def setup(self) -> None:
        super().setup()
        self._fields = self.fieldnames

    def validate(self) -> None:
        """Also refuse ``fieldnames`` that do not match the header of the file appended to."""
        super().validate()
        if self.append and self.header and not self.rotates and self.exists(self.path):
            self._check_fieldnames(self.existing_header(self.path), self.path)

    def existing_header(self, path: str | os.PathLike[str]) -> list[str] | None:
        """The header row of the CSV file ``path``, or None if it has no rows.

        Example:
            >>> import pathlib, tempfile
            >>> from nanostream.nodes import CSVWriter
            >>> out = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
            >>> _ = out.write_text("x,y\\n1,2\\n")
            >>> CSVWriter(out, append=True).existing_header(out)
            ['x', 'y']
        """
        try:
            with ReadThrough(
                path, encoding=self.encoding, newline="", storage_options=self._storage
            ) as whole:
                rows = csv.reader(whole.file, delimiter=self.delimiter, quotechar=self.quotechar)
                first = next((row for row in rows if row), None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise FormatError(
                f"{self.label} appends to this file, but cannot read its header row "
                f"({exc}); pass the encoding=, delimiter= and quotechar= it was written "
                "with, or write to a new file",
                source=os.fspath(path),
                line=1,
            ) from None
        if first is not None and first[0][:1] == "\ufeff":
            first[0] = first[0][1:]
        return first

    def _check_fieldnames(self, header: list[str] | None, source: str) -> None:
        """Refuse ``fieldnames`` that name other columns than the file's ``header``."""
        if header is None or self.fieldnames is None or set(self.fieldnames) == set(header):
            return
        raise FormatError(
            f"{self.label} appends to a file whose header is {header}, but its fieldnames "
            f"are {self.fieldnames}; pass fieldnames with the same columns (or none: the "
            "file's header gives them), or write to a new file",
            source=source,
            line=1,
        )

    def opened(self, file: AtomicFile) -> None:
        self._writer = csv.writer(
            file.file,
            delimiter=self.delimiter,
            quotechar=self.quotechar,
            lineterminator=self.line_end,
        )
        self._need_header = self.header and file.existing == 0
        if self.header and file.existing > 0:  # appending: the file's header rules
            header = self.existing_header(file.destination)
            self._check_fieldnames(header, file.destination)
            if header is not None:
                self._fields = header

    def write_chunk(self, file: AtomicFile, items: Iterable[Any]) -> None:
        writerow = self._writer.writerow
        for item in items:
            if isinstance(item, Mapping):
                fields = self._fields
                if fields is None:
                    fields = self._fields = list(item)
                if len(item) != len(fields) or not all(k in item for k in fields):
                    extra = [k for k in item if k not in fields]
                    if extra:
                        raise FormatError(
                            f"{self.label}: a row has fields {extra} that are not among the "
                            f"CSV columns {fields}; pass fieldnames=[...] listing every field "
                            "(when appending, a file's header lists its columns: write such "
                            "rows to a new file)",
                            source=file.destination,
                        )
                if self._need_header:
                    self._need_header = False
                    writerow(fields)
                writerow([item.get(k, "") for k in fields])
            elif is_batch(item):  # an Arrow batch or a DataFrame: a CSV row per row
                self.write_chunk(file, rows_of(item))
            else:
                if self._need_header:
                    self._need_header = False
                    if self._fields is not None:
                        writerow(self._fields)
                writerow(item)


# ----------------------------------------------------------------------------- JSON lines
def _orjson() -> Any:
    try:
        return importlib.import_module("orjson")
    except ImportError:
        return None


def _backend(backend: str) -> Any:
    """The ``orjson`` module to use, or None for the standard library."""
    if backend not in ("auto", "json", "orjson"):
        raise GraphError(f"backend must be 'auto', 'json' or 'orjson', got {backend!r}")
    if backend == "json":
        return None
    module = _orjson()
    if module is None and backend == "orjson":
        raise MissingDependencyError("orjson", extra="fast")
    return module


class JSONLinesReader(_RecordReader):
    """Parses JSON lines (one JSON value per line) into one item per line.

    Each input item is text (``str`` or ``bytes``) holding one or more lines — a whole
    file from :class:`~nanostream.nodes.LocalFileReader`, or single lines from it with
    ``serialize=True`` — or a file to stream: an ``os.PathLike``, or a ``str`` path when
    ``paths=True``. Blank lines are skipped; a line that is not JSON — or JSON nested
    deeper than the parser can follow — raises
    :class:`~nanostream.FormatError` naming the file (or input item) and line, or, with
    ``on_error="skip"``, becomes an error record and the next line is read. A file read
    by path that is truncated while it is read is a ``FormatError`` too, once its end is
    reached.
    ``backend`` is ``"auto"`` (``orjson`` if installed), ``"json"`` or ``"orjson"``.
    Files read by path may be compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``) and may be
    URLs read with ``storage_options``, as for :class:`CSVReader`.

    Without ``paths=True``, an item that is a path — a
    :class:`~nanostream.nodes.FilePath` from a watchdog, or a one-line ``str`` that is not
    JSON and names an existing file, or looks like the path of a file that does not
    exist (as for :class:`CSVReader`) — raises :class:`~nanostream.FormatError` saying to
    pass ``paths=True`` or to put a :class:`~nanostream.nodes.LocalFileReader` before it.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import JSONLinesReader
        >>> sink = nanostream.testing.Collect()
        >>> text = '{"a": 1}\\n\\n[2, 3]\\n'
        >>> nanostream.from_iterable([text]) > JSONLinesReader() > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [{'a': 1}, [2, 3]]
    """

    language = "JSON"

    def __init__(
        self,
        *,
        paths: bool = False,
        encoding: str = "utf-8",
        backend: str = "auto",
        storage_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        self._keep_storage_options(storage_options)
        self.paths = paths
        self.encoding = encoding
        self.backend = backend
        fast = _backend(backend)
        self._loads: Callable[[str], Any] = json.loads
        if fast is not None:
            fast_loads, decode_error = fast.loads, fast.JSONDecodeError

            def loads(text: str) -> Any:
                try:
                    return fast_loads(text)
                except decode_error:
                    return json.loads(text)  # NaN, Infinity, ... that orjson refuses

            self._loads = loads
        self.configure(**options)
        self._index = 0

    def setup(self) -> None:
        self._index = 0

    def process_item(self, item: Any) -> Iterator[Any]:
        yield from self.values(item)

    def as_function(self) -> NodeFunction:
        if self.error_policy.guarded and (type(self).process_item is JSONLinesReader.process_item):
            return self._per_record_function()
        return super().as_function()

    def values(self, item: Any) -> Iterator[Any]:
        """The values of one input item (text, bytes or path).

        Example:
            >>> from nanostream.nodes import JSONLinesReader
            >>> list(JSONLinesReader().values('1\\n"two"\\n'))
            [1, 'two']
        """
        self._index += 1
        path = self._path_of(item)
        if path is not None:
            yield from self.positioned(path, self.records_of_path(path))
            return
        text, source = text_of(item, self.encoding, self._index, node_label(self, with_class=True))
        lines = text.split("\n")
        if len(lines) == 1 and not isinstance(item, FileText) and text.strip():
            try:  # one line: JSON first; a path only if it is not JSON
                value = self._loads(text)
            except (ValueError, RecursionError):
                what = as_a_path(item)
                if what is not None:
                    raise self._not_text(text, what) from None
            else:
                yield value
                return
        yield from self._parse(lines, source)

    def _parse(self, lines: Iterable[str], source: str) -> Iterator[Any]:
        loads = self._loads
        for number, line in enumerate(lines, 1):
            try:
                value = parse_json(line, source=source, line=number, loads=loads)
            except FormatError as error:
                if line.strip():
                    self._bad_record(error, line[:1000])
                continue
            yield value


class JSONLinesWriter(FileSink):
    """Writes each item as one line of JSON to a file, published atomically at the end.

    Output is compact UTF-8 JSON (non-ASCII characters are kept as they are). A batch (an Arrow
    record batch or table, a pandas or polars DataFrame) is a line per row. ``default`` converts
    values JSON has no type for (e.g. ``default=str`` for dates); ``sort_keys=True`` sorts dict
    keys. ``backend`` is ``"auto"`` (``orjson`` if installed), ``"json"`` or ``"orjson"``. ``path``,
    ``append``, ``overwrite``, ``rotate_items``, ``encoding``, ``fsync``, ``storage_options`` and
    ``exactly_once`` are as for :class:`~nanostream.nodes.FileWriter` (a ``path`` that exists is
    refused unless ``append=True`` or ``overwrite=True``; ``"rows-{part:04d}.jsonl.gz"`` writes
    compressed parts; a URL is uploaded whole; ``exactly_once=True``, in a run with ``state=``,
    writes a folder of parts such as ``"out/part-{part:05d}.jsonl"``, one per checkpoint, each
    published once its checkpoint is committed: docs/state.md); each finished file's path goes
    downstream.

    Example:
        >>> import pathlib, tempfile, nanostream
        >>> from nanostream.nodes import JSONLinesWriter
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
        >>> sink = nanostream.testing.Collect()
        >>> rows = [{"name": "ada", "tags": ["é"]}, {"name": "alan", "tags": []}]
        >>> nanostream.from_iterable(rows) > JSONLinesWriter(out) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items == [str(out)]
        True
        >>> print(out.read_text(encoding="utf-8"), end="")
        {"name":"ada","tags":["é"]}
        {"name":"alan","tags":[]}
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        default: Callable[[Any], Any] | None = None,
        sort_keys: bool = False,
        backend: str = "auto",
        append: bool = False,
        overwrite: bool = False,
        rotate_items: int | None = None,
        encoding: str = "utf-8",
        fsync: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            path,
            append=append,
            overwrite=overwrite,
            rotate_items=rotate_items,
            encoding=encoding,
            fsync=fsync,
            storage_options=storage_options,
            name=name,
            **options,
        )
        self.default = default
        self.sort_keys = sort_keys
        self.backend = backend
        std = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), default=default, sort_keys=sort_keys
        ).encode
        self.encode: Callable[[Any], str] = std
        fast = _backend(backend)
        if fast is not None:
            dumps = fast.dumps
            option = fast.OPT_NON_STR_KEYS | (fast.OPT_SORT_KEYS if sort_keys else 0)

            def encode(obj: Any) -> str:
                try:
                    return dumps(obj, default=default, option=option).decode()  # type: ignore[no-any-return]
                except TypeError:
                    return std(obj)  # integers beyond 64 bits, ... that orjson refuses

            self.encode = encode

    def write_chunk(self, file: AtomicFile, items: Iterable[Any]) -> None:
        write = file.file.write
        encode = self.encode
        try:
            for item in items:
                if type(item) not in _JSON_TYPES and is_batch(item):  # a line per row
                    for row in rows_of(item):
                        write(encode(row) + "\n")
                    continue
                write(encode(item) + "\n")
        except (TypeError, ValueError) as exc:
            raise FormatError(
                f"an item cannot be written as JSON ({exc}); pass default=... (e.g. "
                "default=str) to convert such values",
                source=file.destination,
            ) from exc
