"""Exactly once through kill -9: watched CSV files -> keyed tumbling window -> SQLSink.

A child process watches a folder of CSV files, counts rows per key in tumbling event-time
windows and writes the counts into SQLite with ``SQLSink(exactly_once=True)``, in a run
with a state store and frequent checkpoints. The test kills it with SIGKILL at random
moments (``KILLS`` times), restarting it each time from the store, then lets it finish:
the table must equal, row for row, that of an uninterrupted run (nothing lost, nothing
written twice). The last file holds an ``end`` row, on which the pipeline stops itself.

Each kill comes at a random moment once the child has committed a new checkpoint. About
40 s (each kill restarts a Python process). ``NANOSTREAM_EO_KILLS`` changes the number of
kills. The PostgreSQL variant (store and table in PostgreSQL) and the kill tests of the
other sources are in tests/nodes/test_exactly_once_sources.py; the helpers in support.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

import support

pytest.importorskip("watchdog")
pytest.importorskip("sqlalchemy")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

KILLS = int(os.environ.get("NANOSTREAM_EO_KILLS", "10"))


def table(db: Path) -> list[tuple[Any, ...]]:
    return support.sqlite_rows(db, "SELECT key, start, n FROM counts")


def committed(store: Path) -> int:
    """The number of the checkpoint the store holds (0: none yet)."""
    found = support.sqlite_rows(store, "SELECT epoch FROM nanostream_checkpoint")
    return found[0][0] if found else 0


def test_kill_9_and_restart_writes_each_count_exactly_once(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    support.write_csv_files(folder)
    script = tmp_path / "child.py"
    script.write_text(support.WATCHED_CHILD)
    child = support.KillChild(script, str(folder))

    # the uninterrupted run
    child.finish(str(tmp_path / "plain.state"), f"sqlite:///{tmp_path / 'plain.sqlite'}")
    expected = table(tmp_path / "plain.sqlite")
    assert sum(n for key, _, n in expected if key != "end") == support.FILES * support.ROWS

    store, db = tmp_path / "run.state", tmp_path / "run.sqlite"
    killed, rows_at_kills = child.kill_repeatedly(
        KILLS, lambda: committed(store), lambda: len(table(db)), str(store), f"sqlite:///{db}"
    )
    # kills came mid-stream, with counts already written and more to come
    assert any(0 < n < len(expected) for n in rows_at_kills), rows_at_kills
    assert killed >= min(KILLS, 3), "the runs ended before most kills"
    assert table(db) == expected
