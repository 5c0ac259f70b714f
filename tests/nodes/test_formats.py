"""CSVReader, CSVWriter, JSONLinesReader and JSONLinesWriter on text and real files."""

from __future__ import annotations

import datetime
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.nodes import (
    CSVReader,
    CSVWriter,
    FilePath,
    FileText,
    FormatError,
    JSONLinesReader,
    JSONLinesWriter,
    LocalFileReader,
)
from nanostream.testing import Collect
from support import Numbered, OneAckedThenWait, TruncatingSink, write_across_a_crash


def run_nodes(items: list[Any], *nodes: nanostream.NanoNode, runner: str = "threads") -> list[Any]:
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


PEOPLE = "name,age,city\nada,36,London\nalan,41,Wilmslow\n"


# ----------------------------------------------------------------------------- CSVReader
def test_rows_are_dicts_keyed_by_the_header(runner: str) -> None:
    assert run_nodes([PEOPLE, "a,b\n1,2\n"], CSVReader(), runner=runner) == [
        {"name": "ada", "age": "36", "city": "London"},
        {"name": "alan", "age": "41", "city": "Wilmslow"},
        {"a": "1", "b": "2"},
    ]


def test_csv_dialect_details() -> None:
    text = '\ufeffid;note\r\n1;"semi;colon"\r\n\r\n2;"two\nlines"\r\n3;""""\r\n'
    assert run_nodes([text], CSVReader(delimiter=";")) == [
        {"id": "1", "note": "semi;colon"},
        {"id": "2", "note": "two\nlines"},
        {"id": "3", "note": '"'},
    ]
    assert run_nodes([b"x\n1\n", bytearray(b"x\n2\n")], CSVReader()) == [{"x": "1"}, {"x": "2"}]
    assert run_nodes(["", "only,header\n"], CSVReader()) == []


def test_without_a_header_rows_are_lists_and_fieldnames_name_them() -> None:
    assert run_nodes(["1,2\n3,4\n"], CSVReader(header=False)) == [["1", "2"], ["3", "4"]]
    named = CSVReader(header=False, fieldnames=["x", "y"])
    assert run_nodes(["1,2\n3,4\n"], named) == [{"x": "1", "y": "2"}, {"x": "3", "y": "4"}]
    renamed = CSVReader(fieldnames=["x", "y"])  # the file's own header is skipped
    assert run_nodes(["a,b\n1,2\n"], renamed) == [{"x": "1", "y": "2"}]


def test_type_conversion() -> None:
    typed = CSVReader(types={"age": int, "city": str.upper})
    assert run_nodes([PEOPLE], typed)[0] == {"name": "ada", "age": 36, "city": "LONDON"}
    inferred = CSVReader(infer_types=True)
    assert run_nodes(["a,b,c,d\n1,-2.5,x,\n"], inferred) == [{"a": 1, "b": -2.5, "c": "x", "d": ""}]
    by_index = CSVReader(header=False, types={1: float})
    assert run_nodes(["a,1\nb,2\n"], by_index) == [["a", 1.0], ["b", 2.0]]
    mixed = CSVReader(header=False, infer_types=True, types={0: str})
    assert run_nodes(["007,8,9\n"], mixed) == [["007", 8, 9]]


def test_a_broken_row_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(PEOPLE + "grace,85\nlinus,54,Helsinki\n")
    from_text = failure(["people.csv"], LocalFileReader(tmp_path), CSVReader())
    from_path = failure([str(path)], CSVReader(paths=True))
    for error in (from_text, from_path):
        assert isinstance(error, FormatError)
        assert isinstance(error, nanostream.NanoStreamError)
        assert (error.source, error.line) == (str(path), 4)
        assert str(error).startswith(f"{path}, line 4: expected 3 fields (as in the header), got 2")
    plain = failure(["ok\n1\n", "a,b\n1,2\n3\n"], CSVReader())
    assert isinstance(plain, FormatError)
    assert str(plain).startswith("input item #2, line 3: expected 2 fields")
    lists = failure(["1,2\n3,4,5\n"], CSVReader(header=False))
    assert "as in the first row" in str(lists)


def test_other_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    bad_value = failure([PEOPLE + "bob,old,Paris\n"], CSVReader(types={"age": int}))
    assert isinstance(bad_value, FormatError)
    assert bad_value.line == 4
    assert "column 'age': cannot convert 'old' with int" in str(bad_value)
    unknown = failure([PEOPLE], CSVReader(types={"height": int}))
    assert "height" in str(unknown)
    duplicate = failure(["a,b,a\n1,2,3\n"], CSVReader())
    assert "more than once" in str(duplicate)
    not_text = failure([123], CSVReader())
    assert "takes text, bytes or a path" in str(not_text)
    unterminated = failure(['a,b\n1,2\n3,"open\n4,5\n6,7\n'], CSVReader())
    assert isinstance(unterminated, FormatError)
    assert "unexpected end of data" in str(unterminated)
    assert "opened at or after line 3 is never closed" in str(unterminated)
    lenient = run_nodes(['a,b\n1,"x"y\n'], CSVReader(strict=False))
    assert lenient == [{"a": "1", "b": "xy"}]
    after_quote = failure(['a,b\n1,"x"y\n'], CSVReader())
    assert (after_quote.line, "strict=False" in str(after_quote)) == (2, True)  # type: ignore[attr-defined]
    huge = failure(["a\n" + "x" * 200_000 + "\n"], CSVReader())
    assert "field larger than field limit" in str(huge)
    with pytest.raises(nanostream.GraphError, match="dialect"):
        CSVReader(delimiter="::")
    with pytest.raises(nanostream.GraphError, match="indexes"):
        CSVReader(header=False, types={"a": int})


def test_non_utf8_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("name\nJos\xe9\n".encode("latin-1"))
    error = failure([path], CSVReader())
    assert isinstance(error, FormatError)
    assert (error.source, error.line) == (str(path), 2)
    assert run_nodes([path], CSVReader(encoding="latin-1")) == [{"name": "José"}]
    as_bytes = failure([path.read_bytes()], CSVReader())
    assert isinstance(as_bytes, FormatError)
    assert as_bytes.line == 2


def test_csv_files_by_path_are_streamed(tmp_path: Path, runner: str) -> None:
    path = tmp_path / "many.csv"
    path.write_text("n,sq\n" + "".join(f"{i},{i * i}\n" for i in range(10_000)))
    rows = run_nodes([path], CSVReader(types={"n": int, "sq": int}), runner=runner)
    assert len(rows) == 10_000
    assert rows[-1] == {"n": 9999, "sq": 9999 * 9999}


def test_a_file_text_item_names_its_file() -> None:
    error = failure([FileText("a\n1,2\n", path="/data/x.csv")], CSVReader())
    assert str(error).startswith("/data/x.csv, line 2:")


# ----------------------------------------------------------------------------- CSVWriter
def test_csv_writer_round_trip(tmp_path: Path, runner: str) -> None:
    rows = [
        {"name": "ada", "note": 'said "hi", left'},
        {"name": "alan", "note": "two\nlines"},
        {"note": "no name"},
    ]
    out = tmp_path / "out.csv"
    assert run_nodes(rows, CSVWriter(out), runner=runner) == [str(out)]
    assert out.read_text().startswith('name,note\nada,"said ""hi"", left"\n')
    back = run_nodes([out], CSVReader())
    assert back == [*rows[:2], {"name": "", "note": "no name"}]


def test_csv_writer_lists_fieldnames_append_and_dialect(tmp_path: Path) -> None:
    out = tmp_path / "t.tsv"
    run_nodes([[1, 2], (3, 4)], CSVWriter(out, fieldnames=["a", "b"], delimiter="\t"))
    assert out.read_text() == "a\tb\n1\t2\n3\t4\n"
    run_nodes([{"a": 5, "b": 6}], CSVWriter(out, delimiter="\t", append=True))
    assert out.read_text() == "a\tb\n1\t2\n3\t4\n5\t6\n"  # no second header
    bare = tmp_path / "bare.csv"
    run_nodes([["x", "y"]], CSVWriter(bare, header=False, line_end="\r\n"))
    assert bare.read_bytes() == b"x,y\r\n"


def test_csv_writer_refuses_unknown_fields(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    error = failure([{"a": 1}, {"a": 2, "b": 3}], CSVWriter(out))
    assert isinstance(error, FormatError)
    assert "['b']" in str(error)
    assert "fieldnames" in str(error)
    assert list(tmp_path.iterdir()) == []  # the failed run published nothing


def test_csv_writer_appending_follows_the_file_s_header(tmp_path: Path, runner: str) -> None:
    out = tmp_path / "out.csv"
    out.write_text("x,y\n1,2\n")
    run_nodes([{"y": 3, "x": 4}, {"x": 5}], CSVWriter(out, append=True), runner=runner)
    assert out.read_text() == "x,y\n1,2\n4,3\n5,\n"  # under the right names
    assert run_nodes([out], CSVReader()) == [
        {"x": "1", "y": "2"},
        {"x": "4", "y": "3"},
        {"x": "5", "y": ""},
    ]
    # fieldnames in another order name the same columns: the file's order is kept
    run_nodes([{"x": 6, "y": 7}], CSVWriter(out, append=True, fieldnames=["y", "x"]))
    assert out.read_text().endswith("5,\n6,7\n")


def test_csv_writer_appending_refuses_a_field_the_header_does_not_have(
    tmp_path: Path, runner: str
) -> None:
    out = tmp_path / "out.csv"
    out.write_text("x,y\n1,2\n")
    src = nanostream.from_iterable([{"x": 3, "y": 4, "z": 5}])
    src > CSVWriter(out, append=True, name="csv") > Collect()
    with pytest.raises(nanostream.NodeFailed, match="'csv'") as info:
        src.global_start(runner=runner)
    error = info.value.__cause__
    assert isinstance(error, FormatError)
    assert "csv: a row has fields ['z'] that are not among the CSV columns ['x', 'y']" in str(error)
    assert out.read_text() == "x,y\n1,2\n"  # the failed run changed nothing

    # under the node's error policy: that row is an error record, the others are written
    writer = CSVWriter(out, append=True, name="csv", on_error="skip")
    dead = Collect()
    src = nanostream.from_iterable([{"x": 3, "y": 4}, {"x": 5, "z": 6}, {"y": 7, "x": 8}])
    src > writer > Collect()
    writer.errors > dead
    src.global_start(runner=runner)
    assert out.read_text() == "x,y\n1,2\n3,4\n8,7\n"
    (record,) = dead.items
    assert record.item == {"x": 5, "z": 6} and "['z']" in record.message


def test_csv_writer_appending_refuses_fieldnames_of_other_columns(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text("x,y\n1,2\n")
    src = nanostream.from_iterable([{"a": 1}])
    src > CSVWriter(out, append=True, fieldnames=["a"], name="csv")
    with pytest.raises(FormatError, match=r"csv appends to a file whose header is \['x', 'y'\]"):
        src.global_start()
    assert out.read_text() == "x,y\n1,2\n"


# ----------------------------------------------------------------------------- JSON lines
def test_json_lines_reader_text_and_paths(tmp_path: Path, runner: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n  \n[1, "é"]\n"s"')
    expected = [{"a": 1}, [1, "é"], "s"]
    assert run_nodes([path], JSONLinesReader(), runner=runner) == expected
    assert run_nodes([str(path)], JSONLinesReader(paths=True)) == expected
    assert run_nodes([path.read_bytes()], JSONLinesReader()) == expected
    lines = run_nodes([path], LocalFileReader(serialize=True), JSONLinesReader())
    assert lines == expected


def test_a_bad_json_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    for nodes in ([JSONLinesReader()], [LocalFileReader(), JSONLinesReader()]):
        error = failure([path], *nodes)
        assert isinstance(error, FormatError)
        assert (error.source, error.line) == (str(path), 2)
        assert "not valid JSON" in str(error)
    plain = failure(["1\n{"], JSONLinesReader())
    assert str(plain).startswith("input item #1, line 2: not valid JSON")


def test_json_lines_writer(tmp_path: Path, runner: str) -> None:
    out = tmp_path / "out.jsonl"
    items = [{"b": 1, "a": [1.5, None, True]}, "é", 10**30]
    assert run_nodes(items, JSONLinesWriter(out), runner=runner) == [str(out)]
    assert (
        out.read_text(encoding="utf-8")
        == '{"b":1,"a":[1.5,null,true]}\n"é"\n' + "1" + "0" * 30 + "\n"
    )
    assert run_nodes([out], JSONLinesReader()) == items
    run_nodes([{"b": 1, "a": 2}], JSONLinesWriter(out, sort_keys=True, append=True))
    assert out.read_text(encoding="utf-8").splitlines()[-1] == '{"a":2,"b":1}'


def test_json_lines_writer_default_and_errors(tmp_path: Path) -> None:
    when = datetime.date(2024, 1, 2)
    out = tmp_path / "d.jsonl"
    run_nodes([{"when": when}], JSONLinesWriter(out, default=str))
    assert out.read_text() == '{"when":"2024-01-02"}\n'
    error = failure([{"when": when}], JSONLinesWriter(tmp_path / "e.jsonl"))
    assert isinstance(error, FormatError)
    assert "default=" in str(error)
    assert not (tmp_path / "e.jsonl").exists()
    with pytest.raises(nanostream.GraphError, match="backend"):
        JSONLinesWriter(out, backend="ujson")


def test_json_lines_writer_rotates(tmp_path: Path) -> None:
    out = run_nodes(list(range(5)), JSONLinesWriter(tmp_path / "p{part}.jsonl", rotate_items=2))
    assert [Path(p).read_text() for p in out] == ["0\n1\n", "2\n3\n", "4\n"]


class FakeOrjson(types.ModuleType):
    """Stands in for orjson (same calls, compact output, refuses big integers)."""

    OPT_NON_STR_KEYS = 1
    OPT_SORT_KEYS = 2

    class JSONDecodeError(ValueError):
        pass

    def __init__(self) -> None:
        super().__init__("orjson")
        self.calls = 0

    def dumps(self, obj: Any, default: Any = None, option: int = 0) -> bytes:
        self.calls += 1
        if isinstance(obj, int) and abs(obj) >= 2**64:
            raise TypeError("Integer exceeds 64-bit range")
        text = json.dumps(
            obj,
            default=default,
            separators=(",", ":"),
            ensure_ascii=False,
            sort_keys=bool(option & self.OPT_SORT_KEYS),
        )
        return text.encode()

    def loads(self, text: str | bytes) -> Any:
        self.calls += 1
        if text.strip() == "NaN":
            raise self.JSONDecodeError("orjson refuses NaN")
        try:
            return json.loads(text)
        except ValueError as exc:
            raise self.JSONDecodeError(str(exc)) from None


def test_orjson_is_used_when_installed_with_the_stdlib_as_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeOrjson()
    monkeypatch.setitem(sys.modules, "orjson", fake)
    out = tmp_path / "o.jsonl"
    run_nodes([{"z": 1, "a": "é"}, 2**70], JSONLinesWriter(out, sort_keys=True))
    assert out.read_text(encoding="utf-8") == '{"a":"é","z":1}\n' + str(2**70) + "\n"
    assert fake.calls == 2
    values = run_nodes(["1\nNaN\n"], JSONLinesReader())
    assert values[0] == 1
    assert values[1] != values[1]  # NaN, parsed by the standard library
    assert fake.calls == 4 + 1  # two lines and the trailing blank one
    fake.calls = 0
    run_nodes([1], JSONLinesWriter(out, backend="json", overwrite=True))
    assert fake.calls == 0


def test_orjson_backend_needs_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)
    with pytest.raises(nanostream.MissingDependencyError, match="orjson"):
        JSONLinesWriter(tmp_path / "x.jsonl", backend="orjson")
    assert run_nodes(["[1]"], JSONLinesReader()) == [[1]]  # auto: the standard library


# ----------------------------------------------------------------------------- together
def test_csv_to_json_lines_file_to_file(tmp_path: Path, runner: str) -> None:
    (tmp_path / "people.csv").write_text(PEOPLE)
    out = tmp_path / "people.jsonl"
    src = nanostream.from_iterable([tmp_path / "people.csv"])
    writer = JSONLinesWriter(out)
    src > CSVReader(types={"age": int}) > writer
    src.global_start(runner=runner)
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"name": "ada", "age": 36, "city": "London"},
        {"name": "alan", "age": 41, "city": "Wilmslow"},
    ]


# --------------------------------------------------------------------- bad records, skipped
BAD_CSV = 'name,age\nada,36\nalan\ngrace,x\nbob,"5\n'  # short row, bad int, unclosed quote


@pytest.mark.parametrize("policy", ["skip", "retry"])
def test_skip_turns_each_bad_csv_row_into_an_error_record(
    tmp_path: Path, runner: str, policy: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(BAD_CSV + "", encoding="utf-8")
    good = tmp_path / "good.csv"
    good.write_text("name,age\nlin,3\n", encoding="utf-8")
    reader = CSVReader(types={"age": int}, on_error=policy, retries=1, backoff=0, name="csv")
    rows, dead = Collect(), Collect()
    nanostream.from_iterable([path, good]) > reader > rows
    reader.errors > dead
    run = rows.global_start(runner=runner, block=False)
    assert run is not None and run.wait(30)
    assert rows.items == [{"name": "ada", "age": 36}, {"name": "lin", "age": 3}]
    lines = [(r.item["line"], r.exception_type.rsplit(".", 1)[-1]) for r in dead.items]
    assert lines == [(3, "FormatError"), (4, "FormatError"), (5, "FormatError")]
    assert dead.items[0].item == {"source": str(path), "line": 3, "text": "alan"}
    assert all(r.node == "csv" and r.attempt == 1 for r in dead.items)
    assert run.stats()["csv"].errors == 3


def test_max_errors_still_fails_a_csv_run(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n" + "x\n" * 10, encoding="utf-8")
    src = nanostream.from_iterable([path])
    _ = src > CSVReader(on_error="skip", max_errors=3, name="csv")
    with pytest.raises(nanostream.NodeFailed, match="'csv'") as info:
        src.global_start()
    assert isinstance(info.value.__cause__, nanostream.TooManyErrors)


def test_skip_turns_each_bad_json_line_into_an_error_record(runner: str) -> None:
    reader = JSONLinesReader(on_error="skip", name="json")
    values, dead = Collect(), Collect()
    nanostream.from_iterable(['{"a": 1}\n{oops\n[2]\n']) > reader > values
    reader.errors > dead
    values.global_start(runner=runner)
    assert values.items == [{"a": 1}, [2]]
    (record,) = dead.items
    assert record.item["line"] == 2 and record.item["text"] == "{oops"
    assert "not valid JSON" in record.message


# ------------------------------------------------------------------ files truncated meanwhile
# One value per line, so that a line cut anywhere still parses: only the check at the end
# of the file can tell that rows are missing.
NUMBERS = "".join(f"{i}\n" for i in range(200_000))
READERS: dict[str, Any] = {
    "csv": lambda **kw: CSVReader(header=False, **kw),
    "jsonl": JSONLinesReader,
}


@pytest.mark.parametrize("kind", sorted(READERS))
def test_a_file_truncated_while_it_is_read_fails_the_run(
    tmp_path: Path, runner: str, kind: str
) -> None:
    path = tmp_path / f"numbers.{kind}"
    path.write_text(NUMBERS)
    src = nanostream.from_iterable([path])
    src > READERS[kind](name="reader", batch_size=1) > TruncatingSink(path)
    with pytest.raises(nanostream.NodeFailed, match="'reader'") as info:
        src.global_start(runner=runner)
    error = info.value.__cause__
    assert isinstance(error, nanostream.FormatError)
    assert error.source == str(path)
    assert "truncated while it was read" in str(error)


def test_a_row_cut_by_the_truncation_is_reported_as_the_truncation(
    tmp_path: Path, runner: str
) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("n,s\n" + "".join(f"{i:06d},xyz\n" for i in range(100_000)))
    keep = 4 + 11 * 10_000 + 4  # far beyond what the reader holds; inside a row's first field
    src = nanostream.from_iterable([path])
    src > CSVReader(name="reader", batch_size=1) > TruncatingSink(path, keep=keep)
    with pytest.raises(nanostream.NodeFailed, match="'reader'") as info:
        src.global_start(runner=runner)
    error = info.value.__cause__
    assert isinstance(error, FormatError) and "truncated while it was read" in str(error)
    cut = error.__cause__  # the row it cut: one field of two
    assert isinstance(cut, FormatError) and cut.line == 10_002
    assert "expected 2 fields (as in the header), got 1: ['0100']" in str(cut)


@pytest.mark.parametrize("kind", sorted(READERS))
def test_with_skip_a_truncated_file_is_an_error_record(
    tmp_path: Path, runner: str, kind: str
) -> None:
    path = tmp_path / f"numbers.{kind}"
    path.write_text(NUMBERS)
    reader = READERS[kind](name="reader", batch_size=1, on_error="skip")
    rows, dead = TruncatingSink(path), Collect()
    nanostream.from_iterable([path]) > reader > rows
    reader.errors > dead
    rows.global_start(runner=runner)
    assert 0 < len(rows.items) < 200_000
    (record,) = dead.items
    assert record.node == "reader"
    assert record.item == {"source": str(path), "line": None, "text": ""}
    assert "truncated while it was read" in record.message


# ------------------------------------------------------------------ JSON nested too deeply
DEEP = '{"a": 1}\n' + "[" * 100_000 + '\n{"b": 2}\n'


@pytest.mark.parametrize("by_path", [False, True], ids=["text", "path"])
def test_json_nested_too_deeply_is_a_format_error_for_its_line(
    tmp_path: Path, runner: str, by_path: bool
) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(DEEP)
    item: Any = path if by_path else DEEP
    src = nanostream.from_iterable([item])
    src > JSONLinesReader(name="json") > Collect()
    with pytest.raises(nanostream.NodeFailed, match="'json'") as info:
        src.global_start(runner=runner)
    error = info.value.__cause__
    assert isinstance(error, nanostream.FormatError)
    assert error.line == 2 and error.source == (str(path) if by_path else "input item #1")
    assert "nested deeper than the parser can follow" in str(error)


def test_with_skip_only_the_deeply_nested_line_is_lost(tmp_path: Path, runner: str) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(DEEP)
    reader = JSONLinesReader(on_error="skip", name="json")
    values, dead = Collect(), Collect()
    nanostream.from_iterable([path]) > reader > values
    reader.errors > dead
    values.global_start(runner=runner)
    assert values.items == [{"a": 1}, {"b": 2}]
    (record,) = dead.items
    assert record.item == {"source": str(path), "line": 2, "text": "[" * 1000}
    assert record.exception_type.endswith("FormatError")


# ------------------------------------------------------------- wirings that gave no rows
@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.parametrize("as_", ["str", "FilePath"])
def test_a_path_given_as_text_is_refused_saying_what_to_write(
    tmp_path: Path, runner: str, kind: str, as_: str
) -> None:
    path = tmp_path / f"numbers.{kind}"
    path.write_text("1\n2\n")
    item = str(path) if as_ == "str" else FilePath(str(path))
    src = nanostream.from_iterable([item])
    src > READERS[kind](name="reader") > Collect()
    with pytest.raises(nanostream.NodeFailed) as info:
        src.global_start(runner=runner)
    error = info.value.__cause__
    assert isinstance(error, FormatError)
    label = "CSVReader 'reader'" if kind == "csv" else "JSONLinesReader 'reader'"
    assert str(error).startswith(f"{label} got {str(path)!r}")
    assert "pass paths=True to read files by path" in str(error)
    assert "put a LocalFileReader before it" in str(error)
    # and with paths=True it is read
    assert run_nodes([item], READERS[kind](paths=True), runner=runner) == (
        [["1"], ["2"]] if kind == "csv" else [1, 2]
    )


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.parametrize("name", ["nope/b.{kind}", "b.{kind}", "nope/b", "B.TXT"])
def test_a_path_of_a_file_that_does_not_exist_is_refused_too(
    tmp_path: Path, runner: str, kind: str, name: str
) -> None:
    path = str(tmp_path / name.format(kind=kind)) if "/" in name else name.format(kind=kind)
    src = nanostream.from_iterable([path])
    src > READERS[kind](name="reader") > Collect()
    with pytest.raises(nanostream.NodeFailed) as info:
        src.global_start(runner=runner)
    error = info.value.__cause__
    assert isinstance(error, FormatError)
    label = "CSVReader 'reader'" if kind == "csv" else "JSONLinesReader 'reader'"
    assert str(error).startswith(
        f"{label} got {path!r}, which looks like the path of a file, but no such file exists"
    )
    assert "pass paths=True to read files by path" in str(error)


def test_one_line_text_that_only_looks_a_little_like_a_path_is_still_text() -> None:
    assert run_nodes(["a,b/c.csv"], CSVReader(header=False)) == [["a", "b/c.csv"]]
    assert run_nodes(["1;2/3"], CSVReader(header=False, delimiter=";")) == [["1", "2/3"]]
    assert run_nodes(['"a/b.json"'], JSONLinesReader()) == ["a/b.json"]  # JSON first
    assert run_nodes(["a,b.csv\n1,2\n"], CSVReader()) == [{"a": "1", "b.csv": "2"}]


def test_one_line_text_that_names_no_file_or_is_json_is_still_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "42").write_text("a file named 42\n")
    assert run_nodes(["a,b"], CSVReader(header=False)) == [["a", "b"]]
    assert run_nodes(["42"], JSONLinesReader()) == [42]  # JSON first, even if a file is named so
    assert run_nodes(["42\n"], CSVReader(header=False)) == [["42"]]  # a line end: text
    refused = failure(["42"], CSVReader(header=False))
    assert "to parse it as CSV text, end it with a line break" in str(refused)


def test_lines_one_at_a_time_into_a_csv_reader_with_a_header_are_refused(
    tmp_path: Path, runner: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(PEOPLE)
    src = nanostream.from_iterable([path])
    src > LocalFileReader(serialize=True) > CSVReader(name="csv") > Collect()
    with pytest.raises(nanostream.NodeFailed, match="'csv'") as info:
        src.global_start(runner=runner)
    error = info.value.__cause__
    assert isinstance(error, FormatError) and error.source == "input item #2"
    assert "LocalFileReader(serialize=False) before it" in str(error)
    assert "CSVReader(paths=True)" in str(error) and "header=False" in str(error)
    # what the message suggests works
    whole = run_nodes([path], LocalFileReader(), CSVReader(), runner=runner)
    assert whole == run_nodes([path], CSVReader(), runner=runner) and len(whole) == 2
    per_line = run_nodes([path], LocalFileReader(serialize=True), CSVReader(header=False))
    assert per_line[1:] == [["ada", "36", "London"], ["alan", "41", "Wilmslow"]]
    # a header alone (an empty table, without a line end) is no error
    assert run_nodes(["name,age"], CSVReader(), runner=runner) == []


@pytest.mark.parametrize("reader", ["csv", "jsonl"])
def test_a_readers_input_is_acknowledged_before_the_next_item_comes(
    runner: str, acks: bool, tmp_path: Path, reader: str
) -> None:
    # A reader reads each input item whole before the next: its source's acknowledgement
    # must not wait for the end of the stream (JSONLinesReader's did).
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    text = "a,b\n1,2\n" if reader == "csv" else '{"a": 1}\n'
    source = OneAckedThenWait(tmp_path / "acked", item=text)
    sink = Collect()
    source > (CSVReader() if reader == "csv" else JSONLinesReader()) > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert run.wait(timeout=30)
    assert source.answered, "the acknowledgement waited for the end of the stream"
    assert len(sink.items) == 1


# ----------------------------------------------------------------------------- batches
@pytest.mark.parametrize("local", ["threads", "cooperative"])
def test_csv_and_json_lines_writers_take_arrow_batches_and_frames(
    tmp_path: Path, local: str
) -> None:
    pa = pytest.importorskip("pyarrow")
    pandas = pytest.importorskip("pandas")
    rows = [{"id": i, "name": f"n{i}"} for i in range(6)]
    items = [
        rows[0],
        pa.RecordBatch.from_pylist(rows[1:3]),
        pa.Table.from_pylist(rows[3:5]),
        pandas.DataFrame(rows[5:]),
    ]
    csv_out, jsonl_out = tmp_path / "out.csv", tmp_path / "out.jsonl"
    run_nodes(items, CSVWriter(csv_out), runner=local)
    assert run_nodes([csv_out], CSVReader(types={"id": int})) == rows
    run_nodes(items, JSONLinesWriter(jsonl_out), runner=local)
    assert [json.loads(line) for line in jsonl_out.read_text().splitlines()] == rows


# ----------------------------------------------------------------------------- exactly once
def published(folder: Path, read: Any) -> list[int]:
    """The numbers in the published parts, part after part; no hidden file is left."""
    names = sorted(p.name for p in folder.iterdir())
    assert all(not n.startswith(".") for n in names), names
    return [n for name in names for n in read(folder / name)]


def jsonl_numbers(path: Path) -> list[int]:
    return [json.loads(line)["n"] for line in path.read_text().splitlines()]


def csv_numbers(path: Path) -> list[int]:
    lines = path.read_text().splitlines()
    assert lines[0] == "n"  # each part has its header
    return [int(line) for line in lines[1:]]


WRITERS = {"jsonl": (JSONLinesWriter, jsonl_numbers), "csv": (CSVWriter, csv_numbers)}


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize("fail_after", [1, 7, 18])
def test_an_exactly_once_writer_publishes_each_row_once_across_a_crash(
    tmp_path: Path, local_runner: str, kind: str, fail_after: int
) -> None:
    writer_class, read = WRITERS[kind]
    folder, store = tmp_path / "out", str(tmp_path / "run.state")

    def writer() -> nanostream.NanoNode:
        return writer_class(str(folder / "part-{part:04d}.out"), exactly_once=True, name="out")

    def check() -> None:
        before = published(folder, read) if folder.exists() else []
        assert before == list(range(1, len(before) + 1))  # committed checkpoints only

    write_across_a_crash(writer, store, local_runner, fail_after, check)
    assert published(folder, read) == list(range(1, 21))
    assert len(list(folder.iterdir())) > 2  # a part per checkpoint


def writer_in(folder: Path) -> JSONLinesWriter:
    writer = JSONLinesWriter(str(folder / "part-{part}.jsonl"), exactly_once=True)
    writer.setup()
    return writer


def test_a_part_sealed_by_a_checkpoint_that_was_not_committed_is_deleted(tmp_path: Path) -> None:
    first = writer_in(tmp_path)
    first.write_items([{"n": 1}], print)
    committed = first.snapshot_state()
    first.checkpoint_committed()
    first.write_items([{"n": 2}], print)
    first.snapshot_state()  # sealed; the crash comes before its checkpoint is committed
    assert (tmp_path / ".part-1.jsonl.pending").exists()
    again = writer_in(tmp_path)
    again.restore_state(committed)
    again.write_items([{"n": 2}, {"n": 3}], print)  # replayed from the checkpoint
    again.snapshot_state()
    again.checkpoint_committed()
    assert published(tmp_path, jsonl_numbers) == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-0.jsonl", "part-1.jsonl"]


def test_a_part_of_a_committed_checkpoint_is_published_by_the_restart(tmp_path: Path) -> None:
    first = writer_in(tmp_path)
    first.write_items([{"n": 1}], print)
    committed = first.snapshot_state()  # the crash comes after the commit, before the rename
    assert not (tmp_path / "part-0.jsonl").exists()
    again = writer_in(tmp_path)
    again.restore_state(committed)
    assert published(tmp_path, jsonl_numbers) == [1]
    again.restore_state(committed)  # once more (a crash right after): nothing changes
    assert published(tmp_path, jsonl_numbers) == [1]


def test_a_missing_part_of_a_committed_checkpoint_is_a_state_error(tmp_path: Path) -> None:
    first = writer_in(tmp_path)
    first.write_items([{"n": 1}], print)
    committed = first.snapshot_state()
    (tmp_path / ".part-0.jsonl.pending").unlink()
    with pytest.raises(nanostream.StateError, match=r"part-0\.jsonl.*drop_state=True"):
        writer_in(tmp_path).restore_state(committed)


def test_without_checkpoints_an_exactly_once_writer_is_refused(tmp_path: Path) -> None:
    writer = JSONLinesWriter(str(tmp_path / "p-{part}.jsonl"), exactly_once=True, name="out")
    Numbered(3) > writer
    with pytest.raises(nanostream.GraphError, match=r"'out' writes exactly once.*state="):
        writer.global_start()


@pytest.mark.parametrize(
    ("path", "options", "message"),
    [
        ("rows.jsonl", {}, r"needs a '\{part\}' field in path"),
        ("p-{part}.jsonl", {"rotate_items": 2}, "drop append= and rotate_items="),
        ("p-{part}.jsonl", {"append": True}, "drop append= and rotate_items="),
        ("p-{part}.jsonl", {"exactly_once": "yes"}, "must be true or false"),
    ],
)
def test_an_exactly_once_writer_that_cannot_publish_parts_is_refused(
    tmp_path: Path, path: str, options: dict[str, Any], message: str
) -> None:
    where = path if "://" in path else str(tmp_path / path)
    options = {"exactly_once": True, **options}
    with pytest.raises(nanostream.GraphError, match=message):
        CSVWriter(where, name="out", **options)


def test_a_writer_without_exactly_once_is_refused_in_a_run_with_state(tmp_path: Path) -> None:
    writer = JSONLinesWriter(str(tmp_path / "rows.jsonl"), name="out")
    Numbered(3) > writer
    with pytest.raises(nanostream.GraphError, match=r"'out' .* only with exactly_once=True"):
        writer.global_start(state=str(tmp_path / "run.state"))
