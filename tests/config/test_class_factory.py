"""class_factory: the seed guide's section 1.4 as written, composites from configurations."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import nanostream
from nanostream import NanoNode, class_factory
from nanostream.config import ConfiguredComposite, resolve, unregister
from nanostream.testing import Collect

# --------------------------------------------------------------------------- the guide
# The classes of the guide's section 1.3, as written there, except that FooEmitter emits
# ``self.message`` (the guide's ``message`` is a typo) before it waits, and waits with
# ``self.sleep`` so that stopping the pipeline wakes it.


class FooEmitter(NanoNode):  # inherit from NanoNode
    def __init__(self, message: str = "", interval: float = 1) -> None:
        self.message = message
        self.interval = interval
        super().__init__()  # Must call the `NanoNode` __init__

    def generator(self) -> Iterator[str]:
        while 1:
            yield self.message  # Output must be yielded, not returned
            if self.sleep(self.interval):
                return


class MessageLengthTester(NanoNode):
    def __init__(self) -> None:
        # No particular initialization required in this example
        super().__init__()

    def process_item(self, message: str) -> Iterator[bool]:
        if len(message) % 2 == 0:
            yield True  # Again, note the use of yield instead of return
        else:
            yield False


# The guide's configuration file, character for character.
FOO_MESSAGE_YAML = """\
name: FooMessageTester

nodes:
  - name: foo_generator
    class: FooEmitter
    frozen_arguments:
      message: foobar
    arg_mapping:
      interval: foo_interval
  - name: length_tester
    class: MessageLengthTester
    arg_mapping: null
"""


def test_the_guides_example_runs_as_written(tmp_path: Path, runner: str) -> None:
    (tmp_path / "foo_message.yaml").write_text(FOO_MESSAGE_YAML)
    # The guide writes yaml.load(open(...).read()); PyYAML now needs safe_load, and the
    # file is closed so that no ResourceWarning is left behind.
    with open(tmp_path / "foo_message.yaml") as f:
        foo_message_config = yaml.safe_load(f.read())
    class_factory(foo_message_config)
    # At this point, there is now a `FooMessageTester` class
    foo_node = FooMessageTester(foo_interval=1)  # type: ignore[name-defined]  # noqa: F821

    sink = Collect(wait_for=1)
    foo_node > sink
    run = foo_node.global_start(block=False, runner=runner)
    assert sink.seen.wait(10)
    run.stop(timeout=10)
    assert sink.items and all(item is True for item in sink.items)  # "foobar" is even
    assert set(run.stats()) == {
        "FooMessageTester.foo_generator",
        "FooMessageTester.length_tester",
        "Collect",
    }


def test_the_example_file_is_the_guides_configuration() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "foo_message.yaml"
    assert example.read_text() == FOO_MESSAGE_YAML


def test_the_class_is_a_nanonode_with_the_configured_arguments() -> None:
    cls = class_factory(yaml.safe_load(FOO_MESSAGE_YAML))
    assert cls.__name__ == "FooMessageTester"
    assert issubclass(cls, NanoNode) and issubclass(cls, ConfiguredComposite)
    assert cls.arguments == ("foo_interval",)
    assert str(inspect.signature(cls)) == "(*, name=None, foo_interval=1)"
    assert "foo_generator.interval" in (cls.__doc__ or "")
    assert cls.__module__ == __name__
    # the name is bound in this module and in the registry
    assert globals()["FooMessageTester"] is cls
    assert resolve("FooMessageTester") is cls
    node = cls(foo_interval=0.5)
    assert node.is_source
    assert [type(n).__name__ for n in node.inner] == ["FooEmitter", "MessageLengthTester"]
    emitter = node.inner[0]
    assert isinstance(emitter, FooEmitter)
    assert (emitter.message, emitter.interval, emitter.name) == ("foobar", 0.5, "foo_generator")


# --------------------------------------------------------------------------- behaviour
class Add(NanoNode):
    def __init__(self, amount: int) -> None:
        super().__init__()
        self.amount = amount

    def process_item(self, item: int) -> Iterator[int]:
        yield item + self.amount


class Scale(NanoNode):
    def __init__(self, factor: int = 1) -> None:
        super().__init__()
        self.factor = factor

    def process_item(self, item: int) -> Iterator[int]:
        yield item * self.factor


class Route(NanoNode):
    def process_item(self, item: int) -> Iterator[Any]:
        yield nanostream.TaggedOutput("even" if item % 2 == 0 else "odd", item)


def _add_then_scale() -> type[ConfiguredComposite]:
    return class_factory(
        {
            "name": "AddThenScale",
            "nodes": [
                {"name": "add", "class": "Add", "arg_mapping": {"amount": "plus"}},
                {"name": "scale", "class": "Scale", "arg_mapping": {"factor": "times"}},
            ],
        }
    )


def test_a_processing_composite_takes_input_and_instances_are_independent(runner: str) -> None:
    cls = _add_then_scale()
    first, second = cls(plus=1, times=10, name="first"), cls(plus=2, times=100, name="second")
    sink = Collect()
    nanostream.from_iterable([0, 1]) > first > second > sink
    sink.global_start(runner=runner)
    assert sink.items == [(10 + 2) * 100, (20 + 2) * 100]


def test_an_argument_with_a_default_may_be_left_out(runner: str) -> None:
    cls = _add_then_scale()
    assert str(inspect.signature(cls)) == "(*, name=None, plus, times=1)"
    sink = Collect()
    nanostream.from_iterable([1]) > cls(plus=1) > sink
    sink.global_start(runner=runner)
    assert sink.items == [2]


def test_composites_nest_by_name(runner: str) -> None:
    _add_then_scale()
    class_factory(
        {
            "name": "Twice",
            "nodes": [
                {"name": "one", "class": "AddThenScale", "arg_mapping": {"plus": "plus"}},
                {
                    "name": "two",
                    "class": "AddThenScale",
                    "frozen_arguments": {"plus": 0, "times": 3},
                },
            ],
        }
    )
    sink = Collect()
    nanostream.from_iterable([1, 2]) > Twice(plus=5) > sink  # type: ignore[name-defined]  # noqa: F821
    run = sink.global_start(block=False, runner=runner)
    assert run is not None and run.wait(10)
    assert sink.items == [18, 21]
    assert "Twice.one.add" in run.stats()


def test_edges_give_any_acyclic_graph_with_ports(runner: str) -> None:
    cls = class_factory(
        {
            "name": "EvenOdd",
            "nodes": [
                {"name": "route", "class": "Route"},
                {"name": "evens", "class": "Scale", "frozen_arguments": {"factor": 10}},
                {"name": "odds", "class": "Add", "frozen_arguments": {"amount": 1000}},
                {"name": "join", "class": "Scale"},
            ],
            "edges": [
                {"from": "route", "to": "evens", "port": "even"},
                {"from": "route", "to": "odds", "port": "odd"},
                {"from": "evens", "to": "join"},
                {"from": "odds", "to": "join"},
            ],
        },
        inject=False,
    )
    assert "EvenOdd" not in globals()
    sink = Collect()
    nanostream.from_iterable(range(4)) > cls() > sink
    sink.global_start(runner=runner)
    assert sorted(sink.items) == [0, 20, 1001, 1003]


def test_entries_and_exits_choose_the_inner_ends(runner: str) -> None:
    cls = class_factory(
        {
            "name": "SideExit",
            "nodes": [
                {"name": "a", "class": "Add", "frozen_arguments": {"amount": 1}},
                {"name": "b", "class": "Add", "frozen_arguments": {"amount": 100}},
            ],
            "exits": ["a"],
        },
        inject=False,
    )
    sink = Collect()
    nanostream.from_iterable([0]) > cls() > sink
    sink.global_start(runner=runner)
    assert sink.items == [1]


def test_node_constructors_and_functions_are_inner_nodes_too(runner: str) -> None:
    cls = class_factory(
        {
            "name": "Constructed",
            "nodes": [
                {"name": "add", "class": f"{__name__}:make_adder", "arg_mapping": {"amount": "n"}},
                {"name": "neg", "function": f"{__name__}:negate"},
            ],
        },
        inject=False,
    )
    sink = Collect()
    nanostream.from_iterable([1, 2]) > cls(n=1) > sink
    sink.global_start(runner=runner)
    assert sink.items == [-2, -3]


def make_adder(amount: int) -> nanostream.NodeFunction:
    def adder(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x + amount)

    return adder


def negate(inp: Any, outp: Any) -> None:
    for x in inp:
        outp(-x)


def test_local_names_of_the_caller_win_over_other_classes_of_that_name() -> None:
    class Add(NanoNode):  # shadows the module's Add
        def process_item(self, item: int) -> Iterator[int]:
            yield item

    cls = class_factory(
        {"name": "LocalAdd", "nodes": [{"name": "a", "class": "Add"}]}, inject=False
    )
    assert type(cls().inner[0]) is Add


def test_the_registry_can_be_skipped_and_names_are_replaced() -> None:
    config = {"name": "Unlisted", "nodes": [{"name": "a", "class": "Scale"}]}
    cls = class_factory(config, inject=False, register=False)
    with pytest.raises(nanostream.ConfigError, match="unknown class 'Unlisted'"):
        resolve("Unlisted")
    again = class_factory(config, inject=False)
    assert resolve("Unlisted") is again is not cls
    unregister("Unlisted")


# --------------------------------------------------------------------------- errors
def error_of(config: Any, **kwargs: Any) -> str:
    with pytest.raises(nanostream.ConfigError) as info:
        class_factory(config, inject=False, register=False, **kwargs)
    return str(info.value)


def test_an_unknown_argument_names_the_composite_and_suggests() -> None:
    cls = class_factory(yaml.safe_load(FOO_MESSAGE_YAML))
    with pytest.raises(nanostream.ConfigError) as info:
        cls(foo_intervall=1)
    assert str(info.value) == (
        "FooMessageTester() got an unknown argument 'foo_intervall' (did you mean "
        "'foo_interval'?); it takes: foo_interval"
    )


def test_a_missing_argument_names_the_composite_and_the_inner_node() -> None:
    cls = _add_then_scale()
    with pytest.raises(nanostream.ConfigError) as info:
        cls(times=2)
    assert str(info.value) == (
        "AddThenScale: inner node 'add' (Add) is missing its argument 'amount': pass "
        "AddThenScale(plus=...)"
    )
    unmapped = class_factory(
        {"name": "Unmapped", "nodes": [{"name": "add", "class": "Add"}]}, inject=False
    )
    with pytest.raises(nanostream.ConfigError, match=r"inner node 'add' .* frozen_arguments"):
        unmapped()


def test_an_argument_the_inner_class_does_not_take_names_the_inner_node() -> None:
    message = error_of(
        {
            "name": "Typo",
            "nodes": [{"name": "foo", "class": "FooEmitter", "arg_mapping": {"intervall": "i"}}],
        }
    )
    assert "composite 'Typo', inner node 'foo' (FooEmitter) has no argument 'intervall'" in message
    assert "did you mean 'interval'?" in message


def test_an_inner_constructor_that_raises_names_the_inner_node() -> None:
    cls = class_factory(
        {"name": "Broken", "nodes": [{"name": "bad", "class": f"{__name__}:explode"}]},
        inject=False,
    )
    with pytest.raises(nanostream.ConfigError) as info:
        cls()
    assert "Broken: inner node 'bad'" in str(info.value)
    assert "ValueError: no good" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


def explode() -> Any:
    raise ValueError("no good")


def test_unknown_class_lists_close_matches() -> None:
    message = error_of({"name": "X", "nodes": [{"name": "a", "class": "MessageLengthTestr"}]})
    assert "inner node 'a': unknown class 'MessageLengthTestr'" in message
    assert "(did you mean 'MessageLengthTester'" in message


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ([1, 2], "takes the configuration as a mapping"),
        ({"nodes": [{"name": "a", "class": "Add"}]}, "must be a valid Python class name"),
        ({"name": "X"}, "needs 'nodes'"),
        ({"name": "X", "nodes": [{"class": "Add"}]}, "needs a 'name'"),
        ({"name": "X", "nodes": [{"name": "a"}]}, "exactly one of 'class'"),
        ({"name": "X", "nodes": [{"name": "a", "class": "Add", "clas": 1}]}, "unknown key 'clas'"),
        ({"name": "X", "nods": []}, "unknown key 'nods' in a composite configuration (did you"),
        (
            {"name": "X", "nodes": [{"name": "a", "class": "Add"}, {"name": "a", "class": "Add"}]},
            "two inner nodes named 'a'",
        ),
        (
            {
                "name": "X",
                "nodes": [{"name": "a", "class": "Add", "arg_mapping": {"amount": "name"}}],
            },
            "'name' cannot be an argument name",
        ),
        (
            {
                "name": "X",
                "nodes": [
                    {
                        "name": "a",
                        "class": "Add",
                        "frozen_arguments": {"amount": 1},
                        "arg_mapping": {"amount": "n"},
                    }
                ],
            },
            "both frozen and mapped",
        ),
        (
            {
                "name": "X",
                "nodes": [{"name": "a", "class": "Scale"}, {"name": "b", "class": "Scale"}],
                "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}],
            },
            "its edges form a cycle: a > b > a",
        ),
        (
            {
                "name": "X",
                "nodes": [{"name": "a", "class": "Scale"}, {"name": "b", "class": "Scale"}],
                "edges": [],
            },
            "inner node 'b' is not linked to the others",
        ),
        (
            {
                "name": "X",
                "nodes": [{"name": "a", "class": "Scale"}],
                "edges": [{"from": "a", "to": "z"}],
            },
            "edge to 'z' is not a node",
        ),
        ({"name": "X", "nodes": [{"name": "a", "class": "Scale", "queue_size": 0}]}, "positive"),
    ],
)
def test_configuration_errors(config: Any, expected: str) -> None:
    assert expected in error_of(config)


def test_several_errors_are_reported_together() -> None:
    with pytest.raises(nanostream.config.ConfigErrors) as info:
        class_factory(
            {
                "name": "X",
                "nodes": [{"name": "a", "class": "Nope1"}, {"name": "b", "class": "Nope2"}],
            },
            inject=False,
        )
    assert [("Nope1" in str(e), "Nope2" in str(e)) for e in info.value.errors] == [
        (True, False),
        (False, True),
    ]


def test_injection_never_replaces_an_unrelated_global() -> None:
    with pytest.raises(nanostream.ConfigError, match="would replace 'Add'"):
        class_factory({"name": "Add", "nodes": [{"name": "a", "class": "Scale"}]})
    assert globals()["Add"].__module__ == __name__ and not issubclass(
        globals()["Add"], ConfiguredComposite
    )


# --------------------------------------------------------------------------- composite files
FILE_NODES = """
import nanostream


class FileDoubler(nanostream.NanoNode):
    def process_item(self, item):
        yield item * 2
"""

DOUBLE_FILE = """\
name: DoubleFile
imports: [composite_file_nodes]
nodes:
  - name: numbers
    class: IterableSource
    arg_mapping: {iterable: numbers}
  - name: double
    class: FileDoubler
    arg_mapping: null
"""


def test_a_composite_file_is_read_with_the_modules_it_imports(tmp_path: Path) -> None:
    (tmp_path / "composite_file_nodes.py").write_text(FILE_NODES)
    (tmp_path / "double.yaml").write_text(DOUBLE_FILE)
    cls = nanostream.config.read_config(tmp_path / "double.yaml")
    assert isinstance(cls, type) and issubclass(cls, ConfiguredComposite)
    assert (cls.__name__, cls.arguments) == ("DoubleFile", ("numbers",))
    with pytest.raises(nanostream.ConfigError, match="DoubleFile"):
        resolve("DoubleFile")  # read_config neither registers nor injects the class
    sink = Collect()
    cls(numbers=[1, 2]) > sink
    sink.global_start()
    assert sink.items == [2, 4]

    # The same file, used by a pipeline file in another folder, imports its modules too.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "pipeline.yaml").write_text(
        "composites: [../double.yaml]\n"
        "nodes:\n"
        "  double: {class: DoubleFile, args: {numbers: [5]}}\n"
        "  sink: {class: 'nanostream.testing:Collect'}\n"
    )
    pipeline = nanostream.load_pipeline(tmp_path / "elsewhere" / "pipeline.yaml")
    pipeline.start().wait(10)
    unregister("DoubleFile")
    assert [n.items for n in pipeline.nodes if n.name == "sink"] == [[10]]


def test_read_config_tells_a_pipeline_file_from_a_composite(tmp_path: Path) -> None:
    (tmp_path / "foo_message.yaml").write_text(FOO_MESSAGE_YAML)
    (tmp_path / "pipeline.yaml").write_text(
        "nodes:\n  src: {class: IterableSource, args: {iterable: [1]}}\n"
    )
    spec = nanostream.config.read_config(tmp_path / "pipeline.yaml")
    assert isinstance(spec, nanostream.config.PipelineSpec) and list(spec.nodes) == ["src"]
    # The guide's file names classes of this module: ``imports`` imports it first.
    cls = nanostream.config.read_config(tmp_path / "foo_message.yaml", imports=[__name__])
    assert isinstance(cls, type) and cls.__name__ == "FooMessageTester"
    assert [type(n) for n in cls(foo_interval=1).inner] == [FooEmitter, MessageLengthTester]


def test_a_composite_files_imports_errors_have_their_line(tmp_path: Path) -> None:
    (tmp_path / "double.yaml").write_text(DOUBLE_FILE.replace("composite_file_nodes", "no_such"))
    with pytest.raises(nanostream.ConfigError) as info:
        nanostream.config.read_config(tmp_path / "double.yaml")
    assert info.value.location == f"{tmp_path / 'double.yaml'}:2:11"
    assert "cannot import module 'no_such': ModuleNotFoundError" in str(info.value)
