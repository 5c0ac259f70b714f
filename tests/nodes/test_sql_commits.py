"""SQLSink's commits on SQLite in its commit thread (``connectors/sql/_commits.py``): a
batch commits there while the node reads the next one; its items are released only once
it is committed; a failed commit is handled as a failed write; the thread is joined."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

import nanostream
from nanostream.connectors.sql._commits import CommitThread
from nanostream.nodes.sql import SQLSink
from support import sqlite_rows

WAIT = 10.0


def commit_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("nanostream-commit")]


def commits_running(commits: CommitThread) -> bool:
    commits.begun()
    return not commits.done()


def count(db: Path) -> int:
    """The rows in table ``t``."""
    ((rows,),) = sqlite_rows(db, "SELECT count(*) FROM t")
    return int(rows)


class Rows(nanostream.NanoNode):
    """Emits each row as ``Acked(row, ack)``; ``acked`` lists the ids acknowledged."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__(name="rows")
        self.rows = rows
        self.acked: list[int] = []

    def generator(self) -> Iterator[Any]:
        for row in self.rows:
            yield nanostream.Acked(row, partial(self.acked.append, row["id"]))


class Disk(sqlite3.Connection):
    """A connection whose commits note their thread, and run ``on_commit`` first."""

    threads: ClassVar[list[str]] = []
    on_commit: ClassVar[Callable[[int], None]] = staticmethod(lambda n: None)

    def commit(self) -> None:
        if self.in_transaction:  # not the commit thread's try of a new connection
            type(self).threads.append(threading.current_thread().name)
            type(self).on_commit(len(type(self).threads))
        super().commit()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[Path, sa.Engine]]:
    """A SQLite file with the table ``t`` and an engine whose connections are ``Disk``."""
    db = tmp_path / "db.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT)")
    conn.close()
    Disk.threads = []
    Disk.on_commit = staticmethod(lambda n: None)
    engine = sa.create_engine(
        f"sqlite:///{db}",
        creator=lambda: sqlite3.connect(db, factory=Disk, check_same_thread=False),
    )
    yield db, engine
    engine.dispose()


def test_a_commit_thread_runs_one_commit_at_a_time_and_hands_back_its_error() -> None:
    commits = CommitThread("unit")
    try:
        done: list[int] = []
        commits.start(partial(done.append, 1))
        with pytest.raises(RuntimeError, match="a commit is running"):
            commits.start(partial(done.append, 2))  # the one before is not collected yet
        commits.begun()
        assert commits.result() is None
        assert done == [1]
        error = commits.run(partial(open, "/nonexistent/folder/file"))
        assert isinstance(error, FileNotFoundError)
        gate = threading.Event()
        commits.start(gate.wait)
        assert commits_running(commits)
        gate.set()
    finally:
        commits.close()  # lets the commit end, then joins the thread
    assert commits.result() is None
    assert commit_threads() == []


def test_on_sqlite_the_sink_commits_full_batches_in_its_commit_thread(
    disk: tuple[Path, sa.Engine], local_runner: str
) -> None:
    """Full batches commit in the commit thread, the last partial one in the node's own at
    the end; every row is in once, the acknowledgements came after the commits, and the
    thread is joined when the run ends."""
    db, engine = disk
    source = Rows([{"id": i} for i in range(25)])
    sink = SQLSink(engine, "t", commit_every=10, name="sales")
    source > sink
    sink.global_start(runner=local_runner)
    assert count(db) == 25
    assert sink.rows_written == 25
    assert sorted(source.acked) == list(range(25))
    assert Disk.threads[:2] == ["nanostream-commit:sales_0"] * 2, Disk.threads
    assert len(Disk.threads) == 3, Disk.threads
    assert not Disk.threads[2].startswith("nanostream-commit")  # the node's own thread
    assert commit_threads() == []


def test_the_sink_ends_once_its_last_commit_is_in(
    disk: tuple[Path, sa.Engine], local_runner: str
) -> None:
    """A stream that ends with a full batch: its commit runs in the commit thread, and the
    node waits for it (and acknowledges it) before it ends, however slow the disk."""
    db, engine = disk

    def slow_last(n: int) -> None:
        if n == 2:
            time.sleep(0.2)  # a slow disk, not a wait for a thread

    Disk.on_commit = staticmethod(slow_last)
    source = Rows([{"id": i} for i in range(20)])
    sink = SQLSink(engine, "t", commit_every=10, name="sales")
    source > sink
    sink.global_start(runner=local_runner)
    assert Disk.threads == ["nanostream-commit:sales_0"] * 2
    assert count(db) == 20
    assert sink.rows_written == 20
    assert sorted(source.acked) == list(range(20))
    assert commit_threads() == []


def test_a_failed_commit_acknowledges_nothing_of_its_batch_and_fails_the_node(
    disk: tuple[Path, sa.Engine], local_runner: str
) -> None:
    """The second batch's commit fails in the commit thread (not a lost connection): the
    run fails, named by the node, as a failed write does; its rows are not in the table
    and none of them is acknowledged."""
    db, engine = disk

    def refuse_second(n: int) -> None:
        if n == 2:
            raise sqlite3.IntegrityError("FOREIGN KEY constraint failed")

    Disk.on_commit = staticmethod(refuse_second)
    source = Rows([{"id": i} for i in range(30)])
    sink = SQLSink(engine, "t", commit_every=10, name="sales")
    source > sink
    with pytest.raises(nanostream.NodeFailed, match="'sales'") as failed:
        sink.global_start(runner=local_runner)
    assert "could not write to table 't'" in str(failed.value)
    assert "10 rows not written" in str(failed.value)
    assert Disk.threads[:2] == ["nanostream-commit:sales_0"] * 2
    assert count(db) == 10
    assert not set(source.acked) & set(range(10, 30)), source.acked
    assert commit_threads() == []


def test_a_connection_lost_at_commit_writes_the_batch_again(
    disk: tuple[Path, sa.Engine], local_runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A commit that fails as a lost connection does (an OperationalError) in the commit
    thread: the node writes that batch again, in order, as it retries a write."""
    db, engine = disk

    def lose_first(n: int) -> None:
        if n == 1:
            raise sqlite3.OperationalError("disk I/O error")

    Disk.on_commit = staticmethod(lose_first)
    source = Rows([{"id": i} for i in range(30)])
    sink = SQLSink(engine, "t", commit_every=10, name="sales", backoff=0.0)
    source > sink
    with caplog.at_level(logging.WARNING, logger="nanostream.sql"):
        sink.global_start(runner=local_runner)
    assert Disk.threads[0] == "nanostream-commit:sales_0"
    assert count(db) == 30
    assert sink.rows_written == 30
    assert sorted(source.acked) == list(range(30))
    assert "lost while committing 10 rows" in caplog.text
    assert commit_threads() == []


def test_a_node_that_fails_while_a_batch_commits_waits_for_it_and_joins_the_thread(
    disk: tuple[Path, sa.Engine], local_runner: str
) -> None:
    """A row with a field that is no column fails the node while the batch before commits:
    that commit ends (its rows are in), then the thread is joined."""
    db, engine = disk
    rows: list[dict[str, Any]] = [{"id": i} for i in range(15)]
    rows[12] = {"id": 12, "colour": "red"}
    source = Rows(rows)
    sink = SQLSink(engine, "t", commit_every=10, name="sales")
    source > sink
    with pytest.raises(nanostream.NodeFailed, match="colour"):
        sink.global_start(runner=local_runner)
    assert count(db) == 10
    assert set(source.acked) <= set(range(10)), source.acked
    assert commit_threads() == []


def test_a_connection_that_refuses_other_threads_commits_in_the_nodes_thread(
    tmp_path: Path, local_runner: str
) -> None:
    """``check_same_thread`` (the driver's default, kept by a URL's query): the commit
    thread's try of the connection fails, so its commits stay in the node's thread."""
    db = tmp_path / "db.sqlite"
    sink = SQLSink(f"sqlite:///{db}?check_same_thread=true", "t", create=True, commit_every=10)
    nanostream.from_iterable([{"id": i} for i in range(25)]) > sink
    sink.global_start(runner=local_runner)
    assert count(db) == 25
    assert commit_threads() == []


def test_a_commit_that_fails_as_the_node_ends_leaves_nothing_in_the_engines_pool(
    disk: tuple[Path, sa.Engine], caplog: pytest.LogCaptureFixture
) -> None:
    """The node ends with an error (here its input fails) while a batch commits, and that
    commit fails too: the batch is rolled back for good, not handed back to the caller's
    engine in an open transaction that its next user would commit."""
    db, engine = disk
    gate = threading.Event()

    def refuse_second(n: int) -> None:
        if n == 2:
            gate.wait(WAIT)  # until the node's input has failed
            raise sqlite3.IntegrityError("FOREIGN KEY constraint failed")

    Disk.on_commit = staticmethod(refuse_second)

    def rows() -> Iterator[dict[str, Any]]:
        yield from ({"id": i} for i in range(20))
        gate.set()
        raise RuntimeError("input failed")

    sink = SQLSink(engine, "t", commit_every=10, flush_interval=60, name="sales")
    with (
        caplog.at_level(logging.WARNING, logger="nanostream.sql"),
        pytest.raises(RuntimeError, match="input failed"),
    ):
        sink.as_function()(rows(), print)
    assert "the commit of 10 rows failed as the node ended" in caplog.text
    assert Disk.threads == ["nanostream-commit:sales_0"] * 2
    with engine.begin() as conn:  # the engine's next user
        conn.exec_driver_sql("CREATE TABLE other (x INTEGER)")
    assert count(db) == 10
    assert commit_threads() == []
