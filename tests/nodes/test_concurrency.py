"""``async def`` functions with ``concurrency=`` and ``processes=`` on Map, FlatMap, Filter
and Parallel, under every runner (see ``operators/_concurrency.py``)."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanostream
from nanostream.nodes import Filter, FlatMap, Inspect, Map, Parallel
from nanostream.operators._concurrency import WorkerTraceback
from nanostream.testing import Collect

WAIT = 10.0


# --------------------------------------------------------------------------- async
async def add_one(x: int) -> int:
    await asyncio.sleep(0.001 * (x % 3))  # later items often finish first
    return x + 1


def test_an_async_map_keeps_the_input_order(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(60)) > Map(add_one, concurrency=8) > sink
    sink.global_start(runner=runner)
    assert sink.items == list(range(1, 61))


async def is_even(x: int) -> bool:
    await asyncio.sleep(0)
    return x % 2 == 0


async def spell(word: str) -> AsyncIterator[str]:
    for letter in word:
        await asyncio.sleep(0)
        yield letter


async def split(text: str) -> list[str]:
    await asyncio.sleep(0)
    return text.split()


def test_async_filter_and_flat_maps(runner: str) -> None:
    evens, letters, words = Collect(), Collect(), Collect()
    nanostream.from_iterable(range(10)) > Filter(is_even, concurrency=3) > evens
    nanostream.from_iterable(["ab", "c"]) > FlatMap(spell, concurrency=2) > letters
    nanostream.from_iterable(["a b", "c"]) > FlatMap(split, concurrency=2) > words
    for sink, expected in ((evens, [0, 2, 4, 6, 8]), (letters, list("abc")), (words, list("abc"))):
        sink.global_start(runner=runner)
        assert sink.items == expected


class Gate:
    """Item 0 ends 1 s after item ``last`` has finished: first-come order puts 0 last.

    Without the second, both could be done when the node next looks (a loaded machine, a
    cooperative node's pause), and then either order would be first-come.
    """

    def __init__(self, last: int) -> None:
        self.last = last
        self.events: dict[int, asyncio.Event] = {}

    async def __call__(self, x: int) -> int:
        event = self.events.setdefault(0, asyncio.Event())
        if x == 0:
            await event.wait()
            await asyncio.sleep(1.0)
        elif x == self.last:
            event.set()
        return x


def test_an_unordered_async_map_emits_first_come(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(4)) > Map(Gate(3), concurrency=4, ordered=False) > sink
    sink.global_start(runner=runner)
    assert sink.items[-1] == 0 and sorted(sink.items) == [0, 1, 2, 3]


class Counted:
    """Counts the calls running at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0

    async def __call__(self, x: int) -> int:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.001)
        self.running -= 1
        return x


def test_concurrency_bounds_the_calls_at_once(runner: str) -> None:
    if runner == "ray":
        pytest.skip("the test reads the count the function kept in this process")
    counted, sink = Counted(), Collect()
    nanostream.from_iterable(range(100)) > Map(counted, concurrency=5) > sink
    sink.global_start(runner=runner)
    assert sink.items == list(range(100))
    assert 1 < counted.most <= 5


async def bad_at_three(x: int) -> int:
    await asyncio.sleep(0)
    if x == 3:
        raise ValueError("three")
    return x


def test_an_async_error_fails_the_run_naming_the_node(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(10)) > Map(bad_at_three, concurrency=4, name="m") > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start(runner=runner)
    assert info.value.node == "m"
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)
    frames = [frame.name for frame in traceback.extract_tb(cause.__traceback__)]
    assert "bad_at_three" in frames  # the coroutine's own frame, where it raised
    assert sink.items == [0, 1, 2][: len(sink.items)]


class Hangs:
    def __init__(self) -> None:
        self.cancelled: list[int] = []

    async def __call__(self, x: int) -> int:
        if x == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(x)
                raise
        return x


def test_an_async_timeout_cancels_the_attempt(runner: str) -> None:
    if runner == "ray":
        pytest.skip("the test reads what the function recorded in this process")
    hangs = Hangs()
    node = Map(hangs, concurrency=3, on_error="skip", timeout=0.05)
    sink, dead = Collect(), Collect()
    nanostream.from_iterable(range(4)) > node > sink
    node.errors > dead
    sink.global_start(runner=runner)
    assert sink.items == [0, 2, 3]
    assert hangs.cancelled == [1]
    assert [(r.item, r.exception_type) for r in dead.items] == [(1, "TimeoutError")]


class Acking(nanostream.NanoNode):
    def __init__(self, n: int, sink: Collect) -> None:
        super().__init__()
        self.n, self.sink = n, sink
        self.acked: list[int] = []
        self.early: list[int] = []

    def ack(self, x: int) -> None:
        (self.acked if x + 1 in self.sink.items else self.early).append(x)

    def generator(self) -> Iterator[Any]:
        for i in range(self.n):
            yield nanostream.Acked(i, lambda i=i: self.ack(i))


def _step(kind: str) -> Map:
    if kind == "concurrency":
        return Map(add_one, concurrency=4)
    return Map(plus_one, processes=2, ordered=kind == "processes")


@pytest.mark.parametrize("kind", ["concurrency", "processes", "processes-unordered"])
def test_acknowledgements_wait_until_the_outputs_are_out(runner: str, kind: str) -> None:
    if runner == "ray":
        pytest.skip("the source reads the sink of this process")
    sink = Collect()
    src = Acking(300, sink)
    src > _step(kind) > sink
    sink.global_start(runner=runner)
    assert sorted(sink.items) == list(range(1, 301))
    assert src.early == []
    assert src.acked == list(range(300))


class Endless(nanostream.NanoNode):
    def generator(self) -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1


class Seen(Collect):
    def __init__(self) -> None:
        super().__init__()
        self.first = threading.Event()

    def process_item(self, item: Any) -> Iterator[Any]:
        self.first.set()
        yield from super().process_item(item)


@pytest.mark.parametrize("kind", ["concurrency", "processes", "processes-unordered"])
def test_stop_drains_what_is_in_flight(runner: str, kind: str) -> None:
    if runner == "ray":
        pytest.skip("the test waits on an event of the sink object")
    src, sink = Endless(), Seen()
    src > _step(kind) > sink
    run = src.global_start(block=False, runner=runner)
    assert run is not None
    assert sink.first.wait(WAIT)
    run.stop()
    run.wait()
    # nothing lost, nothing doubled
    assert sorted(sink.items) == list(range(1, len(sink.items) + 1))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Map(len, concurrency=4), "concurrency= is the number of calls at once"),
        (lambda: Map(add_one, workers=4), "ask for concurrency=4 instead of workers=4"),
        (lambda: Inspect(add_one), "Inspect takes a plain function"),
        (lambda: Map(len, processes=2, workers=2), "choose workers="),
        (lambda: Inspect(len, processes=2), "Inspect takes no processes="),
        (lambda: Map(len, processes=0), "processes must be a positive integer"),
        (lambda: Parallel(Square()), "needs workers=N (threads, for blocking I/O) or processes"),
        (lambda: Parallel(AsyncNode(), workers=2), "its process_item is async def"),
        (lambda: Parallel(WithCleanup(), processes=2), "cleanup() has nowhere to send"),
    ],
)
def test_options_that_cannot_work_are_refused_when_the_node_is_made(
    make: Any, message: str
) -> None:
    with pytest.raises(nanostream.GraphError, match=re.escape(message)):
        make()


class AsyncNode(nanostream.NanoNode):
    async def process_item(self, item: Any) -> AsyncIterator[Any]:
        yield item


class WithCleanup(nanostream.NanoNode):
    def process_item(self, item: Any) -> Iterator[Any]:
        yield item

    def cleanup(self) -> Iterator[Any]:
        yield "done"


# --------------------------------------------------------------------------- processes
def plus_one(x: int) -> int:
    return x + 1


def test_a_process_map_keeps_the_order_and_runs_elsewhere(runner: str) -> None:
    sink = Collect()
    here = os.getpid()
    src = nanostream.from_iterable(range(500))
    src > Map(lambda x: (x * x, os.getpid() != here), processes=2) > sink
    sink.global_start(runner=runner)
    assert [square for square, _ in sink.items] == [x * x for x in range(500)]
    assert all(elsewhere for _, elsewhere in sink.items)


def zero_after_the_rest(done: Path, x: int) -> int:
    """Item 0's work ends 1 s after the work of the 39 other items (each notes its end in
    ``done``), whatever the machine's speed: time for their results to leave the pool."""
    if x != 0:
        (done / str(x)).touch()
        return x
    deadline = time.monotonic() + 60
    while len(os.listdir(done)) < 39 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)
    return x


def test_an_unordered_process_map_emits_each_chunk_as_it_is_done(
    runner: str, tmp_path: Path
) -> None:
    sink = Collect()
    work = functools.partial(zero_after_the_rest, tmp_path)
    nanostream.from_iterable(range(40)) > Map(work, processes=2, ordered=False) > sink
    sink.global_start(runner=runner)
    assert sorted(sink.items) == list(range(40))
    assert sink.items[-1] == 0  # the others went out while its worker was still on item 0


class ArrivalSink(nanostream.NanoNode):
    """Collects its items; ``arrived`` is set once it has ``count`` of them."""

    def __init__(self, count: int, marker: Path | None = None) -> None:
        super().__init__()
        self.count = count
        self.marker = marker
        self.items: list[Any] = []
        self.arrived = threading.Event()

    def process_item(self, item: Any) -> None:
        self.items.append(item)
        if len(self.items) == self.count:
            self.arrived.set()
            if self.marker is not None:
                self.marker.touch()


class WaitsForTheOthers:
    """Item 0 waits (up to 60 s) until the sink has every other item; True if it did."""

    def __init__(self, sink: ArrivalSink) -> None:
        self.sink = sink

    async def __call__(self, x: int) -> Any:
        if x == 0:
            return await asyncio.to_thread(self.sink.arrived.wait, 60)
        return x


def wait_for_marker(marker: Path, x: int) -> Any:
    """In a worker process: item 0 waits (up to 60 s) for the sink's marker file."""
    if x != 0:
        return x
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return marker.exists()


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_outputs_go_on_while_an_unordered_map_waits_on_a_slow_item(
    local_runner: str, tmp_path: Path
) -> None:
    """What a map emitted does not wait in its outbox for its slowest item: the sink has
    every other result while item 0 still runs (async and process workers)."""
    sink = ArrivalSink(9)
    nanostream.from_iterable(range(10)) > Map(
        WaitsForTheOthers(sink), concurrency=10, ordered=False
    ) > sink
    sink.global_start(runner=local_runner)
    assert sink.items[-1] is True and sorted(sink.items[:-1]) == list(range(1, 10))

    marker = tmp_path / "arrived"
    sink = ArrivalSink(9, marker)
    work = functools.partial(wait_for_marker, marker)
    nanostream.from_iterable(range(10)) > Map(work, processes=2, ordered=False) > sink
    sink.global_start(runner=local_runner)
    assert sink.items[-1] is True and sorted(sink.items[:-1]) == list(range(1, 10))


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two cores",
)
def test_workers_run_on_every_core_of_the_process_whatever_core_the_node_is_on() -> None:
    # A node thread of the threads runner may share one core with the other computing
    # nodes; the workers it starts (and the fork server) must not inherit that.
    every = os.sched_getaffinity(0)
    sink = Collect()
    nanostream.from_iterable(range(4)) > Map(_worker_cores, processes=2) > sink

    def pinned() -> None:
        os.sched_setaffinity(0, {min(every)})
        sink.global_start()

    thread = threading.Thread(target=pinned)
    thread.start()
    thread.join()
    assert sink.items and all(set(cores) == every for cores in sink.items)


def _worker_cores(x: int) -> list[int]:
    return sorted(os.sched_getaffinity(0))


def test_process_filter_and_flat_map(runner: str) -> None:
    odd, pairs = Collect(), Collect()
    nanostream.from_iterable(range(10)) > Filter(lambda x: x % 2, processes=2) > odd
    nanostream.from_iterable(range(3)) > FlatMap(lambda x: [x, -x], processes=2) > pairs
    odd.global_start(runner=runner)
    pairs.global_start(runner=runner)
    assert odd.items == [1, 3, 5, 7, 9]
    assert pairs.items == [0, 0, 1, -1, 2, -2]


def explode(x: int) -> int:
    if x == 7:
        raise KeyError(f"no {x}")
    return x


def test_a_worker_error_fails_the_run_with_the_worker_traceback(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(20)) > Map(explode, processes=2, name="m") > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start(runner=runner)
    assert info.value.node == "m"
    cause = info.value.__cause__
    assert isinstance(cause, KeyError)
    assert isinstance(cause.__cause__, WorkerTraceback)
    # The worker's own frames; the source line is shown where the module is importable (on
    # Ray the function travels by value, so its frame has no source text).
    assert "in explode" in str(cause.__cause__) and "KeyError: 'no 7'" in str(cause.__cause__)
    assert sink.items == list(range(7))[: len(sink.items)]


def test_a_worker_error_under_skip_is_a_dead_letter_with_the_traceback(runner: str) -> None:
    node = Map(explode, processes=2, on_error="skip")
    sink, dead = Collect(), Collect()
    nanostream.from_iterable(range(10)) > node > sink
    node.errors > dead
    sink.global_start(runner=runner)
    assert sink.items == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    (record,) = dead.items
    assert (record.item, record.exception_type) == (7, "KeyError")
    assert "in explode" in record.traceback


def die_at_five(x: int) -> int:
    if x == 5:
        os._exit(3)
    return x


def killed_at_five(x: int) -> int:
    if x == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@pytest.mark.parametrize("func", [die_at_five, killed_at_five])
def test_a_dead_worker_is_an_error_for_its_item_only(runner: str, func: Any) -> None:
    node = Map(func, processes=2, on_error="skip")
    sink, dead = Collect(), Collect()
    nanostream.from_iterable(range(40)) > node > sink
    node.errors > dead
    sink.global_start(runner=runner)
    assert sink.items == [x for x in range(40) if x != 5]
    (record,) = dead.items
    assert (record.item, record.exception_type) == (
        5,
        "concurrent.futures.process.BrokenProcessPool",
    )
    assert "worker process died while working on this item" in record.message


def test_a_dead_worker_fails_the_run_by_default_and_nothing_hangs(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(40)) > Map(die_at_five, processes=2, name="m") > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start(runner=runner)
    assert info.value.node == "m"
    assert "died while working on this item" in str(info.value.__cause__)


def spin_at_two(x: int) -> int:
    while x == 2:
        pass
    return x


def test_a_process_timeout_interrupts_the_attempt(runner: str) -> None:
    node = Map(spin_at_two, processes=2, on_error="skip", timeout=0.2)
    sink, dead = Collect(), Collect()
    nanostream.from_iterable(range(5)) > node > sink
    node.errors > dead
    sink.global_start(runner=runner)
    assert sink.items == [0, 1, 3, 4]
    assert [(r.item, r.exception_type) for r in dead.items] == [(2, "TimeoutError")]


class Square(nanostream.NanoNode):
    def setup(self) -> None:
        self.pid = os.getpid()

    def process_item(self, item: int) -> Iterator[tuple[int, int]]:
        yield item * item, self.pid


def test_parallel_runs_a_node_in_worker_processes_each_set_up(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(50)) > Parallel(Square(), processes=2) > sink
    sink.global_start(runner=runner)
    assert [square for square, _ in sink.items] == [x * x for x in range(50)]
    assert os.getpid() not in {pid for _, pid in sink.items}  # set up in each worker


def test_processes_in_a_pipeline_file(tmp_path: Path) -> None:
    (tmp_path / "cpu_steps.py").write_text(
        "from nanostream.nodes import Map\n"
        "def cube(x):\n"
        "    return x ** 3\n"
        "def cubes(processes: int = 1):\n"
        "    return Map(cube, processes=processes)\n"
    )
    (tmp_path / "pipeline.yaml").write_text(
        "imports: [cpu_steps]\n"
        "nodes:\n"
        "  numbers: {class: IterableSource, args: {iterable: [1, 2, 3]}}\n"
        "  cube: {class: cubes, args: {processes: 2}}\n"
        "  sink: nanostream.testing:Collect\n"
    )
    pipeline = nanostream.load_pipeline(tmp_path / "pipeline.yaml")
    nodes = {n.name: n for n in pipeline.nodes}
    assert nodes["cube"].processes == 2
    nodes["sink"].global_start()
    assert nodes["sink"].items == [1, 8, 27]


# --------------------------------------------------------------------------- hypothesis
class Flaky:
    """Fails item x its first ``fails[x]`` attempts (counted per process)."""

    def __init__(self, fails: dict[int, int]) -> None:
        self.fails = fails
        self.tries: dict[int, int] = {}

    def count(self, x: int) -> None:
        self.tries[x] = self.tries.get(x, 0) + 1
        if self.tries[x] <= self.fails.get(x, 0):
            raise ValueError(f"flaky {x}")

    def __call__(self, x: int) -> int:
        self.count(x)
        return x * 10


class AsyncFlaky(Flaky):
    async def __call__(self, x: int) -> int:  # type: ignore[override]
        await asyncio.sleep(0.0005 * (x % 4))
        self.count(x)
        return x * 10


cases = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.dictionaries(st.integers(0, n - 1), st.integers(1, 3), max_size=6),
        st.sampled_from(["skip", "retry"]),
        st.integers(0, 2),
    )
)


def expected(n: int, fails: dict[int, int], policy: str, retries: int) -> tuple[list, list]:
    allowed = retries if policy == "retry" else 0
    ok = [x * 10 for x in range(n) if fails.get(x, 0) <= allowed]
    dead = [x for x in range(n) if fails.get(x, 0) > allowed]
    return ok, dead


@pytest.mark.parametrize("kind", ["concurrency", "processes", "processes-unordered"])
def test_ordered_maps_keep_order_and_count_under_random_failures(runner: str, kind: str) -> None:
    if runner == "ray":
        pytest.skip("hypothesis examples here start many runs; the ray runner is too slow")
    ordered = kind != "processes-unordered"

    @settings(
        max_examples=25 if kind == "concurrency" else 8,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(case=cases, lanes=st.integers(1, 6))
    def check(case: Any, lanes: int) -> None:
        n, fails, policy, retries = case
        if kind == "concurrency":
            step = Map(AsyncFlaky(fails), concurrency=lanes)
        else:
            step = Map(Flaky(fails), processes=min(lanes, 2), ordered=ordered)
        step.configure(on_error=policy, retries=retries, backoff=0)
        sink, dead = Collect(), Collect()
        nanostream.from_iterable(range(n)) > step > sink
        step.errors > dead
        sink.global_start(runner=runner)
        ok, failed = expected(n, fails, policy, retries)
        outputs, records = sink.items, [record.item for record in dead.items]
        if not ordered:  # first-come: the same items, each once, in any order
            outputs, records = sorted(outputs), sorted(records)
        assert outputs == ok
        assert records == failed

    check()


def test_processes_without_cloudpickle_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cloudpickle", None)
    with pytest.raises(nanostream.MissingDependencyError) as info:
        Map(plus_one, processes=2)
    assert "pip install 'nanostream[processes]'" in str(info.value)
