"""Helpers for testing pipelines, for nanostream's own tests and for yours.

Example:
    >>> import nanostream
    >>> from nanostream.testing import Collect
    >>> sink = Collect()
    >>> nanostream.from_iterable([3, 1, 2]) > sink
    Collect(name=None)
    >>> sink.global_start()
    >>> sorted(sink.items)
    [1, 2, 3]
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ._core.node import NanoNode

__all__ = ["Collect"]


class Collect(NanoNode):
    """A sink that keeps every item it receives in ``items`` (thread-safe).

    ``seen`` is an event set once ``wait_for`` items have arrived (``wait_for=1`` by
    default), so a test can wait for data without sleeping.

    Example:
        >>> import nanostream
        >>> sink = nanostream.testing.Collect(wait_for=2)
        >>> nanostream.from_iterable("ab") > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.seen.is_set(), sink.items
        (True, ['a', 'b'])
    """

    def __init__(self, *, wait_for: int = 1, name: str | None = None) -> None:
        super().__init__(name=name)
        self.items: list[Any] = []
        self.wait_for = wait_for
        self.seen = threading.Event()
        self.ended = threading.Event()
        self._lock = threading.Lock()

    def process_item(self, item: Any) -> Iterator[Any]:
        with self._lock:
            self.items.append(item)
            if len(self.items) >= self.wait_for:
                self.seen.set()
        yield from ()

    def cleanup(self) -> None:
        self.ended.set()
