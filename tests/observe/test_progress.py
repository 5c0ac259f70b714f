"""The progress view: live table in a (pseudo-)terminal, plain lines otherwise, summary."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.observe import (
    LiveProgress,
    NodeView,
    PlainProgress,
    RunSummary,
    Sample,
    attach,
    make_display,
)
from nanostream.testing import Collect

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Gate:
    """A gate made of a file, so that it also works across processes (the ray runner)."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "gate")

    def open(self) -> None:
        Path(self.path).touch()

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait (blocking the thread) until the gate is open; False after ``timeout``."""
        deadline, pause = time.monotonic() + timeout, threading.Event()
        while not os.path.exists(self.path):
            if time.monotonic() > deadline:
                return False
            pause.wait(0.005)
        return True


class HoldAfter(nanostream.NanoNode):
    """A sink that waits for ``gate`` once it has received ``n`` items.

    Blocking in a node holds the whole graph under the cooperative runner, so the run is
    kept alive at a known point: everything sent, the sink inside its last item.
    """

    def __init__(self, n: int, gate: Gate, name: str = "sink") -> None:
        super().__init__(name=name)
        self.n = n
        self.gate = gate
        self.items: list[Any] = []

    def process_item(self, item: Any) -> Iterator[Any]:
        self.items.append(item)
        if len(self.items) == self.n:
            self.gate.wait()
        yield from ()


class Recorder:
    """A display that keeps every sample and sets ``hit`` when ``until(sample)`` holds."""

    def __init__(self, until: Callable[[Sample], bool]) -> None:
        self.until = until
        self.samples: list[Sample] = []
        self.summary: RunSummary | None = None
        self.hit = threading.Event()
        self.first_hit: Sample | None = None

    def update(self, sample: Sample) -> None:
        self.samples.append(sample)
        if not self.hit.is_set() and self.until(sample):
            self.first_hit = sample
            self.hit.set()

    def finish(self, summary: RunSummary) -> None:
        self.summary = summary


class WatchedStream(io.StringIO):
    """A text stream that sets ``hit`` once ``pattern`` has been written."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)
        self.hit = threading.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.pattern.search(ANSI.sub("", self.getvalue())):
            self.hit.set()
        return n


def node_view(name: str, **kw: Any) -> NodeView:
    base: dict[str, Any] = {
        "name": name,
        "state": "running",
        "is_source": False,
        "items_in": 0,
        "items_out": 0,
        "errors": 0,
        "queue_depth": 0,
        "queue_capacity": 100,
        "rate": 0.0,
        "wait_input": 0.0,
        "wait_output": 0.0,
        "bottleneck": False,
    }
    base.update(kw)
    return NodeView(**base)


# ----------------------------------------------------------------- plain output
def test_plain_lines_during_a_live_run_then_the_summary(runner: str, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    sink = HoldAfter(7, gate)
    nanostream.from_iterable(range(7), name="src") > sink
    run = sink.global_start(block=False, runner=runner, name="plain")
    assert run is not None
    out = WatchedStream(r"sink running in=7 out=0")
    observer = attach(run, progress=True, stream=out, interval=0.02, plain_interval=0.02)
    try:
        assert out.hit.wait(10), out.getvalue()
    finally:
        gate.open()
    assert run.wait(10)
    text = out.getvalue()
    assert "\x1b[" not in text  # no terminal codes in plain output
    line = next(x for x in text.splitlines() if "sink running in=7" in x)
    assert "src finished in=0 out=7" in text
    assert line.startswith("nanostream [plain ")
    assert "queue=0/8,192" in line and "errors=0" in line
    summary = text[text.index("nanostream: pipeline 'plain'") :].splitlines()
    assert re.fullmatch(r"nanostream: pipeline 'plain' finished in \d+\.\ds, 0 errors", summary[0])
    assert summary[1].split()[:5] == ["src", "finished", "in=0", "out=7", "errors=0"]
    assert summary[2].split()[:5] == ["sink", "finished", "in=7", "out=0", "errors=0"]
    assert observer.summary is not None and observer.summary.state == "finished"


def test_plain_lines_come_once_per_interval() -> None:
    out = io.StringIO()
    view = PlainProgress("p", stream=out, interval=10.0)
    nodes = (node_view("a"), node_view("b", bottleneck=True))
    for t in (0.5, 9.9, 10.0, 15.0, 19.99, 31.0):
        view.update(Sample(elapsed=t, nodes=nodes))
    stamps = [line.split()[2] for line in out.getvalue().splitlines()]
    assert stamps == ["10.0s]", "10.0s]", "31.0s]", "31.0s]"]
    assert out.getvalue().splitlines()[1].endswith("<- bottleneck")


def test_the_summary_names_a_failure() -> None:
    def boom(inp: Any, outp: Any) -> None:
        for x in inp:
            raise ValueError(f"bad {x}")

    src = nanostream.from_iterable([1], name="src")
    _ = src > boom
    run = src.global_start(block=False, name="failing")
    assert run is not None
    out = io.StringIO()
    attach(run, progress=True, stream=out)
    with pytest.raises(nanostream.NodeFailed):
        run.wait(10)
    text = out.getvalue()
    assert "nanostream: pipeline 'failing' failed in" in text and "1 error" in text
    assert "boom  failed" in text
    assert "failure: node 'boom' failed: ValueError: bad 1" in text


# ----------------------------------------------------------------- rich, forced terminal
def test_live_table_marks_the_bottleneck(runner: str, tmp_path: Path) -> None:
    release = Gate(tmp_path)

    class Stuck(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            release.wait()
            yield item

    # on ray each batch of 8 is a remote call: 2,000 items (the view is steady after 100)
    n = 2_000 if runner == "ray" else 10_000
    sink = Collect(name="sink")
    src = nanostream.from_iterable(range(n), name="src")
    src > Stuck(name="stuck") > sink
    run = src.global_start(block=False, runner=runner, name="live", queue_size=64, batch_size=8)
    assert run is not None
    out = WatchedStream(r"◀ bottleneck: stuck")
    console = make_display("live", stream=out, force_terminal=True, width=100)
    assert isinstance(console, LiveProgress)

    def steady(sample: Sample) -> bool:
        views = {n.name: n for n in sample.nodes}
        return (
            views["stuck"].bottleneck
            and views["src"].wait_output == 1.0
            and views["sink"].wait_input == 1.0
        )

    recorder = Recorder(steady)

    class Both:
        def update(self, sample: Sample) -> None:
            console.update(sample)
            recorder.update(sample)

        def finish(self, summary: RunSummary) -> None:
            console.finish(summary)
            recorder.finish(summary)

    attach(run, progress=Both(), interval=0.02, window=0.2)
    try:
        assert recorder.hit.wait(10)
        assert out.hit.wait(10)
    finally:
        release.open()
    assert run.wait(10)
    text = out.getvalue()
    assert "\x1b[" in text  # a terminal: cursor movements and colours
    plain = ANSI.sub("", text)
    assert "nanostream · live" in plain
    row = next(x for x in plain.splitlines() if x.lstrip().startswith("stuck ◀"))
    assert "running" in row
    # the stuck node's queue is full, the sink waits for input
    assert recorder.first_hit is not None
    views = {n.name: n for n in recorder.first_hit.nodes}
    assert views["stuck"].bottleneck and views["stuck"].queue_fill > 0.5
    assert views["sink"].busy == 0.0 and not views["sink"].bottleneck
    # the source is held by back-pressure: recognised through the run's plan
    assert views["src"].busy == 0.0 and not views["src"].bottleneck
    # the live table is replaced by the summary at the end
    assert "nanostream · pipeline 'live' finished in" in plain
    assert sink.items == list(range(n))


def test_live_progress_renders_figures() -> None:
    out = io.StringIO()
    view = make_display("demo", stream=out, force_terminal=True, width=100)
    nodes = (
        node_view("numbers", is_source=True, items_out=1_234_567, rate=120_000.0, wait_output=0.95),
        node_view("parse", items_in=10, queue_depth=50, rate=5.0, bottleneck=True),
        node_view("comp.write", state="failed", errors=3, wait_input=1.0),
    )
    view.update(Sample(elapsed=1.5, nodes=nodes))
    view.finish(RunSummary("demo", "failed", 2.0, (), failure="node 'comp.write' failed"))
    plain = ANSI.sub("", out.getvalue())
    assert "nanostream · demo · 1.5s" in plain
    rows = {line.split()[0]: line for line in plain.splitlines() if line.strip()}
    assert rows["numbers"].split()[1:6] == ["running", "0", "1.2M", "120k", "0"]
    assert "(source)" in rows["numbers"] and rows["numbers"].rstrip().endswith("0%/95%")
    assert "50%" in rows["parse"] and "◀" in rows["parse"]
    assert rows["comp.write"].split()[1] == "failed" and "100%/0%" in rows["comp.write"]
    assert "◀ bottleneck: parse (busy 100% of the time, input queue 50% full)" in plain
    assert "failure: node 'comp.write' failed" in plain


def test_make_display_picks_plain_output_for_files_and_dumb_terminals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(make_display("p", stream=io.StringIO()), PlainProgress)
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty:
        os.close(master)
        monkeypatch.setenv("TERM", "dumb")
        assert isinstance(make_display("p", stream=tty), PlainProgress)
        assert isinstance(make_display("p", stream=tty, force_terminal=False), PlainProgress)


def test_the_live_table_needs_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[observe\]"):
        make_display("p", stream=io.StringIO(), force_terminal=True)
    # plain output does not need it
    assert isinstance(make_display("p", stream=io.StringIO()), PlainProgress)


# ----------------------------------------------------------------- a real pseudo-terminal
def test_live_view_in_a_pseudo_terminal(
    monkeypatch: pytest.MonkeyPatch, runner: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    received: list[bytes] = []
    seen_table = threading.Event()

    def read() -> None:  # drain the terminal so writes never block
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            received.append(chunk)
            if b"sink" in b"".join(received) and b"wait in/out" in b"".join(received):
                seen_table.set()

    reader = threading.Thread(target=read, name="pty-reader")
    reader.start()
    tty = os.fdopen(slave, "w", encoding="utf-8")
    try:
        gate = Gate(tmp_path)
        sink = HoldAfter(5, gate)
        nanostream.from_iterable(range(5), name="src") > sink
        run = sink.global_start(block=False, runner=runner, name="tty")
        assert run is not None
        observer = attach(run, progress=True, stream=tty, interval=0.02)
        try:
            assert isinstance(observer.display, LiveProgress)
            assert seen_table.wait(10)
        finally:
            gate.open()
        assert run.wait(10)
    finally:
        tty.close()
        reader.join(10)
        os.close(master)
    text = b"".join(received).decode("utf-8", "replace")
    assert "\x1b[" in text
    plain = ANSI.sub("", text)
    assert "nanostream · tty" in plain
    assert "nanostream · pipeline 'tty' finished in" in plain
    summary = plain[plain.index("nanostream · pipeline 'tty' finished in") :]
    rows = [x.replace("│", " ").split() for x in summary.splitlines()]
    assert ["sink", "finished", "5", "0", "0"] in [r[:5] for r in rows], summary


# ----------------------------------------------------------------- lifecycle
def test_attach_to_a_finished_run_prints_the_summary_at_once() -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(3), name="src") > sink
    run = sink.global_start(block=False, name="done")
    assert run is not None and run.wait(10)
    out = io.StringIO()
    observer = attach(run, progress=True, stream=out)
    assert observer.summary is not None
    assert "nanostream: pipeline 'done' finished" in out.getvalue()
    observer.close()  # idempotent


def test_close_before_the_run_ends_stops_observing(runner: str, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    sink = HoldAfter(2, gate)
    nanostream.from_iterable(range(2), name="src") > sink
    run = sink.global_start(block=False, runner=runner, name="early")
    assert run is not None
    recorder = Recorder(lambda s: True)
    observer = attach(run, progress=recorder, interval=0.02)
    assert recorder.hit.wait(10)
    observer.close()
    assert recorder.summary is not None and recorder.summary.state == "running"
    assert not [t for t in threading.enumerate() if t.name.startswith("nanostream-observe")]
    gate.open()
    assert run.wait(10)
