"""Rows repeated after kill -9 without exactly_once: the watchdog's ledger vs checkpoints.

A child watches a folder of CSV files (``FILES`` files of ``ROWS`` rows, all there at the
start), reads them with ``CSVReader(paths=True)`` and writes every row into SQLite with an
at-least-once ``SQLSink``, paced at 5,000 rows/s. It is killed with SIGKILL ``KILLS``
times, each ``LOW``..``HIGH`` s after it started, restarted each time, then run to the
end; the duplicates in the table divided by the kills are the rows repeated per kill.

    python benchmarks/restart_repeats.py ledger checkpoints

``ledger``: the watchdog's own ledger (``state=``), no state store. ``checkpoints``: a
state store with checkpoints every ``INTERVAL`` s (default 0.5), and also every ``ITEMS``
paths when set (``checkpoint_items``), aligned when ``UNALIGNED=0`` and unaligned when
``UNALIGNED=1`` (``checkpoint_unaligned``; unset: the default, unaligned). ``BATCH`` is the watchdog's ``batch_size`` (default 1; with
100 it lists every file in one batch). Not part of run.py: it kills
processes and takes minutes; the figures are in docs/state.md.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import os, sys
import nanostream
from nanostream.nodes import CSVReader, LocalDirectoryWatchdog, Throttle
from nanostream.nodes.sql import SQLSink

folder, mode, state, db = sys.argv[1:5]
watch = LocalDirectoryWatchdog(
    folder, "*.csv", polling=True, poll_interval=0.05, settle=0,
    batch_size=int(os.environ.get("BATCH", "1")), state=state if mode == "ledger" else None,
)
options = {}
if mode != "ledger":
    options = {"state": state, "checkpoint_interval": float(os.environ.get("INTERVAL", "0.5"))}
    if os.environ.get("ITEMS"):
        options["checkpoint_items"] = int(os.environ["ITEMS"])
    if os.environ.get("UNALIGNED"):  # unset: the default (unaligned on the threads runner)
        options["checkpoint_unaligned"] = os.environ["UNALIGNED"] == "1"
rows = CSVReader(
    paths=True, types={"file": int, "row": int}, name="rows", queue_size=2, batch_size=1
)
sink = SQLSink(f"sqlite:///{db}", "rows", create=True, name="sink")
watch > rows > Throttle(5000, name="pace") > sink
run = watch.global_start(block=False, queue_size=1000, batch_size=100, **options)
print("started", flush=True)
run.wait_interruptibly()
"""
FILES = int(os.environ.get("FILES", "6"))
ROWS = int(os.environ.get("ROWS", "20000"))
KILLS = int(os.environ.get("KILLS", "5"))
LOW, HIGH = float(os.environ.get("LOW", "3")), float(os.environ.get("HIGH", "6"))


def count(db: Path) -> tuple[int, int]:
    """Rows in the table, and distinct rows."""
    with sqlite3.connect(db) as conn:
        try:
            sql = "SELECT COUNT(*), COUNT(DISTINCT file * 1000000 + row) FROM rows"
            total, distinct = conn.execute(sql).fetchone()
        except sqlite3.OperationalError:
            return 0, 0
    return int(total), int(distinct)


def measure(mode: str, rng: random.Random) -> tuple[int, int]:
    """The rows in the table after the kills and the last run, and distinct rows."""
    tmp = Path(tempfile.mkdtemp())
    folder = tmp / "in"
    folder.mkdir()
    for f in range(FILES):
        text = "file,row\n" + "".join(f"{f},{r}\n" for r in range(ROWS))
        (folder / f"p{f:04d}.csv").write_text(text)
    script = tmp / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    db, state = tmp / "out.sqlite", tmp / f"{mode}.state"
    command = [sys.executable, str(script), str(folder), mode, str(state), str(db)]
    for _ in range(KILLS):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        time.sleep(rng.uniform(LOW, HIGH))  # a random moment of a child process
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 300
    while count(db)[1] < FILES * ROWS and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # the last rows' commit
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    return count(db)


def main() -> None:
    rng = random.Random(1)
    for mode in sys.argv[1:] or ["ledger", "checkpoints"]:
        total, distinct = measure(mode, rng)
        print(
            f"{mode}: {KILLS} kills, {FILES} files x {ROWS} rows, {distinct} distinct, "
            f"{total} written: {(total - distinct) / KILLS:.0f} repeated per kill",
            flush=True,
        )


if __name__ == "__main__":
    main()
