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
from nanostream._engine.channel import Channel
from nanostream._engine.node import EngineContext
from nanostream._engine.outbox import CheckedOutbox, TripwireOutbox
from nanostream._engine.reader import InputReader
from nanostream.runners.cooperative import CooperativeRun
from nanostream.runners.threads import ThreadRun

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
