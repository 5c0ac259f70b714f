"""Graceful drain on SIGTERM / SIGINT: nothing produced is lost; a second signal aborts."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import nanostream

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHILD = r'''
import sys
import time

import nanostream

N = 10_000_000  # long enough that a signal after "ready" comes mid-stream, also on a fast runner
runner, out_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
drain = float(sys.argv[4]) if len(sys.argv) > 4 else None


class Numbers(nanostream.NanoNode):
    def __init__(self):
        super().__init__(name="numbers")
        self.count = 0

    def generator(self):
        for i in range(N):
            self.count += 1
            yield i


class Double(nanostream.NanoNode):
    def process_item(self, item):
        yield item * 2


class Writer(nanostream.NanoNode):
    """Writes one line per item; says "ready" once it has written some."""

    def __init__(self, path):
        super().__init__(name="writer")
        self.path = path
        self.count = 0

    def setup(self):
        self.file = open(self.path, "w")

    def process_item(self, item):
        self.file.write(f"{item}\n")
        self.count += 1
        if self.count == 10_000:
            print("ready", flush=True)
        if mode == "slow" and self.count > 10_000:
            time.sleep(0.001)  # a long drain: the queues hold thousands of items
        yield from ()

    def cleanup(self):
        self.file.close()


src, writer = Numbers(), Writer(out_path)
src > Double() > writer
outcome = "returned"
try:
    src.global_start(runner=runner, queue_size=20_000, batch_size=100, drain_timeout=drain)
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
print(f"{outcome} emitted={src.count} written={writer.count}", flush=True)
'''


def start_child(
    tmp_path: Path, runner: str, mode: str = "fast", *extra: str
) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = tmp_path / "out.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    if runner == "ray":  # join the session's Ray instance instead of starting one
        import ray

        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, str(script), runner, str(out), mode, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc, out


def read_line(stream: IO[str] | None, timeout: float = 60) -> str:
    """The next line of ``stream``, or '' after ``timeout`` seconds."""
    assert stream is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()))
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_at_a_random_moment_loses_nothing(
    tmp_path: Path, runner: str, signum: signal.Signals
) -> None:
    proc, out = start_child(tmp_path, runner)
    try:
        # (on ray the writer prints in an actor: Ray prefixes the line with its name)
        assert read_line(proc.stdout).strip().endswith("ready")
        threading.Event().wait(random.uniform(0, 0.05))  # the random moment
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    (last,) = [line for line in stdout.splitlines() if "emitted=" in line]
    outcome, emitted, written = last.split()
    assert outcome == ("returned" if signum == signal.SIGTERM else "KeyboardInterrupt")
    n_emitted = int(emitted.split("=")[1])
    assert written == f"written={n_emitted}"
    assert 10_000 <= n_emitted < 10_000_000  # the signal came mid-stream
    lines = out.read_text().splitlines()
    assert [int(x) for x in lines] == [2 * i for i in range(n_emitted)]
    assert f"{signum.name}: stopping pipeline" in stderr


def test_a_second_signal_aborts(tmp_path: Path) -> None:
    proc, _ = start_child(tmp_path, "threads", mode="slow")
    try:
        assert read_line(proc.stdout).strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert "SIGTERM: stopping pipeline" in read_line(proc.stderr)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM again: aborting" in stderr
    assert stdout == ""  # SystemExit(143): the script's last line did not run


def test_drain_timeout_bounds_a_signal_drain(tmp_path: Path) -> None:
    proc, _ = start_child(tmp_path, "threads", "slow", "0.5")
    try:
        assert read_line(proc.stdout).strip() == "ready"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - started < 15
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "did not drain within 0.5s: aborting" in stderr


def test_stop_timeout_bounds_the_drain(runner: str) -> None:
    class Slow(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            time.sleep(0.01)
            yield item

    sink = nanostream.testing.Collect(wait_for=1)
    nanostream.from_iterable(range(100_000)) > Slow() > sink
    run = sink.global_start(block=False, runner=runner, queue_size=5000, batch_size=50)
    assert run is not None and sink.seen.wait(10)
    started = time.monotonic()
    run.stop(timeout=0.5)
    assert time.monotonic() - started < 10
    assert run.state == "aborted" and len(sink.items) < 100_000


def test_handlers_are_put_back_and_other_threads_just_wait() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    run = nanostream.from_iterable(range(10)).global_start(block=False)
    assert run is not None
    assert run.wait_interruptibly() is None
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert run.exit_code() == 0 and run.interrupted_by is None

    results: list[int | None] = []
    run = nanostream.from_iterable(range(10)).global_start(block=False)
    assert run is not None
    waiter = threading.Thread(target=lambda: results.append(run.wait_interruptibly()))
    waiter.start()
    waiter.join(30)
    assert results == [None]


def test_exit_codes() -> None:
    run = nanostream.from_iterable(range(3)).global_start(block=False)
    assert run is not None and run.wait(10)
    run.interrupted_by = signal.SIGTERM
    assert run.exit_code() == 0
    assert run.exit_code(signal_codes=True) == 143
    run.interrupted_by = signal.SIGINT
    assert run.exit_code(signal_codes=True) == 130


def test_drain_timeout_is_a_run_option() -> None:
    with pytest.raises(nanostream.GraphError, match="drain_timeout"):
        nanostream.from_iterable([]).global_start(drain_timeout=0)
    assert nanostream.RunOptions(drain_timeout=5).drain_timeout == 5


SIGNAL_AT_START = r"""
import itertools
import logging
import os
import signal
import sys

import nanostream
from nanostream.runners import get_runner


class SignalledWhileStarting:
    '''The chosen runner, but the process gets SIGTERM while the run starts.'''

    def __init__(self, name):
        self.inner = get_runner(name)
        self.name = self.inner.name

    def start(self, plan):
        os.kill(os.getpid(), signal.SIGTERM)  # handled (or not) before start returns
        return self.inner.start(plan)


logging.basicConfig()
sink = nanostream.testing.Collect()
nanostream.from_iterable(itertools.count()) > sink  # ends only when it is stopped
sink.global_start(runner=SignalledWhileStarting(sys.argv[1]))
print("returned", flush=True)
"""


@pytest.mark.parametrize("runner_name", ["threads", "cooperative"])
def test_a_signal_while_the_run_starts_drains_it(runner_name: str) -> None:
    # global_start installs its handlers before the nodes start: a SIGTERM that comes
    # while they start drains the run (before, it killed the process outright).
    proc = subprocess.run(
        [sys.executable, "-c", SIGNAL_AT_START, runner_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout == "returned\n"
    assert "SIGTERM: stopping pipeline" in proc.stderr
