"""Every public node class, with each number it takes: a wrong one is refused when the node
is made, with an :class:`~nanostream.OptionError` naming the node and the option.

The options are read from the constructors' signatures (an argument annotated ``int`` or
``float``), so a new node, or a new argument of one, is walked without a change here; the
table below only says how to make each class with the fewest arguments. Each option is
given a negative number, a bool and NaN; where one of those is a valid value, ``VALID``
says so and why. (The node options ``on_error``, ``retries``... of every node, as options
of its error policy, are walked by ``test_node_options.py``.)
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import nanostream
import nanostream.nodes
import nanostream.operators
from nanostream import NanoNode


def same(x: Any) -> Any:
    return x


def pair(a: Any, b: Any) -> Any:
    return b


class Same(NanoNode):
    def process_item(self, item: Any) -> Iterator[Any]:
        yield item


def node_classes() -> dict[str, type[NanoNode]]:
    """The public node classes of ``nanostream``, ``nanostream.nodes`` and its families, and
    of the operators' modules."""
    families = [info.name for info in pkgutil.iter_modules(nanostream.nodes.__path__)]
    operators = [info.name for info in pkgutil.iter_modules(nanostream.operators.__path__)]
    modules = [
        "nanostream",
        "nanostream.nodes",
        *(f"nanostream.nodes.{name}" for name in families),
        *(f"nanostream.operators.{name}" for name in operators if not name.startswith("_")),
    ]
    found: dict[str, type[NanoNode]] = {}
    for module in modules:
        try:
            imported = importlib.import_module(module)
        except ImportError:  # a family whose optional dependency is missing
            continue
        for name in getattr(imported, "__all__", ()):
            obj = getattr(imported, name)
            if inspect.isclass(obj) and issubclass(obj, NanoNode):
                assert found.setdefault(name, obj) is obj, f"two public node classes {name}"
    return found


# How to make each class with the fewest arguments (``tmp``: a folder of the test's own).
# A class whose family needs a missing package skips its tests.
MAKE: dict[str, Callable[..., NanoNode]] = {
    "Aggregate": lambda tmp, **o: nanostream.nodes.Aggregate(list, pair, **o),
    "ArrowCSVReader": lambda tmp, **o: _family("columnar").ArrowCSVReader(**o),
    "Batch": lambda tmp, **o: nanostream.nodes.Batch(**o),
    "CSVReader": lambda tmp, **o: nanostream.nodes.CSVReader(**o),
    "CSVWriter": lambda tmp, **o: nanostream.nodes.CSVWriter(tmp / "out.csv", **o),
    "Composite": lambda tmp, **o: nanostream.Composite([nanostream.nodes.Map(same)], **o),
    "DeadLetterFile": lambda tmp, **o: nanostream.nodes.DeadLetterFile(tmp / "dead.jsonl", **o),
    "Dedupe": lambda tmp, **o: nanostream.nodes.Dedupe(**o),
    "Delay": lambda tmp, **o: nanostream.nodes.Delay(**{"seconds": 0.1, **o}),
    "DuckDBSink": lambda tmp, **o: _family("duckdb").DuckDBSink(":memory:", "t", **o),
    "DuckDBSource": lambda tmp, **o: _family("duckdb").DuckDBSource(":memory:", "SELECT 1", **o),
    "FeatherReader": lambda tmp, **o: _family("columnar").FeatherReader(**o),
    "FeatherWriter": lambda tmp, **o: _family("columnar").FeatherWriter(tmp / "out", **o),
    "FileWriter": lambda tmp, **o: nanostream.nodes.FileWriter(tmp / "out", **o),
    "Filter": lambda tmp, **o: nanostream.nodes.Filter(same, **o),
    "FlatMap": lambda tmp, **o: nanostream.nodes.FlatMap(same, **o),
    "FunctionNode": lambda tmp, **o: nanostream.as_node(lambda inp, outp: None, **o),
    "HttpPaginator": lambda tmp, **o: _family("http").HttpPaginator("http://localhost/", **o),
    "HttpPoller": lambda tmp, **o: _family("http").HttpPoller(
        "http://localhost/", **{"interval": 1.0, **o}
    ),
    "HttpRequest": lambda tmp, **o: _family("http").HttpRequest("http://localhost/", **o),
    "Inspect": lambda tmp, **o: nanostream.nodes.Inspect(same, **o),
    "IntervalJoin": lambda tmp, **o: nanostream.nodes.IntervalJoin(
        same, **{"lower": -10, "upper": 10, "timestamp": same, **o}
    ),
    "IterableSource": lambda tmp, **o: nanostream.from_iterable([], **o),
    "JSONLinesReader": lambda tmp, **o: nanostream.nodes.JSONLinesReader(**o),
    "JSONLinesWriter": lambda tmp, **o: nanostream.nodes.JSONLinesWriter(tmp / "o.jsonl", **o),
    "Join": lambda tmp, **o: nanostream.nodes.Join(same, **{"window": 1.0, **o}),
    "KafkaSink": lambda tmp, **o: _family("kafka").KafkaSink("localhost:9092", "t", **o),
    "KafkaSource": lambda tmp, **o: _family("kafka").KafkaSource("localhost:9092", "t", "g", **o),
    "KeyBy": lambda tmp, **o: nanostream.nodes.KeyBy(same, **o),
    "LocalDirectoryWatchdog": nanostream.nodes.LocalDirectoryWatchdog,  # of the folder tmp
    "LocalFileReader": nanostream.nodes.LocalFileReader,  # of the folder tmp
    "Map": lambda tmp, **o: nanostream.nodes.Map(same, **o),
    "Merge": lambda tmp, **o: nanostream.nodes.Merge(**o),
    "Parallel": lambda tmp, **o: nanostream.nodes.Parallel(Same(), **{"workers": 2, **o}),
    "ParquetReader": lambda tmp, **o: _family("columnar").ParquetReader(**o),
    "ParquetWriter": lambda tmp, **o: _family("columnar").ParquetWriter(tmp / "out", **o),
    "PrefixWatcher": lambda tmp, **o: nanostream.nodes.PrefixWatcher("memory://values/", **o),
    "PrinterOfThings": lambda tmp, **o: nanostream.nodes.PrinterOfThings(**o),
    "RedisStreamSink": lambda tmp, **o: _family("redis").RedisStreamSink(
        "redis://localhost/0", "s", **o
    ),
    "RedisStreamSource": lambda tmp, **o: _family("redis").RedisStreamSource(
        "redis://localhost/0", "s", "g", "c", **o
    ),
    "Reduce": lambda tmp, **o: nanostream.nodes.Reduce(pair, **o),
    "Router": lambda tmp, **o: nanostream.nodes.Router(same, **o),
    "SQLExecute": lambda tmp, **o: _family("sql").SQLExecute("sqlite://", "SELECT 1", **o),
    "SQLSink": lambda tmp, **o: _family("sql").SQLSink("sqlite://", "t", **o),
    "SQLSource": lambda tmp, **o: _family("sql").SQLSource("sqlite://", "SELECT 1", **o),
    "Sample": lambda tmp, **o: nanostream.nodes.Sample(**{"fraction": 0.5, **o}),
    "SessionWindow": lambda tmp, **o: nanostream.nodes.SessionWindow(**{"gap": 1.0, **o}),
    "SlidingWindow": lambda tmp, **o: nanostream.nodes.SlidingWindow(
        **{"size": 2.0, "step": 1.0, **o}
    ),
    "Take": lambda tmp, **o: nanostream.nodes.Take(**{"n": 1, **o}),
    "Throttle": lambda tmp, **o: nanostream.nodes.Throttle(**{"rate_per_s": 10.0, **o}),
    "TumblingWindow": lambda tmp, **o: nanostream.nodes.TumblingWindow(**{"size": 1.0, **o}),
    "Unbatch": lambda tmp, **o: nanostream.nodes.Unbatch(**o),
}

# Public node classes that are not walked, and why.
NOT_WALKED = {
    "NanoNode": "the base class: its node options are checked by configure() (test_node.py)",
    "BufferedSink": "the base class of the buffered sinks, which are walked",
}

# The wrong values given to each number option.
BAD: dict[str, Any] = {"negative": -1, "bool": True, "nan": math.nan}

# (class, option, bad value) that is a valid value after all, and why.
VALID: dict[tuple[str, str, str], str] = {
    ("IntervalJoin", "lower", "negative"): "a right item may come before its left one",
    ("IntervalJoin", "upper", "negative"): "a right item may come before its left one",
    ("Sample", "seed", "negative"): "any integer seeds the random numbers",
    ("SlidingWindow", "offset", "negative"): "windows start at offset + k * step for every k",
    ("TumblingWindow", "offset", "negative"): "windows start at offset + k * size for every k",
}


def _family(name: str) -> Any:
    """``nanostream.nodes.<name>``, or a skip when its optional dependency is missing."""
    try:
        return importlib.import_module(f"nanostream.nodes.{name}")
    except ImportError as exc:
        pytest.skip(f"nanostream.nodes.{name} needs a missing package: {exc}")


def _numeric(annotation: Any) -> bool:
    """Whether an annotation (text, as ``from __future__ import annotations`` keeps it)
    admits a plain ``int`` or ``float`` (one of its alternatives, not a part of one)."""
    kinds = {part.strip() for part in str(annotation).split("|")}
    return bool(kinds & {"int", "float"})


def number_options(cls: type[NanoNode]) -> list[str]:
    """The arguments of ``cls`` that take a number (a count, size, interval or timeout)."""
    return [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind is not p.VAR_KEYWORD and _numeric(p.annotation)
    ]


CLASSES = node_classes()
WALKED = [
    (cls, option, bad)
    for cls in sorted(set(CLASSES) - set(NOT_WALKED))
    for option in number_options(CLASSES[cls])
    for bad in BAD
]


def test_every_public_node_class_can_be_made_here() -> None:
    assert set(CLASSES) - set(NOT_WALKED) <= set(MAKE)
    assert "SQLSink" in CLASSES and {"retries", "backoff"} <= set(
        number_options(CLASSES["SQLSink"])
    )


def test_each_exception_to_the_rule_is_still_an_option_walked() -> None:
    assert set(VALID) <= set(WALKED)


@pytest.mark.parametrize(("cls", "option", "bad"), WALKED)
def test_a_wrong_number_is_refused_when_the_node_is_made(
    cls: str, option: str, bad: str, tmp_path: Path
) -> None:
    make = partial(MAKE[cls], tmp_path)
    make(name="probe")  # the node is made without the option
    if (cls, option, bad) in VALID:
        make(name="probe", **{option: BAD[bad]})
        return
    with pytest.raises(nanostream.OptionError) as info:
        make(name="probe", **{option: BAD[bad]})
    message = str(info.value)
    assert "probe" in message, message
    assert option in message, message


BACKING_OFF = [
    cls for cls in sorted(MAKE) if {"backoff", "max_backoff"} <= set(number_options(CLASSES[cls]))
]


@pytest.mark.parametrize("cls", BACKING_OFF)
def test_a_max_backoff_below_the_backoff_is_refused(cls: str, tmp_path: Path) -> None:
    with pytest.raises(nanostream.OptionError) as info:
        MAKE[cls](tmp_path, name="probe", backoff=2.0, max_backoff=1.0)
    assert str(info.value) == (
        f"{cls} 'probe': max_backoff (1.0) is below backoff (2.0); give max_backoff >= backoff"
    )


@pytest.mark.parametrize("cls", BACKING_OFF)
def test_a_backoff_configured_above_the_max_backoff_is_refused(cls: str, tmp_path: Path) -> None:
    node = MAKE[cls](tmp_path, name="probe", backoff=0.5, max_backoff=1.0)
    node.configure(backoff=1.0)
    with pytest.raises(nanostream.OptionError) as info:
        node.configure(backoff=2.0)
    assert str(info.value) == (
        f"{cls} 'probe': backoff (2.0) is above max_backoff (1.0); give backoff <= "
        "max_backoff, or make the node with a larger max_backoff"
    )
    assert node.backoff == 1.0  # type: ignore[attr-defined]
