"""Unaligned checkpoints (``_engine/checkpoint.py``): the default on the local runners,
``checkpoint_unaligned=False`` forces aligned ones, a runner without them falls back.

A barrier goes to the head of each single-producer channel, ahead of the items queued
there; the node that reads it snapshots those items (and the rest of the batch it is
reading) with its state, and a restart puts them back into its input first. Every
behaviour runs under each local runner.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import nanostream
import support
from nanostream._engine.checkpoint import InFlight
from nanostream.nodes import CSVReader
from nanostream.state import open_store
from support import Numbers, Total

LOCAL = ["threads", "cooperative"]


def work(seconds: float) -> None:
    """Compute for ``seconds`` (a slow node's work; it waits for no thread)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Slow(nanostream.NanoNode):
    """A sink that works ``per_item`` seconds on each item, keeps them, and fails at its
    ``fail_at``-th; at each of its snapshots it reads what the store committed so far."""

    def __init__(
        self, path: str, *, per_item: float = 0.0, fail_at: int | None = None, watch: bool = False
    ) -> None:
        super().__init__(name="sink")
        self.path, self.per_item, self.fail_at, self.watch = path, per_item, fail_at, watch
        self.items: list[Any] = []
        self.seen: list[dict[str, Any]] = []

    def process_item(self, item: Any) -> None:
        if len(self.items) + 1 == self.fail_at:
            raise RuntimeError("crash")
        work(self.per_item)
        self.items.append(item)

    def snapshot_state(self) -> None:
        if self.watch:
            store = open_store(self.path)
            try:
                checkpoint = store.load()
            finally:
                store.close()
            if checkpoint is not None:
                self.seen.append({n: s for n, (_k, s) in checkpoint.states.items()})

    def restore_state(self, state: None) -> None:
        pass


def _split(state: Any) -> tuple[Any, list[Any]]:
    """A node's stored state and the items in flight at it."""
    if isinstance(state, InFlight):
        return state.state, state.items
    return state, []


@pytest.mark.parametrize("runner", LOCAL)
def test_each_unaligned_checkpoint_is_a_consistent_cut(tmp_path: Path, runner: str) -> None:
    """In every committed checkpoint the total plus the items in flight before it equals
    the source's position, and the totals in flight before the sink are the last ones the
    total emitted: nothing is lost or counted twice across the cut."""
    path = str(tmp_path / "run.state")
    sink = Slow(path, per_item=0.00005, watch=True)
    Numbers(6000) > Total(name="total") > sink
    sink.global_start(
        state=path,
        checkpoint_unaligned=True,
        checkpoint_interval=0.02,
        queue_size=1000,  # the source waits for room: it is not done before the sink
        batch_size=64,
        runner=runner,
    )
    assert sink.items == list(range(1, 6001))
    assert len(sink.seen) >= 3
    in_flight = 0
    for states in sink.seen:
        total, ones = _split(states["total"])
        assert total + len(ones) == states["src"] and set(ones) <= {1}
        _none, totals = _split(states["sink"])
        assert totals == list(range(total - len(totals) + 1, total + 1))
        in_flight += len(totals)
    assert in_flight > 0  # barriers overtook the sink's backlog


@pytest.mark.parametrize("runner", LOCAL)
def test_a_restart_replays_the_items_in_flight(tmp_path: Path, runner: str) -> None:
    """After a crash the restart first reads the items the last checkpoint held in flight:
    the totals go on without a gap, and the run ends with the exact total."""
    path = str(tmp_path / "run.state")
    options = {
        "state": path,
        "checkpoint_unaligned": True,
        "queue_size": 1000,
        "batch_size": 64,
        "runner": runner,
    }
    crashed = Slow(path, per_item=0.0001, fail_at=3000)
    Numbers(6000) > Total(name="total") > crashed
    with pytest.raises(nanostream.NodeFailed, match="sink"):
        crashed.global_start(checkpoint_interval=0.02, **options)
    stored = open_store(path).load()
    assert stored is not None
    assert any(isinstance(s, InFlight) for _k, s in stored.states.values())
    restarted = Slow(path)
    Numbers(6000) > Total(name="total") > restarted
    restarted.global_start(**options)
    first, again = crashed.items, restarted.items
    assert again == list(range(again[0], 6001))
    assert again[0] <= len(first) + 1  # no total lost between the runs


@pytest.mark.parametrize("runner", LOCAL)
def test_a_backlog_of_queued_items_repeats_about_one_interval(tmp_path: Path, runner: str) -> None:
    """A fast source fills a slow sink's queue (and then waits for room in it): with
    checkpoints by time alone, the barrier overtakes the queue, so a crash repeats what
    the sink did in about one interval, not the queue (2,000 items: an aligned barrier
    waits behind them all, and the run crashes before the sink reaches it). The bound
    leaves room for a loaded machine: three intervals' work."""
    path = str(tmp_path / "run.state")
    per_item, interval = 0.0005, 0.1
    options = {  # unaligned: the default
        "state": path,
        "checkpoint_interval": interval,
        "queue_size": 2000,
        "batch_size": 50,
        "runner": runner,
    }
    crashed = Slow(path, per_item=per_item, fail_at=1500)
    Numbers(10_000) > Total(name="total") > crashed
    with pytest.raises(nanostream.NodeFailed, match="sink"):
        crashed.global_start(**options)
    restarted = Slow(path)
    Numbers(10_000) > Total(name="total") > restarted
    restarted.global_start(**options)
    repeated = len(set(crashed.items) & set(restarted.items))
    one_interval = int(interval / per_item)  # items the sink works through in one interval
    assert repeated < 3 * one_interval, f"{repeated} items repeated; one interval ~{one_interval}"
    assert restarted.items[-1] == 10_000


ROWS = 400
FILES = 6


class Tally(nanostream.NanoNode):
    """Keeps the rows it receives, working on each; fails at its ``fail_at``-th; stops
    the run once it has every row of ``missing``."""

    def __init__(self, missing: set[int], fail_at: int | None = None) -> None:
        super().__init__(name="tally")
        self.items: list[int] = []
        self.missing, self.fail_at = set(missing), fail_at

    def process_item(self, item: Any) -> None:
        if len(self.items) + 1 == self.fail_at:
            raise RuntimeError("crash")
        work(0.001)
        self.items.append(item["n"])
        self.missing.discard(item["n"])
        if not self.missing:
            self.request_stop()


@pytest.mark.parametrize("runner", LOCAL)
def test_a_backlog_of_paths_repeats_about_one_interval_by_time(tmp_path: Path, runner: str) -> None:
    """A watched folder lists every file at once (one batch of paths before the reader),
    checkpoints by time alone: the barrier overtakes the paths queued and reaches the
    reader inside the file it reads, so a crash repeats about an interval's rows (an
    aligned barrier waits behind the batch of paths: 1,399 rows repeated here)."""
    pytest.importorskip("watchdog")
    from nanostream.nodes import LocalDirectoryWatchdog

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(FILES):
        start = i * ROWS
        (folder / f"part{i}.csv").write_text(
            "n\n" + "".join(f"{n}\n" for n in range(start, start + ROWS))
        )
    state = str(tmp_path / "run.state")

    def run(sink: Tally) -> None:
        watch = LocalDirectoryWatchdog(folder, "*.csv", polling=True, settle=0, name="watch")
        watch > CSVReader(paths=True, types={"n": int}, name="reader") > sink
        sink.global_start(  # unaligned: the default
            state=state,
            checkpoint_interval=0.05,
            batch_size=100,
            runner=runner,
        )

    every = set(range(FILES * ROWS))
    crashed = Tally(every, fail_at=3 * ROWS + ROWS // 2)  # in the fourth file
    with pytest.raises(nanostream.NodeFailed, match="tally"):
        run(crashed)
    first = crashed.items
    restarted = Tally(every - set(first))  # stops once nothing is missing
    run(restarted)
    repeated = len(set(first) & set(restarted.items))
    assert repeated < ROWS, f"{repeated} rows repeated; a file is {ROWS} rows"


class Aligned:
    """A runner that takes aligned checkpoints only (as the Ray runner): it keeps the plan
    it is given and starts nothing."""

    name = "aligned"
    checkpoints = True

    def __init__(self) -> None:
        self.plans: list[nanostream.Plan] = []

    def start(self, plan: nanostream.Plan) -> nanostream.Run:
        self.plans.append(plan)
        raise Started


class Started(Exception):
    """Raised by :class:`Aligned` instead of starting a run."""


def test_unaligned_checkpoints_are_refused_where_they_cannot_work(tmp_path: Path) -> None:
    """Without a state store; on a runner that takes only aligned checkpoints."""
    with pytest.raises(nanostream.GraphError, match=r"checkpoint_unaligned=True .* state="):
        nanostream.RunOptions.from_kwargs(checkpoint_unaligned=True)
    with pytest.raises(nanostream.GraphError, match="checkpoint_unaligned must be True, False"):
        nanostream.RunOptions.from_kwargs(state="s", checkpoint_unaligned="yes")
    sink = nanostream.testing.Collect(name="sink")
    Numbers(10) > sink
    with pytest.raises(nanostream.GraphError, match="'aligned' runner takes only aligned"):
        sink.global_start(
            state=str(tmp_path / "run.state"), checkpoint_unaligned=True, runner=Aligned()
        )


@pytest.mark.parametrize("runner", LOCAL)
def test_unaligned_is_the_default_on_the_local_runners_and_the_run_says_so(
    tmp_path: Path, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without ``checkpoint_unaligned`` a run with a state store takes unaligned
    checkpoints, logs so, and names the nodes whose queue has several producers (their
    barriers keep their place); barriers overtake a backlog, as the items in flight in
    its checkpoints show."""
    path = str(tmp_path / "run.state")
    sink = Slow(path, per_item=0.0001, watch=True)
    Numbers(3000) > Total(name="total") > sink
    with caplog.at_level("INFO", logger="nanostream"):
        run = sink.global_start(
            state=path,
            checkpoint_interval=0.02,
            queue_size=1000,
            batch_size=64,
            runner=runner,
            block=False,
        )
        run.wait()
    assert run.checkpoints is not None and run.checkpoints.unaligned
    said = [r.getMessage() for r in caplog.records if "checkpoints" in r.getMessage()]
    assert said == [
        f"pipeline 'pipeline': unaligned checkpoints (the default on the {runner!r} runner: "
        "a barrier overtakes the items queued before it, which the checkpoint keeps)"
    ]
    assert any(isinstance(s, InFlight) for states in sink.seen for s in states.values())

    caplog.clear()
    merged = nanostream.testing.Collect(name="merged")
    Numbers(3, name="a") > merged
    Numbers(3, name="b") > merged
    with caplog.at_level("INFO", logger="nanostream"):
        merged.global_start(state=str(tmp_path / "merged.state"), runner=runner)
    said = [r.getMessage() for r in caplog.records if "checkpoints" in r.getMessage()]
    assert said[0].endswith("; aligned at 'merged', whose queue has 2 producers"), said


@pytest.mark.parametrize("runner", LOCAL)
def test_checkpoint_unaligned_false_keeps_the_barriers_behind_the_items(
    tmp_path: Path, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``checkpoint_unaligned=False`` forces aligned checkpoints: no checkpoint holds
    items in flight, each is still a consistent cut, and the run says why."""
    path = str(tmp_path / "run.state")
    sink = Slow(path, per_item=0.0001, watch=True)
    Numbers(3000) > Total(name="total") > sink
    with caplog.at_level("INFO", logger="nanostream"):
        sink.global_start(
            state=path,
            checkpoint_unaligned=False,
            checkpoint_interval=0.02,
            queue_size=1000,
            batch_size=64,
            runner=runner,
        )
    assert "aligned checkpoints (checkpoint_unaligned=False)" in caplog.text
    assert sink.items == list(range(1, 3001)) and len(sink.seen) >= 2
    for states in sink.seen:
        assert not any(isinstance(s, InFlight) for s in states.values())
        assert states["total"] == states["src"]


def test_a_runner_that_takes_aligned_checkpoints_only_gets_them_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a runner without unaligned checkpoints (the Ray runner) the default falls back
    to aligned, decided before the runner starts, and the run says why."""
    sink = nanostream.testing.Collect(name="sink")
    Numbers(10) > sink
    runner = Aligned()
    with caplog.at_level("INFO", logger="nanostream"), pytest.raises(Started):
        sink.global_start(state=str(tmp_path / "run.state"), runner=runner)
    assert runner.plans[0].options.checkpoint_unaligned is False
    assert "aligned checkpoints (the 'aligned' runner takes aligned checkpoints only)" in (
        caplog.text
    )


@pytest.mark.parametrize("runner", LOCAL)
def test_checkpoint_items_makes_the_default_aligned(
    tmp_path: Path, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint due by count is one whose barrier follows its item: with
    ``checkpoint_items`` the default is aligned (``True`` still asks for unaligned)."""
    sink = nanostream.testing.Collect(name="sink")
    Numbers(10) > sink
    with caplog.at_level("INFO", logger="nanostream"):
        run = sink.global_start(
            state=str(tmp_path / "run.state"), checkpoint_items=3, runner=runner, block=False
        )
        run.wait()
    assert run.checkpoints is not None and not run.checkpoints.unaligned
    assert (
        "aligned checkpoints (the default with checkpoint_items: each barrier follows the "
        "item it counts)"
    ) in caplog.text
    again = nanostream.testing.Collect(name="sink")
    Numbers(10) > again
    run = again.global_start(
        state=str(tmp_path / "again.state"),
        checkpoint_items=3,
        checkpoint_unaligned=True,
        runner=runner,
        block=False,
    )
    run.wait()
    assert run.checkpoints is not None and run.checkpoints.unaligned


def test_a_sink_that_writes_exactly_once_takes_unaligned_checkpoints(tmp_path: Path) -> None:
    """Exactly-once sinks are no reason for aligned checkpoints (the kill tests of
    tests/core/test_exactly_once_restart.py run both kinds)."""
    from nanostream.nodes.sql import SQLSink

    out = SQLSink(f"sqlite:///{tmp_path / 'out.db'}", "t", create=True, exactly_once=True)
    Numbers(10) > Total(name="total") > nanostream.nodes.Map(lambda n: {"n": n}) > out
    run = out.global_start(state=str(tmp_path / "run.state"), block=False)
    run.wait()
    assert run.checkpoints.unaligned
    assert support.sqlite_rows(tmp_path / "out.db", "SELECT n FROM t") == [
        (n,) for n in range(1, 11)
    ]


def test_a_runner_that_cannot_put_items_back_refuses_a_store_that_holds_some(
    tmp_path: Path,
) -> None:
    """The Ray runner restores with ``restore(plan, holders)`` and no ``replays``."""
    from nanostream._engine.checkpoint import restore

    path = str(tmp_path / "run.state")
    store = open_store(path)
    kind = f"{Total.__module__}.{Total.__qualname__}"
    store.commit(1, "pipeline", {"total": (kind, pickle_state(InFlight(3, True, [1, 1])))})
    store.close()
    src = Numbers(10)
    src > Total(name="total") > nanostream.testing.Collect(name="sink")
    plan = nanostream.pipeline_of(src).plan(nanostream.RunOptions(state=path))
    with pytest.raises(nanostream.StateError, match=r"in flight at node 'total'.*'threads'"):
        restore(plan, [None] * len(plan.nodes))


def pickle_state(state: Any) -> bytes:
    from nanostream.state.store import encode_state

    return encode_state(state)


@pytest.mark.parametrize("runner", LOCAL)
def test_items_in_flight_that_cannot_be_pickled_say_what_to_do(tmp_path: Path, runner: str) -> None:
    """The items an unaligned checkpoint keeps are pickled: when they cannot be, the run
    fails naming the node and the option that takes checkpoints without them."""
    path = str(tmp_path / "run.state")
    sink = Slow(path, per_item=0.0002)
    Numbers(5000) > nanostream.nodes.Map(lambda n: threading.Lock(), name="locks") > sink
    with pytest.raises(nanostream.NodeFailed, match="sink") as failed:
        sink.global_start(
            state=path, checkpoint_interval=0.02, queue_size=1000, batch_size=64, runner=runner
        )
    cause = failed.value.__cause__
    assert isinstance(cause, nanostream.StateError)
    assert "node 'sink': an unaligned checkpoint keeps the items" in str(cause)
    assert "checkpoint_unaligned=False" in str(cause)


@pytest.mark.parametrize("runner", LOCAL)
def test_checkpoints_go_on_while_the_pipeline_drains_after_its_sources_ended(
    tmp_path: Path, runner: str
) -> None:
    """Once every source has ended (here at once: the sink's queue holds all 3,000
    items), checkpoints go on while the slow sink drains its queue: each holds the
    source's final state and the items in flight at the sink, the last totals, and a
    crash late in the drain repeats about an interval's items (without them, the last
    checkpoint is from before the source ended, and the restart repeats 2,499)."""
    path = str(tmp_path / "run.state")
    per_item, interval = 0.0005, 0.05
    options = {
        "state": path,
        "checkpoint_interval": interval,
        "queue_size": 4000,
        "batch_size": 64,
        "runner": runner,
    }
    crashed = Slow(path, per_item=per_item, fail_at=2500, watch=True)
    Numbers(3000) > Total(name="total") > crashed
    with pytest.raises(nanostream.NodeFailed, match="sink"):
        crashed.global_start(**options)
    drained = [states for states in crashed.seen if states["src"] == 3000]
    assert len(drained) >= 2, "no checkpoint after the source ended"
    for states in drained:
        total, ones = _split(states["total"])
        assert total + len(ones) == 3000
        _none, totals = _split(states["sink"])
        assert totals == list(range(total - len(totals) + 1, total + 1))
    restarted = Slow(path)
    Numbers(3000) > Total(name="total") > restarted
    restarted.global_start(**options)
    first, again = crashed.items, restarted.items
    assert again == list(range(again[0], 3001)) and again[0] <= len(first) + 1
    repeated = len(set(first) & set(again))
    assert repeated < 1000, f"{repeated} items repeated; one interval ~{int(interval / per_item)}"
