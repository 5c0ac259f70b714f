"""LocalFileReader, FileWriter and PrinterOfThings on real files in a temporary folder."""

from __future__ import annotations

import io
import itertools
import json
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest

import nanostream
from nanostream.connectors._fileread import ReadThrough
from nanostream.connectors._filesink import FileSink
from nanostream.connectors._publish import AtomicFile
from nanostream.nodes import (
    CSVReader,
    CSVWriter,
    FileBytes,
    FileText,
    FileWriter,
    FormatError,
    JSONLinesWriter,
    LocalDirectoryWatchdog,
    LocalFileReader,
    Map,
    OutputExistsError,
    PathRefusedError,
    PrinterOfThings,
)
from nanostream.nodes.deadletter import DeadLetterFile, read_dead_letters
from nanostream.testing import Collect
from support import KillChild, TruncatingSink, wait_for_file, write_across_a_crash

WAIT = 20


def run_nodes(items: list[Any], *nodes: nanostream.NanoNode, runner: str = "threads") -> list[Any]:
    """Items through ``nodes`` in a chain; what comes out at the end."""
    sink = Collect()
    node: Any = nanostream.from_iterable(items)
    for n in nodes:
        node = node > n
    node > sink
    sink.global_start(runner=runner)
    return sink.items


def failure(items: list[Any], *nodes: nanostream.NanoNode) -> BaseException:
    with pytest.raises(nanostream.NodeFailed) as info:
        run_nodes(items, *nodes)
    assert info.value.__cause__ is not None
    return info.value.__cause__


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- reading
def test_whole_text_is_one_item_that_knows_its_file(tmp_path: Path, runner: str) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("")
    out = run_nodes(["a.txt", tmp_path / "b.txt"], LocalFileReader(tmp_path), runner=runner)
    assert out == ["one\ntwo\n", ""]
    assert isinstance(out[0], FileText)
    assert out[0].path == str(tmp_path / "a.txt")
    assert out[1].path == str(tmp_path / "b.txt")


def test_without_a_directory_paths_are_relative_to_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("hello")
    monkeypatch.chdir(tmp_path)
    assert run_nodes(["sub/a.txt", str(tmp_path / "sub" / "a.txt")], LocalFileReader()) == [
        "hello",
        "hello",
    ]


def test_serialize_streams_one_item_per_line(tmp_path: Path, runner: str) -> None:
    (tmp_path / "unix.txt").write_text("a\nb\n\nc")
    (tmp_path / "dos.txt").write_bytes(b"x\r\ny\r\n")
    reader = LocalFileReader(tmp_path, serialize=True)
    assert run_nodes(["unix.txt", "dos.txt"], reader, runner=runner) == [
        "a",
        "b",
        "",
        "c",
        "x",
        "y",
    ]
    keep = LocalFileReader(tmp_path, serialize=True, keep_line_ends=True)
    assert run_nodes(["unix.txt"], keep) == ["a\n", "b\n", "\n", "c"]
    untranslated = LocalFileReader(tmp_path, serialize=True, newline="")
    assert run_nodes(["dos.txt"], untranslated) == ["x", "y"]
    chunks = LocalFileReader(tmp_path, serialize=True, chunk_size=3)
    assert run_nodes(["unix.txt"], chunks) == ["a\nb", "\n\nc"]


def test_binary_mode(tmp_path: Path) -> None:
    data = bytes(range(256)) + b"\r\nend"
    (tmp_path / "blob.bin").write_bytes(data)
    whole = run_nodes(["blob.bin"], LocalFileReader(tmp_path, binary=True))
    assert whole == [data]
    assert isinstance(whole[0], FileBytes)
    assert whole[0].path == str(tmp_path / "blob.bin")
    lines = run_nodes(["blob.bin"], LocalFileReader(tmp_path, binary=True, serialize=True))
    assert b"\n".join(lines) == data.replace(b"\r\n", b"\n")
    assert lines[-1] == b"end"
    chunks = run_nodes(
        ["blob.bin"], LocalFileReader(tmp_path, binary=True, serialize=True, chunk_size=100)
    )
    assert [len(c) for c in chunks] == [100, 100, 61]
    assert b"".join(chunks) == data


def test_non_utf8_content(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("first\nsecond\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    for serialize in (False, True):
        error = failure(["latin.txt"], LocalFileReader(tmp_path, serialize=serialize))
        assert isinstance(error, FormatError)
        assert error.source == str(path)
        assert error.line == 3
        assert "latin.txt, line 3: not valid utf-8" in str(error)
        assert "encoding=" in str(error)
    assert (
        run_nodes(["latin.txt"], LocalFileReader(tmp_path, encoding="latin-1", serialize=True))[-1]
        == "café crème"
    )
    assert "encoding_errors='replace'" in str(error)
    replaced = run_nodes(["latin.txt"], LocalFileReader(tmp_path, encoding_errors="replace"))
    assert replaced == ["first\nsecond\ncaf\ufffd cr\ufffdme\n"]


def test_encoding_errors_leaves_the_errors_port_alone(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    reader = LocalFileReader(tmp_path, encoding_errors="replace", name="read")
    assert repr(reader.errors) == "LocalFileReader(name='read')['errors']"  # the port
    with pytest.deprecated_call(match="use encoding_errors="):
        old = LocalFileReader(tmp_path, errors="ignore")
    assert old.encoding_errors == "ignore"
    assert repr(old.errors) == "LocalFileReader(name=None)['errors']"
    assert run_nodes(["latin.txt"], old) == ["caf\n"]


def test_paths_outside_the_directory_are_refused(tmp_path: Path) -> None:
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "ok.txt").write_text("ok")
    (tmp_path / "secret.txt").write_text("secret")
    (inside / "escape.txt").symlink_to(tmp_path / "secret.txt")
    reader = LocalFileReader(inside)
    assert run_nodes([str(inside / "ok.txt")], reader) == ["ok"]  # absolute, but inside
    for bad in ["../secret.txt", str(tmp_path / "secret.txt"), "escape.txt", "/etc/hostname"]:
        error = failure([bad], LocalFileReader(inside))
        assert isinstance(error, PathRefusedError), bad
        assert isinstance(error, nanostream.NanoStreamError)
        assert "outside the directory" in str(error)


def test_a_missing_file_and_a_bad_item_fail_clearly(tmp_path: Path) -> None:
    assert isinstance(failure(["nope.txt"], LocalFileReader(tmp_path)), FileNotFoundError)
    error = failure([42], LocalFileReader(tmp_path))
    assert isinstance(error, FormatError)
    assert "expects a file path" in str(error)


def test_file_text_survives_pickling() -> None:
    text = pickle.loads(pickle.dumps(FileText("abc", path="/x/y.csv")))
    data = pickle.loads(pickle.dumps(FileBytes(b"abc", path="/x/y.bin")))
    assert (text, text.path, type(text)) == ("abc", "/x/y.csv", FileText)
    assert (data, data.path, type(data)) == (b"abc", "/x/y.bin", FileBytes)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_a_file_truncated_while_it_is_streamed_fails_the_run(
    tmp_path: Path, runner: str, binary: bool
) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("".join(f"{i}\n" for i in range(200_000)))
    src = nanostream.from_iterable([path])
    reader = LocalFileReader(serialize=True, binary=binary, name="lines", batch_size=1)
    src > reader > TruncatingSink(path)
    with pytest.raises(nanostream.NodeFailed, match="'lines'") as info:
        src.global_start(runner=runner)
    error = info.value.__cause__
    assert isinstance(error, FormatError) and error.source == str(path)
    assert "truncated while it was read" in str(error)


def test_with_skip_a_truncated_file_is_an_error_record_after_its_lines(
    tmp_path: Path, runner: str
) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("".join(f"{i}\n" for i in range(200_000)))
    reader = LocalFileReader(serialize=True, name="lines", batch_size=1, on_error="skip")
    lines, dead = TruncatingSink(path), Collect()
    nanostream.from_iterable([path]) > reader > lines
    reader.errors > dead
    lines.global_start(runner=runner)
    assert 0 < len(lines.items) < 200_000
    (record,) = dead.items
    assert record.item == path and "truncated while it was read" in record.message


def test_read_through_tells_a_truncated_file_from_a_grown_one(tmp_path: Path) -> None:
    path = tmp_path / "rows.txt"
    path.write_text("one\ntwo\n")
    with ReadThrough(path) as whole:
        assert whole.file.readline() == "one\n"
        with path.open("a") as more:
            more.write("three\n")
        assert whole.file.read() == "two\nthree\n"
        assert whole.truncated() is None  # grown: read up to where it ends
    with ReadThrough(path, "rb", buffering=0) as whole:
        assert whole.file.readline() == b"one\n"
        os.truncate(path, 6)
        assert whole.file.read() == b"tw"
        error = whole.truncated()
    assert isinstance(error, FormatError) and error.source == str(path)
    assert "14 bytes when it was opened, its end came at byte 6" in str(error)
    # replaced (a new file renamed over it): the version opened is read whole
    path.write_text("one\ntwo\n")
    with ReadThrough(path) as whole:
        assert whole.file.readline() == "one\n"
        (tmp_path / "new.txt").write_text("new\n")
        os.replace(tmp_path / "new.txt", path)
        assert whole.file.read() == "two\n"
        assert whole.truncated() is None


def test_a_200_mb_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    line = "x" * 1023 + "\n"
    block = line * 1024  # 1 MiB
    with path.open("w") as f:
        for _ in range(200):
            f.write(block)
    size = path.stat().st_size
    assert size == 200 * 1024 * 1024
    del block

    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    seen = {"lines": 0, "chars": 0}

    def measure(inp: Any, outp: Any) -> None:
        for n, item in enumerate(inp):
            seen["lines"] += 1
            seen["chars"] += len(item) + 1
            if n % 5000 == 0:
                peak[0] = max(peak[0], process.memory_info().rss)

    nanostream.from_iterable([path]) > LocalFileReader(serialize=True) > measure
    nanostream.as_node(measure).global_start()
    assert seen == {"lines": 200 * 1024, "chars": size}
    growth = peak[0] - baseline
    assert growth < 40 * 1024 * 1024, f"RSS grew by {growth / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------- writing
class Paused(nanostream.NanoNode):
    """Emits ``"one"`` and ``2``, creates the file ``paused``, waits for the file
    ``resume`` and emits ``"three"``: files, so that the test can signal it from any
    process."""

    def __init__(self, paused: Path, resume: Path) -> None:
        super().__init__()
        self.paused, self.resume = paused, resume

    def generator(self) -> Iterator[Any]:
        yield "one"
        yield 2
        self.paused.touch()
        assert wait_for_file(self.resume, timeout=WAIT)
        yield "three"


def test_file_writer_writes_one_file_published_at_the_end(tmp_path: Path, runner: str) -> None:
    out = tmp_path / "out" / "log.txt"
    paused, resume = tmp_path / "paused", tmp_path / "resume"
    writer = FileWriter(out)
    sink = Collect()
    Paused(paused, resume) > writer > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert wait_for_file(paused, timeout=WAIT)
    assert not out.exists()  # half a file is never visible under its name
    resume.touch()
    assert run.wait(WAIT)
    assert out.read_text() == "one\n2\nthree\n"
    assert sink.items == [str(out)]
    assert visible(out.parent) == ["log.txt"]  # no temporary file left


def test_file_writer_append_and_line_end(tmp_path: Path) -> None:
    out = tmp_path / "log.txt"
    out.write_text("before\n")
    run_nodes(["a", "b"], FileWriter(out, append=True))
    assert out.read_text() == "before\na\nb\n"
    run_nodes(["x", "y"], FileWriter(out, line_end="", overwrite=True))
    assert out.read_text() == "xy"


def test_file_writer_binary(tmp_path: Path) -> None:
    out = tmp_path / "data.bin"
    run_nodes([b"\x00\x01", bytearray(b"\x02")], FileWriter(out, binary=True, line_end=""))
    assert out.read_bytes() == b"\x00\x01\x02"
    error = failure(["text"], FileWriter(out, binary=True, overwrite=True))
    assert isinstance(error, FormatError)
    assert "binary=True" in str(error)


def test_file_writer_rotates_parts(tmp_path: Path, runner: str) -> None:
    writer = FileWriter(tmp_path / "part-{part:02d}.txt", rotate_items=4)
    out = run_nodes([str(i) for i in range(10)], writer, runner=runner)
    assert [Path(p).name for p in out] == ["part-00.txt", "part-01.txt", "part-02.txt"]
    assert [Path(p).read_text().split() for p in out] == [
        ["0", "1", "2", "3"],
        ["4", "5", "6", "7"],
        ["8", "9"],
    ]
    assert visible(tmp_path) == ["part-00.txt", "part-01.txt", "part-02.txt"]
    with pytest.raises(nanostream.GraphError, match="part"):
        FileWriter(tmp_path / "no-field.txt", rotate_items=4)


def test_file_writer_one_file_per_item(tmp_path: Path, runner: str) -> None:
    writer = FileWriter(directory=tmp_path / "out", filename="{n:03d}-{item}.txt")
    out = run_nodes(["a", "b"], writer, runner=runner)
    assert [Path(p).name for p in out] == ["000-a.txt", "001-b.txt"]
    assert [Path(p).read_text() for p in out] == ["a", "b"]

    named = FileWriter(directory=tmp_path / "named", filename=lambda item, n: f"{item['id']}.json")
    out = run_nodes([{"id": "x"}], named)
    assert Path(out[0]).name == "x.json"
    assert Path(out[0]).read_text() == "{'id': 'x'}"

    error = failure(["../escape"], FileWriter(directory=tmp_path / "jail", filename="{item}"))
    assert isinstance(error, PathRefusedError)
    assert not (tmp_path / "escape").exists()


class AckedLines(nanostream.NanoNode):
    """Emits ``Acked(f"line {i}", ack)``; each ack notes the files in ``folder`` by then."""

    def __init__(self, n: int, folder: Path) -> None:
        super().__init__(batch_size=1)
        self.n = n
        self.folder = folder
        self.acks: list[tuple[int, list[str]]] = []

    def generator(self) -> Iterator[Any]:
        for i in range(self.n):
            yield nanostream.Acked(f"line {i}", partial(self._ack, i))

    def _ack(self, i: int) -> None:
        self.acks.append((i, sorted(p.name for p in self.folder.iterdir())))


@pytest.mark.parametrize("how", ["rotate", "per-item"])
def test_file_writer_acknowledges_items_once_their_file_is_published(
    tmp_path: Path, runner: str, acks: bool, how: str
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    out = tmp_path / "out"
    source = AckedLines(7, out)
    if how == "rotate":
        writer = FileWriter(out / "part-{part}.txt", rotate_items=3)
        expect = [f"part-{i // 3}.txt" for i in range(7)]
    else:
        writer = FileWriter(directory=out, filename="{n}.txt")
        expect = [f"{i}.txt" for i in range(7)]
    source > writer
    writer.global_start(runner=runner)
    assert [i for i, _ in source.acks] == list(range(7))
    for i, files in source.acks:
        assert expect[i] in files, f"line {i} was acknowledged before {expect[i]} existed"
    assert len(source.acks[0][1]) < len(set(expect))  # not only at the end


def test_file_writer_needs_path_or_directory(tmp_path: Path) -> None:
    with pytest.raises(nanostream.GraphError, match="either path"):
        FileWriter()
    with pytest.raises(nanostream.GraphError, match="either path"):
        FileWriter(tmp_path / "a", directory=tmp_path)


class Numbers(nanostream.NanoNode):
    """Emits ``"0"``, ``"1"``, ... until the run stops; ``produced`` counts them (on ray
    the driver's node gets it back when the run ends)."""

    def __init__(self) -> None:
        super().__init__(name="numbers")
        self.produced = 0

    def generator(self) -> Iterator[str]:
        for i in itertools.count():
            self.produced = i + 1
            yield str(i)


def test_a_stop_publishes_everything_the_writer_received(tmp_path: Path, runner: str) -> None:
    writer = FileWriter(tmp_path / "n-{part:05d}.txt", rotate_items=100)
    sink = Collect()
    source = Numbers()
    source > writer > sink
    run = sink.global_start(block=False, runner=runner, queue_size=64, batch_size=16)
    assert run is not None
    assert sink.seen.wait(WAIT)  # the first part is out
    run.stop(timeout=WAIT)
    assert run.state == "finished"
    written = [line for p in sink.items for line in Path(p).read_text().split()]
    assert source.produced >= 100
    assert written == [str(i) for i in range(source.produced)]
    assert run.stats()["numbers"].items_out == source.produced
    assert len(sink.items) >= 2
    assert visible(tmp_path) == sorted(Path(p).name for p in sink.items)


class Breaks(nanostream.NanoNode):
    """Emits ``"a"`` and ``"b"``, then fails."""

    def generator(self) -> Iterator[str]:
        yield "a"
        yield "b"
        raise RuntimeError("source broke")


def test_a_failed_run_leaves_no_file_behind(tmp_path: Path, runner: str) -> None:
    sink = Collect()
    Breaks() > FileWriter(tmp_path / "out.txt") > sink
    with pytest.raises(nanostream.NodeFailed, match="source broke"):
        sink.global_start(runner=runner)
    assert visible(tmp_path) == []
    assert sink.items == []


class NoticedWriter(FileWriter):
    """A FileWriter that creates the file ``flag`` when its input has ended."""

    def __init__(self, path: Path, flag: Path) -> None:
        super().__init__(path)
        self.flag = flag

    def cleanup(self) -> Iterator[Any]:
        self.flag.touch()  # before it publishes: the other branch may fail from now on
        yield from super().cleanup()


class BreaksAtTheEnd(nanostream.NanoNode):
    """Reads its input, then fails once the file ``flag`` exists."""

    def __init__(self, flag: Path) -> None:
        super().__init__(name="breaks")
        self.flag = flag

    def process_item(self, item: Any) -> Iterator[Any]:
        yield from ()

    def cleanup(self) -> None:
        assert wait_for_file(self.flag, pause=self.sleep, timeout=WAIT)
        raise RuntimeError("the other branch broke")


def test_a_failed_run_publishes_nothing_from_a_branch_that_had_finished(
    tmp_path: Path, runner: str
) -> None:
    out, flag = tmp_path / "out.txt", tmp_path / "flag"
    source = nanostream.from_iterable(["a", "b"])
    source > NoticedWriter(out, flag)
    source > BreaksAtTheEnd(flag)
    with pytest.raises(nanostream.NodeFailed, match="the other branch broke"):
        source.global_start(runner=runner)
    assert visible(tmp_path) == ["flag"]  # neither out.txt nor its temporary file


def test_writers_on_several_branches_and_in_a_row_publish_when_the_run_succeeds(
    tmp_path: Path, runner: str
) -> None:
    index = Collect()
    source = nanostream.from_iterable(["a", "b"])
    source > JSONLinesWriter(tmp_path / "a.jsonl") > FileWriter(tmp_path / "index.txt") > index
    source > FileWriter(tmp_path / "b.txt")
    source.global_start(runner=runner)
    assert visible(tmp_path) == ["a.jsonl", "b.txt", "index.txt"]
    assert (tmp_path / "index.txt").read_text() == f"{tmp_path / 'a.jsonl'}\n"
    assert index.items == [str(tmp_path / "index.txt")]


class BreaksOnceThere(nanostream.NanoNode):
    """Emits ``first``, waits until the file ``there`` has content, emits ``last``, fails."""

    def __init__(self, first: list[str], there: Path, last: list[str]) -> None:
        super().__init__(name="source")
        self.first, self.there, self.last = first, there, last

    def generator(self) -> Iterator[str]:
        yield from self.first
        # Content, not just the name: a dead-letter file is created when its node starts.
        deadline = time.monotonic() + WAIT
        while not (self.there.exists() and self.there.stat().st_size):
            assert time.monotonic() < deadline, f"{self.there} stayed empty"
            self.sleep(0.005)
        yield from self.last
        raise RuntimeError("source broke")


@pytest.mark.parametrize("how", ["rotate", "per-item", "dead letters"])
def test_what_was_published_before_a_failure_stays(tmp_path: Path, runner: str, how: str) -> None:
    out = tmp_path / "out"
    if how == "rotate":
        source = BreaksOnceThere(["0", "1", "2", "3"], out / "p-1.txt", ["4"])
        source > FileWriter(out / "p-{part}.txt", rotate_items=2)
        expected = {"p-0.txt": "0\n1\n", "p-1.txt": "2\n3\n"}  # not the part of "4"
    elif how == "per-item":
        source = BreaksOnceThere(["a"], out / "0.txt", ["b"])
        source > FileWriter(directory=out, filename="{n}.txt")
        # A file per item is published as its item comes: "b" is too if it reaches the
        # writer before the failure does (the check below allows that, nothing else).
        expected = {"0.txt": "a"}
    else:
        source = BreaksOnceThere(["1", "x"], out / "dead.jsonl", ["3"])
        parse = Parse(on_error="skip")
        source > parse > Collect()
        parse.errors > DeadLetterFile(out / "dead.jsonl")
        expected = {}
    with pytest.raises(nanostream.NodeFailed, match="source broke"):
        source.global_start(runner=runner)
    if how == "dead letters":
        assert [d["item"] for d in read_dead_letters(out / "dead.jsonl")] == ["x"]
        assert visible(out) == ["dead.jsonl"]
    else:
        files = {p.name: p.read_text() for p in out.iterdir()}
        if how == "per-item" and files.get("1.txt") == "b":
            del files["1.txt"]
        assert files == expected  # and no temporary file is left


class Parse(nanostream.NanoNode):
    def process_item(self, item: Any) -> Iterator[int]:
        yield int(item)


# ----------------------------------------------------------------------------- restarts
WRITERS: dict[str, Callable[..., FileSink]] = {
    "FileWriter": FileWriter,
    "CSVWriter": partial(CSVWriter, fieldnames=["n"]),
    "JSONLinesWriter": JSONLinesWriter,
}


def rows_in(kind: str, path: str | Path) -> list[int]:
    """The numbers a writer of ``kind`` wrote to ``path`` (see ``items_for``)."""
    if kind == "CSVWriter":
        return [int(row["n"]) for row in run_nodes([Path(path)], CSVReader())]
    return [int(json.loads(line)) for line in Path(path).read_text().split()]


def items_for(kind: str, numbers: range) -> list[Any]:
    return [{"n": n} for n in numbers] if kind == "CSVWriter" else [str(n) for n in numbers]


def killed_while_writing(target: Path, text: str) -> None:
    """Leave what a writer killed in the middle of ``target`` leaves: its temporary file."""
    file = AtomicFile(target, append=True)
    file.file.write(text)
    file.file.close()  # neither committed nor discarded: the process "died" here


@pytest.fixture(params=sorted(WRITERS))
def kind(request: pytest.FixtureRequest) -> str:
    """Each file writer in turn."""
    return str(request.param)


def test_an_earlier_runs_file_is_never_replaced_silently(
    tmp_path: Path, kind: str, runner: str
) -> None:
    make = WRITERS[kind]
    out = tmp_path / "out.data"
    run_nodes(items_for(kind, range(3)), make(out), runner=runner)
    with pytest.raises(OutputExistsError) as info:
        run_nodes(items_for(kind, range(3, 5)), make(out, name="write"), runner=runner)
    message = str(info.value)
    assert "node 'write' would replace" in message
    assert str(out) in message
    assert "append=True" in message and "overwrite=True" in message
    assert isinstance(info.value, nanostream.NanoStreamError)
    assert rows_in(kind, out) == [0, 1, 2]  # left as it was

    run_nodes(items_for(kind, range(3, 5)), make(out, append=True), runner=runner)
    assert rows_in(kind, out) == [0, 1, 2, 3, 4]
    run_nodes(items_for(kind, range(7, 8)), make(out, overwrite=True), runner=runner)
    assert rows_in(kind, out) == [7]
    with pytest.raises(nanostream.GraphError, match="pass one of them"):
        make(out, append=True, overwrite=True)


def test_a_file_that_appears_during_the_run_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "late.txt"
    writer = FileWriter(out, name="late")
    source = nanostream.from_iterable(["mine"])
    source > writer
    plan = nanostream.pipeline_of(source).plan()  # checked while the file is not there
    function = next(pn.function for pn in plan.nodes if pn.node is writer)
    out.write_text("someone else's\n")
    with pytest.raises(OutputExistsError, match="node 'late' would replace"):
        function(iter(["mine"]), lambda path: None)
    assert out.read_text() == "someone else's\n"
    assert visible(tmp_path) == ["late.txt"]


def test_a_file_that_appears_before_the_rename_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    file = AtomicFile(target, replace=False, node="write")
    file.file.write("mine\n")
    target.write_text("theirs\n")  # between the writer's check and its rename
    with pytest.raises(OutputExistsError, match="node 'write' would replace"):
        file.commit()
    assert target.read_text() == "theirs\n"
    assert visible(tmp_path) == ["out.txt"]
    per_item = AtomicFile(target, replace=False, node="letters", can_append=False)
    with pytest.raises(OutputExistsError) as info:
        per_item.commit()
    assert "append=True" not in str(info.value) and "overwrite=True" in str(info.value)
    assert visible(tmp_path) == ["out.txt"]


def test_parts_are_numbered_on_after_the_existing_ones(
    tmp_path: Path, kind: str, runner: str
) -> None:
    make = WRITERS[kind]
    template = tmp_path / "part-{part:03d}.data"
    first = run_nodes(items_for(kind, range(5)), make(template, rotate_items=2), runner=runner)
    second = run_nodes(items_for(kind, range(5, 8)), make(template, rotate_items=2), runner=runner)
    assert [Path(p).name for p in first + second] == [f"part-{i:03d}.data" for i in range(5)]
    assert [rows_in(kind, p) for p in first + second] == [[0, 1], [2, 3], [4], [5, 6], [7]]
    (tmp_path / "part-x.data").write_text("not a part\n")  # does not match the template
    (tmp_path / "part-12.data").write_text("not a part either\n")  # not '{part:03d}'
    third = run_nodes(items_for(kind, range(8, 9)), make(template), runner=runner)
    assert [Path(p).name for p in third] == ["part-005.data"]

    again = run_nodes(items_for(kind, range(2)), make(template, overwrite=True), runner=runner)
    assert [Path(p).name for p in again] == ["part-000.data"]
    assert rows_in(kind, again[0]) == [0, 1]


def test_temporary_files_of_a_killed_run_are_removed(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    make = WRITERS[kind]
    out = tmp_path / "out.data"
    # What a process killed while writing leaves behind: temporary files never renamed.
    for _ in range(3):
        killed_while_writing(out, "half a run\n")
    parts = tmp_path / "p-{part}.data"
    killed_while_writing(tmp_path / "p-4.data", "half a part\n")
    (tmp_path / ".out.data.notes").write_text("not ours\n")
    (tmp_path / ".other.data.0123abcd.tmp").write_text("another target's\n")
    assert len(list(tmp_path.glob(".out.data.*.tmp"))) == 3

    run_nodes(items_for(kind, range(2)), make(out, name="write", overwrite=True))
    assert list(tmp_path.glob(".out.data.*.tmp")) == []
    assert "node 'write' removed 3 temporary file(s)" in caplog.text
    run_nodes(items_for(kind, range(2)), make(parts, rotate_items=5))
    assert visible(tmp_path) == [
        ".other.data.0123abcd.tmp",
        ".out.data.notes",
        "out.data",
        "p-0.data",
    ]


KILLED_WRITER = r"""
import itertools, sys
import nanostream
from nanostream.nodes import FileWriter
source = nanostream.from_iterable("x" * 100 for _ in itertools.count())
source > FileWriter(sys.argv[1], append=True)
print("started", flush=True)
source.global_start()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_run_after_kill_9_removes_the_killed_runs_copies(
    tmp_path: Path, kill_child: Callable[..., KillChild]
) -> None:
    out = tmp_path / "out.txt"
    out.write_text("earlier\n")
    (tmp_path / "child").mkdir()
    script = tmp_path / "child" / "writer.py"
    script.write_text(KILLED_WRITER)
    writer = kill_child(script, str(out))  # each start forks a preloaded interpreter
    for _ in range(3):
        before = set(tmp_path.glob(".out.txt.*.tmp"))
        child = writer.start()
        try:
            deadline = time.monotonic() + WAIT
            while not [
                p
                for p in set(tmp_path.glob(".out.txt.*.tmp")) - before
                if p.exists() and p.stat().st_size > 1 << 20
            ]:
                assert time.monotonic() < deadline, "the child wrote nothing"
                assert child.poll() is None, "the child ended"
                threading.Event().wait(0.01)
        finally:
            child.send_signal(signal.SIGKILL)
            child.communicate(WAIT)
        assert child.returncode == -signal.SIGKILL
        # Only the copy of the run just killed: it removed the one of the run before.
        assert len(list(tmp_path.glob(".out.txt.*.tmp"))) == 1
    assert out.read_text() == "earlier\n"
    run_nodes(["after"], FileWriter(out, append=True))
    assert visible(tmp_path) == ["child", "out.txt"]
    assert out.read_text() == "earlier\nafter\n"


def test_a_file_per_item_is_not_replaced_and_leftovers_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "letters"
    run_nodes(["a", "b"], FileWriter(directory=folder, filename="{item}.txt"))
    killed_while_writing(folder / "c.txt", "killed while writing")
    killed_while_writing(folder / "sub" / "x.txt", "not looked for in sub-folders")
    error = failure(["a"], FileWriter(directory=folder, filename="{item}.txt", name="letters"))
    assert isinstance(error, OutputExistsError)
    message = str(error)
    assert "node 'letters' would replace" in message and "overwrite=True" in message
    assert "the name comes from the item ('{item}.txt')" in message
    assert "a filename whose only field is {n}" in message
    assert "removed 1 temporary file(s)" in caplog.text
    assert visible(folder) == ["a.txt", "b.txt", "sub"]
    assert len(list((folder / "sub").glob(".x.txt.*.tmp"))) == 1
    assert (folder / "a.txt").read_text() == "a"
    error = failure(["new"], FileWriter(directory=folder, filename=lambda item, n: "a.txt"))
    assert isinstance(error, OutputExistsError)
    assert "the name comes from the item (a filename function)" in str(error)
    assert (folder / "a.txt").read_text() == "a"
    run_nodes(["new"], FileWriter(directory=folder, filename=lambda i, n: "a.txt", overwrite=True))
    assert (folder / "a.txt").read_text() == "new"


def test_numbered_files_go_on_after_the_highest_one_there(tmp_path: Path, runner: str) -> None:
    folder = tmp_path / "out"

    def names(items: list[str], **options: Any) -> list[str]:
        writer = FileWriter(directory=folder, filename="{n:06d}.txt", **options)
        return [Path(p).name for p in run_nodes(items, writer, runner=runner)]

    assert names(["a", "b"]) == ["000000.txt", "000001.txt"]
    assert names(["c"]) == ["000002.txt"]
    (folder / "000010.txt").write_text("from elsewhere")
    (folder / "000099.txt.bak").write_text("not a file of the template")
    (folder / "12.txt").write_text("not a file of the template either")
    assert names(["d"]) == ["000011.txt"]
    texts = {p.name: p.read_text() for p in folder.iterdir()}
    assert [texts[f"{n:06d}.txt"] for n in (0, 1, 2, 11)] == ["a", "b", "c", "d"]
    assert names(["e"], overwrite=True) == ["000000.txt"]  # from 0: it replaces
    assert (folder / "000000.txt").read_text() == "e"


class Counted(nanostream.NanoNode):
    """Passes items on; sets ``reached`` once it has passed ``n`` of them."""

    holds_items = False

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.seen = 0
        self.reached = threading.Event()

    def process_item(self, item: Any) -> Iterator[Any]:
        yield item
        self.seen += 1
        if self.seen >= self.n:
            self.reached.set()


@pytest.mark.parametrize("target", ["rows.jsonl", "rows-{part:02d}.jsonl", "{n:06d}.jsonl"])
def test_a_resumable_pipeline_keeps_every_run_s_rows(tmp_path: Path, target: str) -> None:
    """Watched folder with a ledger → CSVReader → a writer, stopped and restarted.

    The writer is a JSONLinesWriter (appending, or rotating parts), or a FileWriter with a
    file per row (``{n}``).
    """
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    ledger = tmp_path / "ledger.sqlite"

    def writer() -> nanostream.NanoNode:
        if "{n" in target:
            return FileWriter(directory=out, filename=target)
        if "{part" in target:
            return JSONLinesWriter(out / target)
        return JSONLinesWriter(out / target, append=True)

    def run_until(rows: int) -> None:
        watch = LocalDirectoryWatchdog(
            inbox, polling=True, poll_interval=0.02, settle=0.05, state=ledger
        )
        counted = Counted(rows)
        if "{n" in target:  # a file per row, its text the row as JSON
            watch > CSVReader(paths=True) > counted > Map(json.dumps) > writer()
        else:
            watch > CSVReader(paths=True) > counted > writer()
        run = watch.global_start(block=False)
        assert run is not None
        assert counted.reached.wait(WAIT)
        run.stop(timeout=WAIT)

    (inbox / "monday.csv").write_text("n\n1\n2\n")
    run_until(2)
    (inbox / "tuesday.csv").write_text("n\n3\n")
    run_until(1)
    written = [
        json.loads(line) for p in sorted(out.iterdir()) for line in p.read_text().splitlines()
    ]
    assert written == [{"n": "1"}, {"n": "2"}, {"n": "3"}]


# ----------------------------------------------------------------------------- printing
def test_printer_prints_and_passes_items_on(
    capsys: pytest.CaptureFixture[str], runner: str
) -> None:
    items = [{"a": 1}, "text", 3]
    assert run_nodes(items, PrinterOfThings(), runner=runner) == items
    if runner == "ray":
        pytest.skip(
            "ray: the printer prints to the stdout of its actor process, which the test "
            "cannot capture (the items passed on were checked)"
        )
    assert capsys.readouterr().out == "{'a': 1}\ntext\n3\n"


def test_printer_options() -> None:
    stream = io.StringIO()
    wide = {"key": list(range(30)), "other": "value"}
    run_nodes([wide, "plain"], PrinterOfThings(pretty=True, prepend="| ", stream=stream))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("| {'key': [0,")
    assert all(line.startswith("  ") for line in lines[1:-1])  # aligned under the first
    assert lines[-1] == "| plain"
    assert len(lines) > 3
    assert PrinterOfThings(pretty=True).format("s") == "s"


def test_nodes_are_importable_from_the_package() -> None:
    names = ["LocalDirectoryWatchdog", "LocalFileReader", "CSVReader", "PrinterOfThings"]
    for name in names:
        assert getattr(nanostream, name) is getattr(nanostream.nodes, name)
    assert nanostream.FormatError is FormatError
    assert os.path.basename(nanostream.nodes.files.__file__) == "files.py"


def test_the_csv_example_runs_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/csv_to_jsonl.yaml (the README's first command) may be run twice."""
    from nanostream.config import read_pipeline

    monkeypatch.chdir(Path(__file__).parents[2])  # the example's paths are relative
    out = tmp_path / "people.jsonl"
    for _ in range(2):
        spec = read_pipeline("examples/csv_to_jsonl.yaml", env={"OUT": str(out)})
        spec.build().start(runner="threads").wait(WAIT)
        assert len(out.read_text().splitlines()) == 6


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_an_exactly_once_file_writer_publishes_each_line_once_across_a_crash(
    tmp_path: Path, local_runner: str
) -> None:
    folder = tmp_path / "out"

    def writer() -> nanostream.NanoNode:
        return FileWriter(str(folder / "part-{part:04d}.txt"), exactly_once=True, name="out")

    write_across_a_crash(writer, str(tmp_path / "run.state"), local_runner, 11)
    names = sorted(os.listdir(folder))
    assert len(names) > 2 and not any(n.startswith(".") for n in names)
    lines = [line for name in names for line in (folder / name).read_text().splitlines()]
    assert lines == [str({"n": n}) for n in range(1, 21)]


def test_a_file_writer_with_a_directory_cannot_write_exactly_once(tmp_path: Path) -> None:
    with pytest.raises(nanostream.GraphError, match=r"out: .* not a file per item \(directory=\)"):
        FileWriter(directory=tmp_path, exactly_once=True, name="out")


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda path: LocalFileReader(path, chunk_size=True), "chunk_size"),
        (lambda path: FileWriter(path / "p-{part}.txt", rotate_items=True), "rotate_items"),
        (lambda path: LocalDirectoryWatchdog(path, settle=-0.5), "settle"),
    ],
)
def test_a_count_or_number_option_refuses_a_bool_or_a_wrong_sign(
    tmp_path: Path, build: Callable[[Path], Any], says: str
) -> None:
    with pytest.raises(nanostream.GraphError, match=f"{says} must be"):
        build(tmp_path)
