"""Acknowledgements: called once every derived item is done, never before, in order."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanostream
from nanostream.testing import Collect

WAIT = 30.0  # a bound on a wait that ends as soon as it can (Ray on a busy machine is slow)
ACK_RUNNERS = ("threads", "cooperative", "ray")  # the runners that call acknowledgements


@pytest.fixture(params=ACK_RUNNERS)
def ack_runner(request: pytest.FixtureRequest) -> str:
    """Each runner that calls acknowledgements (on ray, this module's code travels by value)."""
    name = str(request.param)
    if name == "ray":
        ray = request.getfixturevalue("ray_session")
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return name


class WrittenSink(Collect):
    """Collects, and appends each item (an error record's item) to ``path`` at once.

    Read by :class:`Written` from the source's process: on ray that is another one.
    """

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(**options)
        self.path = str(path)

    def process_item(self, item: Any) -> Iterator[Any]:
        value = item.item if isinstance(item, nanostream.ErrorRecord) else item
        with open(self.path, "a") as f:
            f.write(f"{value}\n")
        yield from super().process_item(item)


class Written:
    """``Written(paths)(x)``: has a :class:`WrittenSink` writing to one of ``paths`` got x?"""

    def __init__(self, *paths: Path) -> None:
        self.paths = [str(p) for p in paths]
        self.offsets = [0] * len(self.paths)
        self.seen: set[int] = set()

    def __call__(self, x: int) -> bool:
        if x not in self.seen:
            for i, path in enumerate(self.paths):
                if Path(path).exists():
                    with open(path) as f:
                        f.seek(self.offsets[i])
                        text = f.read()
                    complete = text[: text.rfind("\n") + 1]
                    self.offsets[i] += len(complete)
                    self.seen.update(int(line) for line in complete.splitlines())
        return x in self.seen


class AckedSource(nanostream.NanoNode):
    """Emits ``items`` as ``Acked``; after ``pause_after`` items waits for ``resume``."""

    def __init__(
        self,
        items: Iterable[int],
        *,
        check: Callable[[int], bool] | None = None,
        pause_after: int | None = None,
        name: str = "src",
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        self.items = items
        self.check = check
        self.pause_after = pause_after
        self.resume = threading.Event()
        self.emitted: list[int] = []
        self.acked: list[int] = []
        self.early: list[int] = []  # acked before the check said the item was done
        self.ack_count = threading.Condition()

    def generator(self) -> Iterator[Any]:
        for i, item in enumerate(self.items):
            if i == self.pause_after:
                self.resume.wait(WAIT)
            self.emitted.append(item)
            yield nanostream.Acked(item, partial(self._ack, item))

    def _ack(self, item: int) -> None:
        if self.check is not None and not self.check(item):
            self.early.append(item)
        with self.ack_count:
            self.acked.append(item)
            self.ack_count.notify_all()

    def wait_acked(self, n: int) -> bool:
        with self.ack_count:
            return self.ack_count.wait_for(lambda: len(self.acked) >= n, WAIT)


class Gate(nanostream.NanoNode):
    """Passes items on; blocks on item ``stop_at`` until ``opened`` is set."""

    def __init__(self, stop_at: int | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.stop_at = stop_at
        self.opened = threading.Event()
        self.blocked = threading.Event()

    def process_item(self, item: int) -> Iterator[int]:
        if item == self.stop_at:
            self.blocked.set()
            self.opened.wait(WAIT)
        yield item


def test_every_item_is_acked_once_in_order_after_the_sink(runner: str, tmp_path: Path) -> None:
    sink = WrittenSink(tmp_path / "sink")
    src = AckedSource(range(2000), check=Written(tmp_path / "sink"))
    src > Gate() > sink
    sink.global_start(runner=runner)
    assert sink.items == list(range(2000))
    assert src.early == []
    if runner in ACK_RUNNERS:
        assert src.acked == src.emitted == list(range(2000))
    else:  # the other runners do not support acks: never early is what they keep
        assert src.acked == []


def test_acks_come_while_the_stream_goes_on() -> None:
    sink = Collect()
    src = AckedSource(range(100), pause_after=50)
    src > Gate() > sink
    run = sink.global_start(block=False)
    assert run is not None
    try:
        assert src.wait_acked(50), "acks were held until the end of the stream"
        assert src.acked == list(range(50))
    finally:
        src.resume.set()
        run.wait(WAIT)
    assert src.acked == list(range(100))


def test_no_ack_before_the_sink_has_the_item() -> None:
    sink = Collect()
    src = AckedSource(range(100), batch_size=1)
    gate = Gate(stop_at=50)
    src > gate > sink
    run = sink.global_start(block=False)
    assert run is not None
    try:
        assert gate.blocked.wait(WAIT)
        assert src.wait_acked(50)
        assert src.acked == list(range(50))  # item 50 is stuck in the gate: not acked
    finally:
        gate.opened.set()
        run.wait(WAIT)
    assert src.acked == list(range(100))


def test_fan_out_waits_for_every_sink() -> None:
    fast, slow = Collect(name="fast"), Collect(name="slow")
    src = AckedSource(range(100), batch_size=1)
    gate = Gate(stop_at=30)
    src > fast
    src > gate > slow
    run = slow.global_start(block=False)
    assert run is not None
    try:
        assert gate.blocked.wait(WAIT) and src.wait_acked(30)
        assert src.acked == list(range(30))  # the fast sink has more; the slow one has not
    finally:
        gate.opened.set()
        run.wait(WAIT)
    assert src.acked == list(range(100)) and fast.items == slow.items == list(range(100))


def test_a_diamond_aligns_markers() -> None:
    """Items through the fast branch do not ack what the slow branch still holds."""
    sink = Collect()
    src = AckedSource(range(100), batch_size=1)
    fast, slow = Gate(name="fast"), Gate(stop_at=40, name="slow")
    join = Gate(name="join")
    src > fast > join
    src > slow > join
    join > sink
    run = sink.global_start(block=False)
    assert run is not None
    try:
        assert slow.blocked.wait(WAIT) and src.wait_acked(40)
        assert src.acked == list(range(40))
    finally:
        slow.opened.set()
        run.wait(WAIT)
    assert src.acked == list(range(100))
    assert sorted(sink.items) == sorted(list(range(100)) * 2)


class Pairs(nanostream.NanoNode):
    """Emits items in pairs; holds the odd one out until its partner comes."""

    holds_items = True

    def setup(self) -> None:
        self.kept: list[int] = []

    def process_item(self, item: int) -> Iterator[tuple[int, ...]]:
        self.kept.append(item)
        if len(self.kept) == 2:
            yield tuple(self.kept)
            self.kept = []
            self.release_items()
        else:
            self.release_items(keep=1)

    def cleanup(self) -> Iterator[tuple[int, ...]]:
        if self.kept:
            yield tuple(self.kept)


def test_a_node_that_holds_items_delays_their_acks() -> None:
    sink = Collect()

    def done(x: int) -> bool:
        return any(x in pair for pair in sink.items)

    src = AckedSource(range(21), check=done, batch_size=1, pause_after=11)
    src > Pairs() > sink
    run = sink.global_start(block=False)
    assert run is not None
    try:
        assert src.wait_acked(10)
        assert src.acked == list(range(10))  # item 10 waits in Pairs for its partner
    finally:
        src.resume.set()
        run.wait(WAIT)
    assert src.early == []
    assert src.acked == list(range(21))
    assert sink.items[-1] == (20,)


def test_an_undeclared_node_function_holds_acks_to_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended = threading.Event()

    def relay(inp: Iterable[int], outp: Callable[[Any], Any]) -> None:
        for x in inp:
            outp(x)
        ended.set()

    sink = Collect()
    src = AckedSource(range(500), check=lambda x: ended.is_set())
    src > relay > sink
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        sink.global_start()
    assert src.early == [] and src.acked == list(range(500))
    assert "node 'relay' may keep items between reads" in caplog.text


def test_a_node_function_declared_stateless_passes_acks_at_once() -> None:
    def relay(inp: Iterable[int], outp: Callable[[Any], Any]) -> None:
        for x in inp:
            outp(x)

    sink = Collect()
    src = AckedSource(range(100), pause_after=50)
    src > nanostream.as_node(relay, holds_items=False) > sink
    run = sink.global_start(block=False)
    assert run is not None
    try:
        assert src.wait_acked(50)
    finally:
        src.resume.set()
        run.wait(WAIT)
    assert src.acked == list(range(100))


def test_dead_lettered_items_are_acked_after_the_dead_letter_sink(
    runner: str, tmp_path: Path
) -> None:
    class Odd(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            if item % 2:
                raise ValueError(item)
            yield item

    sink, dead = WrittenSink(tmp_path / "sink"), WrittenSink(tmp_path / "dead")
    src = AckedSource(range(200), check=Written(tmp_path / "sink", tmp_path / "dead"))
    odd = Odd(on_error="skip")
    src > odd > sink
    odd.errors > dead
    sink.global_start(runner=runner)
    assert src.early == []
    assert len(sink.items) + len(dead.items) == 200
    if runner in ACK_RUNNERS:
        assert src.acked == list(range(200))


def test_a_failed_run_acks_only_what_was_done(runner: str, tmp_path: Path) -> None:
    class Explode(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            if item == 700:
                raise RuntimeError("boom")
            yield item

    sink = WrittenSink(tmp_path / "sink")
    src = AckedSource(itertools.count(), check=Written(tmp_path / "sink"))
    src > Explode() > sink
    with pytest.raises(nanostream.NodeFailed):
        sink.global_start(runner=runner)
    assert src.early == []
    assert 700 not in src.acked and set(src.acked) <= set(range(700))


def test_stop_drains_and_acks_everything_emitted(ack_runner: str, tmp_path: Path) -> None:
    """A stop while items are on their way: they reach the sink, and exactly the items
    emitted are acked.

    The stop comes once the sink has taken four queues' worth of items: a count that
    does not grow with the machine's load. (With batches of 32 on Ray each batch and its
    marker cross two actors with at most two calls in flight per link, about 100 ms a
    round trip on a busy machine: 5,000 items there took 23 to more than 30 s.)
    """
    queue = 256
    sink = WrittenSink(tmp_path / "sink", wait_for=4 * queue, name="sink")
    src = AckedSource(itertools.count(), check=Written(tmp_path / "sink"))
    src > Gate() > sink
    run = sink.global_start(block=False, queue_size=queue, batch_size=32, runner=ack_runner)
    assert run is not None
    try:
        assert sink.seen.wait(WAIT)
        before_stop = run.stats()["sink"].items_in
    finally:
        run.stop(timeout=30)
    assert run.state == "finished"
    assert len(sink.items) > before_stop  # what was on its way went on to the sink
    assert src.early == []
    assert src.acked == src.emitted == sink.items


def test_two_sources_into_one_sink(ack_runner: str) -> None:
    sink = Collect()
    a = AckedSource(range(0, 300), name="a")
    b = AckedSource(range(1000, 1300), name="b")
    merge = Gate(name="merge")
    a > merge
    b > merge
    merge > sink
    sink.global_start(runner=ack_runner)
    assert a.acked == list(range(300)) and b.acked == list(range(1000, 1300))


def test_a_source_without_outputs_acks_its_items(ack_runner: str) -> None:
    src = AckedSource(range(10))
    src.global_start(runner=ack_runner)
    assert src.acked == list(range(10))


def test_a_failing_ack_is_logged_and_the_run_goes_on(
    ack_runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Src(nanostream.NanoNode):
        def generator(self) -> Iterator[Any]:
            yield nanostream.Acked(1, lambda: 1 / 0)
            yield 2

    sink = Collect()
    Src(name="src") > sink
    with caplog.at_level(logging.ERROR, logger="nanostream"):
        sink.global_start(runner=ack_runner)
    assert sink.items == [1, 2]
    assert "acknowledgement callback" in caplog.text and "'src' failed" in caplog.text


def test_acks_without_a_run_are_never_called(caplog: pytest.LogCaptureFixture) -> None:
    src = AckedSource(range(10))
    out: list[int] = []
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        src.as_function()([], out.append)  # by hand: nothing can tell when items are done
    assert out == list(range(10)) and src.acked == []
    assert "does not support them" in caplog.text


# --------------------------------------------------------------------- property
shapes = st.lists(st.sampled_from(["relay", "pairs", "fanout", "skip"]), min_size=1, max_size=4)


# Not on ray: the nodes count into this test's own dicts, which actors would only copy.
@pytest.mark.parametrize("runner_name", [r for r in ACK_RUNNERS if r != "ray"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, n=st.integers(0, 60), batch=st.sampled_from([1, 3, 64]))
def test_random_pipelines_ack_everything_and_never_early(
    runner_name: str, shape: list[str], n: int, batch: int
) -> None:
    """Random chains of relays, pair batching, fan-out and skipping nodes.

    At each ack, the sinks must already have written the item as often as they will by
    the end of the run (a late write means the ack came early).
    """
    written: dict[int, int] = {}
    at_ack: dict[int, int] = {}
    lock = threading.Lock()

    class Count(nanostream.NanoNode):
        def process_item(self, item: Any) -> Iterator[Any]:
            if isinstance(item, nanostream.ErrorRecord):
                item = item.item
            with lock:
                for x in flatten(item):
                    written[x] = written.get(x, 0) + 1
            yield from ()

    class Skip(nanostream.NanoNode):
        def process_item(self, item: Any) -> Iterator[Any]:
            if not isinstance(item, tuple) and item % 5 == 0:
                raise ValueError(item)
            yield item

    def flatten(item: Any) -> Iterator[int]:
        if isinstance(item, tuple):
            for part in item:
                yield from flatten(part)
        else:
            yield item

    def check(x: int) -> bool:
        with lock:
            at_ack[x] = written.get(x, 0)
        return True

    src = AckedSource(range(n), batch_size=batch, check=check)
    last: nanostream.NanoNode = src
    for kind in shape:
        node: nanostream.NanoNode
        if kind == "pairs":
            node = Pairs()
        elif kind == "skip":
            node = Skip(on_error="skip")
            node.errors > Count()
        else:
            if kind == "fanout":
                last > Count()
            node = Gate()
        last > node
        last = node
    last > Count()
    src.global_start(runner=runner_name)
    assert src.acked == list(range(n))
    assert at_ack == written


def test_a_marker_after_released_items_passes_at_once(ack_runner: str) -> None:
    """The marker of the last item of a released pair does not wait for a next item."""
    sink = Collect()
    # On ray the test cannot resume a source in an actor: no pause (see tests/runners).
    src = AckedSource(range(8), batch_size=1, pause_after=None if ack_runner == "ray" else 4)
    src > Pairs() > sink
    run = sink.global_start(block=False, runner=ack_runner)
    assert run is not None
    try:
        # Cooperative: the paused source holds the one thread, so the acks come after it.
        if ack_runner == "threads":
            with src.ack_count:  # well within the source's pause (WAIT)
                done = src.ack_count.wait_for(lambda: len(src.acked) >= 4, WAIT / 3)
            assert done, f"only {src.acked} were acked while the source paused"
    finally:
        src.resume.set()
        run.wait(WAIT)
    assert src.acked == list(range(8))


def test_a_release_inside_a_large_slice_covers_exactly_what_was_read() -> None:
    """Pairs releases after each pair; slices of many items do not delay the acks."""
    sink = Collect()
    src = AckedSource(range(80), batch_size=64, pause_after=40)
    src > Pairs() > sink
    run = sink.global_start(block=False)
    assert run is not None
    try:
        with src.ack_count:  # well within the source's pause (WAIT)
            done = src.ack_count.wait_for(lambda: len(src.acked) >= 40, WAIT / 3)
        assert done, f"only {len(src.acked)} of 40 were acked while the source paused"
    finally:
        src.resume.set()
        run.wait(WAIT)
    assert src.acked == list(range(80))


class SparseAckedSource(nanostream.NanoNode):
    """Emits ``range(n)``, only every ``every``-th item with an ack (a commit point).

    Each ack records the item and how many items the source had emitted by then; it
    also notes an item acked before ``written(item)`` (a :class:`Written`) says the sink
    had it.
    """

    def __init__(self, n: int, every: int, written: Written, **options: Any) -> None:
        super().__init__(name="src", **options)
        self.n, self.every, self.written = n, every, written
        self.emitted = 0
        self.acked: list[tuple[int, int]] = []
        self.early: list[int] = []

    def generator(self) -> Iterator[Any]:
        for i in range(self.n):
            self.emitted = i + 1
            if i % self.every == self.every - 1:
                yield nanostream.Acked(i, partial(self._ack, i))
            else:
                yield i

    def _ack(self, item: int) -> None:
        if not self.written(item):
            self.early.append(item)
        self.acked.append((item, self.emitted))


def test_sparse_acks_are_called_as_the_stream_goes_on(ack_runner: str, tmp_path: Path) -> None:
    """An ack on every 1000th item comes once the items up to it are written, not at the
    end: with bounded queues the source can only be a few batches ahead of the sink."""
    sink = WrittenSink(tmp_path / "sink")
    src = SparseAckedSource(20_000, 1000, Written(tmp_path / "sink"))
    src > Gate() > sink
    sink.global_start(runner=ack_runner, queue_size=256, batch_size=32)
    assert [item for item, _ in src.acked] == list(range(999, 20_000, 1000))
    assert src.early == []
    # Ahead by at most the two queues and a few batches (1000 leaves a wide margin).
    late = [(item, at) for item, at in src.acked if at - item > 1000]
    assert late == [], f"acks called long after their item was written: {late}"


def _one_source_coordinator() -> tuple[Any, list[Any]]:
    """An ``AckCoordinator`` for ``src > sink``, and the markers it injects (all taken)."""
    from nanostream._core.acks import AckCoordinator, Marker

    src = nanostream.from_iterable([], name="src")
    _ = src > Collect(name="sink")
    sent: list[Marker] = []

    def inject(_source: int, marker: Marker, _final: bool) -> bool:
        sent.append(marker)
        return True

    return AckCoordinator(nanostream.pipeline_of(src).plan(), inject), sent


def test_a_source_has_at_most_max_in_flight_markers_on_their_way() -> None:
    """Markers beyond the limit wait; the one that comes back sends the next, covering all."""
    from nanostream._core.acks import MAX_IN_FLIGHT

    coordinator, sent = _one_source_coordinator()
    called: list[int] = []
    for i in range(MAX_IN_FLIGHT + 10):
        coordinator.attach(0, partial(called.append, i))
    assert len(sent) == MAX_IN_FLIGHT and coordinator.pending() == MAX_IN_FLIGHT + 10
    coordinator.reached(sent[0])
    assert called == [0] and len(sent) == MAX_IN_FLIGHT + 1  # the next covers the other 10
    for marker in sent[1:]:
        coordinator.reached(marker)
    assert called == list(range(MAX_IN_FLIGHT + 10)) and coordinator.pending() == 0


def test_an_ack_being_called_is_still_pending() -> None:
    """A runner waits for a source's acks with ``pending()`` (Ray: the source's actor,
    before it reports its end and its state): an ack counts until it has returned."""
    coordinator, sent = _one_source_coordinator()
    seen: list[int] = []
    for _ in range(3):
        coordinator.attach(0, lambda: seen.append(coordinator.pending()))
    coordinator.reached(sent[-1])
    assert seen == [3, 2, 1] and coordinator.pending() == 0


class SlowAcks(nanostream.NanoNode):
    """Emits ``n`` acked items one by one; each ack does some work before it records its
    item (on ray, in the source's actor while the source is ending)."""

    def __init__(self, n: int) -> None:
        super().__init__(name="src", batch_size=1)
        self.n = n
        self.acked: list[int] = []

    def generator(self) -> Iterator[Any]:
        for i in range(self.n):
            yield nanostream.Acked(i, partial(self._ack, i))

    def _ack(self, i: int) -> None:
        sum(range(20_000))  # work that takes a while: the source may have ended meanwhile
        self.acked.append(i)


def test_the_run_ends_after_the_sources_last_ack_returned(ack_runner: str) -> None:
    """Every ack has returned when the run ends (on ray: the source's state comes back
    with every ack recorded); see also test_ray_actor.py for the exact interleaving."""
    src = SlowAcks(300)
    sink = Collect()
    src > sink
    sink.global_start(runner=ack_runner)
    assert sink.items == list(range(300))
    assert src.acked == list(range(300))
