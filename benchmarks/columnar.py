"""Columnar benchmarks: nanostream's Parquet and DuckDB nodes against pyarrow and DuckDB alone.

Three pairs, each measured in one run, alternating (median of ``repeat``, with the
spread of the per-round ratios):

* CSV -> Parquet: ``ArrowCSVReader(as_batches=True) > ParquetWriter`` against pyarrow's
  own ``csv.read_csv`` then ``parquet.write_table``;
* rows (dicts) -> Parquet: ``from_iterable(rows) > ParquetWriter`` against a plain loop
  that buffers the same rows and writes each row group with ``pyarrow``;
* Arrow batches -> DuckDB: ``from_iterable(batches) > DuckDBSink`` against DuckDB's own
  insert of the same Arrow table.

Each workload function takes N and returns the count it handled (``run.py``'s contract);
``rows(n)`` returns the table rows. Run alone with a small N to check it works:

    .venv/bin/python benchmarks/columnar.py --n 20000
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nanostream

Row = tuple[str, float, str]

ROW_GROUP = 131_072  # ParquetWriter's default, used by the baselines too


def _rate(func: Callable[[int], int], n: int) -> float:
    start = time.perf_counter()
    got = func(n)
    elapsed = time.perf_counter() - start
    if got != n:
        raise AssertionError(f"{func} returned {got}, expected {n}")
    return n / elapsed


def _pair(
    ours: tuple[str, Callable[[int], int]],
    theirs: tuple[str, Callable[[int], int]],
    against: str,
    n: int,
    repeat: int,
) -> list[Row]:
    """Two table rows: nanostream's variant and the library's own, median of ``repeat``.

    The variants alternate (``ours`` first in even rounds, ``theirs`` in odd ones), so a
    slow moment of a shared machine hits both alike; the note gives the ratio of the
    medians, the lowest and highest ratio of a round, and the load average.
    """
    samples: dict[str, list[float]] = {ours[0]: [], theirs[0]: []}
    for i in range(repeat):
        order = (ours, theirs) if i % 2 == 0 else (theirs, ours)
        for name, func in order:
            samples[name].append(_rate(func, n))
    ours_rate = statistics.median(samples[ours[0]])
    theirs_rate = statistics.median(samples[theirs[0]])
    rounds = [a / b for a, b in zip(samples[ours[0]], samples[theirs[0]], strict=True)]
    note = (
        f"{ours_rate / theirs_rate:.2f}x {against} (target >= 0.8x; rounds "
        f"{min(rounds):.2f}-{max(rounds):.2f}x; load average {os.getloadavg()[0]:.1f})"
    )
    return [(f"{ours[0]}, N={n:,}", ours_rate, note), (f"{theirs[0]}, N={n:,}", theirs_rate, "")]


def _sales(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "sku": f"sku-{i % 1000}", "price": i * 0.25, "qty": i % 17} for i in range(n)]


def _rows_in(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


# --------------------------------------------------------------------- CSV -> Parquet
def _write_csv(path: Path, n: int) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["id", "sku", "price", "qty"])
        writer.writeheader()
        writer.writerows(_sales(n))


def csv_to_parquet_nanostream(source: Path, folder: Path) -> int:
    from nanostream.nodes.columnar import ArrowCSVReader, ParquetWriter

    out = folder / "ns.parquet"
    writer = ParquetWriter(out, overwrite=True)
    nanostream.from_iterable([source]) > ArrowCSVReader(as_batches=True) > writer
    writer.global_start()
    return _rows_in(out)


def csv_to_parquet_pyarrow(source: Path, folder: Path) -> int:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    out = folder / "pa.parquet"
    pq.write_table(pcsv.read_csv(source), out, row_group_size=ROW_GROUP)
    return _rows_in(out)


# --------------------------------------------------------------------- rows -> Parquet
def rows_to_parquet_nanostream(rows: list[dict[str, Any]], folder: Path) -> int:
    from nanostream.nodes.columnar import ParquetWriter

    out = folder / "ns-rows.parquet"
    writer = ParquetWriter(out, overwrite=True)
    nanostream.from_iterable(rows) > writer
    writer.global_start()
    return _rows_in(out)


def rows_to_parquet_pyarrow(rows: list[dict[str, Any]], folder: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = folder / "pa-rows.parquet"
    writer = None
    held: list[dict[str, Any]] = []
    for row in rows:  # the same loop a user would write: buffer, then a row group
        held.append(row)
        if len(held) == ROW_GROUP:
            table = pa.Table.from_pylist(held)
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            held = []
    if held:
        table = pa.Table.from_pylist(held)
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
    return _rows_in(out)


# --------------------------------------------------------------------- DuckDB
# Both sides start from the same Arrow rows, create the same table from their schema (the
# same types, no data), insert them, close the database and open it again to count them:
# the nanostream side's time is the whole run (threads, the node's connection, its commit).
def _count(path: Path) -> int:
    import duckdb

    with duckdb.connect(str(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM sales").fetchone()[0])


def duckdb_sink(batches: list[Any], folder: Path, tag: str) -> int:
    from nanostream.nodes.duckdb import DuckDBSink

    path = folder / f"ns-{tag}.duckdb"
    nanostream.from_iterable(batches) > (sink := DuckDBSink(path, "sales", create=True))
    sink.global_start()
    return _count(path)


def duckdb_arrow_insert(table: Any, folder: Path, tag: str) -> int:
    import duckdb

    path = folder / f"plain-{tag}.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.register("batch", table)
        conn.execute("CREATE TABLE sales AS SELECT * FROM batch WITH NO DATA")
        conn.execute("INSERT INTO sales SELECT * FROM batch")
    return _count(path)


def rows(n: int, repeat: int = 5) -> list[Row]:
    """The columnar rows for ``benchmarks/run.py``."""
    import pyarrow as pa

    out: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "sales.csv"
        _write_csv(source, n)
        csv_to_parquet_nanostream(source, folder)  # warm up: imports, first-use costs
        out += _pair(
            (
                "CSV -> Parquet, ArrowCSVReader > ParquetWriter",
                lambda k: csv_to_parquet_nanostream(source, folder),
            ),
            (
                "CSV -> Parquet, pyarrow read_csv + write_table",
                lambda k: csv_to_parquet_pyarrow(source, folder),
            ),
            "pyarrow read_csv + write_table",
            n,
            repeat,
        )

        data = _sales(n)
        out += _pair(
            ("rows -> ParquetWriter", lambda k: rows_to_parquet_nanostream(data, folder)),
            (
                "rows -> Parquet, plain pyarrow loop",
                lambda k: rows_to_parquet_pyarrow(data, folder),
            ),
            "a plain pyarrow loop",
            n,
            repeat,
        )

        table = pa.Table.from_pylist(data)
        batches = table.to_batches(max_chunksize=65_536)
        runs = iter(range(10 * repeat + 10))
        duckdb_sink(batches, folder, "warm-up")
        out += _pair(
            (
                "Arrow batches -> DuckDBSink",
                lambda k: duckdb_sink(batches, folder, str(next(runs))),
            ),
            (
                "Arrow table -> DuckDB INSERT ... SELECT",
                lambda k: duckdb_arrow_insert(table, folder, str(next(runs))),
            ),
            "DuckDB's own Arrow insert",
            n,
            repeat,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="rows per workload")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for name, rate, note in rows(args.n, args.repeat):
        print(f"{name:<55} {rate:>12,.0f}  {note}")


if __name__ == "__main__":
    main()
