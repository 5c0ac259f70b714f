"""The acknowledgement path: a bare source of ``Acked`` items into a sink, against the same
source yielding plain items (the same Python loop), on the threads and cooperative runners.

Each ack is a no-op, so the rows measure what nanostream adds per acknowledged item:
attaching the ack, the markers, calling the acks. Run alone:

    .venv/bin/python benchmarks/run.py --only acks
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

from engine import Count  # the engine group's counting sink

import nanostream

Row = tuple[str, float, str]


def _no_op() -> None:
    pass


class Numbers(nanostream.NanoNode):
    """``range(n)``, as ``Acked`` items when ``acked``."""

    def __init__(self, n: int, acked: bool) -> None:
        super().__init__()
        self.n = n
        self.acked = acked

    def generator(self) -> Iterator[Any]:
        if self.acked:
            acked = nanostream.Acked
            for i in range(self.n):
                yield acked(i, _no_op)
        else:
            for i in range(self.n):
                yield i


def source_to_sink(n: int, *, acked: bool, runner: str) -> float:
    """Items/s of ``Numbers(n) > Count()``."""
    sink = Count()
    Numbers(n, acked) > sink
    start = time.perf_counter()
    sink.global_start(runner=runner)
    elapsed = time.perf_counter() - start
    assert sink.count == n
    return n / elapsed


def rows(n: int, repeat: int = 7) -> list[Row]:
    n = min(n, 500_000)
    load = os.getloadavg()[0]
    out: list[Row] = []
    for runner in ("threads", "cooperative"):
        samples: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeat):  # interleaved: a slow moment hits both alike
            for acked in (False, True):
                samples[acked].append(source_to_sink(n, acked=acked, runner=runner))
        plain, acked = (statistics.median(samples[k]) for k in (False, True))
        out.append((f"source > sink, plain items, {runner}", plain, ""))
        out.append(
            (
                f"source > sink, Acked items, {runner}",
                acked,
                f"{acked / plain:.2f}x plain items (target >= 0.5x); load average {load:.1f}",
            )
        )
    return out


if __name__ == "__main__":
    for name, rate, note in rows(300_000, 5):
        print(f"{name:<45} {rate:>12,.0f}  {note}")
