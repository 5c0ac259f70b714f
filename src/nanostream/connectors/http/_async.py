"""The HTTP nodes' requests on ``httpx.AsyncClient``, for ``HttpRequest(concurrency=N)``.

The same request as :meth:`_HttpNode._send <nanostream.connectors.http._base._HttpNode>`
sends, with the same decisions (which errors and statuses are retried, ``Retry-After``, the
rate limit shared by every request of the node, redirects that keep credentials to their
origin, secrets masked in messages), awaited on the node's event loop instead of blocking
a thread: the waits between attempts are ``asyncio.sleep``, which the end of the node
cancels.

Example:
    >>> from nanostream.connectors.http._async import send
    >>> send.__name__
    'send'
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._toolkit import ConnectorError
from ._base import _Home, _HttpNode, _target

if TYPE_CHECKING:
    import httpx

__all__ = ["send"]


async def send(
    node: _HttpNode,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    home: _Home | None = None,
) -> httpx.Response:
    """Send one request of ``node`` with its ``httpx.AsyncClient``, retrying as configured.

    ``home`` is where the node's credentials may go, as for ``_HttpNode._send``.
    """
    import httpx

    client = node._async_client
    if client is None:
        raise ConnectorError(f"{node.kind} is not running: its client is closed")
    target = _target(url, params)
    home = home or _Home(httpx.URL(url))
    left_before = home.left
    limiter = node._limiter
    attempt = 0
    while True:
        home.left = left_before  # each attempt runs the chain again from where it began
        if limiter is not None:
            delay = limiter.reserve()
            if delay > 0:
                await asyncio.sleep(delay)
        try:
            request = client.build_request(node.method, target, headers=headers, json=json)
            response = await _follow(
                node, client, await _send_one(node, client, request, home), home
            )
        except httpx.TransportError as exc:
            delay = node._after_transport_error(exc, target, attempt)
        else:
            if response.status_code < 400:
                node._count_sent()
                return response
            delay = node._after_error_status(response, home, attempt)
        attempt += 1
        await asyncio.sleep(delay)


async def _send_one(
    node: _HttpNode, client: httpx.AsyncClient, request: httpx.Request, home: _Home
) -> httpx.Response:
    """``request``, without the node's credentials when ``home`` does not admit its URL."""
    if node._admitted(request, home):
        return await client.send(request)
    return await client.send(request, auth=None)


async def _follow(
    node: _HttpNode, client: httpx.AsyncClient, response: httpx.Response, home: _Home
) -> httpx.Response:
    """Follow ``response``'s redirects as :meth:`_HttpNode._follow` does."""
    redirects = 0
    while (request := node._next_redirect(response, redirects, home)) is not None:
        redirects += 1
        response = await _send_one(node, client, request, home)
    return response
