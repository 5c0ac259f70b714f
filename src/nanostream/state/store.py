"""A run's state store: the last committed checkpoint, one entry per node, keyed by name.

``open_store(spec)`` opens a SQLite file (a path; Python's own ``sqlite3``, no extra
dependency) or any database SQLAlchemy reaches (a URL such as
``postgresql+psycopg://host/db``; ``pip install 'nanostream[sql]'``). Two tables hold it:
``nanostream_checkpoint`` (the epoch, the pipeline, when) and ``nanostream_state`` (per
node: its class, the epoch, its pickled state). A commit replaces both in one transaction,
so a store always holds one whole checkpoint, never part of one.

States are pickled: a state store is trusted like the pipeline's own code (open only
stores your runs wrote).

Example:
    >>> import os, tempfile
    >>> from nanostream.state import open_store
    >>> path = os.path.join(tempfile.mkdtemp(), "run.state")
    >>> store = open_store(path)
    >>> store.commit(3, "demo", {"count": ("mymod.Count", encode_state({"a": 2}))})
    >>> store.load().epoch, store.load().states["count"]
    (3, ('mymod.Count', {'a': 2}))
    >>> store.close()
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .._core.errors import StateError, require

__all__ = ["Checkpoint", "StateStore", "encode_state", "open_store"]


@dataclass(frozen=True)
class Checkpoint:
    """The checkpoint a store holds: its epoch, pipeline, time and node states.

    ``states`` maps each node's name to ``(kind, state)``: its class (``module.qualname``)
    and what its ``snapshot_state()`` returned.

    Example:
        >>> Checkpoint(1, "p", 0.0, {"n": ("m.N", 5)}).states["n"]
        ('m.N', 5)
    """

    epoch: int
    pipeline: str
    taken_at: float
    states: Mapping[str, tuple[str, Any]]


class StateStore(Protocol):
    """What a run needs of its store (see :func:`open_store`).

    Example:
        >>> import os, tempfile
        >>> store = open_store(os.path.join(tempfile.mkdtemp(), "s.state"))
        >>> store.load() is None
        True
        >>> store.close()
    """

    #: Where the store is (a path or a URL with its password masked), for messages.
    where: str

    def load(self) -> Checkpoint | None:
        """The last committed checkpoint, or None when nothing was committed yet."""

    def commit(self, epoch: int, pipeline: str, states: Mapping[str, tuple[str, bytes]]) -> None:
        """Replace what the store holds with this checkpoint, in one transaction.

        ``states`` maps node names to ``(kind, encode_state(state))``.
        """

    def drop(self, names: Iterable[str]) -> None:
        """Forget the state of these nodes."""

    def close(self) -> None:
        """Release the connection."""


def open_store(spec: str | os.PathLike[str]) -> StateStore:
    """The state store at ``spec``: a file path (SQLite) or a SQLAlchemy URL.

    Example:
        >>> import os, tempfile
        >>> store = open_store(os.path.join(tempfile.mkdtemp(), "run.state"))
        >>> store.where.endswith("run.state")
        True
        >>> store.close()
    """
    text = os.fspath(spec)
    if "://" in text:
        return _SQLAlchemyStore(text)
    return _SQLiteStore(text)


def _decode(node: str, kind: str, blob: bytes, where: str) -> tuple[str, Any]:
    try:
        return kind, pickle.loads(blob)  # the store is trusted like the code
    except Exception as exc:
        raise StateError(
            f"the state of node {node!r} in {where} cannot be read ({type(exc).__name__}: "
            f"{exc}); restart with drop_state=True (--drop-state) to start it afresh"
        ) from exc


class _SQLiteStore:
    """A store in a SQLite file, with Python's ``sqlite3`` (any thread, one at a time)."""

    def __init__(self, path: str) -> None:
        self.where = os.path.abspath(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.where, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS nanostream_checkpoint "
                "(epoch INTEGER NOT NULL, pipeline TEXT NOT NULL, taken_at REAL NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS nanostream_state (node TEXT PRIMARY KEY, "
                "kind TEXT NOT NULL, epoch INTEGER NOT NULL, state BLOB NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot open the state store {self.where} ({exc}); give a writable file "
                "path or a SQLAlchemy URL"
            ) from exc

    def load(self) -> Checkpoint | None:
        with self._lock:
            head = self._db.execute(
                "SELECT epoch, pipeline, taken_at FROM nanostream_checkpoint"
            ).fetchone()
            rows = self._db.execute("SELECT node, kind, state FROM nanostream_state").fetchall()
        if head is None:
            return None
        states = {node: _decode(node, kind, blob, self.where) for node, kind, blob in rows}
        return Checkpoint(int(head[0]), str(head[1]), float(head[2]), states)

    def commit(self, epoch: int, pipeline: str, states: Mapping[str, tuple[str, bytes]]) -> None:
        rows = [(name, kind, epoch, blob) for name, (kind, blob) in states.items()]
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM nanostream_checkpoint")
                db.execute(
                    "INSERT INTO nanostream_checkpoint VALUES (?, ?, ?)",
                    (epoch, pipeline, time.time()),
                )
                db.execute("DELETE FROM nanostream_state")
                db.executemany("INSERT INTO nanostream_state VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def drop(self, names: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany(
                "DELETE FROM nanostream_state WHERE node = ?", [(n,) for n in names]
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def encode_state(state: Any) -> bytes:
    """``state`` as the bytes a store keeps (pickled; taken at once, so later changes to
    ``state`` do not reach the checkpoint).

    Example:
        >>> len(encode_state({"a": 1})) > 0
        True
    """
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


class _SQLAlchemyStore:
    """A store in any database SQLAlchemy reaches (PostgreSQL, say)."""

    def __init__(self, url: str) -> None:
        sa = require("sqlalchemy", extra="sql")
        try:
            self._engine = sa.create_engine(url)
        except Exception as exc:
            raise StateError(
                f"cannot open the state store ({exc}); give a file path or a SQLAlchemy URL"
            ) from exc
        self.where = self._engine.url.render_as_string(hide_password=True)
        meta = sa.MetaData()
        self._head = sa.Table(
            "nanostream_checkpoint",
            meta,
            sa.Column("epoch", sa.Integer, nullable=False),
            sa.Column("pipeline", sa.String(400), nullable=False),
            sa.Column("taken_at", sa.Float, nullable=False),
        )
        self._states = sa.Table(
            "nanostream_state",
            meta,
            sa.Column("node", sa.String(400), primary_key=True),
            sa.Column("kind", sa.String(400), nullable=False),
            sa.Column("epoch", sa.Integer, nullable=False),
            sa.Column("state", sa.LargeBinary, nullable=False),
        )
        try:
            meta.create_all(self._engine)
        except Exception as exc:
            self._engine.dispose()
            raise StateError(f"cannot open the state store {self.where} ({exc})") from exc

    def load(self) -> Checkpoint | None:
        import sqlalchemy as sa

        with self._engine.connect() as conn:
            head = conn.execute(sa.select(self._head)).first()
            rows = conn.execute(
                sa.select(self._states.c.node, self._states.c.kind, self._states.c.state)
            ).all()
        if head is None:
            return None
        states = {r.node: _decode(r.node, r.kind, r.state, self.where) for r in rows}
        return Checkpoint(int(head.epoch), str(head.pipeline), float(head.taken_at), states)

    def commit(self, epoch: int, pipeline: str, states: Mapping[str, tuple[str, bytes]]) -> None:
        rows = [
            {"node": name, "kind": kind, "epoch": epoch, "state": blob}
            for name, (kind, blob) in states.items()
        ]
        with self._engine.begin() as conn:
            conn.execute(self._head.delete())
            conn.execute(
                self._head.insert(),
                {"epoch": epoch, "pipeline": pipeline, "taken_at": time.time()},
            )
            conn.execute(self._states.delete())
            if rows:
                conn.execute(self._states.insert(), rows)

    def drop(self, names: Iterable[str]) -> None:
        with self._engine.begin() as conn:
            for name in names:
                conn.execute(self._states.delete().where(self._states.c.node == name))

    def close(self) -> None:
        self._engine.dispose()
