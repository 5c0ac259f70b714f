"""The sampler: rates, waiting shares, inferred long waits, bottleneck, per-item times."""

from __future__ import annotations

from typing import Any

import pytest

from nanostream import NodeStats
from nanostream.observe import Sampler


def stats(name: str, **kw: Any) -> NodeStats:
    base: dict[str, Any] = {
        "name": name,
        "state": "running",
        "items_in": 0,
        "items_out": 0,
        "errors": 0,
        "queue_depth": 0,
        "queue_capacity": 100,
        "blocked_input_s": 0.0,
        "blocked_output_s": 0.0,
    }
    base.update(kw)
    return NodeStats(**base)


def snap(*nodes: NodeStats) -> dict[str, NodeStats]:
    return {n.name: n for n in nodes}


def test_rates_and_waiting_shares_over_the_window() -> None:
    sampler = Sampler(window=10.0)
    sampler.sample(snap(stats("src", queue_capacity=0), stats("work")), now=0.0)
    sample = sampler.sample(
        snap(
            stats("src", queue_capacity=0, items_out=400, blocked_output_s=1.0),
            stats("work", items_in=300, items_out=300, blocked_input_s=0.5),
        ),
        now=2.0,
    )
    src, work = sample.nodes
    assert src.is_source and not work.is_source
    assert src.rate == pytest.approx(200.0)  # items sent, for a source
    assert work.rate == pytest.approx(150.0)  # items taken in
    assert (src.wait_input, src.wait_output) == (0.0, pytest.approx(0.5))
    assert work.wait_input == pytest.approx(0.25)
    assert work.busy == pytest.approx(0.75)
    assert sample.elapsed == 2.0


def test_old_samples_leave_the_window() -> None:
    sampler = Sampler(window=1.0)
    for t in range(5):
        sampler.sample(snap(stats("n", items_in=100 * t if t < 3 else 200)), now=float(t))
    # between t=3 and t=4 nothing moved: the rate is over the window only
    last = sampler.sample(snap(stats("n", items_in=200)), now=5.0)
    assert last.nodes[0].rate == 0.0


def test_a_long_wait_for_input_is_inferred_before_it_ends() -> None:
    sampler = Sampler(window=2.0)
    sampler.sample(snap(stats("sink", items_in=10)), now=0.0)
    # nothing arrived, queue empty, and no wait recorded yet (the wait has not ended)
    view = sampler.sample(snap(stats("sink", items_in=10)), now=2.0).nodes[0]
    assert view.wait_input == 1.0 and view.busy == 0.0
    # with items waiting in its queue, the same node is not waiting for input: it is stuck
    sampler2 = Sampler(window=2.0)
    sampler2.sample(snap(stats("sink", items_in=10, queue_depth=5)), now=0.0)
    view = sampler2.sample(snap(stats("sink", items_in=10, queue_depth=5)), now=2.0).nodes[0]
    assert view.wait_input == 0.0 and view.busy == 1.0


def test_a_long_wait_for_room_downstream_is_inferred_with_the_downstream_map() -> None:
    before = snap(stats("src", queue_capacity=0, items_out=100), stats("slow", items_in=1))
    after = snap(
        stats("src", queue_capacity=0, items_out=100),
        stats("slow", items_in=1, queue_depth=99),
    )
    plain = Sampler(window=2.0)
    plain.sample(before, now=0.0)
    assert plain.sample(after, now=2.0).nodes[0].wait_output == 0.0
    informed = Sampler(window=2.0, downstream={"src": ["slow"]})
    informed.sample(before, now=0.0)
    sample = informed.sample(after, now=2.0)
    assert sample.nodes[0].wait_output == 1.0
    assert sample.bottleneck is not None and sample.bottleneck.name == "slow"


def test_the_bottleneck_is_the_busiest_running_node() -> None:
    sampler = Sampler(window=10.0)
    sampler.sample(snap(stats("a", queue_capacity=0), stats("b"), stats("c")), now=0.0)
    sample = sampler.sample(
        snap(
            stats("a", queue_capacity=0, items_out=50, blocked_output_s=0.9),
            stats("b", items_in=50, items_out=50, blocked_input_s=0.1, queue_depth=90),
            stats("c", items_in=50, blocked_input_s=0.8),
        ),
        now=1.0,
    )
    assert [n.name for n in sample.nodes if n.bottleneck] == ["b"]
    assert sample.bottleneck is not None and sample.bottleneck.busy == pytest.approx(0.9)


def test_no_bottleneck_when_every_node_mostly_waits_or_has_ended() -> None:
    sampler = Sampler(window=10.0)
    sampler.sample(snap(stats("a", queue_capacity=0), stats("b")), now=0.0)
    idle = sampler.sample(
        snap(
            stats("a", queue_capacity=0, items_out=5, blocked_output_s=0.7),
            stats("b", items_in=5, blocked_input_s=0.9),
        ),
        now=1.0,
    )
    assert idle.bottleneck is None
    ended = sampler.sample(
        snap(stats("a", queue_capacity=0, state="finished"), stats("b", state="finished")),
        now=2.0,
    )
    assert ended.bottleneck is None
    assert Sampler().sample(snap(stats("a")), now=0.0).bottleneck is None  # no window yet


def test_per_item_times_come_from_busy_time_and_items() -> None:
    sampler = Sampler()
    sampler.sample(snap(stats("n")), now=0.0)
    # 1 s elapsed, 0.5 s waited for input, 10 items: 50 ms each
    first = sampler.sample(snap(stats("n", items_in=10, blocked_input_s=0.5)), now=1.0)
    assert first.item_times["n"] == (pytest.approx(0.05), 10)
    # one slow item in progress: busy time accumulates until the item is counted
    assert (
        sampler.sample(snap(stats("n", items_in=10, blocked_input_s=0.5)), now=2.0).item_times == {}
    )
    done = sampler.sample(snap(stats("n", items_in=11, blocked_input_s=0.5)), now=3.0)
    assert done.item_times["n"] == (pytest.approx(2.0), 1)


def test_a_wait_recorded_late_is_netted_against_earlier_busy_time() -> None:
    sampler = Sampler()
    sampler.sample(snap(stats("n")), now=0.0)
    # a 2 s wait for input, recorded when it ends at t=2; then 4 items in the last 0.4 s
    assert sampler.sample(snap(stats("n")), now=1.0).item_times == {}
    got = sampler.sample(snap(stats("n", items_in=4, blocked_input_s=1.6)), now=2.0)
    assert got.item_times["n"] == (pytest.approx(0.1), 4)
    total_busy = got.item_times["n"][0] * got.item_times["n"][1]
    assert total_busy == pytest.approx(2.0 - 1.6)


def test_flush_reports_what_is_left() -> None:
    sampler = Sampler()
    sampler.sample(snap(stats("n")), now=0.0)
    # the wait recorded exceeds the elapsed time between samples: items are carried
    assert (
        sampler.sample(snap(stats("n", items_in=3, blocked_input_s=1.5)), now=1.0).item_times == {}
    )
    assert sampler.flush() == {"n": (0.0, 3)}
    assert sampler.flush() == {}


def test_nodes_not_running_accumulate_nothing() -> None:
    sampler = Sampler()
    sampler.sample(snap(stats("n", state="finished", items_in=5)), now=0.0)
    assert sampler.sample(snap(stats("n", state="finished", items_in=5)), now=1.0).item_times == {}
    assert sampler.flush() == {}
