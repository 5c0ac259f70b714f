"""DuckDB, the embedded database for analytics: :class:`DuckDBSink` appends rows and Arrow
batches to a table, :class:`DuckDBSource` streams the result of a query.

DuckDB is to columns what SQLite is to rows: a database in one file (or in memory), with
no server, that scans and aggregates millions of rows a second. Both nodes move data as
Arrow record batches, so a batch goes into a table, or out of a query, without a Python
object per value. Install the extra with ``pip install 'nanostream[duckdb]'`` (duckdb and
pyarrow); building a node without it raises :class:`~nanostream.MissingDependencyError`.

``database`` is the path of a database file (created if missing), ``":memory:"``, or a
``duckdb`` connection of yours (the node then works on its own cursor of it, so that an
in-memory database is shared; the connection stays open).

Example:
    >>> import duckdb, nanostream
    >>> from nanostream.nodes.duckdb import DuckDBSink, DuckDBSource
    >>> db = duckdb.connect()
    >>> sink = DuckDBSink(db, "sales", create=True)
    >>> nanostream.from_iterable([{"sku": "a", "qty": 2}, {"sku": "b", "qty": 5}]) > sink
    DuckDBSink(name=None, database='<connection>', table='sales')
    >>> sink.global_start()
    >>> out = nanostream.testing.Collect()
    >>> DuckDBSource(db, "SELECT sum(qty)::BIGINT AS total FROM sales") > out
    Collect(name=None)
    >>> out.global_start()
    >>> out.items
    [{'total': 7}]
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .._core.context import node_label
from .._core.errors import GraphError, require
from .._core.node import NanoNode, NodeFunction
from .._core.ticks import TICKS
from ..operators._arrow import (
    check_batch_format,
    convert_batch,
    is_batch,
    packing_error,
    require_pyarrow,
    to_table,
)
from ..operators._operator import check_positive
from ._buffered_sink import BufferedSink
from ._toolkit import ConnectorError, closing_function, input_slices

__all__ = ["ConnectorError", "DuckDBSink", "DuckDBSource"]

log = logging.getLogger("nanostream.duckdb")

# Rows held are turned into an Arrow table every so many (a dict per row takes more room).
_PACK_ROWS = 65_536


def _require_duckdb() -> Any:
    module = require("duckdb", extra="duckdb")
    require_pyarrow(extra="duckdb")
    return module


def _quote(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class _Database:
    """Where a node's DuckDB connection comes from, opened in the node's thread."""

    def __init__(self, database: Any, node: str) -> None:
        duckdb = _require_duckdb()
        if isinstance(database, duckdb.DuckDBPyConnection):
            self.given: Any = database
            self.path: str | None = None
            self.shown = "<connection>"
        elif isinstance(database, (str, os.PathLike)):
            self.given = None
            self.path = os.fspath(database)
            self.shown = self.path
        else:
            raise GraphError(
                f"{node}: database must be the path of a DuckDB file, ':memory:' or a duckdb "
                f"connection, got {type(database).__name__}"
            )
        self.conn: Any = None

    def open(self, node: str) -> Any:
        duckdb = _require_duckdb()
        try:
            if self.given is not None:
                self.conn = self.given.cursor()
            else:
                if self.path != ":memory:":
                    parent = os.path.dirname(os.path.abspath(self.path or "."))
                    os.makedirs(parent, exist_ok=True)
                self.conn = duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise ConnectorError(
                f"{node} could not open the DuckDB database {self.shown!r} "
                f"({type(exc).__name__}: {exc}); check the path, and that no other process "
                "has it open for writing"
            ) from exc
        return self.conn

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


# ----------------------------------------------------------------------------- sink
class DuckDBSink(BufferedSink):
    """Appends rows (dicts) and Arrow batches to a DuckDB table, a transaction per batch.

    Items are rows or batches (``pyarrow.RecordBatch`` or ``Table``, pandas or polars
    DataFrames, e.g. from ``Batch(as_arrow=True)``, :class:`DuckDBSource` or a
    ``ParquetReader(as_batches=True)``). They wait until ``commit_every`` rows are held
    (default 1,000,000: DuckDB is fastest with large transactions; a batch counts its
    rows, and rows are held as Arrow tables of 65,536), or the oldest has waited
    ``flush_interval`` seconds (default 1.0, also on a quiet stream; ``None``: only full
    batches), then go into ``table`` in
    one transaction: rows become one Arrow table, and each Arrow table is inserted by
    DuckDB's Arrow scan (``INSERT INTO table BY NAME SELECT * FROM batch``: columns match
    by name, a column the items lack gets its default). What is held is committed when the
    stream ends and on ``stop()``; a failed or aborted run commits nothing more.

    ``create=True`` creates a missing table from the columns of the first rows written
    (their Arrow types); otherwise a missing table fails the run when it starts, saying to
    create it or pass ``create=True``. ``schema`` is the database schema holding the table.

    Acknowledgements of the items wait until their transaction is committed, so a source
    that commits its progress on acknowledgement never counts a row as done before it is
    in the table.

    Example:
        >>> import duckdb, nanostream, pyarrow as pa
        >>> from nanostream.nodes import Batch
        >>> from nanostream.nodes.duckdb import DuckDBSink
        >>> db = duckdb.connect()
        >>> _ = db.execute("CREATE TABLE t (id BIGINT, name VARCHAR)")
        >>> rows = [{"id": i, "name": f"n{i}"} for i in range(10)]
        >>> sink = DuckDBSink(db, "t")
        >>> nanostream.from_iterable(rows) > Batch(size=4, as_arrow=True) > sink
        DuckDBSink(name=None, database='<connection>', table='t')
        >>> sink.global_start()
        >>> db.execute("SELECT count(*), max(id) FROM t").fetchall()
        [(10, 9)]
    """

    def __init__(
        self,
        database: Any,
        table: str,
        *,
        create: bool = False,
        schema: str | None = None,
        commit_every: int = 1_000_000,
        flush_interval: float | None = 1.0,
        name: str | None = None,
        queue_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, queue_size=queue_size)
        label = name or "DuckDBSink"
        check_positive(label, "commit_every", commit_every, integer=True)
        if not isinstance(table, str) or not table:
            raise GraphError(f"{label}: table must be the name of a table, got {table!r}")
        self._db = _Database(database, label)
        self.table = table
        self.create = create
        self.schema = schema
        self._start_buffer(commit_every, flush_interval)
        self._tables: list[Any] = []
        self._held = 0  # rows held, in _pending (rows) and _tables
        self._exists = False
        self.rows_written = 0
        self.configure(**options)

    def __repr__(self) -> str:
        return f"DuckDBSink(name={self.name!r}, database={self._db.shown!r}, table={self.table!r})"

    @property
    def _target(self) -> str:
        name = _quote(self.table)
        return name if self.schema is None else f"{_quote(self.schema)}.{name}"

    # ------------------------------------------------------------------ node
    def setup(self) -> None:
        self._empty_buffer()
        self._tables, self._held = [], 0
        conn = self._db.open(node_label(self))
        self._exists = self._table_exists(conn)
        if not self._exists and not self.create:
            raise ConnectorError(
                f"{node_label(self)}: table {self.table!r} does not exist in the DuckDB "
                f"database {self._db.shown!r}; create it first, or pass create=True to create "
                "it from the first rows"
            )

    def _table_exists(self, conn: Any) -> bool:
        query = "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?"
        params: list[Any] = [self.table]
        if self.schema is not None:
            query += " AND schema_name = ?"
            params.append(self.schema)
        return bool(conn.execute(query, params).fetchone()[0])

    def as_function(self) -> NodeFunction:
        """The node function: it reads its input a slice at a time where the runner offers
        slices (``inp.slices()``), and reads the clock for ``flush_interval`` once per
        slice (and after a commit), not per row."""
        self.validate()
        node = self

        def duckdb_sink(inp: Iterable[Any], outp: Any) -> None:
            node.setup()
            parts = input_slices(inp)
            rows = node._pending
            size = node.flush_size
            interval = node.flush_interval
            clock = time.monotonic
            due = 0.0  # when the oldest row held has waited flush_interval
            for part in parts:
                if part is TICKS:
                    node.tick()
                    rows = node._pending
                    continue
                if interval is not None and not node._held:
                    node._since = clock()
                    due = node._since + interval
                for item in part:
                    if type(item) is dict:
                        rows.append(item)
                        node._held += 1
                        if len(rows) >= _PACK_ROWS:  # held as Arrow: compact
                            node._pack_rows()
                            rows = node._pending
                    else:
                        node._hold(item)
                    if node._held >= size:
                        node.flush()
                        rows = node._pending
                        if interval is not None:  # the rest of the slice is new
                            node._since = clock()
                            due = node._since + interval
                if interval is not None and node._held and clock() >= due:
                    node.flush()
                    rows = node._pending
            node.cleanup()

        return closing_function(duckdb_sink, self._db.close)

    def process_item(self, item: Any) -> Iterator[Any]:
        if not self._held:
            self._since = time.monotonic()
        if type(item) is dict:
            self._pending.append(item)
            self._held += 1
        else:
            self._hold(item)
        if self._held >= self.flush_size or self._due():
            self.flush()
        yield from ()

    def _hold(self, item: Any) -> None:
        """Hold a batch, or a row that is a mapping but not a dict."""
        if is_batch(item):
            self._pack_rows()
            table = to_table(item)
            self._tables.append(table)
            self._held += table.num_rows
        elif isinstance(item, Mapping):
            self._pending.append(dict(item))
            self._held += 1
        else:
            raise ConnectorError(
                f"{node_label(self)} writes rows (dicts) and batches (Arrow record batches or "
                f"tables, pandas or polars DataFrames), got {type(item).__name__}: "
                f"{item!r:.80}; turn the items into dicts first (e.g. with a Map)"
            )

    def _pack_rows(self) -> None:
        rows = self._pending
        if not rows:
            return
        pa = require_pyarrow()
        try:
            table = pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise packing_error(node_label(self), rows, exc, False) from exc
        self._tables.append(table)
        self._pending = []

    # ------------------------------------------------------------------ writing
    def flush(self) -> None:
        """Insert what is held in one transaction; then its items are done.

        Once it is committed, the items read so far are done (:meth:`release_items`).
        """
        self._pack_rows()
        tables, held = self._tables, self._held
        if not tables:
            return
        pa = require_pyarrow()
        if len(tables) > 1:  # one insert of them all, when their columns are alike
            try:
                tables = [pa.concat_tables(tables)]
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
        # DuckDB scans one contiguous chunk faster than many small ones (1.7x measured),
        # more than the copy costs.
        tables = [
            t.combine_chunks() if t.num_columns and t.column(0).num_chunks > 1 else t
            for t in tables
        ]
        duckdb = _require_duckdb()
        conn = self._db.conn
        assert conn is not None
        target = self._target
        try:
            conn.execute("BEGIN TRANSACTION")
            try:
                for table in tables:
                    conn.register("ns_batch", table)
                    try:
                        if not self._exists:
                            conn.execute(
                                f"CREATE TABLE IF NOT EXISTS {target} AS "
                                "SELECT * FROM ns_batch WITH NO DATA"
                            )
                        conn.execute(f"INSERT INTO {target} BY NAME SELECT * FROM ns_batch")
                    finally:
                        conn.unregister("ns_batch")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except duckdb.Error as exc:
            raise ConnectorError(
                f"{node_label(self)} could not write {held} rows to table {self.table!r} of "
                f"the DuckDB database {self._db.shown!r} ({type(exc).__name__}: {exc}); "
                "make the items' columns and types match the table's"
            ) from exc
        if not self._exists:
            self._exists = True
            log.info("%s: created table %r", node_label(self), self.table)
        self.rows_written += held
        self._tables, self._held = [], 0
        self._empty_buffer()
        self.release_items()  # their sources' acknowledgements may go now


# ----------------------------------------------------------------------------- source
class DuckDBSource(NanoNode):
    """A source that runs a query on DuckDB and streams its result, as rows or batches.

    ``query`` is SQL with ``?`` or ``$name`` placeholders filled from ``params`` (a list
    or a dict). The result is fetched ``rows_per_batch`` rows at a time as Arrow record
    batches, so memory stays bounded however many rows it has; rows come out as dicts,
    or with ``as_batches=True`` each batch whole: a ``pyarrow.RecordBatch``, or with
    ``batch_format="pandas"`` / ``"polars"`` a DataFrame. DuckDB reads Parquet, CSV and
    JSON files itself, so a query such as ``SELECT * FROM 'data/*.parquet' WHERE ...``
    is a source of those files, filtered and projected by DuckDB.

    A query that fails (a syntax error, a missing table) fails the run with a
    :class:`ConnectorError` naming the node and the database.

    Example:
        >>> import duckdb, nanostream
        >>> from nanostream.nodes.duckdb import DuckDBSource
        >>> sink = nanostream.testing.Collect()
        >>> query = "SELECT range AS n FROM range(?)"
        >>> DuckDBSource(":memory:", query, params=[5], as_batches=True) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> [batch.to_pydict() for batch in sink.items]
        [{'n': [0, 1, 2, 3, 4]}]
    """

    def __init__(
        self,
        database: Any,
        query: str,
        *,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        as_batches: bool = False,
        batch_format: str = "arrow",
        rows_per_batch: int = 65_536,
        name: str | None = None,
        queue_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, queue_size=queue_size)
        label = name or "DuckDBSource"
        self._db = _Database(database, label)
        check_batch_format(batch_format, label, as_batches=as_batches)
        check_positive(label, "rows_per_batch", rows_per_batch, integer=True)
        self.query = query
        self.params = params
        self.as_batches = as_batches
        self.batch_format = batch_format
        self.rows_per_batch = rows_per_batch
        self.configure(**options)

    def __repr__(self) -> str:
        return f"DuckDBSource(name={self.name!r}, database={self._db.shown!r})"

    def setup(self) -> None:
        self._db.open(node_label(self))

    def as_function(self) -> NodeFunction:
        return closing_function(super().as_function(), self._db.close)

    def generator(self) -> Iterator[Any]:
        duckdb = _require_duckdb()
        conn = self._db.conn
        assert conn is not None
        try:
            relation = conn.sql(self.query, params=self.params)
            if relation is None:  # a statement without a result
                return
            # duckdb 2 calls it to_arrow_reader; duckdb 1, fetch_arrow_reader
            arrow_reader = getattr(relation, "to_arrow_reader", None)
            if arrow_reader is None:
                arrow_reader = relation.fetch_arrow_reader
            reader = arrow_reader(self.rows_per_batch)
        except duckdb.Error as exc:
            raise ConnectorError(
                f"{node_label(self)}: the query failed on the DuckDB database "
                f"{self._db.shown!r} ({type(exc).__name__}: {exc})"
            ) from exc
        as_batches, batch_format = self.as_batches, self.batch_format
        for batch in reader:
            if as_batches:
                yield convert_batch(batch, batch_format)
            else:
                yield from batch.to_pylist()
