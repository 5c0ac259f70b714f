"""``queue_bytes``: a node's input queue bounded by the approximate bytes of its items too.

A producer of big items is held back while its consumer is blocked: the queue's byte
figures in ``run.stats()`` never pass the budget, and the producer cannot get further
ahead than the queue plus the batches in flight. One item larger than the whole budget
still passes (no deadlock). Values are checked when the graph is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream._engine.channel import ByteBudget, item_size
from nanostream.config import read_pipeline
from support import wait_for_file

ITEM = 64 * 1024
BATCH = 8


class BigItems(nanostream.NanoNode):
    """Emits ``n`` items of ``size`` bytes; ``produced`` is how many it has made so far."""

    def __init__(self, n: int, size: int = ITEM) -> None:
        super().__init__(name="big")
        self.n = n
        self.size = size
        self.produced = 0

    def generator(self) -> Iterator[bytes]:
        for i in range(self.n):
            self.produced = i + 1
            yield bytes([i % 256]) * self.size


class Gate(nanostream.NanoNode):
    """Blocks on its first item until the file ``flag`` exists; keeps each item's first byte."""

    def __init__(self, flag: Path | None = None, **options: Any) -> None:
        super().__init__(name="gate", **options)
        self.flag = str(flag) if flag is not None else None
        self.seen: list[int] = []

    def process_item(self, item: bytes) -> Iterator[int]:
        if self.flag is not None and not self.seen:
            assert wait_for_file(self.flag, self.sleep, timeout=60)
        self.seen.append(item[0])
        yield len(item)


def full(run: nanostream.Run, node: str, budget: int, samples: list[int]) -> bool:
    """Poll (bounded) until ``node``'s queue holds as much as the budget lets in."""
    for _ in range(6000):
        held = run.stats()[node].queue_depth_bytes
        samples.append(held)
        if held + ITEM > budget:
            return True
        run.wait(0.005)
    return False


@pytest.mark.parametrize("where", ["node", "run"])
def test_a_producer_of_big_items_is_held_back_by_the_byte_budget(
    runner: str, tmp_path: Path, where: str
) -> None:
    budget, n = 16 * ITEM, 200
    flag = tmp_path / "open"
    src, gate = BigItems(n), Gate(flag)
    src > gate
    options: dict[str, Any] = {"batch_size": BATCH}
    if where == "node":
        gate.configure(queue_bytes=budget)
    else:
        options["queue_bytes"] = budget
    if runner == "ray":
        with pytest.raises(nanostream.GraphError, match="queue_bytes"):
            src.global_start(runner=runner, **options)
        return
    run = src.global_start(runner=runner, block=False, **options)
    samples: list[int] = []
    try:
        assert full(run, "gate", budget, samples), "the queue never filled up"
        stats = run.stats()
        assert stats["gate"].queue_capacity_bytes == budget
        assert stats["gate"].queue_depth_bytes == budget
        # The gate holds its first part, the queue its budget, the source one batch:
        assert src.produced <= BATCH + budget // ITEM + BATCH < n
    finally:
        flag.touch()
    assert run.wait(60)
    assert max(samples) <= budget
    assert gate.seen == [i % 256 for i in range(n)]
    assert run.stats()["gate"].queue_depth_bytes == 0


def test_an_item_larger_than_the_budget_still_passes(runner: str) -> None:
    src, gate = BigItems(20), Gate(queue_bytes=1000)
    src > gate
    if runner == "ray":
        with pytest.raises(nanostream.GraphError, match=r"node 'gate'.*queue_bytes=1000"):
            src.global_start(runner=runner)
        return
    run = src.global_start(runner=runner, block=False, batch_size=4)
    samples = []
    while not run.wait(0.001):
        samples.append(run.stats()["gate"].queue_depth_bytes)
    assert gate.seen == list(range(20))
    assert max(samples, default=0) <= ITEM  # one item at a time


def test_queue_bytes_is_checked_when_the_graph_is_built(tmp_path: Path) -> None:
    with pytest.raises(nanostream.GraphError, match=r"Gate.*queue_bytes must be a positive"):
        Gate(queue_bytes=0)
    with pytest.raises(nanostream.GraphError, match="queue_bytes must be a positive integer"):
        Gate().configure(queue_bytes="64MB")
    src = nanostream.from_iterable([b"x"])
    src > Gate()
    with pytest.raises(nanostream.GraphError, match="queue_bytes must be a positive integer"):
        src.global_start(queue_bytes=-1)
    path = tmp_path / "p.yaml"
    path.write_text(
        "nodes:\n"
        "  src: {class: IterableSource, args: {iterable: [a]}}\n"
        "  out: {class: 'nanostream.testing:Collect', queue_bytes: 0}\n"
        "options: {queue_bytes: 1.5}\n"
    )
    with pytest.raises(nanostream.ConfigError) as info:
        read_pipeline(path)
    text = str(info.value)
    assert "p.yaml:3:" in text and "queue_bytes must be a positive integer (bytes), got 0" in text
    assert "p.yaml:4:" in text and "got 1.5" in text


def test_a_pipeline_file_sets_queue_bytes(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "nodes:\n"
        "  src: {class: IterableSource, args: {iterable: [a]}}\n"
        "  out: {class: 'nanostream.testing:Collect', queue_bytes: 4096}\n"
        "  more: {class: 'nanostream.testing:Collect'}\n"
        "edges: [{from: src, to: out}, {from: src, to: more}]\n"
        "options: {queue_bytes: 65536}\n"
    )
    spec = read_pipeline(path)
    assert spec.options == {"queue_bytes": 65536}
    plan = spec.build().plan(nanostream.RunOptions.from_kwargs(**spec.options))
    assert plan.node("out").queue_bytes == 4096
    assert plan.node("more").queue_bytes == 65536


def test_item_sizes_and_the_budget() -> None:
    assert item_size(b"x" * 100) == 100 and item_size("x" * 100) == 100
    assert item_size(memoryview(bytearray(100))) == 100
    assert item_size({"data": b"x" * ITEM}) > ITEM and item_size([b"x" * ITEM] * 2) > 2 * ITEM
    # Envelopes nest: the payload of {"payload": {"body": ...}} counts too.
    assert item_size({"payload": {"body": b"x" * ITEM}}) > ITEM
    assert item_size([{"body": b"x" * 1000}] * 1000) > 1000 * 1000  # sampled, extrapolated
    deep: Any = b"x" * ITEM
    for _ in range(10):
        deep = [deep]
    assert item_size(deep) < ITEM  # looked 4 deep, no further
    budget = ByteBudget(100)
    assert budget.fit([40, 40, 40], 0) == 2
    part, end = budget.take(list("abc"), [40, 40, 40], 0)
    assert (part, end, budget.held) == (["a", "b"], 2, 80)
    assert budget.fit([40], 0) == 0  # full
    budget.removed()
    assert budget.held == 0 and budget.fit([500, 1], 0) == 1  # alone, however large


def test_without_a_budget_the_byte_figures_are_empty(runner: str) -> None:
    src, gate = BigItems(3, size=10), Gate()
    src > gate
    run = src.global_start(runner=runner, block=False)
    assert run.wait(60)
    stats = run.stats()["gate"]
    assert (stats.queue_depth_bytes, stats.queue_capacity_bytes) == (0, None)
    assert gate.seen == [0, 1, 2]
