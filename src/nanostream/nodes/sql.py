"""SQL nodes: read a query, write rows, execute statements.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.sql`.

Example:
    >>> from nanostream.connectors import sql as code
    >>> from nanostream.nodes import sql
    >>> sql.SQLExecute is code.SQLExecute
    True
"""

from __future__ import annotations

from ..connectors.sql import ConnectorError, SQLExecute, SQLSink, SQLSource

__all__: list[str] = [
    "ConnectorError",
    "SQLExecute",
    "SQLSink",
    "SQLSource",
]
