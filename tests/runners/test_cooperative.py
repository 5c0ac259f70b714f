"""The cooperative runner's own behaviour: one thread, blocking calls, time slices, run_inline.

Everything the runners share (results, end of stream, errors, stop, stats) is tested for
every runner in tests/core through the ``runner`` fixture.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import greenlet
import pytest

import nanostream
from nanostream.runners.cooperative import run_inline
from nanostream.testing import Collect


def passthrough(name: str, log: list[str] | None = None) -> nanostream.FunctionNode:
    def node(inp: Any, outp: Any) -> None:
        for x in inp:
            if log is not None:
                log.append(threading.current_thread().name)
            outp(x)

    return nanostream.as_node(node, name=name)


def plan_of(*nodes: nanostream.NanoNode) -> nanostream.Plan:
    for a, b in itertools.pairwise(nodes):
        a > b
    return nanostream.pipeline_of(nodes[0]).plan()


# ----------------------------------------------------------------------------- one thread
def test_every_node_runs_in_the_one_scheduler_thread() -> None:
    threads: list[str] = []

    class Src(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            threads.append(threading.current_thread().name)
            yield from range(2000)

    class Sink(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            threads.append(threading.current_thread().name)
            yield from ()

    src = Src(name="src")
    a, b = passthrough("a", threads), passthrough("b", threads)
    sink = Sink(name="sink")
    src > a > sink
    src > b > sink  # fan-out and fan-in: a diamond
    src.global_start(runner="cooperative", name="one", batch_size=16, queue_size=32)
    assert len(threads) == 1 + 2000 * 2 + 2000 * 2
    assert set(threads) == {"nanostream-coop:one"}


def test_a_blocking_call_blocks_the_whole_graph() -> None:
    """While one node sleeps, no other node runs, although the other branch has work."""
    other = Collect(name="other", wait_for=10)
    observed: list[tuple[int, int]] = []
    measured = threading.Event()

    def blocker(inp: Any, outp: Any) -> None:
        for _ in inp:
            if not measured.is_set() and len(other.items) >= 10:
                before = len(other.items)
                time.sleep(0.2)  # the blocking call under test
                observed.append((before, len(other.items)))
                measured.set()

    # feeder > blocker > other < busy: one pipeline; blocker itself emits nothing
    nanostream.from_iterable(itertools.count(), name="feeder") > blocker > other
    nanostream.from_iterable(itertools.count(), name="busy") > other
    run = other.global_start(runner="cooperative", block=False)
    assert run is not None
    try:
        assert measured.wait(10)
    finally:
        run.stop(timeout=10)
    (before, after), *_ = observed
    assert before >= 10
    assert after == before  # nothing else ran during the sleep


def test_non_blocking_start_returns_a_live_handle() -> None:
    class Ticks(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            i = 0
            while not self.sleep(0.001):
                yield i
                i += 1

    sink = Collect(name="sink", wait_for=5)
    Ticks(name="ticks") > sink
    run = sink.global_start(runner="cooperative", block=False, name="live")
    assert run is not None
    assert sink.seen.wait(10)
    assert run.state == "running" and not run.done
    names = {t.name for t in threading.enumerate()}
    assert "nanostream-coop:live" in names
    stats = run.stats()
    assert stats["ticks"].items_out >= 5 and stats["sink"].state == "running"
    run.stop(timeout=10)
    assert run.state == "finished" and run.done
    assert run.stats()["sink"].items_in == len(sink.items) == run.stats()["ticks"].items_out
    assert not [t for t in threading.enumerate() if t.name.startswith("nanostream")]


# ----------------------------------------------------------------------------- time slices
def test_a_slow_source_delivers_each_item_promptly() -> None:
    """Items of a source that waits between them are not held back for a whole batch."""

    class Slow(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            i = 0
            while not self.sleep(0.005):
                yield i
                i += 1

    sink = Collect(wait_for=3)
    Slow(name="slow") > passthrough("relay") > sink
    run = sink.global_start(runner="cooperative", block=False)
    assert run is not None
    try:
        assert sink.seen.wait(10)
        # held back for a batch, the first 3 would arrive once 512 items were out; a time
        # slice is 20 ms (4 items), and the source sends one per 5 ms at most
        assert run.stats()["slow"].items_out < 512
    finally:
        run.stop(timeout=10)


def test_a_slow_node_with_a_backlog_still_delivers_promptly() -> None:
    gate = threading.Event()

    def slow(inp: Any, outp: Any) -> None:
        for x in inp:
            if x == 0:
                time.sleep(0.1)
            else:
                gate.wait(10)  # blocks the whole graph, so item 0 must be out already
            outp(x)

    sink = Collect(wait_for=1)
    nanostream.from_iterable(range(100)) > slow > sink
    run = sink.global_start(runner="cooperative", block=False)
    assert run is not None
    try:
        assert sink.seen.wait(10)
        assert sink.items == [0]
    finally:
        gate.set()
        run.wait(10)
    assert sink.items == list(range(100))


def test_nanonode_sleep_lets_the_other_nodes_run() -> None:
    """A polling source that sleeps between polls does not hold back what it sent."""

    class Poller(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            yield from range(3)
            while not self.sleep(0.01):  # polls until the run stops
                pass

    sink = Collect(wait_for=3)
    Poller(name="poller") > passthrough("relay") > sink
    run = sink.global_start(runner="cooperative", block=False)
    assert run is not None
    try:
        assert sink.seen.wait(10)
        assert sink.items == [0, 1, 2]
    finally:
        run.stop(timeout=10)
    assert run.state == "finished"


def test_sleeping_nodes_wake_in_order_of_their_deadlines() -> None:
    def sleeper(label: str, seconds: float) -> nanostream.NanoNode:
        class Sleeper(nanostream.NanoNode):
            def generator(self) -> Iterator[str]:
                self.sleep(seconds)
                yield label

        return Sleeper(name=label)

    sink = Collect()
    sleeper("long", 0.2) > sink  # starts first, wakes last
    sleeper("short", 0.02) > sink
    sink.global_start(runner="cooperative")
    assert sink.items == ["short", "long"]


def test_back_pressure_is_counted_as_blocked_output() -> None:
    def slow_sink(inp: Any, outp: Any) -> None:
        for i, _ in enumerate(inp):
            if i % 1000 == 0:
                time.sleep(0.001)

    src = nanostream.from_iterable(range(20_000), name="src")
    src > slow_sink
    run = src.global_start(runner="cooperative", block=False, queue_size=100, batch_size=10)
    assert run is not None and run.wait(30)
    stats = run.stats()
    assert stats["src"].blocked_output_s > 0
    assert stats["slow_sink"].blocked_input_s >= 0
    assert stats["slow_sink"].queue_capacity == 100 and stats["slow_sink"].queue_depth == 0


def test_a_node_that_ignores_an_abort_is_abandoned(caplog: pytest.LogCaptureFixture) -> None:
    finished = []

    def stubborn(inp: Any, outp: Any) -> None:
        try:
            for i in itertools.count():
                try:
                    outp(i)
                except Exception:
                    pass
        finally:
            finished.append(True)

    node = nanostream.as_node(stubborn, name="stubborn")
    sink = Collect(wait_for=10)
    nanostream.from_iterable([]) > node
    node > sink
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        run = node.global_start(runner="cooperative", block=False)
        assert run is not None and sink.seen.wait(10)
        run.abort()
    assert run.state == "aborted"
    assert run.stats()["stubborn"].state == "aborted"
    assert "'stubborn' keeps emitting without reading its input" in caplog.text
    assert finished == []  # its greenlet was abandoned, not resumed


def test_abort_unwinds_nodes_waiting_on_a_full_queue() -> None:
    unwound = []

    def relay(inp: Any, outp: Any) -> None:
        try:
            for x in inp:
                outp(x)
        finally:
            unwound.append("relay")

    def fails(inp: Any, outp: Any) -> None:
        for x in inp:
            if x == 3000:
                raise ValueError("late")

    src = nanostream.from_iterable(itertools.count())
    src > relay
    nanostream.as_node(relay) > fails
    with pytest.raises(nanostream.NodeFailed, match="late"):
        src.global_start(runner="cooperative", queue_size=64, batch_size=8)
    assert unwound == ["relay"]


# ----------------------------------------------------------------------------- run_inline
def test_run_inline_pushes_each_item_through_before_reading_the_next() -> None:
    events: list[str] = []

    def inp() -> Iterator[int]:
        for i in range(3):
            events.append(f"read {i}")
            yield i

    def double(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(2 * x)

    plan = plan_of(nanostream.as_node(double), passthrough("relay"))
    run_inline(plan, inp(), lambda x: events.append(f"out {x}"))
    assert events == ["read 0", "out 0", "read 1", "out 2", "read 2", "out 4"]


def test_run_inline_with_sources_fan_out_and_explicit_exits() -> None:
    def tag(label: str) -> Any:
        def node(inp: Any, outp: Any) -> None:
            for x in inp:
                outp((label, x))

        return nanostream.as_node(node, name=label)

    entry = passthrough("entry")
    a, b = tag("a"), tag("b")
    own = nanostream.from_iterable([100], name="own")  # a source inside: not an entry
    entry > a
    entry > b
    own > b
    out: list[Any] = []
    plan = nanostream.pipeline_of(entry).plan()
    run_inline(plan, [1, 2], out.append)
    assert sorted(out) == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("b", 100)]
    out.clear()
    run_inline(plan, [7], out.append, exits=["entry"])
    assert out == [7]


def test_run_inline_reads_its_whole_input_even_without_entries() -> None:
    read = []

    def inp() -> Iterator[int]:
        for i in range(5):
            read.append(i)
            yield i

    out: list[int] = []
    plan = plan_of(nanostream.from_iterable([1, 2]), passthrough("p"))
    run_inline(plan, inp(), out.append)
    assert read == [0, 1, 2, 3, 4] and out == [1, 2]


def test_run_inline_raises_a_node_error_with_a_note() -> None:
    def boom(inp: Any, outp: Any) -> None:
        for x in inp:
            if x == 2:
                raise KeyError("two")
            outp(x)

    out: list[int] = []
    plan = plan_of(nanostream.as_node(boom), passthrough("after"))
    with pytest.raises(KeyError) as info:
        run_inline(plan, itertools.count(), out.append)
    assert out == [0, 1]
    assert any("'boom'" in note for note in info.value.__notes__)


def test_run_inline_passes_on_errors_from_inp_and_outp() -> None:
    def bad_input() -> Iterator[int]:
        yield 1
        raise OSError("input broke")

    plan = plan_of(passthrough("p"))
    with pytest.raises(OSError, match="input broke"):
        run_inline(plan, bad_input(), lambda x: None)

    def bad_output(x: Any) -> None:
        raise nanostream.RunAborted

    plan = plan_of(passthrough("q"))
    with pytest.raises(nanostream.RunAborted):
        run_inline(plan, [1, 2], bad_output)


def test_run_inline_stops_its_sources_when_outp_says_stop() -> None:
    sent: list[int] = []

    def outp(x: int) -> None:
        sent.append(x)
        if len(sent) == 3:
            raise nanostream.SourceStopped

    produced: list[int] = []

    class Counter(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            for i in itertools.count():
                produced.append(i)
                yield i

    plan = plan_of(Counter(name="counter"), passthrough("p"))
    run_inline(plan, [], outp)
    assert sent == produced  # everything produced was delivered, then the source ended


def test_run_inline_inside_a_cooperative_node() -> None:
    """Nested: a node of a cooperative run runs a plan inline, reading the outer input."""
    inner = plan_of(passthrough("x"), passthrough("y"))

    def wrapper(inp: Any, outp: Any) -> None:
        run_inline(inner, inp, outp)

    sink = Collect()
    nanostream.from_iterable(range(3000)) > wrapper > sink
    sink.global_start(runner="cooperative", queue_size=64, batch_size=8)
    assert sink.items == list(range(3000))


def test_run_inline_inside_a_thread_of_the_threaded_runner() -> None:
    inner = plan_of(passthrough("x"), passthrough("y"))

    def wrapper(inp: Any, outp: Any) -> None:
        run_inline(inner, inp, outp)

    sink = Collect()
    nanostream.from_iterable(range(3000)) > wrapper > sink
    sink.global_start(runner="threads", queue_size=64, batch_size=8)
    assert sink.items == list(range(3000))


def test_run_inline_inside_a_greenlet() -> None:
    out: list[int] = []
    plan = plan_of(passthrough("p"))
    g = greenlet.greenlet(lambda: run_inline(plan, [1, 2], out.append))
    g.switch()
    assert g.dead and out == [1, 2]


def test_run_inline_rejects_unknown_node_names() -> None:
    with pytest.raises(KeyError, match="nope"):
        run_inline(plan_of(passthrough("p")), [], print, entries=["nope"])


def test_run_inline_with_a_busy_source_still_reads_its_input_and_aborts() -> None:
    """An endless source inside must neither starve the input nor outlive a failure."""

    def fails_second(inp: Any, outp: Any) -> None:
        for i, x in enumerate(inp):
            if i == 1:
                raise ValueError(f"second item {x}")
            outp(x)

    endless = nanostream.from_iterable(itertools.count(), name="endless")
    entry = nanostream.as_node(fails_second, name="entry")
    endless > Collect(name="exit_a")
    entry > Collect(name="exit_b")
    endless > entry  # one plan: entry is fed by both the input and the endless source
    plan = nanostream.pipeline_of(endless).plan()
    with pytest.raises(ValueError, match="second item"):
        run_inline(plan, ["a", "b"], lambda x: None, entries=["entry"])


def test_monitor_warns_about_a_stalled_node(caplog: pytest.LogCaptureFixture) -> None:
    """The watcher thread does the monitor's checks: a source waits a time slice or more."""

    def slow(inp: Any, outp: Any) -> None:
        for _ in inp:
            time.sleep(0.005)

    src = nanostream.from_iterable(range(100), name="fast")
    src > slow
    with caplog.at_level(logging.INFO, logger="nanostream"):
        src.global_start(
            runner="cooperative",
            queue_size=50,
            batch_size=5,
            monitor_interval=0.01,
            stall_timeout=0.005,
            log_interval=0.01,
        )
    assert "node 'fast' has waited" in caplog.text
    assert "bottleneck: slow" in caplog.text
    assert "fast: in=0 out=" in caplog.text


def test_a_retry_back_off_lets_the_other_nodes_run() -> None:
    """The back-off waits cooperatively: another branch goes on meanwhile."""
    order: list[str] = []

    class Flaky(nanostream.NanoNode):
        def setup(self) -> None:
            self.failed = False

        def process_item(self, item: int) -> Iterator[int]:
            if not self.failed:
                self.failed = True
                order.append("fail")
                raise ValueError(item)
            order.append("retried")
            yield item

    class Ticker(nanostream.NanoNode):
        def generator(self) -> Iterator[str]:
            for _ in range(20):
                order.append("other")
                yield "tick"
                self.sleep(0.02)

    src = nanostream.from_iterable([1], name="src")
    flaky = Flaky(on_error="retry", retries=1, backoff=0.2, name="flaky")
    sink = Collect(name="sink")
    src > flaky > sink
    Ticker(name="ticker") > sink
    started = time.monotonic()
    sink.global_start(runner="cooperative")
    assert sink.items.count(1) == 1 and sink.items.count("tick") == 20
    during = order[order.index("fail") + 1 : order.index("retried")]
    assert "other" in during, "nothing ran while the retry backed off"
    assert time.monotonic() - started >= 0.1  # the back-off was waited, not skipped
