"""An exception whose ``str()`` raises is reported like any other, on every path.

``raise ValueError(obj)`` with a broken ``obj.__str__`` (or an exception class whose own
``__str__`` raises): the run fails naming the right node, ``on_error="skip"`` skips the
item, and NodeFailed, error records, dead letters, log lines and the progress summary
carry a placeholder instead of failing themselves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream._core.redact import exception_text, redact, safe_str
from nanostream.nodes.deadletter import DeadLetterFile, read_dead_letters
from nanostream.observe import RunSummary
from nanostream.observe.logs import JsonFormatter
from nanostream.testing import Collect

PLACEHOLDER = "<unprintable ValueError: str() raised RuntimeError>"


class Unprintable:
    """An object whose text cannot be had."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class Fails(nanostream.NanoNode):
    """Raises ``ValueError(Unprintable())`` on every item."""

    def process_item(self, item: Any) -> Iterator[Any]:
        raise ValueError(Unprintable())
        yield item  # pragma: no cover - makes it a generator


class SelfBroken(Exception):
    """An exception class whose own ``__str__`` raises."""

    def __str__(self) -> str:
        raise TypeError("broken __str__")


def pass_on(inp: Any, outp: Any) -> None:
    for item in inp:
        outp(item)


def test_the_helpers_never_raise() -> None:
    assert safe_str(ValueError(Unprintable())) == PLACEHOLDER
    assert redact(ValueError(Unprintable())) == PLACEHOLDER
    assert exception_text(ValueError(Unprintable())) == f"ValueError: {PLACEHOLDER}"
    assert exception_text(SelfBroken()) == (
        "SelfBroken: <unprintable SelfBroken: str() raised TypeError>"
    )
    assert safe_str(Unprintable()) == "<unprintable Unprintable: str() raised RuntimeError>"


def test_a_failing_sink_fails_the_run(runner: str) -> None:
    src = nanostream.from_iterable([1, 2], name="src")
    src > Fails(name="sink")
    with pytest.raises(nanostream.NodeFailed) as info:
        src.global_start(runner=runner)
    assert info.value.node == "sink"
    assert str(info.value) == f"node 'sink' failed: ValueError: {PLACEHOLDER}"
    assert isinstance(info.value.__cause__, ValueError)


def test_a_failing_middle_node_fails_the_run_and_names_itself(runner: str) -> None:
    src = nanostream.from_iterable(range(100), name="src")
    src > Fails(name="middle") > nanostream.as_node(pass_on, name="sink")
    run = src.global_start(runner=runner, block=False)
    try:
        with pytest.raises(nanostream.NodeFailed) as info:
            assert run.wait(30), "the run did not end"
    finally:
        run.abort()
    assert info.value.node == "middle"
    assert run.stats()["middle"].state == "failed"


def test_an_exception_with_a_broken_str_fails_the_run(runner: str) -> None:
    def broken(inp: Any, outp: Any) -> None:
        for _ in inp:
            raise SelfBroken

    src = nanostream.from_iterable([1], name="src")
    src > nanostream.as_node(broken, name="broken")
    with pytest.raises(nanostream.NodeFailed, match="node 'broken' failed: SelfBroken: <unp"):
        src.global_start(runner=runner)


def test_skip_skips_and_records_the_item(
    runner: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nanostream")
    node, sink, dead = Fails(name="parse", on_error="skip"), Collect(), Collect()
    nanostream.from_iterable([1, 2], name="src") > node > sink
    letters = tmp_path / "dead.jsonl"
    node.errors > nanostream.as_node(pass_on, name="fan") > dead
    node.errors > DeadLetterFile(str(letters))
    run = sink.global_start(runner=runner, block=False)
    assert run.wait(30)
    assert sink.items == []
    assert [(r.item, r.exception_type, r.message) for r in dead.items] == [
        (1, "ValueError", PLACEHOLDER),
        (2, "ValueError", PLACEHOLDER),
    ]
    assert "ValueError: <exception str() failed>" in dead.items[0].traceback
    assert [d["message"] for d in read_dead_letters(letters)] == [PLACEHOLDER, PLACEHOLDER]
    skipped = [r for r in caplog.records if "failed for good" in r.getMessage()]
    assert len(skipped) == 2 and PLACEHOLDER in skipped[0].getMessage()
    assert RunSummary.of(run).errors == 2


def test_retry_and_a_source_log_the_placeholder(
    runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Source(nanostream.NanoNode):
        policy_per_poll = True

        def generator(self) -> Iterator[int]:
            with self.guard_polls() as guard:
                yield from guard(lambda: [1])
                yield from guard(self.poll)

        def poll(self) -> list[int]:
            raise ValueError(Unprintable())

    caplog.set_level(logging.DEBUG, logger="nanostream")
    src, sink = Source(name="src", on_error="skip"), Collect()
    retried = Fails(name="retried", on_error="retry", retries=1, backoff=0)
    src > retried > sink
    sink.global_start(runner=runner)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("nanostream")]
    skipped = "node 'src': a poll failed for good after 1 attempt(s) and was skipped"
    assert f"{skipped}: ValueError: {PLACEHOLDER}" in messages
    if runner != "ray":  # on ray, DEBUG lines of the workers stay there
        assert any(f"attempt 1 failed (ValueError: {PLACEHOLDER})" in m for m in messages)


def test_the_failure_reaches_the_log_and_the_summary(
    runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="nanostream")
    src = nanostream.from_iterable([1], name="src")
    src > Fails(name="sink")
    run = src.global_start(runner=runner, block=False)
    with pytest.raises(nanostream.NodeFailed):
        run.wait(30)
    (record,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert record.getMessage() == f"node 'sink' failed: ValueError: {PLACEHOLDER}"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == record.getMessage()
    summary = RunSummary.of(run)
    assert summary.failure == f"node 'sink' failed: ValueError: {PLACEHOLDER}"
    assert "failure: node 'sink' failed" in summary.text()
