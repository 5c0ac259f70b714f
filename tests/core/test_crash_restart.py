"""Crash and restart: a folder of CSV files into SQLite, killed with SIGKILL and restarted.

A child process watches a folder (``LocalDirectoryWatchdog`` with a ledger) and writes every
row of every CSV file into SQLite (``SQLSink``) while the test adds the files. The test
kills it with SIGKILL at random moments (each once the child has written something new)
and restarts it. After each kill it checks the at-least-once invariant: every file the
ledger records has all its rows in the table, because a file is recorded only when its
acknowledgement comes, once the sink has committed its rows. Files with rows in the table
but not in the ledger were *in flight*: at least one kill must find some, and a restart
must deliver them again. At the end every row of every file is in the table: with
``mode="upsert"`` exactly once; with ``mode="insert"`` at least once, a file that was in
flight having its rows committed before the kill plus a whole second copy.

About 5 s per mode with 500 files of 20 rows. ``NANOSTREAM_CRASH_FILES`` and
``NANOSTREAM_CRASH_KILLS`` change the numbers of files and kills (say 5000 and 10 for a
longer run).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path

import pytest

import support

pytest.importorskip("watchdog")
pytest.importorskip("sqlalchemy")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

FILES = int(os.environ.get("NANOSTREAM_CRASH_FILES", "500"))
ROWS = 20
KILLS = int(os.environ.get("NANOSTREAM_CRASH_KILLS", "3"))
MAX_KILLS = KILLS + 5  # more kills while none has caught work in flight
WAIT = 60  # seconds any one step may take before the test fails

CHILD = r"""
import sys
import nanostream
from nanostream.nodes import CSVReader, LocalDirectoryWatchdog
from nanostream.nodes.sql import SQLSink

folder, ledger, db, mode = sys.argv[1:5]
watch = LocalDirectoryWatchdog(folder, "*.csv", settle=0.05, state=ledger)
rows = CSVReader(paths=True, types={"file": int, "row": int})
key = ["file", "row"] if mode == "upsert" else None
# Rows wait up to half a second to be committed, and a batch of 150 rows ends inside a
# file of 20: a kill finds files with some rows committed and the rest waiting.
sink = SQLSink(
    f"sqlite:///{db}", "rows", mode=mode, key=key, create=True, batch_size=150,
    flush_interval=0.5,
)
watch > rows > sink
run = watch.global_start(block=False)
print("started", flush=True)
run.wait_interruptibly()
"""


def count_rows(db: Path, distinct: bool = False) -> int:
    what = "(SELECT DISTINCT file, row FROM rows)" if distinct else "rows"
    found = support.sqlite_rows(db, f"SELECT COUNT(*) FROM {what}")
    return found[0][0] if found else 0


def rows_per_file(db: Path) -> dict[int, tuple[int, int]]:
    """For each file: (rows in the table, distinct rows)."""
    found = support.sqlite_rows(
        db, "SELECT file, COUNT(*), COUNT(DISTINCT row) FROM rows GROUP BY file"
    )
    return {f: (n, d) for f, n, d in found}


def ledger_files(ledger: Path) -> set[int]:
    """The files the ledger records as done."""
    if not ledger.exists():
        return set()
    with closing(sqlite3.connect(ledger, timeout=10)) as conn:
        paths = [p for (p,) in conn.execute("SELECT path FROM files WHERE emitted = 1")]
    return {int(Path(p).stem.split("-")[1]) for p in paths}


def progressed(db: Path, before: int) -> bool:
    return count_rows(db) > before


@pytest.mark.parametrize("mode", ["upsert", "insert"])
def test_kill_9_and_restart_loses_no_row(
    tmp_path: Path, mode: str, kill_child: Callable[..., support.KillChild]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    written = threading.Event()
    stop_writing = threading.Event()

    def write_files() -> None:  # files keep arriving while the children are killed
        for f in range(FILES):
            lines = ["file,row,value"] + [f"{f},{r},v{f}-{r}" for r in range(ROWS)]
            part = folder / f".part-{f:05d}.tmp"
            part.write_text("\n".join(lines) + "\n")
            part.rename(folder / f"part-{f:05d}.csv")
            # About 5 s of arrivals: long enough for several kills mid-stream.
            if stop_writing.wait(0.01):
                return
        written.set()

    writer = threading.Thread(target=write_files)
    writer.start()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ledger, db = tmp_path / "ledger.sqlite", tmp_path / "out.sqlite"
    # each start forks an interpreter that has imported nanostream and SQLAlchemy once
    child = kill_child(
        script, str(folder), str(ledger), str(db), mode, preload=support.SQLITE_PRELOAD
    )
    start = child.start
    rng = random.Random()

    kills: list[tuple[int, int]] = []  # (rows in the table, files in flight) at each kill
    in_flight: dict[int, int] = {}  # file -> its rows in the table when last seen in flight
    try:
        while len(kills) < KILLS or (not in_flight and len(kills) < MAX_KILLS):
            if count_rows(db, distinct=True) >= FILES * ROWS:
                break  # all was written already: nothing left to interrupt
            before = count_rows(db)
            proc = start()
            try:
                # a random moment once the child is at work: it has written something new
                assert support.wait_until(partial(progressed, db, before)), "no progress"
                threading.Event().wait(rng.uniform(0, 0.3))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=WAIT)
            assert proc.returncode == -signal.SIGKILL
            # post mortem: every file the ledger records has all its rows in the table
            done, per_file = ledger_files(ledger), rows_per_file(db)
            assert all(per_file.get(f, (0, 0))[1] == ROWS for f in done), "recorded too early"
            flying = {f: n for f, (n, _) in per_file.items() if f not in done}
            in_flight.update(flying)
            kills.append((count_rows(db, distinct=True), len(flying)))
    except BaseException:
        stop_writing.set()
        raise
    finally:
        writer.join()
    assert written.is_set()
    # a kill came mid-stream, with rows already in the table and files in flight
    assert any(0 < rows < FILES * ROWS and flying for rows, flying in kills), kills

    proc = start()
    try:  # the restart delivers the files in flight again, and the rest
        assert support.wait_until(lambda: len(ledger_files(ledger)) >= FILES), "not all recorded"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert count_rows(db, distinct=True) == FILES * ROWS  # every row of every file
    values = {v for (v,) in support.sqlite_rows(db, "SELECT value FROM rows")}
    assert values == {f"v{f}-{r}" for f in range(FILES) for r in range(ROWS)}
    assert ledger_files(ledger) == set(range(FILES))
    per_file = rows_per_file(db)
    if mode == "upsert":
        assert count_rows(db) == FILES * ROWS  # exactly once
    else:  # at least once: a file in flight was delivered again, whole
        for f, n in in_flight.items():
            assert per_file[f][0] >= n + ROWS, (f, n, per_file[f])
