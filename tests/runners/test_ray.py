"""The Ray runner: the engine's behaviours on one local Ray instance shared by the session.

Nodes run in actor processes here, so tests read results from what is copied back to the
driver (class nodes' attributes, e.g. ``Collect.items``) and from ``run.stats()``; closures
over test variables would see copies.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'nanostream[ray]'")

import nanostream  # noqa: E402
from nanostream.runners import available_runners, get_runner  # noqa: E402
from nanostream.runners.ray import (  # noqa: E402
    RayNodeOptions,
    RayRunner,
    RayRunnerError,
    RemoteError,
)
from nanostream.runners.ray._transport import stable_hash  # noqa: E402
from nanostream.runners.ray._wire import dumps, loads  # noqa: E402
from nanostream.testing import Collect  # noqa: E402


@pytest.fixture(autouse=True)
def local_ray(ray_session: Any) -> None:
    """The session's local Ray instance (tests/conftest.py: 2 CPUs, no dashboard)."""
    # The workers cannot import this test module by name; send its classes by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` (it asks remote actors; there is no local event to wait on)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(0.02)
    return False


class Double(nanostream.NanoNode):
    def process_item(self, item: int) -> Iterator[int]:
        yield item * 2


class Pairs(nanostream.NanoNode):
    def setup(self) -> None:
        self.pending: Any = None

    def process_item(self, item: Any) -> Iterator[Any]:
        if self.pending is None:
            self.pending = item
        else:
            yield (self.pending, item)
            self.pending = None

    def cleanup(self) -> Iterator[Any]:
        if self.pending is not None:
            yield (self.pending, None)


def add_one(inp: Any, outp: Any) -> None:
    for x in inp:
        outp(x + 1)


def with_pid(inp: Any, outp: Any) -> None:
    for x in inp:
        outp((x, os.getpid()))


class CountPerKey(nanostream.NanoNode):
    """A keyed, stateful node: emits (key, count) for each key it saw, at the end."""

    def setup(self) -> None:
        self.counts: Counter[int] = Counter()

    def process_item(self, item: int) -> Iterator[Any]:
        self.counts[item % 5] += 1
        yield from ()

    def cleanup(self) -> Iterator[Any]:
        for key, count in sorted(self.counts.items()):
            yield (key, count, os.getpid())


# --------------------------------------------------------------------- graph shapes
def test_chain_of_classes_and_node_functions() -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(1000), name="src") > Double(name="double") > add_one > sink
    assert sink.global_start(runner="ray") is None
    assert sink.items == [x * 2 + 1 for x in range(1000)]
    assert sink.seen.is_set() and sink.ended.is_set()  # events copied back


def test_fan_out_sends_everything_to_every_branch() -> None:
    src = nanostream.from_iterable(range(500), name="src")
    left, right = Collect(name="left"), Collect(name="right")
    src > left
    src > Double(name="double") > right
    src.global_start(runner="ray", batch_size=16)
    assert left.items == list(range(500))
    assert right.items == [x * 2 for x in range(500)]


def test_fan_in_ends_after_every_upstream_ended() -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(300), name="a") > sink
    nanostream.from_iterable(range(1000, 1200), name="b") > sink
    sink.global_start(runner="ray", batch_size=8)
    assert sorted(sink.items) == [*range(300), *range(1000, 1200)]
    # each upstream's items arrive in their own order
    assert [x for x in sink.items if x < 1000] == list(range(300))
    assert [x for x in sink.items if x >= 1000] == list(range(1000, 1200))


def test_diamond() -> None:
    src = nanostream.from_iterable(range(200), name="src")
    sink = Collect(name="sink")
    src > Double(name="double") > sink
    src > add_one > sink
    sink.global_start(runner="ray", batch_size=10)
    assert sorted(sink.items) == sorted([x * 2 for x in range(200)] + [x + 1 for x in range(200)])


def test_cleanup_flushes_final_outputs() -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable("abcde") > Pairs() > sink
    sink.global_start(runner="ray")
    assert sink.items == [("a", "b"), ("c", "d"), ("e", None)]


def test_named_ports() -> None:
    def split(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(nanostream.TaggedOutput("even" if x % 2 == 0 else "odd", x))

    evens, odds = Collect(name="evens"), Collect(name="odds")
    src = nanostream.from_iterable(range(10))
    node = nanostream.as_node(split)
    src > node
    node["even"] > evens
    node["odd"] > odds
    src.global_start(runner="ray")
    assert (evens.items, odds.items) == ([0, 2, 4, 6, 8], [1, 3, 5, 7, 9])


# --------------------------------------------------------------------- errors
def test_failure_raises_node_failed_with_the_remote_traceback() -> None:
    def explode(inp: Any, outp: Any) -> None:
        for x in inp:
            if x == 500:
                raise KeyError("boom")
            outp(x)

    sink = Collect(name="sink")
    nanostream.from_iterable(itertools.count(), name="src") > explode > sink
    run = sink.global_start(runner="ray", block=False)
    assert run is not None
    with pytest.raises(nanostream.NodeFailed) as info:
        run.wait(60)
    assert info.value.node == "explode"
    cause = info.value.__cause__
    assert isinstance(cause, KeyError) and str(cause) == "'boom'"
    assert "in explode" in cause.remote_traceback  # type: ignore[attr-defined]
    frames = []
    tb = cause.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_name, tb.tb_frame.f_code.co_filename))
        tb = tb.tb_next
    assert ("explode", __file__) in frames  # the remote frames, rebuilt
    assert run.state == "failed"
    stats = run.stats()
    assert stats["explode"].state == "failed" and stats["explode"].errors == 1
    assert stats["src"].state == "aborted"


@pytest.mark.parametrize("where", ["generator", "setup", "cleanup"])
def test_failure_in_hooks(where: str) -> None:
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
            yield item

        def cleanup(self) -> None:
            if where == "cleanup":
                raise ValueError(where)

    src = Src(name="src")
    src > Proc(name="proc") > Collect()
    with pytest.raises(nanostream.NodeFailed) as info:
        src.global_start(runner="ray")
    assert info.value.node == ("src" if where == "generator" else "proc")
    assert str(info.value.__cause__) == where


class Odd(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")  # plain pickle makes Odd("1/2"), which cannot load
        self.a = a


def test_exceptions_come_back_with_their_class_attributes_and_chain() -> None:
    def fails(inp: Any, outp: Any) -> None:
        for _ in inp:
            try:
                {}["key"]
            except KeyError as exc:
                raise Odd(1, 2) from exc

    src = nanostream.from_iterable([1])
    src > fails
    with pytest.raises(nanostream.NodeFailed) as info:
        src.global_start(runner="ray")
    cause = info.value.__cause__
    assert type(cause) is Odd and cause.args == ("1/2",) and cause.a == 1
    assert isinstance(cause.__cause__, KeyError)
    assert "raise Odd(1, 2) from exc" in cause.remote_traceback  # type: ignore[attr-defined]


def test_unpicklable_exception_comes_back_as_remote_error() -> None:
    class Holds(Exception):
        def __init__(self) -> None:
            super().__init__("holds a generator")
            self.gen = (x for x in range(3))  # cannot be pickled

    def fails(inp: Any, outp: Any) -> None:
        for _ in inp:
            raise Holds

    src = nanostream.from_iterable([1])
    src > fails
    with pytest.raises(nanostream.NodeFailed) as info:
        src.global_start(runner="ray")
    cause = info.value.__cause__
    assert isinstance(cause, RemoteError)
    assert cause.type_name.endswith("Holds") and "holds a generator" in str(cause)
    assert "raise Holds" in cause.remote_traceback


def test_node_function_returning_early_is_an_error() -> None:
    def first_only(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x)
            return

    src = nanostream.from_iterable(range(10_000))
    src > first_only
    with pytest.raises(nanostream.NodeFailed) as info:
        src.global_start(runner="ray")
    assert isinstance(info.value.__cause__, nanostream.NodeProtocolError)


# --------------------------------------------------------------------- stop, abort, stats
class Counting(nanostream.NanoNode):
    def generator(self) -> Iterator[int]:
        yield from itertools.count()


class Relay(nanostream.NanoNode):
    def process_item(self, item: int) -> Iterator[int]:
        yield item

    def cleanup(self) -> Iterator[str]:
        yield "cleaned"


def test_stop_drains_an_infinite_source() -> None:
    sink = Collect(name="sink", wait_for=1000)
    Counting(name="counter") > Relay(name="relay") > sink
    run = sink.global_start(runner="ray", block=False, queue_size=64, batch_size=16)
    assert run is not None
    assert sink.seen.wait(30)  # set remotely, mirrored to the driver while running
    assert not sink.ended.is_set() and run.state == "running"
    run.stop(timeout=60)
    assert run.state == "finished"
    assert sink.items[-1] == "cleaned"
    produced = run.stats()["counter"].items_out
    assert sink.items[:-1] == list(range(produced))  # all of it, in order


def test_stop_wakes_a_sleeping_source() -> None:
    class Patient(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            i = 0
            while not self.sleep(3600):
                yield i
                i += 1

    src = Patient(name="patient")
    run = src.global_start(runner="ray", block=False)
    assert run is not None
    started = time.monotonic()
    src.global_stop(timeout=30)
    assert time.monotonic() - started < 10
    assert run.state == "finished"


def test_abort_ends_a_node_that_ignores_stop() -> None:
    def stubborn(inp: Any, outp: Any) -> None:
        for i in itertools.count():
            try:
                outp(i)
            except Exception:  # a user's broad handler
                pass

    node = nanostream.as_node(stubborn)
    nanostream.from_iterable([]) > node
    sink = Collect(name="sink")
    node > sink
    run = node.global_start(runner="ray", block=False)
    assert run is not None
    assert wait_until(lambda: run.stats()["sink"].items_in > 0)
    assert sink.seen.wait(30)
    run.abort()
    assert run.state == "aborted"


def test_back_pressure_keeps_the_remote_queue_bounded() -> None:
    def slow_sink(inp: Any, outp: Any) -> None:
        for i, _ in enumerate(inp):
            if i % 2_000 == 0:
                time.sleep(0.02)

    src = nanostream.from_iterable(range(30_000), name="src")
    src > slow_sink
    run = src.global_start(runner="ray", block=False, queue_size=1000, batch_size=100)
    assert run is not None
    depths, caps = [], []
    pause = threading.Event()
    while not run.done:
        stats = run.stats()["slow_sink"]
        depths.append(stats.queue_depth)
        caps.append(stats.queue_capacity)
        pause.wait(0.01)
    run.wait(60)
    stats = run.stats()
    assert stats["src"].items_out == stats["slow_sink"].items_in == 30_000
    assert len(caps) > 3 and all(c == 1000 for c in caps)
    assert max(depths) <= 1000
    assert stats["src"].blocked_output_s > 0


def test_the_monitor_names_a_stalled_node_on_its_logger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The run's monitor (as on the other runners) reads the actors' figures."""
    release = str(tmp_path / "release")

    def stuck(inp: Any, outp: Any) -> None:
        deadline, pause = time.monotonic() + 30, threading.Event()
        while not os.path.exists(release) and time.monotonic() < deadline:
            pause.wait(0.01)  # in the actor: the test process signals through a file
        for _ in inp:
            pass

    # Twenty times what the queue holds, so the source waits; once released, 40 batches
    # cross (10,000 items were 2,000 calls of 5 items: more than 30 s on a busy machine).
    src = nanostream.from_iterable(range(200), name="fast")
    src > stuck
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        run = src.global_start(
            runner="ray",
            block=False,
            name="p",
            queue_size=10,
            batch_size=5,
            monitor_interval=0.05,
            stall_timeout=0.2,
        )
        assert run is not None
        try:
            assert wait_until(lambda: "bottleneck" in caplog.text)
        finally:
            Path(release).touch()
        assert run.wait(30)
    records = [r for r in caplog.records if "bottleneck" in r.getMessage()]
    assert len(records) == 1 and records[0].name == "nanostream.p.fast"  # once per stall
    assert records[0].node == "fast" and records[0].seconds >= 0.2  # type: ignore[attr-defined]
    assert "stuck (" in records[0].getMessage()  # the full queue downstream, by name


def test_stats_fields() -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(100), name="src") > sink
    run = sink.global_start(runner="ray", block=False)
    assert run is not None
    run.wait(60)
    stats = run.stats()
    assert set(stats) == {"src", "sink"}
    assert stats["src"].items_out == 100 and stats["src"].items_in == 0
    assert stats["sink"].items_in == 100 and stats["sink"].queue_capacity == 8192
    assert stats["sink"].state == "finished" and stats["sink"].errors == 0


# --------------------------------------------------------------------- what comes back
class Chatty(nanostream.NanoNode):
    def process_item(self, item: int) -> Iterator[int]:
        log = logging.getLogger("nanostream.chat")
        log.info("item %d", item, extra={"item_no": item})
        if item == 2:
            try:
                {}["missing"]
            except KeyError:
                log.exception("looked up item %d", item)
        yield item


def test_node_logs_reach_the_drivers_loggers(caplog: pytest.LogCaptureFixture) -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(3)) > Chatty(name="chatty") > sink
    with caplog.at_level(logging.INFO, logger="nanostream"):
        sink.global_start(runner="ray")
    records = [r for r in caplog.records if r.name == "nanostream.chat"]
    assert [r.getMessage() for r in records] == ["item 0", "item 1", "item 2", "looked up item 2"]
    assert [getattr(r, "item_no", None) for r in records[:3]] == [0, 1, 2]
    assert {r.process for r in records} != {os.getpid()}  # logged in an actor
    assert "KeyError: 'missing'" in (records[3].exc_text or "")
    caplog.clear()
    sink = Collect(name="sink")
    nanostream.from_iterable(range(3)) > Chatty(name="chatty") > sink
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        sink.global_start(runner="ray")
    # the driver's level holds in the actors: only the error comes
    assert [r.getMessage() for r in caplog.records if r.name == "nanostream.chat"] == [
        "looked up item 2"
    ]


class Tally(nanostream.NanoNode):
    def __init__(self, folder: str, **options: Any) -> None:
        super().__init__(**options)
        self.folder = folder

    def setup(self) -> None:
        self.seen = 0
        self.pid = os.getpid()
        self.journal = open(os.path.join(self.folder, "journal.txt"), "w")  # noqa: SIM115

    def process_item(self, item: int) -> Iterator[int]:
        self.seen += 1
        if item == 5:
            raise ValueError(item)
        yield item


class Pid(nanostream.NanoNode):
    def generator(self) -> Iterator[int]:
        self.pid = os.getpid()
        yield from range(3)


def test_a_failed_nodes_attributes_come_back_and_its_actor_serves_again(
    tmp_path: Path,
) -> None:
    src = nanostream.from_iterable(range(100), name="src")
    tally = Tally(str(tmp_path), name="tally")
    src > tally
    with pytest.raises(nanostream.NodeFailed):
        src.global_start(runner="ray")
    assert tally.seen == 6 and tally.pid != os.getpid()
    assert not hasattr(tally, "journal")  # an open file cannot travel: it stays behind
    # the failed node left no thread behind: its actor is kept for the next run
    again, sink = Pid(name="again"), Tally(str(tmp_path), name="sink")
    again > sink
    sink.global_start(runner="ray")
    assert tally.pid in {again.pid, sink.pid}


# --------------------------------------------------------------------- replicas
def test_replicas_round_robin_over_processes() -> None:
    sink = Collect(name="sink")
    node = nanostream.as_node(with_pid, name="work")
    nanostream.from_iterable(range(2000), name="src") > node > sink
    runner = RayRunner(nodes={"work": {"replicas": 4}})
    run = sink.global_start(runner=runner, block=False, batch_size=10)
    assert run is not None
    run.wait(60)
    assert sorted(x for x, _ in sink.items) == list(range(2000))
    assert len({pid for _, pid in sink.items}) == 4
    stats = run.stats()["work"]
    assert stats.items_in == 2000 and stats.state == "finished"
    assert stats.queue_capacity == 4 * 8192


def test_replicas_by_key_keep_each_key_in_one_replica() -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(1000), name="src") > CountPerKey(name="count") > sink
    runner = RayRunner(nodes={"count": RayNodeOptions(replicas=3, key=lambda x: x % 5)})
    sink.global_start(runner=runner, batch_size=7)
    # every key was counted by exactly one replica, and completely
    assert sorted((k, n) for k, n, _ in sink.items) == [(k, 200) for k in range(5)]
    assert len({pid for _, _, pid in sink.items}) > 1


def test_ray_node_options_are_checked() -> None:
    src = nanostream.from_iterable([1], name="src")
    src > Collect(name="sink")
    with pytest.raises(nanostream.GraphError, match=r"'nope'.*its nodes are: src, sink"):
        src.global_start(runner=RayRunner(nodes={"nope": {"replicas": 2}}))
    with pytest.raises(nanostream.GraphError, match="source"):
        src.global_start(runner=RayRunner(nodes={"src": {"replicas": 2}}))
    with pytest.raises(nanostream.GraphError, match="unknown Ray node option"):
        RayNodeOptions.of({"replica": 2})
    with pytest.raises(nanostream.GraphError, match="positive"):
        RayNodeOptions(replicas=0)
    opts = RayNodeOptions(resources={"num_cpus": 2, "num_gpus": 0.5, "memory": 10, "disk": 1})
    assert opts.actor_options() == {
        "num_cpus": 2,
        "num_gpus": 0.5,
        "memory": 10,
        "resources": {"disk": 1},
    }


def test_resources_are_requested_from_ray() -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(10), name="src") > Double(name="double") > sink
    runner = RayRunner(nodes={"double": {"resources": {"num_cpus": 1}}}, start_timeout=60)
    sink.global_start(runner=runner)
    assert sink.items == [x * 2 for x in range(10)]
    src = nanostream.from_iterable(range(10), name="src")
    src > Double(name="double")
    too_big = RayRunner(nodes={"double": {"resources": {"num_gpus": 8}}}, start_timeout=1)
    with pytest.raises(RayRunnerError, match="not placed within 1s"):
        src.global_start(runner=too_big)


# --------------------------------------------------------------------- cluster errors
def test_unreachable_cluster_is_a_clear_error() -> None:
    src = nanostream.from_iterable([1])
    runner = RayRunner(address="ray://127.0.0.1:1", connect_timeout=2)
    with pytest.raises(RayRunnerError) as info:
        src.global_start(runner=runner)
    assert str(info.value).startswith("cannot reach the Ray cluster at 'ray://127.0.0.1:1'")
    assert "ray status" in str(info.value)


def test_with_options_makes_a_configured_copy() -> None:
    base = RayRunner(max_in_flight=3)
    runner = base.with_options(ray_options={"work": {"replicas": 2}}, linger=0.5)
    assert (runner.nodes["work"].replicas, runner.linger, runner.max_in_flight) == (2, 0.5, 3)
    assert base.nodes == {} and base.linger == 0.01
    with pytest.raises(nanostream.GraphError, match="unknown Ray runner option"):
        base.with_options(replicas=2)


def test_ray_address_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "ray://head.example:10001")
    assert RayRunner().address == "ray://head.example:10001"
    assert RayRunner(address="auto").address == "auto"


def test_class_not_importable_on_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "driver_only_nodes.py").write_text(
        "import nanostream\n"
        "class Shout(nanostream.NanoNode):\n"
        "    def process_item(self, item):\n"
        "        yield item.upper()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import driver_only_nodes  # type: ignore[import-not-found]

    # (an actor on the driver's machine imports from the driver's path: as if on another
    # machine, the module is not there any more)
    shutil.rmtree(tmp_path)
    src = nanostream.from_iterable(["a"])
    src > driver_only_nodes.Shout()
    with pytest.raises(RayRunnerError) as info:
        src.global_start(runner="ray")
    message = str(info.value)
    assert "node 'Shout' cannot be loaded on the Ray workers" in message
    assert "No module named 'driver_only_nodes'" in message
    assert "working_dir" in message
    monkeypatch.delitem(sys.modules, "driver_only_nodes")


def test_unpicklable_node_is_refused_before_anything_starts() -> None:
    src = nanostream.from_iterable(x for x in range(3))
    with pytest.raises(RayRunnerError, match="must be picklable"):
        src.global_start(runner="ray")


# --------------------------------------------------------------------- registration, session
def test_registered_and_listed_when_installed() -> None:
    assert get_runner("ray").name == "ray"
    assert available_runners() == ["threads", "cooperative", "ray"]


def test_local_default_starts_and_shuts_down_its_own_instance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no address and no Ray yet: a local instance, shut down after the last run."""
    from nanostream.runners.ray import _session as session

    calls: list[tuple[str, dict[str, Any]]] = []
    up = [False]

    def fake_init(**kwargs: Any) -> None:
        calls.append(("init", kwargs))
        up[0] = True

    def fake_shutdown() -> None:
        calls.append(("shutdown", {}))
        up[0] = False

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: up[0])
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", fake_shutdown)
    assert session.connect(None, None, 1.0) is False
    assert session.connect(None, {"pip": ["x"]}, 1.0) is True  # a second run shares it
    session.disconnect()
    assert calls == [
        ("init", {"include_dashboard": False, "num_cpus": os.cpu_count(), "address": "local"})
    ]
    session.disconnect()
    assert [c for c, _ in calls] == ["init", "shutdown"]


def test_actors_on_the_drivers_machine_import_from_the_drivers_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "next_to_the_driver.py").write_text(
        "import nanostream\n"
        "class Exclaim(nanostream.NanoNode):\n"
        "    def process_item(self, item):\n"
        "        yield item + '!'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import next_to_the_driver  # type: ignore[import-not-found]

    sink = Collect(name="sink")
    nanostream.from_iterable(["a", "b"]) > next_to_the_driver.Exclaim() > sink
    sink.global_start(runner="ray")
    assert sink.items == ["a!", "b!"]
    monkeypatch.delitem(sys.modules, "next_to_the_driver")


# --------------------------------------------------------------------- helpers
def test_stable_hash_is_by_value() -> None:
    assert stable_hash("abc") == stable_hash("abc") != stable_hash("abd")
    assert stable_hash(3) == stable_hash(3.0) == 3
    assert stable_hash(("a", 1)) == stable_hash(("a", 1)) != stable_hash(("a", 2))
    assert stable_hash(None) == stable_hash(None)


def test_dumps_recreates_threading_primitives() -> None:
    sink = Collect(name="c")
    nanostream.from_iterable([]) > sink
    assert sink._ns_pipeline is not None
    sink.items.append(1)
    sink.seen.set()
    copy = loads(dumps(sink))
    assert copy.items == [1] and copy.seen.is_set() and not copy.ended.is_set()
    assert copy._lock is not sink._lock
    assert copy._ns_pipeline is None


# --------------------------------------------------------------------- acknowledgements
# The acks run in the source's actor: they check files the sinks write (a file is seen
# from every process), and the source's attributes (acked, early) come back at its end.
def _written(path: str) -> list[int]:
    """The items a :class:`WrittenSink` wrote to ``path`` (complete lines only)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        text = f.read()
    return [int(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def _flatten(item: Any) -> Iterator[int]:
    if isinstance(item, tuple):
        for part in item:
            yield from _flatten(part)
    else:
        yield item


class WrittenSink(Collect):
    """Collects, and appends each item (a tuple's items) to ``path`` as it comes."""

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(**options)
        self.path = str(path)

    def process_item(self, item: Any) -> Iterator[Any]:
        with open(self.path, "a") as f:
            f.write("".join(f"{x}\n" for x in _flatten(item)))
        yield from super().process_item(item)


class AckedCount(nanostream.NanoNode):
    """Emits 0..n-1 (forever without n) as ``Acked``; each ack checks every sink's file
    has the item (else it is ``early``) and appends it to ``acked`` and to ``log``.

    After ``pause_after`` items it waits until the file ``resume`` exists. In a diamond a
    sink gets each item ``copies`` times.
    """

    def __init__(
        self,
        n: int | None,
        sinks: list[Path],
        log: Path,
        *,
        pause_after: int | None = None,
        resume: Path | None = None,
        copies: int = 1,
        **options: Any,
    ) -> None:
        super().__init__(name="src", **options)
        self.copies = copies  # how many times each sink gets each item
        self.n, self.sinks, self.log = n, [str(p) for p in sinks], str(log)
        self.pause_after, self.resume = pause_after, str(resume) if resume else None
        self.emitted: list[int] = []
        self.acked: list[int] = []
        self.early: list[int] = []

    def generator(self) -> Iterator[Any]:
        numbers = range(self.n) if self.n is not None else itertools.count()
        for i in numbers:
            if i == self.pause_after and self.resume is not None:
                while not os.path.exists(self.resume) and not self.sleep(0.01):
                    pass
            self.emitted.append(i)
            yield nanostream.Acked(i, functools.partial(self._ack, i))

    def _ack(self, i: int) -> None:
        if not all(_written(path).count(i) >= self.copies for path in self.sinks):
            self.early.append(i)
        self.acked.append(i)
        with open(self.log, "a") as f:
            f.write(f"{i}\n")


class AckPairs(nanostream.NanoNode):
    """Emits items in pairs; holds the odd one out (``holds_items``) until its partner."""

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


class Pass(nanostream.NanoNode):
    def process_item(self, item: int) -> Iterator[int]:
        yield item


def test_acks_every_item_once_in_order_after_the_sink(tmp_path: Path) -> None:
    sink = WrittenSink(tmp_path / "sink", name="sink")
    src = AckedCount(3000, [tmp_path / "sink"], tmp_path / "acked")
    src > Pass(name="pass") > sink
    sink.global_start(runner="ray", batch_size=64)
    assert sink.items == list(range(3000))
    assert src.early == []
    assert src.acked == src.emitted == list(range(3000))
    assert _written(str(tmp_path / "acked")) == list(range(3000))  # called once each


def test_acks_of_a_fan_out_wait_for_both_sinks(tmp_path: Path) -> None:
    a = WrittenSink(tmp_path / "a", name="a")
    b = WrittenSink(tmp_path / "b", name="b")
    src = AckedCount(200, [tmp_path / "a", tmp_path / "b"], tmp_path / "acked", batch_size=4)
    src > a
    src > Pass(name="slow") > b
    a.global_start(runner="ray")
    assert src.early == [] and src.acked == list(range(200))
    assert a.items == b.items == list(range(200))


@pytest.mark.parametrize("key", [None, lambda x: x % 3], ids=["round-robin", "key"])
def test_acks_through_replicas_in_order(tmp_path: Path, key: Callable[[int], int] | None) -> None:
    sink = WrittenSink(tmp_path / "sink", name="sink")
    src = AckedCount(300, [tmp_path / "sink"], tmp_path / "acked")
    src > Pass(name="work") > AckPairs(name="pairs") > sink
    runner = RayRunner(
        nodes={"work": RayNodeOptions(replicas=2, key=key), "pairs": {"replicas": 2}}
    )
    sink.global_start(runner=runner, batch_size=16)
    assert src.early == [] and src.acked == list(range(300))
    assert sorted(_written(str(tmp_path / "sink"))) == list(range(300))


def test_acks_reach_every_replica_of_a_sink(tmp_path: Path) -> None:
    sink = WrittenSink(tmp_path / "sink", name="sink")
    src = AckedCount(600, [tmp_path / "sink"], tmp_path / "acked", batch_size=5)
    src > Pass(name="pass") > sink
    runner = RayRunner(nodes={"sink": {"replicas": 2}})
    sink.global_start(runner=runner)
    assert src.early == [] and src.acked == list(range(600))


def test_a_holding_node_delays_acks_until_it_releases(tmp_path: Path) -> None:
    sink = WrittenSink(tmp_path / "sink", name="sink")
    resume = tmp_path / "resume"
    src = AckedCount(
        21, [tmp_path / "sink"], tmp_path / "acked", pause_after=11, resume=resume, batch_size=1
    )
    src > AckPairs(name="pairs") > sink
    run = sink.global_start(runner="ray", block=False)
    assert run is not None
    try:
        # while the source waits, 0..9 are acked: item 10 waits in Pairs for its partner
        assert wait_until(lambda: len(_written(str(tmp_path / "acked"))) >= 10)
        assert _written(str(tmp_path / "acked")) == list(range(10))
    finally:
        resume.touch()
        run.wait(60)
    assert src.early == [] and src.acked == list(range(21))
    assert sink.items[-1] == (20,)


def test_a_failed_run_acks_only_what_was_done(tmp_path: Path) -> None:
    class Explode(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            if item == 700:
                raise RuntimeError("boom")
            yield item

    sink = WrittenSink(tmp_path / "sink", name="sink")
    src = AckedCount(None, [tmp_path / "sink"], tmp_path / "acked", batch_size=16)
    src > Explode(name="explode") > sink
    with pytest.raises(nanostream.NodeFailed):
        sink.global_start(runner="ray")
    acked = _written(str(tmp_path / "acked"))
    assert 700 not in acked and acked == list(range(len(acked)))
    assert set(acked) <= set(_written(str(tmp_path / "sink")))


def test_stop_drains_and_acks_everything_emitted(tmp_path: Path) -> None:
    sink = WrittenSink(tmp_path / "sink", name="sink", wait_for=2000)
    src = AckedCount(None, [tmp_path / "sink"], tmp_path / "acked")
    src > Pass(name="pass") > sink
    run = sink.global_start(runner="ray", block=False, queue_size=256, batch_size=32)
    assert run is not None
    assert sink.seen.wait(30)
    run.stop(timeout=60)
    assert run.state == "finished"
    assert src.early == []
    assert src.acked == src.emitted == sink.items
    assert len(src.acked) >= 2000


def test_acks_of_a_diamond_wait_for_both_branches(tmp_path: Path) -> None:
    sink = WrittenSink(tmp_path / "sink", name="sink")
    src = AckedCount(300, [tmp_path / "sink"], tmp_path / "acked", batch_size=8, copies=2)
    join = Pass(name="join")
    src > Pass(name="left") > join
    src > AckPairs(name="right") > join
    join > sink
    runner = RayRunner(nodes={"left": {"replicas": 2}})
    sink.global_start(runner=runner)
    assert src.early == [] and src.acked == list(range(300))
    assert sorted(_written(str(tmp_path / "sink"))) == sorted(list(range(300)) * 2)


# --------------------------------------------------------------------------- web view
def test_the_web_view_shows_a_ray_run_and_its_stop_button_drains_it() -> None:
    import json
    import urllib.request

    from nanostream.observe import open_web_views

    source = nanostream.from_iterable(itertools.count(), name="count")
    sink = Collect(name="sink")
    source > OddFails(name="double", on_error="skip") > sink
    run = source.global_start(block=False, runner="ray", ui=0, name="ray-web")
    assert run is not None
    [view] = [v for v in open_web_views() if v.run is run]
    try:
        with urllib.request.urlopen(view.url + "api/graph", timeout=10) as response:
            graph = json.load(response)
        assert [n["name"] for n in graph["nodes"]] == ["count", "double", "sink"]
        assert wait_until(lambda: view.state()["nodes"]["sink"]["in"] > 0)
        stop = urllib.request.Request(
            view.url + "api/stop", method="POST", headers={"X-Nanostream": "stop"}
        )
        with urllib.request.urlopen(stop, timeout=10) as response:
            assert response.status == 202
        assert run.wait(60)
        state = view.state()
        assert state["state"] == "finished" and state["done"]
        counted = state["nodes"]["count"]["out"]
        assert state["nodes"]["sink"]["in"] == counted - counted // 2 > 0
        # the items' errors come back from the actors with their log records
        assert [d["item"] for d in state["dead_letters"]][-1] == "1"
        assert state["dead_letters"][0]["message"].startswith("odd ")
    finally:
        view.close()


class OddFails(nanostream.NanoNode):
    def process_item(self, item: int) -> Iterator[int]:
        if item % 2:
            raise ValueError(f"odd {item}")
        yield item * 2
