"""``global_start(progress=..., metrics_port=...)`` wires the observer to a run."""

from __future__ import annotations

import pytest

import nanostream
from nanostream.testing import Collect


def test_progress_from_global_start(runner: str, capsys: pytest.CaptureFixture[str]) -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(50), name="numbers") > sink
    sink.global_start(runner=runner, progress=True)
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert any(words[:2] == ["numbers", "finished"] and "out=50" in words for words in lines)
    assert any(words[:2] == ["sink", "finished"] and "in=50" in words for words in lines)


def test_metrics_port_from_global_start(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(5)) > sink
    sink.global_start(runner=runner, metrics_port=0)  # any free port; joined at the end
    assert sink.items == list(range(5))


def test_an_unknown_option_is_still_refused() -> None:
    with pytest.raises(nanostream.GraphError, match="unknown run option"):
        nanostream.from_iterable([1]).global_start(progres=True)
