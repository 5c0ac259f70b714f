"""The threads runner places its computing node threads on one core (``runners/_placement``).

Every node keeps its own thread; only where the kernel runs it changes. So the nodes
that wait still wait in parallel, and every engine behaviour (stats, errors, policies,
acknowledgements, back-pressure) is the one of a thread per node.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.runners import _placement
from nanostream.runners._placement import STARVED, CoreSharing, Sample, choose_shared

linux = pytest.mark.skipif(
    not _placement.SUPPORTED or len(os.sched_getaffinity(0)) < 2,
    reason="thread placement needs Linux and two cores",
)


@pytest.fixture
def roomy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine has room (whatever its load average): sharing a core is not refused."""
    monkeypatch.setattr(CoreSharing, "busy_machine", lambda self, own=0.0: False)


# ----------------------------------------------------------------- the decision
def test_computing_threads_share_a_core_waiting_ones_do_not() -> None:
    samples = {0: Sample(0.3), 1: Sample(0.3), 2: Sample(0.01), 3: Sample(0.3)}
    assert choose_shared(samples) == {0, 1, 3}


def test_threads_computing_in_parallel_are_left_spread() -> None:
    # Together more than a core: the GIL is released, they need both.
    assert choose_shared({0: Sample(0.9), 1: Sample(0.8)}) == frozenset()


def test_one_computing_thread_alone_is_left_where_it_is() -> None:
    assert choose_shared({0: Sample(0.9), 1: Sample(0.0)}) == frozenset()


class _FakeThread:
    def __init__(self, tid: int) -> None:
        self.native_id = tid

    def is_alive(self) -> bool:
        return True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """CPU times, cores and placements of fake threads, and a clock, set by the test."""
    state: dict[str, Any] = {"cpu": {}, "core": {}, "placed": {}, "now": 0.0, "load": 0.5}
    monkeypatch.setattr(os, "getloadavg", lambda: (state["load"], 0.0, 0.0))
    monkeypatch.setattr(_placement, "SUPPORTED", True)
    monkeypatch.setattr(_placement, "_cpu_ns", state["cpu"].get)
    monkeypatch.setattr(_placement, "_current_cpu", state["core"].get)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(
        os, "sched_setaffinity", lambda tid, cores: state["placed"].__setitem__(tid, set(cores))
    )
    return state


def _sharing(fake: dict[str, Any], n: int) -> CoreSharing:
    sharing = CoreSharing([_FakeThread(100 + i) for i in range(n)], "test")  # type: ignore[list-item]
    sharing.clock = lambda: fake["now"]
    for i in range(n):
        fake["cpu"][100 + i] = 0
        fake["core"][100 + i] = i % 2
    sharing._sample()
    return sharing


def _advance(fake: dict[str, Any], shares: list[float], seconds: float = 1.0) -> None:
    """``seconds`` pass, in which thread i uses ``shares[i]`` of a core."""
    fake["now"] += seconds
    for i, share in enumerate(shares):
        fake["cpu"][100 + i] += int(share * seconds * 1e9)


def test_computing_threads_go_to_the_busiest_ones_core(fake: dict[str, Any]) -> None:
    sharing = _sharing(fake, 3)
    _advance(fake, [0.3, 0.5, 0.01])  # thread 1 (on core 1) is the busiest
    sharing.step()
    assert sharing.shared == {0, 1} and sharing.core == 1
    assert fake["placed"] == {100: {1}, 101: {1}}  # the waiting thread keeps both cores


def test_a_thread_that_starts_computing_joins_the_shared_core(fake: dict[str, Any]) -> None:
    sharing = _sharing(fake, 3)
    _advance(fake, [0.4, 0.5, 0.0])
    sharing.step()
    _advance(fake, [0.35, 0.4, 0.2])
    sharing.step()
    assert sharing.shared == {0, 1, 2} and fake["placed"][102] == {1}


def test_starved_threads_get_every_core_back_and_wait_before_sharing_again(
    fake: dict[str, Any],
) -> None:
    sharing = _sharing(fake, 2)
    _advance(fake, [0.5, 0.5])
    sharing.step()
    assert sharing.shared == {0, 1}
    _advance(fake, [0.5 * STARVED, 0.5 * STARVED - 0.01])  # less than they had spread
    sharing.step()
    assert sharing.shared == frozenset()
    assert fake["placed"] == {100: {0, 1}, 101: {0, 1}}
    _advance(fake, [0.4, 0.4], seconds=0.5)  # within the back-off (1 s): not shared again
    sharing.step()
    assert sharing.shared == frozenset()
    _advance(fake, [0.4, 0.4], seconds=0.6)
    sharing.step()
    assert sharing.shared == {0, 1}


def test_on_a_busy_machine_threads_do_not_share_a_core(fake: dict[str, Any]) -> None:
    sharing = _sharing(fake, 2)
    fake["load"] = 3.0  # the run's threads use one core: the other processes want two
    _advance(fake, [0.5, 0.5])
    sharing.step()
    assert sharing.shared == frozenset()
    fake["load"] = 2.5  # the others want one and a half: room for the run on one core
    _advance(fake, [0.5, 0.5])
    sharing.step()
    assert sharing.shared == {0, 1}
    fake["load"] = 3.5  # it got busy: every core back
    _advance(fake, [0.5, 0.5])
    sharing.step()
    assert sharing.shared == frozenset() and fake["placed"][100] == {0, 1}


def test_the_runs_own_threads_do_not_make_the_machine_busy(fake: dict[str, Any]) -> None:
    """A load average of two on two cores, of which the run's own computing threads are
    one: one other busy process. Sharing a core is what helps then (the run's threads on
    one core, the other process on the other)."""
    sharing = _sharing(fake, 3)
    fake["load"] = 2.0
    _advance(fake, [0.3, 0.4, 0.3])
    sharing.step()
    assert sharing.shared == {0, 1, 2}


def test_threads_that_used_more_than_a_core_are_starved_only_below_one_core(
    fake: dict[str, Any],
) -> None:
    """Spread, threads taking turns under the GIL may use a little more than one core
    together (up to ``GIL_BOUND``); one core can give them only one: 0.9 of a core is
    not starved (it is under ``STARVED`` of the 1.15 they had)."""
    sharing = _sharing(fake, 2)
    _advance(fake, [0.6, 0.55])
    sharing.step()
    assert sharing.shared == {0, 1}
    _advance(fake, [0.45, 0.45])
    sharing.step()
    assert sharing.shared == {0, 1}
    _advance(fake, [0.35, 0.4])  # less than STARVED of one core: starved
    sharing.step()
    assert sharing.shared == frozenset()


@linux
def test_a_threads_cpu_time_is_read_from_its_clock() -> None:
    tid = threading.get_native_id()
    before = time.thread_time_ns()
    read = _placement._cpu_ns(tid)
    after = time.thread_time_ns()
    assert read is not None and before <= read <= after
    assert _placement._cpu_ns(os.getppid()) is None  # the parent's: not a thread of ours


def test_a_thread_at_its_exit_is_not_sampled(fake: dict[str, Any]) -> None:
    # Its id may be given to another thread of the process once it ends: the run's hold
    # says it has reached its exit (though still alive), so its clock is not read.
    exiting: set[int] = set()

    @contextmanager
    def hold(i: int) -> Iterator[bool]:
        yield i not in exiting

    threads = [_FakeThread(100), _FakeThread(101)]
    sharing = CoreSharing(threads, "test", hold=hold)  # type: ignore[arg-type]
    sharing.clock = lambda: fake["now"]
    fake["cpu"].update({100: 0, 101: 0})
    sharing._sample()
    exiting.add(1)
    _advance(fake, [0.5, 0.5])
    assert set(sharing._sample()) == {0}


def test_threads_that_keep_their_cpu_stay_shared(fake: dict[str, Any]) -> None:
    sharing = _sharing(fake, 2)
    _advance(fake, [0.5, 0.5])
    sharing.step()
    _advance(fake, [0.45, 0.45])  # within STARVED of what they had
    sharing.step()
    assert sharing.shared == {0, 1}


def test_without_two_cores_nothing_is_placed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(_placement, "SUPPORTED", True)
    sharing = CoreSharing([], "one core")
    sharing.start()
    assert not sharing.enabled
    sharing.finish()
    sharing.join()


# ----------------------------------------------------------------- in a run
@linux
def test_computing_nodes_of_a_run_share_a_core_a_waiting_node_keeps_both(roomy: None) -> None:
    _computing_nodes_share_a_core()


@linux
def test_with_share_cores_true_they_share_a_core_on_a_busy_machine_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (40.0, 40.0, 40.0))
    assert CoreSharing([], "busy").busy_machine()
    _computing_nodes_share_a_core(share_cores=True)


def _computing_nodes_share_a_core(**options: Any) -> None:
    every = os.sched_getaffinity(0)
    seen: dict[str, set[int]] = {}
    done = threading.Event()

    def source(inp: Any, outp: Any) -> None:
        i, limit = 0, time.monotonic() + 60  # the limit: a failing test still ends
        while not done.is_set() and (i % 1000 or time.monotonic() < limit):
            outp(i)
            i += 1
        done.set()

    def compute(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x + 1)

    def sink(inp: Any, outp: Any) -> None:
        for _ in inp:
            if not done.is_set() and len(cores := os.sched_getaffinity(0)) == 1:
                seen["sink"] = cores
                done.set()

    def waits(inp: Any, outp: Any) -> None:  # a source that never uses the CPU: it waits
        done.wait(60)
        seen["waits"] = os.sched_getaffinity(0)

    tail = nanostream.as_node(sink, name="sink")
    nanostream.as_node(source, name="source") > nanostream.as_node(compute, name="compute") > tail
    nanostream.as_node(waits, name="waits") > tail
    run = tail.global_start(block=False, **options)
    assert run is not None and run.wait(90)
    assert "sink" in seen, "the computing nodes were never placed on one core"
    assert seen["waits"] == every  # a waiting node keeps every core


@linux
def test_stats_errors_and_acks_are_per_node_while_sharing_a_core(roomy: None) -> None:
    acked: list[int] = []
    placed = threading.Event()

    class Numbers(nanostream.NanoNode):
        def generator(self) -> Any:
            i, limit = 0, time.monotonic() + 60  # the limit: a failing test still ends
            while (not placed.is_set() or i < 5000) and (i % 1000 or time.monotonic() < limit):
                yield nanostream.Acked(i, lambda i=i: acked.append(i))
                i += 1

    class Double(nanostream.NanoNode):
        def process_item(self, item: int) -> Any:
            if len(os.sched_getaffinity(0)) == 1:
                placed.set()
            if item < 0:
                raise ValueError("negative")
            yield 2 * item

    sink = nanostream.testing.Collect(name="sink")
    numbers = Numbers(name="numbers")
    numbers > Double(name="double") > sink
    run = sink.global_start(block=False)
    assert run.wait(60)
    assert placed.is_set()
    stats = run.stats()
    n = len(sink.items)
    assert stats["numbers"].items_out == stats["double"].items_in == n
    assert stats["double"].items_out == stats["sink"].items_in == n
    assert sorted(acked) == list(range(n))


@linux
def test_an_error_in_a_node_sharing_a_core_is_named_by_that_node(roomy: None) -> None:
    def source(inp: Any, outp: Any) -> None:
        i, limit = 0, time.monotonic() + 60  # the limit: a failing test still ends
        while i % 1000 or time.monotonic() < limit:
            outp(i)
            i += 1

    def fails(inp: Any, outp: Any) -> None:
        for x in inp:
            if len(os.sched_getaffinity(0)) == 1:
                raise ValueError(f"boom at {x}")
            outp(x)

    tail = nanostream.as_node(lambda inp, outp: [None for _ in inp], name="sink")
    nanostream.as_node(source, name="source") > nanostream.as_node(fails, name="fails") > tail
    with pytest.raises(nanostream.NodeFailed) as info:
        tail.global_start()
    assert info.value.node == "fails"
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.__cause__.__traceback__ is not None


# ----------------------------------------------------------------- waiting steps overlap
def test_two_waiting_steps_wait_at_the_same_time() -> None:
    # The source waits (a socket) while the second waiting step (an API call) is inside
    # its own wait: each hands the other a token, so they can only proceed together. In
    # one thread this would deadlock (and fail at the 10 s safety limit).
    in_api, in_socket = threading.Semaphore(0), threading.Semaphore(0)
    overlapped: list[bool] = []
    items = 20

    def socket_source(inp: Any, outp: Any) -> None:
        for i in range(items):
            if i:  # wait, as on a socket, until the API step is inside its wait
                in_socket.release()
                overlapped.append(in_api.acquire(timeout=10))
            outp(i)
        in_socket.release()

    def cheap(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x * 2)

    def api_call(inp: Any, outp: Any) -> None:
        for x in inp:
            in_api.release()  # inside the API call now
            overlapped.append(in_socket.acquire(timeout=10))
            outp(x)

    sink = nanostream.testing.Collect(name="sink")
    (
        nanostream.as_node(socket_source, name="socket")
        > nanostream.as_node(cheap, name="cheap")
        > nanostream.as_node(api_call, name="api")
        > sink
    )
    sink.global_start(runner="threads")
    assert sink.items == [2 * i for i in range(items)]
    assert overlapped and all(overlapped)


def test_the_figures_in_the_design_page_are_the_ones_used() -> None:
    text = " ".join((Path(__file__).parents[2] / "docs" / "design.md").read_text().split())
    assert "(10 ms), then at doubling intervals up to 40 ms" in text
    assert (_placement.FIRST_CHECK_S, _placement.MAX_CHECK_S) == (0.01, 0.04)
    assert "at least 5% of a core" in text and _placement.COMPUTING == 0.05
    assert "at most 1.2 cores" in text and _placement.GIL_BOUND == 1.2
    assert "less than 80% of the CPU time" in text and STARVED == 0.8
    assert "starts at 1 s and doubles" in text and _placement.FIRST_BACKOFF_S == 1.0
    assert "less what the run's node threads use now, below one runnable task per core" in text


@linux
def test_the_placement_thread_is_the_runs_and_is_joined() -> None:
    names: list[str] = []

    def source(inp: Any, outp: Any) -> None:
        limit = time.monotonic() + 30  # started right after the node threads
        while "nanostream-placement:placed" not in names and time.monotonic() < limit:
            names[:] = [t.name for t in threading.enumerate()]
        outp(1)

    sink = nanostream.testing.Collect(name="sink")
    nanostream.as_node(source, name="source") > sink
    sink.global_start(name="placed")
    assert "nanostream-placement:placed" in names
    assert not [t for t in threading.enumerate() if t.name.startswith("nanostream-placement")]


@linux
def test_a_thread_started_by_a_node_on_the_shared_core_gets_every_core_back(
    roomy: None,
) -> None:
    # A pool the node starts (or a library's workers) inherits the node thread's one core.
    every = os.sched_getaffinity(0)
    seen: dict[str, set[int]] = {}
    done = threading.Event()

    def source(inp: Any, outp: Any) -> None:
        i, limit = 0, time.monotonic() + 60  # the limit: a failing test still ends
        while not done.is_set() and (i % 1000 or time.monotonic() < limit):
            outp(i)
            i += 1
        done.set()

    def helper() -> None:
        seen["inherited"] = os.sched_getaffinity(0)
        deadline = time.monotonic() + 30
        while os.sched_getaffinity(0) != every and time.monotonic() < deadline:
            threading.Event().wait(0.01)  # polls the kernel's placement: nothing to wait on
        seen["later"] = os.sched_getaffinity(0)

    def sink(inp: Any, outp: Any) -> None:
        for _ in inp:
            if "inherited" not in seen and len(os.sched_getaffinity(0)) == 1:
                started = threading.Thread(target=helper)
                started.start()
                started.join()
                done.set()

    tail = nanostream.as_node(sink, name="sink")
    nanostream.as_node(source, name="source") > tail
    run = tail.global_start(block=False)
    assert run is not None and run.wait(90)
    assert "inherited" in seen, "the computing nodes were never placed on one core"
    assert len(seen["inherited"]) == 1  # it started on the node's core
    assert seen["later"] == every


# ----------------------------------------------------------------- share_cores=
def test_with_share_cores_false_no_thread_is_placed(monkeypatch: pytest.MonkeyPatch) -> None:
    placed: list[int] = []
    monkeypatch.setattr(os, "sched_setaffinity", lambda tid, cores: placed.append(tid))
    sink = nanostream.testing.Collect()
    nanostream.from_iterable(range(100_000)) > nanostream.as_node(_plus_one) > sink
    run = sink.global_start(block=False, share_cores=False)
    assert run is not None and run.wait(60)
    assert run.placement.share is False and not run.placement.enabled  # type: ignore[attr-defined]
    assert not run.placement._started  # type: ignore[attr-defined]
    assert placed == [] and len(sink.items) == 100_000


def test_share_cores_true_shares_whatever_the_load(fake: dict[str, Any]) -> None:
    sharing = _sharing(fake, 2)
    sharing.share = True
    fake["load"] = 8.0
    _advance(fake, [0.5, 0.5])
    sharing.step()
    assert sharing.shared == {0, 1}
    _advance(fake, [0.5 * STARVED - 0.05, 0.5 * STARVED - 0.05])  # starved: spread again
    sharing.step()
    assert sharing.shared == frozenset()


def test_share_cores_is_checked_when_the_graph_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def pipeline() -> nanostream.testing.Collect:
        sink = nanostream.testing.Collect()
        nanostream.from_iterable([1]) > sink
        return sink

    with pytest.raises(nanostream.GraphError, match="share_cores must be True, False or None"):
        pipeline().global_start(share_cores="no")

    class OwnRunner:  # a user's runner, which says nothing of cores
        name = "own"

        def start(self, plan: Any) -> Any:
            raise AssertionError("not started")

    for runner, name in (("cooperative", "cooperative"), (OwnRunner(), "own")):
        with pytest.raises(nanostream.GraphError, match=f"the '{name}' runner does not place"):
            pipeline().global_start(runner=runner, share_cores=False)
    monkeypatch.setattr(_placement, "SUPPORTED", False)  # not Linux
    before = threading.active_count()
    with pytest.raises(nanostream.GraphError, match="share_cores=True needs Linux and two cores"):
        pipeline().global_start(share_cores=True)
    assert threading.active_count() == before  # nothing started
    sink = pipeline()
    sink.global_start(share_cores=False)  # turning it off is always possible
    assert sink.items == [1]


# ----------------------------------------------------------------- a thread's id
def test_a_thread_is_placed_only_while_held_and_running(fake: dict[str, Any]) -> None:
    """The thread's id is used only inside ``hold(i)``, which keeps it from ending."""
    running = {100: True, 101: False}  # 101 reached its exit: its id may be another's now
    held: list[int] = []

    @contextmanager
    def hold(i: int) -> Iterator[bool]:
        held.append(i)
        yield running[100 + i]
        held.remove(i)

    def setaffinity(tid: int, cores: set[int]) -> None:
        assert held == [tid - 100], "placed outside the thread's hold"
        fake["placed"][tid] = set(cores)

    os.sched_setaffinity = setaffinity  # restored by the fixture's monkeypatch
    sharing = CoreSharing(
        [_FakeThread(100), _FakeThread(101)],  # type: ignore[list-item]
        "held",
        hold=hold,
    )
    sharing.core = 0
    sharing._place(frozenset({0, 1}))
    assert sharing.shared == {0} and fake["placed"] == {100: {0}}
    sharing._spread(frozenset({0, 1}))
    assert fake["placed"] == {100: {0, 1}}


def test_the_threads_runner_holds_a_node_thread_from_ending() -> None:
    release = threading.Event()
    started = threading.Event()

    def waits(inp: Any, outp: Any) -> None:
        started.set()
        release.wait(60)

    sink = nanostream.testing.Collect()
    nanostream.as_node(waits, name="waits") > sink
    run: Any = sink.global_start(block=False, share_cores=False)
    assert started.wait(60)
    with run._hold(0) as running:
        assert running
        release.set()  # the node function returns, but its thread cannot pass its exit
        assert not run._exiting[0] and run.threads[0].is_alive()
    assert run.wait(60)
    with run._hold(0) as running:
        assert not running


def _plus_one(inp: Any, outp: Any) -> None:
    for x in inp:
        outp(x + 1)
