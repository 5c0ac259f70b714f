"""The monitor names a node that has been stuck on one input slice for too long."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import nanostream


def wait_for(text: str, caplog: pytest.LogCaptureFixture, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in caplog.text:
            return True
        threading.Event().wait(0.01)
    return False


def test_a_node_blocked_on_one_item_is_reported_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()

    class Hangs(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            if item == 3:
                gate.wait(20)  # a call that never returns, until the test lets it
            yield item

    sink = nanostream.testing.Collect()
    nanostream.from_iterable(range(5)) > Hangs(name="fetch") > sink
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        run = sink.global_start(block=False, monitor_interval=0.01, stall_timeout=0.1)
        assert run is not None
        try:
            assert wait_for("node 'fetch' has been working on one input slice", caplog)
        finally:
            gate.set()
            run.wait(10)
    message = caplog.text
    assert "it may be blocked: at " in message
    assert "test_monitor.py" in message and "in process_item" in message
    assert message.count("has been working on one input slice") == 1  # once per stall
    assert sink.items == [0, 1, 2, 3, 4]


def test_a_source_waiting_for_data_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()

    class Waits(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            yield 1
            gate.wait(0.5)
            yield 2

    sink = nanostream.testing.Collect()
    Waits() > sink
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        sink.global_start(monitor_interval=0.01, stall_timeout=0.05)
    assert "working on one input slice" not in caplog.text
    assert sink.items == [1, 2]


def test_stall_warning_goes_to_the_node_logger_with_figures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()

    def stuck(inp: Any, outp: Any) -> None:
        gate.wait(20)
        for _ in inp:
            pass

    src = nanostream.from_iterable(range(10_000), name="fast")
    src > stuck
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        run = src.global_start(
            block=False,
            name="p",
            queue_size=10,
            batch_size=5,
            monitor_interval=0.01,
            stall_timeout=0.05,
        )
        assert run is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "bottleneck" not in caplog.text:
            gate.wait(0.01)
        gate.set()
        run.wait(10)
    records = [r for r in caplog.records if "bottleneck" in r.getMessage()]
    assert records and records[0].name == "nanostream.p.fast"
    assert records[0].node == "fast" and records[0].pipeline == "p"  # type: ignore[attr-defined]
    assert records[0].seconds >= 0.05  # type: ignore[attr-defined]
