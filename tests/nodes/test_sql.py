"""SQL connectors against real databases: SQLite always, PostgreSQL started by the tests."""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

import nanostream
from nanostream.nodes.sql import ConnectorError, SQLExecute, SQLSink, SQLSource
from nanostream.state import open_store
from nanostream.testing import Collect
from support import RECONNECT_REFUSALS, OneAckedThenWait, TrickleRows, wait_for_file

WAIT = 10.0


class TwoStepCollect(Collect):
    """A Collect sink that sets ``first`` once it holds ``first_n`` items, and ``seen``
    once it holds ``wait_for``: events of the node, so on ray the test's copies are set
    too while the run goes on (its items come back when the run ends)."""

    def __init__(self, first_n: int, wait_for: int) -> None:
        super().__init__(wait_for=wait_for)
        self.first_n = first_n
        self.first = threading.Event()

    def process_item(self, item: Any) -> Iterator[Any]:
        yield from super().process_item(item)
        if len(self.items) >= self.first_n:
            self.first.set()


class Numbers(nanostream.NanoNode):
    """Emits ``{"n": 0}``, ``{"n": 1}``, ... until the run stops."""

    def __init__(self) -> None:
        super().__init__(name="src")

    def generator(self) -> Iterator[Any]:
        for i in itertools.count():
            yield {"n": i}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_table(path: Path, n: int, start: int = 1) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT, score REAL)")
        db.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [(i, f"name-{i}", i / 4) for i in range(start, start + n)],
        )
    db.close()


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return list(db.execute(sql))
    finally:
        db.close()


def run_to_end(sink: nanostream.NanoNode, runner: str) -> None:
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert run.wait(timeout=60)


# ----------------------------------------------------------------------------- SQLSource
def test_source_streams_every_row_as_a_dict(tmp_path: Path, runner: str) -> None:
    make_table(tmp_path / "db.sqlite", 2500)
    sink = Collect()
    SQLSource(
        sqlite_url(tmp_path / "db.sqlite"), "SELECT * FROM t ORDER BY id", batch_size=64
    ) > sink
    run_to_end(sink, runner)
    assert len(sink.items) == 2500
    assert sink.items[0] == {"id": 1, "name": "name-1", "score": 0.25}
    assert [r["id"] for r in sink.items] == list(range(1, 2501))


def test_source_takes_params_and_select_objects(tmp_path: Path, runner: str) -> None:
    make_table(tmp_path / "db.sqlite", 10)
    t = sa.table("t", sa.column("id"), sa.column("name"))
    by_text, by_select = Collect(), Collect()
    url = sqlite_url(tmp_path / "db.sqlite")
    SQLSource(
        url, "SELECT name FROM t WHERE id > :low AND id <= :high", params={"low": 7, "high": 9}
    ) > by_text
    run_to_end(by_text, runner)
    SQLSource(url, sa.select(t.c.id).where(t.c.id > 8).order_by(t.c.id)) > by_select
    run_to_end(by_select, runner)
    assert sorted(r["name"] for r in by_text.items) == ["name-8", "name-9"]
    assert by_select.items == [{"id": 9}, {"id": 10}]


def test_incremental_column_resumes_from_the_state_file(
    tmp_path: Path, runner: str, acks: bool
) -> None:
    db, state = tmp_path / "db.sqlite", tmp_path / "state" / "t.json"
    make_table(db, 5)
    first = Collect()
    SQLSource(
        sqlite_url(db), "SELECT id, name FROM t", incremental_column="id", state_file=state
    ) > first
    run_to_end(first, runner)
    assert [r["id"] for r in first.items] == [1, 2, 3, 4, 5]
    if not acks:  # nothing is acknowledged, so nothing is saved: all is read again
        assert not state.exists()
        return
    assert json.loads(state.read_text()) == {"column": "id", "last": 5}

    make_table(db, 3, start=6)
    second = Collect()
    SQLSource(
        sqlite_url(db), "SELECT id, name FROM t", incremental_column="id", state_file=state
    ) > second
    run_to_end(second, runner)
    assert [r["id"] for r in second.items] == [6, 7, 8]
    assert json.loads(state.read_text())["last"] == 8


def saved(state: Path) -> Any:
    """The value a source's state file holds (None before the first save)."""
    return json.loads(state.read_text())["last"] if state.exists() else None


class StateAtReceipt(Collect):
    """Notes, for each row it gets, the state file's value; fails on row ``fail_at``."""

    def __init__(self, state: Path, fail_at: int | None = None) -> None:
        super().__init__()
        self.state = state
        self.fail_at = fail_at
        self.saved_at: dict[int, Any] = {}

    def process_item(self, item: Any) -> Iterator[Any]:
        self.saved_at[item["id"]] = saved(self.state)
        yield from super().process_item(item)
        if item["id"] == self.fail_at:
            raise RuntimeError(f"the sink failed on row {item['id']}")


def test_the_state_file_keeps_only_rows_the_sink_is_done_with(
    tmp_path: Path, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    db, state = tmp_path / "db.sqlite", tmp_path / "t.json"
    make_table(db, 8)

    def source() -> SQLSource:
        return SQLSource(
            sqlite_url(db),
            "SELECT id FROM t",
            incremental_column="id",
            state_file=state,
            batch_size=2,  # the source saves what is acknowledged after every 2 rows read
        )

    first = StateAtReceipt(state, fail_at=5)
    source() > first
    with pytest.raises(nanostream.NodeFailed, match="failed on row 5"):
        first.global_start(runner=runner)
    assert [r["id"] for r in first.items] == [1, 2, 3, 4, 5]
    # never ahead of the sink: a row is not saved while the sink is working on it
    assert all(value is None or value < row for row, value in first.saved_at.items())
    after_failure = saved(state)
    assert after_failure is None or after_failure <= 4

    second = StateAtReceipt(state)
    source() > second
    second.global_start(runner=runner)
    got = [r["id"] for r in second.items]
    assert 5 in got  # the row the sink failed on is read again...
    assert got == list(range((after_failure or 0) + 1, 9))  # ...with all it had not done
    assert all(value is None or value < row for row, value in second.saved_at.items())
    assert saved(state) == 8


def test_an_aborted_polling_source_reads_the_rows_in_flight_again(
    tmp_path: Path, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    db, state = tmp_path / "db.sqlite", tmp_path / "t.json"
    make_table(db, 6)
    release = tmp_path / "release"

    class Slow(Collect):
        def __init__(self) -> None:
            super().__init__(wait_for=4)
            self.release = release

        def process_item(self, item: Any) -> Iterator[Any]:
            yield from super().process_item(item)
            if item["id"] == 4:  # the sink works on row 4 until the run is aborted
                wait_for_file(self.release, pause=self.sleep, timeout=WAIT)

    def source() -> SQLSource:
        return SQLSource(
            sqlite_url(db),
            "SELECT id FROM t",
            incremental_column="id",
            state_file=state,
            poll_interval=0.01,
            batch_size=1,
        )

    first = Slow()
    source() > first
    run = first.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert first.seen.wait(WAIT)
        value = saved(state)
        assert value is None or value <= 3
    finally:
        run.abort()  # wakes the sink's wait: rows 5 and 6 are never written
    assert [r["id"] for r in first.items][:4] == [1, 2, 3, 4]
    value = saved(state)
    assert value is None or value <= 4  # row 4 may have been done, rows 5 and 6 were not
    second = Collect(wait_for=6 - (value or 0))
    source() > second
    run = second.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert second.seen.wait(WAIT)
    finally:
        run.stop(timeout=10)
    assert [r["id"] for r in second.items] == list(range((value or 0) + 1, 7))
    assert saved(state) == 6


def test_incremental_state_file_keeps_timestamps_and_refuses_another_column(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    engine = sa.create_engine(sqlite_url(db))
    meta = sa.MetaData()
    events = sa.Table("events", meta, sa.Column("at", sa.DateTime), sa.Column("what", sa.Text))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            events.insert(),
            [{"at": dt, "what": f"e{i}"} for i, dt in enumerate(_times(3))],
        )
    engine.dispose()
    state = tmp_path / "events.json"
    sink = Collect()
    select = sa.select(events)
    SQLSource(sqlite_url(db), select, incremental_column="at", state_file=state) > sink
    sink.global_start()
    assert [r["what"] for r in sink.items] == ["e0", "e1", "e2"]
    assert json.loads(state.read_text())["last"] == {"$datetime": "2024-05-01T12:02:00"}

    again = Collect()
    SQLSource(sqlite_url(db), select, incremental_column="at", state_file=state) > again
    again.global_start()
    assert again.items == []

    with pytest.raises(nanostream.NodeFailed) as info:
        wrong = Collect()
        SQLSource(sqlite_url(db), select, incremental_column="what", state_file=state) > wrong
        wrong.global_start()
    assert isinstance(info.value.__cause__, nanostream.StateError)  # not the pipeline's
    assert "is for column 'at', not 'what'" in str(info.value)


@pytest.mark.parametrize("saved", ["{not json", "[1, 2]"])
def test_an_unreadable_state_file_is_a_state_error(tmp_path: Path, saved: str) -> None:
    db = tmp_path / "db.sqlite"
    sqlite3.connect(db).close()
    state = tmp_path / "t.json"
    state.write_text(saved, encoding="utf-8")
    source = SQLSource(sqlite_url(db), "SELECT 1 AS id", incremental_column="id", state_file=state)
    source > Collect()
    with pytest.raises(nanostream.NodeFailed) as info:
        source.global_start()
    assert isinstance(info.value.__cause__, nanostream.StateError)
    assert f"cannot read the state file {state}" in str(info.value)
    assert "delete it to start over" in str(info.value)


def test_a_checkpoint_of_another_incremental_column_is_a_state_error() -> None:
    source = SQLSource("sqlite://", "SELECT 1 AS id", incremental_column="id")
    with pytest.raises(nanostream.StateError, match="is for incremental column 'at', not 'id'"):
        source.restore_state({"column": "at", "last": 1})


def test_an_incremental_query_that_is_neither_text_nor_a_select_is_refused_when_made() -> None:
    with pytest.raises(nanostream.OptionError) as info:
        SQLSource("sqlite://", sa.text("SELECT 1 AS id"), incremental_column="id", name="rows")
    assert str(info.value) == (
        "SQLSource 'rows': incremental_column needs the query as SQL text or a select(), got a "
        "TextClause"
    )


def _times(n: int) -> list[Any]:
    import datetime as dt

    return [dt.datetime(2024, 5, 1, 12, i) for i in range(n)]


def test_polling_source_emits_only_new_rows_and_stops_promptly(tmp_path: Path, runner: str) -> None:
    db = tmp_path / "db.sqlite"
    make_table(db, 4)
    sink = TwoStepCollect(first_n=4, wait_for=6)
    source = SQLSource(
        sqlite_url(db), "SELECT id FROM t", incremental_column="id", poll_interval=0.02
    )
    source > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert sink.first.wait(WAIT)
        assert not sink.seen.is_set()
        make_table(db, 2, start=5)
        assert sink.seen.wait(WAIT)
    finally:
        run.stop(timeout=10)
    assert run.state == "finished"
    assert [r["id"] for r in sink.items] == [1, 2, 3, 4, 5, 6]


def test_stop_wakes_a_source_waiting_for_its_next_poll(tmp_path: Path, runner: str) -> None:
    make_table(tmp_path / "db.sqlite", 1)
    sink = Collect()
    SQLSource(
        sqlite_url(tmp_path / "db.sqlite"),
        "SELECT id FROM t",
        incremental_column="id",
        poll_interval=3600,
    ) > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert sink.seen.wait(WAIT)
    finally:
        started = time.monotonic()
        run.stop(timeout=10)
    assert run.state == "finished"
    assert time.monotonic() - started < 5
    assert sink.items == [{"id": 1}]


def test_a_polling_source_skips_a_failed_query_and_polls_again(tmp_path: Path, runner: str) -> None:
    db = tmp_path / "db.sqlite"
    sink, dead = Collect(wait_for=2), Collect()
    source = SQLSource(
        sqlite_url(db),
        "SELECT id FROM t",
        incremental_column="id",
        poll_interval=0.02,
        retries=0,
        on_error="skip",
        name="rows",
    )
    source > sink
    source.errors > dead
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert dead.seen.wait(WAIT)  # there is no table t yet
        make_table(db, 2)
        assert sink.seen.wait(WAIT)  # a later poll reads it: the source went on
    finally:
        run.stop(timeout=10)
    assert run.state == "finished"
    assert sink.items == [{"id": 1}, {"id": 2}]
    assert dead.items[0].node == "rows" and "no such table: t" in dead.items[0].message
    assert run.stats()["rows"].errors == len(dead.items)


def test_a_failed_query_fails_the_run_by_default(tmp_path: Path, runner: str) -> None:
    source = SQLSource(sqlite_url(tmp_path / "db.sqlite"), "SELECT id FROM t", poll_interval=1)
    source > Collect()
    with pytest.raises(nanostream.NodeFailed, match="no such table: t"):
        source.global_start(runner=runner)


# ----------------------------------------------------------------------------- SQLSink
def test_sink_creates_the_table_and_writes_every_item(tmp_path: Path, runner: str) -> None:
    items = [{"id": i, "name": f"n{i}", "ratio": i / 3, "ok": i % 2 == 0} for i in range(2345)]
    sink = SQLSink(
        sqlite_url(tmp_path / "db.sqlite"), "items", create=True, key="id", batch_size=1000
    )
    nanostream.from_iterable(items) > sink
    run_to_end(sink, runner)
    assert sink.rows_written == 2345
    rows = query(tmp_path / "db.sqlite", "SELECT id, name, ratio, ok FROM items ORDER BY id")
    assert rows == [(d["id"], d["name"], d["ratio"], int(d["ok"])) for d in items]


class Enough(nanostream.NanoNode):
    """Passes items on; sets ``enough`` after the 50th (on ray the test's copy too)."""

    def __init__(self) -> None:
        super().__init__(name="gate")
        self.n = 0
        self.enough = threading.Event()

    def process_item(self, item: Any) -> Iterator[Any]:
        yield item
        self.n += 1
        if self.n == 50:
            self.enough.set()


def test_sink_commits_what_is_pending_when_the_run_stops(tmp_path: Path, runner: str) -> None:
    gate = Enough()
    sink = SQLSink(sqlite_url(tmp_path / "db.sqlite"), "numbers", create=True, batch_size=10**9)
    Numbers() > gate > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert gate.enough.wait(WAIT)
    run.stop(timeout=30)
    assert run.state == "finished"
    emitted = run.stats()["src"].items_out
    assert emitted >= 50
    assert query(tmp_path / "db.sqlite", "SELECT count(*), min(n), max(n) FROM numbers") == [
        (emitted, 0, emitted - 1)
    ]


class AckedRows(nanostream.NanoNode):
    """Emits ``Acked({"id": i}, ack)``, one at a time; each ack notes the rows in ``db``.

    With ``pause_after``, it emits that many rows, then waits (up to 60 s) for the first
    acknowledgement before it emits the rest.
    """

    def __init__(self, n: int, db: Path, table: str, pause_after: int | None = None) -> None:
        super().__init__(name="src", batch_size=1)
        self.n = n
        self.db = db
        self.table = table
        self.pause_after = pause_after
        self.acks: list[tuple[int, int]] = []  # (row id, rows in the table when acked)

    def generator(self) -> Iterator[Any]:
        for i in range(self.n):
            if i == self.pause_after:
                deadline = time.monotonic() + 60
                while not self.acks and time.monotonic() < deadline:
                    self.sleep(0.005)  # cooperatively: the sink runs meanwhile on any runner
            yield nanostream.Acked({"id": i}, partial(self._ack, i))

    def _ack(self, i: int) -> None:
        try:
            (count,) = query(self.db, f"SELECT count(*) FROM {self.table}")[0]
        except sqlite3.OperationalError:  # no table yet
            count = 0
        self.acks.append((i, count))


def test_sink_acknowledges_rows_once_their_transaction_is_committed(
    tmp_path: Path, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    db = tmp_path / "db.sqlite"
    # The source waits after 3 rows for its first ack: it comes once they are committed.
    source = AckedRows(10, db, "t", pause_after=3)
    sink = SQLSink(sqlite_url(db), "t", create=True, batch_size=3)
    source > sink
    sink.global_start(runner=runner)
    assert [i for i, _ in source.acks] == list(range(10))
    assert all(count > i for i, count in source.acks), source.acks  # in the table by then
    assert source.acks[0][1] <= 3, source.acks  # and not only at the end: once committed


def test_sink_commits_a_quiet_stream_after_flush_interval(
    tmp_path: Path, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    db = tmp_path / "db.sqlite"
    source = TrickleRows(3)
    sink = SQLSink(sqlite_url(db), "t", create=True, batch_size=1000, flush_interval=0.05)
    source > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert source.acked.wait(10)  # committed and acknowledged...
        assert query(db, "SELECT count(*) FROM t") == [(3,)]
        assert run.state == "running"  # ...while the stream goes on
    finally:
        run.stop(timeout=10)
    assert sink.rows_written == 3


def test_upsert_updates_by_key_and_the_last_item_in_a_batch_wins(
    tmp_path: Path, runner: str
) -> None:
    url = sqlite_url(tmp_path / "db.sqlite")
    first = SQLSink(url, "stock", mode="upsert", key="sku", create=True)
    nanostream.from_iterable([{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]) > first
    run_to_end(first, runner)
    second = SQLSink(url, "stock", mode="upsert", key=["sku"], batch_size=3)
    updates = [
        {"sku": "b", "qty": 20},
        {"sku": "c", "qty": 3},
        {"sku": "b", "qty": 21},
        {"sku": "a", "qty": 10},
    ]
    nanostream.from_iterable(updates) > second
    run_to_end(second, runner)
    assert query(tmp_path / "db.sqlite", "SELECT sku, qty FROM stock ORDER BY sku") == [
        ("a", 10),
        ("b", 21),
        ("c", 3),
    ]


def test_upsert_the_last_item_with_a_key_wins_over_items_with_other_fields(
    tmp_path: Path,
) -> None:
    """Items of one batch with different fields go in by a statement per set of fields;
    the last item with a key still wins, not the one whose fields come last."""
    db = tmp_path / "db.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER, note TEXT)")
    conn.close()
    items = [
        {"sku": "a", "qty": 1},
        {"sku": "a", "qty": 2, "note": "old"},
        {"sku": "b", "qty": 7, "note": "kept"},
        {"sku": "a", "qty": 3},
    ]
    sink = SQLSink(sqlite_url(db), "stock", mode="upsert", key="sku")
    nanostream.from_iterable(items) > sink
    sink.global_start()
    assert query(db, "SELECT sku, qty, note FROM stock ORDER BY sku") == [
        ("a", 3, None),
        ("b", 7, "kept"),
    ]


def test_generic_upsert_updates_then_inserts(tmp_path: Path) -> None:
    # The path used for databases without a native upsert, exercised on SQLite.
    engine = sa.create_engine(sqlite_url(tmp_path / "db.sqlite"))
    meta = sa.MetaData()
    table = sa.Table(
        "kv", meta, sa.Column("k", sa.Text, primary_key=True), sa.Column("v", sa.Integer)
    )
    meta.create_all(engine)
    sink = SQLSink(engine, "kv", mode="upsert", key="k")
    upsert = sink._generic_upsert(table, ("k", "v"))
    with engine.begin() as conn:
        upsert(conn, [("x", 1), ("y", 2)])
    with engine.begin() as conn:
        upsert(conn, [("x", 10), ("z", 3), ("x", 11)])
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.select(table)).all()) == [("x", 11), ("y", 2), ("z", 3)]
    engine.dispose()


def test_values_are_bound_parameters_never_sql_text(tmp_path: Path, runner: str) -> None:
    nasty = [
        {"id": 1, "order": "x'); DROP TABLE t; --", "first name": 'quote " and \\'},
        {"id": 2, "order": ":id ? %s {0}", "first name": "'; DELETE FROM t"},
    ]
    sink = SQLSink(sqlite_url(tmp_path / "db.sqlite"), "weird table", create=True)
    nanostream.from_iterable(nasty) > sink
    run_to_end(sink, runner)
    rows = query(
        tmp_path / "db.sqlite", 'SELECT id, "order", "first name" FROM "weird table" ORDER BY id'
    )
    assert rows == [(d["id"], d["order"], d["first name"]) for d in nasty]


def test_items_with_different_fields_are_written_in_order(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, a TEXT DEFAULT 'dflt', b TEXT)")
    conn.close()
    items = [{"id": 1, "a": "x"}, {"id": 2, "b": "y"}, {"id": 3, "a": "z", "b": "w"}]
    sink = SQLSink(sqlite_url(db), "t")
    nanostream.from_iterable(items) > sink
    sink.global_start()
    assert query(db, "SELECT id, a, b FROM t ORDER BY id") == [
        (1, "x", None),
        (2, "dflt", "y"),
        (3, "z", "w"),
    ]


@pytest.mark.parametrize(
    ("items", "options", "expected"),
    [
        ([{"id": 1}], {}, "table 'missing' does not exist"),
        ([{"id": 1, "extra": 2}], {"create_first": True}, "field(s) ['extra'] are not columns"),
        ([7], {"create_first": True}, "take dicts"),
        ([{"id": object()}], {"create": True}, "cannot choose a column type for field 'id'"),
    ],
)
def test_sink_errors_say_what_to_do(
    tmp_path: Path, items: list[Any], options: dict[str, Any], expected: str
) -> None:
    db = tmp_path / "db.sqlite"
    if options.pop("create_first", False):
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE missing (id INTEGER)")
        conn.close()
    sink = SQLSink(sqlite_url(db), "missing", **options)
    nanostream.from_iterable(items) > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start()
    assert isinstance(info.value.__cause__, ConnectorError)
    assert expected in str(info.value)


def test_configuration_errors_are_raised_while_building() -> None:
    with pytest.raises(nanostream.GraphError, match="needs key="):
        SQLSink("sqlite://", "t", mode="upsert")
    with pytest.raises(nanostream.GraphError, match="mode must be"):
        SQLSink("sqlite://", "t", mode="merge")  # type: ignore[arg-type]
    with pytest.raises(nanostream.GraphError, match="not a database URL"):
        SQLSource("not a url at all", "SELECT 1")
    with pytest.raises(nanostream.GraphError, match="batch_size"):
        SQLSource("sqlite://", "SELECT 1", batch_size=0)
    with pytest.raises(nanostream.GraphError, match="needs incremental_column"):
        SQLSource("sqlite://", "SELECT 1", state_file="x.json")
    with pytest.raises(nanostream.GraphError, match=r"unknown database or driver .nosuchdb."):
        SQLSink("nosuchdb://u:Hidden-pw-1@h/x", "t")


def test_a_missing_database_driver_is_named(free_port: Callable[[], int]) -> None:
    sink = SQLSink(f"postgresql+pg8000://u:Hidden-pw-1@127.0.0.1:{free_port()}/x", "t")
    nanostream.from_iterable([{"a": 1}]) > sink
    with pytest.raises(nanostream.NodeFailed, match=r"no driver for .postgresql.pg8000.*pg8000"):
        sink.global_start()


def test_an_aborted_run_commits_nothing_pending(tmp_path: Path, runner: str) -> None:
    def fails_at_100(inp: Any, outp: Any) -> None:
        for n, _ in enumerate(inp, 1):
            if n == 100:
                raise ValueError("boom")

    source = Numbers()
    sink = SQLSink(
        sqlite_url(tmp_path / "db.sqlite"),
        "numbers",
        create=True,
        batch_size=10**9,
        flush_interval=None,
    )
    source > sink
    source > fails_at_100
    run = source.global_start(block=False, runner=runner)
    assert run is not None
    with pytest.raises(nanostream.NodeFailed, match="boom"):
        run.wait(30)
    assert sink.rows_written == 0
    assert query(tmp_path / "db.sqlite", "SELECT name FROM sqlite_master") == []


# ----------------------------------------------------------------------------- SQLExecute
def test_execute_runs_the_statement_per_item_with_bound_values(tmp_path: Path, runner: str) -> None:
    db = tmp_path / "db.sqlite"
    make_table(db, 5)
    url = sqlite_url(db)
    lookup, sink = (
        SQLExecute(url, "SELECT id, name FROM t WHERE id = :id OR name = :name"),
        Collect(),
    )
    items = [{"id": 2, "name": "none", "other": "ignored"}, {"id": 99, "name": "name-4"}]
    nanostream.from_iterable(items) > lookup > sink
    run_to_end(sink, runner)
    assert sink.items == [{"id": 2, "name": "name-2"}, {"id": 4, "name": "name-4"}]

    update, nothing = SQLExecute(url, "UPDATE t SET name = :new WHERE id = :id"), Collect()
    nanostream.from_iterable([{"id": 1, "new": "x'); DROP TABLE t; --"}]) > update > nothing
    run_to_end(nothing, runner)
    assert nothing.items == []
    assert query(db, "SELECT name FROM t WHERE id = 1") == [("x'); DROP TABLE t; --",)]

    single, out = SQLExecute(url, "SELECT name FROM t WHERE id = :id"), Collect()
    nanostream.from_iterable([3]) > single > out
    run_to_end(out, runner)
    assert out.items == [{"name": "name-3"}]


def test_execute_names_the_missing_field(tmp_path: Path) -> None:
    make_table(tmp_path / "db.sqlite", 1)
    node = SQLExecute(sqlite_url(tmp_path / "db.sqlite"), "SELECT * FROM t WHERE id = :id")
    nanostream.from_iterable([{"ident": 1}]) > node
    with pytest.raises(nanostream.NodeFailed, match=r"needs field\(s\) \['id'\]"):
        node.global_start()


# ----------------------------------------------------------------------------- failures, secrets
PASSWORD = "Sup3r-Secret-pw"


def test_connection_refused_at_start_is_clear_and_hides_the_password(
    free_port: Callable[[], int], caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'psycopg[binary]'")
    port = free_port()
    url = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:{port}/sales"
    node = SQLSink(url, "t")
    assert PASSWORD not in repr(node)
    assert repr(node) == (
        f"SQLSink(name=None, url='postgresql+psycopg://app:***@127.0.0.1:{port}/sales', "
        "table='t', mode='insert')"
    )
    nanostream.from_iterable([{"a": 1}]) > node
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(nanostream.NodeFailed) as info:
        node.global_start()
    assert time.monotonic() - started < 10
    error = info.value.__cause__
    assert isinstance(error, ConnectorError)
    message = str(info.value)
    assert (
        f"SQLSink could not connect to postgresql+psycopg://app:***@127.0.0.1:{port}/sales"
        in message
    )
    assert "refused" in message.lower()
    everything = "".join(traceback.format_exception(info.value)) + caplog.text
    assert PASSWORD not in everything


def test_missing_sqlalchemy_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[sql\]"):
        SQLSource("sqlite://", "SELECT 1")


# ----------------------------------------------------------------------------- PostgreSQL
def pg_count(url: str, sql: str) -> Any:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(sql).scalar()
    finally:
        engine.dispose()


def pg_exec(url: str, sql: str) -> list[Any]:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(sql)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def fill_pg(url: str, n: int) -> None:
    pg_exec(url, "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)")
    pg_exec(url, f"INSERT INTO t SELECT g, 'name-' || g FROM generate_series(1, {n}) g")


def drop_connections(url: str) -> list[Any]:
    """Terminate every other connection to the test database, as a failing server would."""
    return pg_exec(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )


def test_postgres_sink_upsert_and_source_round_trip(postgres_url: str, runner: str) -> None:
    items = [{"id": i, "name": f"n{i}", "tags": {"i": i}} for i in range(500)]
    sink = SQLSink(postgres_url, "things", mode="upsert", key="id", create=True, batch_size=128)
    nanostream.from_iterable([*items, {"id": 3, "name": "three", "tags": {}}]) > sink
    run_to_end(sink, runner)
    out = Collect()
    SQLSource(postgres_url, "SELECT * FROM things ORDER BY id", batch_size=100) > out
    run_to_end(out, runner)
    expected = [dict(d) for d in items]
    expected[3] = {"id": 3, "name": "three", "tags": {}}
    assert out.items == expected


def test_postgres_source_uses_a_server_side_cursor(postgres_url: str) -> None:
    fill_pg(postgres_url, 5000)
    release, holding = threading.Event(), threading.Event()

    def hold(inp: Any, outp: Any) -> None:
        for item in inp:
            holding.set()
            release.wait(20)
            outp(item)

    sink = Collect()
    source = SQLSource(postgres_url, "SELECT * FROM t ORDER BY id", batch_size=50)
    source > nanostream.as_node(hold, queue_size=8, batch_size=4) > sink
    run = sink.global_start(block=False, queue_size=8, batch_size=4)
    assert run is not None
    try:
        assert holding.wait(10)
        queries = [
            r[0]
            for r in pg_exec(
                postgres_url,
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            )
        ]
        # The source holds an open cursor and fetches 50 rows at a time, not all 5000.
        assert any("FETCH" in q or "DECLARE" in q for q in queries), queries
    finally:
        release.set()
        run.wait(30)
    assert len(sink.items) == 5000


def pg_rows(url: str, table: str) -> int:
    """How many rows ``table`` has (0 while it does not exist)."""
    if not pg_exec(url, f"SELECT to_regclass('{table}') IS NOT NULL")[0][0]:
        return 0
    return int(pg_exec(url, f"SELECT count(*) FROM {table}")[0][0])


class Killer(nanostream.NanoNode):
    """Passes items on; at each item number in ``drop_at`` terminates every other
    connection to the test database, keeping what that answered in ``dropped`` (an
    attribute: on ray the test reads it after the run).

    With ``written``, it first waits (at most ``WAIT`` s) until that table has rows: the
    sink downstream is then set up and writing, whatever the runner (on ray the sink's
    actor may still be starting, or creating its table, when this node has passed on
    the first items).
    """

    def __init__(self, url: str, *drop_at: int, written: str | None = None, **options: Any) -> None:
        super().__init__(name="killer", **options)
        self.url, self.drop_at, self.written = url, drop_at, written
        self.n = 0
        self.dropped: list[Any] = []

    def process_item(self, item: Any) -> Iterator[Any]:
        self.n += 1
        if self.n in self.drop_at:
            if self.written is not None:
                deadline = time.monotonic() + WAIT
                while not pg_rows(self.url, self.written):
                    assert time.monotonic() < deadline, "the sink wrote nothing"
                    self.sleep(0.005)
            self.dropped.extend(drop_connections(self.url))
        yield item


def test_postgres_source_resumes_after_the_connection_drops(postgres_url: str, runner: str) -> None:
    fill_pg(postgres_url, 3000)
    sink = Collect()
    source = SQLSource(
        postgres_url, "SELECT * FROM t", incremental_column="id", batch_size=100, backoff=0.01
    )
    killer = Killer(postgres_url, 500)
    source > killer > sink
    # small queues and batches everywhere: the source is still reading at row 500
    run = sink.global_start(block=False, runner=runner, queue_size=16, batch_size=8)
    assert run is not None and run.wait(60)
    assert killer.dropped == [(True,)]  # the source's connection was terminated mid-stream
    assert [r["id"] for r in sink.items] == list(range(1, 3001))  # nothing lost, no duplicate


def test_postgres_source_without_incremental_column_fails_clearly_on_a_drop(
    postgres_url: str,
) -> None:
    fill_pg(postgres_url, 3000)

    def killer(inp: Any, outp: Any) -> None:
        for n, item in enumerate(inp, 1):
            if n == 500:
                drop_connections(postgres_url)
            outp(item)

    sink = Collect()
    source = SQLSource(postgres_url, "SELECT * FROM t ORDER BY id", batch_size=100)
    source > nanostream.as_node(killer, queue_size=16, batch_size=8) > sink
    with pytest.raises(nanostream.NodeFailed, match="cannot resume where it stopped") as info:
        sink.global_start()
    assert isinstance(info.value.__cause__, ConnectorError)
    password = sa.make_url(postgres_url).password
    assert password and password not in str(info.value)
    assert ":***@127.0.0.1" in str(info.value)


def test_postgres_sink_loses_nothing_when_the_connection_drops(
    postgres_url: str, runner: str
) -> None:
    items = [{"id": i, "v": f"value {i}"} for i in range(3000)]
    sink = SQLSink(postgres_url, "rows", create=True, key="id", batch_size=200, backoff=0.01)
    killer = Killer(postgres_url, 700, 1900, written="rows", queue_size=64, batch_size=16)
    nanostream.from_iterable(items) > killer > sink
    run_to_end(sink, runner)
    assert killer.dropped  # at least one connection of the sink was terminated
    # a primary key on id: a batch written twice would have failed the run
    assert pg_count(postgres_url, "SELECT count(*) FROM rows") == 3000
    assert pg_count(postgres_url, "SELECT count(DISTINCT v) FROM rows") == 3000


def test_round_trip_list_to_sqlite_to_postgres_to_json_lines(
    tmp_path: Path, postgres_url: str, runner: str
) -> None:
    rows = [
        {
            "id": i,
            "name": f"name {i} ✓ 'q' \"dq\"",
            "score": i / 7,
            "note": None if i % 5 else f"n{i}",
        }
        for i in range(10_000)
    ]
    lite = sqlite_url(tmp_path / "stage.db")
    to_sqlite = SQLSink(lite, "stage", create=True, key="id", batch_size=1000)
    nanostream.from_iterable(rows) > to_sqlite
    run_to_end(to_sqlite, runner)

    to_pg = SQLSink(postgres_url, "final", create=True, key="id", batch_size=1000)
    SQLSource(lite, "SELECT id, name, score, note FROM stage ORDER BY id", batch_size=500) > to_pg
    run_to_end(to_pg, runner)

    out_path = tmp_path / "out.jsonl"

    def write_json_lines(inp: Any, outp: Any) -> None:
        with out_path.open("w", encoding="utf-8") as f:
            for row in inp:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    source = SQLSource(postgres_url, "SELECT id, name, score, note FROM final ORDER BY id")
    source > write_json_lines
    run = source.global_start(block=False, runner=runner)
    assert run is not None and run.wait(60)

    with out_path.open(encoding="utf-8") as f:
        got = [json.loads(line) for line in f]
    assert got == rows
    assert len(got) == 10_000


def test_a_connection_lost_while_creating_the_table_creates_it_again(postgres_url: str) -> None:
    """PostgreSQL rolls back the CREATE TABLE with the lost transaction: the retry redoes it."""
    import sqlalchemy as sa

    class LosesFirstWrite(SQLSink):
        lost = False

        def _write(self, conn: Any, table: Any, rows: Any) -> None:
            if not self.lost:
                self.lost = True
                raise sa.exc.OperationalError("INSERT", {}, Exception("server closed"))
            super()._write(conn, table, rows)

    sink = LosesFirstWrite(postgres_url, "created_on_retry", create=True, retries=2, backoff=0)
    nanostream.from_iterable([{"id": i} for i in range(5)]) > sink
    sink.global_start()
    assert sink.lost
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM created_on_retry")).scalar()
    finally:
        engine.dispose()
    assert count == 5


def test_sqlexecute_acknowledges_each_item_before_the_next_comes(
    tmp_path: Path, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    sqlite3.connect(tmp_path / "db.sqlite").close()
    source = OneAckedThenWait(tmp_path / "acked", item={"v": 7})
    sink = Collect()
    source > SQLExecute(sqlite_url(tmp_path / "db.sqlite"), "SELECT :v AS v") > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert run.wait(timeout=30)
    assert source.answered, "the acknowledgement waited for the end of the stream"
    assert sink.items == [{"v": 7}]


# ------------------------------------------------------------- row counts: one name each
class _CountingCursor(sqlite3.Cursor):
    fetched: ClassVar[list[int]] = []

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = super().fetchmany(self.arraysize if size is None else size)
        _CountingCursor.fetched.append(len(rows))
        return rows


class _CountingConnection(sqlite3.Connection):
    def cursor(self, factory: Any = _CountingCursor) -> Any:
        return super().cursor(factory)


@pytest.mark.parametrize("keyword", ["fetch_size", "batch_size"])
def test_the_source_fetches_fetch_size_rows_at_a_time(tmp_path: Path, keyword: str) -> None:
    """``fetch_size`` (``batch_size`` is its former name) is how many rows one fetch takes."""
    db = tmp_path / "db.sqlite"
    make_table(db, 10)
    engine = sa.create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(db, factory=_CountingConnection)
    )
    _CountingCursor.fetched = []
    source = SQLSource(engine, "SELECT id FROM t ORDER BY id", **{keyword: 4})
    sink = Collect()
    source > sink
    sink.global_start()
    assert [r["id"] for r in sink.items] == list(range(1, 11))
    assert source.fetch_size == 4
    assert [n for n in _CountingCursor.fetched if n] == [4, 4, 2]
    engine.dispose()


@pytest.mark.parametrize("keyword", ["commit_every", "batch_size"])
def test_the_sink_commits_every_commit_every_rows(
    tmp_path: Path, runner: str, acks: bool, keyword: str
) -> None:
    """``commit_every`` (``batch_size`` is its former name) is how many rows one transaction
    holds: an acknowledgement sees the table grow by whole transactions only."""
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    db = tmp_path / "db.sqlite"
    source = AckedRows(10, db, "t")
    sink = SQLSink(sqlite_url(db), "t", create=True, flush_interval=None, **{keyword: 4})
    source > sink
    sink.global_start(runner=runner)
    assert sink.commit_every == 4
    counts = {count for _, count in source.acks}
    assert counts <= {4, 8, 10}, source.acks
    assert all(count > row for row, count in source.acks), source.acks
    if runner != "ray":  # on Ray an ack crosses back to the source's actor: it can come late
        # The first transaction's acknowledgements go as the stream goes on, not at its end
        # (on SQLite once the next transaction is written, at the latest: see test_sql_commits).
        assert min(counts) < 10, source.acks
    assert query(db, "SELECT count(*) FROM t") == [(10,)]


@pytest.mark.parametrize(("node", "new"), [(SQLSource, "fetch_size"), (SQLSink, "commit_every")])
def test_a_row_count_given_under_both_names_is_refused(node: Any, new: str) -> None:
    with pytest.raises(nanostream.GraphError) as info:
        node("sqlite://", "t", name="rows", batch_size=5, **{new: 5})
    message = str(info.value)
    assert f"{node.__name__} 'rows'" in message
    assert f"batch_size is the former name of {new}; give {new}= alone" in message


@pytest.mark.parametrize(
    "make",
    [
        lambda **o: SQLSource("sqlite://", "SELECT 1", name="rows", **o),
        lambda **o: SQLSink("sqlite://", "t", name="rows", **o),
        lambda **o: SQLExecute("sqlite://", "SELECT 1", name="rows", **o),
    ],
)
@pytest.mark.parametrize(
    ("options", "says"),
    RECONNECT_REFUSALS,
)
def test_the_reconnect_options_are_checked_when_the_node_is_made(
    make: Callable[..., Any], options: dict[str, Any], says: str
) -> None:
    with pytest.raises(nanostream.OptionError) as info:
        make(**options)
    assert "'rows': " + says in str(info.value)


def test_a_wrong_url_is_refused_naming_the_node() -> None:
    with pytest.raises(nanostream.OptionError, match=r"^SQLSink 'rows': not a database URL"):
        SQLSink("no url at all", "t", name="rows")


def test_a_pipeline_file_gives_the_row_counts_by_either_name(tmp_path: Path) -> None:
    path = tmp_path / "rows.yaml"
    path.write_text(
        "nodes:\n"
        "  rows:\n"
        "    class: nanostream.nodes.sql:SQLSource\n"
        f"    args: {{url: '{sqlite_url(tmp_path / 'a.db')}', query: SELECT 1, fetch_size: 7}}\n"
        "  out:\n"
        "    class: nanostream.nodes.sql:SQLSink\n"
        f"    args: {{url: '{sqlite_url(tmp_path / 'b.db')}', table: t, batch_size: 9}}\n"
    )
    nodes = {node.name: node for node in nanostream.load_pipeline(path).nodes}
    assert (nodes["rows"].fetch_size, nodes["out"].commit_every) == (7, 9)


# --------------------------------------------------------------------------- checkpoints
class Upto(nanostream.NanoNode):
    """Emits {"n": 1..stop} from its stored position; with ``fail_at``, fails at the first
    item from there on once the state store ``store`` holds a checkpoint."""

    def __init__(self, stop: int, *, fail_at: int | None = None, store: str = "") -> None:
        super().__init__(name="numbers")
        self.stop = stop
        self.fail_at = fail_at
        self.store = store

    def setup(self) -> None:
        self.position = 0

    def generator(self) -> Iterator[dict[str, int]]:
        while self.position < self.stop:
            if self.fail_at is not None and self.position >= self.fail_at:
                store = open_store(self.store)
                try:
                    if store.load() is not None:
                        raise RuntimeError("crash")
                finally:
                    store.close()
            self.position += 1
            yield {"n": self.position}

    def snapshot_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_a_buffering_sink_writes_at_each_checkpoint(tmp_path: Path, local_runner: str) -> None:
    """Rows pending at a checkpoint are written first: a restart after a crash loses none."""
    db, store = tmp_path / "db.sqlite", str(tmp_path / "run.state")

    def sink() -> SQLSink:
        return SQLSink(
            sqlite_url(db), "numbers", create=True, commit_every=10**6, flush_interval=None
        )

    crashed = sink()
    Upto(5000, fail_at=2000, store=store) > crashed
    with pytest.raises(nanostream.NodeFailed, match="numbers"):
        crashed.global_start(state=store, checkpoint_items=200, batch_size=64, runner=local_runner)
    written = len(query(db, "SELECT n FROM numbers"))
    restarted = sink()
    Upto(5000) > restarted
    restarted.global_start(state=store, runner=local_runner)
    rows = [n for (n,) in query(db, "SELECT n FROM numbers")]
    assert set(rows) == set(range(1, 5001))  # at least once
    assert written > 0 and len(rows) < 5000 + written  # resumed from a checkpoint


def test_exactly_once_is_refused_where_it_cannot_hold(tmp_path: Path) -> None:
    store = str(tmp_path / "run.state")
    url = sqlite_url(tmp_path / "db.sqlite")
    alone = SQLSink(url, "t", create=True, exactly_once=True, name="out")
    Upto(3) > alone
    with pytest.raises(nanostream.GraphError, match=r"'out' writes exactly once.*state store"):
        alone.global_start()

    from_list = SQLSink(url, "t", create=True, exactly_once=True, name="out")
    nanostream.from_iterable([{"n": 1}], name="list") > from_list
    with pytest.raises(nanostream.GraphError, match="source 'list' cannot replay"):
        from_list.global_start(state=store)

    shared = SQLSink(url, "t", create=True, exactly_once=True, name="out")
    source = Upto(3)
    source > shared
    source > Collect(name="other")
    with pytest.raises(nanostream.GraphError, match=r"only sink.*'other' is a sink too"):
        shared.global_start(state=store)

    merged = SQLSink(url, "t", create=True, exactly_once=True, name="out")
    both = nanostream.as_node(lambda inp, outp: [outp(x) for x in inp], name="both")
    both.configure(holds_items=False)
    Upto(3) > both
    nanostream.from_iterable([{"n": 9}], name="more") > both
    both > merged
    with pytest.raises(nanostream.GraphError, match=r"source 'more' cannot replay|'both'"):
        merged.global_start(state=store)
    with pytest.raises(nanostream.GraphError, match="exactly_once must be true or false"):
        SQLSink(url, "t", exactly_once="yes")  # type: ignore[arg-type]
    for counted in ({"commit_every": 10}, {"batch_size": 10}):
        with pytest.raises(nanostream.OptionError) as info:
            SQLSink(url, "t", exactly_once=True, name="out", **counted)  # type: ignore[arg-type]
        assert str(info.value) == (
            "SQLSink 'out': commit_every does not apply with exactly_once=True (rows are "
            "written at each checkpoint, every checkpoint_interval); leave commit_every out"
        )


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_only_an_incremental_sql_source_resumes_from_a_checkpoint(
    tmp_path: Path, local_runner: str
) -> None:
    source_db, store = tmp_path / "source.sqlite", str(tmp_path / "run.state")
    with sqlite3.connect(source_db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t (v) VALUES (?)", [("a",), ("b",)])
    url, sql = sqlite_url(source_db), "SELECT id, v FROM t"

    whole = SQLSource(url, sql, name="src")
    sink = SQLSink(sqlite_url(tmp_path / "out.sqlite"), "t", create=True, exactly_once=True)
    whole > sink
    with pytest.raises(nanostream.GraphError, match="source 'src' cannot replay"):
        sink.global_start(state=store, runner=local_runner)

    def run() -> list[Any]:
        collect = Collect(name="rows")
        SQLSource(url, sql, incremental_column="id", name="src") > collect
        collect.global_start(state=store, runner=local_runner)
        return [row["v"] for row in collect.items]

    assert run() == ["a", "b"]
    with sqlite3.connect(source_db) as conn:
        conn.execute("INSERT INTO t (v) VALUES ('c')")
    assert run() == ["c"]  # after the value the store kept
    checkpoint = open_store(store)
    try:
        loaded = checkpoint.load()
    finally:
        checkpoint.close()
    assert loaded is not None and loaded.states["src"][1] == {"column": "id", "last": 3}


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_exactly_once_writes_each_checkpoint_once_across_restarts(
    tmp_path: Path, local_runner: str
) -> None:
    db, store = tmp_path / "db.sqlite", str(tmp_path / "run.state")
    for stop in (100, 250, 250, 400):
        sink = SQLSink(sqlite_url(db), "numbers", create=True, exactly_once=True, name="out")
        Upto(stop) > sink
        sink.global_start(state=store, checkpoint_items=30, batch_size=16, runner=local_runner)
    assert [n for (n,) in query(db, "SELECT n FROM numbers ORDER BY n")] == list(range(1, 401))
    marks = query(db, "SELECT sink, checkpoint FROM nanostream_sink_commits")
    assert [m[0] for m in marks] == ["out"] and marks[0][1] >= 4


class ReplayableAckedRows(AckedRows):
    """:class:`AckedRows` that a run with a state store counts as able to replay (its
    position is what it snapshots)."""

    def snapshot_state(self) -> int:
        return len(self.acks)

    def restore_state(self, state: int) -> None:
        pass


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_exactly_once_acknowledges_rows_only_once_written_also_on_a_quiet_input(
    tmp_path: Path, local_runner: str
) -> None:
    """With ``exactly_once`` the rows wait for a checkpoint: a quiet input (longer than
    ``flush_interval``) acknowledges none of them before a checkpoint's transaction has
    written them, and then it passes their acknowledgements on without more input."""
    db, store = tmp_path / "db.sqlite", str(tmp_path / "run.state")
    source = ReplayableAckedRows(4, db, "t", pause_after=3)  # quiet until the first ack
    sink = SQLSink(sqlite_url(db), "t", create=True, exactly_once=True, flush_interval=0.01)
    source > sink
    sink.global_start(state=store, checkpoint_interval=0.1, runner=local_runner)
    assert query(db, "SELECT count(*) FROM t") == [(4,)]
    assert [i for i, _ in source.acks] == list(range(4))
    paused = source.acks[:3]  # acknowledged while the source waited: only by a tick
    assert all(count > i for i, count in paused), paused  # in the table by then


def test_exactly_once_acknowledges_its_last_rows_once_the_final_checkpoint_wrote_them(
    tmp_path: Path, runner: str, acks: bool
) -> None:
    """The rows after the last checkpoint of the run are written as its final checkpoint
    commits, at the sink's end: their acknowledgements come after that, not before."""
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    db, store = tmp_path / "db.sqlite", str(tmp_path / "run.state")
    source = ReplayableAckedRows(5, db, "t")
    sink = SQLSink(sqlite_url(db), "t", create=True, exactly_once=True)
    source > sink
    sink.global_start(state=store, checkpoint_interval=600, runner=runner)  # none before
    assert query(db, "SELECT count(*) FROM t") == [(5,)]
    assert source.acks == [(i, 5) for i in range(5)]  # each once all five were in the table


def test_on_sqlite_the_sink_writes_its_batches_on_one_connection(
    tmp_path: Path, local_runner: str
) -> None:
    """One pool check-out for every batch (plus the one that checks the URL at the start),
    a fresh one after a transaction that failed, and none left checked out at the end."""
    engine = sa.create_engine(sqlite_url(tmp_path / "db.sqlite"))
    checkouts: list[int] = []
    sa.event.listen(engine, "checkout", lambda *args: checkouts.append(1))

    class LosesThirdWrite(SQLSink):
        writes = 0

        def _write(self, conn: Any, table: Any, rows: Any, *prepared: Any) -> None:
            type(self).writes += 1
            if type(self).writes == 3:
                raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
            super()._write(conn, table, rows, *prepared)

    sink = LosesThirdWrite(engine, "t", create=True, commit_every=10, flush_interval=None)
    sink.retries, sink.backoff = 1, 0.0
    nanostream.from_iterable([{"id": i} for i in range(50)]) > sink
    sink.global_start(runner=local_runner)
    try:
        assert LosesThirdWrite.writes == 6  # five batches, one of them twice
        assert len(checkouts) == 3, checkouts
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(DISTINCT id) FROM t").scalar() == 50
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: SQLSource("sqlite://", "SELECT 1", fetch_size=True), "fetch_size"),
        (lambda: SQLSource("sqlite://", "SELECT 1", poll_interval=True), "poll_interval"),
        (lambda: SQLSink("sqlite://", "t", commit_every=True), "commit_every"),
        (lambda: SQLSink("sqlite://", "t", flush_interval=True), "flush_interval"),
    ],
)
def test_a_bool_is_not_a_row_count_or_a_number_of_seconds(
    build: Callable[[], Any], says: str
) -> None:
    with pytest.raises(nanostream.GraphError, match=f"{says} must be a positive .*got True"):
        build()


@pytest.mark.parametrize("n", [1, 332, 333, 334, 999, 1000])
def test_on_sqlite_the_sink_inserts_many_rows_a_statement(tmp_path: Path, n: int) -> None:
    """On SQLite a batch goes in by statements of many rows (SQLite runs a statement once per
    row of an ``executemany``, which takes about twice the time): 333 rows of three values
    a statement (at most 999 values), the rest by the one-row statement; every row arrives,
    in order."""
    db = tmp_path / "db.sqlite"
    engine = sa.create_engine(sqlite_url(db))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER, name TEXT, price REAL)")
    groups: list[int] = []  # of values, in each INSERT run

    def seen(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.startswith("INSERT"):
            groups.append(statement.count("(?, ?, ?)"))

    sa.event.listen(engine, "before_cursor_execute", seen)
    rows = [{"id": i, "name": f"n{i}", "price": i / 4} for i in range(n)]
    sink = SQLSink(engine, "t", commit_every=1000)
    nanostream.from_iterable(rows) > sink
    sink.global_start()
    try:
        assert query(db, "SELECT id, name, price FROM t ORDER BY rowid") == [
            (i, f"n{i}", i / 4) for i in range(n)
        ]
        assert groups == [333] * (n >= 333) + [1] * (n % 333 > 0), groups
    finally:
        engine.dispose()


class SlowAfterThree(ReplayableAckedRows):
    """:class:`ReplayableAckedRows` that takes its time after its third row (a slow
    source, which does not wait for acknowledgements): the nodes after a ``Take(3)``
    end meanwhile, before it."""

    def generator(self) -> Iterator[Any]:
        for i in range(self.n):
            if i == 3:
                self.sleep(0.2)
            yield nanostream.Acked({"id": i}, partial(self._ack, i))


def test_exactly_once_writes_its_last_rows_when_a_node_before_it_ended_its_outputs_early(
    tmp_path: Path, runner: str, acks: bool
) -> None:
    """A node before the sink that ends its outputs early (``Take``) runs on after the
    sink's input has ended; the final checkpoint commits only once every node has ended,
    and the sink waits for it at its end: its last rows are written all the same, before
    their acknowledgements."""
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    db, store = tmp_path / "db.sqlite", str(tmp_path / "run.state")
    source = SlowAfterThree(5, db, "t")
    sink = SQLSink(sqlite_url(db), "t", create=True, exactly_once=True)
    source > nanostream.nodes.Take(3, name="first") > sink
    sink.global_start(state=store, checkpoint_interval=600, runner=runner)  # none before
    assert query(db, "SELECT count(*) FROM t") == [(3,)]
    # (a node that ends its outputs early stops the markers of the last items it read, see
    # docs/reliability.md: not every row's ack is called; each one called saw all three)
    assert source.acks[:1] == [(0, 3)], source.acks
    assert source.acks == [(i, 3) for i in range(len(source.acks))], source.acks
