"""The Ray runner with a state store: aligned checkpoints, restored state (docs/state.md).

A run on Ray fails after a checkpoint was committed and is restarted from the store: the
sink's kept items (its state, restored with the rest) equal those of an uninterrupted run,
which holds only if the source's position, the operator's state and the sink's state were
snapshotted at one consistent cut. What Ray cannot checkpoint is refused before any actor
starts, naming the node.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install 'nanostream[ray]'")

import nanostream
import support
from nanostream.nodes import Aggregate, Dedupe, Reduce, TumblingWindow
from nanostream.state import open_store
from support import send_by_value


@pytest.fixture(autouse=True)
def local_ray(ray_session: Any) -> None:
    """The test session's Ray instance; the workers get this module's classes by value."""
    send_by_value(ray_session, sys.modules[__name__])


def committed(path: Path) -> int:
    """The number of the store's last checkpoint (0 without one)."""
    store = open_store(str(path))
    try:
        checkpoint = store.load()
        return 0 if checkpoint is None else checkpoint.epoch
    finally:
        store.close()


class Events(nanostream.NanoNode):
    """Emits ``(key, time)`` events from its stored position; with ``crash_after``, fails
    once it has emitted that many and a checkpoint is committed in ``store``."""

    def __init__(self, events: list[Any], store: Path, crash_after: int | None = None):
        super().__init__(name="events", batch_size=1)
        self.events = events
        self.store = store
        self.crash_after = crash_after

    def setup(self) -> None:
        self.position = 0

    def generator(self) -> Iterator[Any]:
        while self.position < len(self.events):
            if self.position == self.crash_after:
                # While it waits, sleep() lets the barriers of the checkpoints begun out.
                assert support.wait_until(lambda: self.checkpointed(self.sleep))
                raise RuntimeError("crash")
            self.position += 1
            yield self.events[self.position - 1]

    def checkpointed(self, sleep: Callable[[float], Any]) -> bool:
        sleep(0.01)
        return committed(self.store) > 0

    def snapshot_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


class Keep(nanostream.NanoNode):
    """A sink that keeps what it receives, as its state (at-least-once: not exactly_once)."""

    def __init__(self) -> None:
        super().__init__(name="keep")
        self.items: list[Any] = []

    def process_item(self, item: Any) -> None:
        self.items.append(item)

    def snapshot_state(self) -> list[Any]:
        return self.items

    def restore_state(self, state: list[Any]) -> None:
        self.items = list(state)


MIDDLES: dict[str, Callable[[], nanostream.NanoNode]] = {
    "reduce": lambda: Reduce(operator.add, key=lambda e: e[0], name="op"),
    "aggregate-end": lambda: Aggregate(
        create=lambda: 0,
        add=lambda acc, e: acc + e[1],
        key=lambda e: e[0],
        emit="end",
        name="op",
    ),
    "dedupe": lambda: Dedupe(key=lambda e: e[0], name="op"),
    "tumbling": lambda: TumblingWindow(
        10,
        timestamp=lambda e: e[1],
        key=lambda e: e[0],
        reduce=lambda acc, e: acc + 1,
        initial=0,
        name="op",
    ),
}

EVENTS = [("abc"[i % 3], i) for i in range(60)]


def kept(
    middle: str,
    store: Path,
    crash_after: int | None = None,
    replicas: int = 1,
    **options: Any,
) -> list[Any]:
    """What the sink kept; with ``replicas``, a stateless node in that many replicas
    comes first (its barriers then cross to each, and the next node counts one input per
    replica: its state is at-least-once, which ``Dedupe``'s tolerates)."""
    sink = Keep()
    source: nanostream.NanoNode = Events(EVENTS, store, crash_after)
    if replicas > 1:
        source = source > nanostream.nodes.Map(lambda e: e, name="copy")
        options["ray_options"] = {"copy": {"replicas": replicas, "key": lambda e: e[0]}}
    source > MIDDLES[middle]() > sink
    sink.global_start(runner="ray", state=str(store), **options)
    return sink.items


@pytest.mark.parametrize(
    ("middle", "replicas"), [*((m, 1) for m in sorted(MIDDLES)), ("dedupe", 2)]
)
def test_a_crash_and_restart_on_ray_gives_what_an_uninterrupted_run_gives(
    tmp_path: Path, middle: str, replicas: int
) -> None:
    plain = kept(middle, tmp_path / "plain.state", replicas=replicas)
    store = tmp_path / "run.state"
    with pytest.raises(nanostream.NodeFailed, match="events"):
        kept(middle, store, crash_after=30, replicas=replicas, checkpoint_interval=0.05)
    assert committed(store) > 0
    state = open_store(str(store)).load()
    assert state is not None and 0 < state.states["events"][1] <= 30
    restarted = kept(middle, store, replicas=replicas)
    if replicas > 1:  # each key's items keep their order; the keys interleave anyhow
        restarted, plain = sorted(restarted), sorted(plain)
    assert restarted == plain


def test_checkpoints_every_few_items_on_ray_are_consistent_cuts(tmp_path: Path) -> None:
    """With ``checkpoint_items``, a source asks for checkpoints; each committed one holds
    the totals of exactly the items before the source's position in it."""
    store = tmp_path / "run.state"
    with pytest.raises(nanostream.NodeFailed, match="events"):
        kept("reduce", store, crash_after=45, checkpoint_items=5, checkpoint_interval=60)
    state = open_store(str(store)).load()
    assert state is not None
    position = state.states["events"][1]
    assert 0 < position <= 45
    totals: dict[str, Any] = {}
    for event in EVENTS[:position]:  # Reduce(operator.add) of tuples: concatenated
        key = event[0]
        totals[key] = totals[key] + event if key in totals else event
    assert state.states["op"][1] == totals


class Numbers(nanostream.NanoNode):
    """docs/state.md's first source: 1, 2, ... up to ``stop``, from its stored position."""

    def __init__(self, stop: int, **options: Any) -> None:
        super().__init__(**options)
        self.stop = stop

    def setup(self) -> None:
        self.position = 0

    def generator(self) -> Iterator[int]:
        while self.position < self.stop:
            self.position += 1
            yield self.position

    def snapshot_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


def test_the_docs_first_example_on_ray(tmp_path: Path) -> None:
    """A run that ends well commits its final states; the next one resumes from them."""
    path = str(tmp_path / "run.state")

    def run(stop: int) -> list[Any]:
        sink = nanostream.testing.Collect(name="sink")
        Numbers(stop, name="numbers") > Reduce(operator.add, name="total") > sink
        sink.global_start(state=path, runner="ray")
        return sink.items

    assert run(3) == [1, 3, 6]
    assert run(5) == [10, 15]


@pytest.mark.parametrize("kind", ["sql", "jsonl"])
def test_an_exactly_once_sink_on_ray_writes_each_row_once_across_a_crash(
    tmp_path: Path, kind: str
) -> None:
    """The sink waits for the driver's commit of each checkpoint, then writes what it kept
    (a transaction, a part file); a crash and a restart write every row once."""
    from nanostream.nodes import JSONLinesWriter
    from nanostream.nodes.sql import SQLSink

    db, folder = tmp_path / "out.db", tmp_path / "out"

    def writer() -> nanostream.NanoNode:
        if kind == "sql":
            return SQLSink(f"sqlite:///{db}", "t", create=True, exactly_once=True, name="out")
        return JSONLinesWriter(str(folder / "part-{part:04d}.jsonl"), exactly_once=True, name="out")

    def check() -> None:  # after the crash: the rows of committed checkpoints only
        before = rows()
        assert before == list(range(1, len(before) + 1))

    def rows() -> list[int]:
        if kind == "sql":
            return [n for (n,) in support.sqlite_rows(db, "SELECT n FROM t")]
        if not folder.exists():
            return []
        parts = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        return [json.loads(line)["n"] for p in parts for line in p.read_text().splitlines()]

    support.write_across_a_crash(writer, str(tmp_path / "run.state"), "ray", 11, check)
    assert rows() == list(range(1, 21))
    assert committed(tmp_path / "run.state") > 2  # a checkpoint every 3 items


def test_writing_exactly_once_after_replicas_is_refused_on_ray(tmp_path: Path) -> None:
    from nanostream.nodes.sql import SQLSink

    sink = SQLSink(f"sqlite:///{tmp_path / 'out.db'}", "t", exactly_once=True, name="out")
    Events(EVENTS, tmp_path) > nanostream.nodes.Map(lambda e: {"k": e[0]}, name="row") > sink
    with pytest.raises(nanostream.GraphError, match="'out' writes exactly once, but node 'row'"):
        sink.global_start(
            state=str(tmp_path / "run.state"), runner="ray", ray_options={"row": {"replicas": 2}}
        )


def test_a_stateful_node_with_replicas_is_refused_on_ray(tmp_path: Path) -> None:
    sink = Keep()
    Events(EVENTS, tmp_path) > MIDDLES["reduce"]() > sink
    with pytest.raises(nanostream.GraphError, match="node 'op' keeps state and has replicas=2"):
        sink.global_start(
            state=str(tmp_path / "run.state"), runner="ray", ray_options={"op": {"replicas": 2}}
        )


CLI_NODES = """
import nanostream


class Upto(nanostream.NanoNode):
    def __init__(self, stop):
        super().__init__()
        self.stop = stop
        self.position = 0

    def generator(self):
        while self.position < self.stop:
            self.position += 1
            yield self.position

    def snapshot_state(self):
        return self.position

    def restore_state(self, state):
        self.position = state


class Total(nanostream.NanoNode):
    def setup(self):
        self.total = 0

    def process_item(self, item):
        self.total += item

    def snapshot_state(self):
        return self.total

    def restore_state(self, state):
        self.total = state
"""

CLI_PIPELINE = """\
name: upto
imports: [ray_cli_nodes]
nodes:
  count: {class: Upto, args: {stop: 3}}
  total: Total
"""


def test_nanostream_run_with_state_on_ray(tmp_path: Path, ray_session: Any) -> None:
    """``nanostream run FILE --runner ray --state PATH`` checkpoints and resumes."""
    (tmp_path / "ray_cli_nodes.py").write_text(CLI_NODES)
    path = tmp_path / "pipeline.yaml"
    path.write_text(CLI_PIPELINE)
    store = tmp_path / "run.state"
    address = ray_session.get_runtime_context().gcs_address
    env = {**os.environ, "RAY_ADDRESS": address, "PYTHONPATH": str(tmp_path)}

    def run(*args: str) -> None:
        command = [sys.executable, "-m", "nanostream", "run", str(path), "--runner", "ray"]
        result = subprocess.run(
            [*command, "--state", str(store), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert result.returncode == 0, result.stderr

    run()
    state = open_store(str(store)).load()
    assert state is not None
    assert {n: s for n, (_kind, s) in state.states.items()} == {"count": 3, "total": 6}
    run("--set", "count.stop=5")
    state = open_store(str(store)).load()
    assert state is not None
    assert {n: s for n, (_kind, s) in state.states.items()} == {"count": 5, "total": 15}


KILL_CHILD = r"""
import sys

import nanostream
from nanostream.nodes import Throttle, TumblingWindow


class Events(nanostream.NanoNode):
    def setup(self):
        self.position = 0

    def generator(self):
        while self.position < 3000:
            self.position += 1
            yield ("abc"[self.position % 3], self.position)

    def snapshot_state(self):
        return self.position

    def restore_state(self, state):
        self.position = state


class Keep(nanostream.NanoNode):
    def setup(self):
        self.items = []

    def process_item(self, item):
        self.items.append((item.key, item.start, item.value))

    def snapshot_state(self):
        return self.items

    def restore_state(self, state):
        self.items = list(state)


counts = TumblingWindow(
    50, timestamp=lambda e: e[1], key=lambda e: e[0], reduce=lambda n, e: n + 1, initial=0,
    name="counts",
)
windows = Events(name="events", batch_size=1) > Throttle(1500, name="pace") > counts
if len(sys.argv) > 3:  # into an exactly-once SQLSink
    from nanostream.nodes import Map
    from nanostream.nodes.sql import SQLSink

    keep = SQLSink(sys.argv[3], "counts", create=True, exactly_once=True, name="keep")
    windows > Map(lambda w: {"key": w.key, "start": w.start, "n": w.value}, name="row") > keep
else:
    keep = Keep(name="keep")
    windows > keep
run = keep.global_start(
    block=False, runner=sys.argv[2], state=sys.argv[1], checkpoint_interval=0.1
)
print("started", flush=True)
run.wait_interruptibly()
"""


@pytest.mark.timeout(300)  # a driver started and killed several times: ~40 s quiet, 90 s at load 10
def test_kill_9_of_the_driver_on_ray_resumes_the_windows(
    tmp_path: Path, ray_session: Any, kill_child: Callable[..., support.KillChild]
) -> None:
    """The driver of a Ray run is killed with SIGKILL at random moments after a checkpoint
    and restarted: the windows the sink kept (its state) equal those of an uninterrupted
    run, none lost, none twice."""
    script = tmp_path / "child.py"
    script.write_text(KILL_CHILD)
    plain = tmp_path / "plain.state"
    kill_child(script, str(plain), "threads").finish()
    store = tmp_path / "run.state"
    child = kill_child(script, str(store), "ray")
    child.env["RAY_ADDRESS"] = ray_session.get_runtime_context().gcs_address
    killed, _ = child.kill_repeatedly(3, lambda: committed(store), lambda: 0)
    assert killed >= 1
    expected, got = open_store(str(plain)).load(), open_store(str(store)).load()
    assert expected is not None and got is not None
    assert len(expected.states["keep"][1]) == 3 * 60 + 1  # windows of 50 over 1..3000
    assert got.states["keep"][1] == expected.states["keep"][1]


def test_state_that_no_longer_fits_is_refused_on_ray_before_any_actor(tmp_path: Path) -> None:
    path = str(tmp_path / "run.state")
    sink = nanostream.testing.Collect(name="sink")
    Numbers(2, name="numbers") > sink
    sink.global_start(state=path, runner="ray")
    renamed = nanostream.testing.Collect(name="sink")
    Numbers(4, name="counter") > renamed
    with pytest.raises(nanostream.StateError, match="'numbers' \\(no node of that name now\\)"):
        renamed.global_start(state=path, runner="ray")
    again = nanostream.testing.Collect(name="sink")
    Numbers(4, name="counter") > again
    again.global_start(state=path, runner="ray", drop_state=True)
    assert again.items == [1, 2, 3, 4]


@pytest.mark.timeout(300)  # a driver started and killed several times: ~40 s quiet, 90 s at load 10
def test_kill_9_of_the_driver_on_ray_into_an_exactly_once_sql_sink(
    tmp_path: Path, ray_session: Any, kill_child: Callable[..., support.KillChild]
) -> None:
    """The same, into an exactly-once ``SQLSink``: the final table equals that of an
    uninterrupted run, row for row."""
    script = tmp_path / "child.py"
    script.write_text(KILL_CHILD)
    plain_db, db = tmp_path / "plain.db", tmp_path / "out.db"
    plain = kill_child(script, str(tmp_path / "plain.state"), "threads", f"sqlite:///{plain_db}")
    plain.finish()
    store = tmp_path / "run.state"
    child = kill_child(script, str(store), "ray", f"sqlite:///{db}")
    child.env["RAY_ADDRESS"] = ray_session.get_runtime_context().gcs_address
    killed, _ = child.kill_repeatedly(3, lambda: committed(store), lambda: 0)
    assert killed >= 1
    query = "SELECT key, start, n FROM counts"
    expected = support.sqlite_rows(plain_db, query)
    assert len(expected) == 3 * 60 + 1
    assert support.sqlite_rows(db, query) == expected
