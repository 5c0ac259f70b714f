"""HTTP APIs through httpx: :class:`HttpRequest`, :class:`HttpPaginator`, :class:`HttpPoller`.

Install the extra with ``pip install 'nanostream[http]'``. Every request has a timeout;
connection errors, ``429 Too Many Requests`` (honouring ``Retry-After``) and ``5xx`` answers
are retried with exponential back-off and jitter; other ``4xx`` answers fail at once with
:class:`HttpStatusError`. URLs, query parameters, headers and JSON bodies are templates
filled from each item (``"/users/{id}"``). Tokens in headers and passwords or keys in URLs
never appear in logs, reprs or error messages.

Example:
    >>> from nanostream.nodes.http import HttpRequest
    >>> node = HttpRequest(
    ...     "https://api.example.com/users/{id}?api_key=k-123456",
    ...     headers={"Authorization": "Bearer tok-abcdef"},
    ... )
    >>> node
    HttpRequest(name=None, method='GET', url='https://api.example.com/users/{id}?api_key=***')
    >>> node.render_url({"id": "a b/c"})
    'https://api.example.com/users/a%20b%2Fc?api_key=k-123456'
"""

from __future__ import annotations

from .._toolkit import ConnectorError
from ._base import HttpStatusError
from .request import HttpRequest
from .sources import HttpPaginator, HttpPoller

__all__ = ["ConnectorError", "HttpPaginator", "HttpPoller", "HttpRequest", "HttpStatusError"]
