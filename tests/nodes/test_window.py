"""Windows, running reductions and dedupe (nanostream.nodes.window)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanostream
from nanostream.nodes import (
    Aggregate,
    Dedupe,
    Reduce,
    SessionWindow,
    SlidingWindow,
    TumblingWindow,
    WindowResult,
)
from nanostream.testing import Collect
from support import Counter

INF = float("inf")
Event = tuple[int, int, int]  # (timestamp, key, serial number)


def ts(e: Event) -> int:
    return e[0]


def key(e: Event) -> int:
    return e[1]


def count(n: int, _: Any) -> int:
    return n + 1


def run_window(
    node: nanostream.NanoNode, items: Iterable[Any], runner: str
) -> tuple[list[Any], list[Any]]:
    """Results and late items of a window operator (its "late" port is linked)."""
    sink, late = Collect(), Collect()
    nanostream.from_iterable(items) > node > sink
    node["late"] > late
    sink.global_start(runner=runner)
    return sink.items, late.items


def clock_of(times: Iterable[float]) -> Callable[[], float]:
    """A clock returning ``times`` one per call (operators call it once per item)."""
    return iter(times).__next__


# ----------------------------------------------------------------------------- tumbling
def test_tumbling_event_time_keyed_reduce(runner: str) -> None:
    events = [(1, "a", 5), (2, "b", 1), (4, "a", 2), (5, "a", 7), (6, "b", 3), (14, "a", 1)]
    node = TumblingWindow(
        5, timestamp=lambda e: e[0], key=lambda e: e[1], reduce=lambda t, e: t + e[2], initial=0
    )
    results, late = run_window(node, events, runner)
    assert results == [
        WindowResult("a", 0, 5, 7),
        WindowResult("b", 0, 5, 1),
        WindowResult("a", 5, 10, 7),
        WindowResult("b", 5, 10, 3),
        WindowResult("a", 10, 15, 1),
    ]
    assert late == []


def test_tumbling_collects_lists_and_reduces_without_initial(runner: str) -> None:
    items = [0, 1, 2, 3, 4, 5, 6]
    listed, _ = run_window(TumblingWindow(3, timestamp=lambda x: x), items, runner)
    assert [w.value for w in listed] == [[0, 1, 2], [3, 4, 5], [6]]
    summed, _ = run_window(
        TumblingWindow(3, timestamp=lambda x: x, reduce=operator.add), items, runner
    )
    assert [(w.key, w.start, w.end, w.value) for w in summed] == [
        (None, 0, 3, 3),
        (None, 3, 6, 12),
        (None, 6, 9, 6),
    ]


def test_window_closes_when_the_watermark_passes_not_before() -> None:
    out: list[Any] = []
    node = TumblingWindow(10, timestamp=lambda x: x)
    fn = node.as_function()

    def items() -> Iterator[int]:
        yield 1
        yield 9
        assert out == []  # nothing has reached 10 yet
        yield 10
        assert out == [WindowResult(None, 0, 10, [1, 9])]  # the first window closed at 10
        yield 25

    fn(items(), out.append)
    assert [w.start for w in out] == [0, 10, 20]


def test_late_items_go_to_the_late_port_or_are_dropped(runner: str) -> None:
    events = [(0, 0, 0), (12, 0, 1), (3, 0, 2), (11, 0, 3)]
    results, late = run_window(TumblingWindow(10, timestamp=ts, late="port"), events, runner)
    assert [w.value for w in results] == [[(0, 0, 0)], [(12, 0, 1), (11, 0, 3)]]
    assert late == [(3, 0, 2)]
    results, late = run_window(TumblingWindow(10, timestamp=ts), events, runner)
    assert [len(w.value) for w in results] == [1, 2]
    assert late == []  # dropped: the port is not used


def test_allowed_lateness_keeps_windows_open(runner: str) -> None:
    events = [(0, 0, 0), (12, 0, 1), (3, 0, 2), (16, 0, 3), (4, 0, 4)]
    node = TumblingWindow(10, timestamp=ts, allowed_lateness=5, late="port")
    results, late = run_window(node, events, runner)
    # (3, ...) is within 5 s of the watermark; (4, ...) comes after 16 closed [0, 10)
    assert [w.value for w in results] == [[(0, 0, 0), (3, 0, 2)], [(12, 0, 1), (16, 0, 3)]]
    assert late == [(4, 0, 4)]


def test_keyed_state_is_separate_per_key(runner: str) -> None:
    events = [(t, t % 3, t) for t in range(30)]
    results, _ = run_window(TumblingWindow(10, timestamp=ts, key=key), events, runner)
    assert len(results) == 9
    for w in results:
        assert all(e[1] == w.key and w.start <= e[0] < w.end for e in w.value)
    assert sorted(e for w in results for e in w.value) == events


def test_processing_time_with_an_injected_clock(runner: str) -> None:
    times = [100.0, 100.4, 100.9, 101.2, 103.7]
    node = TumblingWindow(1.0, clock=clock_of(times))
    results, late = run_window(node, "abcde", runner)
    assert [(w.start, w.end, w.value) for w in results] == [
        (100.0, 101.0, ["a", "b", "c"]),
        (101.0, 102.0, ["d"]),
        (103.0, 104.0, ["e"]),
    ]
    assert late == []


def test_windows_flush_at_end_and_on_stop(runner: str) -> None:
    counter = Counter()
    sink = Collect(wait_for=3)
    node = TumblingWindow(100, timestamp=lambda x: x, reduce=count, initial=0)
    counter > node > sink
    run = sink.global_start(block=False, runner=runner, queue_size=64, batch_size=16)
    assert run is not None
    assert sink.seen.wait(10)
    run.stop(timeout=30)
    assert run.state == "finished"
    assert sum(w.value for w in sink.items) == counter.produced  # the open window was emitted
    assert [w.start for w in sink.items] == list(range(0, 100 * len(sink.items), 100))
    assert 0 < sink.items[-1].value <= 100


def test_window_arguments_are_checked() -> None:
    with pytest.raises(nanostream.GraphError, match="size must be a positive number"):
        TumblingWindow(0)
    with pytest.raises(nanostream.GraphError, match="late must be 'drop' or 'port'"):
        TumblingWindow(1, late="keep")
    with pytest.raises(nanostream.GraphError, match="give timestamp=func"):
        TumblingWindow(1, allowed_lateness=3)
    with pytest.raises(nanostream.GraphError, match="initial= needs reduce="):
        SessionWindow(1, initial=0)
    assert TumblingWindow(1).ports == ()
    assert TumblingWindow(1, late="port").ports == ("out", "late")


# ----------------------------------------------------------------------------- sliding
def test_sliding_windows_overlap(runner: str) -> None:
    events = [(0, 0, 0), (3, 0, 1), (4, 0, 2), (9, 0, 3)]
    results, _ = run_window(SlidingWindow(4, step=2, timestamp=ts), events, runner)
    assert [(w.start, w.end, [e[2] for e in w.value]) for w in results] == [
        (-2, 2, [0]),
        (0, 4, [0, 1]),
        (2, 6, [1, 2]),
        (4, 8, [2]),
        (6, 10, [3]),
        (8, 12, [3]),
    ]


# ----------------------------------------------------------------------------- sessions
def test_sessions_merge_when_an_item_bridges_them(runner: str) -> None:
    # gap 5: 0 and 8 are separate sessions until 4 arrives (within 5 of both)
    events = [(0, 0, 0), (8, 0, 1), (4, 0, 2), (30, 0, 3)]
    node = SessionWindow(5, timestamp=ts, allowed_lateness=10)
    results, _ = run_window(node, events, runner)
    assert [(w.start, w.end, [e[2] for e in w.value]) for w in results] == [
        (0, 13, [0, 1, 2]),
        (30, 35, [3]),
    ]


def test_sessions_per_key_with_processing_time(runner: str) -> None:
    times = [0.0, 1.0, 2.0, 10.0, 10.5]
    node = SessionWindow(3, key=lambda x: x[0], clock=clock_of(times))
    results, _ = run_window(node, [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)], runner)
    assert [(w.key, w.start, w.end, w.value) for w in results] == [
        ("b", 1.0, 4.0, [("b", 2)]),
        ("a", 0.0, 5.0, [("a", 1), ("a", 3)]),
        ("a", 10.0, 13.0, [("a", 4)]),
        ("b", 10.5, 13.5, [("b", 5)]),
    ]


# ----------------------------------------------------------------------------- datetimes
PARIS_WINTER = timezone(timedelta(hours=1))
NEW_YORK_WINTER = timezone(timedelta(hours=-5))
DAY = datetime(2026, 1, 5, tzinfo=UTC)


def at(hhmmss: str, zone: timezone = UTC) -> datetime:
    """``DAY`` at ``hhmmss`` UTC, written in ``zone``."""
    h, m, s = (int(part) for part in hhmmss.split(":"))
    return (DAY + timedelta(hours=h, minutes=m, seconds=s)).astimezone(zone)


def when(e: tuple[datetime, str]) -> datetime:
    return e[0]


def test_windows_take_datetimes_and_timedelta_sizes(runner: str) -> None:
    # the same instants written in three zones; bounds come out as UTC datetimes
    events = [
        (at("10:00:05"), "a"),
        (at("10:00:40", PARIS_WINTER), "b"),
        (at("10:01:02", NEW_YORK_WINTER), "c"),
        (at("10:00:55"), "late but allowed"),
        (at("10:02:30"), "d"),
        (at("10:00:59"), "too late"),
    ]
    node = TumblingWindow(
        timedelta(minutes=1),
        timestamp=when,
        allowed_lateness=timedelta(seconds=20),
        late="port",
    )
    results, late = run_window(node, events, runner)
    assert [(w.start, w.end, [e[1] for e in w.value]) for w in results] == [
        (at("10:00:00"), at("10:01:00"), ["a", "b", "late but allowed"]),
        (at("10:01:00"), at("10:02:00"), ["c"]),
        (at("10:02:00"), at("10:03:00"), ["d"]),
    ]
    assert all(w.start.tzinfo is UTC and w.end.tzinfo is UTC for w in results)
    assert late == [(at("10:00:59"), "too late")]


def test_sliding_and_session_windows_with_datetimes(runner: str) -> None:
    events = [(at("10:00:00"), "a"), (at("10:00:50", PARIS_WINTER), "b"), (at("10:03:00"), "c")]
    sliding = SlidingWindow(timedelta(minutes=1), timedelta(seconds=30), timestamp=when)
    results, _ = run_window(sliding, events, runner)
    assert [(w.start, w.end, len(w.value)) for w in results] == [
        (at("09:59:30"), at("10:00:30"), 1),
        (at("10:00:00"), at("10:01:00"), 2),
        (at("10:00:30"), at("10:01:30"), 1),
        (at("10:02:30"), at("10:03:30"), 1),
        (at("10:03:00"), at("10:04:00"), 1),
    ]
    sessions = SessionWindow(timedelta(minutes=1), timestamp=when)
    results, _ = run_window(sessions, events, runner)
    assert [(w.start, w.end, [e[1] for e in w.value]) for w in results] == [
        (at("10:00:00"), at("10:01:50"), ["a", "b"]),
        (at("10:03:00"), at("10:04:00"), ["c"]),
    ]


def test_daily_windows_aligned_by_a_timedelta_offset(runner: str) -> None:
    # days in New York (UTC-5): windows start at 05:00 UTC
    days = TumblingWindow(timedelta(days=1), offset=timedelta(hours=5), timestamp=when)
    events = [(at("04:59:59"), "late evening"), (at("05:00:00", NEW_YORK_WINTER), "midnight")]
    results, _ = run_window(days, events, runner)
    assert [(w.start, w.end) for w in results] == [
        (at("05:00:00") - timedelta(days=1), at("05:00:00")),
        (at("05:00:00"), at("05:00:00") + timedelta(days=1)),
    ]
    assert results[1].start.astimezone(NEW_YORK_WINTER).hour == 0


def test_processing_time_with_timedelta_sizes(runner: str) -> None:
    ms = timedelta(milliseconds=1)
    readings = [at("10:00:00"), at("10:00:00") + 400 * ms, at("10:00:01") + 200 * ms]
    node = TumblingWindow(timedelta(seconds=1), clock=clock_of(readings))
    results, _ = run_window(node, "abc", runner)
    assert [(w.start, w.value) for w in results] == [
        (at("10:00:00"), ["a", "b"]),
        (at("10:00:01"), ["c"]),
    ]
    # the real clock: bounds are UTC datetimes around now, ticks every quarter size
    hourly = TumblingWindow(timedelta(hours=1))
    assert hourly.ticks_every() == 1.0
    assert TumblingWindow(timedelta(seconds=2)).ticks_every() == 0.5
    before = datetime.now(UTC)
    results, _ = run_window(hourly, "ab", runner)
    after = datetime.now(UTC)
    assert sum(len(w.value) for w in results) == 2
    assert results[0].start <= before and after <= results[-1].end
    assert all(w.end - w.start == timedelta(hours=1) for w in results)


def test_mixing_numbers_and_timedeltas_in_one_window_is_refused() -> None:
    with pytest.raises(
        nanostream.GraphError,
        match=r"TumblingWindow: size is a timedelta but allowed_lateness is a number \(5\)",
    ):
        TumblingWindow(timedelta(seconds=10), timestamp=when, allowed_lateness=5)
    with pytest.raises(nanostream.GraphError, match="SlidingWindow: size is a timedelta but step"):
        SlidingWindow(timedelta(seconds=10), 5)
    with pytest.raises(nanostream.GraphError, match="size is a timedelta but offset is a number"):
        SlidingWindow(timedelta(seconds=10), timedelta(seconds=5), offset=2)
    with pytest.raises(nanostream.GraphError, match="gap must be a positive duration"):
        SessionWindow(timedelta(0))
    with pytest.raises(nanostream.GraphError, match="allowed_lateness must be a non-negative"):
        SessionWindow(timedelta(1), timestamp=when, allowed_lateness=timedelta(seconds=-1))
    with pytest.raises(nanostream.GraphError, match="size must be a number of seconds or a"):
        TumblingWindow("10s")  # type: ignore[arg-type]
    # zero fits either kind (the default allowed_lateness=0 and offset=0)
    zeros = TumblingWindow(timedelta(seconds=10), offset=0, allowed_lateness=0, timestamp=when)
    results, _ = run_window(zeros, [(at("10:00:05"), "a")], "threads")
    assert [(w.start, w.end) for w in results] == [(at("10:00:00"), at("10:00:10"))]


@pytest.mark.parametrize(
    ("size", "stamp", "message"),
    [
        (
            60,
            at("10:00:00"),
            r"timestamp returned .* \(a datetime\) but size is a number of "
            r"seconds; give size as a timedelta",
        ),
        (
            timedelta(minutes=1),
            36000.0,
            r"timestamp returned 36000.0 \(a number\) but size is "
            r"a timedelta; return timezone-aware datetimes, or give size in seconds",
        ),
        (
            timedelta(minutes=1),
            datetime(2026, 1, 5, 10),
            r"timestamp returned a naive datetime "
            r".*; return timezone-aware datetimes",
        ),
        (60, "10:00", r"timestamp returned '10:00' \(a str\) but size is a number of seconds"),
    ],
)
def test_a_timestamp_of_the_wrong_kind_fails_naming_the_node(
    runner: str, size: Any, stamp: Any, message: str
) -> None:
    node = TumblingWindow(size, timestamp=lambda e: e, name="per_minute")
    with pytest.raises(nanostream.NodeFailed, match="TumblingWindow 'per_minute': " + message):
        run_window(node, [stamp], runner)


def test_the_error_policy_covers_a_timestamp_of_the_wrong_kind(runner: str) -> None:
    node = TumblingWindow(timedelta(minutes=1), timestamp=when, on_error="skip")
    naive = datetime(2026, 1, 5, 10, 0, 30)
    events = [(at("10:00:10"), "a"), (naive, "naive"), (at("10:00:20"), "b")]
    results, _ = run_window(node, events, runner)
    assert [[e[1] for e in w.value] for w in results] == [["a", "b"]]


# ----------------------------------------------------------------------------- references
def ref_fixed(
    events: list[Event], size: int, step: int, lateness: int, keyed: bool
) -> tuple[list[WindowResult], list[Event]]:
    """Tumbling/sliding windows computed the slow, obvious way."""
    windows: dict[tuple[Any, int], list[Event]] = {}
    opened: dict[tuple[Any, int], int] = {}
    results: list[WindowResult] = []
    late: list[Event] = []
    watermark: float = -INF

    def close(limit: float) -> None:
        ready = sorted((s + size, s, opened[(k, s)], k) for (k, s) in windows if s + size <= limit)
        for end, s, _, k in ready:
            results.append(WindowResult(k, s, end, windows.pop((k, s))))

    for event in events:
        t = event[0]
        if t - lateness > watermark:
            watermark = t - lateness
            close(watermark)
        starts = [s for s in range(t - size - step, t + 1) if s % step == 0 and s <= t < s + size]
        live = [s for s in starts if s + size > watermark]
        if not live:
            late.append(event)
            continue
        k = event[1] if keyed else None
        for s in live:
            windows.setdefault((k, s), []).append(event)
            opened.setdefault((k, s), len(opened))
    close(INF)
    return results, late


def ref_sessions(
    events: list[Event], gap: int, lateness: int, keyed: bool
) -> tuple[list[WindowResult], list[Event]]:
    """Session windows: re-cluster every key's pending items after each event."""
    pending: dict[Any, list[Event]] = {}
    results: list[WindowResult] = []
    late: list[Event] = []
    watermark: float = -INF

    def clusters(items: list[Event]) -> list[list[Event]]:
        groups: list[list[Event]] = []
        for e in sorted(items):
            if groups and e[0] - groups[-1][-1][0] < gap:
                groups[-1].append(e)
            else:
                groups.append([e])
        return groups

    def close(limit: float) -> None:
        for k in list(pending):
            for group in clusters(pending[k]):
                end = group[-1][0] + gap
                if end <= limit:
                    in_order = [e for e in pending[k] if e in group]  # arrival order
                    results.append(WindowResult(k, group[0][0], end, in_order))
                    pending[k] = [e for e in pending[k] if e not in group]

    for event in events:
        t = event[0]
        k = event[1] if keyed else None
        watermark = max(watermark, t - lateness)
        close(watermark)
        mine = next(g for g in clusters([*pending.get(k, []), event]) if event in g)
        if mine[-1][0] + gap <= watermark:
            late.append(event)
            continue
        pending.setdefault(k, []).append(event)
    close(INF)
    return results, late


def as_events(raw: list[tuple[int, int]]) -> list[Event]:
    return [(t, k, i) for i, (t, k) in enumerate(raw)]


UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ZONES = [UTC, PARIS_WINTER, NEW_YORK_WINTER, timezone(timedelta(hours=5, minutes=30))]


def in_datetimes(events: list[Event]) -> list[Any]:
    """The events with their times as datetimes (in various zones), for the same windows."""
    return [
        ((UNIX_EPOCH + timedelta(seconds=t)).astimezone(ZONES[i % len(ZONES)]), k, i)
        for t, k, i in events
    ]


def in_seconds(value: Any) -> Any:
    """Datetimes in results (bounds, events) back to seconds since the Unix epoch."""
    if isinstance(value, datetime):
        assert value.tzinfo is not None
        return (value - UNIX_EPOCH) // timedelta(seconds=1)
    if isinstance(value, WindowResult):
        return WindowResult(*(in_seconds(v) for v in value))
    if isinstance(value, list):
        return [in_seconds(v) for v in value]
    if isinstance(value, tuple):
        return tuple(in_seconds(v) for v in value)
    return value


def run_in(
    datetimes: bool, make: Callable[..., Any], events: list[Event], runner: str, **durations: int
) -> tuple[list[Any], list[Any]]:
    """``make(**durations)`` run over ``events`` in seconds, or with datetimes and timedeltas
    (results converted back to seconds)."""
    if not datetimes:
        return run_window(make(**durations), events, runner)
    deltas = {what: timedelta(seconds=value) for what, value in durations.items()}
    results, late = run_window(make(**deltas), in_datetimes(events), runner)
    return in_seconds(results), in_seconds(late)


raw_events = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 2)), max_size=40)
window_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@window_settings
@given(
    raw=raw_events,
    size=st.integers(1, 12),
    lateness=st.integers(0, 10),
    keyed=st.booleans(),
    summed=st.booleans(),
    guarded=st.booleans(),
    datetimes=st.booleans(),
)
def test_tumbling_matches_reference(
    runner: str,
    raw: list[tuple[int, int]],
    size: int,
    lateness: int,
    keyed: bool,
    summed: bool,
    guarded: bool,
    datetimes: bool,
) -> None:
    events = as_events(raw)
    fold: dict[str, Any] = {"reduce": lambda n, e: n + e[2], "initial": 0} if summed else {}

    def make(size: Any, lateness: Any) -> TumblingWindow:
        return TumblingWindow(
            size,
            timestamp=ts,
            key=key if keyed else None,
            allowed_lateness=lateness,
            late="port",
            on_error="skip" if guarded else None,  # the loop that applies an error policy
            **fold,
        )

    results, late = run_in(datetimes, make, events, runner, size=size, lateness=lateness)
    expected, expected_late = ref_fixed(events, size, size, lateness, keyed)
    if summed:
        expected = [w._replace(value=sum(e[2] for e in w.value)) for w in expected]
    assert results == expected
    assert late == expected_late


@window_settings
@given(
    raw=raw_events,
    size=st.integers(1, 12),
    step_fraction=st.integers(1, 12),
    lateness=st.integers(0, 10),
    keyed=st.booleans(),
    guarded=st.booleans(),
    datetimes=st.booleans(),
)
def test_sliding_matches_reference(
    runner: str,
    raw: list[tuple[int, int]],
    size: int,
    step_fraction: int,
    lateness: int,
    keyed: bool,
    guarded: bool,
    datetimes: bool,
) -> None:
    step = min(size, step_fraction)
    events = as_events(raw)

    def make(size: Any, step: Any, lateness: Any) -> SlidingWindow:
        return SlidingWindow(
            size,
            step,
            timestamp=ts,
            key=key if keyed else None,
            allowed_lateness=lateness,
            late="port",
            on_error="skip" if guarded else None,
        )

    results, late = run_in(datetimes, make, events, runner, size=size, step=step, lateness=lateness)
    expected, expected_late = ref_fixed(events, size, step, lateness, keyed)
    assert results == expected
    assert late == expected_late


@window_settings
@given(
    raw=raw_events,
    gap=st.integers(1, 10),
    lateness=st.integers(0, 10),
    keyed=st.booleans(),
    guarded=st.booleans(),
    datetimes=st.booleans(),
)
def test_sessions_match_reference(
    runner: str,
    raw: list[tuple[int, int]],
    gap: int,
    lateness: int,
    keyed: bool,
    guarded: bool,
    datetimes: bool,
) -> None:
    events = as_events(raw)

    def make(gap: Any, lateness: Any) -> SessionWindow:
        return SessionWindow(
            gap,
            timestamp=ts,
            key=key if keyed else None,
            allowed_lateness=lateness,
            late="port",
            on_error="skip" if guarded else None,
        )

    results, late = run_in(datetimes, make, events, runner, gap=gap, lateness=lateness)
    expected, expected_late = ref_sessions(events, gap, lateness, keyed)

    def order(w: WindowResult) -> tuple[Any, ...]:
        return (w.end, w.start, -1 if w.key is None else w.key)

    assert sorted(results, key=order) == sorted(expected, key=order)
    assert late == expected_late


# ----------------------------------------------------------------------------- Reduce
def test_reduce_running_totals_global_and_keyed(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable([1, 2, 3, 4]) > Reduce(operator.add, initial=100) > sink
    sink.global_start(runner=runner)
    assert sink.items == [101, 103, 106, 110]

    words = ["a", "bb", "c", "dd", "e"]
    sink = Collect()
    nanostream.from_iterable(words) > Reduce(count, initial=0, key=len) > sink
    sink.global_start(runner=runner)
    assert sink.items == [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3)]


def test_reduce_emit_end_flushes_per_key(runner: str) -> None:
    sink = Collect()
    node = Reduce(lambda acc, w: acc + w, key=lambda w: w[0], emit="end")
    nanostream.from_iterable(["ab", "cd", "ax", "cz", "b"]) > node > sink
    sink.global_start(runner=runner)
    assert sink.items == [("a", "abax"), ("c", "cdcz"), ("b", "b")]


def test_aggregate_fresh_accumulator_per_key(runner: str) -> None:
    node = Aggregate(
        create=set,
        add=lambda acc, x: acc | {x[1]},
        result=sorted,
        key=lambda x: x[0],
        emit="each",
    )
    sink = Collect()
    nanostream.from_iterable([("k", 2), ("j", 1), ("k", 1), ("k", 2)]) > node > sink
    sink.global_start(runner=runner)
    assert sink.items == [("k", [2]), ("j", [1]), ("k", [1, 2]), ("k", [1, 2])]


def test_aggregate_emit_end_flushes_on_stop(runner: str) -> None:
    sink = Collect()
    node = Aggregate(create=lambda: 0, add=count, key=lambda x: x % 2, emit="end")
    probe = Collect(wait_for=100)
    src = Counter()
    src > node > sink
    src > probe
    run = sink.global_start(block=False, runner=runner, queue_size=64, batch_size=16)
    assert run is not None
    assert probe.seen.wait(10)
    run.stop(timeout=30)
    totals = dict(sink.items)
    assert totals[0] + totals[1] == src.produced > 0


def test_reduce_arguments_are_checked() -> None:
    with pytest.raises(nanostream.GraphError, match="emit must be 'each' or 'end'"):
        Reduce(operator.add, emit="never")
    with pytest.raises(nanostream.GraphError, match="create must be a function"):
        Aggregate(create=0, add=operator.add)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- Dedupe
def test_dedupe_by_item_and_by_key(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable([3, 1, 3, 2, 1]) > Dedupe() > sink
    sink.global_start(runner=runner)
    assert sink.items == [3, 1, 2]

    sink = Collect()
    rows = [{"id": 1, "v": "a"}, {"id": 1, "v": "b"}, {"id": 2, "v": "c"}]
    nanostream.from_iterable(rows) > Dedupe(key=lambda r: r["id"]) > sink
    sink.global_start(runner=runner)
    assert [r["v"] for r in sink.items] == ["a", "c"]


def test_dedupe_ttl_forgets_keys(runner: str) -> None:
    times = [0.0, 1.0, 4.9, 5.0, 5.5, 20.0]
    node = Dedupe(ttl=5.0, clock=clock_of(times))
    sink = Collect()
    nanostream.from_iterable(["a", "b", "a", "a", "b", "a"]) > node > sink
    sink.global_start(runner=runner)
    # "a" passes at 0 and again at 5.0 (5 s later) and 20; "b" passes at 1, not at 5.5
    assert sink.items == ["a", "b", "a", "a"]


def test_dedupe_max_size_forgets_the_oldest(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable([1, 2, 3, 1, 3]) > Dedupe(max_size=2) > sink
    sink.global_start(runner=runner)
    assert sink.items == [1, 2, 3, 1]  # 1 was forgotten when 3 came; 3 was still known
