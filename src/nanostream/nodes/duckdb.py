"""DuckDB nodes: the embedded database for analytics.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.duckdb`.

Example:
    >>> from nanostream.connectors import duckdb as code
    >>> from nanostream.nodes import duckdb
    >>> duckdb.DuckDBSink is code.DuckDBSink
    True
"""

from __future__ import annotations

from ..connectors.duckdb import ConnectorError, DuckDBSink, DuckDBSource

__all__: list[str] = [
    "ConnectorError",
    "DuckDBSink",
    "DuckDBSource",
]
