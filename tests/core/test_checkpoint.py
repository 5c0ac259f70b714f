"""Checkpoints (``_engine/checkpoint.py``): barriers, consistent snapshots, restore, refusals.

Every behaviour runs under each local runner; the Ray runner's aligned checkpoints are
tested in ``tests/runners/test_ray_state.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.nodes import Take
from nanostream.state import open_store
from support import Numbers, Total


class StoreWatcher(nanostream.NanoNode):
    """A sink that, at each checkpoint, reads what the store committed so far."""

    def __init__(self, path: str, *, name: str) -> None:
        super().__init__(name=name)
        self.path = path
        self.items: list[Any] = []
        self.seen: list[tuple[int, dict[str, Any]]] = []

    def process_item(self, item: Any) -> None:
        self.items.append(item)

    def snapshot_state(self) -> None:
        store = open_store(self.path)
        try:
            checkpoint = store.load()
        finally:
            store.close()
        if checkpoint is not None:
            states = {name: state for name, (_kind, state) in checkpoint.states.items()}
            self.seen.append((checkpoint.epoch, states))

    def restore_state(self, state: None) -> None:
        pass


LOCAL = ["threads", "cooperative"]


@pytest.mark.parametrize("local_runner", LOCAL)
def test_each_checkpoint_is_a_consistent_cut(tmp_path: Path, local_runner: str) -> None:
    """At every committed aligned checkpoint the total equals the source's position (the
    unaligned ones, the default, are checked in test_checkpoint_unaligned.py)."""
    path = str(tmp_path / "run.state")
    watcher = StoreWatcher(path, name="sink")
    Numbers(3000, name="src") > Total(name="total") > watcher
    watcher.global_start(
        state=path,
        checkpoint_unaligned=False,
        checkpoint_items=100,
        batch_size=64,
        runner=local_runner,
    )
    assert watcher.items == list(range(1, 3001))
    assert len({epoch for epoch, _ in watcher.seen}) >= 3
    for _epoch, states in watcher.seen:
        assert states["total"] == states["src"]
    final = open_store(path).load()
    assert final is not None
    assert {name: state for name, (_k, state) in final.states.items()} == {
        "src": 3000,
        "total": 3000,
        "sink": None,
    }


@pytest.mark.parametrize("local_runner", LOCAL)
def test_a_restarted_run_continues_from_the_stored_state(tmp_path: Path, local_runner: str) -> None:
    path = str(tmp_path / "run.state")
    first = nanostream.testing.Collect(name="sink")
    Numbers(100, name="src") > Total(name="total") > first
    first.global_start(state=path, runner=local_runner)
    second = nanostream.testing.Collect(name="sink")
    Numbers(250, name="src") > Total(name="total") > second
    second.global_start(state=path, runner=local_runner)
    assert first.items == list(range(1, 101))
    assert second.items == list(range(101, 251))


@pytest.mark.parametrize("local_runner", LOCAL)
def test_after_a_failure_the_restart_repeats_nothing_of_the_state(
    tmp_path: Path, local_runner: str
) -> None:
    """A run that fails keeps its last checkpoint; the restart ends with the exact total."""
    path = str(tmp_path / "run.state")
    broken = nanostream.testing.Collect(name="sink")
    Numbers(5000, name="src", fail_at=4000) > Total(name="total") > broken
    with pytest.raises(nanostream.NodeFailed, match="src"):
        broken.global_start(state=path, checkpoint_items=200, batch_size=64, runner=local_runner)
    restarted = nanostream.testing.Collect(name="sink")
    Numbers(5000, name="src") > Total(name="total") > restarted
    restarted.global_start(state=path, runner=local_runner)
    assert restarted.items[-1] == 5000
    # what the restart emitted continues the totals without a gap or a repeat
    assert restarted.items == list(range(5001 - len(restarted.items), 5001))


@pytest.mark.parametrize("local_runner", LOCAL)
def test_several_sources_merge_with_at_least_once_state(tmp_path: Path, local_runner: str) -> None:
    """Barriers align by count at a node with two inputs: no checkpoint misses an item."""
    path = str(tmp_path / "run.state")
    watcher = StoreWatcher(path, name="sink")
    total = Total(name="total")
    Numbers(2000, name="a") > total
    Numbers(1500, name="b") > total
    total > watcher
    watcher.global_start(state=path, checkpoint_items=100, batch_size=64, runner=local_runner)
    assert watcher.items[-1] == 3500
    assert watcher.seen
    for _epoch, states in watcher.seen:
        assert states["total"] >= states["a"] + states["b"]


@pytest.mark.parametrize("local_runner", LOCAL)
def test_a_node_that_ends_its_outputs_early_does_not_hold_checkpoints(
    tmp_path: Path, local_runner: str
) -> None:
    path = str(tmp_path / "run.state")
    sink = nanostream.testing.Collect(name="sink")
    Numbers(2000, name="src") > Take(10, name="take") > sink
    sink.global_start(state=path, checkpoint_items=50, batch_size=32, runner=local_runner)
    assert sink.items == [1] * 10
    final = open_store(path).load()
    assert final is not None and final.states["src"][1] == 2000


def test_state_that_no_longer_fits_is_refused_naming_the_node(tmp_path: Path) -> None:
    path = str(tmp_path / "run.state")
    sink = nanostream.testing.Collect(name="sink")
    Numbers(10, name="src") > Total(name="total") > sink
    sink.global_start(state=path)
    renamed = nanostream.testing.Collect(name="sink")
    Numbers(20, name="src") > Total(name="running") > renamed
    with pytest.raises(nanostream.StateError, match=r"'total' \(no node of that name now\)"):
        renamed.global_start(state=path)
    assert renamed.items == []
    again = nanostream.testing.Collect(name="sink")
    Numbers(20, name="src") > Total(name="running") > again
    again.global_start(state=path, drop_state=True)
    assert again.items == list(range(1, 11))  # src resumed at 10; running started afresh
    assert "total" not in open_store(path).load().states  # type: ignore[union-attr]


def test_a_node_of_another_class_under_the_same_name_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "run.state")
    sink = nanostream.testing.Collect(name="sink")
    Numbers(10, name="src") > Total(name="total") > sink
    sink.global_start(state=path)

    class Other(Total):
        pass

    changed = nanostream.testing.Collect(name="sink")
    Numbers(20, name="src") > Other(name="total") > changed
    with pytest.raises(nanostream.StateError, match=r"stored by a .*Total, the node is a .*Other"):
        changed.global_start(state=path)


def test_a_restore_that_fails_names_the_node_and_says_what_to_do(tmp_path: Path) -> None:
    path = str(tmp_path / "run.state")
    sink = nanostream.testing.Collect(name="sink")
    Numbers(10, name="src") > Total(name="total") > sink
    sink.global_start(state=path)

    class Picky(Total):
        def restore_state(self, state: int) -> None:
            raise ValueError("not a total I know")

    Picky.__module__, Picky.__qualname__ = Total.__module__, Total.__qualname__  # same kind
    picky = nanostream.testing.Collect(name="sink")
    Numbers(20, name="src") > Picky(name="total") > picky
    with pytest.raises(nanostream.NodeFailed) as info:
        picky.global_start(state=path)
    assert info.value.node == "total"
    cause = info.value.__cause__
    assert isinstance(cause, nanostream.StateError)
    assert "drop_state=True" in str(cause) and "not a total I know" in str(cause)


def test_a_node_that_holds_items_without_snapshots_is_refused(tmp_path: Path) -> None:
    class Pairs(nanostream.NanoNode):
        holds_items = True

        def setup(self) -> None:
            self.kept: list[int] = []

        def process_item(self, item: int) -> Iterator[tuple[int, ...]]:
            self.kept.append(item)
            if len(self.kept) == 2:
                yield tuple(self.kept)
                self.kept = []

    sink = nanostream.testing.Collect(name="sink")
    Numbers(10, name="src") > Pairs(name="pairs") > sink
    with pytest.raises(nanostream.GraphError, match="'pairs' keeps items between reads"):
        sink.global_start(state=str(tmp_path / "run.state"))


def test_snapshot_without_restore_is_refused() -> None:
    class Half(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            yield item

        def snapshot_state(self) -> int:
            return 0

    sink = nanostream.testing.Collect()
    nanostream.from_iterable([1]) > Half(name="half") > sink
    with pytest.raises(nanostream.GraphError, match="'half' defines snapshot_state"):
        sink.global_start()


def test_a_runner_without_checkpoints_refuses_state(tmp_path: Path) -> None:
    """A runner that does not say ``checkpoints = True`` (a third party's, here)."""

    class Plain:
        name = "plain"

        def start(self, plan: nanostream.Plan) -> nanostream.Run:
            raise AssertionError("never started")  # pragma: no cover

    sink = nanostream.testing.Collect(name="sink")
    Numbers(10, name="src") > sink
    with pytest.raises(nanostream.GraphError, match="'plain' runner does not take checkpoints"):
        sink.global_start(state=str(tmp_path / "run.state"), runner=Plain())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"state": 3}, "state must be a file path"),
        ({"state": "s", "checkpoint_interval": 0}, "checkpoint_interval must be"),
        ({"state": "s", "checkpoint_items": 0}, "checkpoint_items must be"),
    ],
)
def test_checkpoint_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(nanostream.GraphError, match=message):
        nanostream.RunOptions.from_kwargs(**options)


class Idle(Numbers):
    """Emits its numbers, then waits (with ``sleep``) until the run stops."""

    def generator(self) -> Iterator[int]:
        yield from super().generator()
        while not self.sleep(0.01):
            pass


class Reached(nanostream.NanoNode):
    """A sink whose snapshots say when a checkpoint with every item has reached it."""

    def __init__(self, expect: int) -> None:
        super().__init__(name="sink")
        self.expect = expect
        self.count = 0
        self.all_in = threading.Event()

    def process_item(self, item: int) -> None:
        self.count += 1

    def snapshot_state(self) -> int:
        if self.count == self.expect:
            self.all_in.set()
        return self.count

    def restore_state(self, state: int) -> None:
        self.count = state


@pytest.mark.parametrize("local_runner", LOCAL)
def test_a_source_waiting_for_input_lets_checkpoints_through(
    tmp_path: Path, local_runner: str
) -> None:
    """A source that sleeps between items sends the barrier of a checkpoint due meanwhile."""
    path = str(tmp_path / "run.state")
    sink = Reached(50)
    Idle(50, name="src") > Total(name="total") > sink
    run = sink.global_start(block=False, state=path, checkpoint_interval=0.01, runner=local_runner)
    assert run is not None
    try:
        assert sink.all_in.wait(10)  # while the source sleeps, a barrier came after item 50
    finally:
        run.stop(timeout=10)
    assert sink.count == 50


class Dozing(Numbers):
    """Emits its numbers, then sleeps for a long time (until the run stops)."""

    def generator(self) -> Iterator[int]:
        yield from super().generator()
        while not self.sleep(60):
            pass


@pytest.mark.parametrize("local_runner", LOCAL)
def test_a_source_in_a_long_sleep_lets_each_due_checkpoint_out(
    tmp_path: Path, local_runner: str
) -> None:
    """A source that sleeps longer than the checkpoint interval sends the barrier of a
    checkpoint that comes due during its sleep, not only as it begins to sleep (its first
    sleep begins long before the first checkpoint is due here)."""
    path = str(tmp_path / "run.state")
    sink = Reached(50)
    Dozing(50, name="src") > Total(name="total") > sink
    run = sink.global_start(block=False, state=path, checkpoint_interval=0.5, runner=local_runner)
    assert run is not None
    try:
        assert sink.all_in.wait(20)  # within about one interval, not the sleep's 60 s
    finally:
        run.stop(timeout=10)
    assert sink.count == 50
