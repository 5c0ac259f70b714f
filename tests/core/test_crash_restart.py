"""Crash and restart: a folder of CSV files into SQLite, killed with SIGKILL and restarted.

At the end every row of every file is in the table: with ``SQLSink(mode="upsert")`` each
exactly once, with ``mode="insert"`` at least once. This holds only when the watchdog
commits its ledger on acknowledgement (``Acked``) and the SQL sink releases its items
(``release_items()``) once it has committed them; see docs/reliability.md.
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
from pathlib import Path
from typing import IO

import pytest

pytest.importorskip("watchdog")
pytest.importorskip("sqlalchemy")

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.skipif(
        not os.environ.get("NANOSTREAM_CRASH_TEST"),
        reason="needs LocalDirectoryWatchdog to commit its ledger on acknowledgement (yield "
        "nanostream.Acked) and SQLSink to release_items() after each commit; set "
        "NANOSTREAM_CRASH_TEST=1 to run it (and drop this mark once they do)",
    ),
]

FILES, ROWS = 500, 20
KILLS = 3

CHILD = r"""
import sys
import nanostream
from nanostream.nodes import CSVReader, LocalDirectoryWatchdog
from nanostream.nodes.sql import SQLSink

folder, ledger, db, mode = sys.argv[1:5]
watch = LocalDirectoryWatchdog(folder, "*.csv", settle=0.05, state=ledger)
rows = CSVReader(paths=True, types={"file": int, "row": int})
key = ["file", "row"] if mode == "upsert" else None
sink = SQLSink(f"sqlite:///{db}", "rows", mode=mode, key=key, create=True, batch_size=50)
watch > rows > sink
run = watch.global_start(block=False)
print("started", flush=True)
run.wait_interruptibly()
"""


def read_line(stream: IO[str] | None, timeout: float = 60) -> str:
    assert stream is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def count_rows(db: Path, distinct: bool = False) -> int:
    if not db.exists():
        return 0
    what = (
        "COUNT(*) FROM (SELECT DISTINCT file, row FROM rows)" if distinct else "COUNT(*) FROM rows"
    )
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return int(conn.execute(f"SELECT {what}").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet, or locked for too long
        return 0


@pytest.mark.parametrize("mode", ["upsert", "insert"])
def test_kill_9_and_restart_loses_no_row(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()

    def write_files() -> None:  # files keep arriving while the children are killed
        for f in range(FILES):
            lines = ["file,row,value"] + [f"{f},{r},v{f}-{r}" for r in range(ROWS)]
            part = folder / f".part-{f:04d}.tmp"
            part.write_text("\n".join(lines) + "\n")
            part.rename(folder / f"part-{f:04d}.csv")
            if f % 10 == 9:
                threading.Event().wait(0.1)

    writer = threading.Thread(target=write_files)
    writer.start()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ledger, db = tmp_path / "ledger.sqlite", tmp_path / "out.sqlite"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    command = [sys.executable, str(script), str(folder), str(ledger), str(db), mode]
    rng = random.Random()

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert read_line(proc.stdout).strip() == "started"
        return proc

    at_kills = []
    try:
        for _ in range(KILLS):
            proc = start()
            try:
                threading.Event().wait(rng.uniform(0.2, 0.8))  # a random moment
            finally:
                at_kills.append(count_rows(db, distinct=True))
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=30)
    finally:
        writer.join()
    assert min(at_kills) < FILES * ROWS  # the kills came mid-stream
    proc = start()
    try:
        deadline = time.monotonic() + 60
        while count_rows(db, distinct=True) < FILES * ROWS and time.monotonic() < deadline:
            threading.Event().wait(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert count_rows(db, distinct=True) == FILES * ROWS
    if mode == "upsert":
        assert count_rows(db) == FILES * ROWS
    with sqlite3.connect(db) as conn:
        values = {v for (v,) in conn.execute("SELECT value FROM rows")}
    assert values == {f"v{f}-{r}" for f in range(FILES) for r in range(ROWS)}
