"""Soak: a fast source, a flaky node and a slow sink run with flat memory and threads.

Runs ``NANOSTREAM_SOAK_S`` seconds (default 5; CI sets 60).
"""

from __future__ import annotations

import gc
import itertools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil

import nanostream

SOAK_S = float(os.environ.get("NANOSTREAM_SOAK_S", "5"))


class Source(nanostream.NanoNode):
    def __init__(self) -> None:
        super().__init__(name="source")
        self.emitted = 0
        self.acked = 0

    def _ack(self) -> None:
        self.acked += 1  # acks are called one at a time

    def generator(self) -> Iterator[Any]:
        for i in itertools.count():
            self.emitted += 1
            yield nanostream.Acked({"id": i, "payload": "x" * 100}, self._ack)


class Flaky(nanostream.NanoNode):
    """Fails 1 item in 50 once (retried) and 1 in 500 for good (dead-lettered)."""

    def __init__(self) -> None:
        super().__init__(name="flaky", on_error="retry", retries=2, backoff=0)
        self.seen: set[int] = set()

    def process_item(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        i = item["id"]
        if i % 500 == 0:
            raise ValueError(f"bad record {i}")
        if i % 50 == 0 and i not in self.seen:
            self.seen.add(i)
            raise ConnectionError("flaky")
        self.seen.discard(i)
        yield item


class SlowSink(nanostream.NanoNode):
    def __init__(self) -> None:
        super().__init__(name="sink")
        self.count = 0

    def process_item(self, item: dict[str, Any]) -> Iterator[Any]:
        self.count += 1
        if self.count % 200 == 0:
            time.sleep(0.001)  # slower than the source: back-pressure all the way
        yield from ()


class DeadCount(nanostream.NanoNode):
    def __init__(self) -> None:
        super().__init__(name="dead")
        self.count = 0

    def process_item(self, item: Any) -> Iterator[Any]:
        assert isinstance(item, nanostream.ErrorRecord)
        self.count += 1
        yield from ()


def test_soak_flat_memory_and_threads() -> None:
    gc.collect()
    process = psutil.Process()
    src, flaky, sink, dead = Source(), Flaky(), SlowSink(), DeadCount()
    src > flaky > sink
    flaky.errors > dead
    run = src.global_start(block=False, queue_size=2000, batch_size=100)
    assert run is not None
    rss: list[int] = []
    threads: list[int] = []
    tick = threading.Event()
    deadline = time.monotonic() + SOAK_S
    while time.monotonic() < deadline:
        tick.wait(0.1)
        rss.append(process.memory_info().rss)
        threads.append(threading.active_count())
    run.stop(timeout=60)
    assert run.state == "finished"
    assert sink.count + dead.count == src.emitted > 10_000
    assert dead.count > 0 and run.stats()["flaky"].errors == dead.count
    assert src.acked == src.emitted
    assert max(threads) == min(threads), "the number of threads changed"
    third = max(1, len(rss) // 3)
    growth = max(rss[-third:]) - max(rss[:third])
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
