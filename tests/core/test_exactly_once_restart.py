"""Exactly once through kill -9: watched CSV files -> keyed tumbling window -> SQLSink.

A child process watches a folder of CSV files, counts rows per key in tumbling event-time
windows and writes the counts into SQLite with ``SQLSink(exactly_once=True)``, in a run
with a state store and frequent checkpoints. The test kills it with SIGKILL at random
moments (``KILLS`` times), restarting it each time from the store, then lets it finish:
the table must equal, row for row, that of an uninterrupted run (nothing lost, nothing
written twice). The last file holds an ``end`` row, on which the pipeline stops itself.

Each kill comes at a random moment once the child has committed a new checkpoint. About
40 s (each kill restarts a Python process). ``NANOSTREAM_EO_KILLS`` changes the number of
kills.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import IO, Any

import pytest

pytest.importorskip("watchdog")
pytest.importorskip("sqlalchemy")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

FILES = 60
ROWS = 400
KEYS = "abcd"
KILLS = int(os.environ.get("NANOSTREAM_EO_KILLS", "10"))
WAIT = 60  # seconds any one run may take before the test fails

CHILD = r"""
import sys
import nanostream
from nanostream.nodes import CSVReader, LocalDirectoryWatchdog, Map, Throttle, TumblingWindow
from nanostream.nodes.sql import SQLSink

folder, store, db = sys.argv[1:4]


class Stopper(nanostream.NanoNode):
    # Stops the run at the 'end' row; remembers it, so a restart after it stops too.
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
sink = SQLSink(f"sqlite:///{db}", "counts", create=True, exactly_once=True, name="sink")
pace = Throttle(8000, name="pace")  # about 3 s of work, for the kills to land in
watch > rows > pace > Stopper(name="stopper") > counts > out > sink
run = watch.global_start(
    block=False, state=store, checkpoint_interval=0.05, queue_size=1000, batch_size=100
)
print("started", flush=True)
run.wait_interruptibly()
"""


def write_files(folder: Path) -> None:
    folder.mkdir()
    for f in range(FILES):
        lines = ["key,t"] + [f"{KEYS[r % len(KEYS)]},{f * 5 + r * 5 / ROWS}" for r in range(ROWS)]
        (folder / f"part-{f:05d}.csv").write_text("\n".join(lines) + "\n")
    (folder / "part-99999.csv").write_text(f"key,t\nend,{FILES * 5}\n")


def read_line(stream: IO[str] | None, timeout: float = WAIT) -> str:
    assert stream is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on ``db``; none while the table does not exist yet."""
    if not db.exists():
        return []
    try:
        with closing(sqlite3.connect(db, timeout=10)) as conn:
            return sorted(tuple(r) for r in conn.execute(sql))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


def table(db: Path) -> list[tuple[Any, ...]]:
    return query(db, "SELECT key, start, n FROM counts")


def committed(store: Path) -> int:
    """The number of the checkpoint the store holds (0: none yet)."""
    found = query(store, "SELECT epoch FROM nanostream_checkpoint")
    return found[0][0] if found else 0


def advanced(store: Path, before: int, proc: subprocess.Popen[str]) -> bool:
    """The child committed a checkpoint after ``before``, or ended."""
    return committed(store) > before or proc.poll() is not None


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``condition`` (a child process gives no event to wait on) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.01)
    return True


def test_kill_9_and_restart_writes_each_count_exactly_once(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_files(folder)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    def start(store: Path, db: Path) -> subprocess.Popen[str]:
        command = [sys.executable, str(script), str(folder), str(store), str(db)]
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert read_line(proc.stdout).strip() == "started", proc.stderr
        return proc

    def finish(proc: subprocess.Popen[str]) -> None:
        try:
            _, stderr = proc.communicate(timeout=WAIT)
        finally:
            proc.kill()
        assert proc.returncode == 0, stderr

    # the uninterrupted run
    finish(start(tmp_path / "plain.state", tmp_path / "plain.sqlite"))
    expected = table(tmp_path / "plain.sqlite")
    assert sum(n for key, _, n in expected if key != "end") == FILES * ROWS

    store, db = tmp_path / "run.state", tmp_path / "run.sqlite"
    rng = random.Random()
    killed = 0
    finished = False
    rows_at_kills: list[int] = []
    while killed < KILLS and not finished:
        before = committed(store)
        proc = start(store, db)
        # a random moment once the run is at work: it has committed a new checkpoint
        assert wait_until(partial(advanced, store, before, proc))
        threading.Event().wait(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=WAIT)
        if proc.returncode == 0:
            finished = True  # it ended before the kill: nothing left to interrupt
        else:
            assert proc.returncode == -signal.SIGKILL
            killed += 1
            rows_at_kills.append(len(table(db)))
    # kills came mid-stream, with counts already written and more to come
    assert any(0 < n < len(expected) for n in rows_at_kills), rows_at_kills
    assert killed >= min(KILLS, 3), "the runs ended before most kills"
    if not finished:
        finish(start(store, db))
    assert table(db) == expected
