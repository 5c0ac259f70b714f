""":class:`SQLSink`: rows into a table, in transactions."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain, islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ..._core.context import node_label
from ..._core.errors import OptionError
from ..._core.node import NodeFunction
from ...operators._operator import check_choice
from .._buffered_sink import BufferedSink
from .._toolkit import ConnectorError, closing_function
from ._commits import CommitThread
from ._database import (
    _connection,
    _is_disconnect,
    _require_sqlalchemy,
    _row_count,
    _shown_url,
    log,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["SQLSink"]


# ----------------------------------------------------------------------------- SQLSink
def _column_type(name: str, value: Any) -> Any:
    import sqlalchemy as sa

    kinds: list[tuple[type | tuple[type, ...], Callable[[], Any]]] = [
        (bool, sa.Boolean),
        (int, sa.BigInteger),
        (float, sa.Float),
        (decimal.Decimal, sa.Numeric),
        (str, sa.Text),
        (bytes, sa.LargeBinary),
        (dt.datetime, lambda: sa.DateTime(timezone=value.tzinfo is not None)),
        (dt.date, sa.Date),
        (dt.time, sa.Time),
        ((dict, list), sa.JSON),
    ]
    for kind, make in kinds:
        if isinstance(value, kind):
            return make()
    raise ConnectorError(
        f"SQLSink cannot choose a column type for field {name!r} (a {type(value).__name__}); "
        "create the table yourself, or convert the value to a plain type"
    )


class SQLSink(BufferedSink):
    """A sink that writes each item (a dict) as a row of ``table``.

    Rows are written in transactions of ``commit_every`` rows (default 1000; ``batch_size``,
    its former name, is still taken), or fewer once the oldest of them has waited
    ``flush_interval`` seconds (default 1.0, also on a quiet stream; ``None``: only full
    batches); what is pending is committed when the stream ends and
    when the run is stopped (a failed or aborted run rolls the pending rows back). Values
    are always bound parameters.

    ``mode="insert"`` inserts; ``mode="upsert"`` inserts or updates by ``key`` (a column
    name or a list of them, which must be a primary key or unique), natively on SQLite and
    PostgreSQL and by update-then-insert elsewhere; within a batch the last item with a
    key wins. ``create=True`` creates a missing table from the first batch's fields
    (with ``key`` as its primary key). A field that is not a column is an error.

    A connection lost while writing is retried ``retries`` times with exponential
    back-off; the batch is rewritten in a fresh transaction, so nothing is lost or doubled.

    With ``exactly_once=True`` (in a run with a state store, ``state=``; see
    docs/state.md) rows are written only at checkpoints: a checkpoint keeps the rows that
    came since the one before, and once it is committed they are written in one
    transaction together with the checkpoint's number in ``nanostream_sink_commits`` (a
    table in the sink's database), so rows that a restart restores or replays are written
    once, never twice and never lost. ``commit_every`` does not apply then (it is refused);
    rows wait for the next checkpoint (``checkpoint_interval``), in memory and in the
    state store, and ``flush_interval`` only bounds how long, on a quiet input, the
    acknowledgements of rows a checkpoint wrote wait. The pipeline is refused unless
    every source can replay from a checkpoint and this is its only sink.

    Acknowledgements (``nanostream.Acked``) of the items written wait until their
    transaction is committed, so a source that commits its progress on acknowledgement
    (:class:`SQLSource` with ``state_file``, the directory watchdog's ledger, a Redis
    stream) never counts a row as done before it is in the table; ``flush_interval``
    bounds how long that takes on a slow or quiet stream. On SQLite a full batch commits
    in the sink's commit thread while the next rows are read (SQLite's commit waits for
    the disk), and its acknowledgements go when the sink next reads rows, or after
    ``flush_interval`` of quiet input; with ``flush_interval=None`` it commits in the
    sink's own thread.

    Example:
        >>> import sqlite3, tempfile, nanostream
        >>> from nanostream.nodes.sql import SQLSink
        >>> tmp = tempfile.TemporaryDirectory()
        >>> url = f"sqlite:///{tmp.name}/db.sqlite"
        >>> items = [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}, {"sku": "a", "qty": 5}]
        >>> sink = SQLSink(url, "stock", mode="upsert", key="sku", create=True, commit_every=2)
        >>> nanostream.from_iterable(items) > sink
        SQLSink(name=None, url='sqlite:///.../db.sqlite', table='stock', mode='upsert')
        >>> sink.global_start()
        >>> db = sqlite3.connect(f"{tmp.name}/db.sqlite")
        >>> sorted(db.execute("SELECT * FROM stock"))
        [('a', 5), ('b', 2)]
        >>> db.close()
        >>> tmp.cleanup()
    """

    own_options = ("retries", "backoff")  # of a write after a lost connection

    def __init__(
        self,
        url: str | sa.URL | sa.Engine,
        table: str,
        *,
        mode: Literal["insert", "upsert"] = "insert",
        key: str | Sequence[str] | None = None,
        commit_every: int | None = None,
        flush_interval: float | None = 1.0,
        create: bool = False,
        schema: str | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        engine_options: Mapping[str, Any] | None = None,
        exactly_once: bool = False,
        name: str | None = None,
        queue_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, queue_size=queue_size)
        _require_sqlalchemy()
        counted = commit_every is not None or options.get("batch_size") is not None
        self.commit_every = _row_count(self, "commit_every", commit_every, options)
        if not isinstance(exactly_once, bool):
            raise OptionError(f"SQLSink exactly_once must be true or false, got {exactly_once!r}")
        if exactly_once and counted:
            raise OptionError(
                f"{node_label(self, with_class=True)}: commit_every does not apply with "
                "exactly_once=True (rows are written at each checkpoint, every "
                "checkpoint_interval); leave commit_every out"
            )
        self.exactly_once = exactly_once
        # exactly_once: (checkpoint number, rows) kept by checkpoints, not yet written
        self._staged: list[tuple[int, list[Any]]] = []
        self._checkpoints = 0
        check_choice("SQLSink", "mode", mode, ("insert", "upsert"))
        keys = (key,) if isinstance(key, str) else tuple(key or ())
        if mode == "upsert" and not keys:
            raise OptionError("SQLSink mode='upsert' needs key=: the column(s) that identify a row")
        self.url_shown = _shown_url(url)
        self._db = _connection(
            self, url, engine_options, retries=retries, backoff=backoff, max_backoff=max_backoff
        )
        self.table = table
        self.mode = mode
        self.key = keys
        self._start_buffer(self.commit_every, flush_interval)  # rows wait until committed (flush)
        self.create = create
        self.schema = schema
        self.rows_written = 0
        self._table: sa.Table | None = None
        self._checked: set[tuple[str, ...]] = set()
        # SQLite: the connection the node's thread writes on, kept while the node runs, its
        # thread, and whether the commit thread may commit on it.
        self._kept: tuple[sa.Connection, int, bool | None] | None = None
        # SQLite: the thread that commits a batch while the next one is read, and the batch
        # (its rows and table) whose commit it runs, until the node collects it.
        self._commits: CommitThread | None = None
        self._committing: tuple[list[Any], sa.Table] | None = None
        self._writers: dict[tuple[str, ...], _Writer] = {}
        self.configure(**options)

    def __repr__(self) -> str:
        return (
            f"SQLSink(name={self.name!r}, url={self.url_shown!r}, table={self.table!r}, "
            f"mode={self.mode!r})"
        )

    # ------------------------------------------------------------------ node
    def setup(self) -> None:
        self._empty_buffer()
        self._db.open("SQLSink")

    def as_function(self) -> NodeFunction:
        return closing_function(self._buffer_function(), self._close)

    def _close(self) -> None:
        commits, self._commits = self._commits, None
        try:
            if commits is not None:
                commits.close()  # a commit still running ends first
                self._end_commit(commits)
        finally:
            kept, self._kept = self._kept, None
            try:
                if kept is not None:
                    kept[0].close()
            finally:
                self._db.close()

    def _end_commit(self, commits: CommitThread) -> None:
        """The node function ended with an error while a batch was committing (``close``
        waited for the commit): its items are released if it committed; if it failed
        too, that is logged (the connection is discarded with the batch, as after any
        failed commit), and the node's first error is the one raised."""
        committing, self._committing = self._committing, None
        if committing is None:
            return
        error = commits.result()
        if error is None:
            self.rows_written += len(committing[0])
            self.release_items(keep=len(self._pending))
        else:
            self._drop_connection()  # its transaction may be open still: not to the pool
            label = node_label(self, with_class=True)
            log.warning(
                "%s",
                self._db.error(
                    f"{label}: the commit of {len(committing[0])} rows failed as the node ended",
                    error,
                ),
            )

    @contextmanager
    def _transaction(self, engine: sa.Engine) -> Iterator[sa.Connection]:
        """One transaction, committed when the block ends without an error.

        On SQLite, on a connection the node's thread keeps while the node runs: there is
        no server to lose it, and one from the pool per batch costs a check-out, a ping
        and a reset (about a tenth of a 1,000-row batch). Elsewhere on a connection from
        the pool, checked by ``pool_pre_ping``, so a connection that a server dropped
        between batches is replaced without a retry.
        """
        if engine.dialect.name != "sqlite":
            with engine.begin() as conn:
                yield conn
            return
        conn = self._sqlite_connection(engine)[0]
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self._drop_connection()  # rolled back; the next transaction takes a fresh one
            raise

    def _sqlite_connection(
        self, engine: sa.Engine, *, share: bool = False
    ) -> tuple[sa.Connection, bool]:
        """The connection the node's thread keeps on SQLite (see :meth:`_transaction`), and
        (with ``share``) whether the commit thread may commit on it.

        The first time a connection is to be shared, the commit thread (started then) tries
        it: a commit outside a transaction does nothing, but fails where the driver refuses
        a connection used from another thread (``check_same_thread``, the default of an
        in-memory database); then this connection's commits stay in the node's thread.
        """
        thread = threading.get_ident()
        kept = self._kept
        if kept is None or kept[1] != thread or kept[0].closed or kept[0].invalidated:
            if kept is not None and kept[1] == thread:
                kept[0].close()
            kept = self._kept = (engine.connect(), thread, None)
        conn, _, shared = kept
        if share and shared is None:
            commits = self._commits
            if commits is None:
                commits = self._commits = CommitThread(node_label(self))
            driver: Any = conn.connection.driver_connection
            shared = getattr(driver, "in_transaction", True) is False
            shared = shared and commits.run(driver.commit) is None
            self._kept = (conn, thread, shared)
        return conn, bool(shared)

    def _drop_connection(self) -> None:
        """Discard the kept connection after an error, and its transaction with it.

        Invalidated, not only closed: after a failed commit SQLAlchemy counts the
        transaction as ended, and the pool would take the driver's connection back with
        the batch still in its open transaction (to be committed with the next one).
        """
        kept, self._kept = self._kept, None
        if kept is not None:
            kept[0].invalidate()
            kept[0].close()

    # ------------------------------------------------------------------ writing
    def flush(self) -> None:
        """Write the pending rows in one transaction (retried if the connection drops).

        Once it is committed, the items read so far are done (:meth:`release_items`).
        With ``exactly_once`` rows wait for the next checkpoint instead.
        """
        rows = self._pending
        self._collect_commit(keep=len(rows))
        if not rows or self.exactly_once:
            return
        self._write_now(rows)
        self.rows_written += len(rows)
        self._empty_buffer()
        self.release_items()  # their sources' acknowledgements may go now

    def flush_batch(self) -> None:
        """Write a full batch (or one due by ``flush_interval``) while the stream goes on.

        On SQLite the transaction's commit runs in the node's commit thread (see
        :mod:`~nanostream.connectors.sql._commits`) while the node reads and converts the
        next batch; the node collects it before it writes again (or when the stream ends,
        at a tick, a checkpoint or between slices), and only then releases the batch's
        items. Elsewhere, and where the connection cannot be shared, as :meth:`flush`.
        """
        rows = self._pending
        engine = self._db.engine
        if (
            not rows
            or self.exactly_once
            or self.flush_interval is None  # no ticks: a quiet input would hold the acks
            or engine is None
            or engine.dialect.name != "sqlite"
        ):
            self.flush()
            return
        table = self._table
        try:  # converted while the batch before commits
            prepared = None if table is None else self._prepare(engine.dialect, table, rows)
        finally:
            self._collect_commit(keep=len(rows))

        def write() -> tuple[Callable[[], object] | None, sa.Table]:
            conn, shared = self._sqlite_connection(engine, share=True)
            transaction = conn.begin()
            try:
                written = self._resolve_table(conn, rows)
                self._write(conn, written, rows, prepared if written is table else None)
                if not shared:
                    transaction.commit()
            except BaseException:
                self._drop_connection()  # rolled back; the next write takes a fresh one
                raise
            return (transaction.commit if shared else None), written

        commit, written = self._db.retry(
            self, write, self._write_failed(rows), doing=f" while writing {len(rows)} rows"
        )
        self._empty_buffer()
        if commit is None:  # committed in this thread
            self._table = written
            self.rows_written += len(rows)
            self.release_items()
            return
        assert self._commits is not None
        self._commits.start(commit)
        self._committing = (rows, written)

    def written(self) -> None:
        """Between slices: make sure the last batch's commit has begun; collect it if it
        has ended."""
        commits = self._commits
        if self._committing is not None and commits is not None:
            commits.begun()
            if commits.done():
                self._collect_commit(keep=len(self._pending))

    def _collect_commit(self, keep: int) -> None:
        """Wait for the commit of the batch in the commit thread, if any; once committed,
        release the items read before the last ``keep``. A failed commit rolled the batch
        back: a lost connection writes it again (retried as any write), another error
        fails the node as a failed write does."""
        committing, self._committing = self._committing, None
        if committing is None:
            return
        rows, table = committing
        assert self._commits is not None
        error = self._commits.result()
        if error is not None:
            self._drop_connection()
            failed = [error]

            def again() -> None:
                if failed:  # the commit's error, counted as the first attempt
                    raise failed.pop()
                self._write_once(rows)

            doing = f" while committing {len(rows)} rows"
            self._db.retry(self, again, self._write_failed(rows), doing=doing)
        # Kept only once committed: a lost connection rolls back a CREATE TABLE too.
        self._table = table
        self.rows_written += len(rows)
        self.release_items(keep=keep)

    def _write_now(self, rows: list[Any]) -> None:
        """Write ``rows`` in one transaction in this thread, retried if the connection drops."""
        doing = f" while writing {len(rows)} rows"
        self._db.retry(self, lambda: self._write_once(rows), self._write_failed(rows), doing=doing)

    def _write_once(self, rows: list[Any]) -> None:
        engine = self._db.engine
        assert engine is not None
        with self._transaction(engine) as conn:
            table = self._resolve_table(conn, rows)
            self._write(conn, table, rows)
        # Kept only once committed: a lost connection rolls back a CREATE TABLE too.
        self._table = table

    def _write_failed(self, rows: list[Any]) -> Callable[[sa.exc.DBAPIError], BaseException]:
        def fail(exc: sa.exc.DBAPIError) -> BaseException:
            what = "lost its connection" if _is_disconnect(exc) else "could not write"
            return self._db.error(
                f"SQLSink {what} to table {self.table!r} at {self._db.shown} "
                f"({len(rows)} rows not written)",
                exc,
            )

        return fail

    # ------------------------------------------------------------------ exactly once
    def tick(self) -> None:
        """The input has been quiet for ``flush_interval``: write what is pending. With
        ``exactly_once`` the rows wait for their checkpoint; the acknowledgements of those
        that checkpoints wrote go on now (not only with the next rows), the others' wait.

        Example:
            >>> from nanostream.nodes.sql import SQLSink
            >>> sink = SQLSink("sqlite://", "t", exactly_once=True)
            >>> sink._pending.append({"a": 1})
            >>> sink.tick()  # nothing written, nothing released
            >>> sink._pending
            [{'a': 1}]
        """
        if not self.exactly_once:
            super().tick()
            return
        self.release_items(keep=len(self._pending) + sum(len(rows) for _, rows in self._staged))

    def snapshot_state(self) -> Any:
        """With ``exactly_once``: the rows since the last checkpoint, kept by this one (and
        the ones kept before and not written yet); else write what is pending.

        Example:
            >>> from nanostream.nodes.sql import SQLSink
            >>> sink = SQLSink("sqlite://", "t", exactly_once=True)
            >>> sink._pending.append({"a": 1})
            >>> sink.snapshot_state()
            (1, [(1, [{'a': 1}])])
        """
        if not self.exactly_once:
            return super().snapshot_state()
        self._checkpoints += 1
        self._staged.append((self._checkpoints, list(self._pending)))
        self._pending.clear()  # the node function holds this list
        return self._checkpoints, list(self._staged)

    def restore_state(self, state: Any) -> None:
        """With ``exactly_once``: write, once, the rows the restored checkpoint kept.

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        if not self.exactly_once or state is None:
            return
        self._checkpoints, staged = state
        self._staged = list(staged)
        self.checkpoint_committed()

    def checkpoint_committed(self) -> None:
        """The checkpoint holding the kept rows is committed: write them, each checkpoint's
        rows in one transaction with its number, skipping a number already written.

        Example:
            >>> from nanostream.nodes.sql import SQLSink
            >>> SQLSink("sqlite://", "t").checkpoint_committed()  # nothing kept
        """

        staged = self._staged
        if not staged:
            return
        reopened = self._db.engine is None  # the final checkpoint: the node function ended
        if reopened:
            self._db.open("SQLSink")
        try:
            self._write_staged(staged)
        finally:
            if reopened:
                self._db.close()
        self.release_items(keep=len(self._pending))

    def _write_staged(self, staged: list[tuple[int, list[Any]]]) -> None:
        import sqlalchemy as sa

        engine = self._db.engine
        assert engine is not None
        sink = self._context().name
        marks = sa.Table(
            "nanostream_sink_commits",
            sa.MetaData(),
            sa.Column("sink", sa.String(400), primary_key=True),
            sa.Column("checkpoint", sa.Integer, nullable=False),
        )
        while staged:
            number, rows = staged[0]
            self._write_checkpoint(engine, marks, sink, number, rows)
            self.rows_written += len(rows)
            staged.pop(0)

    def _write_checkpoint(
        self, engine: sa.Engine, marks: sa.Table, sink: str, number: int, rows: list[Any]
    ) -> None:
        """Write one checkpoint's rows and its number in one transaction, unless written."""
        import sqlalchemy as sa

        def write() -> None:
            with engine.begin() as conn:
                marks.create(conn, checkfirst=True)
                done = conn.execute(
                    sa.select(marks.c.checkpoint).where(marks.c.sink == sink)
                ).scalar()
                if done is not None and done >= number:
                    return  # written before a restart
                if rows:
                    table = self._resolve_table(conn, rows)
                    self._write(conn, table, rows)
                    self._table = table
                if done is None:
                    conn.execute(marks.insert().values(sink=sink, checkpoint=number))
                else:
                    conn.execute(
                        marks.update().where(marks.c.sink == sink).values(checkpoint=number)
                    )

        def fail(exc: sa.exc.DBAPIError) -> BaseException:
            return self._db.error(
                f"SQLSink could not write checkpoint {number} to table {self.table!r} at "
                f"{self._db.shown}",
                exc,
            )

        self._db.retry(self, write, fail, doing=f" while writing checkpoint {number}")

    def _resolve_table(self, conn: sa.Connection, rows: list[Mapping[str, Any]]) -> sa.Table:
        if self._table is not None:
            return self._table
        import sqlalchemy as sa

        try:
            table = sa.Table(self.table, sa.MetaData(), schema=self.schema, autoload_with=conn)
        except sa.exc.NoSuchTableError:
            if not self.create:
                raise ConnectorError(
                    f"SQLSink: table {self.table!r} does not exist at {self._db.shown}; "
                    "create it first, or pass create=True to create it from the first items"
                ) from None
            table = self._create_table(conn, rows)
        missing_keys = [k for k in self.key if k not in table.c]
        if missing_keys:
            raise ConnectorError(
                f"SQLSink: key column(s) {missing_keys} are not columns of table {self.table!r}"
            )
        return table

    def _create_table(self, conn: sa.Connection, rows: list[Mapping[str, Any]]) -> sa.Table:
        import sqlalchemy as sa

        examples: dict[str, Any] = {}
        for row in rows:
            for name, value in _as_mapping(row).items():
                if examples.get(name) is None:
                    examples[name] = value
        columns = []
        for name, value in examples.items():
            kind = sa.Text() if value is None else _column_type(name, value)
            columns.append(sa.Column(name, kind, primary_key=name in self.key))
        table = sa.Table(self.table, sa.MetaData(), *columns, schema=self.schema)
        table.create(conn, checkfirst=True)
        log.info("%s: created table %r", node_label(self, with_class=True), self.table)
        return table

    def _check_columns(self, table: sa.Table, names: tuple[str, ...]) -> None:
        if names in self._checked:
            return
        unknown = [n for n in names if n not in table.c]
        if unknown:
            raise ConnectorError(
                f"SQLSink: item field(s) {unknown} are not columns of table {self.table!r} "
                f"(its columns: {list(table.c.keys())}); drop or rename them upstream"
            )
        missing_key = [k for k in self.key if k not in names]
        if missing_key:
            raise ConnectorError(f"SQLSink: an item lacks the key field(s) {missing_key}")
        self._checked.add(names)

    def _write(
        self,
        conn: sa.Connection,
        table: sa.Table,
        rows: list[Mapping[str, Any]],
        prepared: list[_Batch] | None = None,
    ) -> None:
        """Write ``rows`` (or what :meth:`_prepare` made of them) into ``table``."""
        for write, values in prepared or self._prepare(conn.dialect, table, rows):
            write(conn, values)

    def _prepare(
        self, dialect: sa.Dialect, table: sa.Table, rows: list[Mapping[str, Any]]
    ) -> list[_Batch]:
        """``rows`` checked and made into values, as (how to write them, values) pairs:
        one pair for the usual batch, one per set of fields for rows with different ones
        (in order of first sight)."""
        first = rows[0]
        if type(first) is not dict:
            first = _as_mapping(first)
        names = tuple(first)
        writer = self._writer(dialect, table, names)
        # The usual batch: every row has the same fields, read into tuples in C loops; a
        # row with other fields shows as a length or a KeyError.
        try:
            alike = list(map(len, rows)).count(len(names)) == len(rows)
            values = writer.values(rows) if alike else None
        except (KeyError, TypeError):
            values = None
        if values is not None:
            return [(writer.write, values)]
        mappings = list(map(_as_mapping, rows))
        if self.mode == "upsert":  # the last item of a key wins, whatever its fields
            mappings = _last_per_key(mappings, itemgetter(*self.key))
        groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
        for mapping in mappings:
            groups.setdefault(tuple(mapping), []).append(mapping)
        batches = []
        for group_names, group in groups.items():
            w = self._writer(dialect, table, group_names)
            batches.append((w.write, w.values(group)))
        return batches

    def _writer(self, dialect: sa.Dialect, table: sa.Table, names: tuple[str, ...]) -> _Writer:
        """The writer of rows of the fields ``names``, checked against the table."""
        if not names:
            raise ConnectorError("SQLSink: an item has no fields to write")
        self._check_columns(table, names)
        writer = self._writers.get(names)
        if writer is None:
            writer = self._writers[names] = self._make_writer(dialect, table, names)
        return writer

    def _make_writer(self, dialect: sa.Dialect, table: sa.Table, names: tuple[str, ...]) -> _Writer:
        """How rows with the fields ``names`` become values (a tuple per row, in the order
        of ``names``) and how those are written, in one round trip."""
        if self.mode == "insert":
            compiled = table.insert().compile(dialect=dialect, column_keys=list(names))
            if dialect.positional and list(compiled.positiontup or ()) == list(names):
                # The driver directly: the fast path (SQLite, many rows a statement; MySQL),
                # with the columns' bind processors (such as to_float for REAL) applied here.
                sql = str(compiled)
                processors = [
                    table.c[col].type.dialect_impl(dialect).bind_processor(dialect) for col in names
                ]

                insert = _multirow_insert(sql, len(names)) if dialect.name == "sqlite" else None
                if insert is None:

                    def insert(c: sa.Connection, values: list[tuple[Any, ...]]) -> None:
                        c.exec_driver_sql(sql, values)

                return _Writer(_row_values(names, processors), insert)
            statement: Any = table.insert()
        else:
            statement = self._upsert_statement(dialect.name, table, names)
            if statement is None:
                return _Writer(_row_values(names), self._generic_upsert(table, names))
        upsert = self.mode == "upsert"  # then the key is given
        key_of = itemgetter(*(names.index(k) for k in self.key)) if upsert else None

        def execute(c: sa.Connection, values: list[tuple[Any, ...]]) -> None:
            if key_of is not None:
                values = _last_per_key(values, key_of)
            c.execute(statement, [dict(zip(names, v, strict=True)) for v in values])

        return _Writer(_row_values(names), execute)

    def _upsert_statement(self, dialect: str, table: sa.Table, names: tuple[str, ...]) -> Any:
        others = [n for n in names if n not in self.key]
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt: Any = sqlite_insert(table)
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(table)
        else:
            return None
        if not others:
            return stmt.on_conflict_do_nothing(index_elements=list(self.key))
        return stmt.on_conflict_do_update(
            index_elements=list(self.key), set_={n: stmt.excluded[n] for n in others}
        )

    def _generic_upsert(
        self, table: sa.Table, names: tuple[str, ...]
    ) -> Callable[[sa.Connection, list[Any]], None]:
        import sqlalchemy as sa

        others = [n for n in names if n not in self.key]
        where = sa.and_(*(table.c[k] == sa.bindparam(f"ns_key_{k}") for k in self.key))
        update = table.update().where(where).values({n: sa.bindparam(f"ns_v_{n}") for n in others})
        insert = table.insert()
        key_of = itemgetter(*(names.index(k) for k in self.key))

        def upsert(c: sa.Connection, values: list[Any]) -> None:
            for v in _last_per_key(values, key_of):
                row = dict(zip(names, v, strict=True))
                keys = {f"ns_key_{k}": row[k] for k in self.key}
                new = {f"ns_v_{n}": row[n] for n in others}
                updated = c.execute(update, {**new, **keys}).rowcount if others else 0
                if not updated:
                    exists = c.execute(sa.select(sa.literal(1)).where(where), keys).first()
                    if exists is None:
                        c.execute(insert, row)

        return upsert


class _Writer(NamedTuple):
    """How the sink writes rows with one set of fields: ``values(rows)`` gives a tuple per
    row (KeyError or TypeError for a row without those fields); ``write(conn, values)``
    writes them."""

    values: Callable[[list[Mapping[str, Any]]], list[tuple[Any, ...]]]
    write: Callable[[sa.Connection, list[tuple[Any, ...]]], None]


_Batch = tuple[Callable[["sa.Connection", list[tuple[Any, ...]]], None], list[tuple[Any, ...]]]


def _row_values(
    names: tuple[str, ...], processors: Sequence[Callable[[Any], Any] | None] = ()
) -> Callable[[list[Mapping[str, Any]]], list[tuple[Any, ...]]]:
    """A function giving each row's values for ``names`` as a tuple, each passed through
    its column's processor if there is one, in C loops (no Python step per row).

    Example:
        >>> from nanostream.connectors.sql.sink import _row_values
        >>> _row_values(("a", "b"))([{"a": 1, "b": 2}, {"b": 4, "a": 3}])
        [(1, 2), (3, 4)]
        >>> _row_values(("a", "b"), [None, float])([{"a": 1, "b": 2}])
        [(1, 2.0)]
    """
    if len(names) > 1 and not any(processors):
        get = itemgetter(*names)  # a tuple per row, in one call
        return lambda rows: list(map(get, rows))
    getters = [itemgetter(k) for k in names]
    procs = list(processors) or [None] * len(names)

    def values(rows: list[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        return list(
            zip(
                *[
                    map(g, rows) if p is None else map(p, map(g, rows))
                    for g, p in zip(getters, procs, strict=True)
                ],
                strict=True,
            )
        )

    return values


def _multirow_insert(
    sql: str, width: int
) -> Callable[[sa.Connection, list[tuple[Any, ...]]], None] | None:
    """For SQLite: write rows with ``INSERT ... VALUES (?, ?), (?, ?), ...``, many rows a
    statement, instead of ``sql`` (one row, ``width`` values) once per row; None if
    ``sql`` does not end in its one ``VALUES`` group.

    SQLite runs its statement once per row of an ``executemany``; with many rows a
    statement the same rows take about half the time. A statement binds at most 999
    values (the smallest limit of SQLite versions); the rows that do not fill one go by
    ``sql``.

    Example:
        >>> import sqlalchemy as sa
        >>> from nanostream.connectors.sql.sink import _multirow_insert
        >>> engine = sa.create_engine("sqlite://")
        >>> with engine.begin() as conn:
        ...     _ = conn.exec_driver_sql("CREATE TABLE t (a INTEGER, b TEXT)")
        ...     insert = _multirow_insert("INSERT INTO t (a, b) VALUES (?, ?)", 2)
        ...     insert(conn, [(n, str(n)) for n in range(1200)])
        ...     conn.exec_driver_sql("SELECT count(*), sum(a), max(b) FROM t").one()
        (1200, 719400, '999')
    """
    head, values, group = sql.rpartition(" VALUES ")
    if not values or group != "(" + ", ".join(["?"] * width) + ")":
        return None
    per = max(1, min(500, 999 // width))  # rows a statement
    many = head + values + ", ".join([group] * per)
    size = per * width

    def insert(c: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
        full = len(rows) - len(rows) % per
        if full:
            flat = chain.from_iterable(rows[:full] if full < len(rows) else rows)
            c.exec_driver_sql(many, [tuple(islice(flat, size)) for _ in range(full // per)])
        if full < len(rows):
            c.exec_driver_sql(sql, rows[full:])

    return insert


def _last_per_key(rows: list[Any], key: Callable[[Any], Any]) -> list[Any]:
    """``rows`` with only the last one of each ``key(row)``, in order of each key's last
    row (rows of values with ``itemgetter`` of the key's indexes, or items with
    ``itemgetter`` of its names; an item without the key stays, to be refused with its
    fields).

    Example:
        >>> from operator import itemgetter
        >>> from nanostream.connectors.sql.sink import _last_per_key
        >>> _last_per_key([{"k": 1, "v": 1}, {"k": 2}, {"k": 1, "w": 0}], itemgetter("k"))
        [{'k': 2}, {'k': 1, 'w': 0}]
    """
    latest: dict[Any, Any] = {}
    for row in rows:
        try:
            k = key(row)
        except KeyError:
            k = object()
        latest.pop(k, None)
        latest[k] = row
    return list(latest.values())


def _as_mapping(item: Any) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    raise ConnectorError(
        f"SQL nodes take dicts (column name -> value); got a {type(item).__name__}. "
        "Turn items into dicts upstream, for example with a function node"
    )
