""":class:`SQLSource`: the rows of a query, once or incrementally (remembering the last key)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._core.acks import Acked
from ..._core.context import node_label
from ..._core.errors import OptionError, StateError
from ..._core.node import NanoNode, NodeFunction
from ..._core.policy import POLICY_OPTIONS
from ...operators._operator import check_positive
from .._acked_progress import AckedProgress
from .._toolkit import closing_function, pause_after_lost_connection
from ._database import (
    _connection,
    _decode_value,
    _discard_cursor,
    _encode_value,
    _is_disconnect,
    _require_sqlalchemy,
    _row_count,
    _shown_url,
    log,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["SQLSource"]

# Acknowledgements write the state file at most this often (and when the source ends).
_SAVE_INTERVAL_S = 1.0


class _IncrementalState:
    """The incremental column's values: read so far (``last``), acknowledged (``acked``).

    ``last`` is where the next query of this run starts; ``acked`` is the value of the
    last row the pipeline is done with, which is what the JSON state file (if any) keeps.
    """

    def __init__(self, column: str, path: str | os.PathLike[str] | None, start: Any) -> None:
        self.column = column
        self.path = Path(path) if path is not None else None
        self.last = start
        self.acked = start
        self.saved = start
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError(f"a JSON {type(data).__name__}, not an object")
            except (OSError, ValueError) as exc:
                raise StateError(
                    f"cannot read the state file {self.path}: {exc}; repair it, or delete it "
                    "to start over"
                ) from None
            if data.get("column") != column:
                raise StateError(
                    f"the state file {self.path} is for column {data.get('column')!r}, not "
                    f"{column!r}; use another state file or delete it to start over"
                )
            self.last = self.acked = self.saved = _decode_value(data.get("last"))

    def advance(self, value: Any) -> None:
        """A row with ``value`` has been emitted: the next query starts after it."""
        if value is not None:
            self.last = value

    def acknowledge(self, values: Sequence[Any]) -> None:
        """The pipeline is done with the rows of ``values`` (in order): save the last one."""
        for value in reversed(values):
            if value is not None:
                self.acked = value
                break
        self.save()

    def save(self) -> None:
        """Write the acknowledged value, atomically, if it changed."""
        if self.path is None or self.acked == self.saved:
            return
        payload = json.dumps({"column": self.column, "last": _encode_value(self.acked)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.saved = self.acked


# ----------------------------------------------------------------------------- SQLSource
class SQLSource(NanoNode):
    """A source that streams the rows of a query as dicts, with a server-side cursor.

    Rows are fetched ``fetch_size`` at a time (default 1000; ``batch_size``, its former
    name, is still taken), so memory stays bounded however many rows the query returns.
    ``query`` is SQL text with ``:name`` placeholders (filled from ``params``) or a
    SQLAlchemy ``select()``.

    With ``incremental_column`` the source remembers the largest value of that column it
    has emitted (in ``state_file``, a small JSON file, if given) and next time reads only
    rows with a larger value, in that column's order; with ``poll_interval`` it runs for
    ever, querying for new rows every ``poll_interval`` seconds (``stop()`` ends it at
    once). The column should increase strictly (an id or an insertion timestamp).

    A connection lost mid-stream is retried ``retries`` times with exponential back-off
    when the query can resume (with ``incremental_column``); otherwise the query fails
    with a :class:`ConnectorError`. Failing to connect at the start fails the run.

    The node's error policy applies to each run of the query (each poll): a query that
    fails fails the run (``on_error="fail"``, the default), or with ``on_error="skip"`` is
    recorded (an error record on the ``errors`` port, counted for ``max_errors`` and
    ``max_error_rate``) and, with ``poll_interval``, the source queries again after
    ``poll_interval`` seconds, from the last row it emitted (with ``incremental_column``).

    Delivery with ``state_file`` is at-least-once: the file keeps the incremental value
    of the last row the pipeline has acknowledged — a row is acknowledged once everything
    made from it has reached every sink (and buffering sinks such as :class:`SQLSink`
    have committed it) — never of a row only emitted. It is written after each batch of
    rows read, before each poll, at most every second while acknowledgements come, and
    after the last one.
    After a crash (even ``kill -9``) or an aborted run, a restart reads again the rows
    that were in flight; a graceful ``stop()`` saves everything it delivered. On a runner
    that does not call acknowledgements (the built-in runners all do; one from another
    package may not) the file does not advance, so a restart reads again from the last
    saved value.

    Example:
        >>> import pathlib, sqlite3, tempfile, nanostream
        >>> from nanostream.nodes.sql import SQLSource
        >>> tmp = tempfile.TemporaryDirectory()
        >>> db = sqlite3.connect(f"{tmp.name}/db.sqlite")
        >>> with db:
        ...     _ = db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        ...     _ = db.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
        >>> db.close()
        >>> source = SQLSource(
        ...     f"sqlite:///{tmp.name}/db.sqlite", "SELECT * FROM t WHERE id >= :low",
        ...     params={"low": 2}, incremental_column="id", state_file=f"{tmp.name}/t.state",
        ... )
        >>> sink = nanostream.testing.Collect()
        >>> source > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [{'id': 2, 'name': 'b'}, {'id': 3, 'name': 'c'}]
        >>> pathlib.Path(tmp.name, "t.state").read_text()
        '{"column": "id", "last": 3}'
        >>> tmp.cleanup()
    """

    policy_options = POLICY_OPTIONS  # its node function is NanoNode's, closing the engine
    policy_per_poll = True  # applied to each run of the query
    own_options = ("retries", "backoff")  # after a lost connection

    def __init__(
        self,
        url: str | sa.URL | sa.Engine,
        query: str | sa.Executable,
        *,
        params: Mapping[str, Any] | None = None,
        fetch_size: int | None = None,
        incremental_column: str | None = None,
        state_file: str | os.PathLike[str] | None = None,
        start_value: Any = None,
        poll_interval: float | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        engine_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        queue_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, queue_size=queue_size)
        _require_sqlalchemy()
        self.fetch_size = _row_count(self, "fetch_size", fetch_size, options)
        label = node_label(self, with_class=True)
        check_positive(label, "poll_interval", poll_interval, unit="seconds", optional=True)
        if state_file is not None and incremental_column is None:
            raise OptionError(
                f"{label}: state_file needs incremental_column: the column to remember"
            )
        if incremental_column is not None and not isinstance(query, str):
            import sqlalchemy as sa

            if not isinstance(query, sa.Select):
                raise OptionError(
                    f"{label}: incremental_column needs the query as SQL text or a select(), "
                    f"got a {type(query).__name__}"
                )
        self.url_shown = _shown_url(url)
        self._db = _connection(
            self, url, engine_options, retries=retries, backoff=backoff, max_backoff=max_backoff
        )
        self.query = query
        self.params = dict(params or {})
        self.incremental_column = incremental_column
        self.state_file = state_file
        self.start_value = start_value
        self.poll_interval = poll_interval
        self._state: _IncrementalState | None = None
        self._restored: dict[str, Any] | None = None
        # Without an incremental column a restart runs the whole query again: nothing to keep.
        self.keeps_no_state = incremental_column is None
        self.configure(**options)

    def __repr__(self) -> str:
        return f"SQLSource(name={self.name!r}, url={self.url_shown!r})"

    def setup(self) -> None:
        self._restored = None
        if self.incremental_column is not None:
            self._state = _IncrementalState(
                self.incremental_column, self.state_file, self.start_value
            )
        self._db.open("SQLSource")

    def as_function(self) -> NodeFunction:
        return closing_function(super().as_function(), self._db.close)

    def snapshot_state(self) -> dict[str, Any] | None:
        """The incremental column and the last value emitted (docs/state.md).

        In a run with a state store each checkpoint keeps it, and a restart queries the
        rows after it (the checkpoint's value wins over ``state_file``'s). Without
        ``incremental_column`` the source keeps no state.

        Example:
            >>> from nanostream.nodes.sql import SQLSource
            >>> source = SQLSource("sqlite://", "SELECT 1 AS id", incremental_column="id")
            >>> source.restore_state({"column": "id", "last": 7})
            >>> source.snapshot_state()
            {'column': 'id', 'last': 7}
        """
        state = self._state
        if state is None:
            return self._restored
        return {"column": state.column, "last": state.last}

    def restore_state(self, state: dict[str, Any] | None) -> None:
        """Go on after the value a checkpoint kept (what :meth:`snapshot_state` took).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        if state is None:
            return
        if state.get("column") != self.incremental_column:
            raise StateError(
                f"the checkpoint is for incremental column {state.get('column')!r}, not "
                f"{self.incremental_column!r}"
            )
        self._restored = dict(state)
        if self._state is not None:
            self._state.last = state["last"]

    def generator(self) -> Iterator[dict[str, Any] | Acked]:
        state = self._state
        progress: AckedProgress[Any] | None = None
        if state is not None and state.path is not None:
            progress = AckedProgress(
                state.acknowledge, interval=_SAVE_INTERVAL_S, name=node_label(self, with_class=True)
            )
        try:
            with self.guard_polls() as guard:
                while True:
                    yield from guard(lambda: self._one_pass(progress))
                    if self.poll_interval is None:
                        return
                    if progress is not None:
                        progress.commit()
                    if self.sleep(self.poll_interval):
                        return
        finally:
            if progress is not None:
                progress.finish()  # the state file is written after the last acknowledgement

    def _statement(self) -> tuple[sa.Executable, dict[str, Any]]:
        import sqlalchemy as sa

        query, params = self.query, dict(self.params)
        column, state = self.incremental_column, self._state
        if column is None or state is None:
            return (sa.text(query) if isinstance(query, str) else query), params
        if isinstance(query, str):
            engine = self._db.engine
            assert engine is not None
            quoted = engine.dialect.identifier_preparer.quote(column)
            inner = query.strip().rstrip(";")
            where = "" if state.last is None else f" WHERE ns_q.{quoted} > :ns_last"
            sql = f"SELECT * FROM ({inner}) AS ns_q{where} ORDER BY ns_q.{quoted}"
            statement: sa.Executable = sa.text(sql)
        else:
            assert isinstance(query, sa.Select)  # checked when the node was made
            sub = query.subquery("ns_q")
            sel = sa.select(sub)
            if state.last is not None:
                sel = sel.where(sub.c[column] > sa.bindparam("ns_last"))
            statement = sel.order_by(sub.c[column])
        if state.last is not None:
            params["ns_last"] = state.last
        return statement, params

    def _one_pass(self, progress: AckedProgress[Any] | None) -> Iterator[dict[str, Any] | Acked]:
        """Run the query once and yield its rows; resume after a lost connection if it can.

        With ``progress``, each row is yielded with an acknowledgement of its incremental
        value (the state file keeps the last acknowledged one).
        """
        import sqlalchemy as sa

        engine = self._db.engine
        assert engine is not None
        state = self._state
        failures = 0
        while True:
            statement, params = self._statement()
            result: sa.CursorResult[Any] | None = None
            try:
                with engine.connect() as conn:
                    streaming = conn.execution_options(
                        stream_results=True, yield_per=self.fetch_size
                    )
                    result = streaming.execute(statement, params)
                    keys = list(result.keys())
                    for partition in result.partitions(self.fetch_size):
                        for row in partition:
                            item = dict(zip(keys, row, strict=True))
                            if state is None:
                                yield item
                                continue
                            value = item.get(state.column)
                            state.advance(value)  # a checkpoint after the item counts it
                            if progress is None:
                                yield item
                            else:
                                yield Acked(item, progress.ack(value))
                        failures = 0
                        if progress is not None:
                            progress.commit()  # what the pipeline is done with so far
                return
            except sa.exc.DBAPIError as exc:
                _discard_cursor(result)
                if not _is_disconnect(exc):
                    raise self._db.error("SQLSource query failed", exc) from None
                if state is None:
                    raise self._db.error(
                        f"SQLSource lost its connection to {self._db.shown} mid-query; "
                        "without incremental_column it cannot resume where it stopped "
                        "(set incremental_column to resume after a drop)",
                        exc,
                    ) from None
                failures += 1
                if pause_after_lost_connection(
                    self,
                    failures,
                    exc,
                    self._db.error,
                    log=log,
                    shown=self._db.shown,
                    doing=f" after {state.column} {state.last!r}",
                    reason=self._db.secrets.scrub(type(exc.orig).__name__),
                ):
                    return
