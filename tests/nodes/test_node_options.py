"""Every node class nanostream ships, with each node option: it takes effect, or it is refused.

The node options ``on_error``, ``retries``, ``backoff``, ``timeout``, ``max_errors`` and
``max_error_rate`` (and the ``errors`` port) mean the same on every node. For each class
the table below says how to make one with minimal arguments and how to make its work fail
(``bad``) or take long (``slow``); the tests then show, for each option, either its effect
in a small run or a ``GraphError`` naming the node and the option when the node is made,
configured or its pipeline built. Never accepted and ignored.
"""

from __future__ import annotations

import importlib
import inspect
import io
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream import NanoNode
from nanostream.nodes import (
    Aggregate,
    Batch,
    CSVReader,
    CSVWriter,
    DeadLetterFile,
    Dedupe,
    Delay,
    FileWriter,
    Filter,
    FlatMap,
    Inspect,
    IntervalJoin,
    Join,
    JSONLinesReader,
    JSONLinesWriter,
    KeyBy,
    LocalDirectoryWatchdog,
    LocalFileReader,
    Map,
    Merge,
    Parallel,
    PrefixWatcher,
    PrinterOfThings,
    Reduce,
    Router,
    Sample,
    SessionWindow,
    SlidingWindow,
    Take,
    Throttle,
    TumblingWindow,
    Unbatch,
)
from nanostream.nodes.http import HttpPaginator, HttpPoller, HttpRequest
from nanostream.nodes.redis import RedisStreamSink, RedisStreamSource
from nanostream.nodes.sql import SQLExecute, SQLSink, SQLSource
from nanostream.testing import Collect

OPTIONS = ("on_error", "retries", "backoff", "timeout", "max_errors", "max_error_rate")
TIMEOUT = 0.3


# ----------------------------------------------------------------------------- what fails
class Trap:
    """An item (or a part of one) whose use by a node raises ("fail") or is slow ("slow").

    A node uses it as text, a path or an SQL parameter; each of those calls ``spring``.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def spring(self) -> str:
        if self.mode == "fail":
            raise ValueError("the trap went off")
        end = time.monotonic() + 5  # slow work, in steps an attempt's timeout can cut
        while time.monotonic() < end:
            time.sleep(0.01)
        return "slow"

    def __str__(self) -> str:
        return self.spring()

    __repr__ = __str__

    def __fspath__(self) -> str:
        return self.spring()

    def __conform__(self, protocol: Any) -> str:
        return self.spring()

    def __iter__(self) -> Iterator[Any]:
        self.spring()
        return iter(())


def work(item: Any) -> str:
    """The user function of the operators: ``str``, which a :class:`Trap` makes fail or wait."""
    return str(item)


class Shout(NanoNode):
    def process_item(self, item: Any) -> Iterator[str]:
        yield work(item) + "!"


class Broken:
    """An iterable that cannot be iterated: a source over it fails at once, every time."""

    def __iter__(self) -> Iterator[Any]:
        raise ValueError("cannot iterate")


# ----------------------------------------------------------------------------- servers
class Handler(BaseHTTPRequestHandler):
    """``/ok/<n>`` answers ``[n]``, ``/fail/<n>`` 500, ``/slow/<n>`` ``[n]`` after 30 s.

    A slow request is answered sooner when its test ends (the fixture sets ``release``).
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        _, route, n = self.path.split("/")[:3]
        if route == "slow":
            self.server.release.wait(30)  # type: ignore[attr-defined]
        status = 500 if route == "fail" else 200
        body = f"[{n}]".encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Env:
    """Where the nodes of a case work: a folder, a web server, an SQLite database."""

    tmp: Path
    http: str


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "a.csv").write_text("x\n1\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n', encoding="utf-8")
    sqlite3.connect(tmp_path / "db.sqlite").close()
    try:
        yield Env(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(10)


def sqlite_url(env: Env) -> str:
    return f"sqlite:///{env.tmp / 'db.sqlite'}"


# ----------------------------------------------------------------------------- the table
@dataclass
class Case:
    """How to make a node of one class (``make(env, **options)``) and make its work fail.

    A node that processes items gets ``good`` items and one ``bad`` one (its work on it
    raises) or ``slow`` one, through ``entry(node)``; a source (``source=True``) is made
    failing by ``make`` itself. ``refused`` lists the options the class refuses (a
    ``GraphError`` naming the node and the option, when it is made or its pipeline is
    built); ``needs`` says why the effect of the others cannot be shown here.
    """

    make: Callable[..., NanoNode]
    good: Callable[[Env], list[Any]] = lambda env: []
    bad: Callable[[Env], Any] = lambda env: Trap("fail")
    slow: Callable[[Env], Any] = lambda env: Trap("slow")
    refused: tuple[str, ...] = ()
    source: bool = False
    needs: str | None = None
    entry: Callable[[Any], Any] = lambda node: node  # where the items go in


ALL = OPTIONS


def old_ledger(env: Env) -> Path:
    """A watchdog ledger without the ``hash`` column: each look that meets a file fails."""
    path = env.tmp / "old-ledger.sqlite"
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
            "mtime_ns INTEGER, emitted INTEGER, recorded_at REAL)"
        )
    db.close()
    return path


class NoBucketWatcher(PrefixWatcher):
    """A PrefixWatcher whose every listing fails, as when the store cannot be reached."""

    def listing(self, fs: Any, root: str) -> dict[str, Any]:
        raise ConnectionError(f"cannot list {root}")


def http_items(*routes: str) -> list[dict[str, Any]]:
    return [{"route": route, "n": n} for n, route in enumerate(routes)]


CASES: dict[str, Case] = {
    # ------------------------------------------------------------ sources
    # A plain source (one generator) takes no error policy; a polling source applies it to
    # each poll and goes on (these endless ones are stopped once a poll has failed).
    "IterableSource": Case(
        lambda env, **o: nanostream.from_iterable(Broken(), **o),
        source=True,
        refused=ALL,
    ),
    "HttpPoller": Case(
        lambda env, **o: HttpPoller(env.http + "/fail/1", interval=60, **{"retries": 0, **o}),
        source=True,  # its timeout is that of each request
    ),
    "SQLSource": Case(
        lambda env, **o: SQLSource(sqlite_url(env), "SELECT * FROM no_such_table", **o),
        source=True,
        refused=("timeout",),
    ),
    "LocalDirectoryWatchdog": Case(
        lambda env, **o: LocalDirectoryWatchdog(
            env.tmp, polling=True, settle=0, state=old_ledger(env), **o
        ),
        source=True,
        refused=("timeout",),
    ),
    "PrefixWatcher": Case(
        lambda env, **o: NoBucketWatcher("memory://node-options/", poll_interval=0.01, **o),
        source=True,
        refused=("timeout",),
    ),
    "RedisStreamSource": Case(
        lambda env, **o: RedisStreamSource("redis://127.0.0.1:1/0", "s", "g", "c", **o),
        source=True,  # its timeout is that of each command
        needs="a failing Redis stream (no scenario yet: only what it refuses is checked)",
    ),
    # ------------------------------------------------------------ connectors
    "HttpRequest": Case(
        lambda env, **o: HttpRequest(env.http + "/{route}/{n}", **{"retries": 0, **o}),
        good=lambda env: http_items("ok", "ok"),
        bad=lambda env: {"route": "fail", "n": 9},
        slow=lambda env: {"route": "slow", "n": 9},
    ),
    "HttpRequest(workers=3)": Case(
        lambda env, **o: HttpRequest(env.http + "/{route}/{n}", workers=3, **{"retries": 0, **o}),
        good=lambda env: http_items("ok", "ok"),
        bad=lambda env: {"route": "fail", "n": 9},
        slow=lambda env: {"route": "slow", "n": 9},
    ),
    "HttpPaginator": Case(
        lambda env, **o: HttpPaginator(env.http + "/{route}/{n}", **{"retries": 0, **o}),
        good=lambda env: http_items("ok", "ok"),
        bad=lambda env: {"route": "fail", "n": 9},
        slow=lambda env: {"route": "slow", "n": 9},
    ),
    "SQLExecute": Case(
        lambda env, **o: SQLExecute(sqlite_url(env), "SELECT :v AS v", **o),
        good=lambda env: [{"v": 1}, {"v": 2}],
        bad=lambda env: {"w": 1},
        slow=lambda env: {"v": Trap("slow")},
    ),
    "SQLSink": Case(
        lambda env, **o: SQLSink(sqlite_url(env), "rows", create=True, **o),
        refused=("on_error", "timeout", "max_errors", "max_error_rate"),
    ),
    "RedisStreamSink": Case(
        lambda env, **o: RedisStreamSink("redis://127.0.0.1:1/0", "s", **o),
        refused=("on_error", "max_errors", "max_error_rate"),
        needs="redis",
    ),
    # ------------------------------------------------------------ files and formats
    "LocalFileReader": Case(
        lambda env, **o: LocalFileReader(env.tmp, **o),
        good=lambda env: ["a.txt"],
        bad=lambda env: "missing.txt",
    ),
    "CSVReader": Case(
        lambda env, **o: CSVReader(paths=True, **o),
        good=lambda env: [str(env.tmp / "a.csv")],
        bad=lambda env: str(env.tmp / "missing.csv"),
    ),
    "JSONLinesReader": Case(
        lambda env, **o: JSONLinesReader(paths=True, **o),
        good=lambda env: [str(env.tmp / "a.jsonl")],
        bad=lambda env: str(env.tmp / "missing.jsonl"),
    ),
    "FileWriter": Case(
        lambda env, **o: FileWriter(env.tmp / "out.txt", **o),
        good=lambda env: ["x", "y"],
    ),
    "CSVWriter": Case(
        lambda env, **o: CSVWriter(env.tmp / "out.csv", **o),
        good=lambda env: [{"a": 1}],
        bad=lambda env: {"a": Trap("fail")},
        slow=lambda env: {"a": Trap("slow")},
    ),
    "JSONLinesWriter": Case(
        lambda env, **o: JSONLinesWriter(env.tmp / "out.jsonl", default=str, **o),
        good=lambda env: [{"a": 1}],
        bad=lambda env: {"a": Trap("fail")},
        slow=lambda env: {"a": Trap("slow")},
    ),
    "PrinterOfThings": Case(
        lambda env, **o: PrinterOfThings(stream=io.StringIO(), **o),
        good=lambda env: [1, 2],
    ),
    "DeadLetterFile": Case(
        lambda env, **o: DeadLetterFile(env.tmp / "dead.jsonl", **o),
        good=lambda env: [1, 2],
    ),
    # ------------------------------------------------------------ operators with user code
    "Map": Case(lambda env, **o: Map(work, **o), good=lambda env: [1, 2]),
    "Map(workers=3)": Case(lambda env, **o: Map(work, workers=3, **o), good=lambda env: [1, 2]),
    "FlatMap": Case(lambda env, **o: FlatMap(lambda x: [work(x)], **o), good=lambda env: [1]),
    "Filter": Case(lambda env, **o: Filter(work, **o), good=lambda env: [1, 2]),
    "Inspect": Case(lambda env, **o: Inspect(work, **o), good=lambda env: [1, 2]),
    "KeyBy": Case(lambda env, **o: KeyBy(work, **o), good=lambda env: [1, 2]),
    "Parallel": Case(lambda env, **o: Parallel(Shout(), workers=2, **o), good=lambda env: [1, 2]),
    "Router": Case(
        lambda env, **o: Router(lambda x: work(x) and "a", ports=["a"], **o),
        good=lambda env: [1, 2],
    ),
    "Dedupe": Case(lambda env, **o: Dedupe(work, **o), good=lambda env: [1, 2]),
    "Reduce": Case(
        lambda env, **o: Reduce(lambda acc, x: acc + work(x), initial="", **o),
        good=lambda env: [1, 2],
    ),
    "Aggregate": Case(
        lambda env, **o: Aggregate(list, lambda acc, x: [*acc, work(x)], **o),
        good=lambda env: [1, 2],
    ),
    "TumblingWindow": Case(
        lambda env, **o: TumblingWindow(60, key=work, **o), good=lambda env: [1, 2]
    ),
    "SlidingWindow": Case(
        lambda env, **o: SlidingWindow(60, 30, key=work, **o), good=lambda env: [1, 2]
    ),
    "SessionWindow": Case(
        lambda env, **o: SessionWindow(60, key=work, **o), good=lambda env: [1, 2]
    ),
    "Join": Case(
        lambda env, **o: Join(work, 60, **o), good=lambda env: [1, 2], entry=lambda n: n.left
    ),
    "IntervalJoin": Case(
        lambda env, **o: IntervalJoin(work, lower=0, upper=1, timestamp=lambda x: 0, **o),
        good=lambda env: [1, 2],
        entry=lambda n: n.left,
    ),
    # ------------------------------------------------------------ no user code per item
    # Batch's own timeout= argument is how long a batch may wait: the node option goes
    # through configure() (as a pipeline file's node key does).
    "Batch": Case(lambda env, **o: Batch(2).configure(**o), refused=ALL),
    "Unbatch": Case(lambda env, **o: Unbatch(**o), good=lambda env: [[1, 2]]),
    "Delay": Case(lambda env, **o: Delay(0.001, **o), refused=ALL),
    "Sample": Case(lambda env, **o: Sample(0.5, **o), refused=ALL),
    "Take": Case(lambda env, **o: Take(1, **o), refused=ALL),
    "Throttle": Case(lambda env, **o: Throttle(1000, **o), refused=ALL),
    "Merge": Case(lambda env, **o: Merge(**o), refused=ALL),
    # ------------------------------------------------------------ nodes of other nodes
    "Composite": Case(lambda env, **o: nanostream.Composite([Map(work)], **o), refused=ALL),
    "FunctionNode": Case(
        lambda env, **o: nanostream.as_node(lambda inp, outp: None, **o), refused=ALL
    ),
}

# Public node classes that are not in the table, and why.
NOT_WALKED = {
    "Collect": "a test helper that keeps whatever it is given: its work cannot fail",
    "NanoNode": "the base class: the user's node, whose own tests are test_policies.py",
    "BufferedSink": "the base class of SQLSink and RedisStreamSink, which are walked",
}

MODULES = (
    "nanostream",
    "nanostream.nodes",
    "nanostream.nodes.http",
    "nanostream.nodes.sql",
    "nanostream.nodes.redis",
    "nanostream.testing",
)


def test_the_table_has_every_node_class_of_the_package() -> None:
    classes = {
        name
        for module in MODULES
        for name, obj in vars(importlib.import_module(module)).items()
        if inspect.isclass(obj) and issubclass(obj, NanoNode) and not name.startswith("_")
    }
    walked = {name.partition("(")[0] for name in CASES}
    assert classes - set(NOT_WALKED) == walked


# ----------------------------------------------------------------------------- running
VALUES: dict[str, dict[str, Any]] = {
    # the option under test, and what it needs to be seen
    "on_error": {"on_error": "skip"},
    "retries": {"on_error": "retry", "retries": 2, "backoff": 0},
    "backoff": {"on_error": "retry", "retries": 1, "backoff": TIMEOUT},
    "timeout": {"timeout": TIMEOUT},
    "max_errors": {"on_error": "skip", "max_errors": 0},
    "max_error_rate": {"on_error": "skip", "max_error_rate": 0.0},
}


@dataclass
class Outcome:
    error: BaseException | None
    dead: list[Any]
    seconds: float


def run_case(
    case: Case, env: Env, runner: str, options: dict[str, Any], items: list[Any]
) -> Outcome:
    node = case.make(env, name="probe", **options)
    dead = Collect()
    sink = Collect()
    if case.source:
        node > sink
    else:
        nanostream.from_iterable(items) > case.entry(node)
        node > sink
    node.errors > dead
    started = time.monotonic()
    try:
        if not case.source:
            sink.global_start(runner=runner)
        else:  # a polling source goes on after a failed poll: stop it after the first
            run = sink.global_start(runner=runner, block=False)
            assert run is not None
            deadline = time.monotonic() + 30
            while not (dead.seen.wait(0.02) or run.done) and time.monotonic() < deadline:
                pass
            run.stop(timeout=30)
    except nanostream.NodeFailed as exc:
        return Outcome(exc, dead.items, time.monotonic() - started)
    return Outcome(None, dead.items, time.monotonic() - started)


def refusal_of(case: Case, env: Env, runner: str, option: str) -> nanostream.GraphError:
    """The error met when ``option`` is given: when the node is made, or its pipeline built."""
    value = VALUES[option][option]
    try:
        node = case.make(env, name="probe", **{option: value})
    except nanostream.GraphError as exc:
        return exc
    if case.source:
        node > Collect()
    else:
        nanostream.from_iterable([1]) > case.entry(node)
    with pytest.raises(nanostream.GraphError) as info:
        node.global_start(runner=runner)
    return info.value


# A connector's own retries (of what it knows can be retried), back-off and timeout (of
# each request), set by its constructor and configure() alike.
OWN_VALUES: dict[str, dict[str, Any]] = {
    "retries": {"on_error": "skip", "retries": 2, "backoff": 0},
    "backoff": {"on_error": "skip", "retries": 1, "backoff": TIMEOUT},
    "timeout": {"timeout": TIMEOUT},
}


def check_own_option(case: Case, env: Env, runner: str, option: str) -> Outcome | None:
    """One name, one meaning: the constructor and configure() set the connector's setting.

    Returns the outcome of a run with the option, for the connectors a test can make fail
    here (HTTP); the lost connections SQL and Redis retry are shown in their own tests.
    """
    value = OWN_VALUES[option][option]
    made = case.make(env, **{option: value})
    configured = case.make(env).configure(**{option: value})
    assert getattr(made, option) == getattr(configured, option) == value
    assert option not in configured.options  # it is not also an item policy
    if not isinstance(made, (HttpRequest, HttpPaginator, HttpPoller)):
        return None
    if case.source and option == "timeout":
        return None  # the poller's server is never slow
    items = [*case.good(env), case.slow(env) if option == "timeout" else case.bad(env)]
    return run_case(case, env, runner, OWN_VALUES[option], items)


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The waits before a retry that the log reports for node ``probe``."""
    return [
        float(r.args[-1])  # type: ignore[index]
        for r in caplog.records
        if "probe" in r.getMessage() and ("retrying in" in r.getMessage() or "; retry " in r.msg)
    ]


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", list(CASES))
def test_each_option_takes_effect_or_is_refused(
    kind: str,
    option: str,
    env: Env,
    runner: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = CASES[kind]
    if case.needs == "redis":
        pytest.importorskip("redis", reason="redis-py is not installed")
    if runner == "ray":
        pytest.skip("reads the run's log lines and error records in this process")
    caplog.set_level(logging.DEBUG, logger="nanostream")
    if option in case.refused:
        message = str(refusal_of(case, env, runner, option))
        assert option in message
        assert "probe" in message or kind.partition("(")[0] in message
        return
    if option in type(case.make(env)).own_options:
        outcome = check_own_option(case, env, runner, option)
        if outcome is None:
            return
        if option == "timeout":
            assert isinstance(outcome.error, nanostream.NodeFailed)
            assert "ReadTimeout" in str(outcome.error)
            assert outcome.seconds < 10  # the server answers after 30 s
            return
        assert outcome.error is None, outcome.error
        record = outcome.dead[0]
        assert len(outcome.dead) == 1 or case.source  # a source may have polled again
        if option == "retries":
            assert "after 3 attempts" in record.message
        else:
            delay = retry_delays(caplog)[0]
            assert TIMEOUT / 2 <= delay <= TIMEOUT
        return
    if case.needs is not None:
        pytest.skip(case.needs)
    good = case.good(env)
    options = VALUES[option]
    if option == "on_error" and "retries" in type(case.make(env)).own_options:
        with pytest.raises(nanostream.GraphError, match="retries by itself"):
            case.make(env, on_error="retry")
    if option == "timeout":
        outcome = run_case(case, env, runner, options, [*good, case.slow(env)])
        assert isinstance(outcome.error, nanostream.NodeFailed)
        assert f"longer than timeout={TIMEOUT}s" in str(outcome.error)
        assert outcome.seconds < 4  # cut short: the slow work takes 5 s (30 s on the server)
        return
    outcome = run_case(case, env, runner, options, [*good, case.bad(env), *good])
    if option in ("max_errors", "max_error_rate"):
        assert isinstance(outcome.error, nanostream.NodeFailed)
        assert f"{option}=0" in str(outcome.error)
        return
    assert outcome.error is None, outcome.error
    record = outcome.dead[0]
    assert len(outcome.dead) == 1 or case.source  # a source may have polled again
    assert record.node == "probe"
    if option == "on_error":
        assert record.attempt == 1
    elif option == "retries":
        assert record.attempt == 3
    else:  # backoff: the retry waited backoff * (0.5 .. 1) seconds
        delay = retry_delays(caplog)[0]
        assert TIMEOUT / 2 <= delay <= TIMEOUT


# ----------------------------------------------------------------------------- pipeline files
def test_a_pipeline_file_gives_a_connector_the_node_options(env: Env, runner: str) -> None:
    if runner == "ray":
        pytest.skip("reads the sinks of the run in this process")
    pipeline = nanostream.load_pipeline(
        io.StringIO(
            f"""
            nodes:
              items: {{class: IterableSource, args: {{iterable: [{{route: ok, n: 1}},
                                                               {{route: fail, n: 2}}]}}}}
              fetch:
                class: nanostream.nodes.http:HttpRequest
                args: {{url: "{env.http}/{{route}}/{{n}}"}}
                on_error: skip
                retries: 0
              sink: nanostream.testing.Collect
              dead: nanostream.testing.Collect
            edges:
              - {{from: items, to: fetch}}
              - {{from: fetch, to: sink}}
              - {{from: fetch, to: dead, port: errors}}
            """
        )
    )
    run = pipeline.start(runner=runner)
    assert run.wait(timeout=30)
    assert run.state == "finished"  # the permanent 500 was skipped, as on_error says
    nodes: dict[str, Any] = {node.name: node for node in pipeline.nodes}
    assert nodes["fetch"].retries == 0  # the connector's retries, as args: {retries: 0}
    assert nodes["sink"].items == [[1]]
    assert [record.item for record in nodes["dead"].items] == [{"route": "fail", "n": 2}]


def test_a_pipeline_file_with_an_option_a_node_cannot_honour_is_refused(env: Env) -> None:
    text = f"""
        nodes:
          items: {{class: IterableSource, args: {{iterable: [{{a: 1}}]}}}}
          rows:
            class: nanostream.nodes.sql:SQLSink
            args: {{url: "{sqlite_url(env)}", table: rows, create: true}}
            on_error: skip
        """
    with pytest.raises(nanostream.ConfigError) as info:
        nanostream.load_pipeline(io.StringIO(text))
    message = str(info.value)
    assert "node 'rows'" in message and "SQLSink does not apply on_error=" in message


def test_a_composite_refuses_a_policy_option_and_says_where_it_goes() -> None:
    stage = nanostream.Composite([Map(work)], name="stage")
    for option, value in [("on_error", "skip"), ("max_errors", 3)]:
        with pytest.raises(nanostream.GraphError) as info:
            stage.configure(**{option: value})
        assert str(info.value) == (
            f"Composite 'stage': a composite applies no error policy itself "
            f"({option}= is not applied to Composite): give {option}= to its inner nodes"
        )
    with pytest.raises(nanostream.GraphError, match="give on_error= to its inner nodes"):
        stage.errors > Collect()


# ----------------------------------------------------------------------------- errors port
def test_the_errors_port_of_a_node_without_an_error_policy_cannot_be_linked(env: Env) -> None:
    sink = SQLSink(sqlite_url(env), "rows", name="rows")
    with pytest.raises(nanostream.GraphError, match=r"'errors' port.*SQLSink does not apply"):
        sink.errors > Collect()


def test_a_node_function_may_emit_on_a_port_it_calls_errors(runner: str) -> None:
    if runner == "ray":
        pytest.skip("reads the sinks of the run in this process")

    def split(inp: Any, outp: Any) -> None:
        for item in inp:
            outp(nanostream.TaggedOutput("errors", item) if item < 0 else item)

    good, bad = Collect(), Collect()
    nanostream.from_iterable([1, -2, 3]) > split > good
    nanostream.as_node(split).errors > bad
    good.global_start(runner=runner)
    assert (good.items, bad.items) == ([1, 3], [-2])
