"""Typed arguments: values from ${NAME} and --set are converted by the parameter annotations,
and an argument of the wrong type is reported by ``check`` at its FILE:LINE:COLUMN."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nanostream import ConfigError, NanoNode, pipeline_of
from nanostream.config import read_pipeline
from nanostream.config._convert import convert_arguments
from nanostream.nodes import IntervalJoin, Join, Tagged, TumblingWindow, WindowResult
from nanostream.testing import Collect

HERE = __name__


class Count(NanoNode):
    def __init__(self, count: int, step: float | None = None, loud: bool = False) -> None:
        super().__init__()
        self.count, self.step, self.loud = count, step, loud

    def generator(self) -> Iterator[Any]:
        for i in range(self.count):
            yield (i * self.step if self.step is not None else i, self.loud)


class Label(NanoNode):
    def __init__(self, label: str, key: int | str = 0, tags: list[str] | None = None) -> None:
        super().__init__()
        self.label, self.key, self.tags = label, key, tags

    def process_item(self, item: Any) -> Iterator[Any]:
        yield (self.label, item)


class Untyped(NanoNode):
    def __init__(self, count, label="", anything: Any = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.count, self.label, self.anything = count, label, anything

    def process_item(self, item: Any) -> Iterator[Any]:
        yield item


def order_id(item: dict[str, Any]) -> Any:
    return item["id"]


def event_time(item: dict[str, Any]) -> Any:
    return item["t"]


class OrdersAndPayments(NanoNode):
    """Orders (left) and payments (right): order 1 paid 30 s later, order 2 90 s later."""

    def generator(self) -> Iterator[Any]:
        yield Tagged("left", {"id": 1, "t": 0})
        yield Tagged("left", {"id": 2, "t": 10})
        yield Tagged("right", {"id": 1, "t": 30})
        yield Tagged("right", {"id": 2, "t": 100})


class PaidInWindow(Join):
    """A Join of orders and payments, its durations annotated as Join's own."""

    def __init__(
        self, window: float | timedelta, allowed_lateness: float | timedelta = 0, **options: Any
    ) -> None:
        super().__init__(
            order_id, window, timestamp=event_time, allowed_lateness=allowed_lateness, **options
        )


class PaidWithin(IntervalJoin):
    """An IntervalJoin of orders and payments, its durations annotated as IntervalJoin's."""

    def __init__(
        self,
        lower: float | timedelta,
        upper: float | timedelta,
        allowed_lateness: float | timedelta = 0,
        **options: Any,
    ) -> None:
        super().__init__(
            order_id,
            lower=lower,
            upper=upper,
            timestamp=event_time,
            allowed_lateness=allowed_lateness,
            **options,
        )


class Show(NanoNode):
    """Writes a window's length and items, or a join's key and the two times, as a line of
    the file ``path`` (a file, not stdout: on Ray the node runs in an actor process)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def process_item(self, item: Any) -> Iterator[Any]:
        if isinstance(item, WindowResult):
            line = f"{item.end - item.start} {item.value}"
        else:
            line = f"{item.key} {event_time(item.left)} {event_time(item.right)}"
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
        yield item


def write(folder: Path, text: str) -> Path:
    path = folder / "pipeline.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def built(path: Path | io.StringIO, env: dict[str, str]) -> dict[str, NanoNode]:
    pipeline = read_pipeline(path, env=env).build()
    return {str(n.name): n for n in pipeline.nodes}


FLOW = """
nodes:
  count: {class: Count, args: {count: "${N:-3}", step: "${STEP:-}", loud: "${LOUD:-no}"}}
  label: {class: Label, args: {label: "${LABEL:-10}", key: "${KEY:-7}", tags: "${TAGS:-a}"}}
  sink: nanostream.testing:Collect
"""


def test_quoted_environment_values_are_converted_by_annotation(runner: str) -> None:
    nodes = built(io.StringIO(FLOW), env={})
    count, label = nodes["count"], nodes["label"]
    assert isinstance(count, Count) and isinstance(label, Label)
    assert (count.count, count.step, count.loud) == (3, None, False)
    # str stays the text; int | str takes the number; an annotation other than int, float,
    # bool, str and their unions (list[str] | None) leaves the string as it is
    assert (label.label, label.key, label.tags) == ("10", 7, "a")
    assert pipeline_of(count).start(runner=runner).wait(10)
    sink = nodes["sink"]
    assert isinstance(sink, Collect)
    assert sink.items == [("10", (i, False)) for i in range(3)]


def test_environment_values_override_the_defaults() -> None:
    env = {"N": "2", "STEP": "0.5", "LOUD": "true", "LABEL": "x", "KEY": "k"}
    nodes = built(io.StringIO(FLOW), env=env)
    count, label = nodes["count"], nodes["label"]
    assert isinstance(count, Count) and isinstance(label, Label)
    assert (count.count, count.step, count.loud, label.label, label.key) == (2, 0.5, True, "x", "k")


def test_an_unquoted_value_in_block_style_is_typed_and_checked_too() -> None:
    text = (
        "nodes:\n  count:\n    class: Count\n    args:\n      count: ${N:-4}\n      step: ${S:-1}\n"
    )
    nodes = built(io.StringIO(text), env={})
    count = nodes["count"]
    assert isinstance(count, Count) and (count.count, count.step) == (4, 1.0)
    assert isinstance(count.step, float)


def test_an_environment_value_without_annotation_is_typed_as_yaml_types_it() -> None:
    # quoted in a flow mapping or unquoted in block style: the same values
    flow = (
        "nodes:\n"
        '  u: {class: Untyped, args: {count: "${N:-5}", label: "${L:-x}", anything: "${A:-1.5}"}}\n'
    )
    block = (
        "nodes:\n  u:\n    class: Untyped\n    args:\n"
        "      count: ${N:-5}\n      label: ${L:-x}\n      anything: ${A:-1.5}\n"
    )
    for text in (flow, block):
        for env, values in [
            ({}, (5, "x", 1.5)),
            ({"N": "true", "L": "42", "A": "null"}, (True, 42, None)),
        ]:
            u = built(io.StringIO(text), env=env)["u"]
            assert isinstance(u, Untyped)
            assert (u.count, u.label, u.anything) == values, (text, env)
            assert type(u.count) is type(values[0])
    # a value written in quotes without ${...} is the user's string, as YAML says
    u = built(io.StringIO('nodes:\n  u: {class: Untyped, args: {count: "5"}}\n'), env={})["u"]
    assert isinstance(u, Untyped) and u.count == "5"


@pytest.mark.parametrize(
    ("args", "env", "line_col", "message"),
    [
        pytest.param(
            '{count: "${N:-5000}"}',
            {"N": "many"},
            "2:32",
            "argument 'count' expects int, got 'many', which is not one (from ${...})",
            id="env",
        ),
        pytest.param(
            '{count: 2, loud: "${LOUD}"}',
            {"LOUD": "maybe"},
            "2:42",
            "argument 'loud' expects bool, got 'maybe', which is not one (from ${...})",
            id="bool",
        ),
        pytest.param(
            '{count: "12"}',
            {},
            "2:32",
            "argument 'count' expects int, got '12' (str)",
            id="literal",
        ),
        pytest.param(
            "{count: 2, step: [1]}",
            {},
            "2:42",
            "argument 'step' expects float or None, got [1] (list)",
            id="list",
        ),
    ],
)
def test_check_reports_a_mistyped_argument_where_it_is(
    tmp_path: Path, args: str, env: dict[str, str], line_col: str, message: str
) -> None:
    path = write(tmp_path, f"nodes:\n  count: {{class: Count, args: {args}}}\n")
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env=env).build()
    assert info.value.location == f"{path}:{line_col}"
    assert info.value.message.startswith(f"node 'count' (Count): {message}; give a value")


def test_an_unquoted_variable_in_a_flow_mapping_says_to_quote_it() -> None:
    with pytest.raises(ConfigError) as info:
        read_pipeline(io.StringIO("nodes:\n  c: {class: Count, args: {count: ${N:-5}}}\n"), env={})
    assert info.value.location == "<string>:2:36"
    assert 'write a ${NAME} value in quotes, e.g. "${N:-5000}"' in info.value.message


def test_set_values_are_converted_by_annotation() -> None:
    text = (
        "nodes:\n"
        "  count: {class: Count, args: {count: 1}}\n"
        "  label: {class: Label, args: {label: a}}\n"
    )
    spec = read_pipeline(io.StringIO(text), env={})
    spec.override("count.count", "6")  # text, as a command line gives it
    spec.override("count.step", 2)  # what the command line types as YAML: converted to 2.0
    spec.override("label.label", 123)  # a number for a str parameter: its text
    nodes = {str(n.name): n for n in spec.build().nodes}
    count, label = nodes["count"], nodes["label"]
    assert isinstance(count, Count) and isinstance(label, Label)
    assert (count.count, count.step, label.label) == (6, 2.0, "123")
    assert isinstance(count.step, float)
    spec.override("count.count", "six")
    with pytest.raises(ConfigError) as info:
        spec.build()
    assert info.value.location == "--set count.count"
    assert "argument 'count' expects int, got 'six', which is not one (from --set)" in str(
        info.value
    )


def test_nanostream_check_reports_a_mistyped_argument(tmp_path: Path) -> None:
    write(
        tmp_path,
        f"""
        imports: [{HERE}]
        nodes:
          count: {{class: Count, args: {{count: "${{N:-5000}}"}}}}
          sink: nanostream.testing:Collect
        """,
    )
    pythonpath = os.pathsep.join([str(Path(__file__).parent), *sys.path])
    env = {**os.environ, "PYTHONPATH": pythonpath}

    def check(*more: str, n: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nanostream", "check", "pipeline.yaml", *more],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "N": n} if n is not None else env,
        )

    assert check().returncode == 0, check().stderr
    result = check(n="lots")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "pipeline.yaml:3:32: error: node 'count' (Count): argument 'count' expects int, got 'lots'"
    ), result.stderr
    result = check("--set", "count.count=abc")
    assert result.returncode != 0
    assert "argument 'count' expects int, got 'abc', which is not one (from --set)" in (
        result.stderr
    )


def test_a_composite_converts_its_arguments_as_its_inner_nodes_would(tmp_path: Path) -> None:
    (tmp_path / "counting.yaml").write_text(
        textwrap.dedent(
            """
            name: Counting
            nodes:
              - name: count
                class: Count
                frozen_arguments: {step: "${STEP:-0.5}"}
                arg_mapping: {count: how_many}
            """
        )
    )
    path = write(
        tmp_path,
        """
        composites: [counting.yaml]
        nodes:
          counting: {class: Counting, args: {how_many: "${N:-2}"}}
          sink: nanostream.testing:Collect
        """,
    )
    pipeline = read_pipeline(path, env={}).build()
    sink = next(n for n in pipeline.nodes if isinstance(n, Collect))
    assert pipeline.start().wait(10)
    assert sink.items == [(0.0, False), (0.5, False)]
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env={"STEP": "half"}).build()
    assert info.value.location is not None and info.value.location.endswith("counting.yaml:6:24")
    assert "argument 'step' expects float or None, got 'half'" in info.value.message
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env={"N": "two"}).build()
    assert info.value.location == f"{path}:3:38"
    assert "argument 'how_many' expects int, got 'two'" in info.value.message


def test_set_arguments_of_a_composite_file_are_converted_and_checked(tmp_path: Path) -> None:
    (tmp_path / "counting.yaml").write_text(
        f"name: Counting\nimports: [{HERE}]\nnodes:\n"
        "  - {name: count, class: Count, arg_mapping: {count: how_many, step: step}}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}

    def check(*more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nanostream", "check", "counting.yaml", *more],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    ok = check("--set", "how_many=3", "--set", "step=1")
    assert ok.returncode == 0, ok.stderr
    bad = check("--set", "how_many=three", "--set", "step=1")
    assert bad.returncode != 0
    assert bad.stderr.startswith(
        "--set how_many: error: composite 'Counting': argument 'how_many' expects int, got "
        "'three', which is not one (from --set)"
    ), bad.stderr


def test_durations_of_the_shipped_windows_and_joins_take_text() -> None:
    # float | timedelta: the text is converted by the member that takes it (float)
    durations = {"window": "50", "allowed_lateness": "2.5"}
    assert convert_arguments(Join, durations, durations) == (
        {"window": 50.0, "allowed_lateness": 2.5},
        {},
    )
    durations = {"lower": "-5", "upper": "50", "allowed_lateness": "0"}
    assert convert_arguments(IntervalJoin, durations, durations) == (
        {"lower": -5.0, "upper": 50.0, "allowed_lateness": 0.0},
        {},
    )
    # text no member takes is left as it is, for the node's own check
    assert convert_arguments(TumblingWindow, {"size": "1m"}, {"size": "1m"}) == (
        {"size": "1m"},
        {},
    )


DURATIONS = {
    "window": (
        """
        nodes:
          numbers: {class: IterableSource, args: {iterable: [1, 2, 3]}}
          window: {class: TumblingWindow, args: {size: "${S:-60}"}}
          show: {class: Show, args: {path: "${SHOW_TO}"}}
        """,
        "60.0 [1, 2, 3]\n",
    ),
    "join": (
        """
        nodes:
          events: OrdersAndPayments
          join: {class: PaidInWindow, args: {window: "${W:-60}", allowed_lateness: "${L:-5}"}}
          show: {class: Show, args: {path: "${SHOW_TO}"}}
        """,
        "1 0 30\n",
    ),
    "interval-join": (
        """
        nodes:
          events: OrdersAndPayments
          join: {class: PaidWithin, args: {lower: "${LO:-0}", upper: "${UP:-50}"}}
          show: {class: Show, args: {path: "${SHOW_TO}"}}
        """,
        "1 0 30\n",
    ),
}


def durations_cli(tmp_path: Path, case: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Writes ``case``'s pipeline file; returns a runner of ``nanostream`` commands there."""
    write(tmp_path, f"imports: [{HERE}]\n" + textwrap.dedent(DURATIONS[case][0]).lstrip("\n"))
    pythonpath = os.pathsep.join([str(Path(__file__).parent), *sys.path])

    def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nanostream", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": pythonpath, **env},
        )

    return cli


@pytest.mark.parametrize("case", list(DURATIONS))
def test_window_and_join_durations_from_the_environment_check(tmp_path: Path, case: str) -> None:
    cli = durations_cli(tmp_path, case)
    shown = str(tmp_path / "shown.txt")
    result = cli("check", "pipeline.yaml", SHOW_TO=shown)
    assert result.returncode == 0, result.stderr
    # a value no member of float | timedelta takes reaches the node, whose check names it
    result = cli("check", "pipeline.yaml", S="1m", W="1m", UP="1m", SHOW_TO=shown)
    assert result.returncode == 1
    assert "a number of seconds or a timedelta, got '1m'" in result.stderr, result.stderr


@pytest.mark.parametrize("case", list(DURATIONS))
def test_window_and_join_durations_from_the_environment_run(
    tmp_path: Path, case: str, runner: str, request: pytest.FixtureRequest
) -> None:
    cli = durations_cli(tmp_path, case)
    shown = tmp_path / "shown.txt"
    env = {"SHOW_TO": str(shown)}
    if runner == "ray" and case != "window":  # the window's run starts a local Ray of its own
        ray = request.getfixturevalue("ray_session")
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address  # the tests' Ray instance
    result = cli("run", "pipeline.yaml", "--runner", runner, **env)
    assert result.returncode == 0, result.stderr
    assert shown.read_text() == DURATIONS[case][1]
