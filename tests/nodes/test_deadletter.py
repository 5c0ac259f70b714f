"""DeadLetterFile: every item that failed for good, as one JSON line each."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.nodes.deadletter import DeadLetterFile, read_dead_letters


class Parse(nanostream.NanoNode):
    def process_item(self, item: Any) -> Iterator[int]:
        yield int(item)


def test_records_are_written_as_json_lines(tmp_path: Path, runner: str) -> None:
    path = tmp_path / "sub" / "dead.jsonl"
    parse = Parse(name="parse", on_error="retry", retries=1, backoff=0)
    sink = nanostream.testing.Collect()
    nanostream.from_iterable(["1", "x", "3", b"\xff", None]) > parse > sink
    parse.errors > DeadLetterFile(path)
    sink.global_start(runner=runner)
    assert sink.items == [1, 3]
    records = read_dead_letters(path)
    assert [r["item"] for r in records] == ["x", {"base64": "/w=="}, None]
    first = records[0]
    assert set(first) == {
        "node",
        "item",
        "exception_type",
        "message",
        "traceback",
        "attempt",
        "time",
    }
    assert first["node"] == "parse" and first["attempt"] == 2
    assert first["exception_type"] == "ValueError"
    assert "invalid literal for int()" in first["message"]
    assert "Traceback (most recent call last)" in first["traceback"]
    assert "in process_item" in first["traceback"]
    when = datetime.datetime.fromisoformat(first["time"])
    assert when.tzinfo is not None
    assert records[2]["exception_type"] == "TypeError"


def test_a_restart_appends_and_odd_items_are_readable(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    for batch in ([{1, 2}, Path("/x")], [object()]):
        node = DeadLetterFile(path)
        nanostream.from_iterable(batch) > node
        node.global_start()
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0]) == {"item": [1, 2]}
    assert json.loads(lines[1]) == {"item": "/x"}
    assert json.loads(lines[2])["item"]["repr"].startswith("<object object")


def test_fsync_and_bad_paths(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    node = DeadLetterFile(path, fsync=True)
    nanostream.from_iterable(["a"]) > node
    node.global_start()
    assert read_dead_letters(path) == [{"item": "a"}]
    with pytest.raises(nanostream.GraphError, match="path must be a file name"):
        DeadLetterFile("")


def test_a_record_cut_short_by_a_kill_is_reported_and_the_next_starts_a_new_line(
    tmp_path: Path, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dead.jsonl"
    # What a process killed while writing a record leaves: a last line without its end.
    path.write_text('{"item": "before"}\n{"node": "parse", "item": "half of a rec')
    parse = Parse(name="parse", on_error="skip")
    nanostream.from_iterable(["1", "x"]) > parse > nanostream.testing.Collect()
    parse.errors > DeadLetterFile(path, name="dead")
    parse.global_start(runner=runner)

    records = read_dead_letters(path)
    assert [r["item"] for r in records] == ["before", "x"]  # the new one is whole
    assert path.read_text().splitlines()[1] == '{"node": "parse", "item": "half of a rec'
    assert f"{path}, line 2 is not a whole dead letter" in caplog.text
    if runner != "ray":  # on ray the node logs in its actor's process
        assert f"{path}, line 2: a dead letter cut short" in caplog.text
        assert "node 'dead'" in caplog.text


def test_every_torn_line_is_reported_and_whole_records_are_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_text('{"item": 1}\n{"ite\n{"item": "a\u2028b"}\n\n{"item": 3')
    assert read_dead_letters(path) == [{"item": 1}, {"item": "a\u2028b"}]
    assert f"{path}, line 2 is not a whole dead letter" in caplog.text
    assert f"{path}, line 5 is not a whole dead letter" in caplog.text


def test_a_record_cut_inside_a_character_is_reported_and_the_others_are_read(
    tmp_path: Path, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dead.jsonl"
    whole = '{"item": "caf\u00e9"}\n'.encode()
    torn = '{"item": "caf\u00e9"}'.encode()
    cut = torn[: torn.index("\u00e9".encode()) + 1]  # the first of the two bytes of "é"
    path.write_bytes(whole + cut)
    parse = Parse(name="parse", on_error="skip")
    nanostream.from_iterable(["1", "\u00e9t\u00e9"]) > parse > nanostream.testing.Collect()
    parse.errors > DeadLetterFile(path, name="dead")
    parse.global_start(runner=runner)

    records = read_dead_letters(path)
    assert [r["item"] for r in records] == ["caf\u00e9", "\u00e9t\u00e9"]
    assert path.read_bytes().split(b"\n")[1] == cut  # kept as it was, on a line of its own
    assert f"{path}, line 2 is not a whole dead letter (not valid UTF-8" in caplog.text
    if runner != "ray":  # on ray the node logs in its actor's process
        assert f"{path}, line 2: a dead letter cut short" in caplog.text


def test_a_line_nested_too_deep_is_reported_and_the_others_are_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_text('{"item": 1}\n' + "[" * 100_000 + '\n{"item": 2}\n')
    assert read_dead_letters(path) == [{"item": 1}, {"item": 2}]
    assert f"{path}, line 2 is not a whole dead letter (not readable JSON" in caplog.text


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Reject(nanostream.NanoNode):
    def process_item(self, item: Any) -> Iterator[Any]:
        raise ValueError("rejected")
        yield item


def test_an_item_whose_repr_raises_is_written_with_a_placeholder(
    tmp_path: Path, runner: str
) -> None:
    path = tmp_path / "dead.jsonl"
    reject = Reject(name="reject", on_error="skip")
    nanostream.from_iterable([Unrepresentable(), "next"]) > reject
    reject.errors > DeadLetterFile(path, name="dead")
    reject.global_start(runner=runner)
    records = read_dead_letters(path)
    assert [r["item"] for r in records] == [
        {"repr": "<unrepresentable Unrepresentable: repr() raised RuntimeError>"},
        "next",
    ]
    assert records[0]["node"] == "reject" and records[0]["message"] == "rejected"
