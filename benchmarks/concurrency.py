"""Concurrency workloads: ``processes=`` for CPU-bound Python, ``concurrency=`` for async I/O.

- ``cpu_rows``: 20,000 items of about 200 µs of pure-Python work each, through
  ``Map(work, processes=2)``, against the plain loop ``[work(x) for x in items]`` in one
  process, in the same run (target: >= 1.8x on 2 cores). The machine's load average is
  noted, since other processes take cores from both.
- ``async_rows``: 2,000 calls of an ``async def`` function that awaits 20 ms (a stand-in for
  a request's latency), through ``Map(call, concurrency=C)`` for C = 16 and 64, against a
  plain ``asyncio`` loop with a semaphore of C doing the same calls, and against the ideal
  C / latency calls per second.

``rows(n)`` gives them as rows for ``benchmarks/run.py`` (``--only concurrency``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import time
from collections.abc import Iterable
from typing import Any

import nanostream
from nanostream.nodes import Map

Row = tuple[str, float, str]
CPU_ITEMS = 20_000
CPU_TARGET = 1.8
LATENCY_S = 0.02
CALLS = 2_000


def work(x: int, rounds: int = 2000) -> int:
    """Pure-Python work: ``rounds`` multiplications and remainders."""
    total = 0
    for i in range(rounds):
        total += (i * x) % 7
    return total


def calibrate(target_s: float = 200e-6) -> int:
    """The ``rounds`` that make ``work`` take about ``target_s`` here."""
    start = time.perf_counter()
    for x in range(200):
        work(x)
    per_call = (time.perf_counter() - start) / 200
    return max(1, int(2000 * target_s / per_call))


def _count_sink(result: list[int]) -> Any:
    def count_sink(inp: Iterable[Any], outp: Any) -> None:
        count = 0
        for _ in inp:
            count += 1
        result.append(count)

    return nanostream.as_node(count_sink)


def plain_loop(n: int, rounds: int) -> float:
    """Seconds for ``[work(x, rounds) for x in range(n)]``."""
    start = time.perf_counter()
    out = [work(x, rounds) for x in range(n)]
    elapsed = time.perf_counter() - start
    assert len(out) == n
    return elapsed


def with_processes(n: int, rounds: int, processes: int = 2) -> float:
    """Seconds for ``n`` items through ``Map(work, processes=processes)`` (with start-up)."""
    result: list[int] = []
    src = nanostream.from_iterable(range(n))
    src > Map(functools.partial(work, rounds=rounds), processes=processes) > _count_sink(result)
    start = time.perf_counter()
    src.global_start()
    elapsed = time.perf_counter() - start
    assert result == [n]
    return elapsed


def cpu_rows(n: int = CPU_ITEMS, repeat: int = 3) -> list[Row]:
    rounds = calibrate()
    with_processes(10, rounds)  # starts the fork server, once per program
    start_up = statistics.median(with_processes(2, rounds) for _ in range(3))
    plain: list[float] = []
    pooled: list[float] = []
    for _ in range(repeat):
        plain.append(plain_loop(n, rounds))
        pooled.append(with_processes(n, rounds))
    base, two = statistics.median(plain), statistics.median(pooled)
    load = os.getloadavg()[0]
    return [
        (
            f"plain loop, {n:,} items of ~200 us ({rounds} rounds)",
            n / base,
            f"{base / n * 1e6:.0f} us per item; load average {load:.1f} on {os.cpu_count()} cores",
        ),
        (
            "Map(work, processes=2)",
            n / two,
            f"{base / two:.2f}x the plain loop (target >= {CPU_TARGET}x); "
            f"start-up and end of a run with 2 items: {start_up:.2f} s",
        ),
    ]


async def _call(x: int) -> int:
    await asyncio.sleep(LATENCY_S)
    return x


def plain_async(n: int, concurrency: int) -> float:
    """Seconds for ``n`` calls with an asyncio semaphore of ``concurrency``."""

    async def main() -> list[int]:
        slots = asyncio.Semaphore(concurrency)

        async def one(x: int) -> int:
            async with slots:
                return await _call(x)

        return await asyncio.gather(*(one(x) for x in range(n)))

    start = time.perf_counter()
    out = asyncio.run(main())
    elapsed = time.perf_counter() - start
    assert len(out) == n
    return elapsed


def with_concurrency(n: int, concurrency: int, runner: str = "threads") -> float:
    """Seconds for ``n`` items through ``Map(_call, concurrency=concurrency)``."""
    result: list[int] = []
    src = nanostream.from_iterable(range(n))
    src > Map(_call, concurrency=concurrency) > _count_sink(result)
    start = time.perf_counter()
    src.global_start(runner=runner)
    elapsed = time.perf_counter() - start
    assert result == [n]
    return elapsed


def async_rows(n: int = CALLS, repeat: int = 3) -> list[Row]:
    rows: list[Row] = []
    for concurrency in (16, 64):
        plain: list[float] = []
        ours: list[float] = []
        coop: list[float] = []
        for _ in range(repeat):
            plain.append(plain_async(n, concurrency))
            ours.append(with_concurrency(n, concurrency))
            coop.append(with_concurrency(n, concurrency, "cooperative"))
        ideal = concurrency / LATENCY_S
        base = n / statistics.median(plain)
        for name, samples in (("threads", ours), ("cooperative", coop)):
            rate = n / statistics.median(samples)
            rows.append(
                (
                    f"Map(async, concurrency={concurrency}), {name}, {LATENCY_S * 1000:.0f} ms",
                    rate,
                    f"{rate / base:.2f}x asyncio+semaphore ({base:,.0f}/s); "
                    f"{rate / ideal:.2f}x ideal ({ideal:,.0f}/s)",
                )
            )
    return rows


def rows(n: int) -> list[Row]:
    return cpu_rows() + async_rows()


if __name__ == "__main__":
    for name, rate, note in rows(0):
        print(f"{name:<60} {rate:>10,.0f}  {note}")
