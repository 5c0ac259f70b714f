"""Exactly once through kill -9: watched CSV files -> keyed tumbling window -> a sink that
writes exactly once (``SQLSink`` into SQLite, ``JSONLinesWriter`` into a folder of parts).

A child process watches a folder of CSV files, counts rows per key in tumbling event-time
windows and writes the counts with ``exactly_once=True``, in a run with a state store and
frequent checkpoints. The test kills it with SIGKILL at random moments (``KILLS`` times),
restarting it each time from the store, then lets it finish: the output must equal, row
for row, that of an uninterrupted run (nothing lost, nothing written twice). The last file
holds an ``end`` row, on which the pipeline stops itself.

Each kill comes at a random moment once the child has committed a new checkpoint. About
30 s per sink (each kill restarts a Python process). ``NANOSTREAM_EO_KILLS`` changes the
number of kills.
"""

from __future__ import annotations

import collections
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from support import KillChild, sqlite_rows

pytest.importorskip("watchdog")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

FILES = 60
ROWS = 400
KEYS = "abcd"
KILLS = int(os.environ.get("NANOSTREAM_EO_KILLS", "10"))

CHILD = r"""
import sys
import nanostream
from nanostream.nodes import (
    CSVReader, JSONLinesWriter, LocalDirectoryWatchdog, Map, Throttle, TumblingWindow,
)

folder, store, target, kind = sys.argv[1:5]


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
if kind == "sql":
    from nanostream.nodes.sql import SQLSink

    sink = SQLSink(f"sqlite:///{target}", "counts", create=True, exactly_once=True, name="sink")
else:  # a folder of JSON lines parts, one per checkpoint
    sink = JSONLinesWriter(f"{target}/part-{{part:05d}}.jsonl", exactly_once=True, name="sink")
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


def table(db: Path) -> list[tuple[Any, ...]]:
    return sqlite_rows(db, "SELECT key, start, n FROM counts")


def parts(folder: Path) -> list[tuple[Any, ...]]:
    """The rows of every published part, sorted (a row twice is there twice)."""
    if not folder.exists():
        return []
    rows = []
    for part in folder.glob("part-*.jsonl"):
        for line in part.read_text().splitlines():
            row = json.loads(line)
            rows.append((row["key"], row["start"], row["n"]))
    return sorted(rows)


def kill_and_restart(tmp_path: Path, kind: str) -> tuple[list[tuple[Any, ...]], Path]:
    """Run the child uninterrupted, then killed ``KILLS`` times and restarted; returns the
    uninterrupted run's rows and the output of the killed one (checked by the caller)."""
    folder = tmp_path / "in"
    write_files(folder)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = KillChild(script)
    read = table if kind == "sql" else parts
    name = "out.sqlite" if kind == "sql" else "out"

    child.finish(child.start(folder, tmp_path / "plain.state", tmp_path / f"plain-{name}", kind))
    expected = read(tmp_path / f"plain-{name}")
    assert sum(n for key, _, n in expected if key != "end") == FILES * ROWS

    store, out = tmp_path / "run.state", tmp_path / name
    args = (folder, store, out, kind)
    killed, finished, rows_at_kills = child.kill_repeatedly(
        args, store, KILLS, lambda: len(read(out)), random.Random()
    )
    # kills came mid-stream, with counts already written and more to come
    assert any(0 < n < len(expected) for n in rows_at_kills), rows_at_kills
    assert killed >= min(KILLS, 3), "the runs ended before most kills"
    if not finished:
        child.finish(child.start(*args))
    assert read(out) == expected, collections.Counter(read(out)) - collections.Counter(expected)
    return expected, out


def test_kill_9_and_restart_writes_each_count_exactly_once(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    kill_and_restart(tmp_path, "sql")


def test_kill_9_and_restart_publishes_each_row_in_exactly_one_part(tmp_path: Path) -> None:
    _, out = kill_and_restart(tmp_path, "jsonl")
    # what is published is only parts; no hidden part of a checkpoint is left behind
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")) == []
