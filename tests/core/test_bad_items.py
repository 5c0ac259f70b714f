"""Odd items: unpicklable and huge items never take a run down silently (issue #9)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import nanostream
from nanostream.testing import Collect


class Odd(nanostream.NanoNode):
    def __init__(self, *items: Any) -> None:
        super().__init__(name="odd")
        self.odd_items = items

    def generator(self) -> Iterator[Any]:
        yield "before"
        yield from self.odd_items
        yield "after"


class Describe(nanostream.NanoNode):
    def process_item(self, item: Any) -> Iterator[Any]:
        yield len(item) if isinstance(item, bytes) else type(item).__name__


def test_a_huge_item_passes_every_runner(runner: str) -> None:
    sink = Collect()
    Odd(b"x" * 50_000_000) > Describe() > sink
    sink.global_start(runner=runner)
    assert sink.items == ["str", 50_000_000, "str"]


def test_an_unpicklable_item_passes_in_one_process_and_fails_clearly_across(
    runner: str,
) -> None:
    sink = Collect()
    Odd(threading.Lock()) > Describe() > sink
    if runner != "ray":  # items are never copied between threads or greenlets
        sink.global_start(runner=runner)
        assert sink.items == ["str", "lock", "str"]
        return
    with pytest.raises(nanostream.NodeFailed, match="'odd'") as info:
        sink.global_start(runner=runner)
    assert "lock" in str(info.value) and "serializ" in str(info.value).lower()
