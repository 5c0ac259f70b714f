"""The engine's per-item loops: the compiled ones and their Python twins behave the same."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanostream._core import fast

try:
    from nanostream import _speedups
except ImportError:  # pragma: no cover - a build without a C compiler
    _speedups = None  # type: ignore[assignment]

IMPLS: list[Any] = [pytest.param("python", id="python")]
if _speedups is not None:
    IMPLS.append(pytest.param("c", id="c"))


def impl(kind: str) -> Any:
    """A namespace with the compiled loops (checked_outp, drive, drive_source, drive_acked,
    typed_rows, call_rows) of one implementation."""

    class Impl:
        if kind == "c":
            checked_outp = staticmethod(_speedups.CheckedOutp)
            drive = staticmethod(_speedups.drive)
            drive_source = staticmethod(_speedups.drive_source)
            drive_acked = staticmethod(_speedups.drive_acked)
            typed_rows = staticmethod(_speedups.typed_rows)
            call_rows = staticmethod(_speedups.call_rows)
        else:
            checked_outp = staticmethod(fast.py_checked_outp)
            drive = staticmethod(fast.py_drive)
            drive_source = staticmethod(fast.py_drive_source)
            drive_acked = staticmethod(fast.py_drive_acked)
            typed_rows = staticmethod(fast.py_typed_rows)
            call_rows = staticmethod(fast.py_call_rows)

    return Impl


@pytest.fixture(params=IMPLS)
def loops(request: pytest.FixtureRequest) -> Any:
    return impl(request.param)


def test_the_compiled_loops_are_built_in_ci() -> None:
    # CI's second pass installs with a C compiler: a build that silently fell back must not
    # pass unseen. (.ci/run sets the variable; a local build may lack a compiler.)
    if os.environ.get("NANOSTREAM_REQUIRE_SPEEDUPS") != "1":
        pytest.skip("checked where NANOSTREAM_REQUIRE_SPEEDUPS=1 (CI, with a C compiler)")
    assert _speedups is not None
    assert fast.SPEEDUPS


@pytest.mark.parametrize(
    "stale",
    [
        "del module.typed_rows",  # built before typed_rows
        "del module.call_rows",  # built before call_rows
    ],
)
def test_a_compiled_module_built_from_an_older_source_is_taken_as_not_built(
    stale: str,
) -> None:
    code = textwrap.dedent(
        f"""
        import sys, types
        module = types.ModuleType("nanostream._speedups")
        names = ("CheckedOutp", "drive", "drive_source", "drive_acked", "typed_rows", "call_rows")
        for name in names:
            setattr(module, name, lambda *args: None)
        {stale}
        sys.modules["nanostream._speedups"] = module
        from nanostream._core import fast
        print(fast.SPEEDUPS, fast.call_rows is fast.py_call_rows)
        """
    )
    env = dict(os.environ)
    env.pop("NANOSTREAM_PURE_PYTHON", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_the_environment_variable_chooses_the_python_loops() -> None:
    code = textwrap.dedent(
        """
        import nanostream
        from nanostream._core import fast
        from nanostream.testing import Collect

        class Double(nanostream.NanoNode):
            def process_item(self, item):
                yield item * 2

        def numbers(inp, outp):
            for i in range(1000):
                outp(i)

        sink = Collect()
        nanostream.as_node(numbers) > Double() > sink
        sink.global_start()
        assert sink.items == [2 * i for i in range(1000)], sink.items[:5]
        print(fast.SPEEDUPS, fast.drive.__module__)
        """
    )
    env = dict(os.environ, NANOSTREAM_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "nanostream._core.fast"]


PURE_PYTHON_SUITE = [
    "tests/core/test_node.py",
    "tests/core/test_run.py",
    "tests/core/test_acks.py",
    "tests/core/test_ticks.py",
    "tests/core/test_node_control.py",
]


@pytest.mark.skipif(_speedups is None, reason="the Python loops are what runs everywhere here")
def test_the_engine_tests_pass_on_the_python_loops() -> None:
    # The rest of the suite runs on the compiled loops; these engine tests (threads and
    # cooperative runners) run again on the Python twins, as a build without a compiler has.
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, NANOSTREAM_PURE_PYTHON="1", NANOSTREAM_TEST_RAY="0")
    env.pop("NANOSTREAM_REQUIRE_SPEEDUPS", None)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", *PURE_PYTHON_SUITE],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " passed" in out.stdout


# ----------------------------------------------------------------------- checked_outp
def sending_outp(loops: Any, limit: int) -> tuple[Any, list[Any], list[list[Any]]]:
    """A checked outp whose flush moves the buffer to ``sent``; (outp, buf, sent)."""
    buf: list[Any] = []
    sent: list[list[Any]] = []

    def flush() -> None:
        sent.append(buf[:])
        buf.clear()

    return loops.checked_outp(buf, [limit], flush), buf, sent


def test_outp_flushes_when_the_buffer_reaches_the_limit(loops: Any) -> None:
    outp, buf, sent = sending_outp(loops, 3)
    for i in range(7):
        outp(i)
    assert sent == [[0, 1, 2], [3, 4, 5]]
    assert buf == [6]


def test_outp_reads_the_limit_at_every_call(loops: Any) -> None:
    buf: list[Any] = []
    limit = [100]
    flushes: list[int] = []

    def flush() -> None:
        flushes.append(len(buf))
        buf.clear()

    outp = loops.checked_outp(buf, limit, flush)
    outp("a")
    outp("b")
    limit[0] = 1  # e.g. a consumer ran dry: send at the next item
    outp("c")
    assert flushes == [3]
    limit[0] = 0  # e.g. the run stops: every call flushes
    outp("d")
    assert flushes == [3, 1]


def test_outp_passes_on_what_flush_raises(loops: Any) -> None:
    buf: list[Any] = []

    def flush() -> None:
        raise KeyError("stop here")

    outp = loops.checked_outp(buf, [1], flush)
    with pytest.raises(KeyError, match="stop here"):
        outp(1)
    assert buf == [1]  # the item was taken before the flush failed


def test_outp_carries_an_extend_attribute(loops: Any) -> None:
    outp = loops.checked_outp([], [2], lambda: None)
    outp.extend = "anything"
    assert outp.extend == "anything"


def test_outp_takes_one_item(loops: Any) -> None:
    outp = loops.checked_outp([], [2], lambda: None)
    with pytest.raises(TypeError):
        outp()
    with pytest.raises(TypeError):
        outp(1, 2)


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
def test_compiled_outp_checks_its_arguments() -> None:
    with pytest.raises(TypeError):
        _speedups.CheckedOutp((), [1], print)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one-item list"):
        _speedups.CheckedOutp([], [], print)
    with pytest.raises(TypeError, match="callable"):
        _speedups.CheckedOutp([], [1], 3)  # type: ignore[arg-type]
    limit = [1]
    outp = _speedups.CheckedOutp([], limit, print)
    limit[0] = "x"  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        outp(1)


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
def test_compiled_outp_in_a_reference_cycle_is_collected() -> None:
    class Owner:
        outp: Any = None

        def flush(self) -> None:
            pass

    owner = Owner()
    owner.outp = _speedups.CheckedOutp([], [5], owner.flush)  # owner -> outp -> owner
    collected: list[bool] = []
    weakref.finalize(owner, collected.append, True)
    del owner
    gc.collect()
    assert collected == [True]


# ----------------------------------------------------------------------- drive
@given(st.lists(st.lists(st.integers(), max_size=4), max_size=30))
def test_drive_matches_the_nested_loops(batches: list[list[int]]) -> None:
    # Item i of the input yields the list batches[i].
    for kind in ("python", "c") if _speedups is not None else ("python",):
        out: list[int] = []
        impl(kind).drive(range(len(batches)), lambda i: iter(batches[i]), out.append)
        assert out == [x for b in batches for x in b]


def test_drive_uses_a_checked_outp_like_any_callable(loops: Any) -> None:
    outp, _, sent = sending_outp(loops, 2)

    def twice(x: int) -> Iterator[int]:
        yield x
        yield x

    loops.drive([1, 2, 3], twice, outp)
    assert sent == [[1, 1], [2, 2], [3, 3]]


def test_drive_ignores_a_generator_return_value(loops: Any) -> None:
    def gen(x: int) -> Iterator[int]:
        yield x
        return "done"  # type: ignore[misc]  # a StopIteration carrying a value

    out: list[int] = []
    loops.drive([1, 2], gen, out.append)
    assert out == [1, 2]


def test_drive_closes_the_generator_when_outp_raises(loops: Any) -> None:
    closed: list[int] = []

    def gen(x: int) -> Iterator[int]:
        try:
            yield x
            yield x + 1
        finally:
            closed.append(x)

    def outp(item: int) -> None:
        if item == 3:
            raise ValueError("no 3")

    with pytest.raises(ValueError, match="no 3"):
        loops.drive([1, 3, 5], gen, outp)
    assert closed == [1, 3]


def test_drive_passes_on_errors_of_each_part(loops: Any) -> None:
    def bad_inp() -> Iterator[int]:
        yield 1
        raise OSError("input broke")

    out: list[int] = []
    with pytest.raises(OSError, match="input broke"):
        loops.drive(bad_inp(), lambda x: [x], out.append)
    assert out == [1]

    def process(x: int) -> Iterator[int]:
        raise ZeroDivisionError(x)

    with pytest.raises(ZeroDivisionError):
        loops.drive([1], process, out.append)
    with pytest.raises(TypeError, match="not iterable"):
        loops.drive([1], lambda x: None, out.append)
    with pytest.raises(TypeError, match="not iterable"):
        loops.drive(5, lambda x: [x], out.append)


def test_drive_returns_none_and_reads_lazily(loops: Any) -> None:
    seen: list[int] = []

    def inp() -> Iterator[int]:
        for i in range(3):
            seen.append(i)
            yield i

    out: list[tuple[int, list[int]]] = []
    assert loops.drive(inp(), lambda x: [x], lambda y: out.append((y, seen[:]))) is None
    assert out == [(0, [0]), (1, [0, 1]), (2, [0, 1, 2])]


# ----------------------------------------------------------------------- drive_source
class Special:
    def __init__(self, value: int) -> None:
        self.value = value


class SubSpecial(Special):
    pass


def test_drive_source_sends_special_items_aside(loops: Any) -> None:
    out: list[Any] = []
    aside: list[int] = []
    items = [1, Special(2), 3, SubSpecial(4)]
    loops.drive_source(items, out.append, Special, lambda s: aside.append(s.value))
    assert aside == [2]  # by exact type, as type(item) is Special
    assert out[:2] == [1, 3]
    assert type(out[2]) is SubSpecial


def test_drive_source_passes_on_errors(loops: Any) -> None:
    def special(item: Any) -> None:
        raise RuntimeError("special failed")

    def outp(item: Any) -> None:
        if item == 2:
            raise LookupError("outp failed")

    with pytest.raises(RuntimeError, match="special failed"):
        loops.drive_source([Special(1)], print, Special, special)
    with pytest.raises(LookupError, match="outp failed"):
        loops.drive_source([1, 2, 3], outp, Special, special)

    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("source broke")

    with pytest.raises(ValueError, match="source broke"):
        loops.drive_source(broken(), lambda x: None, Special, special)


# ----------------------------------------------------------------------- drive_acked
class Pair(tuple[Any, Any]):
    """An acked pair, as ``Acked`` is: a tuple of exactly this type."""


def test_drive_acked_attaches_each_ack_after_its_item(loops: Any) -> None:
    out: list[Any] = []
    log: list[Any] = []
    buf: list[Any] = [None]  # a buffer that holds an item: no mark
    firsts: list[int] = []

    def first_ack() -> Any:
        firsts.append(1)
        return lambda ack: log.append(("ack", ack, list(out)))

    items = [1, Pair((2, "a")), 3, Pair((4, "b")), (5, "c")]
    loops.drive_acked(items, out.append, Pair, first_ack, [buf], lambda: log.append("mark"))
    assert out == [1, 2, 3, 4, (5, "c")]  # a plain tuple is an item like any other
    assert log == [("ack", "a", [1, 2]), ("ack", "b", [1, 2, 3, 4])]
    assert firsts == [1]  # asked once, at the first pair
    buf.clear()  # the item went out with its batch: a mark follows its ack
    log.clear()
    mark = lambda: log.append("mark")  # noqa: E731
    loops.drive_acked([Pair((6, "d"))], out.append, Pair, first_ack, [[0], buf], mark)
    assert log == [("ack", "d", [1, 2, 3, 4, (5, "c"), 6]), "mark"] and len(firsts) == 2


def test_drive_acked_attaches_the_ack_when_emitting_raises(loops: Any) -> None:
    acks: list[str] = []

    def outp(item: Any) -> None:
        raise LookupError("stopped after the send")

    with pytest.raises(LookupError, match="stopped after the send"):
        loops.drive_acked([Pair((1, "a"))], outp, Pair, lambda: acks.append, [[]], list)
    assert acks == ["a"]

    def failing_first() -> Any:
        raise RuntimeError("attach failed")

    with pytest.raises(RuntimeError, match="attach failed"):
        loops.drive_acked([Pair((1, "a"))], print, Pair, failing_first, [[]], list)


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
@pytest.mark.parametrize(
    ("func", "args"),
    [
        ("drive", ([], print)),
        ("drive_source", ([], print, int)),
    ],
)
def test_compiled_loops_check_their_argument_count(func: str, args: tuple[Any, ...]) -> None:
    call: Callable[..., Any] = getattr(_speedups, func)
    with pytest.raises(TypeError, match="takes"):
        call(*args)


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
@pytest.mark.parametrize(
    "case", ["ok", "bound", "outp fails", "process fails", "not iterable", "checked", "source"]
)
def test_compiled_loops_keep_reference_counts(case: str) -> None:
    class Obj:
        def process_item(self, x: Any) -> Iterator[Any]:
            yield out

    item, out, node = Obj(), Obj(), Obj()
    sink: list[Any] = []

    def process(x: Any) -> Iterator[Any]:
        yield out
        yield out

    def failing(x: Any) -> None:
        raise ValueError(x)

    checked = _speedups.CheckedOutp(sink, [2], sink.clear)
    items = [item] * 3
    calls: dict[str, Callable[[], Any]] = {
        "ok": lambda: _speedups.drive(items, process, sink.append),
        "bound": lambda: _speedups.drive(items, node.process_item, sink.append),
        "outp fails": lambda: _speedups.drive(items, process, failing),
        "process fails": lambda: _speedups.drive(items, failing, sink.append),
        "not iterable": lambda: _speedups.drive(items, lambda x: 5, sink.append),
        "checked": lambda: _speedups.drive(items, process, checked),
        "source": lambda: _speedups.drive_source([*items, out], sink.append, Obj, failing),
    }

    def counts() -> tuple[int, ...]:
        gc.collect()
        return tuple(sys.getrefcount(x) for x in (item, out, process, node))

    before = counts()
    for _ in range(100):
        try:
            calls[case]()
        except (ValueError, TypeError):
            pass
        sink.clear()
    assert counts() == before


# ----------------------------------------------------------------------- rows
class Row(NamedTuple):
    a: Any
    b: Any = None


class Wide(tuple):  # type: ignore[type-arg]  # a tuple subclass with an instance dict
    pass


# ----------------------------------------------------------------------- typed_rows
KINDS = (bytes, type(None))


@given(
    st.lists(
        st.tuples(
            st.binary() | st.none() | st.text() | st.integers(),
            st.binary() | st.none() | st.text(),
        ),
        max_size=20,
    ),
    st.booleans(),
)
def test_typed_rows_say_whether_every_row_has_fields_of_the_types(
    rows: list[tuple[Any, Any]], as_rows: bool
) -> None:
    items: list[Any] = [Row(a, b) for a, b in rows] if as_rows else list(rows)
    both = all(type(a) in KINDS and type(b) in KINDS for a, b in rows)
    second = all(type(b) in KINDS for _, b in rows)
    for kind in ("python", "c") if _speedups is not None else ("python",):
        # (no rows at all: true whatever the class)
        assert impl(kind).typed_rows(items, Row, (0, 1), KINDS) is (both and (as_rows or not rows))
        assert impl(kind).typed_rows(items, tuple, (1,), KINDS) is (
            second and (not as_rows or not rows)
        )


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], True),
        ([Row(b"k", None)], True),
        ([Row(b"k", b"v"), Row(b"k", bytearray(b"v"))], False),  # not exactly bytes
        ([Row(b"k", b"v"), (b"k", b"v")], False),  # a plain tuple among the rows
        ([Row(b"k", b"v"), Wide((b"k", b"v"))], False),  # another tuple type
    ],
)
def test_typed_rows_take_exact_types_only(loops: Any, items: list[Any], expected: bool) -> None:
    assert loops.typed_rows(items, Row, (0, 1), KINDS) is expected


def test_typed_rows_find_a_row_too_short_for_a_field(loops: Any) -> None:
    assert loops.typed_rows([(b"k", b"v"), (b"k",)], tuple, (1,), KINDS) is False
    assert loops.typed_rows([(b"k", b"v")], tuple, (), KINDS) is True  # no field to look at


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (((Row(1, 2),), Row, (0,), KINDS), TypeError),  # items not a list
        (([], list, (0,), KINDS), TypeError),  # not a tuple type
        (([], Row, [0], KINDS), TypeError),  # fields not a tuple
        (([], Row, (0,), [bytes]), TypeError),  # types not a tuple
        (([], Row, (-1,), KINDS), ValueError),  # not an index
        (([], Row, tuple(range(9)), KINDS), ValueError),  # more fields than it looks at
    ],
)
def test_typed_rows_refuse_what_they_cannot_look_at(
    loops: Any, args: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error, match="typed_rows"):
        loops.typed_rows(*args)


# ----------------------------------------------------------------------- call_rows
class Message:
    """Like a Kafka client's message: its fields are read by calling methods."""

    def __init__(self, n: int, headers: Any, stamp: Any) -> None:
        self.n, self._headers, self._stamp = n, headers, stamp

    def number(self) -> int:
        return self.n

    def headers(self) -> Any:
        return self._headers

    def stamp(self) -> Any:
        return self._stamp


FIELDS = (
    (fast.CONST, "orders"),
    (fast.CALL, Message.number),
    (fast.TUPLE, Message.headers),
    (fast.SECOND, Message.stamp),
)


@given(
    st.lists(
        st.tuples(
            st.integers(),
            st.none() | st.lists(st.tuples(st.text(), st.binary() | st.none()), max_size=3),
            st.tuples(st.integers(0, 2), st.integers(-2, 2) | st.integers() | st.none()),
        ),
        max_size=20,
    )
)
def test_call_rows_make_each_field_as_its_kind_says(rows: list[tuple[Any, Any, Any]]) -> None:
    messages = [Message(*row) for row in rows]
    expected = [
        ("orders", n, tuple(headers or ()), None if stamp[1] == -1 else stamp[1])
        for n, headers, stamp in rows
    ]
    for kind in ("python", "c") if _speedups is not None else ("python",):
        made = impl(kind).call_rows(Row4, messages, FIELDS, True)
        assert made == expected
        assert all(type(row) is Row4 for row in made)
        assert impl(kind).call_rows(tuple, messages, FIELDS) == expected


class Row4(NamedTuple):
    topic: str
    n: int
    headers: tuple[Any, ...]
    stamp: Any


def test_call_rows_keep_a_tuple_and_take_any_iterable_as_a_tuple(loops: Any) -> None:
    held = (("a", b"1"),)
    made = loops.call_rows(tuple, [held, iter([1, 2])], ((fast.TUPLE, lambda x: x),))
    assert made == [(held,), ((1, 2),)]
    assert made[0][0] is held


def test_call_rows_pass_on_what_a_function_raises(loops: Any) -> None:
    def failing(message: Message) -> int:
        if message.n == 2:
            raise ValueError("cannot decode 2")
        return message.n

    messages = [Message(n, None, (0, n)) for n in range(4)]
    with pytest.raises(ValueError, match="cannot decode 2"):
        loops.call_rows(Row, messages, ((fast.CALL, failing), (fast.SECOND, Message.stamp)))


def test_call_rows_read_the_list_as_it_was_when_called(loops: Any) -> None:
    objs = [1, 2, 3]
    made = loops.call_rows(tuple, objs, ((fast.CALL, lambda x: objs.clear() or x),))
    assert made == [(1,), (2,), (3,)]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((list, [], ()), TypeError),  # not a tuple type
        ((Row, (1,), ()), TypeError),  # objs not a list
        ((Row, [], [(fast.CALL, str)]), TypeError),  # fields not a tuple
        ((Row, [], ((7, str),)), ValueError),  # no such kind
        ((Row, [], ((fast.CALL, "text"),)), ValueError),  # not a function
        ((Row, [], (fast.CALL, str)), ValueError),  # not a pair
        ((Row, [], ((fast.CONST, 1),) * 17), ValueError),  # too many fields
        ((Row, [1], ((fast.SECOND, str),)), TypeError),  # not a pair returned
    ],
)
def test_call_rows_refuse_what_they_cannot_make(
    loops: Any, args: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error, match="call_rows"):
        loops.call_rows(*args)


def rows_of(cls: type, *columns: list[Any], lasting: bool = False) -> list[Any]:
    """The compiled call_rows of ``columns``, each field read from the column's item."""
    fields = tuple((fast.CALL, itemgetter(j)) for j in range(len(columns)))
    return _speedups.call_rows(cls, list(zip(*columns, strict=True)), fields, lasting)


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
def test_compiled_call_rows_leave_rows_of_plain_values_untracked() -> None:
    # As the collector does with a plain tuple: a row that holds only objects it does not
    # track (and tuples of them, such as a record's headers) is not tracked; a row that
    # holds a mutable container, or of a tuple type with an instance dict, is.
    messages = [Message(1, [("name", b"value")], (0, 5)), Message(2, [[1]], (0, 6))]
    plain, held = _speedups.call_rows(Row4, messages, FIELDS, True)
    assert not gc.is_tracked(plain) and not gc.is_tracked(plain.headers)
    assert not gc.is_tracked(plain.headers[0])
    assert gc.is_tracked(held)  # its headers hold a list
    pair = tuple(["name", b"value"])  # made at run time: tracked until looked at
    assert gc.is_tracked(pair)
    assert not any(map(gc.is_tracked, rows_of(Row, [1], [(pair,)], lasting=True)))
    assert not gc.is_tracked(pair)
    held_rows = rows_of(Row, [1, 2, 3], [{"k": 1}, [1], (b"x", [2])], lasting=True)
    assert all(map(gc.is_tracked, held_rows))
    assert all(map(gc.is_tracked, rows_of(Wide, [1], [b"x"], lasting=True)))
    assert not any(map(gc.is_tracked, rows_of(tuple, [1], [b"x"])))
    # Without the caller's word that the class lasts, its rows stay tracked (see below).
    assert all(gc.is_tracked(row) for row in _speedups.call_rows(Row4, messages[:1], FIELDS))


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
def test_compiled_call_rows_leave_a_class_made_at_run_time_collectable() -> None:
    # A row refers to its class (a heap type), and the class may refer back to the row:
    # were the row untracked, the collector would not see its reference to the class and
    # would take the class for one held from outside, so the cycle would never be freed.
    def cycle() -> weakref.ref[type]:
        point = namedtuple("point", "x y")
        (row,) = rows_of(point, [1], [b"y"])
        point.origin = row  # type: ignore[attr-defined]
        return weakref.ref(point)

    ref = cycle()
    gc.collect()
    assert ref() is None


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
def test_an_untracked_row_in_a_cycle_through_a_container_is_still_freed() -> None:
    # A row is untracked only when nothing in it can refer back to it: a row holding a
    # list stays tracked, so a cycle through that list is collected.
    class Holder(list):  # type: ignore[type-arg]  # a list that takes a weak reference
        pass

    holder = Holder()
    (row,) = rows_of(Row, [holder], [None], lasting=True)
    holder.append(row)
    freed: list[bool] = []
    weakref.finalize(holder, freed.append, True)
    del holder, row
    gc.collect()
    assert freed == [True]


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
def test_compiled_call_rows_keep_reference_counts() -> None:
    value = b"v" * 100
    pair = (0, value)
    messages = [Message(1, [("h", value)], pair), Message(2, None, pair)]

    def failing(message: Message) -> int:
        if message.n == 2:
            raise ValueError(message.n)
        return message.n

    held = [value, value]  # what a function returns, where each kind has an error path
    single = (value,)
    failures = [
        ((fast.CONST, value), (fast.CALL, failing)),  # a function raises, a field made
        ((fast.TUPLE, lambda m: held), (fast.SECOND, lambda m: single)),  # not a pair
        ((fast.CALL, lambda m: value), (fast.SECOND, lambda m: held if m.n == 2 else pair)),
        ((fast.CALL, lambda m: held), (fast.TUPLE, lambda m: 5)),  # not a sequence
    ]

    def counts() -> tuple[int, ...]:
        gc.collect()
        return tuple(sys.getrefcount(x) for x in (value, pair, held, single, Row4, *messages))

    before = counts()
    for _ in range(100):
        rows = _speedups.call_rows(Row4, messages, FIELDS, True)
        rows += _speedups.call_rows(tuple, messages, ((fast.TUPLE, lambda m: held),) * 3)
        rows += _speedups.call_rows(tuple, messages, ((fast.SECOND, lambda m: (0, -1)),))
        del rows
        for fields in failures:
            with pytest.raises((ValueError, TypeError)):
                _speedups.call_rows(Row4, messages, fields)
    assert counts() == before


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
def test_compiled_call_rows_show_their_functions_only_whole_rows() -> None:
    # A function of a field is Python code, which may look at every object the collector
    # tracks: a row whose items are not all set must not be among them.
    seen: list[int] = []

    def look(message: Message) -> int:
        seen.append(sum(type(o) is Row4 for o in gc.get_objects()))
        return message.n

    fields = ((fast.CONST, "t"), (fast.CALL, look), (fast.TUPLE, Message.headers), FIELDS[3])
    before = sum(type(o) is Row4 for o in gc.get_objects())
    rows = _speedups.call_rows(Row4, [Message(n, None, (0, n)) for n in range(3)], fields)
    assert [row.n for row in rows] == [0, 1, 2]
    assert seen == [before, before + 1, before + 2]  # the rows made before, no more


class _Pair(tuple):  # type: ignore[type-arg]
    """A tuple whose len() and [] say other than what it holds."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: Any) -> Any:
        return "other"


_KINDS = st.sampled_from([0, 1, 2, 3, -1, 4, 1.0, 2.0, True, "1", 2**70, None])
_MADE = st.sampled_from(
    [None, (), (1,), (1, 2), (0, -1), (0, -1.0), (0, 2**70), [1, 2], "ab", 5, _Pair((0, 1))]
)


@pytest.mark.skipif(_speedups is None, reason="the compiled module is not built")
@given(st.lists(st.tuples(_KINDS, _MADE), max_size=4), st.booleans())
def test_compiled_and_python_call_rows_agree_on_any_fields(
    fields: list[tuple[Any, Any]], constant: bool
) -> None:
    # The same rows, or the same error, from the same fields: whatever their kinds (the
    # kind an exact int) and whatever their functions return.
    spec = tuple(
        (kind, made if constant and kind == fast.CONST else (lambda _obj, made=made: made))
        for kind, made in fields
    )

    def outcome(call_rows: Any) -> Any:
        try:
            return call_rows(tuple, [1, 2], spec, True)
        except Exception as exc:  # (compared as type and message)
            return type(exc), str(exc)

    assert outcome(_speedups.call_rows) == outcome(fast.py_call_rows)
