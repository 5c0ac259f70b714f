"""Exactly once through kill -9, from each kind of source that resumes from a checkpoint.

Like tests/core/test_exactly_once_restart.py (whose helpers are in support.py): a child
process counts rows per key in tumbling event-time windows and writes the counts with
``SQLSink(exactly_once=True)``, in a run with a state store and frequent checkpoints; the
test kills it with SIGKILL at random moments (``KILLS`` times), restarting it each time
from the store, then lets it finish. The table must equal, row for row, that of an
uninterrupted run. The sources: an incremental ``SQLSource`` (SQLite), a Redis stream
(``RedisStreamSource``), and the watched folder of CSV files with the store and the table
in PostgreSQL. Each runs with aligned and with unaligned checkpoints, and takes 5 to 8 s
on a quiet machine (see ``support.Zygote``).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import support

pytest.importorskip("sqlalchemy")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

KILLS = int(os.environ.get("NANOSTREAM_EO_KILLS", "10"))
#: every kill test runs with each kind of checkpoint (unaligned: the default)
CHECKPOINTS = ["aligned", "unaligned"]
EVENTS = support.FILES * support.ROWS
#: what the children's interpreter imports before it forks a child per start
SQL = ("nanostream.nodes.sql", "sqlalchemy.dialects.sqlite")

#: What the children share after their source: argv[2:4] are the store and the sink's URL.
COUNT = r"""
from nanostream.nodes import Map, Throttle, TumblingWindow
from nanostream.nodes.sql import SQLSink

store, db = sys.argv[2:4]
counts = TumblingWindow(
    20, timestamp=lambda r: r["t"], key=lambda r: r["key"],
    reduce=lambda n, r: n + 1, initial=0, name="counts",
)
out = Map(lambda w: {"key": w.key, "start": w.start, "n": w.value}, name="as_row")
sink = SQLSink(db, "counts", create=True, exactly_once=True, name="sink")
pace = Throttle(RATE, name="pace")  # about 3 s of work, for the kills to land in
rows > pace > Stopper(name="stopper") > counts > out > sink
run = sink.global_start(
    block=False, state=store, checkpoint_interval=0.05, queue_size=1000, batch_size=100,
    checkpoint_unaligned=UNALIGNED,
)
print("started", flush=True)
run.wait_interruptibly()
"""

#: argv[1]: the SQLite file of the table ``events``.
SQL_CHILD = (
    support.STOPPER
    + r"""
from nanostream.nodes.sql import SQLSource

rows = SQLSource(
    f"sqlite:///{sys.argv[1]}", "SELECT id, key, t FROM events", incremental_column="id",
    poll_interval=0.05, fetch_size=200, name="events",
)
"""
    + COUNT
)

#: argv[1]: the Redis URL; argv[4]: the consumer group.
REDIS_CHILD = (
    support.STOPPER
    + r"""
from nanostream.nodes import Map
from nanostream.nodes.redis import RedisStreamSource

events = RedisStreamSource(
    sys.argv[1], "events", sys.argv[4], "counter", batch_size=200, poll_interval=0.05,
    name="events",
)
rows = events > Map(lambda e: {"key": e["key"], "t": float(e["t"])}, name="parse")
"""
    + COUNT
)


def events() -> list[tuple[str, float]]:
    """The rows of ``support.write_csv_files``, in order, and the 'end' row."""
    rows = support.FILES * support.ROWS
    keys = support.KEYS
    out = [
        (keys[r % len(keys)], f * 5 + r * 5 / support.ROWS)
        for f in range(support.FILES)
        for r in range(support.ROWS)
    ]
    assert len(out) == rows
    return [*out, ("end", float(support.FILES * 5))]


def sqlite_table(db: Path) -> list[tuple[Any, ...]]:
    return support.sqlite_rows(db, "SELECT key, start, n FROM counts")


def sqlite_committed(store: Path) -> int:
    found = support.sqlite_rows(store, "SELECT epoch FROM nanostream_checkpoint")
    return found[0][0] if found else 0


def check(expected: list[tuple[Any, ...]], killed: int, rows_at_kills: list[int]) -> None:
    assert sum(n for key, _, n in expected if key != "end") == EVENTS
    # kills came mid-stream, with counts already written and more to come
    assert any(0 < n < len(expected) for n in rows_at_kills), rows_at_kills
    assert killed >= min(KILLS, 3), "the runs ended before most kills"


def kill_and_compare(
    child: support.KillChild,
    folder: Path,
    plain: tuple[str, ...] = (),
    killed: tuple[str, ...] = (),
    late: float = 0.15,
) -> None:
    """Run ``child`` (store and table in SQLite files in ``folder``) uninterrupted, then
    killed ``KILLS`` times and restarted; the tables must be equal. ``plain`` and
    ``killed``: arguments after the common ones of the uninterrupted and the killed runs;
    ``late``: at most how long after a new checkpoint a kill comes."""
    child.finish(str(folder / "plain.state"), f"sqlite:///{folder / 'plain.sqlite'}", *plain)
    expected = sqlite_table(folder / "plain.sqlite")

    store, db = folder / "run.state", folder / "run.sqlite"
    kills, rows_at_kills = child.kill_repeatedly(
        KILLS,
        lambda: sqlite_committed(store),
        lambda: len(sqlite_table(db)),
        str(store),
        f"sqlite:///{db}",
        *killed,
        late=late,
    )
    check(expected, kills, rows_at_kills)
    assert sqlite_table(db) == expected


@pytest.mark.parametrize("checkpoints", CHECKPOINTS)
def test_kill_9_with_an_incremental_sql_source(
    tmp_path: Path, kill_child: Callable[..., Any], checkpoints: str
) -> None:
    source = tmp_path / "events.sqlite"
    with closing(sqlite3.connect(source)) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, key TEXT, t REAL)")
        conn.executemany("INSERT INTO events (key, t) VALUES (?, ?)", events())
        conn.commit()
    script = tmp_path / "child.py"
    script.write_text(SQL_CHILD)
    child = kill_child(script, str(source), preload=SQL).checkpoints(checkpoints)
    kill_and_compare(child, tmp_path)


@pytest.mark.parametrize("checkpoints", CHECKPOINTS)
def test_kill_9_with_a_redis_stream_source(
    tmp_path: Path, redis_url: str, kill_child: Callable[..., Any], checkpoints: str
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for key, t in events():
            pipe.xadd("events", {"key": key, "t": repr(t)})
        pipe.execute()
    finally:
        client.close()
    script = tmp_path / "child.py"
    script.write_text(REDIS_CHILD)
    child = kill_child(script, redis_url, preload=(*SQL, "nanostream.nodes.redis", "redis"))
    child.checkpoints(checkpoints)
    # a consumer group for each: a restart first goes through its group's pending entries
    kill_and_compare(child, tmp_path, plain=("plain",), killed=("killed",), late=0.5)


@pytest.mark.parametrize("checkpoints", CHECKPOINTS)
def test_kill_9_with_the_store_and_the_table_in_postgresql(
    tmp_path: Path, postgres_url: str, kill_child: Callable[..., Any], checkpoints: str
) -> None:
    pytest.importorskip("watchdog")
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        try:
            with engine.connect() as conn:
                return sorted(tuple(r) for r in conn.execute(sa.text(sql)))
        except sa.exc.ProgrammingError as exc:  # no such table yet
            if "does not exist" in str(exc):
                return []
            raise

    def committed() -> int:
        found = rows("SELECT epoch FROM nanostream_checkpoint")
        return int(found[0][0]) if found else 0

    def table() -> list[tuple[Any, ...]]:
        return [(k, float(s), int(n)) for k, s, n in rows("SELECT key, start, n FROM counts")]

    folder = tmp_path / "in"
    support.write_csv_files(folder)
    script = tmp_path / "child.py"
    script.write_text(support.WATCHED_CHILD)
    child = kill_child(
        script, str(folder), preload=(*SQL, "sqlalchemy.dialects.postgresql", "psycopg")
    ).checkpoints(checkpoints)
    try:
        plain = tmp_path / "plain.sqlite"
        child.finish(str(tmp_path / "plain.state"), f"sqlite:///{plain}")
        expected = sqlite_table(plain)

        killed, rows_at_kills = child.kill_repeatedly(
            KILLS, committed, lambda: len(table()), postgres_url, postgres_url
        )
        check(expected, killed, rows_at_kills)
        assert table() == expected
    finally:
        engine.dispose()
