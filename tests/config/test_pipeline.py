"""Pipeline files: reading, building, errors with FILE:LINE:COLUMN, and writing back out."""

from __future__ import annotations

import inspect
import io
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanostream
from nanostream import ConfigError, FunctionNode, NanoNode, load_pipeline, to_yaml
from nanostream.config import ConfigErrors, class_factory, read_pipeline
from nanostream.testing import Collect

HERE = __name__  # the module name these classes are imported under


class NumberSource(NanoNode):
    def __init__(self, count: int, start: int = 0) -> None:
        super().__init__()
        self.count = count
        self.start = start

    def generator(self) -> Iterator[int]:
        yield from range(self.start, self.start + self.count)


class Increment(NanoNode):
    def __init__(self, amount: int = 1, **options: Any) -> None:
        super().__init__(**options)
        self.amount = amount

    def process_item(self, item: int) -> Iterator[int]:
        yield item + self.amount


class Tagger(NanoNode):
    def __init__(self, label: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.label = label
        self.extra = extra

    def process_item(self, item: Any) -> Iterator[Any]:
        yield (self.label, item)


class Parity(NanoNode):
    def process_item(self, item: int) -> Iterator[Any]:
        yield nanostream.TaggedOutput("even" if item % 2 == 0 else "odd", item)


class NoYield(NanoNode):
    def process_item(self, item: Any) -> Any:
        return item


def double(inp: Any, outp: Any) -> None:
    for x in inp:
        outp(2 * x)


def scaler(factor: int) -> nanostream.NodeFunction:
    def scale(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(factor * x)

    return scale


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def nodes_of(pipeline: nanostream.Pipeline) -> dict[str, NanoNode]:
    return {str(n.name): n for n in pipeline.nodes}


def run(pipeline: nanostream.Pipeline, runner: str = "threads") -> None:
    handle = pipeline.start(runner=runner)
    assert handle.wait(10)


# --------------------------------------------------------------------------- building
def test_a_file_builds_and_runs_the_pipeline(tmp_path: Path, runner: str) -> None:
    path = write(
        tmp_path,
        f"""
        name: numbers
        imports: [{HERE}]                   # scaler and double are functions of this module
        options: {{queue_size: 16, batch_size: 4}}
        nodes:
          source: {{class: NumberSource, args: {{count: 5, start: 1}}}}
          plus:
            class: Increment
            args: {{amount: 10}}
            queue_size: 2
          scale: {{class: "{HERE}:scaler", args: {{factor: 2}}}}
          twice: {{function: "{HERE}:double"}}
          sink: "nanostream.testing:Collect"
        chain: [source, plus, scale, twice, sink]
        """,
    )
    spec = read_pipeline(path)
    assert spec.options == {"queue_size": 16, "batch_size": 4}
    pipeline = spec.build()
    assert pipeline.name == "numbers"
    nodes = nodes_of(pipeline)
    assert nodes["plus"].options == {"queue_size": 2}
    assert isinstance(nodes["twice"], FunctionNode) and nodes["twice"].function is double
    plan = pipeline.plan(nanostream.RunOptions(**spec.options))
    assert [pn.name for pn in plan.nodes] == ["source", "plus", "scale", "twice", "sink"]
    assert plan.node("plus").queue_size == 2 and plan.node("sink").batch_size == 4
    run(pipeline, runner)
    sink = nodes["sink"]
    assert isinstance(sink, Collect)
    assert sink.items == [(x + 10) * 4 for x in range(1, 6)]


def test_every_run_option_global_start_takes_is_taken_in_a_file(tmp_path: Path) -> None:
    # each option is checked by the run's own check, not as "seconds"
    path = write(
        tmp_path,
        """
        options:
          state: run.state
          drop_state: true
          checkpoint_items: 5
          checkpoint_interval: 0.5
          drain_timeout: 3
        nodes:
          a: {class: Increment}
        """,
    )
    assert read_pipeline(path).options == {
        "state": "run.state",
        "drop_state": True,
        "checkpoint_items": 5,
        "checkpoint_interval": 0.5,
        "drain_timeout": 3,
    }


def test_python_and_yaml_build_the_same_graph_model() -> None:
    source = NumberSource(3).configure(name="source")
    parity = Parity(name="parity")
    evens, odds = Increment(1, name="evens"), Increment(100, name="odds")
    source > parity
    parity["even"] > evens
    parity["odd"] > odds
    in_python = nanostream.pipeline_of(source)
    in_yaml = load_pipeline(
        io.StringIO(
            """
            nodes:
              - {name: source, class: NumberSource, args: {count: 3}}
              - {name: parity, class: Parity}
              - {name: evens, class: Increment}
              - {name: odds, class: Increment, args: {amount: 100}}
            edges:
              - {from: source, to: parity}
              - {from: parity, to: evens, port: even}
              - {from: parity, to: odds, port: odd}
            """
        )
    )
    assert type(in_yaml) is type(in_python)
    assert model(in_yaml) == model(in_python)


def test_nodes_are_chained_in_the_order_listed_by_default(runner: str) -> None:
    pipeline = load_pipeline(
        io.StringIO(
            """
            nodes:
              source: {class: NumberSource, args: {count: 2}}
              tag: {class: Tagger, args: {label: x}}
              sink: nanostream.testing.Collect
            """
        )
    )
    run(pipeline, runner)
    assert nodes_of(pipeline)["sink"].items == [("x", 0), ("x", 1)]  # type: ignore[attr-defined]


def test_edges_and_chain_combine(runner: str) -> None:
    pipeline = load_pipeline(
        io.StringIO(
            """
            nodes:
              source: {class: NumberSource, args: {count: 4}}
              parity: Parity
              evens: {class: Tagger, args: {label: even}}
              odds: {class: Tagger, args: {label: odd}}
              sink: nanostream.testing:Collect
            chain: [source, parity, evens, sink]
            edges:
              - {from: parity, to: odds, port: odd}
              - {from: odds, to: sink}
            """
        )
    )
    assert {(e.source.name, e.port, e.target.name) for e in pipeline.edges} == {
        ("source", "out", "parity"),
        ("parity", "out", "evens"),
        ("evens", "out", "sink"),
        ("parity", "odd", "odds"),
        ("odds", "out", "sink"),
    }
    run(pipeline, runner)
    # 'even' is not linked: only the odd numbers arrive, through 'odds'
    assert sorted(nodes_of(pipeline)["sink"].items) == [("odd", 1), ("odd", 3)]  # type: ignore[attr-defined]


def test_environment_variables_are_substituted_in_strings() -> None:
    spec = read_pipeline(
        io.StringIO(
            """
            nodes:
              tag:
                class: Tagger
                args:
                  label: "${WHO}-${MISSING:-default}"
                  extra:
                    count: ${COUNT:-3}
                    quoted: "${COUNT:-3}"
                    flag: ${FLAG}
                    literal: "$${NOT_A_VARIABLE}"
                    empty: ${EMPTY:-fallback}
            """
        ),
        env={"WHO": "me", "FLAG": "true", "EMPTY": ""},
    )
    assert spec.nodes["tag"].args == {
        "label": "me-default",
        "extra": {
            "count": 3,
            "quoted": "3",
            "flag": True,
            "literal": "${NOT_A_VARIABLE}",
            "empty": "fallback",
        },
    }


def test_imports_find_modules_next_to_the_file(tmp_path: Path, runner: str) -> None:
    (tmp_path / "my_nodes_for_pipeline_test.py").write_text(
        textwrap.dedent(
            """
            import nanostream

            class Shout(nanostream.NanoNode):
                def process_item(self, item):
                    yield str(item).upper() + "!"
            """
        )
    )
    path = write(
        tmp_path,
        """
        imports: [my_nodes_for_pipeline_test]
        nodes:
          source: {class: IterableSource, args: {iterable: [a, b]}}
          shout: Shout
          sink: nanostream.testing:Collect
        """,
    )
    pipeline = load_pipeline(path)
    run(pipeline, runner)
    assert nodes_of(pipeline)["sink"].items == ["A!", "B!"]  # type: ignore[attr-defined]


def test_composites_inline_and_from_files(tmp_path: Path, runner: str) -> None:
    write(
        tmp_path,
        """
        name: PlusTen
        nodes:
          - {name: add, class: Increment, frozen_arguments: {amount: 10}}
        """,
        "plus_ten.yaml",
    )
    path = write(
        tmp_path,
        """
        composites:
          - plus_ten.yaml
          - name: TagAfterPlusTen
            nodes:
              - {name: plus, class: PlusTen}
              - {name: tag, class: Tagger, arg_mapping: {label: label}}
        nodes:
          source: {class: NumberSource, args: {count: 2}}
          both: {class: TagAfterPlusTen, args: {label: t}}
          sink: nanostream.testing:Collect
        """,
    )
    pipeline = load_pipeline(path)
    run(pipeline, runner)
    assert nodes_of(pipeline)["sink"].items == [("t", 10), ("t", 11)]  # type: ignore[attr-defined]
    assert "both.plus.add" in [pn.name for pn in pipeline.plan().nodes]
    # a composite's own arguments can be overridden like any node's
    pipeline = load_pipeline(path, overrides={"both.label": "u"})
    run(pipeline, runner)
    assert nodes_of(pipeline)["sink"].items == [("u", 10), ("u", 11)]  # type: ignore[attr-defined]


def test_overrides_replace_arguments() -> None:
    pipeline = load_pipeline(
        io.StringIO("nodes:\n  source: {class: NumberSource, args: {count: 2}}\n"),
        overrides={"source.count": 7, "source.start": 1},
    )
    node = nodes_of(pipeline)["source"]
    assert isinstance(node, NumberSource) and (node.count, node.start) == (7, 1)
    spec = read_pipeline(io.StringIO("nodes:\n  source: {class: NumberSource, args: {count: 2}}\n"))
    with pytest.raises(ConfigError) as info:
        spec.override("sorce.count", 1)
    assert info.value.location == "--set sorce.count"
    assert "there is no node 'sorce' (did you mean 'source'?)" in info.value.message
    spec.override("source.cuont", 1)
    with pytest.raises(ConfigError) as info:
        spec.build()
    assert info.value.location == "--set source.cuont"
    assert "has no argument 'cuont' (did you mean 'count'?)" in info.value.message


def test_yaml_cannot_create_python_objects() -> None:
    with pytest.raises(ConfigError) as info:
        read_pipeline(
            io.StringIO("nodes:\n  x: !!python/object/apply:os.system [echo hi]\n"), env={}
        )
    assert info.value.location == "<string>:2:6"
    assert "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'" in str(
        info.value
    )


# --------------------------------------------------------------------------- errors
def error_of(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env=env if env is not None else {}).build()
    return info.value


CASES = [
    pytest.param(
        """
        nodes:
          a: {class: NumberSource, args: {count: 1}
        """,
        "3:1",
        "this is not valid YAML: expected ',' or '}', but got '<stream end>' (while parsing a "
        "flow mapping that starts at line 2, column 6)",
        id="yaml-syntax",
    ),
    pytest.param(
        """
        nodes:
          a: {class: NumberSource, args: {count: 1}}
        chian: [a]
        """,
        "3:1",
        "unknown key 'chian' (did you mean 'chain'?)",
        id="unknown-top-key",
    ),
    pytest.param(
        """
        nodes:
          a: {class: NumberSource, arg: {count: 1}}
        """,
        "2:28",
        "node 'a': unknown key 'arg' (did you mean 'args'?)",
        id="unknown-node-key",
    ),
    pytest.param(
        """
        nodes:
          a: {class: NumberSorce, args: {count: 1}}
        """,
        "2:14",
        "node 'a': unknown class 'NumberSorce' (did you mean 'NumberSource'",
        id="unknown-class",
    ),
    pytest.param(
        """
        nodes:
          a:
            class: NumberSource
            args:
              count: 1
              stat: 2
        """,
        "6:7",
        "node 'a' (NumberSource) has no argument 'stat' (did you mean 'start'?); it takes: "
        "count, start",
        id="unknown-argument",
    ),
    pytest.param(
        """
        nodes:
          a:
            class: NumberSource
        """,
        "3:12",
        "node 'a' (NumberSource) needs the argument 'count'; add it to the node's arguments",
        id="missing-argument",
    ),
    pytest.param(
        """
        nodes:
          a: {class: NumberSource, args: {count: 1}}
          b: {class: Increment, args: {amount: 1}, queue_size: -1}
        """,
        "3:56",
        "node 'b': queue_size must be a positive integer, got -1",
        id="bad-option",
    ),
    pytest.param(
        f"""
        imports: [{HERE}]
        nodes:
          a: {{class: "{HERE}:scaler", args: {{factor: 1}}}}
          b:
            class: "{HERE}:explode"
            args: {{message: boom}}
        """,
        "6:11",
        f"node 'b' ({HERE}:explode) could not be built: ValueError: boom; check its arguments",
        id="constructor-raises",
    ),
    pytest.param(
        """
        nodes:
          a: {class: Increment}
          b: {class: Increment}
          c: {class: Increment}
        edges:
          - {from: a, to: b}
          - {from: b, to: c}
          - {from: c, to: a}
        """,
        "8:5",
        "the edges form a cycle: a > b > c > a; a pipeline must be acyclic: remove the edge "
        "from 'c' to 'a' or reroute it",
        id="cycle",
    ),
    pytest.param(
        """
        nodes:
          a: {class: Increment}
          b: {class: Increment}
          c: {class: Increment}
        chain: [a, b]
        """,
        "4:3",
        "node 'c' is not linked to the rest of the pipeline",
        id="not-linked",
    ),
    pytest.param(
        """
        nodes:
          a: {class: Increment}
          b: {class: Increment}
        edges:
          - {from: a, to: c}
        """,
        "5:19",
        "pipeline: edge to 'c' is not a node",
        id="edge-to-nothing",
    ),
    pytest.param(
        """
        nodes:
          a: {class: Increment}
          b: {class: NumberSource, args: {count: 1}}
        """,
        "2:3",
        "cannot link 'a' to 'b': node 'b' is a source",
        id="source-as-target",
    ),
    pytest.param(
        """
        nodes:
          a: {class: NoYield}
        """,
        "2:14",
        "node 'a' (NoYield): process_item of node 'a' must yield its outputs",
        id="contract",
    ),
    pytest.param(
        """
        nodes:
          a: {class: Increment}
          a: {class: Increment}
        """,
        "3:3",
        "duplicate key 'a' (first given on line 2); keep only one",
        id="duplicate-key",
    ),
    pytest.param(
        """
        nodes:
          a: {class: Tagger, args: {label: "${NOT_SET_ANYWHERE}"}}
        """,
        "2:36",
        "environment variable NOT_SET_ANYWHERE is not set; set it, or give a default with "
        "${NOT_SET_ANYWHERE:-default}",
        id="unset-variable",
    ),
    pytest.param(
        """
        imports: [no_such_module_anywhere]
        nodes:
          a: {class: Increment}
        """,
        "1:11",
        "cannot import module 'no_such_module_anywhere'",
        id="bad-import",
    ),
    pytest.param(
        """
        options: {queue_sise: 3}
        nodes:
          a: {class: Increment}
        """,
        "1:11",
        "unknown run option 'queue_sise' (did you mean 'queue_size' or 'queue_bytes'?)",
        id="bad-run-option",
    ),
    pytest.param(
        """
        options: {checkpoint_items: 0}
        nodes:
          a: {class: Increment}
        """,
        "1:29",
        "checkpoint_items must be a whole number >= 1, got 0",
        id="bad-checkpoint-items",
    ),
    pytest.param(
        """
        options: {log_interval: fast}
        nodes:
          a: {class: Increment}
        """,
        "1:25",
        "log_interval must be a number of seconds > 0, got 'fast'",
        id="bad-log-interval",
    ),
    pytest.param(
        """
        nodes:
          a: {class: Add}
        """,
        "2:14",
        "ambiguous class name 'Add': it names ",
        id="ambiguous-class",
    ),
    pytest.param(
        """
        runner: thread
        nodes:
          a: {class: Increment}
        """,
        "1:9",
        "unknown runner 'thread'; choose one of: ",
        id="unknown-runner",
    ),
    pytest.param(
        """
        otel: {endpoint: "http://collector:4318", service: orders}
        nodes:
          a: {class: Increment}
        """,
        "1:43",
        "unknown otel setting 'service' (did you mean 'service_name'?); otel settings: "
        "endpoint, service_name (the rest comes from the OTEL_* environment variables)",
        id="bad-otel-setting",
    ),
    pytest.param(
        """
        otel: yes please
        nodes:
          a: {class: Increment}
        """,
        "1:7",
        "'otel' is true, or a mapping with endpoint and/or service_name, got 'yes please'",
        id="bad-otel",
    ),
    pytest.param("", "1:1", "a pipeline file is a mapping with at least 'nodes:'", id="empty"),
    pytest.param("nodes: []", "1:8", "a pipeline file needs 'nodes'", id="no-nodes"),
]


class Add(NanoNode):  # the same name as classes of other test modules: ambiguous
    def process_item(self, item: Any) -> Iterator[Any]:
        yield item


def explode(message: str) -> Any:
    raise ValueError(message)


@pytest.mark.parametrize(("text", "line_col", "message"), CASES)
def test_errors_point_at_file_line_and_column(
    tmp_path: Path, text: str, line_col: str, message: str
) -> None:
    if "ambiguous" in message:  # make sure a second Add exists
        other = type("Add", (NanoNode,), {"process_item": Add.process_item})
    error = error_of(text, tmp_path)
    path = tmp_path / "pipeline.yaml"
    assert error.location == f"{path}:{line_col}", str(error)
    assert message in error.message, error.message
    if "ambiguous" in message:
        del other


def test_composite_errors_point_into_the_composite_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        name: Broken
        nodes:
          - name: add
            class: Increment
            arg_mapping: {amont: n}
        """,
        "broken.yaml",
    )
    error = error_of("composites: [broken.yaml]\nnodes:\n  a: {class: Broken}\n", tmp_path)
    assert error.location is not None and error.location.endswith("broken.yaml:5:19")
    assert "inner node 'add' (Increment) has no argument 'amont'" in error.message


def test_all_independent_errors_are_reported(tmp_path: Path) -> None:
    error = error_of(
        """
        nodes:
          a: {class: Nope}
          b: {class: Increment, args: {amout: 1}}
          c: {class: Tagger}
        """,
        tmp_path,
    )
    assert isinstance(error, ConfigErrors)
    assert [e.location.rsplit(":", 2)[1] for e in error.errors if e.location] == ["2", "3", "4"]
    assert len(str(error).splitlines()) == 3


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the pipeline file: No such file"):
        load_pipeline(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- to_yaml
def test_a_pipeline_built_in_python_is_written_out_and_read_back(runner: str) -> None:
    source = NumberSource(3).configure(name="source", batch_size=2)
    parity = Parity()
    odd = Tagger("odd ${not substituted}", extra={"n": [1, 2]})
    sink = Collect(name="sink")
    source > parity
    parity["odd"] > odd > sink
    parity["even"] > FunctionNode(double) > sink
    text = to_yaml(source)
    assert "$${not substituted}" in text
    assert f"imports:\n- {HERE}\n" in text  # double is a function: its module is declared
    again = load_pipeline(io.StringIO(text))
    assert model(again) == model(nanostream.pipeline_of(source))
    assert to_yaml(again) == text
    run(again, runner)
    assert sorted(nodes_of(again)["sink"].items, key=str) == [  # type: ignore[attr-defined]
        ("odd ${not substituted}", 1),
        0,
        4,
    ]


def test_nanostreams_own_nodes_are_written_by_their_public_path(runner: str) -> None:
    """Built-in nodes live in private modules that may move; a file names the public path."""
    source = nanostream.from_iterable([1, 2, 3], name="rows")
    source > nanostream.nodes.Take(2, name="first") > Collect(name="sink")
    text = to_yaml(source)
    assert "class: nanostream:IterableSource\n" in text
    assert "class: nanostream.nodes:Take\n" in text
    assert "class: nanostream.testing:Collect\n" in text
    again = load_pipeline(io.StringIO(text))
    assert to_yaml(again) == text
    run(again, runner)
    assert nodes_of(again)["sink"].items == [1, 2]  # type: ignore[attr-defined]


def test_composites_are_written_with_their_definition() -> None:
    cls = class_factory(
        {
            "name": "WrittenComposite",
            "nodes": [
                {"name": "inc", "class": "Increment", "arg_mapping": {"amount": "by"}},
                {"name": "tag", "class": "Tagger", "frozen_arguments": {"label": "w"}},
            ],
        },
        inject=False,
    )
    source = NumberSource(2).configure(name="source")
    sink = Collect(name="sink")
    source > cls(by=5, name="comp") > sink
    text = to_yaml(source)
    assert f"class: {HERE}:Increment" in text and "class: WrittenComposite" in text
    again = load_pipeline(io.StringIO(text))
    run(again)
    assert nodes_of(again)["sink"].items == [("w", 5), ("w", 6)]  # type: ignore[attr-defined]
    assert to_yaml(again) == text


class KeepsNothing(NanoNode):
    def __init__(self, secret: int) -> None:
        super().__init__()
        self.hidden = secret

    def process_item(self, item: Any) -> Iterator[Any]:
        yield item


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: nanostream.as_node(lambda inp, outp: None), "is a lambda"),
        (lambda: FunctionNode(scaler(2)), "scaler.<locals>.scale is a lambda or is defined inside"),
        (
            lambda: KeepsNothing(1),
            "the value of its argument 'secret' is unknown; keep it as self.secret",
        ),
        (lambda: NumberSource(iter([1])), "its argument 'count' is a list_iterator"),  # type: ignore[arg-type]
        (
            lambda: nanostream.Composite([Increment()], name="c"),
            "a composite built in Python with Composite(...); define it with class_factory()",
        ),
    ],
)
def test_what_cannot_be_written_is_an_error(make: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        to_yaml(make())
    assert message in str(info.value)


# --------------------------------------------------------------------------- property
def model(pipeline: nanostream.Pipeline) -> tuple[Any, ...]:
    """What a graph is: node names, classes, arguments, options and links."""
    plan = pipeline.plan()
    nodes = sorted(
        (
            pn.name,
            type(pn.node).__qualname__,
            repr(arguments_of(pn.node)),
            repr(sorted(pn.node.options.items())),
        )
        for pn in plan.nodes
        if not isinstance(pn.node, FunctionNode)
    )
    functions = sorted(
        (pn.name, pn.node.function.__name__)
        for pn in plan.nodes
        if isinstance(pn.node, FunctionNode)
    )
    names = {pn.index: pn.name for pn in plan.nodes}
    edges = sorted((names[s], port, names[t]) for s, port, t in plan.edges)
    return plan.name, nodes, functions, edges


def arguments_of(node: NanoNode) -> list[tuple[str, Any]]:
    """The node's constructor arguments, as it keeps them."""
    params = inspect.signature(type(node)).parameters
    return sorted((k, v) for k, v in vars(node).items() if k in params)


NAMES = st.sampled_from(["a", "b", "read", "write", "x-1", "n.2", "Increment", "Tagger-2"])
TEXT = st.text(alphabet="ab ${}:-$\n'\"é", max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def graphs(draw: st.DrawFn) -> NanoNode:
    """A random connected acyclic graph of nodes, built in Python; returns one node."""
    n = draw(st.integers(1, 6))
    names = draw(st.lists(st.none() | NAMES, min_size=n, max_size=n))
    explicit = [x for x in names if x is not None]
    if len(set(explicit)) < len(explicit):
        names = [None] * n
    nodes: list[NanoNode] = []
    for i in range(n):
        kinds = (
            ["source", "increment", "tagger", "function"]
            if i == 0
            else ["increment", "tagger", "function"]
        )
        kind = draw(st.sampled_from(kinds))
        node: NanoNode
        if kind == "source":
            node = NumberSource(draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        elif kind == "increment":
            node = Increment(draw(st.integers(-3, 3)))
        elif kind == "tagger":
            node = Tagger(draw(TEXT), draw(st.none() | st.dictionaries(TEXT, VALUES, max_size=3)))
        else:
            node = FunctionNode(double)
        node.configure(
            name=names[i],
            queue_size=draw(st.none() | st.integers(1, 100)),
            batch_size=draw(st.none() | st.integers(1, 100)),
        )
        nodes.append(node)
    links = set()
    for j in range(1, n):
        links.add((draw(st.integers(0, j - 1)), draw(st.sampled_from(["out", "alt"])), j))
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=4))
    for i, j in extra:
        if i < j:
            links.add((i, draw(st.sampled_from(["out", "alt"])), j))
    for i, port, j in sorted(links):
        nodes[i][port] > nodes[j]
    nanostream.pipeline_of(nodes[0]).name = draw(st.sampled_from(["pipeline", "graph ${x}"]))
    return nodes[0]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(graphs())
def test_property_a_random_graph_written_to_yaml_reads_back_as_the_same_graph(
    node: NanoNode,
) -> None:
    text = to_yaml(node)
    again = load_pipeline(io.StringIO(text), env={})
    assert model(again) == model(nanostream.pipeline_of(node))
    assert to_yaml(again) == text


# --------------------------------------------------------------------------- otel
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("otel: false\n", None),
        ("otel: true\n", {}),
        (
            "otel: {endpoint: 'http://127.0.0.1:4318', service_name: orders}\n",
            {"endpoint": "http://127.0.0.1:4318", "service_name": "orders"},
        ),
    ],
)
def test_otel_settings_are_read(text: str, expected: dict[str, str] | None) -> None:
    spec = read_pipeline(io.StringIO(text + "nodes:\n  a: {class: Increment}\n"))
    assert spec.otel == expected
