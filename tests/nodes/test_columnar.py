"""Columnar files (nanostream.nodes.columnar): Parquet, Arrow IPC (Feather), CSV by Arrow."""

from __future__ import annotations

import csv
import datetime
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanostream
from nanostream.nodes import Batch, CSVReader, FormatError, OutputExistsError
from nanostream.testing import Collect
from support import run_through, write_across_a_crash

pa = pytest.importorskip("pyarrow", reason="pip install 'nanostream[parquet]'")
pq = pytest.importorskip("pyarrow.parquet")
feather = pytest.importorskip("pyarrow.feather")

from nanostream.nodes.columnar import (  # noqa: E402
    ArrowCSVReader,
    FeatherReader,
    FeatherWriter,
    ParquetReader,
    ParquetWriter,
)
from nanostream.operators._arrow import parse_schema  # noqa: E402


def people(n: int) -> list[dict[str, Any]]:
    start = datetime.date(2024, 1, 1)
    return [
        {
            "id": i,
            "name": f"person {i}",
            "score": i * 0.5,
            "born": start + datetime.timedelta(days=i),
            "vip": i % 3 == 0,
        }
        for i in range(n)
    ]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# ----------------------------------------------------------------------------- round trips
def test_csv_to_parquet_to_rows_keeps_rows_and_types(tmp_path: Path, local_runner: str) -> None:
    rows = people(50)
    write_csv(tmp_path / "in.csv", rows)
    types = {
        "id": int,
        "score": float,
        "born": datetime.date.fromisoformat,
        "vip": lambda s: s == "True",
    }
    out = tmp_path / "out.parquet"
    published = run_through(
        [tmp_path / "in.csv"],
        CSVReader(types=types),
        ParquetWriter(out, row_group_size=16),
        runner=local_runner,
    )
    assert published == [str(out)]
    schema = pq.read_schema(out)
    kinds = {name: schema.field(name).type for name in schema.names}
    assert kinds == {
        "id": pa.int64(),
        "name": pa.string(),
        "score": pa.float64(),
        "born": pa.date32(),
        "vip": pa.bool_(),
    }
    assert pq.ParquetFile(out).num_row_groups == -(-len(rows) // 16)
    back = run_through([out], ParquetReader(rows_per_batch=7), runner=local_runner)
    assert back == rows
    assert [type(v) for v in back[0].values()] == [type(v) for v in rows[0].values()]


def test_csv_to_parquet_by_arrow_batches(tmp_path: Path, local_runner: str) -> None:
    rows = people(100)
    write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.parquet"
    reader = ArrowCSVReader(as_batches=True, block_size=1024)
    run_through([tmp_path / "in.csv"], reader, ParquetWriter(out), runner=local_runner)
    table = pq.read_table(out)
    assert table.num_rows == len(rows)
    assert table.to_pylist() == rows  # Arrow's CSV parser infers the same types


rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "n": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
            "x": st.one_of(st.none(), st.floats(allow_nan=False)),
            "s": st.one_of(st.none(), st.text(max_size=20)),
            "b": st.binary(max_size=10),
        }
    ),
    max_size=40,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows_strategy, group=st.integers(1, 8), batches=st.booleans())
def test_any_rows_come_back_as_written(
    tmp_path: Path, rows: list[dict[str, Any]], group: int, batches: bool
) -> None:
    schema = parse_schema({"n": "int64", "x": "double", "s": "string", "b": "binary"}, "t")
    out = tmp_path / "h.parquet"
    items: list[Any] = rows
    if batches:  # the same rows as Arrow batches of ``group`` rows
        items = [
            pa.RecordBatch.from_pylist(rows[i : i + group], schema=schema)
            for i in range(0, len(rows), group)
        ]
    run_through(items, ParquetWriter(out, schema=schema, row_group_size=group, overwrite=True))
    assert pq.ParquetFile(out).num_row_groups == -(-len(rows) // group)
    assert list(ParquetReader(rows_per_batch=group).read(out)) == rows


def test_feather_round_trip_with_compression(tmp_path: Path, local_runner: str) -> None:
    rows = people(30)
    out = tmp_path / "t.feather"
    run_through(rows, FeatherWriter(out, compression="zstd", row_group_size=8), runner=local_runner)
    assert feather.read_table(str(out)).to_pylist() == rows
    assert run_through([out], FeatherReader(rows_per_batch=5), runner=local_runner) == rows
    batches = run_through(
        [out], FeatherReader(as_batches=True, columns=["id"]), runner=local_runner
    )
    assert [b.num_rows for b in batches] == [8, 8, 8, 6]
    assert [r["id"] for b in batches for r in b.to_pylist()] == [r["id"] for r in rows]


# ----------------------------------------------------------------------------- reader
def test_reader_emits_batches_in_the_format_asked(tmp_path: Path, local_runner: str) -> None:
    rows = people(20)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=8)
    arrow = run_through([path], ParquetReader(as_batches=True), runner=local_runner)
    assert [type(b) for b in arrow] == [pa.RecordBatch] * 3
    assert [b.num_rows for b in arrow] == [8, 8, 4]
    pandas = pytest.importorskip("pandas")
    frames = run_through([path], ParquetReader(as_batches=True, batch_format="pandas"))
    assert all(isinstance(f, pandas.DataFrame) for f in frames)
    assert sum(len(f) for f in frames) == len(rows)
    polars = pytest.importorskip("polars")
    frames = run_through([path], ParquetReader(as_batches=True, batch_format="polars"))
    assert all(isinstance(f, polars.DataFrame) for f in frames)
    assert [r for f in frames for r in f.to_dicts()] == rows


def test_reader_takes_bytes_and_refuses_other_items(tmp_path: Path) -> None:
    rows = people(3)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert run_through([path.read_bytes()], ParquetReader()) == rows
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through([42], ParquetReader(name="pq"))
    assert isinstance(info.value.__cause__, FormatError)
    assert "takes a path" in str(info.value.__cause__)


def test_a_file_that_is_not_parquet_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet at all")
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through([bad], ParquetReader())
    cause = info.value.__cause__
    assert isinstance(cause, FormatError)
    assert cause.source == str(bad)
    assert "not a readable Parquet file" in str(cause)


def _corrupt_first_row_group(path: Path) -> None:
    offset = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(b"\xff" * 64)


def test_a_bad_row_group_is_an_error_record_and_the_rest_is_read(
    tmp_path: Path, local_runner: str
) -> None:
    rows = [{"id": i} for i in range(20)]
    broken = tmp_path / "broken.parquet"
    pq.write_table(pa.Table.from_pylist(rows), broken, row_group_size=10)
    _corrupt_first_row_group(broken)
    good = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:3]), good)
    missing = tmp_path / "missing.parquet"
    reader = ParquetReader(on_error="skip")
    errors = Collect()
    reader.errors > errors
    out = run_through([broken, missing, good], reader, runner=local_runner)
    assert out == rows[10:] + rows[:3]
    assert [e.item["source"] if isinstance(e.item, dict) else e.item for e in errors.items] == [
        str(broken),
        missing,
    ]
    assert "row group 0 (of 2) cannot be read" in errors.items[0].message
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through([broken], ParquetReader())
    assert "row group 0" in str(info.value.__cause__)


def test_reader_options_are_checked_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(nanostream.GraphError, match="pass as_batches=True"):
        ParquetReader(batch_format="pandas")
    with pytest.raises(nanostream.GraphError, match="batch_format must be one of"):
        ParquetReader(as_batches=True, batch_format="excel")
    with pytest.raises(nanostream.GraphError, match="rows_per_batch must be a positive"):
        ParquetReader(rows_per_batch=0)
    monkeypatch.setitem(sys.modules, "polars", None)  # as if it were not installed
    with pytest.raises(nanostream.MissingDependencyError) as info:
        ParquetReader(as_batches=True, batch_format="polars")
    assert "pip install 'nanostream[polars]'" in str(info.value)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    for build in (ParquetReader, lambda: ParquetWriter("x.parquet")):
        with pytest.raises(nanostream.MissingDependencyError) as info:
            build()
        assert "pip install 'nanostream[parquet]'" in str(info.value)
    with pytest.raises(nanostream.MissingDependencyError):
        Batch(size=2, as_arrow=True)


def test_arrow_csv_reader_types_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id;amount\n1;2.5\n2;3\n")
    rows = run_through(
        [path], ArrowCSVReader(delimiter=";", schema={"id": "int32", "amount": "double"})
    )
    assert rows == [{"id": 1, "amount": 2.5}, {"id": 2, "amount": 3.0}]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through([bad], ArrowCSVReader())
    assert isinstance(info.value.__cause__, FormatError)
    assert info.value.__cause__.source == str(bad)


# ----------------------------------------------------------------------------- memory
def test_a_1_gib_parquet_file_is_read_in_flat_memory(tmp_path: Path) -> None:
    """A 1 GiB file (generated here) read row by row: RSS grows by a row group's worth
    and a queue's, not by the file's size."""
    psutil = pytest.importorskip("psutil")
    path = tmp_path / "big.parquet"
    group_rows, groups, width = 1024, 64, 16 << 10  # 64 row groups of 16 MiB
    kind = pa.binary(width)
    schema = pa.schema([("id", pa.int64()), ("blob", kind)])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for g in range(groups):
            noise = pa.py_buffer(os.urandom(width * group_rows))
            blob = pa.FixedSizeBinaryArray.from_buffers(kind, group_rows, [None, noise])
            ids = pa.array(range(g * group_rows, (g + 1) * group_rows), type=pa.int64())
            writer.write_table(pa.table([ids, blob], schema=schema))
    size = path.stat().st_size
    assert size >= 1 << 30
    process = psutil.Process()
    before = process.memory_info().rss

    class Measure(nanostream.NanoNode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0
            self.bytes = 0
            self.peak = 0

        def process_item(self, item: dict[str, Any]) -> Iterator[Any]:
            assert item["id"] == self.count
            self.count += 1
            self.bytes += len(item["blob"])
            if self.count % 256 == 0:
                self.peak = max(self.peak, process.memory_info().rss)
            yield from ()

    measure = Measure()
    nanostream.from_iterable([path]) > ParquetReader(rows_per_batch=256) > measure
    measure.global_start(queue_size=256)
    assert measure.count == group_rows * groups
    assert measure.bytes == group_rows * groups * width
    growth = measure.peak - before
    assert growth < 256 << 20, f"RSS grew by {growth / 2**20:.0f} MiB reading {size:,} bytes"


# ----------------------------------------------------------------------------- writer
def test_writer_schema_compression_and_row_groups(tmp_path: Path, local_runner: str) -> None:
    rows = people(10)
    out = tmp_path / "t.parquet"
    schema = {"id": "int32", "name": "string", "score": "float", "born": "date32", "vip": "bool"}
    writer = ParquetWriter(out, schema=schema, compression="zstd", row_group_size=4)
    run_through(rows, writer, runner=local_runner)
    file = pq.ParquetFile(out)
    assert file.schema_arrow.field("id").type == pa.int32()
    assert file.schema_arrow.field("score").type == pa.float32()
    assert file.num_row_groups == 3
    assert file.metadata.row_group(0).column(0).compression == "ZSTD"
    assert file.read().to_pylist() == rows


def test_writer_takes_rows_and_batches_mixed(tmp_path: Path, local_runner: str) -> None:
    rows = people(12)
    as_table = pa.Table.from_pylist(rows[4:8])
    reordered = as_table.select(list(reversed(as_table.column_names)))  # matched by name
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(rows[8:10])
    polars = pytest.importorskip("polars")
    items = [
        *rows[:4],
        reordered,
        frame,
        polars.from_dicts(rows[10:]),
    ]
    out = tmp_path / "mixed.parquet"
    run_through(items, ParquetWriter(out, row_group_size=5), runner=local_runner)
    back = pq.read_table(out)
    assert back.to_pylist() == rows
    assert pq.ParquetFile(out).num_row_groups == -(-len(rows) // 5)


def test_writer_refuses_what_does_not_fit(tmp_path: Path) -> None:
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through([{"a": 1}, "text"], ParquetWriter(tmp_path / "a.parquet", name="pw"))
    assert "writes rows (dicts) and batches" in str(info.value.__cause__)
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through(
            [{"a": 1}, pa.table({"b": [2]})],
            ParquetWriter(tmp_path / "b.parquet", row_group_size=1),
        )
    assert "missing: ['a']" in str(info.value.__cause__)
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through([{"a": "x"}], ParquetWriter(tmp_path / "c.parquet", schema={"a": "int64"}))
    assert isinstance(info.value.__cause__, FormatError)
    assert "match the schema" in str(info.value.__cause__)
    assert list(tmp_path.iterdir()) == []  # nothing published, no temporary file left


def test_writer_options_are_checked_when_built(tmp_path: Path) -> None:
    with pytest.raises(nanostream.GraphError, match="cannot be added to"):
        ParquetWriter(tmp_path / "a.parquet", append=True)
    with pytest.raises(nanostream.GraphError, match="compression must be one of"):
        ParquetWriter(tmp_path / "a.parquet", compression="rar")
    with pytest.raises(nanostream.GraphError, match="compression must be one of"):
        FeatherWriter(tmp_path / "a.feather", compression="snappy")
    with pytest.raises(nanostream.GraphError, match="does not know"):
        ParquetWriter(tmp_path / "a.parquet", schema={"a": "integer-ish"})
    with pytest.raises(nanostream.GraphError, match="row_group_size"):
        ParquetWriter(tmp_path / "a.parquet", row_group_size=0)


def test_an_existing_file_is_refused_without_suggesting_append(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    run_through([{"a": 1}], ParquetWriter(out))
    with pytest.raises(OutputExistsError) as info:
        run_through([{"a": 2}], ParquetWriter(out))
    assert "overwrite=True" in str(info.value) and "append" not in str(info.value)
    run_through([{"a": 2}], ParquetWriter(out, overwrite=True))
    assert pq.read_table(out).to_pylist() == [{"a": 2}]


def test_parts_rotate_and_a_restart_numbers_on(tmp_path: Path, local_runner: str) -> None:
    template = str(tmp_path / "part-{part:03d}.parquet")
    first = run_through([{"i": i} for i in range(5)], ParquetWriter(template, rotate_items=2))
    assert first == [template.format(part=p) for p in range(3)]
    second = run_through(
        [{"i": i} for i in range(5, 7)],
        ParquetWriter(template, rotate_items=2),
        runner=local_runner,
    )
    assert second == [template.format(part=3)]
    back = [r["i"] for p in first + second for r in pq.read_table(p).to_pylist()]
    assert back == list(range(7))


def test_a_failed_run_publishes_nothing(tmp_path: Path, local_runner: str) -> None:
    def boom(item: dict[str, Any]) -> dict[str, Any]:
        if item["i"] == 7:
            raise ValueError("boom")
        return item

    out = tmp_path / "t.parquet"
    with pytest.raises(nanostream.NodeFailed):
        run_through(
            [{"i": i} for i in range(10)],
            nanostream.nodes.Map(boom),
            ParquetWriter(out, row_group_size=2),
            runner=local_runner,
        )
    assert list(tmp_path.iterdir()) == []


class AckedRows(nanostream.NanoNode):
    """A source of ``n`` rows whose acknowledgements record whether ``path`` exists then."""

    def __init__(self, n: int, path: Path) -> None:
        super().__init__()
        self.n = n
        self.path = path
        self.seen: list[bool] = []

    def generator(self) -> Iterator[Any]:
        for i in range(self.n):
            yield nanostream.Acked({"i": i}, lambda: self.seen.append(self.path.exists()))


def test_acknowledgements_wait_for_the_published_file(tmp_path: Path, local_runner: str) -> None:
    out = tmp_path / "t.parquet"
    source = AckedRows(20, out)
    source > ParquetWriter(out, row_group_size=3)
    source.global_start(runner=local_runner)
    assert source.seen == [True] * 20


def test_an_empty_stream_writes_a_file_with_the_columns(tmp_path: Path) -> None:
    out = tmp_path / "empty.parquet"
    run_through([], ParquetWriter(out, schema={"id": "int64"}))
    table = pq.read_table(out)
    assert table.num_rows == 0 and table.schema.names == ["id"]


def test_from_a_pipeline_file(tmp_path: Path) -> None:
    rows = people(5)
    write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.parquet"
    config = tmp_path / "p.yaml"
    config.write_text(
        f"""
nodes:
  files:
    class: IterableSource
    args:
      iterable: ["{tmp_path / "in.csv"}"]
  read:
    class: nanostream.nodes.columnar:ArrowCSVReader
    args: {{as_batches: true}}
  write:
    class: nanostream.nodes.columnar:ParquetWriter
    args:
      path: "{out}"
      compression: zstd
      schema: {{id: int32, name: string, score: double, born: date32, vip: bool}}
chain: [files, read, write]
"""
    )
    nanostream.load_pipeline(config).start().wait()
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.int32()
    assert table.to_pylist() == rows


def test_the_pipeline_file_of_the_docs_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "columnar.md").read_text()
    yaml_text = page.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "incoming").mkdir()
    (tmp_path / "p.yaml").write_text(yaml_text)
    monkeypatch.chdir(tmp_path)
    pipeline = nanostream.load_pipeline(tmp_path / "p.yaml")
    pipeline.plan()  # checks the graph
    names = [type(node).__name__ for node in pipeline.flatten()[0]]
    assert names == ["LocalDirectoryWatchdog", "ArrowCSVReader", "DuckDBSink"]


def test_every_part_has_the_columns_of_the_first(tmp_path: Path) -> None:
    template = str(tmp_path / "p-{part}.parquet")
    rows = [{"i": 1, "s": "a"}, {"i": 2, "s": "b"}, {"i": 3, "s": None}, {"i": 4, "s": None}]
    parts = run_through(rows, ParquetWriter(template, rotate_items=2))
    schemas = [pq.read_schema(p) for p in parts]
    assert [s.field("s").type for s in schemas] == [pa.string(), pa.string()]
    assert [r for p in parts for r in pq.read_table(p).to_pylist()] == rows


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
@pytest.mark.parametrize("writer_class", [ParquetWriter, FeatherWriter])
def test_an_exactly_once_columnar_writer_publishes_each_row_once_across_a_crash(
    tmp_path: Path, local_runner: str, writer_class: Any
) -> None:
    folder = tmp_path / "out"

    def writer() -> nanostream.NanoNode:
        return writer_class(str(folder / "part-{part:04d}.data"), exactly_once=True, name="out")

    write_across_a_crash(writer, str(tmp_path / "run.state"), local_runner, 8)
    names = sorted(os.listdir(folder))
    assert len(names) > 2 and not any(n.startswith(".") for n in names)
    read = pq.read_table if writer_class is ParquetWriter else feather.read_table
    rows = [r["n"] for name in names for r in read(folder / name).to_pylist()]
    assert rows == list(range(1, 21))
