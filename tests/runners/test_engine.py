"""Every runner shares one runtime (``nanostream._engine``); only their waiting differs.

(How the Ray actor uses it is checked in ``test_ray_actor.py``, where Ray is installed.)
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream._core.ticks import TICKS
from nanostream._engine.channel import Channel
from nanostream._engine.node import EngineContext
from nanostream._engine.outbox import CheckedOutbox, TripwireOutbox
from nanostream._engine.reader import InputReader
from nanostream.runners.cooperative import CooperativeRun
from nanostream.runners.threads import ThreadRun
from nanostream.testing import Collect
from support import FlagSink, OneThenWait

RUNNERS = Path(nanostream.__file__).parent / "runners"


@pytest.mark.parametrize("runner", ["threads", "cooperative"])
def test_both_local_runners_run_a_node_on_the_shared_runtime(runner: str) -> None:
    release = threading.Event()
    seen: list[Any] = []

    def middle(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(x + 1)

    def sink(inp: Any, outp: Any) -> None:
        for x in inp:
            seen.append(x)
            release.wait(10)

    source = nanostream.from_iterable([1, 2], name="src")
    tail = nanostream.as_node(sink, name="sink")
    source > nanostream.as_node(middle, name="middle") > tail
    run = tail.global_start(runner=runner, block=False)
    try:
        assert isinstance(run, ThreadRun | CooperativeRun)
        src, mid, end = run.contexts
        assert all(type(c) is EngineContext for c in run.contexts)
        assert src.reader is None and type(mid.reader) is type(end.reader) is InputReader
        assert [type(b) for b in src.boxes] == [CheckedOutbox]
        assert [type(b) for b in mid.boxes] == [TripwireOutbox]
        assert [type(c) for c in run.channels] == [type(None), Channel, Channel]
    finally:
        release.set()
    assert run.wait(10)
    assert seen == [2, 3]


def test_no_runner_defines_its_own_channel_outbox_or_reader() -> None:
    # The copies that drifted apart: a runner says how to wait and wake, nothing more.
    modules = sorted(RUNNERS.rglob("*.py"))
    names = {path.relative_to(RUNNERS).as_posix() for path in modules}
    assert {"threads.py", "_hub.py", "ray/_actor.py", "ray/_transport.py"} <= names
    for path in modules:
        name = path.relative_to(RUNNERS).as_posix()
        tree = ast.parse(path.read_text())
        classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        copies = [
            c
            for c in classes
            if any(w in c.lower() for w in ("channel", "box", "input", "reader", "context"))
            and c != "_FeedBox"  # run_inline's input: sends each item through at once
        ]
        assert copies == [], f"{name} defines {copies}: use nanostream._engine's"
        constants = [
            t.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name) and ("TICKS" in t.id or "LINGER" in t.id or t.id == "END")
        ]
        assert constants == [], f"{name} defines {constants} again"


def copy_slices(inp: Any, outp: Any) -> None:
    """Reads its input a slice at a time; emits each slice as a list."""
    for part in inp.slices():
        outp(list(part))


def hold_slices(inp: Any, outp: Any) -> None:
    """Reads its input by slices; emits what it holds on a tick, the rest at the end."""
    kept: list[Any] = []
    for part in inp.slices():
        if part is TICKS:
            for item in kept:
                outp((item, "tick"))
            kept.clear()
        else:
            kept.extend(part)
    for item in kept:
        outp((item, "end"))


def test_a_node_function_may_read_its_input_by_slices(runner: str) -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(5000)) > nanostream.as_node(copy_slices, name="copy") > sink
    run = sink.global_start(runner=runner, block=False)
    assert run.wait(30)
    assert [x for part in sink.items for x in part] == list(range(5000))
    assert max(map(len, sink.items)) > 1  # runs of items, not one by one
    assert run.stats()["copy"].items_in == 5000


def test_a_node_reading_slices_gets_ticks_while_idle(runner: str, tmp_path: Path) -> None:
    sink = FlagSink(tmp_path / "got", name="sink")
    node = nanostream.as_node(hold_slices, name="hold", tick_interval=0.01)
    OneThenWait(tmp_path / "got", item="a") > node > sink
    sink.global_start(runner=runner)
    assert sink.items == [("a", "tick")]  # before the end: by a tick


def slices_after_an_item(inp: Any, outp: Any) -> None:
    next(iter(inp))
    for _ in inp.slices():
        pass


def test_reading_slices_after_an_item_is_refused(runner: str) -> None:
    node = nanostream.as_node(slices_after_an_item, name="mixed")
    nanostream.from_iterable([1, 2, 3]) > node
    with pytest.raises(nanostream.NodeFailed) as info:
        node.global_start(runner=runner)
    assert isinstance(info.value.__cause__, nanostream.NodeProtocolError)
    assert "either item by item or by slices" in str(info.value.__cause__)


def half_slices(inp: Any, outp: Any) -> None:
    for part in inp.slices():
        next(iter(part), None)  # the first item only


def test_a_slice_not_read_to_its_end_fails_the_node(runner: str) -> None:
    node = nanostream.as_node(half_slices, name="half")
    nanostream.from_iterable(range(100)) > node
    with pytest.raises(nanostream.NodeFailed) as info:
        node.global_start(runner=runner)
    assert isinstance(info.value.__cause__, nanostream.NodeProtocolError)
    assert "before reading this one to its end" in str(info.value.__cause__)
