"""The nodes of the guide's examples, for the YAML pipelines next to this file.

A pipeline file lists this module under ``imports:``; modules next to the pipeline file
are found without setting PYTHONPATH.
"""

from __future__ import annotations

from collections.abc import Iterator

import nanostream


class FooEmitter(nanostream.NanoNode):
    """Emits ``message`` every ``interval`` seconds, until the pipeline is stopped."""

    def __init__(self, message: str = "", interval: float = 1) -> None:
        self.message = message
        self.interval = interval
        super().__init__()

    def generator(self) -> Iterator[str]:
        while True:
            yield self.message
            if self.sleep(self.interval):  # wakes early when the run stops
                return


class MessageLengthTester(nanostream.NanoNode):
    """True for a message with an even number of characters, else False."""

    def process_item(self, message: str) -> Iterator[bool]:
        yield len(message) % 2 == 0
