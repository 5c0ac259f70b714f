"""Operator workloads: a worker pool over a slow function (W2), windowed aggregation.

- ``w2_workers(n=2000, workers=8, delay_s=0.001)``: ``n`` items through a ``Map`` whose
  function sleeps ``delay_s`` per item, with ``workers`` threads; returns elapsed seconds.
  The ideal is ``n * delay_s / workers`` (0.25 s); the target is within 1.15x of it.
- ``windowed(n=1_000_000)``: ``n`` keyed events (100 keys, 10,000 events per second of event
  time) into 1-second event-time tumbling windows counting per key; returns items/s.

``rows(n)`` gives both as rows for ``benchmarks/run.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable
from typing import Any

import nanostream
from nanostream.nodes import Map, TumblingWindow

Row = tuple[str, float, str]
W2_TARGET = 1.15


def _count_sink(result: list[int]) -> Any:
    def count_sink(inp: Iterable[Any], outp: Any) -> None:
        count = 0
        for _ in inp:
            count += 1
        result.append(count)

    return nanostream.as_node(count_sink)


def w2_workers(n: int = 2000, workers: int = 8, delay_s: float = 0.001) -> float:
    """Seconds to push ``n`` items through ``Map(sleep delay_s, workers=workers)``."""

    def slow(x: int) -> int:
        time.sleep(delay_s)
        return x

    result: list[int] = []
    src = nanostream.from_iterable(range(n))
    src > Map(slow, workers=workers) > _count_sink(result)
    start = time.perf_counter()
    src.global_start()
    elapsed = time.perf_counter() - start
    if result != [n]:
        raise AssertionError(f"W2: the sink saw {result}, expected [{n}]")
    return elapsed


def _event_time(event: tuple[float, int]) -> float:
    return event[0]


def _event_key(event: tuple[float, int]) -> int:
    return event[1]


def _count(n: int, _: Any) -> int:
    return n + 1


def windowed(n: int = 1_000_000) -> float:
    """Items/s of ``n`` keyed events through 1-second event-time tumbling windows."""
    events = [(i / 10_000, i % 100) for i in range(n)]
    windows: list[int] = []

    def total(inp: Iterable[Any], outp: Any) -> None:
        counted = 0
        for w in inp:
            counted += w.value
        windows.append(counted)

    src = nanostream.from_iterable(events)
    node = TumblingWindow(1.0, timestamp=_event_time, key=_event_key, reduce=_count, initial=0)
    src > node > nanostream.as_node(total)
    start = time.perf_counter()
    src.global_start()
    elapsed = time.perf_counter() - start
    if windows != [n]:
        raise AssertionError(f"windowed: the windows counted {windows}, expected [{n}]")
    return n / elapsed


def rows(n: int, repeat: int = 3) -> list[Row]:
    """Rows for ``benchmarks/run.py`` (``n`` sizes the windowed workload)."""
    ideal = 2000 * 0.001 / 8
    w2 = statistics.median(w2_workers() for _ in range(repeat))
    ratio = w2 / ideal
    verdict = "ok" if ratio <= W2_TARGET else f"above the {W2_TARGET}x target"
    rate = statistics.median(windowed(n) for _ in range(repeat))
    return [
        (
            "W2: 2,000 items x 1 ms sleep, Map workers=8 (items/s)",
            2000 / w2,
            f"{w2:.3f} s = {ratio:.2f}x the ideal {ideal:.2f} s ({verdict})",
        ),
        (f"keyed events into 1 s event-time tumbling windows, N={n:,}", rate, ""),
    ]


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    for name, value, note in rows(size):
        print(f"{name:<70} {value:>12,.0f}  {note}")
