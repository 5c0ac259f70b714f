"""Stateless operators, worker pools and batching (nanostream.nodes.transforms)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.nodes import (
    Batch,
    Delay,
    Filter,
    FlatMap,
    Inspect,
    KeyBy,
    Map,
    Parallel,
    Sample,
    Take,
    Throttle,
    Unbatch,
)
from nanostream.testing import Collect
from support import Counter, FlagSink, OneThenWait

WAIT = 10.0


def run_through(node: nanostream.NanoNode, items: Iterable[Any], runner: str) -> list[Any]:
    sink = Collect()
    nanostream.from_iterable(items) > node > sink
    sink.global_start(runner=runner)
    return sink.items


class FakeClock:
    """A clock that moves only when told to (or when its ``sleep`` is called).

    With ``log``, each sleep is also written to that file, so a test reads them after a
    run whose node slept on a copy of the clock (the ray runner).
    """

    def __init__(self, log: Path | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.log = None if log is None else str(log)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(f"{seconds!r}\n")

    def logged(self) -> list[float]:
        """The sleeps written to ``log`` (by whichever copy of the clock slept)."""
        assert self.log is not None
        return [float(line) for line in Path(self.log).read_text().split()]


def func_of(node: FlatMap) -> Any:
    """The user function of ``node`` (after a ray run, the copy that ran, come back)."""
    return node.func


class Recorder:
    """A function that keeps its arguments (read them from the node's ``func`` after the
    run: on ray the node's attributes, this function included, come back when it ends)."""

    __name__ = "record"

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, item: Any) -> None:
        with self.lock:
            self.seen.append(item)


def clock_of(times: Iterable[float]) -> Any:
    """A clock returning ``times`` one per call (operators call it once per item)."""
    return iter(times).__next__


# ----------------------------------------------------------------------------- stateless
def test_map_filter_inspect_keyby_flatmap(runner: str) -> None:
    inspect = Inspect(Recorder())
    sink = Collect()
    (
        nanostream.from_iterable(range(6))
        > Filter(lambda x: x % 2 == 1)
        > inspect
        > Map(lambda x: x * 10)
        > FlatMap(lambda x: [x, x + 1])
        > KeyBy(lambda x: x % 20)
        > sink
    )
    sink.global_start(runner=runner)
    assert func_of(inspect).seen == [1, 3, 5]
    assert sink.items == [(10, 10), (11, 11), (10, 30), (11, 31), (10, 50), (11, 51)]


def test_unbatch_undoes_batch(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(10)) > Batch(size=3) > Unbatch() > sink
    sink.global_start(runner=runner)
    assert sink.items == list(range(10))


def test_operators_check_their_arguments() -> None:
    with pytest.raises(nanostream.GraphError, match="Map: the function must be a function"):
        Map(3)  # type: ignore[arg-type]
    with pytest.raises(nanostream.GraphError, match="workers must be a positive integer"):
        Map(str, workers=0)
    with pytest.raises(nanostream.GraphError, match="fraction"):
        Sample(1.5)
    with pytest.raises(nanostream.GraphError, match="size must be a positive integer"):
        Batch(size=0)
    with pytest.raises(nanostream.GraphError, match="rate_per_s"):
        Throttle(0)
    with pytest.raises(nanostream.GraphError, match="unknown node option"):
        Map(str, colour="red")


def test_operator_options_and_names(runner: str) -> None:
    node = Map(str, name="to_text", queue_size=64)
    assert node.options == {"queue_size": 64}
    sink = Collect()
    nanostream.from_iterable([1]) > node > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None and run.wait(10)
    assert "to_text" in run.stats()
    assert sink.items == ["1"]
    anonymous = Filter(bool)
    assert repr(anonymous) == "Filter(bool, name=None)"


def test_user_error_fails_the_run_naming_the_node(runner: str) -> None:
    def parse(x: int) -> int:
        if x == 3:
            raise ValueError("bad item 3")
        return x

    sink = Collect()
    nanostream.from_iterable(range(10)) > Map(parse, name="parse") > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start(runner=runner)
    assert info.value.node == "parse"
    assert isinstance(info.value.__cause__, ValueError)


def test_sample_is_repeatable_with_a_seed(runner: str) -> None:
    first = run_through(Sample(0.3, seed=42), range(500), runner)
    second = run_through(Sample(0.3, seed=42), range(500), runner)
    assert first == second
    assert 90 < len(first) < 210
    assert set(first) <= set(range(500))
    assert run_through(Sample(0.0), range(50), runner) == []
    assert run_through(Sample(1.0), range(50), runner) == list(range(50))


# ----------------------------------------------------------------------------- Take
def test_take_passes_n_and_reads_its_whole_input(runner: str) -> None:
    take = Take(3, name="take")
    sink = Collect()
    nanostream.from_iterable(range(1000)) > take > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None and run.wait(10)
    assert sink.items == [0, 1, 2]
    assert run.stats()["take"].items_in == 1000
    assert run_through(Take(0), range(5), runner) == []
    assert run_through(Take(10), range(5), runner) == list(range(5))


class Summary(Collect):
    """Collects, and adds ``("end", count)`` in cleanup (so it shows that its end came)."""

    def cleanup(self) -> None:
        with self._lock:
            self.items.append(("end", len(self.items)))
        super().cleanup()


def test_take_ends_its_downstream_after_n_items(runner: str) -> None:
    take = Take(3, name="take")
    sink = Summary(name="sink")
    nanostream.from_iterable(range(100_000)) > take > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None and run.wait(WAIT)
    assert sink.items == [0, 1, 2, ("end", 3)]
    stats = run.stats()
    assert stats["take"].items_in == 100_000 and stats["take"].items_out == 3


def test_take_ends_its_downstream_while_the_source_goes_on(runner: str) -> None:
    sink = Summary(name="sink")
    nanostream.from_iterable(itertools.count()) > Take(3, name="take") > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert sink.ended.wait(WAIT), "the downstream did not see the end"  # (mirrored on ray)
        assert run.state == "running"  # without stop=True the source goes on
    finally:
        run.stop(timeout=WAIT)
    final: str = run.state
    assert final == "finished"
    assert sink.items == [0, 1, 2, ("end", 3)]  # (on ray: the sink's items came back)
    assert run.stats()["take"].items_out == 3


def test_take_zero_ends_its_downstream_at_once(runner: str) -> None:
    sink = Summary()
    nanostream.from_iterable(range(10)) > Take(0) > sink
    sink.global_start(runner=runner)
    assert sink.items == [("end", 0)]


def test_take_with_stop_ends_an_endless_source(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(itertools.count()) > Take(5, stop=True) > sink
    sink.global_start(runner=runner)  # returns: the source was stopped
    assert sink.items == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- timing
def test_throttle_spaces_items_by_rate(runner: str, tmp_path: Path) -> None:
    clock = FakeClock(tmp_path / "sleeps")
    out = run_through(Throttle(10, clock=clock, sleep=clock.sleep), range(5), runner)
    assert out == list(range(5))
    assert clock.logged() == pytest.approx([0.1] * 4)


def test_throttle_allows_a_burst_then_the_rate(runner: str, tmp_path: Path) -> None:
    clock = FakeClock(tmp_path / "sleeps")
    out = run_through(Throttle(10, burst=3, clock=clock, sleep=clock.sleep), range(5), runner)
    assert out == list(range(5))
    assert clock.logged() == pytest.approx([0.1, 0.1])


def test_throttle_refills_while_idle() -> None:
    clock = FakeClock()
    out: list[int] = []

    def items() -> Iterator[int]:
        yield 0
        clock.now += 1.0  # a quiet second: the bucket is full again
        yield 1

    Throttle(2, clock=clock, sleep=clock.sleep).as_function()(items(), out.append)
    assert out == [0, 1] and clock.sleeps == []


def test_delay_waits_before_each_item(runner: str, tmp_path: Path) -> None:
    clock = FakeClock(tmp_path / "sleeps")
    out = run_through(Delay(0.5, sleep=clock.sleep), "abc", runner)
    assert out == ["a", "b", "c"]
    assert clock.logged() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    "make", [lambda: Delay(60), lambda: Throttle(1 / 60)], ids=["Delay", "Throttle"]
)
def test_a_long_wait_ends_when_another_node_fails(runner: str, make: Any) -> None:
    """The default wait is the node's abort-aware one: the run ends with the failure at once."""

    def fails(inp: Iterable[Any], outp: Any) -> None:
        for _ in inp:
            raise ValueError("boom")

    source = nanostream.from_iterable([1, 2])
    source > make() > Collect()
    source > nanostream.as_node(fails, name="fails")
    started = time.monotonic()
    with pytest.raises(nanostream.NodeFailed) as info:
        source.global_start(runner=runner)
    assert info.value.node == "fails"
    assert time.monotonic() - started < 30


# ----------------------------------------------------------------------------- Batch
def test_batch_by_size_flushes_the_rest_at_the_end(runner: str) -> None:
    assert run_through(Batch(size=4), range(10), runner) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]


def test_batch_without_limits_is_the_whole_input(runner: str) -> None:
    assert run_through(Batch(), range(5), runner) == [[0, 1, 2, 3, 4]]
    assert run_through(Batch(size=2), [], runner) == []


def test_batch_by_timeout_with_an_injected_clock(runner: str) -> None:
    # items arrive at these times; a batch goes out once 1.0 s passed since its first item
    times = [0.0, 0.2, 0.9, 1.0, 1.5, 3.0, 3.1]
    node = Batch(timeout=1.0, clock=clock_of(times))
    assert run_through(node, "abcdefg", runner) == [["a", "b", "c"], ["d", "e"], ["f", "g"]]


def test_batch_size_or_timeout_whichever_first(runner: str) -> None:
    times = [0.0, 0.1, 0.2, 5.0, 5.1]
    node = Batch(size=2, timeout=1.0, clock=clock_of(times))
    assert run_through(node, range(5), runner) == [[0, 1], [2], [3, 4]]


def test_batch_flushes_on_stop(runner: str) -> None:
    counter = Counter()
    sink = Collect(wait_for=3)
    counter > Batch(size=1000) > sink
    run = sink.global_start(block=False, runner=runner, queue_size=64, batch_size=16)
    assert run is not None
    assert sink.seen.wait(10)
    run.stop(timeout=30)
    assert run.state == "finished"
    flat = [x for batch in sink.items for x in batch]
    assert flat == list(range(counter.produced))  # nothing lost, the partial batch included
    assert all(len(b) == 1000 for b in sink.items[:-1])
    assert 0 < len(sink.items[-1]) <= 1000


# ----------------------------------------------------------------------------- workers
def test_workers_run_items_at_once(runner: str) -> None:
    barrier = threading.Barrier(4, timeout=10)

    def call_api(x: int) -> int:
        if x < 4:
            barrier.wait()  # only passes when 4 calls are running together
        return x * 2

    out = run_through(Map(call_api, workers=4), range(20), runner)
    assert out == [x * 2 for x in range(20)]


class BlockingFirst:
    """A function whose item 0 waits until item ``release_at`` has started.

    ``released`` says whether it did (all workers of a node share one process, ray's actor
    too; the node's ``func`` comes back with it after the run).
    """

    __name__ = "work"

    def __init__(self, release_at: int) -> None:
        self.release_at = release_at
        self.started = threading.Event()
        self.released: list[bool] = []

    def __call__(self, x: int) -> int:
        if x == 0:
            self.released.append(self.started.wait(10))
        elif x == self.release_at:
            self.started.set()
        return x


def test_ordered_workers_keep_input_order(runner: str) -> None:
    node = Map(BlockingFirst(5), workers=2, max_in_flight=8)
    out = run_through(node, range(12), runner)
    assert func_of(node).released == [True]  # item 0 finished after items 1..5 had run
    assert out == list(range(12))


def test_unordered_workers_emit_as_completed(runner: str) -> None:
    node = Map(BlockingFirst(5), workers=2, ordered=False, max_in_flight=8)
    out = run_through(node, range(12), runner)
    assert func_of(node).released == [True]
    assert sorted(out) == list(range(12))
    # items 1..4 ran on the free worker and completed before item 0 could
    assert out[:4] == [1, 2, 3, 4]


@pytest.mark.parametrize("ordered", [True, False])
def test_workers_keep_in_flight_bounded(ordered: bool) -> None:
    limit = 4
    out: list[int] = []
    pulled: list[int] = []
    full = threading.Event()
    violations: list[tuple[int, int]] = []

    def items() -> Iterator[int]:
        for i in range(40):
            if len(pulled) - len(out) >= limit:  # reading one more would exceed the bound
                violations.append((len(pulled), len(out)))
            pulled.append(i)
            if len(pulled) == limit:
                full.set()
            yield i

    def work(x: int) -> int:
        if x == 0:
            assert full.wait(10)  # item 0 holds its slot until the node stopped reading
        return x

    node = Map(work, workers=2, ordered=ordered, max_in_flight=limit)
    node.as_function()(items(), out.append)
    assert violations == []
    assert sorted(out) == list(range(40))


def test_worker_failure_fails_the_run_and_joins_the_workers(runner: str) -> None:
    def flaky(x: int) -> int:
        if x == 7:
            raise KeyError(x)
        return x

    sink = Collect()
    nanostream.from_iterable(range(100)) > Map(flaky, workers=3, name="flaky") > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start(runner=runner)
    assert info.value.node == "flaky"
    assert isinstance(info.value.__cause__, KeyError)
    # (the autouse fixture checks that no nanostream-worker thread is left)


def test_flatmap_filter_inspect_with_workers(runner: str) -> None:
    inspect = Inspect(Recorder(), workers=2)
    sink = Collect()
    (
        nanostream.from_iterable(range(30))
        > Filter(lambda x: x % 3 == 0, workers=3)
        > inspect
        > FlatMap(lambda x: [x] * 2, workers=4, ordered=False)
        > sink
    )
    sink.global_start(runner=runner)
    assert sorted(func_of(inspect).seen) == list(range(0, 30, 3))
    assert sorted(sink.items) == sorted([x for x in range(0, 30, 3) for _ in range(2)])


class Lookup(nanostream.NanoNode):
    def __init__(self, workers_expected: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(workers_expected, timeout=10)
        self.events: list[str] = []

    def setup(self) -> None:
        self.events.append("setup")

    def process_item(self, item: int) -> Iterator[int]:
        if item < 3:
            self.barrier.wait()
        yield item
        yield -item

    def cleanup(self) -> Iterator[str]:
        self.events.append("cleanup")
        yield "done"


def test_parallel_runs_process_item_on_workers(runner: str) -> None:
    parallel = Parallel(Lookup(3), workers=3)
    out = run_through(parallel, range(6), runner)
    assert out == [0, 0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, "done"]
    inner = parallel.node  # (on ray: the copy that ran, come back)
    assert isinstance(inner, Lookup) and inner.events == ["setup", "cleanup"]


def test_parallel_refuses_what_it_cannot_run() -> None:
    with pytest.raises(nanostream.GraphError, match="needs a NanoNode with process_item"):
        Parallel(Map(str), workers=2)
    with pytest.raises(nanostream.GraphError, match="source"):
        Parallel(nanostream.from_iterable([1]), workers=2)
    linked = Lookup(1)
    nanostream.from_iterable([1]) > linked
    with pytest.raises(nanostream.GraphError, match="already linked"):
        Parallel(linked, workers=2)


class Shout(nanostream.NanoNode):
    def process_item(self, item: Any) -> Iterator[Any]:
        yield f"{item}!"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Map(str, workers=2),
        lambda: FlatMap(lambda x: [x], workers=3, ordered=False),
        lambda: Parallel(Shout(), workers=2),
    ],
    ids=["map", "flatmap-unordered", "parallel"],
)
def test_workers_emit_an_answer_before_the_next_item_comes(
    runner: str, tmp_path: Path, make: Any
) -> None:
    flag = tmp_path / "answered"
    source = OneThenWait(flag)
    sink = FlagSink(flag)
    source > make() > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert run.wait(timeout=30)
    assert source.answered, "the answer waited for an item that never came"


# ----------------------------------------------------------------------------- Arrow batches
@pytest.mark.parametrize("local", ["threads", "cooperative"])
def test_batch_as_arrow_emits_record_batches_that_unbatch_undoes(local: str) -> None:
    pa = pytest.importorskip("pyarrow")
    rows = [{"id": i, "name": f"n{i}", "score": i / 4} for i in range(10)]
    batches = run_through(Batch(size=4, as_arrow=True), rows, local)
    assert [type(b) for b in batches] == [pa.RecordBatch] * 3
    assert [b.num_rows for b in batches] == [4, 4, 2]
    assert [r for b in batches for r in b.to_pylist()] == rows
    sink = Collect()
    src = nanostream.from_iterable(rows)
    src > Batch(size=3, as_arrow=True) > Unbatch() > sink
    sink.global_start(runner=local)
    assert sink.items == rows


@pytest.mark.parametrize("local", ["threads", "cooperative"])
def test_map_over_arrow_batches_is_vectorised(local: str) -> None:
    pc = pytest.importorskip("pyarrow.compute")
    rows = [{"price": float(i), "qty": i % 5} for i in range(100)]

    def with_total(batch: Any) -> Any:  # one call per batch, computed by Arrow
        total = pc.multiply(batch.column("price"), batch.column("qty"))
        return batch.append_column("total", total)

    out = run_through_all([Batch(size=32, as_arrow=True), Map(with_total), Unbatch()], rows, local)
    assert out == [{**r, "total": r["price"] * r["qty"]} for r in rows]


def run_through_all(
    nodes: list[nanostream.NanoNode], items: Iterable[Any], runner: str
) -> list[Any]:
    sink = Collect()
    chain: Any = nanostream.from_iterable(items)
    for node in nodes:
        chain = chain > node
    chain > sink
    sink.global_start(runner=runner)
    return sink.items


def test_batch_as_arrow_with_a_schema_and_its_errors() -> None:
    pa = pytest.importorskip("pyarrow")
    rows = [{"id": 1, "when": "ignored"}, {"id": 2}]
    batches = run_through(Batch(size=2, as_arrow=True, schema={"id": "int16"}), rows, "threads")
    assert batches[0].schema == pa.schema([("id", pa.int16())])
    assert batches[0].to_pylist() == [{"id": 1}, {"id": 2}]
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through(Batch(size=2, as_arrow=True, name="b"), [1, 2], "threads")
    cause = info.value.__cause__
    assert isinstance(cause, nanostream.FormatError)
    assert "the items must be dicts" in str(cause) and str(cause).startswith("b:")
    with pytest.raises(nanostream.NodeFailed) as info:
        run_through(Batch(size=2, as_arrow=True), [{"a": 1}, {"a": "x"}], "threads")
    assert "pass schema=" in str(info.value.__cause__)
    with pytest.raises(nanostream.GraphError, match="pass as_arrow=True"):
        Batch(size=2, schema={"id": "int64"})
