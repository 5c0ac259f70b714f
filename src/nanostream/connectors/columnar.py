"""Columnar files through pyarrow: Parquet, Arrow IPC (Feather v2), and CSV read by Arrow.

* :class:`ParquetReader` and :class:`FeatherReader` stream a file's row groups (record
  batches) as rows or as whole batches, in memory bounded by one of them.
* :class:`ParquetWriter` and :class:`FeatherWriter` buffer rows or batches into row groups
  and publish each file atomically, like the other writers.
* :class:`ArrowCSVReader` reads CSV with Arrow's own parser into typed batches: the fast
  way from CSV to Parquet.

Install the extra with ``pip install 'nanostream[parquet]'`` (pyarrow); building one of
these nodes without it raises :class:`~nanostream.MissingDependencyError`.

Example:
    >>> import pathlib, tempfile, nanostream
    >>> from nanostream.nodes.columnar import ParquetReader, ParquetWriter
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "people.parquet"
    >>> rows = [{"name": "ada", "age": 36}, {"name": "alan", "age": 41}]
    >>> writer = ParquetWriter(out)
    >>> nanostream.from_iterable(rows) > writer
    ParquetWriter(name=None)
    >>> writer.global_start()
    >>> sink = nanostream.testing.Collect()
    >>> nanostream.from_iterable([out]) > ParquetReader() > sink
    Collect(name=None)
    >>> sink.global_start()
    >>> sink.items == rows
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .._core.context import node_label
from .._core.errors import GraphError
from .._core.node import NodeFunction
from ..operators._arrow import (
    check_batch_format,
    convert_batch,
    is_batch,
    packing_error,
    parse_schema,
    require_pyarrow,
    to_table,
)
from ..operators._operator import check_positive
from ._fileread import FileBytes, FormatError
from ._filesink import FileSink
from ._filesystems import filesystem, is_url
from ._publish import AtomicFile
from .formats import _RecordReader

__all__ = [
    "ArrowCSVReader",
    "FeatherReader",
    "FeatherWriter",
    "ParquetReader",
    "ParquetWriter",
]

_ROWS_PER_BATCH = 65_536
_ROW_GROUP_SIZE = 131_072


# ----------------------------------------------------------------------------- readers
class _ColumnarReader(_RecordReader):
    """A reader of a columnar file per input item, by record batches.

    An input item is the file: a path (``str`` or ``os.PathLike``), a URL (read through
    fsspec with ``storage_options``, as for :class:`~nanostream.nodes.CSVReader`; see
    docs/storage.md) or its bytes. A unit
    of the file (a Parquet row group, an IPC record batch) that cannot be read is a bad
    record: with ``on_error="skip"`` an error record (``{"source", "line": None,
    "text": ""}``, the message naming the unit) and the reader goes on with the next unit;
    a file that cannot be opened is one error record. Without a policy the run fails
    with a :class:`~nanostream.FormatError` naming the file.
    """

    language = "columnar"

    def __init__(
        self,
        *,
        as_batches: bool = False,
        batch_format: str = "arrow",
        columns: Sequence[str] | None = None,
        rows_per_batch: int = _ROWS_PER_BATCH,
        storage_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        label = name or type(self).__name__
        require_pyarrow()
        self._keep_storage_options(storage_options)
        check_batch_format(batch_format, label, as_batches=as_batches)
        self.as_batches = as_batches
        self.batch_format = batch_format
        self.columns = None if columns is None else list(columns)
        check_positive(label, "rows_per_batch", rows_per_batch, integer=True)
        self.rows_per_batch = rows_per_batch
        self.configure(**options)
        self._index = 0

    def setup(self) -> None:
        self._index = 0

    def process_item(self, item: Any) -> Iterator[Any]:
        yield from self.read(item)

    def as_function(self) -> NodeFunction:
        if self.error_policy.guarded and type(self).process_item is _ColumnarReader.process_item:
            return self._per_record_function()
        return super().as_function()

    def read(self, item: Any) -> Iterator[Any]:
        """The rows (or batches, with ``as_batches=True``) of one input item.

        Example:
            >>> import io, pyarrow as pa, pyarrow.parquet as pq
            >>> from nanostream.nodes.columnar import ParquetReader
            >>> data = io.BytesIO()
            >>> pq.write_table(pa.table({"x": [1, 2]}), data)
            >>> list(ParquetReader().read(data.getvalue()))
            [{'x': 1}, {'x': 2}]
        """
        self._index += 1
        source, where = self._source_of(item)
        convert = self.batch_format
        try:
            for batch in self._batches(source, where):
                if self.as_batches:
                    yield convert_batch(batch, convert)
                else:
                    yield from batch.to_pylist()
        finally:
            if isinstance(item, str) and is_url(item):  # a file this node opened at a URL
                source.close()

    def _source_of(self, item: Any) -> tuple[Any, str]:
        """What pyarrow reads for ``item``, and how messages name it."""
        if isinstance(item, FileBytes):
            return require_pyarrow().BufferReader(bytes(item)), item.path
        if isinstance(item, (bytes, bytearray, memoryview)):
            return require_pyarrow().BufferReader(bytes(item)), f"input item #{self._index}"
        if isinstance(item, str) and is_url(item):  # read through fsspec (docs/storage.md)
            fs, path = filesystem(item, self._storage)
            return fs.open(path, "rb"), item
        if isinstance(item, (str, os.PathLike)):
            return os.fspath(item), os.fspath(item)
        raise FormatError(
            f"{node_label(self)} reads {self.language} files: it takes a path (str or "
            f"os.PathLike) or the file's bytes, got {type(item).__name__}: {item!r:.80}"
        )

    def _batches(self, source: Any, where: str) -> Iterator[Any]:
        """The record batches of ``source``, unit by unit (bad units are bad records)."""
        pa = require_pyarrow()
        try:
            units, read_unit = self._open(source)
        except (pa.ArrowException, OSError, ValueError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise FormatError(
                f"not a readable {self.language} file ({type(exc).__name__}: {exc})",
                source=where,
            ) from None
        for unit in range(units):
            try:
                yield from read_unit(unit)
            except (pa.ArrowException, OSError, ValueError) as exc:
                what = self._unit_label(unit, units)
                message = f"{what} cannot be read ({type(exc).__name__}: {exc})"
                self._bad_record(FormatError(message, source=where), "")

    def _unit_label(self, unit: int, units: int) -> str:
        """How messages name a unit of the file."""
        return f"{self._unit_name} {unit} (of {units})"

    _unit_name = "unit"

    def _open(self, source: Any) -> tuple[int, Callable[[int], Iterator[Any]]]:
        """The number of units of ``source``, and a function giving one unit's batches."""
        raise NotImplementedError


class ParquetReader(_ColumnarReader):
    """Reads Parquet files, one per input item, streamed by row group.

    Each input item is a file: a path (``str`` or ``os.PathLike``, e.g. from
    :class:`~nanostream.nodes.LocalDirectoryWatchdog`) or the file's bytes (e.g. from
    ``LocalFileReader(binary=True)``). Rows come out as dicts, with Python values of the
    column types (``int``, ``float``, ``str``, ``datetime``, ``Decimal``, lists...);
    with ``as_batches=True`` each record batch comes out whole: a ``pyarrow.RecordBatch``,
    or with ``batch_format="pandas"`` / ``"polars"`` a DataFrame (the package must be
    installed, checked when the node is built). ``columns`` reads only those columns;
    ``rows_per_batch`` is the most rows in a batch. Memory is bounded by one row group
    and one batch, whatever the size of the file.

    Each input item is read whole before the next, so acknowledgements of the items
    (paths from a watchdog's ledger) go on as each file ends. Bad data follows the node's
    error policy per row group (see ``_ColumnarReader``).

    Example:
        >>> import pathlib, tempfile, pyarrow as pa, pyarrow.parquet as pq, nanostream
        >>> from nanostream.nodes.columnar import ParquetReader
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.parquet"
        >>> pq.write_table(pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]}), path)
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([path]) > ParquetReader(columns=["id"]) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [{'id': 1}, {'id': 2}, {'id': 3}]
    """

    language = "Parquet"
    _unit_name = "row group"

    def _open(self, source: Any) -> tuple[int, Callable[[int], Iterator[Any]]]:
        import pyarrow.parquet as pq

        file = pq.ParquetFile(source)
        size, columns = self.rows_per_batch, self.columns

        def row_group(unit: int) -> Iterator[Any]:
            return file.iter_batches(batch_size=size, row_groups=[unit], columns=columns)  # type: ignore[no-any-return]

        return file.num_row_groups, row_group


class FeatherReader(_ColumnarReader):
    """Reads Arrow IPC files (Feather version 2), one per input item, by record batch.

    As :class:`ParquetReader`, for the files :class:`FeatherWriter`,
    ``pyarrow.feather.write_feather`` and ``pandas.DataFrame.to_feather`` write: the
    record batches as they are in the file (each split into ``rows_per_batch`` rows at
    most), as rows or, with ``as_batches=True``, whole.

    Example:
        >>> import pathlib, tempfile, pyarrow as pa, pyarrow.feather as feather, nanostream
        >>> from nanostream.nodes.columnar import FeatherReader
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.feather"
        >>> feather.write_feather(pa.table({"id": [1, 2]}), str(path))
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([path]) > FeatherReader(as_batches=True) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> [batch.num_rows for batch in sink.items]
        [2]
    """

    language = "Arrow IPC (Feather)"
    _unit_name = "record batch"

    def _open(self, source: Any) -> tuple[int, Callable[[int], Iterator[Any]]]:
        pa = require_pyarrow()
        reader = pa.ipc.open_file(source)
        size, columns = self.rows_per_batch, self.columns

        def record_batch(unit: int) -> Iterator[Any]:
            batch = reader.get_batch(unit)
            if columns is not None:
                batch = batch.select(columns)
            for start in range(0, max(batch.num_rows, 1), size):
                yield batch.slice(start, size)

        return reader.num_record_batches, record_batch


class ArrowCSVReader(_ColumnarReader):
    """Reads CSV files with Arrow's parser, streamed as typed record batches.

    Each input item is a CSV file (a path, or its bytes). The first row is the header
    (or ``column_names=[...]`` names the columns and every row is data); Arrow infers each
    column's type (integers, floats, booleans, timestamps, text) unless ``schema`` gives
    it (a ``pyarrow.Schema`` or a mapping of names to type names, as for
    :class:`ParquetWriter`). ``delimiter`` and ``quotechar`` are those of the CSV;
    ``block_size`` is how many bytes are parsed at a time (16 MiB: a batch each). Rows come
    out as dicts, or with ``as_batches=True`` whole batches — the fast way to Parquet:
    ``ArrowCSVReader(as_batches=True) > ParquetWriter(path)``. A row Arrow cannot parse
    (a wrong number of fields, a value that does not fit its column's type) stops the file
    with a :class:`~nanostream.FormatError` naming it (with ``on_error="skip"``, one error
    record for the rest of the file). For every option of CSV parsing, or line numbers
    in errors, use :class:`~nanostream.nodes.CSVReader`.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes.columnar import ArrowCSVReader
        >>> sink = nanostream.testing.Collect()
        >>> data = b"id,price,when\\n1,2.5,2024-01-02\\n2,3.0,2024-01-03\\n"
        >>> nanostream.from_iterable([data]) > ArrowCSVReader() > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items[0]
        {'id': 1, 'price': 2.5, 'when': datetime.date(2024, 1, 2)}
    """

    language = "CSV"

    def _unit_label(self, unit: int, units: int) -> str:
        return "the file (from the first row that does not parse on)"

    def __init__(
        self,
        *,
        delimiter: str = ",",
        quotechar: str = '"',
        column_names: Sequence[str] | None = None,
        schema: Any = None,
        block_size: int = 1 << 24,
        as_batches: bool = False,
        batch_format: str = "arrow",
        columns: Sequence[str] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            as_batches=as_batches,
            batch_format=batch_format,
            columns=columns,
            name=name,
            **options,
        )
        label = name or "ArrowCSVReader"
        import pyarrow.csv as pcsv

        try:
            self._parse_options = pcsv.ParseOptions(delimiter=delimiter, quote_char=quotechar)
        except (TypeError, ValueError) as exc:
            raise GraphError(f"{label}: bad CSV dialect: {exc}") from None
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.column_names = None if column_names is None else list(column_names)
        self.schema = parse_schema(schema, label)
        check_positive(label, "block_size", block_size, integer=True)
        self.block_size = block_size

    def _open(self, source: Any) -> tuple[int, Callable[[int], Iterator[Any]]]:
        import pyarrow.csv as pcsv

        read = pcsv.ReadOptions(block_size=self.block_size, column_names=self.column_names)
        convert = pcsv.ConvertOptions(column_types=self.schema, include_columns=self.columns or [])
        reader = pcsv.open_csv(
            source, read_options=read, parse_options=self._parse_options, convert_options=convert
        )
        return 1, lambda _unit: iter(reader)


# ----------------------------------------------------------------------------- writers
class _ColumnarWriter(FileSink):
    """A writer of rows and batches into a columnar file, by row groups.

    Rows (dicts) and batches (Arrow record batches and tables, pandas and polars
    DataFrames) wait until ``row_group_size`` rows are there, then go into the file as
    one row group (or record batch); what is left goes in when the file is published.
    The columns are those of ``schema`` or, without one, of the first row group (every
    part of a run has the same); later batches are cast to them (columns matched by name).
    """

    binary = True
    can_append = False  # a columnar file ends with its footer: it cannot be added to
    format_name = "columnar"
    codecs: tuple[str | None, ...] = ()

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schema: Any = None,
        compression: str | None = None,
        row_group_size: int = _ROW_GROUP_SIZE,
        overwrite: bool = False,
        rotate_items: int | None = None,
        fsync: bool = False,
        name: str | None = None,
        **options: Any,
    ) -> None:
        label = name or type(self).__name__
        if options.pop("append", False):
            raise GraphError(
                f"{label}: a {self.format_name} file ends with a footer and cannot be added "
                "to, so append=True is not possible; write new parts each run with a "
                "'{part}' field in path (e.g. 'out-{part:04d}.parquet', numbered on after "
                "those there), or pass overwrite=True"
            )
        require_pyarrow()
        super().__init__(
            path,
            overwrite=overwrite,
            rotate_items=rotate_items,
            fsync=fsync,
            name=name,
            **options,
        )
        if compression not in self.codecs:
            allowed = ", ".join(repr(c) for c in self.codecs)
            raise GraphError(f"{label}: compression must be one of {allowed}, got {compression!r}")
        self.schema = parse_schema(schema, label)
        self.compression = compression
        check_positive(label, "row_group_size", row_group_size, integer=True)
        self.row_group_size = row_group_size
        self._rows: list[Any] = []
        self._tables: list[Any] = []
        self._held = 0  # rows in _tables
        self._writer: Any = None
        self._columns: Any = None  # the schema of the open file

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def setup(self) -> None:
        super().setup()
        self._rows, self._tables, self._held = [], [], 0
        self._writer = None
        self._columns = self.schema

    def write_chunk(self, file: AtomicFile, items: Iterable[Any]) -> None:
        rows = self._rows
        size = self.row_group_size
        for item in items:
            if type(item) is dict:
                rows.append(item)
                if len(rows) >= size:
                    self._pack_rows()
                    self._write(file)
                    rows = self._rows
            elif is_batch(item):
                self._pack_rows()
                table = to_table(item)
                self._tables.append(table)
                self._held += table.num_rows
                if self._held >= size:
                    self._write(file)
                rows = self._rows
            elif isinstance(item, Mapping):
                rows.append(dict(item))
            else:
                raise FormatError(
                    f"{self.label} writes rows (dicts) and batches (Arrow record batches or "
                    f"tables, pandas or polars DataFrames), got {type(item).__name__}: "
                    f"{item!r:.80}; turn the items into dicts first (e.g. with a Map)",
                    source=str(file.target),
                )

    def closing(self, file: AtomicFile) -> None:
        """Write what is held, then the file's footer."""
        self._pack_rows()
        self._write(file, final=True)
        if self._writer is None:  # nothing came: a file with the columns and no rows
            pa = require_pyarrow()
            columns = self._columns if self._columns is not None else pa.schema([])
            self._writer = self._open_writer(file, columns)
        writer, self._writer = self._writer, None
        writer.close()  # the next part keeps the columns of this one

    def discard(self) -> None:
        writer, self._writer = self._writer, None
        self._rows, self._tables, self._held = [], [], 0
        if writer is not None:
            pa = require_pyarrow()
            try:
                writer.close()  # into the temporary file, which is deleted next
            except (pa.ArrowException, OSError, ValueError):
                pass
        super().discard()

    def _pack_rows(self) -> None:
        """Turn the rows held into one Arrow table among those held."""
        rows = self._rows
        if not rows:
            return
        pa = require_pyarrow()
        try:
            table = pa.Table.from_pylist(rows, schema=self._columns)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise packing_error(self.label, rows, exc, self._columns is not None) from exc
        if self._columns is None:
            self._columns = table.schema
        self._rows = []
        self._tables.append(table)
        self._held += table.num_rows

    def _conform(self, table: Any) -> Any:
        """``table`` with the file's columns, in its order and of its types."""
        columns = self._columns
        if columns is None:
            self._columns = table.schema
            return table
        if table.schema.equals(columns):
            return table
        missing = [n for n in columns.names if n not in table.schema.names]
        extra = [n for n in table.schema.names if n not in columns.names]
        if missing or extra:
            raise FormatError(
                f"{self.label}: a batch has the columns {table.schema.names}, but the file's "
                f"are {columns.names}; give every batch the same columns (missing: "
                f"{missing}, not in the file: {extra}), or pass schema= to fix them"
            )
        try:
            return table.select(columns.names).cast(columns)
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise FormatError(
                f"{self.label}: a batch's types do not convert to the file's ({exc}); pass "
                "schema= with types that fit every batch, or convert them upstream"
            ) from exc

    def _write(self, file: AtomicFile, *, final: bool = False) -> None:
        """Write the whole row groups held (all that is held when ``final``)."""
        if not self._held:
            return
        pa = require_pyarrow()
        tables = [self._conform(t) for t in self._tables]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        size = self.row_group_size
        whole = table.num_rows if final else table.num_rows // size * size
        if self._writer is None:
            self._writer = self._open_writer(file, self._columns)
        if whole:
            self._write_table(self._writer, table.slice(0, whole) if whole < len(table) else table)
        rest = table.num_rows - whole
        self._tables = [table.slice(whole)] if rest else []
        self._held = rest

    def _open_writer(self, file: AtomicFile, schema: Any) -> Any:
        raise NotImplementedError

    def _write_table(self, writer: Any, table: Any) -> None:
        raise NotImplementedError


class ParquetWriter(_ColumnarWriter):
    """Writes rows and Arrow batches into a Parquet file, published atomically at the end.

    Items are rows (dicts) or batches (``pyarrow.RecordBatch`` or ``Table``, pandas or
    polars DataFrames, e.g. from ``Batch(as_arrow=True)`` or ``ParquetReader(as_batches=
    True)``), mixed as they come. They are buffered into row groups of ``row_group_size``
    rows. The columns are ``schema`` (a ``pyarrow.Schema`` or a mapping of names to
    pyarrow type names: ``{"id": "int64", "when": "timestamp[us]"}``), or else inferred
    from the first row group; a row or batch that does not fit them raises a
    :class:`~nanostream.FormatError` naming the node and saying what to pass.
    ``compression`` is ``"snappy"`` (the default), ``"zstd"``, ``"gzip"``, ``"brotli"``,
    ``"lz4"`` or ``None``.

    ``path``, ``overwrite``, ``rotate_items`` (counting input items: a batch is one) and
    ``fsync`` are as for :class:`~nanostream.nodes.FileWriter`: the file is written under
    a temporary name and renamed into place when the input ends (or each part, with a
    ``{part}`` field), a ``path`` that exists is refused unless ``overwrite=True``, and
    parts are numbered on after those there. ``append=True`` is refused (a Parquet file
    cannot be added to): use parts. Sources' acknowledgements wait until the file holding
    their items is published. Each finished file's path is emitted downstream.

    Example:
        >>> import pathlib, tempfile, pyarrow.parquet as pq, nanostream
        >>> from nanostream.nodes.columnar import ParquetWriter
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "people.parquet"
        >>> rows = [{"name": "ada", "age": 36}, {"name": "alan", "age": 41}]
        >>> writer = ParquetWriter(out, schema={"name": "string", "age": "int16"})
        >>> nanostream.from_iterable(rows) > writer
        ParquetWriter(name=None)
        >>> writer.global_start()
        >>> table = pq.read_table(out)
        >>> table.schema.field("age").type, table.to_pylist() == rows
        (DataType(int16), True)
    """

    format_name = "Parquet"
    codecs = ("snappy", "zstd", "gzip", "brotli", "lz4", None)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schema: Any = None,
        compression: str | None = "snappy",
        row_group_size: int = _ROW_GROUP_SIZE,
        overwrite: bool = False,
        rotate_items: int | None = None,
        fsync: bool = False,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            path,
            schema=schema,
            compression=compression,
            row_group_size=row_group_size,
            overwrite=overwrite,
            rotate_items=rotate_items,
            fsync=fsync,
            name=name,
            **options,
        )

    def _open_writer(self, file: AtomicFile, schema: Any) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetWriter(file.file, schema, compression=self.compression or "none")

    def _write_table(self, writer: Any, table: Any) -> None:
        writer.write_table(table, row_group_size=self.row_group_size)


class FeatherWriter(_ColumnarWriter):
    """Writes rows and Arrow batches into an Arrow IPC file (Feather version 2).

    As :class:`ParquetWriter` (schema, buffering into record batches of
    ``row_group_size`` rows, atomic publishing, parts, no ``append``); ``compression`` is
    ``None`` (the default), ``"lz4"`` or ``"zstd"``. The file reads with
    :class:`FeatherReader`, ``pyarrow.feather.read_table`` or ``pandas.read_feather``.

    Example:
        >>> import pathlib, tempfile, pyarrow.feather as feather, nanostream
        >>> from nanostream.nodes.columnar import FeatherWriter
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "t.feather"
        >>> writer = FeatherWriter(out, compression="zstd")
        >>> nanostream.from_iterable([{"x": 1}, {"x": 2}]) > writer
        FeatherWriter(name=None)
        >>> writer.global_start()
        >>> feather.read_table(str(out)).to_pylist()
        [{'x': 1}, {'x': 2}]
    """

    format_name = "Arrow IPC (Feather)"
    codecs = (None, "lz4", "zstd")

    def _open_writer(self, file: AtomicFile, schema: Any) -> Any:
        pa = require_pyarrow()
        options = pa.ipc.IpcWriteOptions(compression=self.compression)
        return pa.ipc.new_file(file.file, schema, options=options)

    def _write_table(self, writer: Any, table: Any) -> None:
        writer.write_table(table, max_chunksize=self.row_group_size)
