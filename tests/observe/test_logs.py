"""Structured logs: the logger hierarchy, JSON lines, the observer's warnings with figures."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.observe import (
    JsonFormatter,
    NodeView,
    NodeWarnings,
    Sample,
    attach,
    configure_logging,
    node_logger,
)
from support import wait_for_file


def view(name: str, **kw: Any) -> NodeView:
    base: dict[str, Any] = {
        "name": name,
        "state": "running",
        "is_source": False,
        "items_in": 0,
        "items_out": 0,
        "errors": 0,
        "queue_depth": 0,
        "queue_capacity": 100,
        "rate": 0.0,
        "wait_input": 0.0,
        "wait_output": 0.0,
        "bottleneck": False,
    }
    base.update(kw)
    return NodeView(**base)


class Catch(logging.Handler):
    """Keeps records and sets ``hit`` on the first one whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.records: list[logging.LogRecord] = []
        self.hit = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.text in record.getMessage():
            self.hit.set()


@pytest.fixture
def caught() -> Iterator[Catch]:
    handler = Catch("")
    root = logging.getLogger("nanostream")
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def test_the_logger_hierarchy() -> None:
    assert node_logger("shop").name == "nanostream.shop"
    assert node_logger("shop", "parse").name == "nanostream.shop.parse"
    inner = node_logger("shop", "comp.inner")
    assert inner.name == "nanostream.shop.comp.inner"
    assert inner.parent is not None and inner.parent.name in (
        "nanostream.shop.comp",
        "nanostream.shop",
        "nanostream",
    )


def test_json_lines_carry_the_extra_fields() -> None:
    out = io.StringIO()
    root = logging.getLogger("nanostream")
    handler = configure_logging("INFO", json_lines=True, stream=out)
    try:
        node_logger("shop", "parse").warning(
            "slow %s", "items", extra={"pipeline": "shop", "node": "parse", "seconds": 1.5}
        )
        node_logger("shop", "parse").debug("not shown")
        try:
            raise ValueError("bad")
        except ValueError:
            node_logger("shop", "parse").exception("failed")
        # configuring again replaces the handler instead of adding one
        handler = configure_logging("INFO", json_lines=True, stream=out)
        assert sum(1 for h in root.handlers if getattr(h, "_nanostream_handler", False)) == 1
    finally:
        root.removeHandler(handler)
        root.setLevel(logging.NOTSET)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "slow items"
    assert first["level"] == "WARNING"
    assert first["logger"] == "nanostream.shop.parse"
    assert (first["pipeline"], first["node"], first["seconds"]) == ("shop", "parse", 1.5)
    assert first["time"].endswith("Z")
    assert "ValueError: bad" in second["exception"]


def test_readable_lines_by_default() -> None:
    out = io.StringIO()
    root = logging.getLogger("nanostream")
    handler = configure_logging(logging.WARNING, stream=out)
    try:
        node_logger("shop", "parse").warning("careful")
    finally:
        root.removeHandler(handler)
        root.setLevel(logging.NOTSET)
    assert out.getvalue().rstrip().endswith("WARNING nanostream.shop.parse: careful")


def test_json_formatter_turns_odd_values_into_text() -> None:
    record = logging.LogRecord("nanostream", logging.INFO, __file__, 1, "m", None, None)
    record.thing = {1, 2}
    assert json.loads(JsonFormatter().format(record))["thing"] in ("{1, 2}", "{2, 1}")


def test_stalled_warning_once_per_episode(caught: Catch) -> None:
    warnings = NodeWarnings("shop", stall_s=5.0)
    stuck = view("parse", items_in=10, queue_depth=7)
    assert warnings.check(Sample(0.0, (stuck,))) == []
    assert warnings.check(Sample(4.0, (stuck,))) == []
    assert warnings.check(Sample(5.0, (stuck,))) == ["stalled"]
    assert warnings.check(Sample(9.0, (stuck,))) == []  # once per episode
    moved = view("parse", items_in=11, queue_depth=7)
    assert warnings.check(Sample(10.0, (moved,))) == []
    assert warnings.check(Sample(15.0, (moved,))) == ["stalled"]  # a new episode
    # an empty queue is waiting for input, not a stall
    idle = NodeWarnings("shop", stall_s=1.0)
    assert idle.check(Sample(0.0, (view("x"),))) == []
    assert idle.check(Sample(5.0, (view("x"),))) == []
    record = next(r for r in caught.records if "taken in and sent nothing" in r.getMessage())
    assert record.name == "nanostream.shop.parse"
    assert record.levelno == logging.WARNING
    assert record.__dict__["node"] == "parse" and record.__dict__["pipeline"] == "shop"
    assert record.__dict__["queue_depth"] == 7 and record.__dict__["seconds"] == 5.0


def test_full_queue_warning_is_off_by_default(caught: Catch) -> None:
    full = view("parse", queue_depth=100)
    assert NodeWarnings("shop").check(Sample(100.0, (full,))) == []
    warnings = NodeWarnings("shop", full_queue_s=2.0, stall_s=None)
    assert warnings.check(Sample(0.0, (full,))) == []
    assert warnings.check(Sample(2.0, (full,))) == ["full queue"]
    assert warnings.check(Sample(3.0, (full,))) == []
    assert warnings.check(Sample(4.0, (view("parse", queue_depth=10),))) == []
    assert warnings.check(Sample(5.0, (full,))) == []
    assert warnings.check(Sample(7.0, (full,))) == ["full queue"]
    message = caught.records[0].getMessage()
    assert message == (
        "the input queue of node 'parse' has been full (100/100) for 2s: this node is the "
        "bottleneck"
    )


def test_slow_items_warning(caught: Catch) -> None:
    warnings = NodeWarnings("shop", slow_item_s=0.5)
    assert warnings.check(Sample(1.0, (), {"parse": (0.1, 10)})) == []
    assert warnings.check(Sample(2.0, (), {"parse": (0.9, 2)})) == ["slow items"]
    assert warnings.check(Sample(3.0, (), {"parse": (0.9, 2)})) == []
    record = caught.records[0]
    assert record.getMessage() == (
        "node 'parse' took 0.900s per item (mean over 2 items), over the 0.500s threshold"
    )
    assert record.__dict__["seconds_per_item"] == 0.9 and record.__dict__["items"] == 2


class Stuck(nanostream.NanoNode):
    """Holds its first item until the file ``release`` exists (a signal from any process)."""

    def __init__(self, release: Path, name: str) -> None:
        super().__init__(name=name)
        self.release = str(release)

    def process_item(self, item: int) -> Iterator[int]:
        wait_for_file(self.release)
        yield item


def test_the_observer_warns_about_a_stalled_node(runner: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    handler = Catch("node 'stuck' has taken in and sent nothing")
    logger = node_logger("stall", "stuck")
    logger.addHandler(handler)
    try:
        sink = nanostream.testing.Collect(name="sink")
        src = nanostream.from_iterable(range(100), name="src")
        src > Stuck(release, name="stuck") > sink
        run = src.global_start(
            block=False, runner=runner, name="stall", queue_size=32, batch_size=4
        )
        assert run is not None
        attach(run, interval=0.02, stall_warning_s=0.1)
        try:
            assert handler.hit.wait(10)
        finally:
            release.touch()
        assert run.wait(10)
    finally:
        logger.removeHandler(handler)
    record = next(r for r in handler.records if handler.text in r.getMessage())
    assert record.__dict__["node"] == "stuck" and record.__dict__["queue_depth"] > 0
    assert sink.items == list(range(100))
