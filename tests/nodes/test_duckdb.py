"""DuckDB (nanostream.nodes.duckdb): the sink's transactions and Arrow path, the source."""

from __future__ import annotations

import datetime
import decimal
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.nodes import Batch
from nanostream.testing import Collect
from support import TrickleRows, run_through

duckdb = pytest.importorskip("duckdb", reason="pip install 'nanostream[duckdb]'")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from nanostream.nodes.columnar import ParquetReader  # noqa: E402
from nanostream.nodes.duckdb import ConnectorError, DuckDBSink, DuckDBSource  # noqa: E402


def collect(source: nanostream.NanoNode, runner: str = "threads") -> list[Any]:
    sink = Collect()
    source > sink
    sink.global_start(runner=runner)
    return sink.items


def orders(n: int) -> list[dict[str, Any]]:
    day = datetime.date(2024, 3, 1)
    return [
        {
            "id": i,
            "sku": f"sku-{i % 7}",
            "price": i * 1.25,
            "day": day + datetime.timedelta(days=i % 30),
            "note": None if i % 4 else f"note {i}",
        }
        for i in range(n)
    ]


def test_rows_round_trip_with_their_types(tmp_path: Path, local_runner: str) -> None:
    rows = orders(250)
    db = tmp_path / "shop.duckdb"
    sink = DuckDBSink(db, "orders", create=True, commit_every=100)
    run_through(rows, sink, runner=local_runner)
    assert sink.rows_written == len(rows)
    back = collect(DuckDBSource(db, "SELECT * FROM orders ORDER BY id"), local_runner)
    assert back == rows
    with duckdb.connect(str(db)) as conn:
        kinds = dict(
            conn.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'orders'"
            ).fetchall()
        )
    assert kinds == {
        "id": "BIGINT",
        "sku": "VARCHAR",
        "price": "DOUBLE",
        "day": "DATE",
        "note": "VARCHAR",
    }


def test_arrow_batches_go_in_whole(tmp_path: Path, local_runner: str) -> None:
    rows = orders(300)
    parquet = tmp_path / "orders.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=64)
    db = tmp_path / "shop.duckdb"
    sink = DuckDBSink(db, "orders", create=True, commit_every=128)
    run_through(
        [parquet], ParquetReader(as_batches=True, rows_per_batch=50), sink, runner=local_runner
    )
    more = orders(310)[300:]
    run_through(more, Batch(size=4, as_arrow=True), DuckDBSink(db, "orders"), runner=local_runner)
    back = collect(DuckDBSource(db, "SELECT * FROM orders ORDER BY id"), local_runner)
    assert back == rows + more


def test_columns_match_by_name_and_frames_are_taken(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    db = tmp_path / "t.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("CREATE TABLE t (a BIGINT, b VARCHAR, c DOUBLE DEFAULT 1.5)")
    items = [
        {"b": "x", "a": 1},
        pa.table({"b": ["y"], "a": [2]}),
        pandas.DataFrame([{"a": 3, "b": "z", "c": 9.0}]),
    ]
    run_through(items, DuckDBSink(db, "t"))
    back = collect(DuckDBSource(db, "SELECT a, b, c FROM t ORDER BY a"))
    assert back == [
        {"a": 1, "b": "x", "c": 1.5},
        {"a": 2, "b": "y", "c": 1.5},
        {"a": 3, "b": "z", "c": 9.0},
    ]


class AckedOrders(nanostream.NanoNode):
    """A source of rows whose acknowledgements count the rows in the table at that time."""

    def __init__(self, rows: list[dict[str, Any]], db: Path) -> None:
        super().__init__()
        self.rows = rows
        self.db = str(db)
        self.seen: list[tuple[int, int]] = []

    def in_table(self) -> int:
        with duckdb.connect(self.db) as conn:
            return int(conn.execute("SELECT count(*) FROM orders").fetchone()[0])

    def generator(self) -> Iterator[Any]:
        for row in self.rows:
            ident = row["id"]
            yield nanostream.Acked(row, lambda i=ident: self.seen.append((i, self.in_table())))


def test_acknowledgements_come_after_the_commit(tmp_path: Path, local_runner: str) -> None:
    rows = orders(40)
    db = tmp_path / "shop.duckdb"
    source = AckedOrders(rows, db)
    source > DuckDBSink(db, "orders", create=True, commit_every=8, flush_interval=None)
    source.global_start(runner=local_runner)
    assert [i for i, _ in source.seen] == [r["id"] for r in rows]
    assert all(count > i for i, count in source.seen)  # each row was in the table by then


@pytest.mark.parametrize("every", [None, 0.01], ids=["quiet", "trickling"])
def test_the_flush_interval_commits_a_stream_that_never_fills_a_batch(
    tmp_path: Path, local_runner: str, every: float | None
) -> None:
    """Rows held below ``commit_every`` are committed once the oldest has waited
    ``flush_interval``: on a quiet stream (the node's tick), and on a stream that never
    pauses that long (the deadline is looked at after each slice the node reads)."""
    db = tmp_path / "t.duckdb"
    source = TrickleRows(3, every)
    sink = DuckDBSink(db, "n", create=True, commit_every=1000, flush_interval=0.05)
    source > sink
    run = sink.global_start(block=False, runner=local_runner)
    assert run is not None
    try:
        assert source.acked.wait(10)  # committed (acknowledgements follow the commit)...
        assert sink.rows_written >= 3
        assert run.state == "running"  # ...while the stream goes on
    finally:
        run.stop(timeout=10)
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("SELECT count(*) FROM n").fetchone()[0] == sink.rows_written


def test_a_missing_table_fails_at_the_start(tmp_path: Path) -> None:
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through([{"a": 1}], DuckDBSink(tmp_path / "t.duckdb", "absent", name="store"))
    cause = info.value.__cause__
    assert isinstance(cause, ConnectorError)
    assert "table 'absent' does not exist" in str(cause) and "create=True" in str(cause)


def test_rows_that_do_not_fit_the_table_fail_and_nothing_is_committed(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("CREATE TABLE t (a BIGINT)")
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through([{"a": 1}, {"a": "not a number"}], DuckDBSink(db, "t", commit_every=10))
    assert isinstance(info.value.__cause__, (ConnectorError, nanostream.FormatError))
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through([{"a": 1}, {"zzz": 2}], DuckDBSink(db, "t", commit_every=1))
    assert "could not write 1 rows to table 't'" in str(info.value.__cause__)
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("SELECT a FROM t").fetchall() == [(1,)]  # the first batch only
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through(["text"], DuckDBSink(db, "t"))
    assert "writes rows (dicts) and batches" in str(info.value.__cause__)


def test_a_shared_in_memory_connection(local_runner: str) -> None:
    conn = duckdb.connect()
    rows = orders(20)
    run_through(rows, DuckDBSink(conn, "o", create=True), runner=local_runner)
    assert conn.execute("SELECT count(*), sum(id) FROM o").fetchone() == (20, sum(range(20)))
    query = "SELECT sku, count(*) AS n FROM o GROUP BY sku ORDER BY sku"
    counts = collect(DuckDBSource(conn, query), local_runner)
    assert sum(r["n"] for r in counts) == len(rows)


def test_source_batches_params_and_formats(local_runner: str) -> None:
    query = "SELECT range AS n, range * 0.5 AS half FROM range($stop)"
    batches = collect(
        DuckDBSource(":memory:", query, params={"stop": 10}, as_batches=True, rows_per_batch=4),
        local_runner,
    )
    assert [b.num_rows for b in batches] == [4, 4, 2]
    assert [r["n"] for b in batches for r in b.to_pylist()] == list(range(10))
    pandas = pytest.importorskip("pandas")
    frames = collect(
        DuckDBSource(
            ":memory:", "SELECT 1::DECIMAL(4,2) AS d", as_batches=True, batch_format="pandas"
        ),
    )
    assert isinstance(frames[0], pandas.DataFrame)
    assert frames[0]["d"][0] == decimal.Decimal("1.00")


def test_source_errors_and_refused_options(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(nanostream.NodeFailed) as info:
        collect(DuckDBSource(":memory:", "SELECT * FROM nowhere", name="q"))
    cause = info.value.__cause__
    assert isinstance(cause, ConnectorError) and "the query failed" in str(cause)
    with pytest.raises(nanostream.GraphError, match="pass as_batches=True"):
        DuckDBSource(":memory:", "SELECT 1", batch_format="polars")
    with pytest.raises(nanostream.GraphError, match="rows_per_batch"):
        DuckDBSource(":memory:", "SELECT 1", rows_per_batch=0)
    with pytest.raises(nanostream.GraphError, match="database must be"):
        DuckDBSink(42, "t")
    with pytest.raises(nanostream.GraphError, match="does not apply on_error"):
        DuckDBSink(":memory:", "t", on_error="skip")
    monkeypatch.setitem(sys.modules, "duckdb", None)
    with pytest.raises(nanostream.MissingDependencyError) as missing:
        DuckDBSink(":memory:", "t")
    assert "pip install 'nanostream[duckdb]'" in str(missing.value)


class Endless(nanostream.NanoNode):
    """Rows for ever; asks the run to stop after ``stop_after`` of them."""

    def __init__(self, stop_after: int) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.produced = 0

    def generator(self) -> Iterator[Any]:
        for i in itertools.count():
            if i == self.stop_after:
                self.request_stop()
            self.produced = i + 1
            yield {"i": i}


def test_stop_commits_what_is_held(tmp_path: Path, local_runner: str) -> None:
    db = tmp_path / "t.duckdb"
    source = Endless(stop_after=100)
    source > DuckDBSink(db, "n", create=True, commit_every=1_000_000, flush_interval=None)
    source.global_start(runner=local_runner)
    assert source.produced > 100
    with duckdb.connect(str(db)) as conn:
        count, top = conn.execute("SELECT count(*), max(i) FROM n").fetchone()
    assert (count, top) == (source.produced, source.produced - 1)
