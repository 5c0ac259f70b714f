"""HTTP nodes: requests, paginated sources, pollers.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.http`.

Example:
    >>> from nanostream.connectors import http as code
    >>> from nanostream.nodes import http
    >>> http.HttpPaginator is code.HttpPaginator
    True
"""

from __future__ import annotations

from ..connectors.http import (
    ConnectorError,
    HttpPaginator,
    HttpPoller,
    HttpRequest,
    HttpStatusError,
)

__all__: list[str] = [
    "ConnectorError",
    "HttpPaginator",
    "HttpPoller",
    "HttpRequest",
    "HttpStatusError",
]
