"""NanoNode classes, node functions as nodes, and linking with ``>``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import nanostream
from nanostream.testing import Collect


class AddOne(nanostream.NanoNode):
    def process_item(self, item: int) -> Iterator[int]:
        yield item + 1


def add_one(inp: Any, outp: Any) -> None:
    for x in inp:
        outp(x + 1)


def double(inp: Any, outp: Any) -> None:
    for x in inp:
        outp(x * 2)


# ----------------------------------------------------------------------------- the seed guide
class FooEmitter(nanostream.NanoNode):  # the guide's example, with self.message fixed
    def __init__(self, message: str = "", interval: float = 1) -> None:
        self.message = message
        self.interval = interval
        super(FooEmitter, self).__init__()  # noqa: UP008 - as the guide writes it

    def generator(self) -> Iterator[str]:
        while 1:
            time.sleep(self.interval)
            yield self.message


class MessageLengthTester(nanostream.NanoNode):
    def __init__(self) -> None:
        super(MessageLengthTester, self).__init__()  # noqa: UP008

    def process_item(self, message: str) -> Iterator[bool]:
        if len(message) % 2 == 0:
            yield True
        else:
            yield False


def test_seed_guide_example_runs(runner: str) -> None:
    message_node = FooEmitter(message="foobar", interval=0.001)
    length_tester_node = MessageLengthTester()
    sink = Collect(wait_for=3)
    message_node > length_tester_node > sink
    run = message_node.global_start(block=False, runner=runner)
    assert run is not None
    assert sink.seen.wait(10)
    message_node.global_stop(timeout=10)
    assert set(sink.items) == {True}
    assert run.state == "finished"


def test_class_nodes_chain(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(100)) > AddOne() > AddOne() > sink
    sink.global_start(runner=runner)
    assert sink.items == [x + 2 for x in range(100)]


def test_setup_and_cleanup_hooks(runner: str) -> None:
    seen_threads: list[str] = []

    class Buffer(nanostream.NanoNode):
        def setup(self) -> None:
            seen_threads.append(threading.current_thread().name)
            self.buffer: list[int] = []

        def process_item(self, item: int) -> Iterator[list[int]]:
            self.buffer.append(item)
            if len(self.buffer) == 3:
                yield self.buffer
                self.buffer = []

        def cleanup(self) -> Iterator[list[int]]:
            if self.buffer:
                yield self.buffer

    sink = Collect()
    nanostream.from_iterable(range(7)) > Buffer(name="buf") > sink
    sink.global_start(runner=runner)
    assert sink.items == [[0, 1, 2], [3, 4, 5], [6]]
    assert (
        seen_threads and seen_threads[0] != threading.current_thread().name
    ) or runner != "threads"


def test_source_cleanup_may_emit(runner: str) -> None:
    class Src(nanostream.NanoNode):
        def generator(self) -> Iterator[int]:
            yield 1

        def cleanup(self) -> Iterator[int]:
            yield 2

    sink = Collect()
    Src() > sink
    sink.global_start(runner=runner)
    assert sink.items == [1, 2]


def test_process_item_must_yield() -> None:
    class Returns(nanostream.NanoNode):
        def process_item(self, item: int) -> int:  # type: ignore[override]
            return item

    node = Returns()
    nanostream.from_iterable([1]) > node
    with pytest.raises(nanostream.GraphError, match="must yield its outputs"):
        node.global_start()


class AppendToFile(nanostream.NanoNode):
    """A sink written the way most users write one: a plain ``process_item``, no ``yield``."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def process_item(self, item: int) -> None:
        if item < 0:
            return  # an early return of nothing is still a sink
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{item}\n")


def test_a_sink_class_need_not_yield(runner: str, tmp_path: Any) -> None:
    path = tmp_path / "out.txt"
    sink = AppendToFile(str(path))
    nanostream.from_iterable([1, -1, 2, 3]) > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert run.wait(timeout=30)
    assert run.state == "finished"
    assert path.read_text(encoding="utf-8").split() == ["1", "2", "3"]


def test_a_plain_process_item_with_a_downstream_emits_nothing(runner: str) -> None:
    class Quiet(nanostream.NanoNode):
        def process_item(self, item: int) -> None:
            pass

    sink = Collect()
    nanostream.from_iterable([1, 2]) > Quiet() > sink
    sink.global_start(runner=runner)
    assert sink.items == []


def test_a_sink_run_by_parallel_need_not_yield(runner: str, tmp_path: Any) -> None:
    path = tmp_path / "out.txt"
    sink = nanostream.nodes.Parallel(AppendToFile(str(path)), workers=2)
    nanostream.from_iterable([1, 2, 3]) > sink
    sink.global_start(runner=runner)
    assert sorted(path.read_text(encoding="utf-8").split()) == ["1", "2", "3"]


class ReturnsAbs(nanostream.NanoNode):
    process_item = staticmethod(abs)  # no Python code to read: checked when it runs


def test_a_value_returned_without_code_to_read_is_refused_when_it_comes(runner: str) -> None:
    node = ReturnsAbs(name="absolute")
    nanostream.from_iterable([-1]) > node
    with pytest.raises(nanostream.NodeFailed) as info:
        node.global_start(runner=runner)
    message = str(info.value)
    assert "process_item of node 'absolute' returned int" in message
    assert "yield it" in message


def test_cleanup_returning_a_value_is_an_error() -> None:
    class BadCleanup(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            yield item

        def cleanup(self) -> Any:
            return 5

    node = BadCleanup()
    nanostream.from_iterable([1]) > node
    with pytest.raises(nanostream.NodeFailed) as info:
        node.global_start()
    assert isinstance(info.value.__cause__, nanostream.NodeProtocolError)


def test_node_without_generator_or_process_item() -> None:
    class Nothing(nanostream.NanoNode):
        pass

    node = Nothing()
    nanostream.from_iterable([1]) > node
    with pytest.raises(nanostream.GraphError, match="defines neither"):
        node.global_start()


def test_missing_super_init_still_works(runner: str) -> None:
    class NoSuper(nanostream.NanoNode):
        def __init__(self, k: int) -> None:
            self.k = k

        def process_item(self, item: int) -> Iterator[int]:
            yield item * self.k

    sink = Collect()
    nanostream.from_iterable([1, 2]) > NoSuper(3) > sink
    sink.global_start(runner=runner)
    assert sink.items == [3, 6]


# ----------------------------------------------------------------------------- linking
def test_gt_returns_right_operand_and_nodes_are_truthy() -> None:
    a, b = nanostream.from_iterable([]), AddOne()
    assert (a > b) is b
    assert bool(b)


def test_chain_with_plain_functions(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable([1, 2, 3]) > add_one > sink
    sink.global_start(runner=runner)
    assert sink.items == [2, 3, 4]


def test_two_plain_functions_cannot_be_compared() -> None:
    with pytest.raises(TypeError):
        add_one > double  # type: ignore[operator]


def test_callable_instance_and_closure_are_nodes(runner: str) -> None:
    class Add:
        def __init__(self, amount: int) -> None:
            self.amount = amount

        def __call__(self, inp: Any, outp: Any) -> None:
            for x in inp:
                outp(x + self.amount)

    def add(amount: int) -> Any:
        def add_impl(inp: Any, outp: Any) -> None:
            for x in inp:
                outp(x + amount)

        return add_impl

    sink = Collect()
    src = nanostream.from_iterable([1])
    src > Add(10) > nanostream.as_node(add(100)) > sink
    sink.global_start(runner=runner)
    assert sink.items == [111]


def test_same_function_twice_is_one_node(runner: str) -> None:
    a = nanostream.from_iterable([1, 2], name="a")
    b = nanostream.from_iterable([10], name="b")
    sink = Collect()
    a > add_one
    b > add_one  # fan-in into the same node
    nanostream.as_node(add_one) > sink
    plan = nanostream.pipeline_of(a).plan()
    assert [n.name for n in plan.nodes].count("add_one") == 1
    sink.global_start(runner=runner)
    assert sorted(sink.items) == [2, 3, 11]


def test_function_is_free_after_its_run(runner: str) -> None:
    for _ in range(2):
        sink = Collect()
        nanostream.from_iterable([1]) > add_one > sink
        sink.global_start(runner=runner)
        assert sink.items == [2]


def test_node_constructors_give_distinct_nodes(runner: str) -> None:
    def make() -> Any:
        def impl(inp: Any, outp: Any) -> None:
            for x in inp:
                outp(x + 1)

        return impl

    sink = Collect()
    nanostream.from_iterable([0]) > nanostream.as_node(make()) > nanostream.as_node(make()) > sink
    sink.global_start(runner=runner)
    assert sink.items == [2]


def test_fan_out_sends_every_item_to_each_target(runner: str) -> None:
    src = nanostream.from_iterable(range(50))
    left, right = Collect(), Collect()
    src > left
    src > right
    src.global_start(runner=runner)
    assert left.items == right.items == list(range(50))


def test_fan_in_merges(runner: str) -> None:
    sink = Collect()
    nanostream.from_iterable(range(0, 100)) > sink
    nanostream.from_iterable(range(100, 200)) > sink
    sink.global_start(runner=runner)
    assert sorted(sink.items) == list(range(200))
    # each input's order is kept
    assert [x for x in sink.items if x < 100] == list(range(100))


def test_diamond_ends_correctly(runner: str) -> None:
    class Total(nanostream.NanoNode):
        def setup(self) -> None:
            self.total = 0

        def process_item(self, item: int) -> Iterator[int]:
            self.total += item
            yield from ()

        def cleanup(self) -> Iterator[int]:
            yield self.total

    a = nanostream.from_iterable(range(1000))
    b, c = AddOne(name="b"), AddOne(name="c")
    d = Total(name="d")
    sink = Collect()
    a > b > d
    a > c > d
    d > sink
    a.global_start(runner=runner)
    assert sink.items == [2 * (sum(range(1000)) + 1000)]


def test_link_to_self_and_to_source_are_refused() -> None:
    a = AddOne(name="a")
    with pytest.raises(nanostream.GraphError, match="itself"):
        a > a
    with pytest.raises(nanostream.GraphError, match="is a source"):
        a > nanostream.from_iterable([], name="src")


def test_non_callable_cannot_be_linked() -> None:
    with pytest.raises(nanostream.GraphError, match="cannot use 5 as a node"):
        nanostream.from_iterable([]) > 5


def test_as_function_runs_outside_nanostream() -> None:
    out: list[int] = []
    AddOne().as_function()(iter([1, 2, 3]), out.append)
    assert out == [2, 3, 4]
    src_out: list[int] = []
    nanostream.from_iterable("xy").as_function()(iter(()), src_out.append)
    assert src_out == ["x", "y"]


def test_configure_validates_options() -> None:
    with pytest.raises(nanostream.GraphError, match="positive integer"):
        AddOne(queue_size=0)
    with pytest.raises(nanostream.GraphError, match="unknown node option"):
        AddOne().configure(colour="red")


def test_tagged_output_goes_to_named_port(runner: str) -> None:
    def route(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(nanostream.TaggedOutput("big" if x >= 5 else "small", x))

    node = nanostream.as_node(route)
    big, small = Collect(), Collect()
    nanostream.from_iterable(range(10)) > node
    node["big"] > big
    node["small"] > small
    node.global_start(runner=runner)
    assert big.items == [5, 6, 7, 8, 9]
    assert small.items == [0, 1, 2, 3, 4]


class AsyncSetup(AddOne):
    async def setup(self) -> None:  # type: ignore[override]
        pass


class AsyncSourceWithoutYield(nanostream.NanoNode):
    async def generator(self) -> Any:  # type: ignore[override]
        return None


class AsyncReturnsValue(nanostream.NanoNode):
    async def process_item(self, item: Any) -> Any:
        return item


@pytest.mark.parametrize(
    ("cls", "start"),
    [
        (AsyncSetup, "setup of node 'fetch' is 'async def': only generator() and process_item()"),
        (AsyncSourceWithoutYield, "generator of node 'fetch' is 'async def' but does not yield"),
        (AsyncReturnsValue, "process_item of node 'fetch' is a coroutine that returns a value"),
    ],
)
def test_async_methods_outside_the_contract_are_refused_when_the_graph_is_built(
    cls: type[nanostream.NanoNode], start: str
) -> None:
    node = cls(name="fetch")
    if node.is_source:
        node > Collect()
    else:
        nanostream.from_iterable([1]) > node
    with pytest.raises(nanostream.GraphError) as info:
        node._pipeline().plan()
    message = str(info.value)
    assert message.startswith(start)
    assert f"{__name__}.{cls.__qualname__}." in message  # where it is defined
