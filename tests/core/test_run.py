"""Running: blocking and non-blocking starts, stop and drain, errors, back-pressure, stats."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.testing import Collect
from support import FlagSink, wait_for_file

WAIT = 10.0


def no_nanostream_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("nanostream")]


def test_blocking_start_returns_none_after_finite_sources(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(10)) > sink
    assert sink.global_start(runner=runner) is None
    assert sink.items == list(range(10))
    assert no_nanostream_threads()


def test_non_blocking_start_returns_a_run(runner: str, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")

    def waits(inp: Any, outp: Any) -> None:
        wait_for_file(gate)
        for x in inp:
            outp(x)

    sink = Collect()
    nanostream.from_iterable([1]) > waits > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert run.wait(timeout=0.01) is False
    assert run.state == "running"
    Path(gate).touch()
    assert run.wait(timeout=WAIT) is True
    assert run.state == "finished"
    assert sink.items == [1]


def test_stop_drains_an_infinite_source(runner: str) -> None:
    class Counter(nanostream.NanoNode):
        def setup(self) -> None:
            self.produced: list[int] = []

        def generator(self) -> Iterator[int]:
            for i in itertools.count():
                self.produced.append(i)
                yield i

    class Slow(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            yield item

        def cleanup(self) -> Iterator[str]:
            yield "cleaned"

    sink, counter = Collect(wait_for=1000), Counter()
    counter > Slow() > sink
    run = sink.global_start(block=False, runner=runner, queue_size=64, batch_size=16)
    assert run is not None
    assert sink.seen.wait(WAIT)
    run.stop(timeout=30)
    assert run.state == "finished"
    assert sink.items[-1] == "cleaned"
    # everything the source produced reached the sink, in order
    assert len(counter.produced) >= 1000
    assert sink.items[:-1] == counter.produced
    assert no_nanostream_threads()


def test_stop_wakes_a_sleeping_source(runner: str) -> None:
    class Patient(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            i = 0
            while not self.sleep(3600):
                yield i
                i += 1

    src = Patient()
    run = src.global_start(block=False, runner=runner)
    assert run is not None
    started = time.monotonic()
    src.global_stop(timeout=10)
    assert time.monotonic() - started < 5


def test_failure_names_the_node_and_keeps_the_cause(runner: str) -> None:
    def explode(inp: Any, outp: Any) -> None:
        for x in inp:
            if x == 500:
                raise KeyError("boom")
            outp(x)

    sink = Collect()
    nanostream.from_iterable(itertools.count()) > explode > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start(runner=runner)
    assert info.value.node == "explode"
    assert "explode" in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, KeyError)
    assert cause.__traceback__ is not None
    frames = []
    tb = cause.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "explode" in frames
    assert no_nanostream_threads()


@pytest.mark.parametrize("where", ["generator", "process_item", "cleanup", "setup"])
def test_failure_in_every_hook(runner: str, where: str) -> None:
    class Src(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            if where == "generator":
                raise ValueError(where)
            yield from range(10)

    class Proc(nanostream.NanoNode):
        def setup(self) -> None:
            if where == "setup":
                raise ValueError(where)

        def process_item(self, item: int) -> Iterator[int]:
            if where == "process_item":
                raise ValueError(where)
            yield item

        def cleanup(self) -> None:
            if where == "cleanup":
                raise ValueError(where)

    src, proc = Src(name="src"), Proc(name="proc")
    src > proc > Collect()
    with pytest.raises(nanostream.NodeFailed) as info:
        src.global_start(runner=runner)
    assert info.value.node == ("src" if where == "generator" else "proc")
    assert str(info.value.__cause__) == where


def test_failure_stops_an_infinite_source_blocked_on_a_full_queue(runner: str) -> None:
    def fails_late(inp: Any, outp: Any) -> None:
        for x in inp:
            if x == 5000:
                raise RuntimeError("late")

    src = nanostream.from_iterable(itertools.count())
    src > fails_late
    with pytest.raises(nanostream.NodeFailed, match="late"):
        src.global_start(runner=runner, queue_size=16, batch_size=4)


def test_node_function_returning_early_is_an_error(runner: str) -> None:
    def first_only(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x)
            return

    sink = Collect()
    nanostream.from_iterable(range(10_000)) > first_only > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start(runner=runner)
    assert isinstance(info.value.__cause__, nanostream.NodeProtocolError)
    assert "entire input" in str(info.value.__cause__)


def test_except_exception_does_not_swallow_stop(runner: str) -> None:
    def stubborn(inp: Any, outp: Any) -> None:
        for i in itertools.count():
            try:
                outp(i)
            except Exception:  # a user's broad handler
                pass

    src = nanostream.as_node(stubborn)
    sink = Collect(wait_for=10)
    nanostream.from_iterable([]) > src
    src > sink
    run = src.global_start(block=False, runner=runner)
    assert run is not None and sink.seen.wait(10)
    run.abort()
    assert run.state == "aborted"


def test_back_pressure_keeps_queues_bounded(runner: str) -> None:
    """1,000,000 items into a sink that sleeps: the queue never exceeds its capacity."""
    # On Ray every batch is a remote call: 100,000 items (still 1,000 full batches).
    n = 100_000 if runner == "ray" else 1_000_000

    def slow_sink(inp: Any, outp: Any) -> None:
        for i, _ in enumerate(inp):
            if i % (n // 20) == 0:
                time.sleep(0.01)  # a slow consumer, now and then

    src = nanostream.from_iterable(range(n))
    src > slow_sink
    run = src.global_start(block=False, runner=runner, queue_size=1000, batch_size=100)
    assert run is not None
    depths: list[int] = []
    caps: list[int] = []
    while not run.wait(0.002):
        sink_stats = run.stats()["slow_sink"]
        depths.append(sink_stats.queue_depth)
        caps.append(sink_stats.queue_capacity)
    run.wait(60)
    stats = run.stats()
    assert stats["from_iterable"].items_out == n
    assert stats["slow_sink"].items_in == n
    assert caps and all(c == 1000 for c in caps)
    assert max(depths) <= 1000 + 100  # capacity, plus one batch racing in
    if runner in ("threads", "ray"):
        assert stats["from_iterable"].blocked_output_s > 0


def test_lone_item_is_not_held_back(runner: str, tmp_path: Path) -> None:
    """Under light load an item reaches the sink while its source is still running."""

    class Trickle(nanostream.NanoNode):
        def __init__(self, flag: str) -> None:
            super().__init__(name="trickle")
            self.flag = flag
            self.delivered = False

        def generator(self) -> Iterator[int]:
            yield 1
            # the sink creates the flag when item 1 reaches it: wait for that
            self.delivered = wait_for_file(self.flag, self.sleep)
            yield 2

    def relay(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x)

    sink, src = FlagSink(tmp_path / "got"), Trickle(str(tmp_path / "got"))
    src > relay > sink
    sink.global_start(runner=runner)
    assert src.delivered, "the first item was held back"
    assert sink.items == [1, 2]


def test_slow_node_with_a_backlog_still_delivers_promptly() -> None:
    """A slow node's outputs are not held until a whole batch is done."""
    gate = threading.Event()

    def slow(inp: Any, outp: Any) -> None:
        for x in inp:
            if x == 0:
                time.sleep(0.2)
            else:
                gate.wait(10)
            outp(x)

    sink = Collect(wait_for=1)
    nanostream.from_iterable(range(100)) > slow > sink
    run = sink.global_start(block=False)
    assert run is not None
    try:
        # item 0 must arrive although the node is stuck on item 1 with a backlog
        assert sink.seen.wait(10)
    finally:
        gate.set()
        run.wait(10)


def test_stats_fields(runner: str) -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(100), name="src") > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    run.wait(10)
    stats = run.stats()
    assert set(stats) == {"src", "sink"}
    assert stats["src"].items_out == 100 and stats["src"].items_in == 0
    assert stats["sink"].items_in == 100 and stats["sink"].queue_capacity > 0
    assert stats["sink"].state == "finished" and stats["sink"].errors == 0


def test_failed_node_stats(runner: str) -> None:
    def bad(inp: Any, outp: Any) -> None:
        for _ in inp:
            raise ValueError

    src = nanostream.from_iterable([1])
    src > bad
    run = src.global_start(block=False, runner=runner)
    assert run is not None
    with pytest.raises(nanostream.NodeFailed):
        run.wait(10)
    assert run.stats()["bad"].state == "failed"
    assert run.stats()["bad"].errors == 1
    assert run.state == "failed"


def test_monitor_warns_about_a_stalled_node(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()

    def stuck(inp: Any, outp: Any) -> None:
        gate.wait(20)
        for _ in inp:
            pass

    src = nanostream.from_iterable(range(10_000), name="fast")
    src > stuck
    with caplog.at_level(logging.INFO, logger="nanostream"):
        run = src.global_start(
            block=False,
            queue_size=10,
            batch_size=5,
            monitor_interval=0.01,
            stall_timeout=0.05,
            log_interval=0.01,
        )
        assert run is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "bottleneck" not in caplog.text:
            gate.wait(0.01)
        gate.set()
        run.wait(10)
    assert "node 'fast' has waited" in caplog.text
    assert "bottleneck: stuck" in caplog.text
    assert "fast: in=0 out=" in caplog.text


def test_keyboard_interrupt_stops_gracefully(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = nanostream.Run.wait

    def interrupted_once(self: nanostream.Run, timeout: float | None = None) -> bool:
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt
        return original(self, timeout)

    monkeypatch.setattr(nanostream.Run, "wait", interrupted_once)
    sink = Collect()
    nanostream.from_iterable(itertools.count()) > sink
    with pytest.raises(KeyboardInterrupt):
        sink.global_start()
    assert no_nanostream_threads()
