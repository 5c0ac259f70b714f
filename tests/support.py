"""Helpers that several test modules share (imported as ``support``: ``tests/`` is on the
path through its conftest). Ray workers receive this module by value, like the test
modules themselves (see ``conftest.send_by_value``)."""

from __future__ import annotations

import gc
import itertools
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import pytest

import nanostream
from nanostream.testing import Collect


def missing(reason: str) -> NoReturn:
    """Skip a test whose server or tool is not installed; fail it where the environment
    says everything is installed (``NANOSTREAM_REQUIRE_SERVICES=1``: CI's second pass, so
    those tests cannot skip there unseen)."""
    if os.environ.get("NANOSTREAM_REQUIRE_SERVICES") == "1":
        pytest.fail(f"NANOSTREAM_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def run_through(
    items: list[Any], *nodes: nanostream.NanoNode, runner: str = "threads"
) -> list[Any]:
    """Run ``items`` through ``nodes`` (linked in order) on ``runner``; what comes out."""
    sink = Collect()
    chain: Any = nanostream.from_iterable(items)
    for node in nodes:
        chain = chain > node
    chain > sink
    sink.global_start(runner=runner)
    return sink.items


def run_until_seen(sink: Collect, runner: str = "threads", timeout: float = 10.0) -> Any:
    """Start the pipeline of ``sink`` (a ``Collect(wait_for=n)``) without blocking, wait
    until the sink has its ``n`` items, then stop the run; returns the run (its ``state``
    and ``stats()`` say how it ended). For sources that go on until stopped, like pollers."""
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert sink.seen.wait(timeout), f"the sink has {len(sink.items)} items"
    finally:
        run.stop(timeout=timeout)
    return run


# On the ray runner nodes run in other processes: a test and its nodes signal each other
# with files, and read what nodes kept from the node objects (copied back when they end).
def wait_for_file(
    path: str | os.PathLike[str],
    pause: Callable[[float], bool] | None = None,
    timeout: float = 10.0,
) -> bool:
    """Wait until ``path`` exists (at most ``timeout`` s); ``pause(s)`` waits between looks.

    A ``pause`` that returns True (a ``NanoNode.sleep()`` whose run is stopping) ends the
    wait at once.
    """
    pause = pause or threading.Event().wait
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        if pause(0.005):
            return os.path.exists(path)
    return True


class FlagSink(Collect):
    """Collects, and creates the file ``flag`` when the first item arrives."""

    def __init__(self, flag: Path, **options: Any) -> None:
        super().__init__(**options)
        self.flag = str(flag)

    def process_item(self, item: Any) -> Iterator[Any]:
        Path(self.flag).touch()
        yield from super().process_item(item)


class TruncatingSink(Collect):
    """Collects, and truncates the file ``path`` to ``keep`` bytes when the first item
    arrives: the file a reader upstream is still reading gets shorter under it.

    Its input queue holds one item, so the reader cannot get far ahead of it.
    """

    def __init__(self, path: Path, keep: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.configure(queue_size=1)
        self.path = str(path)
        self.keep = keep
        self.truncated = False

    def process_item(self, item: Any) -> Iterator[Any]:
        if not self.truncated:
            self.truncated = True
            os.truncate(self.path, self.keep)
        yield from super().process_item(item)


class Counter(nanostream.NanoNode):
    """Counts 0, 1, 2, ... for ever; ``produced`` is how many it gave (it comes back on ray)."""

    def __init__(self) -> None:
        super().__init__()
        self.produced = 0

    def generator(self) -> Iterator[int]:
        for i in itertools.count():
            self.produced = i + 1
            yield i


class OneThenWait(nanostream.NanoNode):
    """Emits one item, then waits (at most ``timeout`` s) for the file ``flag``, which a
    downstream creates when its answer arrives; ``answered`` says whether it came."""

    def __init__(self, flag: Path, item: Any = 1, timeout: float = 10.0) -> None:
        super().__init__()
        self.flag = str(flag)
        self.item = item
        self.timeout = timeout
        self.answered = False

    def generator(self) -> Iterator[Any]:
        yield self.item
        self.answered = wait_for_file(self.flag, self.sleep, timeout=self.timeout)


class OneAckedThenWait(OneThenWait):
    """Like :class:`OneThenWait`, but the item is ``Acked``: the flag is its acknowledgement."""

    def generator(self) -> Iterator[Any]:
        flag = self.flag
        yield nanostream.Acked(self.item, lambda: Path(flag).touch())
        self.answered = wait_for_file(flag, self.sleep, timeout=self.timeout)


class TrickleRows(nanostream.NanoNode):
    """Acked rows ``{"id": i}``: ``first`` at once, then, with ``every``, one each ``every``
    seconds, else none, until the run stops; the acknowledgement of row ``first - 1`` sets
    ``acked`` (a buffering sink's flush interval is what commits them)."""

    def __init__(self, first: int, every: float | None = None) -> None:
        super().__init__(name="src", batch_size=1)
        self.first, self.every = first, every
        self.acked = threading.Event()

    def generator(self) -> Iterator[Any]:
        for i in itertools.count():
            ack = self.acked.set if i == self.first - 1 else (lambda: None)
            yield nanostream.Acked({"id": i}, ack)
            if i + 1 >= self.first:
                if self.every is None:
                    while not self.sleep(0.01):  # quiet, until the run stops
                        pass
                    return
                if self.sleep(self.every):
                    return


class OTLPCollector:
    """A stand-in OTLP/HTTP collector on 127.0.0.1: keeps the bodies posted to each path."""

    def __init__(self) -> None:
        received: dict[str, list[bytes]] = {}
        self.received = received
        self.got = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def span_names(self) -> list[str]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        names = []
        for body in self.received.get("/v1/traces", []):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    names.extend(span.name for span in scope.spans)
        return names

    def service_names(self) -> set[str]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        found = set()
        for body in self.received.get("/v1/traces", []):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for attribute in resource.resource.attributes:
                    if attribute.key == "service.name":
                        found.add(attribute.value.string_value)
        return found


# ----------------------------------------------------------------------------- kill -9
# The kill tests (tests/core/test_exactly_once_restart.py, tests/nodes/test_exactly_once_
# sources.py) run a pipeline in a child process, kill it with SIGKILL at random moments,
# restart it from its state store each time, and compare its final table with that of an
# uninterrupted run.

#: The Python code every kill test's child starts with: a node that stops the run at the
#: row whose key is 'end', and remembers it (a restart after it stops too).
STOPPER = r"""
import os
import sys
import nanostream

# the rate of the "pace" node: slow enough for the kills to land in (see KillChild)
RATE = float(os.environ.get("KILL_TEST_RATE", "8000"))
# checkpoint_unaligned: "1" True, "0" False, unset None (the default; see KillChild.checkpoints)
UNALIGNED = {"1": True, "0": False}.get(os.environ.get("CHECKPOINT_UNALIGNED", ""))


class Stopper(nanostream.NanoNode):
    def setup(self):
        self.ended = False

    def process_item(self, row):
        if row["key"] == "end" and not self.ended:
            self.ended = True
            self.request_stop()
        yield row

    def snapshot_state(self):
        return self.ended

    def restore_state(self, state):
        self.ended = state
        if state:
            self.request_stop()
"""

FILES = 60
ROWS = 400
PACE = 8000  # items a second through a kill test's "pace" node while it is being killed
KEYS = "abcd"

#: The watched-folder pipeline; argv: folder, state store (a path or URL), the sink's target
#: (a database URL; for kind "jsonl" a folder of JSON-lines parts) and, optionally, the kind.
WATCHED_CHILD = (
    STOPPER
    + r"""
from nanostream.nodes import (
    CSVReader, JSONLinesWriter, LocalDirectoryWatchdog, Map, Throttle, TumblingWindow,
)

folder, store, target = sys.argv[1:4]
kind = sys.argv[4] if len(sys.argv) > 4 else "sql"

# batch_size=1: the watchdog hands on each path at once (a source's barrier goes out after
# the batch it is filling; with the run's batch_size of 100 all 61 paths of the first poll
# would travel as one batch, and the first checkpoint would come only at the end).
watch = LocalDirectoryWatchdog(
    folder, "*.csv", polling=True, poll_interval=0.05, settle=0, batch_size=1
)
# A short queue of paths: the watchdog stays a file or two ahead, so checkpoints come
# every few files (a barrier waits behind what is queued before it).
rows = CSVReader(paths=True, types={"t": float}, name="rows", queue_size=2, batch_size=1)
counts = TumblingWindow(
    20, timestamp=lambda r: r["t"], key=lambda r: r["key"],
    reduce=lambda n, r: n + 1, initial=0, name="counts",
)
out = Map(lambda w: {"key": w.key, "start": w.start, "n": w.value}, name="as_row")
if kind == "sql":
    from nanostream.nodes.sql import SQLSink

    sink = SQLSink(target, "counts", create=True, exactly_once=True, name="sink")
else:  # a folder of JSON-lines parts, one per checkpoint
    sink = JSONLinesWriter(f"{target}/part-{{part:05d}}.jsonl", exactly_once=True, name="sink")
pace = Throttle(RATE, name="pace")  # about 3 s of work, for the kills to land in
watch > rows > pace > Stopper(name="stopper") > counts > out > sink
run = watch.global_start(
    block=False, state=store, checkpoint_interval=0.05, queue_size=1000, batch_size=100,
    checkpoint_unaligned=UNALIGNED,
)
print("started", flush=True)
run.wait_interruptibly()
"""
)


def write_csv_files(folder: Path) -> None:
    """``FILES`` CSV files of ``ROWS`` rows (key, t) and a last one with the 'end' row."""
    folder.mkdir()
    for f in range(FILES):
        lines = ["key,t"] + [f"{KEYS[r % len(KEYS)]},{f * 5 + r * 5 / ROWS}" for r in range(ROWS)]
        (folder / f"part-{f:05d}.csv").write_text("\n".join(lines) + "\n")
    (folder / "part-99999.csv").write_text(f"key,t\nend,{FILES * 5}\n")


#: what a kill test's zygote imports for a child with a ``SQLSink`` into SQLite
SQLITE_PRELOAD = ("nanostream.nodes.sql", "sqlalchemy.dialects.sqlite")
KILL_WAIT = 60  # seconds any one run of a kill test may take before the test fails


def read_line(stream: Any, timeout: float = KILL_WAIT) -> str:
    """The next line of a child's output, or "" after ``timeout`` seconds."""
    assert stream is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def wait_until(condition: Callable[[], bool], timeout: float = KILL_WAIT) -> bool:
    """Poll ``condition`` (a child process gives no event to wait on) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.01)
    return True


# A kill test starts its child a dozen times; most of a start is importing nanostream and
# the connector's library. A preloaded interpreter (the "zygote") imports them once and
# forks a child for each start: the child is a process of its own (killed with SIGKILL,
# it leaves what a killed process leaves), it runs the script as ``python script args``
# would (as ``__main__``, exiting through the interpreter's usual shutdown), and it only
# skips the imports.
#
# Its protocol, a line each: the test writes ``[argv, env, stderr path]`` as JSON to its
# stdin; the child says ``ZYGOTE pid N`` first, then prints what the script prints; once it
# has ended the zygote says ``ZYGOTE exit CODE`` (-9: SIGKILL) and keeps it unreaped (a
# zombie: its pid is not reused while the test may still signal it) until the next start.
ZYGOTE = r"""
import importlib, json, os, runpy, sys, threading

for name in sys.argv[1:]:
    importlib.import_module(name)
if threading.active_count() != 1:  # a fork would copy a process with threads
    sys.exit(f"importing {sys.argv[1:]} started threads: {threading.enumerate()}")
print("ZYGOTE ready", flush=True)


def serve():
    # Forks a child per command; returns the command in the child, None at the end.
    last = None
    for line in sys.stdin:
        if last is not None:
            os.waitpid(last, 0)
        argv, env, err = json.loads(line)
        last = os.fork()
        if last == 0:
            return argv, env, err
        ended = os.waitid(os.P_PID, last, os.WEXITED | os.WNOWAIT)
        killed = ended.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
        print(f"ZYGOTE exit {-ended.si_status if killed else ended.si_status}", flush=True)
    if last is not None:
        os.waitpid(last, 0)
    return None


command = serve()
if command is not None:
    argv, env, err = command
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.stdin = open(os.devnull)
    os.environ.update(env)
    print(f"ZYGOTE pid {os.getpid()}", flush=True)
    sys.argv = argv
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    del serve, command, argv, env, err
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


class Forked:
    """One child of a :class:`Zygote`: what a test needs of a ``subprocess.Popen``."""

    def __init__(self, pid: int, stderr: Path) -> None:
        self.pid = pid
        self.stderr = stderr
        self.returncode: int | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.ended = threading.Event()

    def readline(self, timeout: float = KILL_WAIT) -> str:
        """Its next line of output ("" once it has ended, or after ``timeout`` s)."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return ""

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if not self.ended.is_set():  # once ended, a zombie: its pid is still its own
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float = KILL_WAIT) -> tuple[str, str]:
        """Wait until it has ended; its remaining output and its stderr."""
        if not self.ended.wait(timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout)
        out = []
        while not self.lines.empty():
            out.append(self.lines.get())
        return "".join(out), self.stderr.read_text()


class Zygote:
    """An interpreter that has imported ``preload`` and forks a :class:`Forked` per start."""

    def __init__(self, folder: Path, preload: tuple[str, ...], env: dict[str, str]) -> None:
        self.folder = folder
        with open(folder / "zygote.stderr", "w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", ZYGOTE, *preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.child: Forked | None = None
        self.pids: queue.Queue[int] = queue.Queue()
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, name="zygote reader")
        self.reader.start()
        if not self.ready.wait(KILL_WAIT):
            self.close()
            pytest.fail(f"the zygote did not start:\n{(folder / 'zygote.stderr').read_text()}")

    def _read(self) -> None:
        for line in self.stdout:
            if line == "ZYGOTE ready\n":
                self.ready.set()
            elif line.startswith("ZYGOTE pid "):
                self.pids.put(int(line.split()[2]))
            elif line.startswith("ZYGOTE exit ") and self.child is not None:
                self.child.returncode = int(line.split()[2])
                self.child.ended.set()
                self.child.lines.put("")
            elif self.child is not None:
                self.child.lines.put(line)

    def fork(self, argv: list[str], env: dict[str, str]) -> Forked:
        """Start ``python *argv`` (with ``env`` added to the environment) as a child."""
        assert self.child is None or self.child.ended.is_set(), "one child at a time"
        stderr = self.folder / "child.stderr"
        stderr.write_text("")
        child = self.child = Forked(-1, stderr)
        self.stdin.write(json.dumps([argv, env, str(stderr)]) + "\n")
        self.stdin.flush()
        try:
            child.pid = self.pids.get(timeout=KILL_WAIT)
        except queue.Empty:
            pytest.fail(f"the zygote forked no child:\n{stderr.read_text()}")
        return child

    def close(self) -> None:
        """End the zygote (the test has ended its children)."""
        if self.child is not None:
            self.child.kill()
        self.stdin.close()
        self.proc.wait(KILL_WAIT)
        self.reader.join()
        self.stdout.close()


class KillChild:
    """A kill test's child: ``script`` run with ``args``, printing "started" once running.

    Each start forks a preloaded interpreter (:class:`Zygote`, made at the first start,
    ended by :meth:`close`); ``preload`` names the modules it imports. Runs before and
    after the kills (:meth:`finish`) go at full speed: the children read ``KILL_TEST_RATE``,
    the rate of their ``pace`` node, which only gives the kills time to land in.
    """

    def __init__(self, script: Path, *args: str, preload: tuple[str, ...] = ()) -> None:
        self.argv = [str(script), *args]
        self.folder = script.parent
        self.preload = ("nanostream", "nanostream.nodes", *preload)
        self.zygote: Zygote | None = None
        self.env: dict[str, str] = {}  # added to each child's environment

    def checkpoints(self, kind: str) -> KillChild:
        """Make its runs take ``kind`` checkpoints, "aligned" or "unaligned" (a child made
        from ``STOPPER`` reads them as ``UNALIGNED``); returns it."""
        self.env["CHECKPOINT_UNALIGNED"] = {"aligned": "0", "unaligned": "1"}[kind]
        return self

    def start(self, *args: str, paced: bool = True) -> Forked:
        """Start it (with ``args`` after the common ones); once it says it started."""
        if self.zygote is None:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
            self.zygote = Zygote(self.folder, self.preload, env)
        rate = PACE if paced else 1e9
        proc = self.zygote.fork([*self.argv, *args], {**self.env, "KILL_TEST_RATE": str(rate)})
        before = ""  # lines printed before "started" (Ray prints its workers' warnings)
        while (line := proc.readline()).strip() != "started":
            if not line:
                proc.kill()
                _, stderr = proc.communicate()
                pytest.fail(f"the child did not start ({before!r}):\n{stderr}")
            before += line
        return proc

    def finish(self, *args: str) -> None:
        """Run it to its end (it stops itself), at full speed."""
        proc = self.start(*args, paced=False)
        try:
            _, stderr = proc.communicate()
        finally:
            proc.kill()
        assert proc.returncode == 0, stderr

    def close(self) -> None:
        """End its zygote, if it made one."""
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None

    def kill_repeatedly(
        self,
        kills: int,
        committed: Callable[[], int],
        rows: Callable[[], int],
        *args: str,
        late: float = 0.15,
    ) -> tuple[int, list[int]]:
        """Start, kill with SIGKILL at a random moment once a new checkpoint is committed
        (``committed()``: the store's checkpoint number), ``kills`` times or until a run
        ends before its kill; then run it to its end. Returns the kills and the rows the
        table held (``rows()``) after each."""
        rng = random.Random()
        killed = 0
        finished = False
        rows_at_kills: list[int] = []
        while killed < kills and not finished:
            before = committed()
            proc = self.start(*args)
            advanced = partial(_advanced, committed, before, proc)
            assert wait_until(advanced)
            threading.Event().wait(rng.uniform(0.0, late))
            proc.send_signal(signal.SIGKILL)
            _, stderr = proc.communicate()
            if proc.returncode == 0:
                finished = True  # it ended before the kill: nothing left to interrupt
            else:
                assert proc.returncode == -signal.SIGKILL, stderr
                killed += 1
                rows_at_kills.append(rows())
        if not finished:
            self.finish(*args)
        return killed, rows_at_kills


def _advanced(committed: Callable[[], int], before: int, proc: Forked) -> bool:
    """A child committed a checkpoint after ``before``, or ended."""
    return committed() > before or proc.poll() is not None


# The connectors' options of retries after a lost connection (``reconnect_options`` in
# ``nanostream.connectors._toolkit``): wrong values, and what the refusal says of each.
RECONNECT_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"retries": -1}, "retries must be an integer >= 0, got -1"),
    ({"retries": True}, "retries must be an integer >= 0, got True"),
    ({"backoff": float("nan")}, "backoff must be a number >= 0 (seconds), got nan"),
    ({"max_backoff": -1.0}, "max_backoff must be a number >= 0 (seconds), got -1.0"),
    ({"backoff": 2.0, "max_backoff": 1.0}, "max_backoff (1.0) is below backoff (2.0)"),
]


def sqlite_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the SQLite file ``db``, sorted; none while it has no such table."""

    if not db.exists():
        return []
    try:
        with closing(sqlite3.connect(db, timeout=10)) as conn:
            return sorted(tuple(r) for r in conn.execute(sql))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


# ---- a crash and a restart: a source that resumes, a sink that keeps exactly once --------
class Numbers(nanostream.NanoNode):
    """Emits 1 for each of positions ``start+1 .. stop``; its position is its state."""

    def __init__(self, stop: int, *, name: str = "src", fail_at: int | None = None) -> None:
        super().__init__(name=name)
        self.stop = stop
        self.fail_at = fail_at

    def setup(self) -> None:
        self.position = 0

    def generator(self) -> Iterator[int]:
        while self.position < self.stop:
            if self.position == self.fail_at:
                raise RuntimeError("source broke")
            self.position += 1
            yield 1

    def snapshot_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


class Total(nanostream.NanoNode):
    """The running total of its input, emitted after each item."""

    def setup(self) -> None:
        self.total = 0

    def process_item(self, item: int) -> Iterator[int]:
        self.total += item
        yield self.total

    def snapshot_state(self) -> int:
        return self.total

    def restore_state(self, state: int) -> None:
        self.total = state


class Replay(nanostream.NanoNode):
    """Emits ``items`` from its stored position (a source that resumes from a checkpoint).

    With ``done``, it then waits until ``done`` is set, its barriers still going out."""

    def __init__(
        self, items: list[Any], done: threading.Event | None = None, name: str = "events"
    ) -> None:
        super().__init__(name=name)
        self.items = items
        self.done = done

    def setup(self) -> None:
        self.position = 0

    def generator(self) -> Iterator[Any]:
        while self.position < len(self.items):
            self.position += 1
            yield self.items[self.position - 1]
        while self.done is not None and not self.done.is_set():
            if self.sleep(0.002):
                return

    def snapshot_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


class Kept(nanostream.NanoNode):
    """A sink whose state is what it kept: exactly once into memory. It fails at its
    ``fail_at``-th item, and sets ``done`` then and once it has ``total`` items."""

    exactly_once = True

    def __init__(
        self,
        fail_at: int | None = None,
        done: threading.Event | None = None,
        total: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name="keep", **options)
        self.items: list[Any] = []
        self.fail_at, self.done, self.total = fail_at, done, total
        self.received = 0

    def process_item(self, item: Any) -> None:
        self.received += 1
        if self.received == self.fail_at:
            if self.done is not None:
                self.done.set()  # the source ends too
            raise RuntimeError("crash")
        self.items.append(item)
        if self.done is not None and self.total is not None and len(self.items) >= self.total:
            self.done.set()

    def snapshot_state(self) -> list[Any]:
        return self.items

    def restore_state(self, state: list[Any]) -> None:
        self.items = list(state)


def crash_and_restart(
    pipeline: Callable[[Kept], None],
    sink: Callable[..., Kept],
    fail_at: int,
    store: str,
    runner: str,
    between: Callable[[], None] = lambda: None,
    restart: dict[str, Any] | None = None,
    **options: Any,
) -> Kept:
    """Run a pipeline (``pipeline(sink)`` links its nodes into the sink ``sink(fail_at=)``
    makes) with the state store ``store`` and ``options``, failing in the sink at its
    ``fail_at``-th item; call ``between()``; run it again, from the store (with the
    options ``restart``), with a sink that does not fail. Returns that sink."""
    crashed = sink(fail_at=fail_at)
    pipeline(crashed)
    with pytest.raises(nanostream.NodeFailed, match="keep"):
        crashed.global_start(state=store, runner=runner, **options)
    between()
    restarted = sink()
    pipeline(restarted)
    restarted.global_start(state=store, runner=runner, **(restart or {}))
    return restarted


# ---- exactly-once writers: a source that resumes, a crash, a restart ---------------------
class Numbered(nanostream.NanoNode):
    """Emits ``{"n": 1}``, ``{"n": 2}``, ... up to ``stop``, from its stored position; fails
    (once) right after it has emitted ``fail_after`` items."""

    def __init__(self, stop: int, fail_after: int | None = None) -> None:
        super().__init__(name="numbers", batch_size=1)
        self.stop = stop
        self.fail_after = fail_after

    def setup(self) -> None:
        self.position = 0

    def generator(self) -> Any:
        while self.position < self.stop:
            if self.position == self.fail_after:
                raise RuntimeError("crash")
            self.position += 1
            yield {"n": self.position}

    def snapshot_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


def write_across_a_crash(
    writer: Callable[[], nanostream.NanoNode],
    store: str,
    runner: str,
    fail_after: int,
    between: Callable[[], None] = lambda: None,
) -> None:
    """Run ``Numbered(20) > writer()`` with a state store, failing its source after
    ``fail_after`` items; call ``between()``; then run it again to the end from the store."""
    for fail in (fail_after, None):
        sink = writer()
        Numbered(20, fail_after=fail) > sink
        if fail is None:
            sink.global_start(state=store, checkpoint_items=3, runner=runner)
            return
        with pytest.raises(nanostream.NodeFailed, match="numbers"):
            sink.global_start(state=store, checkpoint_items=3, runner=runner)
        between()


def send_by_value(ray: Any, module: Any) -> None:
    """Let Ray workers unpickle what ``module`` (a test module) and this module define."""
    ray.cloudpickle.register_pickle_by_value(module)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


RAY_START_ATTEMPTS = 2  # each failed one takes 30 s of the first Ray test's 120


def start_local_ray(ray: Any) -> None:
    """``ray.init`` for the tests, started again if Ray's own processes did not come up.

    Ray gives its raylet a fixed 30 s to register with its GCS, which a machine busy with
    other work can exceed ("The current node timed out during startup"); the processes of
    that attempt are ended before the next one. Any other error is raised at once.
    """
    import psutil

    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        with warnings.catch_warnings():
            # Ray's handles of a failed attempt's processes, ended below, say when they
            # are collected that the processes were still running.
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                return
            except Exception as exc:
                if "timed out during startup" not in str(exc) or attempt == RAY_START_ATTEMPTS:
                    raise
            ray.shutdown()
            left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
            for process in left:
                with suppress(psutil.NoSuchProcess):
                    process.kill()
            psutil.wait_procs(left, timeout=30)
            gc.collect()
