"""Compressed files (.gz, .bz2, .xz, .zst) through every file reader and writer.

Each test runs for every compression, on the threads and the cooperative runner (the
Ray runner's nodes open files the same way, in other processes).
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import json
import lzma
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanostream
from nanostream.connectors._fileread import ReadThrough
from nanostream.connectors._publish import AtomicFile
from nanostream.nodes import (
    CSVReader,
    CSVWriter,
    DeadLetterFile,
    FileWriter,
    FormatError,
    JSONLinesReader,
    JSONLinesWriter,
    LocalDirectoryWatchdog,
    LocalFileReader,
)
from nanostream.testing import Collect
from support import run_through

WAIT = 20
EXTENSIONS = [".gz", ".bz2", ".xz", ".zst"]


def _zstd() -> Any:
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        from support import missing

        missing("zstandard is not installed: pip install 'nanostream[compress]'")


def decompress(path: Path) -> bytes:
    """The content of ``path``, decompressed by the format's own library."""
    data = path.read_bytes()
    ext = path.suffix
    if ext == ".gz":
        return gzip.decompress(data)
    if ext == ".bz2":
        return bz2.decompress(data)
    if ext == ".xz":
        return lzma.decompress(data)
    zstd = _zstd()
    reader = zstd.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    return bytes(reader.read())


def compress(data: bytes, ext: str) -> bytes:
    """``data`` compressed in the format ``ext`` names, by the format's own library."""
    if ext == ".gz":
        return gzip.compress(data)
    if ext == ".bz2":
        return bz2.compress(data)
    if ext == ".xz":
        return lzma.compress(data)
    return bytes(_zstd().ZstdCompressor().compress(data))


@pytest.fixture(params=EXTENSIONS)
def ext(request: pytest.FixtureRequest) -> str:
    if request.param == ".zst":
        _zstd()
    return str(request.param)


# ----------------------------------------------------------------------------- readers
def test_local_file_reader_reads_a_compressed_file_whole_by_lines_and_as_bytes(
    tmp_path: Path, ext: str, local_runner: str
) -> None:
    text = "first line\nsecond, é\nthird\n"
    path = tmp_path / f"notes.txt{ext}"
    path.write_bytes(compress(text.encode(), ext))
    assert run_through([str(path)], LocalFileReader(), runner=local_runner) == [text]
    lines = run_through([str(path)], LocalFileReader(serialize=True), runner=local_runner)
    assert lines == text.splitlines()
    whole = run_through([str(path)], LocalFileReader(binary=True), runner=local_runner)
    assert whole == [text.encode()] and whole[0].path == str(path)
    pieces = run_through(
        [str(path)], LocalFileReader(serialize=True, chunk_size=7), runner=local_runner
    )
    assert "".join(pieces) == text


def test_csv_and_json_lines_readers_stream_compressed_files_by_path(
    tmp_path: Path, ext: str, local_runner: str
) -> None:
    rows = [{"id": str(i), "name": f"n{i}"} for i in range(50)]
    csv_text = "id,name\n" + "".join(f"{r['id']},{r['name']}\n" for r in rows)
    (tmp_path / f"rows.csv{ext}").write_bytes(compress(csv_text.encode(), ext))
    (tmp_path / f"rows.jsonl{ext}").write_bytes(
        compress("".join(json.dumps(r) + "\n" for r in rows).encode(), ext)
    )
    got = run_through(
        [str(tmp_path / f"rows.csv{ext}")], CSVReader(paths=True), runner=local_runner
    )
    assert got == rows
    got = run_through([tmp_path / f"rows.jsonl{ext}"], JSONLinesReader(), runner=local_runner)
    assert got == rows


def test_gzip_members_appended_by_another_program_read_as_one_file(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n') + gzip.compress(b'{"a": 2}\n'))
    assert run_through([path], JSONLinesReader(), runner="threads") == [{"a": 1}, {"a": 2}]


def test_a_cut_compressed_file_is_a_format_error_naming_it(tmp_path: Path, ext: str) -> None:
    data = compress(("row\n" * 10_000).encode() + bytes(range(256)) * 40, ext)
    path = tmp_path / f"cut.txt{ext}"
    path.write_bytes(data[: len(data) // 2])
    sink = Collect()
    nanostream.from_iterable([str(path)]) > LocalFileReader(serialize=True, binary=True) > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start()
    cause = info.value.__cause__
    assert isinstance(cause, FormatError)
    assert cause.source == str(path)
    assert "cut short or corrupt" in str(cause)


def test_text_that_does_not_decode_names_the_line_in_the_compressed_file(
    tmp_path: Path, ext: str
) -> None:
    path = tmp_path / f"bad.csv{ext}"
    path.write_bytes(compress(b"a,b\n1,2\n3,\xff\n", ext))
    sink = Collect()
    nanostream.from_iterable([str(path)]) > CSVReader(paths=True) > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start()
    cause = info.value.__cause__
    assert isinstance(cause, FormatError)
    assert (cause.source, cause.line) == (str(path), 3)


def test_reading_a_large_compressed_file_line_by_line_keeps_memory_flat(tmp_path: Path) -> None:
    """10 MB of text (90 kB compressed) read in well under 4 MB of allocations."""
    path = tmp_path / "big.txt.gz"
    line = b"x" * 99 + b"\n"
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(100):
            out.write(line * 1000)
    reader = LocalFileReader(serialize=True)
    tracemalloc.start()
    try:
        count = sum(1 for _ in reader.process_item(str(path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 4_000_000


def test_the_watchdog_emits_a_compressed_file_that_a_reader_then_reads(
    tmp_path: Path, ext: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / f"rows.csv{ext}").write_bytes(compress(b"a,b\n1,2\n", ext))
    watch = LocalDirectoryWatchdog(folder, f"*.csv{ext}", polling=True, settle=0.05)
    sink = Collect()
    watch > CSVReader(paths=True) > sink
    run = sink.global_start(block=False)
    assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert sink.items == [{"a": "1", "b": "2"}]


# ----------------------------------------------------------------------------- writers
def test_writers_compress_by_extension(tmp_path: Path, ext: str, local_runner: str) -> None:
    rows = [{"id": i, "name": f"n{i}"} for i in range(20)]
    src = nanostream.from_iterable(rows)
    src > JSONLinesWriter(tmp_path / f"rows.jsonl{ext}")
    src > CSVWriter(tmp_path / f"rows.csv{ext}")
    src > FileWriter(tmp_path / f"rows.txt{ext}")
    src.global_start(runner=local_runner)
    jsonl = decompress(tmp_path / f"rows.jsonl{ext}").decode().splitlines()
    assert [json.loads(line) for line in jsonl] == rows
    csv_lines = decompress(tmp_path / f"rows.csv{ext}").decode().splitlines()
    assert csv_lines == ["id,name", *(f"{r['id']},{r['name']}" for r in rows)]
    assert decompress(tmp_path / f"rows.txt{ext}").decode().splitlines() == [str(r) for r in rows]


def test_a_file_per_item_is_compressed_by_its_name(
    tmp_path: Path, ext: str, local_runner: str
) -> None:
    writer = FileWriter(directory=tmp_path, filename="{n:03d}.txt" + ext)
    paths = run_through(["alpha", "beta"], writer, runner=local_runner)
    assert [Path(p).name for p in paths] == [f"000.txt{ext}", f"001.txt{ext}"]
    assert [decompress(Path(p)) for p in paths] == [b"alpha", b"beta"]


def test_rotated_parts_keep_the_extension_and_number_on(
    tmp_path: Path, ext: str, local_runner: str
) -> None:
    template = str(tmp_path / ("part-{part:04d}.jsonl" + ext))
    paths = run_through(
        list(range(5)), JSONLinesWriter(template, rotate_items=2), runner=local_runner
    )
    names = [Path(p).name for p in paths]
    assert names == [f"part-{n:04d}.jsonl{ext}" for n in range(3)]
    assert [decompress(Path(p)).decode().split() for p in paths] == [["0", "1"], ["2", "3"], ["4"]]
    more = run_through([5], JSONLinesWriter(template, rotate_items=2), runner=local_runner)
    assert [Path(p).name for p in more] == [f"part-0003.jsonl{ext}"]


def test_append_adds_a_compressed_stream_and_csv_keeps_one_header(
    tmp_path: Path, ext: str, local_runner: str
) -> None:
    path = tmp_path / f"people.csv{ext}"
    for batch in ([{"name": "ada", "age": 36}], [{"age": 41, "name": "alan"}]):
        src = nanostream.from_iterable(batch)
        src > CSVWriter(path, append=True)
        src.global_start(runner=local_runner)
    assert decompress(path).decode().splitlines() == ["name,age", "ada,36", "alan,41"]
    assert run_through([str(path)], CSVReader(paths=True), runner=local_runner) == [
        {"name": "ada", "age": "36"},
        {"name": "alan", "age": "41"},
    ]


def test_append_to_an_empty_compressed_file_writes_the_header(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"empty.csv{ext}"
    path.write_bytes(compress(b"", ext))
    src = nanostream.from_iterable([{"a": 1}])
    src > CSVWriter(path, append=True)
    src.global_start()
    assert decompress(path).decode().splitlines() == ["a", "1"]


def test_nothing_is_at_the_target_until_the_compressed_file_is_published(
    tmp_path: Path, ext: str
) -> None:
    target = tmp_path / f"out.txt{ext}"
    file = AtomicFile(target)
    file.file.write("x" * 100_000)
    assert not target.exists()
    assert [p.name for p in AtomicFile.leftovers(target)] == [file.tmp.name]
    file.commit()
    assert decompress(target) == b"x" * 100_000
    assert AtomicFile.leftovers(target) == []


class FailAt(nanostream.NanoNode):
    """Passes items on, and fails on ``at``."""

    def __init__(self, at: Any) -> None:
        super().__init__()
        self.at = at

    def process_item(self, item: Any) -> Iterator[Any]:
        if item == self.at:
            raise RuntimeError(f"failed at {item}")
        yield item


def test_a_failed_run_publishes_no_compressed_part(
    tmp_path: Path, ext: str, local_runner: str
) -> None:
    template = str(tmp_path / ("part-{part}.jsonl" + ext))
    src = nanostream.from_iterable(range(5))
    src > FailAt(3) > JSONLinesWriter(template, rotate_items=2)
    with pytest.raises(nanostream.NodeFailed, match="failed at 3"):
        src.global_start(runner=local_runner)
    # part 0 (items 0 and 1) may have been published before the failure; nothing else is
    # there, not even a temporary file, and what is there is whole
    left = sorted(tmp_path.iterdir())
    assert [p.name for p in left] in ([], [f"part-0.jsonl{ext}"])
    assert all(decompress(p) == b"0\n1\n" for p in left)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=20,
    ),
    extension=st.sampled_from(EXTENSIONS),
)
def test_any_json_values_round_trip_through_every_compression(
    tmp_path_factory: pytest.TempPathFactory, values: list[Any], extension: str
) -> None:
    if extension == ".zst":
        _zstd()
    path = tmp_path_factory.mktemp("round") / f"values.jsonl{extension}"
    src = nanostream.from_iterable(values)
    src > JSONLinesWriter(path)
    src.global_start()
    assert list(JSONLinesReader().values(path)) == values


# ----------------------------------------------------------------------------- refusals
def test_zstd_without_zstandard_is_refused_when_the_graph_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[compress\]"):
        JSONLinesWriter(tmp_path / "rows.jsonl.zst")
    path = tmp_path / "rows.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[compress\]"):
        list(JSONLinesReader().values(path))


def test_dead_letters_refuse_a_compressed_file(tmp_path: Path) -> None:
    with pytest.raises(nanostream.GraphError, match="plain local file"):
        DeadLetterFile(tmp_path / "dead.jsonl.gz")


def test_read_through_reads_compressed_bytes_with_the_same_interface(tmp_path: Path) -> None:
    path = tmp_path / "a.bin.gz"
    path.write_bytes(gzip.compress(b"one\ntwo\n"))
    with ReadThrough(path, "rb") as whole:
        assert whole.file.read() == b"one\ntwo\n"
        assert whole.truncated() is None


def test_every_extension_is_handled(tmp_path: Path) -> None:
    """The extensions these tests cover are those the readers and writers know."""
    from nanostream.connectors._filesystems import COMPRESSIONS

    assert sorted(COMPRESSIONS) == sorted(EXTENSIONS)


def test_appending_to_a_corrupt_compressed_file_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv.gz"
    path.write_bytes(b"\x1f\x8b not gzip at all")
    with pytest.raises(FormatError, match="not readable as gzip") as info:
        AtomicFile(path, append=True, node="writer")
    assert info.value.source == str(path)
    assert AtomicFile.leftovers(path) == []
    assert path.read_bytes() == b"\x1f\x8b not gzip at all"
