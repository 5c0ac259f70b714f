"""The stateful operators keep their state across a crash and a restart (docs/state.md).

Each test fails a run at a random output (in the sink, so every checkpoint before that
output has been committed: a checkpoint commits in the thread of the sink it reaches
last), restarts it from the state store, and compares what an exactly-once sink (whose
state is what it kept) holds at the end with what an uninterrupted run gives: the same
items, in the same order.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanostream
import support
from nanostream.nodes import (
    Aggregate,
    Batch,
    Dedupe,
    IntervalJoin,
    Join,
    Reduce,
    SessionWindow,
    SlidingWindow,
    Tagged,
    TumblingWindow,
)
from support import Kept, Replay

LOCAL = ["threads", "cooperative"]


def crash_and_restart(
    middle: Callable[[], nanostream.NanoNode],
    events: list[Any],
    fail_at: int,
    path: Path,
    runner: str,
    unaligned: bool = False,
) -> list[Any]:
    """What the sink (exactly once into memory) kept after a crash at its ``fail_at``-th
    item and a restart; with ``unaligned``, the checkpoints are unaligned, else aligned."""

    def pipeline(sink: Kept) -> None:
        Replay(events) > middle() > sink

    restarted = support.crash_and_restart(
        pipeline,
        Kept,
        fail_at,
        str(path),
        runner,
        checkpoint_items=1,
        batch_size=1,
        restart={"checkpoint_unaligned": unaligned},
        checkpoint_unaligned=unaligned,
    )
    return restarted.items


def uninterrupted(
    middle: Callable[[], nanostream.NanoNode], events: list[Any], runner: str
) -> list[Any]:
    plain = Kept()
    plain.exactly_once = False
    Replay(events) > middle() > plain
    plain.global_start(runner=runner)
    return plain.items


MIDDLES: dict[str, Callable[[], nanostream.NanoNode]] = {
    "reduce": lambda: Reduce(operator.add, key=lambda e: e[0], name="op"),
    "aggregate-end": lambda: Aggregate(
        create=lambda: 0,
        add=lambda acc, e: acc + e[1],
        key=lambda e: e[0],
        emit="end",
        name="op",
    ),
    "dedupe": lambda: Dedupe(key=lambda e: e, name="op"),
    "tumbling": lambda: TumblingWindow(
        10,
        timestamp=lambda e: e[1],
        key=lambda e: e[0],
        reduce=lambda acc, e: acc + 1,
        initial=0,
        name="op",
    ),
    "sliding": lambda: SlidingWindow(
        10,
        5,
        timestamp=lambda e: e[1],
        key=lambda e: e[0],
        reduce=lambda acc, e: acc + 1,
        initial=0,
        name="op",
    ),
    "session": lambda: SessionWindow(
        5,
        timestamp=lambda e: e[1],
        key=lambda e: e[0],
        reduce=lambda acc, e: acc + 1,
        initial=0,
        name="op",
    ),
    "session-guarded": lambda: SessionWindow(
        3, timestamp=lambda e: e[1], key=lambda e: e[0], name="op", on_error="skip"
    ),
    "batch": lambda: Batch(size=3, name="op"),
    "sliding-guarded": lambda: SlidingWindow(
        10,
        5,
        timestamp=lambda e: e[1],
        key=lambda e: e[0],
        name="op",
        on_error="skip",
    ),
}


def events_strategy(more: int = 0) -> st.SearchStrategy[list[tuple[str, int]]]:
    """Events ``(key, t)`` in time order: two with different keys and ``more`` or more
    others, so that every operator of ``MIDDLES`` gives at least two outputs (one per key;
    ``Batch(size=3)`` needs ``more=2``) and a crash can come after one of them."""
    time = st.integers(min_value=0, max_value=60)
    two_keys = st.tuples(st.permutations("abc"), time, time).map(
        lambda d: [(d[0][0], d[1]), (d[0][1], d[2])]
    )
    others = st.lists(st.tuples(st.sampled_from("abc"), time), min_size=more, max_size=38)
    return st.tuples(two_keys, others).map(lambda d: sorted(d[0] + d[1], key=lambda e: e[1]))


@pytest.mark.parametrize("local_runner", LOCAL)
@pytest.mark.parametrize("kind", sorted(MIDDLES))
@pytest.mark.parametrize("unaligned", [False, True], ids=["aligned", "unaligned"])
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_crash_and_restart_gives_what_an_uninterrupted_run_gives(
    tmp_path_factory: pytest.TempPathFactory,
    local_runner: str,
    kind: str,
    unaligned: bool,
    data: st.DataObject,
) -> None:
    """With ``unaligned`` (``checkpoint_unaligned=True``) the barriers overtake the events
    queued before the operator, whose checkpoints keep them in flight, and the restart
    reads them again first."""
    events = data.draw(events_strategy(more=2 if kind == "batch" else 0), label="events")
    plain = uninterrupted(MIDDLES[kind], events, local_runner)
    assert len(plain) >= 2, "the events should give two outputs or more"
    fail_at = data.draw(st.integers(min_value=2, max_value=len(plain)))
    path = tmp_path_factory.mktemp("state") / "run.state"
    restarted = crash_and_restart(MIDDLES[kind], events, fail_at, path, local_runner, unaligned)
    assert restarted == plain


@pytest.mark.parametrize("local_runner", LOCAL)
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("interval", [False, True], ids=["window", "interval"])
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=events_strategy(), sides=st.lists(st.booleans(), min_size=40, max_size=40))
def test_a_join_restarted_gives_what_an_uninterrupted_run_gives(
    tmp_path_factory: pytest.TempPathFactory,
    local_runner: str,
    how: str,
    interval: bool,
    events: list[Any],
    sides: list[bool],
) -> None:
    """Both sides come tagged through one input (a path that checkpoints align exactly);
    each event comes on both sides, in an order drawn, so that every run has matches."""
    order = (("left", "right"), ("right", "left"))
    tagged = [Tagged(side, e) for s, e in zip(sides, events, strict=False) for side in order[s]]

    def join() -> nanostream.NanoNode:
        if interval:
            return IntervalJoin(
                lambda e: e[0], lower=-3, upper=5, timestamp=lambda e: e[1], how=how, name="op"
            )
        return Join(lambda e: e[0], window=10, timestamp=lambda e: e[1], how=how, name="op")

    plain = uninterrupted(join, tagged, local_runner)
    assert len(plain) >= 2, "each event on both sides matches itself"
    fail_at = len(plain) // 2 + 1
    path = tmp_path_factory.mktemp("state") / "run.state"
    assert crash_and_restart(join, tagged, fail_at, path, local_runner) == plain


def test_a_session_restored_merges_with_the_items_after_it_in_their_order() -> None:
    """Sessions restored and an item after the restart merge as in one run."""

    def sessions() -> SessionWindow:
        return SessionWindow(5, timestamp=lambda e: e[1], key=lambda e: e[0], allowed_lateness=20)

    before, after = [("a", 1), ("a", 4), ("a", 12)], [("a", 8)]  # 8 joins both sessions
    plain: list[Any] = []
    sessions().as_function()(iter(before + after), plain.append)
    first, states = sessions(), []

    def items() -> Iterator[Any]:
        yield from before
        states.append(first.snapshot_state())
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        first.as_function()(items(), [].append)
    node, restarted = sessions(), []
    node.restore_state(states[0])
    node.as_function()(iter(after), restarted.append)
    assert [[e[1] for e in w.value] for w in restarted] == [[1, 4, 12, 8]]
    assert restarted == plain


def test_dedupe_forgets_a_restored_key_when_its_ttl_has_passed() -> None:
    """Ages are kept, not clock readings: a restarted clock starts anywhere."""
    times = iter([100.0, 101.0, 101.0])  # the start, then one reading per item
    node = Dedupe(ttl=10, clock=lambda: next(times))
    node.restore_state([("old", 9.5), ("young", 1.0)])
    out: list[Any] = []
    node.as_function()(iter(["old", "young"]), out.append)
    assert out == ["old"]  # 10.5 s old at the first item: forgotten; "young" is 2 s old
