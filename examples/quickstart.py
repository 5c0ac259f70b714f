"""A first pipeline: numbers -> square -> keep the even ones -> print.

Run it with:  .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nanostream


class Square(nanostream.NanoNode):
    def process_item(self, item: int) -> Iterator[int]:
        yield item * item


def keep_even(inp: Any, outp: Any) -> None:
    for x in inp:
        if x % 2 == 0:
            outp(x)


class Printer(nanostream.NanoNode):
    def process_item(self, item: Any) -> Iterator[Any]:
        print(item)
        yield item


def main() -> None:
    source = nanostream.from_iterable(range(10))
    source > Square() > keep_even > Printer()
    source.global_start()


if __name__ == "__main__":
    main()
