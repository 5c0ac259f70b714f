"""Error policies and acknowledgements through the operators (nanostream.operators._operator).

The oracle for error policies: skipping an item must look exactly like the item never
having been in the input, and a retried flaky item like a call that never failed.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.nodes import (
    Aggregate,
    Batch,
    Dedupe,
    Delay,
    Filter,
    FlatMap,
    Inspect,
    IntervalJoin,
    Join,
    JoinResult,
    KeyBy,
    Map,
    Merge,
    Parallel,
    Reduce,
    Router,
    Sample,
    SessionWindow,
    SlidingWindow,
    Tagged,
    Take,
    Throttle,
    TumblingWindow,
    Unbatch,
    WindowResult,
)
from nanostream.testing import Collect
from support import FlagSink

WAIT = 10.0

ITEMS = [0, 1, 2, 3, 7, 8, 9, 14, 15, 16, 21, 22, 23, 29, 30, 36, 37]
BAD = {3, 15, 29}  # every call with these fails
FLAKY = {1, 8, 22, 36}  # the first call with these fails


class Fails:
    """A user function that raises on ``bad`` items and on the first call with ``flaky`` ones.

    The item is the function's last argument (``reduce(acc, item)`` too).
    """

    def __init__(
        self, func: Callable[..., Any], bad: Iterable[int] = (), flaky: Iterable[int] = ()
    ) -> None:
        self.func = func
        self.bad = set(bad)
        self.flaky = set(flaky)
        self.tried: set[int] = set()
        self.__name__ = getattr(func, "__name__", "fails")

    def __call__(self, *args: Any) -> Any:
        item = args[-1]
        if item in self.bad:
            raise ValueError(f"bad item {item}")
        if item in self.flaky and item not in self.tried:
            self.tried.add(item)
            raise ConnectionError(f"flaky item {item}")
        return self.func(*args)


def ident(x: Any) -> Any:
    return x


def add(acc: int, x: int) -> int:
    return acc + x


def left(x: Any) -> Tagged:
    return Tagged("left", x)


def side_of(x: int) -> str:
    return "left" if x % 2 == 0 else "right"


# name -> (make the node from the user function, items to feed it, the function)
Make = Callable[[Callable[..., Any]], nanostream.NanoNode]
CASES: dict[str, tuple[Make, Callable[[list[int]], list[Any]], Callable[..., Any]]] = {
    "Map": (Map, list, lambda x: x * 10),
    "FlatMap": (FlatMap, list, lambda x: [x, -x]),
    "Filter": (Filter, list, lambda x: x % 2 == 0),
    "Inspect": (Inspect, list, lambda x: None),
    "KeyBy": (KeyBy, list, lambda x: x % 3),
    "Map-workers": (lambda f: Map(f, workers=3, max_in_flight=4), list, lambda x: x * 10),
    "FlatMap-workers-unordered": (
        lambda f: FlatMap(f, workers=3, ordered=False),
        list,
        lambda x: [x, x],
    ),
    "Router": (Router, list, lambda x: "out" if x % 3 else None),
    "Tumbling-timestamp": (lambda f: TumblingWindow(10, timestamp=f), list, ident),
    "Tumbling-key": (
        lambda f: TumblingWindow(10, timestamp=ident, key=f),
        list,
        lambda x: x % 2,
    ),
    "Tumbling-reduce": (
        lambda f: TumblingWindow(10, timestamp=ident, reduce=f, initial=0),
        list,
        add,
    ),
    "Tumbling-processing-key": (
        lambda f: TumblingWindow(1000, key=f, clock=lambda: 5.0),
        list,
        lambda x: x % 2,
    ),
    "Sliding-reduce": (
        lambda f: SlidingWindow(10, 5, timestamp=ident, reduce=f, initial=0),
        list,
        add,
    ),
    "Sliding-key": (lambda f: SlidingWindow(10, 5, timestamp=ident, key=f), list, ident),
    "Session-timestamp": (lambda f: SessionWindow(3, timestamp=f), list, ident),
    "Session-key": (
        lambda f: SessionWindow(3, timestamp=ident, key=f, reduce=add, initial=0),
        list,
        lambda x: x % 2,
    ),
    "Reduce": (Reduce, list, add),
    "Reduce-end-keyed": (lambda f: Reduce(f, key=lambda x: x % 3, emit="end"), list, add),
    "Aggregate": (
        lambda f: Aggregate(create=lambda: 0, add=f, result=str, key=lambda x: x % 2),
        list,
        add,
    ),
    "Dedupe": (lambda f: Dedupe(key=f), list, lambda x: x % 7),
    "Join": (
        lambda f: Join(f, window=10, timestamp=ident, how="left"),
        lambda xs: [Tagged(side_of(x), x) for x in xs],
        lambda x: x % 3,
    ),
    "IntervalJoin": (
        lambda f: IntervalJoin(f, lower=-4, upper=4, timestamp=ident, how="left"),
        lambda xs: [Tagged(side_of(x), x) for x in xs],
        lambda x: x % 3,
    ),
}
UNORDERED = {"FlatMap-workers-unordered"}


def run_node(
    node: nanostream.NanoNode, items: list[Any], runner: str
) -> tuple[list[Any], list[nanostream.ErrorRecord], nanostream.Run]:
    """The outputs and error records of ``node`` over ``items``, and the finished run."""
    sink, dead = Collect(), Collect()
    nanostream.from_iterable(items) > node > sink
    node.errors > dead
    run = sink.global_start(block=False, runner=runner)
    assert run is not None and run.wait(WAIT)
    if run.failure is not None:
        raise run.failure
    return sink.items, dead.items, run


def cause_type(failed: nanostream.NodeFailed) -> str:
    """The class of a failed run's cause (the ray runner may bring it back as a stand-in)."""
    cause = failed.__cause__
    kind = type(cause)
    return str(getattr(cause, "type_name", f"{kind.__module__}.{kind.__qualname__}"))


def unwrap(item: Any) -> Any:
    return item.value if isinstance(item, Tagged) else item


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    ("policy", "attempts"),
    [({"on_error": "skip"}, 1), ({"on_error": "retry", "retries": 2, "backoff": 0}, 3)],
)
def test_a_failed_item_is_as_if_it_was_never_there(
    runner: str, case: str, policy: dict[str, Any], attempts: int
) -> None:
    make, feed, func = CASES[case]
    expected, _, _ = run_node(make(func), feed([x for x in ITEMS if x not in BAD]), runner)
    node = make(Fails(func, bad=BAD)).configure(name="op", **policy)
    got, errors, run = run_node(node, feed(ITEMS), runner)
    if case in UNORDERED:
        got, expected = sorted(got), sorted(expected)
    assert got == expected
    assert expected  # not vacuous
    assert [unwrap(r.item) for r in errors] == sorted(BAD)
    assert {(r.node, r.exception_type, r.attempt) for r in errors} == {
        ("op", "ValueError", attempts)
    }
    assert run.stats()["op"].errors == len(BAD)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_retried_flaky_item_is_as_if_it_never_failed(runner: str, case: str) -> None:
    make, feed, func = CASES[case]
    expected, _, _ = run_node(make(func), feed(ITEMS), runner)
    node = make(Fails(func, flaky=FLAKY)).configure(on_error="retry", retries=1, backoff=0)
    got, errors, _ = run_node(node, feed(ITEMS), runner)
    if case in UNORDERED:
        got, expected = sorted(got), sorted(expected)
    assert got == expected
    assert errors == []


@pytest.mark.parametrize("case", ["Map", "Map-workers", "Tumbling-key", "Join", "Reduce"])
def test_max_errors_fails_the_run(runner: str, case: str) -> None:
    make, feed, func = CASES[case]
    node = make(Fails(func, bad=BAD)).configure(name="op", on_error="skip", max_errors=2)
    with pytest.raises(nanostream.NodeFailed) as info:
        run_node(node, feed(ITEMS), runner)
    assert info.value.node == "op"
    assert cause_type(info.value) == "nanostream._core.errors.TooManyErrors"


@pytest.mark.parametrize("case", ["Map", "Map-workers", "Session-timestamp"])
def test_without_a_policy_the_first_failure_fails_the_run(runner: str, case: str) -> None:
    make, feed, func = CASES[case]
    with pytest.raises(nanostream.NodeFailed) as info:
        run_node(make(Fails(func, bad=BAD)).configure(name="op"), feed(ITEMS), runner)
    assert cause_type(info.value) == "builtins.ValueError"


# ----------------------------------------------------------------------------- workers
@pytest.mark.parametrize("ordered", [True, False])
def test_worker_attempts_time_out_and_are_skipped_in_place(runner: str, ordered: bool) -> None:
    def slow_on_5(x: int) -> int:
        if x == 5:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # Python code: the timeout interrupts it
                time.sleep(0.005)
        return x

    node = Map(slow_on_5, workers=4, ordered=ordered, name="op", timeout=0.2, on_error="skip")
    started = time.monotonic()
    got, errors, run = run_node(node, list(range(20)), runner)
    assert time.monotonic() - started < 30  # item 5's work was cut short
    assert (got if ordered else sorted(got)) == [x for x in range(20) if x != 5]
    assert [(r.item, r.exception_type) for r in errors] == [(5, "TimeoutError")]
    assert run.stats()["op"].errors == 1


class FlakyOn4:
    """Fails the first call with each multiple of 4; counts its calls in ``calls``.

    Read ``calls`` from the node's ``func`` after the run (on ray, the copy that ran
    comes back with the node's attributes).
    """

    __name__ = "flaky"

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}
        self.lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self.lock:
            self.calls[x] = self.calls.get(x, 0) + 1
            first = self.calls[x] == 1
        if x % 4 == 0 and first:
            raise ConnectionError(x)
        return x


def test_worker_retries_run_on_the_workers_while_others_go_on(runner: str) -> None:
    node = Map(FlakyOn4(), workers=3, on_error="retry", retries=1, backoff=0.001)
    got, errors, _ = run_node(node, list(range(40)), runner)
    assert got == list(range(40)) and errors == []
    flaky = node.func
    assert isinstance(flaky, FlakyOn4)
    assert {x: n for x, n in flaky.calls.items() if n > 1} == {x: 2 for x in range(0, 40, 4)}
    assert sorted(flaky.calls) == list(range(40))


def test_parallel_takes_the_policy_of_its_node(runner: str) -> None:
    class Parse(nanostream.NanoNode):
        def process_item(self, item: str) -> Iterator[int]:
            yield int(item)

    node = Parallel(Parse(on_error="skip"), workers=3, name="parse")
    got, errors, _ = run_node(node, ["1", "x", "3", "y", "5"], runner)
    assert got == [1, 3, 5]
    assert [r.item for r in errors] == ["x", "y"]
    strict = Parallel(Parse(on_error="skip"), workers=3, on_error="fail")
    with pytest.raises(nanostream.NodeFailed):
        run_node(strict, ["1", "x"], runner)


# ----------------------------------------------------------------------------- per window
def test_a_session_reduce_that_fails_drops_that_window(runner: str) -> None:
    def total(acc: int, x: int) -> int:
        if x == 9:
            raise ArithmeticError("cannot add 9")
        return acc + x

    node = SessionWindow(3, timestamp=ident, reduce=total, name="op", on_error="skip")
    got, errors, run = run_node(node, [0, 1, 2, 7, 8, 9, 20], runner)
    assert got == [WindowResult(None, 0, 5, 3), WindowResult(None, 20, 23, 20)]
    (record,) = errors
    assert record.item == WindowResult(None, 7, 12, [7, 8, 9])  # the window, its items
    assert record.exception_type == "ArithmeticError"
    assert run.stats()["op"].errors == 1


def test_an_aggregate_result_that_fails_at_the_end_drops_that_key(runner: str) -> None:
    def mean(acc: tuple[int, int]) -> float:
        return acc[1] / acc[0]

    node = Aggregate(
        create=lambda: (0, 0),
        add=lambda acc, x: (acc[0] + 1, acc[1] + x[1]),
        result=mean,
        key=lambda x: x[0],
        emit="end",
        on_error="skip",
    )
    got, errors, _ = run_node(node, [("a", 2), ("b", 1), ("a", 4)], runner)
    assert got == [("a", 3.0), ("b", 1.0)]
    assert errors == []
    zero = Aggregate(
        create=lambda: (0, 0), add=lambda acc, x: acc, result=mean, emit="end", on_error="skip"
    )
    got, errors, _ = run_node(zero, [("a", 2)], runner)
    assert got == []
    assert [(r.item, r.exception_type) for r in errors] == [((None, (0, 0)), "ZeroDivisionError")]


def test_unbatch_skips_an_item_that_is_not_iterable(runner: str) -> None:
    got, errors, _ = run_node(Unbatch(on_error="skip"), [[1, 2], 3, [4]], runner)
    assert got == [1, 2, 4]
    assert [(r.item, r.exception_type) for r in errors] == [(3, "TypeError")]


def test_router_with_declared_ports_may_link_its_errors_port(runner: str) -> None:
    router = Router(Fails(lambda x: "a", bad={2}), ports=("a",), on_error="skip")
    a, dead = Collect(), Collect()
    nanostream.from_iterable([1, 2, 3]) > router
    router["a"] > a
    router.errors > dead
    router.global_start(runner=runner)
    assert a.items == [1, 3]
    assert [r.item for r in dead.items] == [2]


@pytest.mark.parametrize(
    "node",
    [
        lambda: Batch(size=2, on_error="skip"),
        lambda: Take(2, max_errors=1),
        lambda: Sample(0.5, on_error="retry"),
        lambda: Throttle(10, timeout=1),
        lambda: Delay(0, on_error="skip"),
        lambda: TumblingWindow(1.0, on_error="skip"),
        lambda: Dedupe(on_error="skip"),
    ],
)
def test_a_policy_on_an_operator_without_user_code_is_refused(
    node: Callable[[], nanostream.NanoNode],
) -> None:
    op = node()
    nanostream.from_iterable([1]) > op > Collect()
    with pytest.raises(nanostream.GraphError, match="has nothing to apply to"):
        op.global_start()


def test_a_policy_on_merge_is_refused() -> None:
    merge = Merge(a=nanostream.from_iterable([1]))
    merge.configure(on_error="skip")
    merge > Collect()
    with pytest.raises(nanostream.GraphError, match="has nothing to apply to"):
        merge.global_start()


# ----------------------------------------------------------------------------- acks
class OutputsSink(Collect):
    """Collects, and first appends a line to ``path`` for each item it gets.

    :class:`AckedNumbers` counts those lines from the source's process (on ray, another
    one than the sink's).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(name="sink")
        self.path = str(path)

    def process_item(self, item: Any) -> Iterator[Any]:
        with open(self.path, "a") as f:
            f.write("output\n")
        yield from super().process_item(item)


def lines_in(path: str) -> int:
    return Path(path).read_text().count("\n") if Path(path).exists() else 0


class AckedNumbers(nanostream.NanoNode):
    """Emits ``Acked(i, ack)``; each ack notes how many outputs the sink had by then.

    With ``pause_after=n``, it waits after ``n`` items until ``acks_to_wait_for`` acks came
    (or ``WAIT`` passed) and notes in ``acked_while_paused`` how many had. The acks run in
    the source's process, so this works on ray too; ``acks`` come back with the node.
    """

    def __init__(
        self,
        items: Iterable[Any],
        outputs: Path,
        *,
        pause_after: int | None = None,
        acks_to_wait_for: int = 0,
    ) -> None:
        super().__init__(name="src", batch_size=1)
        self.items = list(items)
        self.outputs = str(outputs)
        self.pause_after = pause_after
        self.acks_to_wait_for = acks_to_wait_for
        self.acked_while_paused: int | None = None
        self.acks: list[tuple[Any, int]] = []  # (item, outputs in the sink when acked)
        self.lock = threading.Lock()

    def generator(self) -> Iterator[Any]:
        for i, item in enumerate(self.items):
            if i == self.pause_after:
                deadline = time.monotonic() + WAIT
                while len(self.acks) < self.acks_to_wait_for and time.monotonic() < deadline:
                    self.sleep(0.005)  # cooperative on the cooperative runner
                self.acked_while_paused = len(self.acks)
            yield nanostream.Acked(item, partial(self._ack, item))

    def _ack(self, item: Any) -> None:
        with self.lock:
            self.acks.append((item, lines_in(self.outputs)))


def contains(output: Any, item: Any) -> bool:
    """Whether ``output`` was derived from ``item`` (for the operators below)."""
    if isinstance(output, WindowResult):
        return item in output.value
    if isinstance(output, list):
        return item in output
    if isinstance(output, tuple) and len(output) == 3:  # JoinResult
        return item in (output.left, output.right)  # type: ignore[attr-defined]
    return bool(output == item)


STATEFUL: dict[str, Callable[[], nanostream.NanoNode]] = {
    "Batch": lambda: Batch(size=3),
    "Tumbling": lambda: TumblingWindow(4, timestamp=ident),
    "Sliding": lambda: SlidingWindow(4, 2, timestamp=ident),
    "Session": lambda: SessionWindow(2, timestamp=ident),
    "Tumbling-keyed-late": lambda: TumblingWindow(
        4, timestamp=ident, key=lambda x: x % 3, allowed_lateness=3
    ),
    "Reduce-end": lambda: Reduce(operator.add, emit="end", initial=0),
    "Map-workers": lambda: Map(ident, workers=3),
    "Map-workers-unordered": lambda: Map(ident, workers=3, ordered=False),
    "Join": lambda: Join(lambda x: x // 2 % 2, window=4, timestamp=ident, how="left"),
    "IntervalJoin": lambda: IntervalJoin(
        lambda x: x // 2 % 2, lower=-3, upper=3, timestamp=ident, how="left"
    ),
}


def stateful(case: str, src: nanostream.NanoNode) -> nanostream.NanoNode:
    """The stateful operator of ``case``, fed by ``src`` (tagged by side for a Join)."""
    feed = src
    if case in ("Join", "IntervalJoin"):
        feed = src > Map(lambda x: Tagged(side_of(x), x), name="tag")
    node: nanostream.NanoNode = STATEFUL[case]()
    return feed > node


@pytest.mark.parametrize("case", sorted(STATEFUL))
def test_acks_wait_for_the_derived_outputs(runner: str, case: str, tmp_path: Path) -> None:
    items = [0, 1, 3, 2, 5, 6, 9, 8, 12, 13, 14, 17, 21, 22]
    sink = OutputsSink(tmp_path / "outputs")
    src = AckedNumbers(items, tmp_path / "outputs")
    stateful(case, src) > sink
    sink.global_start(runner=runner)
    assert sorted(item for item, _ in src.acks) == sorted(items)  # all, once, by the end
    assert [item for item, _ in src.acks] == items  # in order
    for item, seen in src.acks:
        derived = [i for i, out in enumerate(sink.items) if contains(out, item)]
        if case == "Reduce-end":
            derived = [0]  # the total is derived from every item
        assert all(i < seen for i in derived), f"item {item} was acked early"


@pytest.mark.parametrize("case", ["Batch", "Tumbling", "Map-workers", "Join"])
def test_acks_come_while_the_stream_goes_on(runner: str, case: str, tmp_path: Path) -> None:
    items = list(range(12)) + list(range(100, 110))
    sink = OutputsSink(tmp_path / "outputs")
    src = AckedNumbers(items, tmp_path / "outputs", pause_after=12, acks_to_wait_for=6)
    stateful(case, src) > sink
    sink.global_start(runner=runner)
    # items 0..11 went out in batches of 3 / windows of 4 while the source waited
    assert src.acked_while_paused is not None and src.acked_while_paused >= 6
    assert [item for item, _ in src.acks] == items


def test_operators_declare_whether_they_hold_items() -> None:
    held = [
        Batch(size=2),
        TumblingWindow(1, timestamp=ident),
        SessionWindow(1),
        Reduce(add, emit="end"),
        Join(ident, window=1),
        Map(ident, workers=2),
        Parallel(Collect(), workers=2),
    ]
    passing = [
        Map(ident),
        Filter(ident),
        Reduce(add),
        Dedupe(),
        Take(1),
        Unbatch(),
        Router(ident),
        Merge(),
        Delay(0),
        Throttle(1),
        Sample(1),
    ]
    assert [n for n in held if n.items_held() is not True] == []
    assert [n for n in passing if n.items_held() is not False] == []


# ----------------------------------------------------------------------------- ticks
class Pausing(nanostream.NanoNode):
    """Emits ``first``, waits (cooperatively) until ``flag`` exists, emits ``then``.

    Its last item says whether the flag came ("saw it") or the wait timed out. The flag is
    a file, so it works across processes (the ray runner) too.
    """

    def __init__(self, flag: Path, first: list[Any], tag: Callable[[str], Any] = ident) -> None:
        super().__init__(name="src")
        self.flag, self.first, self.tag = str(flag), first, tag

    def generator(self) -> Iterator[Any]:
        yield from self.first
        saw = False
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not self.stop_requested:
            if Path(self.flag).exists():
                saw = True
                break
            self.sleep(0.005)
        yield self.tag("saw it" if saw else "timed out")


def run_paused(
    node: nanostream.NanoNode,
    first: list[Any],
    runner: str,
    flag: Path,
    tag: Callable[[str], Any] = ident,
) -> list[Any]:
    """What ``node`` emits for ``first`` while its source waits for that output, then the
    rest (the source's last item says whether it saw the output before its wait timed out)."""
    sink = FlagSink(flag, name="sink")
    Pausing(flag, first, tag) > node > sink
    sink.global_start(runner=runner)
    return sink.items


def test_a_batch_goes_out_at_its_timeout_on_an_idle_stream(runner: str, tmp_path: Path) -> None:
    batch = Batch(size=100, timeout=0.1)
    assert batch.ticks_every() == pytest.approx(0.025)
    assert run_paused(batch, [0, 1, 2], runner, tmp_path / "flag") == [[0, 1, 2], ["saw it"]]


def test_a_processing_time_window_closes_on_an_idle_stream(runner: str, tmp_path: Path) -> None:
    out = run_paused(TumblingWindow(0.1), ["a", "b", "c"], runner, tmp_path / "flag")
    first, last = out[:-1], out[-1]
    assert [x for w in first for x in w.value] == ["a", "b", "c"]  # one window or two
    assert last.value == ["saw it"]


def test_a_sliding_window_closes_on_an_idle_stream(runner: str, tmp_path: Path) -> None:
    out = run_paused(SlidingWindow(0.2, 0.1), [1, 2], runner, tmp_path / "flag")
    assert out[0].value in ([1, 2], [1])  # the first window to close holds 1 (and 2)
    values = [x for w in out for x in w.value]
    assert "saw it" in values and "timed out" not in values


def test_a_session_closes_after_its_gap_on_an_idle_stream(runner: str, tmp_path: Path) -> None:
    out = run_paused(SessionWindow(0.05), ["a", "b"], runner, tmp_path / "flag")
    assert [w.value for w in out] == [["a", "b"], ["saw it"]]


def test_a_left_join_emits_unmatched_items_on_an_idle_stream(runner: str, tmp_path: Path) -> None:
    join = Join(ident, window=0.05, how="left")
    out = run_paused(join, [Tagged("left", "a")], runner, tmp_path / "flag", left)
    assert out == [JoinResult("a", "a", None), JoinResult("saw it", "saw it", None)]


def test_a_worker_pool_emits_completed_results_on_an_idle_stream(
    runner: str, tmp_path: Path
) -> None:
    pool = Map(str.upper, workers=3)
    assert run_paused(pool, ["a", "b", "c"], runner, tmp_path / "flag") == [
        "A",
        "B",
        "C",
        "SAW IT",
    ]


def test_no_ticks_with_a_test_clock_or_in_event_time() -> None:
    assert Batch(timeout=1.0, clock=lambda: 0.0).ticks_every() is None
    assert Batch(size=3).ticks_every() is None
    assert TumblingWindow(1.0, timestamp=ident).ticks_every() is None
    assert TumblingWindow(1.0, clock=lambda: 0.0).ticks_every() is None
    assert TumblingWindow(8.0).ticks_every() == 1.0
    assert Join(ident, window=1.0, timestamp=ident).ticks_every() is None
    assert Map(ident).ticks_every() is None
    assert Batch(timeout=1.0, clock=lambda: 0.0, tick_interval=0.5).ticks_every() == 0.5


def test_ticks_asked_for_on_an_operator_that_does_not_use_them_are_dropped(
    runner: str, tmp_path: Path
) -> None:
    seen = Map(repr, tick_interval=0.001)
    assert run_paused(seen, [1, 2], runner, tmp_path / "flag") == ["1", "2", "'saw it'"]
