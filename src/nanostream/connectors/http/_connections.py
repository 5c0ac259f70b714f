"""The connections of an HTTP node's ``httpx.AsyncClient``: one per request in flight.

httpcore's connection pool looks at every one of its connections (a system call each, to
see whether the server closed it) whenever a request starts or ends, so that a pool of
``concurrency`` connections costs each request CPU in proportion to ``concurrency``.
:class:`Connections` gives each request in flight a transport of its own, whose pool has
one connection. Each transport is made at its first request, and the TLS context (which
loads every certificate authority of the bundle: 50-60 ms of CPU on a loaded machine) at
the first ``https`` request or :meth:`Connections.tls` call: a node of plain ``http://``
URLs never makes one. This module needs httpx; the HTTP nodes import it once they run.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import httpx

__all__ = ["Connections"]


class _Released(httpx.AsyncByteStream):
    """An async byte stream that calls ``release()`` once, when it is closed."""

    def __init__(self, stream: Any, release: Callable[[], None]) -> None:
        self.stream = stream
        self.release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self.stream.aclose()
        finally:
            release, self.release = self.release, None
            if release is not None:
                release()


class Connections(httpx.AsyncBaseTransport):
    """An httpx async transport of ``size`` single-connection transports: each request
    takes an idle one (the one used last, whose connection is likely open) and gives it
    back when its answer is closed. Beyond ``size`` requests at once, they share them.

    Used on one event loop (the node's); ``verify``, ``cert``, ``trust_env`` and ``http1``
    are those of ``httpx.AsyncHTTPTransport``. A connection's transport is made at its
    first request, one for ``http`` and one for ``https`` URLs; the TLS context is made
    once for all, at the first ``https`` request or :meth:`tls` call.

    Example:
        >>> import asyncio, httpx
        >>> from nanostream.connectors.http._connections import Connections
        >>> def answer(request):
        ...     return httpx.Response(200, text=request.url.path)
        >>> async def main():
        ...     connections = Connections(2)
        ...     connections.transports = [httpx.MockTransport(answer)] * 2  # no network
        ...     async with httpx.AsyncClient(transport=connections) as client:
        ...         texts = [r.text for r in await asyncio.gather(
        ...             client.get("http://h/a"), client.get("http://h/b"))]
        ...     return texts, sorted(connections.idle), connections.tls_context
        >>> asyncio.run(main())
        (['/a', '/b'], [0, 1], None)
    """

    def __init__(
        self,
        size: int,
        *,
        verify: Any = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
    ) -> None:
        self._tls = (verify, cert, trust_env)
        self._options: dict[str, Any] = {
            "trust_env": trust_env,
            "http1": http1,
            "limits": httpx.Limits(max_connections=1, max_keepalive_connections=1),
        }
        #: The TLS context of every ``https`` connection; None until the first is made.
        self.tls_context: ssl.SSLContext | None = None
        # The plain connections' context: it trusts no authority (see transport()).
        self._untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        #: Each connection's transport for ``http`` URLs (None: not made yet).
        self.transports: list[Any] = [None] * size
        #: Each connection's transport for ``https`` URLs (None: not made yet).
        self.secure_transports: list[Any] = [None] * size
        #: Indices of the transports with no request; the last one is taken first.
        self.idle = list(range(size - 1, -1, -1))
        self._next_shared = 0

    def transport(self, index: int, scheme: str) -> Any:
        """Connection ``index``'s transport for URLs of ``scheme``, made at its first use.

        An ``https`` (or ``wss``) transport gets the TLS context of ``verify``, ``cert`` and
        ``trust_env``, made at the first one. Any other scheme is plain TCP, where httpcore
        uses no TLS context; its transports get a context that trusts no authority, so
        that a TLS connection made by mistake on one would fail rather than go unverified.
        """
        secure = scheme in ("https", "wss")
        kept = self.secure_transports if secure else self.transports
        made = kept[index]
        if made is None:
            context = self.tls() if secure else self._untrusting
            made = kept[index] = httpx.AsyncHTTPTransport(verify=context, **self._options)
        return made

    def tls(self) -> ssl.SSLContext:
        """The TLS context of every ``https`` connection, made at the first call."""
        if self.tls_context is None:
            verify, cert, trust_env = self._tls
            self.tls_context = httpx.create_ssl_context(
                verify=verify, cert=cert, trust_env=trust_env
            )
        return self.tls_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on an idle connection (httpx's transport interface)."""
        if self.idle:
            index = self.idle.pop()
            release: Callable[[], None] = partial(self.idle.append, index)
        else:  # more requests than connections: share them in turn
            index = self._next_shared = (self._next_shared + 1) % len(self.transports)
            release = _nothing
        try:
            transport = self.transport(index, request.url.scheme)
            response: httpx.Response = await transport.handle_async_request(request)
        except BaseException:
            release()
            raise
        if response.is_closed:  # read already (a transport that answers from memory)
            release()
        else:
            response.stream = _Released(response.stream, release)
        return response

    async def aclose(self) -> None:
        """Close every connection."""
        for transport in (*self.transports, *self.secure_transports):
            if transport is not None:
                await transport.aclose()


def _nothing() -> None:
    pass
