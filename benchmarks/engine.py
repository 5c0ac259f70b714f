"""The engine workload: source -> 3 x (x + 1) -> counting sink, over N integers.

Each function here builds and runs one variant and returns the count the sink saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import nanostream

Outp = Callable[[Any], Any]


# --------------------------------------------------------------------- R1: plain Python
def r1_generators(n: int) -> int:
    """R1: a plain single-thread generator chain, no engine."""

    def source(n: int) -> Iterator[int]:
        yield from range(n)

    def add_one(items: Iterable[int]) -> Iterator[int]:
        for x in items:
            yield x + 1

    count = 0
    for _ in add_one(add_one(add_one(source(n)))):
        count += 1
    return count


# --------------------------------------------------------------------- node functions
def _count_sink(result: list[int]) -> Callable[[Iterable[Any], Outp], None]:
    def count_sink(inp: Iterable[Any], outp: Outp) -> None:
        count = 0
        for _ in inp:
            count += 1
        result.append(count)

    return count_sink


def _add_one() -> Callable[[Iterable[Any], Outp], None]:
    def add_one(inp: Iterable[int], outp: Outp) -> None:
        for x in inp:
            outp(x + 1)

    return add_one


def node_functions(
    n: int, runner: str = "threads", source: str = "function", **options: Any
) -> int:
    """The workload as node functions; the source a node function or ``from_iterable``.

    ``options`` go to ``global_start`` (e.g. ``progress=True, metrics_port=0``).
    """
    result: list[int] = []

    def numbers(inp: Iterable[Any], outp: Outp) -> None:
        for i in range(n):
            outp(i)

    src = (
        nanostream.from_iterable(range(n)) if source == "iterable" else nanostream.as_node(numbers)
    )
    sink = nanostream.as_node(_count_sink(result))
    add = [nanostream.as_node(_add_one()) for _ in range(3)]
    src > add[0] > add[1] > add[2] > sink
    sink.global_start(runner=runner, **options)
    return result[0]


# --------------------------------------------------------------------- NanoNode classes
class Numbers(nanostream.NanoNode):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def generator(self) -> Iterator[int]:
        yield from range(self.n)


class AddOne(nanostream.NanoNode):
    def process_item(self, item: int) -> Iterator[int]:
        yield item + 1


class Count(nanostream.NanoNode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def process_item(self, item: Any) -> Iterator[Any]:
        self.count += 1
        yield from ()


def classes_one_thread(n: int) -> int:
    """The NanoNode classes chained by hand in one thread, no engine."""
    src, a, b, c, sink = Numbers(n), AddOne(), AddOne(), AddOne(), Count()
    for x in src.generator():
        for y1 in a.process_item(x):
            for y2 in b.process_item(y1):
                for y3 in c.process_item(y2):
                    for _ in sink.process_item(y3):
                        pass
    return sink.count


def classes(n: int, runner: str = "threads") -> int:
    """The NanoNode classes on a runner."""
    sink = Count()
    Numbers(n) > AddOne() > AddOne() > AddOne() > sink
    sink.global_start(runner=runner)
    return sink.count


# --------------------------------------------------------------------- waiting steps
WAIT_S = 0.001


def one_wait(n: int) -> int:
    """One waiting step alone: ``n`` waits of ~1 ms in a loop (the reference)."""
    import time

    count = 0
    for _ in range(n):
        time.sleep(WAIT_S)
        count += 1
    return count


def waiting_steps(n: int, runner: str = "threads") -> int:
    """A source waiting ~1 ms per item (a socket), a cheap step, a step waiting ~1 ms per
    item (an API call), a counting sink: the two waits must overlap."""
    import time

    result: list[int] = []

    def socket(inp: Iterable[Any], outp: Outp) -> None:
        for i in range(n):
            time.sleep(WAIT_S)
            outp(i)

    def api_call(inp: Iterable[Any], outp: Outp) -> None:
        for x in inp:
            time.sleep(WAIT_S)
            outp(x)

    sink = nanostream.as_node(_count_sink(result))
    nanostream.as_node(socket) > nanostream.as_node(_add_one()) > nanostream.as_node(
        api_call
    ) > sink
    sink.global_start(runner=runner)
    return result[0]
