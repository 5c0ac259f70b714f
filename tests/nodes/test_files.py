"""LocalFileReader, FileWriter and PrinterOfThings on real files in a temporary folder."""

from __future__ import annotations

import io
import itertools
import os
import pickle
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest

import nanostream
from nanostream.nodes import (
    FileBytes,
    FileText,
    FileWriter,
    FormatError,
    LocalFileReader,
    PathRefusedError,
    PrinterOfThings,
)
from nanostream.nodes._common import ReadThrough
from nanostream.testing import Collect
from support import TruncatingSink, wait_for_file

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
    run_nodes(["x", "y"], FileWriter(out, line_end=""))
    assert out.read_text() == "xy"


def test_file_writer_binary(tmp_path: Path) -> None:
    out = tmp_path / "data.bin"
    run_nodes([b"\x00\x01", bytearray(b"\x02")], FileWriter(out, binary=True, line_end=""))
    assert out.read_bytes() == b"\x00\x01\x02"
    error = failure(["text"], FileWriter(out, binary=True))
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
