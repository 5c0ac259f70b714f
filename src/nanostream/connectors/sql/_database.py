"""What the SQL nodes share: the engine and its connection, lost-connection detection,
masked URLs, and how values are encoded for a database column.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from ..._core.context import node_label
from ..._core.errors import ConfigError, OptionError, require
from ...operators._operator import check_positive
from .._secrets import Secrets, install_log_masking, mask_url
from .._toolkit import (
    ConnectorError,
    connector_error,
    reconnect_options,
    retry_lost_connection,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..._core.node import NanoNode

log = logging.getLogger("nanostream.sql")

T = TypeVar("T")


_LOGGERS = ("nanostream", "nanostream.sql", "sqlalchemy.engine", "sqlalchemy.pool")


_require_sqlalchemy: Callable[[], Any] = partial(require, "sqlalchemy", extra="sql")


# ----------------------------------------------------------------------------- connections
class _Database:
    """One node's engine: made in the node's thread, disposed when the node ends."""

    def __init__(
        self, url: str | sa.URL | sa.Engine, engine_options: Mapping[str, Any], label: str
    ) -> None:
        import sqlalchemy as sa

        self.engine: sa.Engine | None = None
        self.owned = True
        self.secrets = Secrets()
        if isinstance(url, sa.Engine):
            self.engine = url
            self.owned = False
            parsed = url.url
        else:
            try:
                parsed = sa.make_url(url)
            except sa.exc.ArgumentError as exc:
                raise OptionError(
                    f"{label}: not a database URL: {mask_url(url)!r} ({exc}); give one such "
                    "as sqlite:///path/to/file.db or postgresql://user@host/db"
                ) from None
            if isinstance(url, str):
                self.secrets.add_url(url)
            try:
                parsed.get_dialect()
            except sa.exc.NoSuchModuleError:
                raise OptionError(
                    f"{label}: unknown database or driver {parsed.drivername!r} in "
                    f"{mask_url(url)!r}; "
                    "see SQLAlchemy's list of dialects (sqlite, postgresql, mysql, ...)"
                ) from None
        if parsed.password is not None:
            self.secrets.add(str(parsed.password))
        self.url = parsed
        self.shown = mask_url(parsed.render_as_string(hide_password=True))
        self.options = dict(engine_options)

    def open(self, what: str) -> sa.Engine:
        """Create the engine and connect once, so a wrong URL fails at once and clearly."""
        import sqlalchemy as sa

        install_log_masking(*_LOGGERS)
        if self.engine is None:
            options = {"pool_pre_ping": True, **self.options}
            try:
                self.engine = sa.create_engine(self.url, **options)
            except ImportError as exc:
                raise ConnectorError(
                    f"{what}: no driver for {self.url.drivername!r} ({exc}); install the "
                    "database's driver, or name an installed one in the URL, such as "
                    "postgresql+psycopg://"
                ) from None
        try:
            with self.engine.connect():
                pass
        except sa.exc.DBAPIError as exc:
            raise self.error(f"{what} could not connect to {self.shown}", exc) from None
        return self.engine

    def error(self, message: str, exc: BaseException) -> ConnectorError:
        detail = getattr(exc, "orig", None) or exc
        return connector_error(f"{message}: {type(detail).__name__}: {detail}", exc, self.secrets)

    def retry(
        self,
        node: NanoNode,
        attempt: Callable[[], T],
        fail: Callable[[Any], BaseException],
        doing: str = "",
    ) -> T:
        """``attempt()``, retried by ``node`` while the database connection is lost (see
        :func:`~nanostream.connectors._toolkit.retry_lost_connection`); another database
        error, or the last retry's, raises ``fail(exc)``."""
        import sqlalchemy as sa

        return retry_lost_connection(
            node,
            attempt,
            errors=sa.exc.DBAPIError,
            lost=_is_disconnect,
            fail=fail,
            log=log,
            shown=self.shown,
            doing=doing,
            reason=lambda exc: type(exc.orig).__name__,
        )

    def close(self) -> None:
        if self.engine is not None and self.owned:
            self.engine.dispose()
            self.engine = None


def _connection(
    node: NanoNode,
    url: str | sa.URL | sa.Engine,
    engine_options: Mapping[str, Any] | None,
    *,
    retries: int,
    backoff: float,
    max_backoff: float,
) -> _Database:
    """What the constructors of the SQL nodes check and set: the reconnect options (set on
    ``node``) and the node's database at ``url``, not connected yet; a wrong option is an
    ``OptionError`` naming the node."""
    reconnect_options(node, retries=retries, backoff=backoff, max_backoff=max_backoff)
    return _Database(url, engine_options or {}, node_label(node, with_class=True))


def _is_disconnect(exc: BaseException) -> bool:
    import sqlalchemy as sa

    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    return bool(exc.connection_invalidated) or isinstance(
        exc, (sa.exc.OperationalError, sa.exc.InterfaceError)
    )


def _shown_url(url: object) -> str:
    from sqlalchemy import Engine

    if isinstance(url, Engine):
        return url.url.render_as_string(hide_password=True)
    return mask_url(url)


# ----------------------------------------------------------------------------- state file
def _encode_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if value is None or isinstance(value, (int, float, str)):
        return value
    raise ConfigError(
        f"cannot remember an incremental value of type {type(value).__name__}; use a column "
        "of integers, numbers, text, dates or timestamps"
    )


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "$datetime" in value:
            return dt.datetime.fromisoformat(value["$datetime"])
        if "$date" in value:
            return dt.date.fromisoformat(value["$date"])
        if "$decimal" in value:
            return decimal.Decimal(value["$decimal"])
    return value


def _discard_cursor(result: Any) -> None:
    """Close a result's cursor after its connection died (a server-side cursor stays open)."""
    cursor = getattr(result, "cursor", None)
    if cursor is not None:
        try:
            cursor.close()
        except Exception:  # the connection is gone; there is nothing more to release
            log.debug("could not close the cursor of a lost connection", exc_info=True)


def _row_count(node: NanoNode, name: str, value: int | None, options: dict[str, Any]) -> int:
    """The count of rows ``name`` (default 1000), also accepted as ``batch_size``, its old name.

    ``batch_size`` is taken out of ``options``: on an SQL node it never was the queue option.
    Both names given are refused, since it is unclear which is meant.
    """
    old = options.pop("batch_size", None)
    if old is not None and value is not None:
        raise OptionError(
            f"{node_label(node, with_class=True)}: batch_size is the former name of {name}; "
            f"give {name}= alone"
        )
    count = value if value is not None else old if old is not None else 1000
    label = node_label(node, with_class=True)
    check_positive(label, name if old is None else "batch_size", count, integer=True)
    return int(count)
