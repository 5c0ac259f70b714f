"""Exactly once through kill -9: watched CSV files -> keyed tumbling window -> a sink that
writes exactly once (``SQLSink`` into SQLite, ``JSONLinesWriter`` into a folder of parts).

A child process watches a folder of CSV files, counts rows per key in tumbling event-time
windows and writes the counts with ``exactly_once=True``, in a run with a state store and
frequent checkpoints. The test kills it with SIGKILL at random
moments (``KILLS`` times), restarting it each time from the store, then lets it finish:
the output must equal, row for row, that of an uninterrupted run (nothing lost, nothing
written twice). The last file holds an ``end`` row, on which the pipeline stops itself.

Each kill comes at a random moment once the child has committed a new checkpoint. Each
test runs with aligned and with unaligned checkpoints (items in flight at a checkpoint are
read again, before new input, after a restart: they belong to the sink's next checkpoint,
so none is written twice or lost). About 5 s on a quiet machine: each start forks an
interpreter that has imported nanostream already (``support.Zygote``).
``NANOSTREAM_EO_KILLS`` changes the number of kills. The PostgreSQL variant (store and
table in PostgreSQL) and the kill tests of the other sources are in
tests/nodes/test_exactly_once_sources.py; the helpers in support.py.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import support
from nanostream._engine.checkpoint import InFlight
from nanostream.state import open_store

pytest.importorskip("watchdog")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

KILLS = int(os.environ.get("NANOSTREAM_EO_KILLS", "10"))
#: every kill test runs with each kind of checkpoint (unaligned: the default)
CHECKPOINTS = ["aligned", "unaligned"]
#: what the child's interpreter imports before it forks a child per start
PRELOAD = {"sql": support.SQLITE_PRELOAD, "jsonl": ()}


def table(db: Path) -> list[tuple[Any, ...]]:
    return support.sqlite_rows(db, "SELECT key, start, n FROM counts")


def committed(store: Path) -> int:
    """The number of the checkpoint the store holds (0: none yet)."""
    found = support.sqlite_rows(store, "SELECT epoch FROM nanostream_checkpoint")
    return found[0][0] if found else 0


def items_in_flight(store: Path) -> int:
    """How many items in flight the checkpoint in ``store`` holds."""
    with closing(open_store(store)) as opened:
        checkpoint = opened.load()
    if checkpoint is None:
        return 0
    states = [state for _kind, state in checkpoint.states.values()]
    return sum(len(state.items) for state in states if isinstance(state, InFlight))


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


def kill_and_restart(
    tmp_path: Path, kind: str, kill_child: Callable[..., Any], checkpoints: str
) -> Path:
    """Run the child uninterrupted, then killed ``KILLS`` times and restarted, with
    ``checkpoints`` ("aligned" or "unaligned"), and check that the killed run's output
    equals the uninterrupted one's; returns that output."""
    folder = tmp_path / "in"
    support.write_csv_files(folder)
    script = tmp_path / "child.py"
    script.write_text(support.WATCHED_CHILD)
    child = kill_child(script, str(folder), preload=PRELOAD[kind]).checkpoints(checkpoints)
    if kind == "sql":
        read, plain, out = table, tmp_path / "plain.sqlite", tmp_path / "run.sqlite"
        target = "sqlite:///{}"
    else:
        read, plain, out = parts, tmp_path / "plain-out", tmp_path / "out"
        target = "{}"

    # the uninterrupted run
    child.finish(str(tmp_path / "plain.state"), target.format(plain), kind)
    expected = read(plain)
    assert sum(n for key, _, n in expected if key != "end") == support.FILES * support.ROWS

    store = tmp_path / "run.state"
    in_flight: list[int] = []  # items in flight in the checkpoint each kill left

    def after_kill() -> int:
        in_flight.append(items_in_flight(store))
        return len(read(out))

    killed, rows_at_kills = child.kill_repeatedly(
        KILLS, lambda: committed(store), after_kill, str(store), target.format(out), kind
    )
    # kills came mid-stream, with counts already written and more to come
    assert any(0 < n < len(expected) for n in rows_at_kills), rows_at_kills
    assert killed >= min(KILLS, 3), "the runs ended before most kills"
    # unaligned: restarts replayed items in flight (aligned checkpoints hold none)
    assert (sum(in_flight) > 0) == (checkpoints == "unaligned"), in_flight
    got = read(out)
    assert got == expected, collections.Counter(got) - collections.Counter(expected)
    return out


@pytest.mark.parametrize("checkpoints", CHECKPOINTS)
def test_kill_9_and_restart_writes_each_count_exactly_once(
    tmp_path: Path, kill_child: Callable[..., Any], checkpoints: str
) -> None:
    pytest.importorskip("sqlalchemy")
    kill_and_restart(tmp_path, "sql", kill_child, checkpoints)


@pytest.mark.parametrize("checkpoints", CHECKPOINTS)
def test_kill_9_and_restart_publishes_each_row_in_exactly_one_part(
    tmp_path: Path, kill_child: Callable[..., Any], checkpoints: str
) -> None:
    out = kill_and_restart(tmp_path, "jsonl", kill_child, checkpoints)
    # what is published is only parts; no hidden part of a checkpoint is left behind
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")) == []
