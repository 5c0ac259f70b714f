"""The Ray runner with a state store: aligned checkpoints, restored state (docs/state.md).

A run on Ray fails after a checkpoint was committed and is restarted from the store: the
sink's kept items (its state, restored with the rest) equal those of an uninterrupted run,
which holds only if the source's position, the operator's state and the sink's state were
snapshotted at one consistent cut. What Ray cannot checkpoint is refused before any actor
starts, naming the node.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install 'nanostream[ray]'")

import nanostream
import support
from conftest import send_by_value
from nanostream.nodes import Aggregate, Dedupe, Reduce, TumblingWindow
from nanostream.state import open_store


@pytest.fixture(autouse=True)
def local_ray(ray_session: Any) -> None:
    """The test session's Ray instance; the workers get this module's classes by value."""
    import sys

    send_by_value(ray_session, sys.modules[__name__])


def committed(path: Path) -> int:
    """The number of the store's last checkpoint (0 without one)."""
    store = open_store(str(path))
    try:
        checkpoint = store.load()
        return 0 if checkpoint is None else checkpoint.epoch
    finally:
        store.close()


class Events(nanostream.NanoNode):
    """Emits ``(key, time)`` events from its stored position; with ``crash_after``, fails
    once it has emitted that many and a checkpoint is committed in ``store``."""

    def __init__(self, events: list[Any], store: Path, crash_after: int | None = None):
        super().__init__(name="events", batch_size=1)
        self.events = events
        self.store = store
        self.crash_after = crash_after

    def setup(self) -> None:
        self.position = 0

    def generator(self) -> Iterator[Any]:
        while self.position < len(self.events):
            if self.position == self.crash_after:
                # While it waits, sleep() lets the barriers of the checkpoints begun out.
                assert support.wait_until(lambda: self.checkpointed(self.sleep))
                raise RuntimeError("crash")
            self.position += 1
            yield self.events[self.position - 1]

    def checkpointed(self, sleep: Callable[[float], Any]) -> bool:
        sleep(0.01)
        return committed(self.store) > 0

    def snapshot_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


class Keep(nanostream.NanoNode):
    """A sink that keeps what it receives, as its state (at-least-once: not exactly_once)."""

    def __init__(self) -> None:
        super().__init__(name="keep")
        self.items: list[Any] = []

    def process_item(self, item: Any) -> None:
        self.items.append(item)

    def snapshot_state(self) -> list[Any]:
        return self.items

    def restore_state(self, state: list[Any]) -> None:
        self.items = list(state)


MIDDLES: dict[str, Callable[[], nanostream.NanoNode]] = {
    "reduce": lambda: Reduce(operator.add, key=lambda e: e[0], name="op"),
    "aggregate-end": lambda: Aggregate(
        create=lambda: 0,
        add=lambda acc, e: acc + e[1],
        key=lambda e: e[0],
        emit="end",
        name="op",
    ),
    "dedupe": lambda: Dedupe(key=lambda e: e[0], name="op"),
    "tumbling": lambda: TumblingWindow(
        10,
        timestamp=lambda e: e[1],
        key=lambda e: e[0],
        reduce=lambda acc, e: acc + 1,
        initial=0,
        name="op",
    ),
}

EVENTS = [("abc"[i % 3], i) for i in range(60)]


def kept(middle: str, store: Path, crash_after: int | None = None, **options: Any) -> list[Any]:
    sink = Keep()
    Events(EVENTS, store, crash_after) > MIDDLES[middle]() > sink
    sink.global_start(runner="ray", state=str(store), **options)
    return sink.items


@pytest.mark.parametrize("middle", sorted(MIDDLES))
def test_a_crash_and_restart_on_ray_gives_what_an_uninterrupted_run_gives(
    tmp_path: Path, middle: str
) -> None:
    plain = kept(middle, tmp_path / "plain.state")
    store = tmp_path / "run.state"
    with pytest.raises(nanostream.NodeFailed, match="events"):
        kept(middle, store, crash_after=30, checkpoint_interval=0.05)
    assert committed(store) > 0
    state = open_store(str(store)).load()
    assert state is not None and 0 < state.states["events"][1] <= 30
    assert kept(middle, store) == plain


def test_checkpoints_every_few_items_on_ray_are_consistent_cuts(tmp_path: Path) -> None:
    """With ``checkpoint_items``, a source asks for checkpoints; each committed one holds
    the totals of exactly the items before the source's position in it."""
    store = tmp_path / "run.state"
    with pytest.raises(nanostream.NodeFailed, match="events"):
        kept("reduce", store, crash_after=45, checkpoint_items=5, checkpoint_interval=60)
    state = open_store(str(store)).load()
    assert state is not None
    position = state.states["events"][1]
    assert 0 < position <= 45
    totals: dict[str, Any] = {}
    for event in EVENTS[:position]:  # Reduce(operator.add) of tuples: concatenated
        key = event[0]
        totals[key] = totals[key] + event if key in totals else event
    assert state.states["op"][1] == totals


class Numbers(nanostream.NanoNode):
    """docs/state.md's first source: 1, 2, ... up to ``stop``, from its stored position."""

    def __init__(self, stop: int, **options: Any) -> None:
        super().__init__(**options)
        self.stop = stop

    def setup(self) -> None:
        self.position = 0

    def generator(self) -> Iterator[int]:
        while self.position < self.stop:
            self.position += 1
            yield self.position

    def snapshot_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


def test_the_docs_first_example_on_ray(tmp_path: Path) -> None:
    """A run that ends well commits its final states; the next one resumes from them."""
    path = str(tmp_path / "run.state")

    def run(stop: int) -> list[Any]:
        sink = nanostream.testing.Collect(name="sink")
        Numbers(stop, name="numbers") > Reduce(operator.add, name="total") > sink
        sink.global_start(state=path, runner="ray")
        return sink.items

    assert run(3) == [1, 3, 6]
    assert run(5) == [10, 15]


def test_writing_exactly_once_is_refused_on_ray(tmp_path: Path) -> None:
    from nanostream.nodes.sql import SQLSink

    sink = SQLSink(f"sqlite:///{tmp_path / 'out.db'}", "t", exactly_once=True, name="out")
    Events(EVENTS, tmp_path) > sink
    with pytest.raises(nanostream.GraphError, match="node 'out' writes exactly once"):
        sink.global_start(state=str(tmp_path / "run.state"), runner="ray")


def test_a_stateful_node_with_replicas_is_refused_on_ray(tmp_path: Path) -> None:
    sink = Keep()
    Events(EVENTS, tmp_path) > MIDDLES["reduce"]() > sink
    with pytest.raises(nanostream.GraphError, match="node 'op' keeps state and has replicas=2"):
        sink.global_start(
            state=str(tmp_path / "run.state"), runner="ray", ray_options={"op": {"replicas": 2}}
        )
