""":class:`SQLExecute`: a statement per item."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..._core.node import NanoNode, NodeFunction
from ..._core.policy import POLICY_OPTIONS
from .._toolkit import ConnectorError, closing_function
from ._database import _connection, _require_sqlalchemy, _shown_url

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["SQLExecute"]


class SQLExecute(NanoNode):
    """Runs a parameterised statement for each item and emits the result rows as dicts.

    ``statement`` is SQL text with ``:name`` placeholders; each is filled from the item's
    field of that name (an item that is not a dict fills a statement's only placeholder),
    always as a bound parameter. Each item runs in its own transaction. A statement that
    returns no rows (``UPDATE``, ``DELETE``) emits nothing. A lost connection is retried
    ``retries`` times with exponential back-off.

    Example:
        >>> import sqlite3, tempfile, nanostream
        >>> from nanostream.nodes.sql import SQLExecute
        >>> tmp = tempfile.TemporaryDirectory()
        >>> db = sqlite3.connect(f"{tmp.name}/db.sqlite")
        >>> with db:
        ...     _ = db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
        ...     _ = db.executemany("INSERT INTO users VALUES (?, ?)", [(1, "ada"), (2, "bob")])
        >>> db.close()
        >>> lookup = SQLExecute(
        ...     f"sqlite:///{tmp.name}/db.sqlite", "SELECT name FROM users WHERE id = :user"
        ... )
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([{"user": 2}, {"user": 1}, {"user": 9}]) > lookup > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [{'name': 'bob'}, {'name': 'ada'}]
        >>> tmp.cleanup()
    """

    policy_options = POLICY_OPTIONS  # its node function is NanoNode's, closing the engine
    own_options = ("retries", "backoff")  # after a lost connection
    holds_items = False  # each item is done once its rows are out

    def __init__(
        self,
        url: str | sa.URL | sa.Engine,
        statement: str,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        engine_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        queue_size: int | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, queue_size=queue_size, batch_size=batch_size)
        _require_sqlalchemy()
        import sqlalchemy as sa

        self.url_shown = _shown_url(url)
        self._db = _connection(
            self, url, engine_options, retries=retries, backoff=backoff, max_backoff=max_backoff
        )
        self.statement = statement
        self._text = sa.text(statement)
        self.param_names = list(self._text.compile().params)
        self.configure(**options)

    def __repr__(self) -> str:
        return f"SQLExecute(name={self.name!r}, url={self.url_shown!r})"

    def setup(self) -> None:
        self._db.open("SQLExecute")

    def as_function(self) -> NodeFunction:
        return closing_function(super().as_function(), self._db.close)

    def _values(self, item: Any) -> dict[str, Any]:
        names = self.param_names
        if not isinstance(item, Mapping):
            if len(names) == 1:
                return {names[0]: item}
            raise ConnectorError(
                f"SQLExecute: the statement has placeholders {names}; items must be dicts "
                f"with those fields, got a {type(item).__name__}"
            )
        missing = [n for n in names if n not in item]
        if missing:
            raise ConnectorError(
                f"SQLExecute: the statement needs field(s) {missing}, which an item lacks "
                f"(it has {sorted(item)})"
            )
        return {n: item[n] for n in names}

    def process_item(self, item: Any) -> Iterator[dict[str, Any]]:
        values = self._values(item)
        engine = self._db.engine
        assert engine is not None

        def execute() -> list[dict[str, Any]]:
            with engine.begin() as conn:
                result = conn.execute(self._text, values)
                if not result.returns_rows:
                    return []
                keys = list(result.keys())
                return [dict(zip(keys, r, strict=True)) for r in result]

        rows = self._db.retry(
            self, execute, lambda exc: self._db.error("SQLExecute: the statement failed", exc)
        )
        yield from rows
