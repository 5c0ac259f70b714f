"""The HTTP nodes' requests on ``httpx.AsyncClient``, for ``concurrency=N``.

The same request as :meth:`_HttpNode._send <nanostream.connectors.http._base._HttpNode>`
sends, with the same decisions, made by the same code (``_Attempts``: which errors and
statuses are retried, ``Retry-After``, the rate limit shared by every request of the node;
``_next_redirect`` and ``_admitted``: redirects that keep credentials to their origin;
secrets masked in messages), awaited on the node's event loop instead of blocking
a thread: the waits between attempts are ``asyncio.sleep``, which the end of the node
cancels.

The client's connections are
:class:`~nanostream.connectors.http._connections.Connections`: one single-connection httpx
transport per request in flight, rather than one pool of ``concurrency`` connections.
httpcore's pool looks at every one of its connections (a system call each, to see whether
the server closed it) whenever a request starts or ends, so that one pool costs each
request CPU in proportion to the concurrency; a request on its own transport finds a pool
of one.

Example:
    >>> from nanostream.connectors.http._async import send
    >>> send.__name__
    'send'
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..._core.node import NodeFunction
from ...operators._concurrency import map_async
from .._toolkit import ConnectorError
from ._base import _Attempts, _Home, _HttpNode

if TYPE_CHECKING:
    import httpx

__all__ = ["node_function", "send"]


def node_function(
    node: _HttpNode, work: Callable[[Any], Awaitable[list[Any]]], concurrency: int, name: str
) -> NodeFunction:
    """The node function of an HTTP node with ``concurrency=``: ``work(item)`` (its
    outputs for one item) on ``concurrency`` items at once, in input order, on the node's
    ``httpx.AsyncClient``; ``name`` is the function's name (it shows in tracebacks)."""

    def function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        map_async(
            node,
            inp,
            outp,
            work,
            concurrency=concurrency,
            ordered=True,
            max_in_flight=2 * concurrency,
            release=node.release_items,
            opening=node._open_async,
            closing=node._close_async,
        )

    function.__name__ = function.__qualname__ = name
    return function


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
    attempts = _Attempts(node, url, params, home)
    while True:
        if (delay := attempts.start()) > 0:
            await asyncio.sleep(delay)
        try:
            request = client.build_request(node.method, attempts.target, headers=headers, json=json)
            sent = await _send_one(node, client, request, attempts.home)
            response = await _follow(node, client, sent, attempts.home)
        except httpx.TransportError as exc:
            delay = attempts.failed(exc)
        else:
            if (delay_or_none := attempts.answered(response)) is None:
                return response
            delay = delay_or_none
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
