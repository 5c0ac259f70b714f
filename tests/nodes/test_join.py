"""Merging with origin tags, windowed joins and routing (nanostream.nodes.join)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanostream
from nanostream.nodes import IntervalJoin, Join, JoinResult, Merge, Router, Tagged
from nanostream.testing import Collect

INF = float("inf")
Row = tuple[int, int, int]  # (timestamp, key, serial number)


def ts(r: Row) -> int:
    return r[0]


def key(r: Row) -> int:
    return r[1]


def clock_of(times: Iterable[float]) -> Callable[[], float]:
    return iter(times).__next__


# ----------------------------------------------------------------------------- Merge
def test_merge_tags_each_item_with_its_origin(runner: str) -> None:
    sink = Collect()
    merge = Merge(
        numbers=nanostream.from_iterable([1, 2, 3]), letters=nanostream.from_iterable("ab")
    )
    merge > sink
    sink.global_start(runner=runner)
    assert all(type(t) is Tagged for t in sink.items)
    assert [t.value for t in sink.items if t.origin == "numbers"] == [1, 2, 3]
    assert [t.value for t in sink.items if t.origin == "letters"] == ["a", "b"]


def test_merge_inputs_linked_later_and_named_in_stats(runner: str) -> None:
    merge = Merge(name="m", inputs={"x": nanostream.from_iterable([1])})
    nanostream.from_iterable([2]) > merge.input("y")
    assert merge.input("y") is merge.input("y")
    sink = Collect()
    merge > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None and run.wait(10)
    assert sorted(sink.items) == [Tagged("x", 1), Tagged("y", 2)]
    assert {"m", "m.x", "m.y"} <= set(run.stats())


def test_merge_input_names_are_checked() -> None:
    with pytest.raises(nanostream.GraphError, match="an input name is a non-empty string"):
        Merge().input("")


# ----------------------------------------------------------------------------- Router
def test_router_sends_items_to_named_ports(runner: str) -> None:
    big, small, default = Collect(), Collect(), Collect()
    router = Router(lambda x: "big" if x >= 10 else "small" if x > 0 else "out")
    nanostream.from_iterable([5, 50, 0, 7, 12, -1]) > router
    router["big"] > big
    router["small"] > small
    router > default
    router.global_start(runner=runner)
    assert big.items == [50, 12]
    assert small.items == [5, 7]
    assert default.items == [0, -1]


def test_router_drops_none_and_unlinked_ports(runner: str) -> None:
    evens = Collect()
    router = Router(lambda x: None if x < 0 else ("even" if x % 2 == 0 else "odd"))
    nanostream.from_iterable([-2, 1, 2, 3, 4]) > router
    router["even"] > evens
    router.global_start(runner=runner)
    assert evens.items == [2, 4]


def test_router_with_declared_ports_checks_links_and_routes(runner: str) -> None:
    router = Router(lambda x: "a", ports=("a", "b"))
    nanostream.from_iterable([1]) > router
    router["c"] > Collect()
    with pytest.raises(nanostream.GraphError, match="router 'Router' has no port 'c'"):
        router.global_start(runner=runner)

    bad = Router(lambda x: "z", ports=["a"], name="r")
    nanostream.from_iterable([1]) > bad
    bad["a"] > Collect()
    with pytest.raises(nanostream.NodeFailed, match="route returned 'z'"):
        bad.global_start(runner=runner)


# ----------------------------------------------------------------------------- Join
def test_inner_join_of_two_streams(runner: str) -> None:
    orders = [(1, "o1", 0.1), (2, "o2", 0.4), (3, "o3", 1.5), (1, "o1b", 1.6)]
    payments = [(1, "p1", 0.2), (3, "p3", 1.7), (1, "p1b", 1.8), (2, "p2", 2.5)]
    # each side is in time order, so no item is late however the two interleave
    join = Join(lambda r: r[0], window=1.0, timestamp=lambda r: r[2])
    nanostream.from_iterable(orders) > join.left
    nanostream.from_iterable(payments) > join.right
    sink = Collect()
    join > sink
    sink.global_start(runner=runner)
    pairs = sorted((r.key, r.left[1], r.right[1]) for r in sink.items)
    # o2 and p2 fall in different windows: no match
    assert pairs == [(1, "o1", "p1"), (1, "o1b", "p1b"), (3, "o3", "p3")]
    assert all(type(r) is JoinResult for r in sink.items)


def test_left_join_emits_unmatched_left_items_when_their_window_closes(runner: str) -> None:
    left = [(k, f"l{k}", float(k)) for k in range(6)]
    right = [(k, f"r{k}", float(k) + 0.5) for k in range(0, 6, 2)]
    join = Join(lambda r: r[0], window=1.0, timestamp=lambda r: r[2], how="left")
    nanostream.from_iterable(left) > join.left
    nanostream.from_iterable(right) > join.right
    sink = Collect()
    join > sink
    sink.global_start(runner=runner)
    got = sorted((r.key, r.left[1], r.right and r.right[1]) for r in sink.items)
    assert got == [
        (0, "l0", "r0"),
        (1, "l1", None),
        (2, "l2", "r2"),
        (3, "l3", None),
        (4, "l4", "r4"),
        (5, "l5", None),
    ]


def test_join_by_different_keys_with_processing_time(runner: str) -> None:
    # one clock call per item: all in the window [10, 20)
    join = Join(
        lambda user: user["id"],
        window=10,
        right_key=lambda event: event["user"],
        clock=clock_of([11.0, 12.0, 13.0, 14.0]),
    )
    feed = Merge(
        left=nanostream.from_iterable([{"id": 1, "name": "ann"}]),
        right=nanostream.from_iterable([{"user": 1, "what": "login"}]),
    )
    sink = Collect()
    feed > join > sink
    sink.global_start(runner=runner)
    assert sink.items == [JoinResult(1, {"id": 1, "name": "ann"}, {"user": 1, "what": "login"})]


def test_join_late_items_and_match_order(runner: str) -> None:
    # one source of tagged items (deterministic order), through the join's late port
    feed = [
        Tagged("left", (0, 1, 0)),
        Tagged("right", (1, 1, 1)),
        Tagged("right", (2, 1, 2)),
        Tagged("left", (3, 1, 3)),
        Tagged("right", (25, 1, 4)),
        Tagged("left", (26, 1, 5)),  # both sides are now past 10: [0, 10) closed
        Tagged("left", (4, 1, 6)),  # late
    ]
    join = Join(key, window=10, timestamp=ts, late="port")
    sink, late = Collect(), Collect()
    nanostream.from_iterable(feed) > join > sink
    join["late"] > late
    sink.global_start(runner=runner)
    assert [(r.left[2], r.right[2]) for r in sink.items] == [(0, 1), (0, 2), (3, 1), (3, 2), (5, 4)]
    assert late.items == [Tagged("left", (4, 1, 6))]


def test_an_ended_side_no_longer_holds_the_watermark() -> None:
    out: list[Any] = []
    join = Join(key, window=10, timestamp=ts, how="left")
    fn = join.as_function()
    from nanostream.operators.join import _InputEnded

    def items() -> Iterable[Any]:
        yield Tagged("left", (1, 7, 0))
        yield Tagged("left", (30, 7, 1))
        assert out == []  # the right side has not been seen: nothing closes
        yield _InputEnded("right")
        assert out == [JoinResult(7, (1, 7, 0), None)]

    fn(items(), out.append)
    assert out == [JoinResult(7, (1, 7, 0), None), JoinResult(7, (30, 7, 1), None)]


def test_join_fails_on_items_linked_to_the_join_itself(runner: str) -> None:
    join = Join(key, window=1, name="j")
    nanostream.from_iterable([(0, 1, 0)]) > join
    with pytest.raises(nanostream.NodeFailed, match=r"link its upstreams to join\.left") as info:
        join.global_start(runner=runner)
    assert info.value.node == "j"


def test_join_arguments_are_checked() -> None:
    with pytest.raises(nanostream.GraphError, match="'left' and 'right' only"):
        Join(key, window=1).input("middle")
    with pytest.raises(nanostream.GraphError, match="how must be 'inner' or 'left'"):
        Join(key, window=1, how="outer")


def test_join_fails_on_items_without_a_side(runner: str) -> None:
    # a Merge whose inputs are not called left/right feeds items the join cannot place
    join = Join(key, window=1, name="j")
    Merge(x=nanostream.from_iterable([(0, 1, 0)])) > join
    with pytest.raises(nanostream.NodeFailed, match=r"link its upstreams to join\.left") as info:
        join.global_start(runner=runner)
    assert info.value.node == "j"


# ----------------------------------------------------------------------------- datetimes
PARIS_WINTER = timezone(timedelta(hours=1))
DAY = datetime(2026, 1, 5, tzinfo=UTC)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(seconds: float, zone: timezone = UTC) -> datetime:
    """``DAY`` plus ``seconds``, written in ``zone``."""
    return (DAY + timedelta(seconds=seconds)).astimezone(zone)


def test_join_with_datetimes_and_a_timedelta_window(runner: str) -> None:
    orders = [("o1", at(10)), ("o2", at(50, PARIS_WINTER)), ("o3", at(70))]
    payments = [("o1", at(20, PARIS_WINTER)), ("o2", at(65)), ("o3", at(100))]
    join = Join(lambda r: r[0], window=timedelta(minutes=1), timestamp=lambda r: r[1])
    nanostream.from_iterable(orders) > join.left
    nanostream.from_iterable(payments) > join.right
    sink = Collect()
    join > sink
    sink.global_start(runner=runner)
    # o2 and its payment fall in different minutes: no match
    assert sorted((r.key, r.left[1], r.right[1]) for r in sink.items) == [
        ("o1", at(10), at(20)),
        ("o3", at(70), at(100)),
    ]


def test_join_in_processing_time_with_a_timedelta_window(runner: str) -> None:
    # one clock reading per item, as aware datetimes: the first two share [0 s, 10 s)
    join = Join(
        lambda r: r,
        window=timedelta(seconds=10),
        clock=clock_of([at(1), at(9, PARIS_WINTER), at(11)]),
    )
    feed = [Tagged("left", "k"), Tagged("right", "k"), Tagged("right", "k")]
    sink = Collect()
    nanostream.from_iterable(feed) > join > sink
    sink.global_start(runner=runner)
    assert sink.items == [JoinResult("k", "k", "k")]
    assert Join(key, window=timedelta(seconds=2)).ticks_every() == 0.5


def test_join_refuses_mixed_kinds_of_time(runner: str) -> None:
    with pytest.raises(
        nanostream.GraphError, match="Join: window is a timedelta but allowed_lateness is a number"
    ):
        Join(key, window=timedelta(seconds=10), timestamp=ts, allowed_lateness=2)
    join = Join(
        lambda r: r[0],
        window=timedelta(seconds=10),
        timestamp=lambda r: r[1],
        right_timestamp=lambda r: r[2],
        name="j",
    )
    feed = [Tagged("left", ("a", at(1), None)), Tagged("right", ("a", None, 2.0))]
    nanostream.from_iterable(feed) > join > Collect()
    with pytest.raises(
        nanostream.NodeFailed,
        match=r"Join 'j': right_timestamp returned 2.0 \(a number\) but window is a timedelta",
    ) as info:
        join.global_start(runner=runner)
    assert info.value.node == "j"


# ----------------------------------------------------------------------------- IntervalJoin
def run_tagged(join: nanostream.NanoNode, feed: list[Tagged]) -> list[Any]:
    """What ``join`` emits for one stream of tagged items (on the default runner)."""
    sink = Collect()
    nanostream.from_iterable(feed) > join > sink
    sink.global_start()
    return sink.items


def interval_join(
    join: IntervalJoin, left: list[Any], right: list[Any], runner: str
) -> list[JoinResult]:
    """The results of ``join`` over two streams (each in time order: none is late)."""
    nanostream.from_iterable(left) > join.left
    nanostream.from_iterable(right) > join.right
    sink = Collect()
    join > sink
    sink.global_start(runner=runner)
    assert all(type(r) is JoinResult for r in sink.items)
    return sink.items


def test_interval_join_pairs_items_within_the_bounds(runner: str) -> None:
    orders = [("o1", 0), ("o2", 10), ("o3", 20), ("o1", 100)]
    payments = [("o1", 5), ("o2", 5), ("o1", 50), ("o1", 51), ("o3", 70), ("o1", 140)]
    both = IntervalJoin(lambda r: r[0], lower=0, upper=50, timestamp=lambda r: r[1])
    got = interval_join(both, orders, payments, runner)
    # o2's payment came before it (lower=0); o1 at 0 pairs with 5 and 50, not 51
    assert sorted((r.key, r.left[1], r.right[1]) for r in got) == [
        ("o1", 0, 5),
        ("o1", 0, 50),
        ("o1", 100, 140),
        ("o3", 20, 70),
    ]
    around = IntervalJoin(lambda r: r[0], lower=-5, upper=5, timestamp=lambda r: r[1], how="left")
    got = interval_join(around, orders, payments, runner)
    assert sorted((r.key, r.left[1], r.right and r.right[1]) for r in got) == [
        ("o1", 0, 5),
        ("o1", 100, None),
        ("o2", 10, 5),
        ("o3", 20, None),
    ]


def test_interval_join_with_datetimes_keys_and_timestamps_per_side(runner: str) -> None:
    orders = [{"id": 1, "at": at(0)}, {"id": 2, "at": at(30, PARIS_WINTER)}]
    payments = [(2, at(25)), (1, at(49, PARIS_WINTER)), (2, at(81))]
    join = IntervalJoin(
        lambda o: o["id"],
        lower=-timedelta(seconds=5),
        upper=timedelta(seconds=50),
        timestamp=lambda o: o["at"],
        right_key=lambda p: p[0],
        right_timestamp=lambda p: p[1],
        how="left",
    )
    got = interval_join(join, orders, payments, runner)
    assert sorted((r.key, r.right and r.right[1]) for r in got) == [(1, at(49)), (2, at(25))]


def test_interval_join_late_items_and_the_order_of_results(runner: str) -> None:
    # one source of tagged items (a deterministic order), through the late port
    feed = [
        Tagged("left", (10, 1, 0)),
        Tagged("right", (12, 1, 1)),  # pairs with 0 at once
        Tagged("left", (11, 2, 2)),
        Tagged("right", (30, 9, 3)),
        Tagged("left", (30, 9, 4)),  # pairs with 3; watermark 30: 0 and 2 are done
        Tagged("right", (13, 2, 5)),  # late: 13 < 30 (2 was forgotten, unmatched)
        Tagged("left", (40, 9, 6)),
        Tagged("right", (45, 9, 7)),  # pairs with 6 (40 - 2 <= 45 <= 40 + 10), not 4
    ]
    join = IntervalJoin(key, lower=-2, upper=10, timestamp=ts, how="left", late="port")
    sink, late = Collect(), Collect()
    nanostream.from_iterable(feed) > join > sink
    join["late"] > late
    sink.global_start(runner=runner)
    assert [(r.left[2], r.right and r.right[2]) for r in sink.items] == [
        (0, 1),
        (2, None),  # emitted when the watermark passed 11 + 10
        (4, 3),
        (6, 7),
    ]
    assert late.items == [Tagged("right", (13, 2, 5))]


def test_interval_join_forgets_items_once_the_watermark_passes() -> None:
    from nanostream.operators.join import _InputEnded

    out: list[Any] = []
    join = IntervalJoin(key, lower=0, upper=10, timestamp=ts, how="left")
    fn = join.as_function()

    def items() -> Iterable[Any]:
        yield Tagged("left", (0, 7, 0))
        yield Tagged("right", (10, 7, 1))  # the bound is inclusive
        yield Tagged("left", (5, 8, 2))
        yield Tagged("left", (30, 8, 3))
        assert out == [JoinResult(7, (0, 7, 0), (10, 7, 1))]  # the watermark is 10
        yield Tagged("right", (15, 8, 4))  # 5 + 10 is still reachable
        yield Tagged("right", (16, 7, 5))  # watermark 16: left 5 is forgotten
        assert out[1:] == [JoinResult(8, (5, 8, 2), (15, 8, 4))]
        yield _InputEnded("right")  # the watermark is now 30: left 30 still waits
        assert len(out) == 2
        yield Tagged("left", (45, 8, 6))  # watermark 45: 30 + 10 has passed
        assert out[2:] == [JoinResult(8, (30, 8, 3), None)]

    fn(items(), out.append)
    assert out[3:] == [JoinResult(8, (45, 8, 6), None)]  # flushed at the end


class Payment:
    """A right item that can be watched for being forgotten (a weak reference to it)."""

    def __init__(self, at: int, key: int) -> None:
        self.at = at
        self.key = key


def test_interval_join_lets_go_of_items_no_item_on_time_can_match() -> None:
    join = IntervalJoin(
        lambda r: r.key if isinstance(r, Payment) else r[1],
        lower=-5,
        upper=10,
        timestamp=lambda r: r.at if isinstance(r, Payment) else r[0],
    )
    fn = join.as_function()
    refs: list[weakref.ref[Payment]] = []

    def items() -> Iterable[Any]:
        for t in (10, 20):
            payment = Payment(t, 1)
            refs.append(weakref.ref(payment))
            yield Tagged("right", payment)
            del payment
        yield Tagged("left", (14, 1, 0))  # the watermark is 14: 10 - (-5) = 15 not passed
        gc.collect()
        assert [r() is not None for r in refs] == [True, True]
        yield Tagged("left", (16, 1, 1))  # watermark 16 > 15: no left on time can match 10
        gc.collect()
        assert [r() is not None for r in refs] == [False, True]

    pairs: list[tuple[int, int]] = []  # not the results: they would hold the payments
    fn(items(), lambda r: pairs.append((r.left[2], r.right.at)))
    assert pairs == [(0, 10), (0, 20), (1, 20)]


def test_interval_join_arguments_are_checked() -> None:
    with pytest.raises(nanostream.GraphError, match=r"IntervalJoin: lower \(5\) is above upper"):
        IntervalJoin(key, lower=5, upper=-5, timestamp=ts)
    with pytest.raises(nanostream.GraphError, match="IntervalJoin: give timestamp=func"):
        IntervalJoin(key, lower=0, upper=5, timestamp=None)  # type: ignore[arg-type]
    with pytest.raises(
        nanostream.GraphError, match="IntervalJoin: upper is a timedelta but lower is a number"
    ):
        IntervalJoin(key, lower=-5, upper=timedelta(seconds=5), timestamp=ts)
    with pytest.raises(nanostream.GraphError, match="allowed_lateness must be a number >= 0"):
        IntervalJoin(key, lower=0, upper=5, timestamp=ts, allowed_lateness=-1)
    with pytest.raises(nanostream.GraphError, match="how must be 'inner' or 'left'"):
        IntervalJoin(key, lower=0, upper=5, timestamp=ts, how="outer")
    with pytest.raises(nanostream.GraphError, match="'left' and 'right' only"):
        IntervalJoin(key, lower=0, upper=5, timestamp=ts).input("middle")
    # zero fits either kind of time: this join reads datetimes
    join = IntervalJoin(lambda r: r[1], lower=0, upper=timedelta(seconds=5), timestamp=ts)
    feed = [Tagged("left", (at(0), "k")), Tagged("right", (at(5), "k"))]
    assert [(r.left[0], r.right[0]) for r in run_tagged(join, feed)] == [(at(0), at(5))]


def test_interval_join_fails_on_items_without_a_side(runner: str) -> None:
    join = IntervalJoin(key, lower=0, upper=1, timestamp=ts, name="ij")
    nanostream.from_iterable([(0, 1, 0)]) > join
    with pytest.raises(nanostream.NodeFailed, match=r"link its upstreams to join\.left") as info:
        join.global_start(runner=runner)
    assert info.value.node == "ij"


def test_interval_join_error_policy_covers_keys_and_timestamps(runner: str) -> None:
    feed = [
        Tagged("left", ("a", at(0))),
        Tagged("left", ("b", datetime(2026, 1, 5))),  # naive: refused, skipped
        Tagged("right", ("a", at(1))),
        Tagged("right", (None, at(2))),  # the key function fails on it
    ]
    join = IntervalJoin(
        lambda r: r[0].upper(),
        lower=timedelta(0),
        upper=timedelta(seconds=5),
        timestamp=lambda r: r[1],
        on_error="skip",
    )
    sink, dead = Collect(), Collect()
    nanostream.from_iterable(feed) > join > sink
    join.errors > dead
    sink.global_start(runner=runner)
    assert sink.items == [JoinResult("A", ("a", at(0)), ("a", at(1)))]
    assert [r.exception_type for r in dead.items] == [
        "ValueError",
        "AttributeError",
    ]


def ref_interval(
    feed: list[tuple[str, Row]], lower: int, upper: int, lateness: int, how: str
) -> tuple[list[tuple[int, int, int | None]], list[tuple[str, Row]]]:
    """Pairs (key, left serial, right serial or None) and late items, by brute force:
    every left with every right, once the late items are set aside."""
    side_max = {"left": -INF, "right": -INF}
    accepted: list[tuple[str, Row]] = []
    late: list[tuple[str, Row]] = []
    for side, row in feed:
        side_max[side] = max(side_max[side], row[0])
        if row[0] < min(side_max.values()) - lateness:
            late.append((side, row))
        else:
            accepted.append((side, row))
    lefts = [r for s, r in accepted if s == "left"]
    rights = [r for s, r in accepted if s == "right"]
    pairs: list[tuple[int, int, int | None]] = [
        (lt[1], lt[2], rt[2])
        for lt in lefts
        for rt in rights
        if lt[1] == rt[1] and lt[0] + lower <= rt[0] <= lt[0] + upper
    ]
    if how == "left":
        matched = {p[1] for p in pairs}
        pairs += [(lt[1], lt[2], None) for lt in lefts if lt[2] not in matched]
    return pairs, late


def seconds_of(row: Any) -> Row:
    """A row whose time is a datetime, back to seconds since the Unix epoch."""
    t, k, i = row
    return ((t - UNIX_EPOCH) // timedelta(seconds=1), k, i) if isinstance(t, datetime) else row


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.lists(
        st.tuples(st.sampled_from(["left", "right"]), st.integers(0, 40), st.integers(0, 2)),
        max_size=30,
    ),
    bounds=st.tuples(st.integers(-10, 10), st.integers(-10, 10)).map(sorted),
    lateness=st.integers(0, 8),
    how=st.sampled_from(["inner", "left"]),
    guarded=st.booleans(),
    datetimes=st.booleans(),
)
def test_interval_join_matches_brute_force(
    runner: str,
    raw: list[tuple[str, int, int]],
    bounds: list[int],
    lateness: int,
    how: str,
    guarded: bool,
    datetimes: bool,
) -> None:
    lower, upper = bounds
    feed = [(side, (t, k, i)) for i, (side, t, k) in enumerate(raw)]
    durations: dict[str, Any] = {"lower": lower, "upper": upper, "allowed_lateness": lateness}
    tagged = [Tagged(s, r) for s, r in feed]
    if datetimes:
        durations = {name: timedelta(seconds=d) for name, d in durations.items()}
        zones = [UTC, PARIS_WINTER]
        tagged = [
            Tagged(s, ((UNIX_EPOCH + timedelta(seconds=t)).astimezone(zones[i % 2]), k, i))
            for s, (t, k, i) in feed
        ]
    join = IntervalJoin(key, timestamp=ts, how=how, late="port", **durations)
    if guarded:
        join.configure(on_error="skip")  # the loop that applies an error policy
    sink, late = Collect(), Collect()
    nanostream.from_iterable(tagged) > join > sink
    join["late"] > late
    sink.global_start(runner=runner)
    got = [(r.key, r.left[2], None if r.right is None else r.right[2]) for r in sink.items]
    expected, expected_late = ref_interval(feed, lower, upper, lateness, how)

    def order(p: tuple[int, int, int | None]) -> tuple[int, int, int]:
        return (p[0], p[1], -1 if p[2] is None else p[2])

    assert sorted(got, key=order) == sorted(expected, key=order)
    assert len(got) == len(expected)  # each pair once
    assert [(t.origin, seconds_of(t.value)) for t in late.items] == expected_late


# ----------------------------------------------------------------------------- reference
def ref_join(
    feed: list[tuple[str, Row]], size: int, lateness: int, how: str
) -> tuple[list[tuple[int, int, int | None]], list[tuple[str, Row]]]:
    """Pairs (key, left serial, right serial or None) and late items, the obvious way."""
    side_max = {"left": -INF, "right": -INF}
    accepted: list[tuple[str, Row]] = []
    late: list[tuple[str, Row]] = []
    for side, row in feed:
        side_max[side] = max(side_max[side], row[0])
        watermark = min(side_max.values()) - lateness
        start = row[0] - row[0] % size
        if start + size <= watermark:
            late.append((side, row))
        else:
            accepted.append((side, row))

    def group(row: Row) -> tuple[int, int]:
        return (row[1], row[0] - row[0] % size)

    lefts = [r for s, r in accepted if s == "left"]
    rights = [r for s, r in accepted if s == "right"]
    pairs: list[tuple[int, int, int | None]] = [
        (lt[1], lt[2], rt[2]) for lt in lefts for rt in rights if group(lt) == group(rt)
    ]
    if how == "left":
        matched = {p[1] for p in pairs}
        pairs += [(lt[1], lt[2], None) for lt in lefts if lt[2] not in matched]
    return pairs, late


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.lists(
        st.tuples(st.sampled_from(["left", "right"]), st.integers(0, 40), st.integers(0, 2)),
        max_size=30,
    ),
    size=st.integers(1, 10),
    lateness=st.integers(0, 8),
    how=st.sampled_from(["inner", "left"]),
    guarded=st.booleans(),
)
def test_join_matches_reference(
    runner: str,
    raw: list[tuple[str, int, int]],
    size: int,
    lateness: int,
    how: str,
    guarded: bool,
) -> None:
    feed = [(side, (t, k, i)) for i, (side, t, k) in enumerate(raw)]
    join = Join(key, window=size, timestamp=ts, allowed_lateness=lateness, how=how, late="port")
    if guarded:
        join.configure(on_error="skip")  # the loop that applies an error policy
    sink, late = Collect(), Collect()
    nanostream.from_iterable([Tagged(s, r) for s, r in feed]) > join > sink
    join["late"] > late
    sink.global_start(runner=runner)
    got = [(r.key, r.left[2], None if r.right is None else r.right[2]) for r in sink.items]
    expected, expected_late = ref_join(feed, size, lateness, how)

    def order(p: tuple[int, int, int | None]) -> tuple[int, int, int]:
        return (p[0], p[1], -1 if p[2] is None else p[2])

    assert sorted(got, key=order) == sorted(expected, key=order)
    assert [(t.origin, t.value) for t in late.items] == expected_late
