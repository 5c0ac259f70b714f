"""The connections of an HTTP node's httpx client, made when they are first used.

httpcore's connection pool looks at every one of its connections (a system call each, to
see whether the server closed it) whenever a request starts or ends, so that a pool of
``concurrency`` connections costs each request CPU in proportion to ``concurrency``.
:class:`Connections` gives each request in flight of the async client a transport of its
own, whose pool has one connection; :class:`Transport` is the blocking client's pool. Both
make each httpx transport at its first request, and the TLS context (which loads every
certificate authority of the bundle: 50-60 ms of CPU on a loaded machine) at the first
``https`` request or ``tls()`` call: a node of plain ``http://`` URLs never makes one
(:class:`_Lazy`; :func:`client_options` gives a node its transport). This module needs
httpx; the HTTP nodes import it once they run.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ._base import _HttpNode

__all__ = ["Connections", "Transport", "client_options"]

#: ``client_options`` that choose the connections themselves: given any, the client is
#: made as the user asked, with one pool (HTTP/2 multiplexes requests on one connection).
_OWN_CONNECTIONS = ("transport", "limits", "http2")
#: The schemes whose connections speak TLS.
_SECURE = ("https", "wss")


def client_options(node: _HttpNode, size: int, *, blocking: bool = False) -> dict[str, Any]:
    """The options of ``node``'s ``httpx.Client`` (``blocking``) or ``AsyncClient`` for
    ``size`` requests at once, on a :class:`Transport` or :class:`Connections` unless the
    user chose the transport, the limits or HTTP/2; TLS settings that cannot work fail the
    node's start if a URL may speak TLS."""
    options = node._client_options(size)
    if any(name in node.client_options for name in _OWN_CONNECTIONS):
        return options
    limits = options.pop("limits")
    # The client keeps its TLS settings too: they serve the proxies it makes itself.
    settings = {k: options[k] for k in ("verify", "cert", "trust_env", "http1") if k in options}
    transport = Transport(limits, **settings) if blocking else Connections(size, **settings)
    if may_speak_tls(node):
        transport.tls()
    options["transport"] = transport
    return options


def may_speak_tls(node: _HttpNode) -> bool:
    """Whether ``node`` has a URL that is not plain ``http://`` (``https``, or a template
    whose scheme an item fills in); a node of ``http://`` URLs needs TLS only if redirected."""
    urls = [node.templates.url, *getattr(node, "urls", ())]
    return any(not str(url).lower().startswith("http://") for url in urls)


class _Lazy:
    """What both clients' transports share: the options of the httpx transports they make
    (``limits`` is each one's pool), and the TLS context, made once at the first ``https``
    transport or :meth:`tls` call."""

    def __init__(
        self,
        limits: httpx.Limits,
        *,
        verify: Any = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
    ) -> None:
        self._tls = (verify, cert, trust_env)
        self._options: dict[str, Any] = {"trust_env": trust_env, "http1": http1, "limits": limits}
        #: The TLS context of every ``https`` connection; None until the first is made.
        self.tls_context: ssl.SSLContext | None = None
        # The plain connections' context: it trusts no authority (see _make()).
        self._untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    def tls(self) -> ssl.SSLContext:
        """The TLS context of every ``https`` connection, made at the first call."""
        if self.tls_context is None:
            verify, cert, trust_env = self._tls
            self.tls_context = httpx.create_ssl_context(
                verify=verify, cert=cert, trust_env=trust_env
            )
        return self.tls_context

    def _make(self, kind: Callable[..., Any], secure: bool) -> Any:
        """A transport of ``kind`` for ``https`` (``secure``: with the TLS context) or other
        URLs: plain TCP, where httpcore uses no TLS context; theirs trusts no authority, so
        that a TLS connection made on one by mistake would fail rather than go unverified."""
        return kind(verify=self.tls() if secure else self._untrusting, **self._options)


class Transport(_Lazy, httpx.BaseTransport):
    """The blocking client's transport: one ``httpx.HTTPTransport`` (a pool of
    ``limits``) for ``https`` URLs and one for the others, each made at its first request;
    requests may come from several threads (``workers=``)."""

    def __init__(self, limits: httpx.Limits, **settings: Any) -> None:
        super().__init__(limits, **settings)
        #: The transport for ``https`` URLs (True) and for the others (False), once made.
        self.transports: dict[bool, httpx.HTTPTransport] = {}
        self._making = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on the transport of its scheme (httpx's transport interface)."""
        secure = request.url.scheme in _SECURE
        with self._making:
            if secure not in self.transports:
                self.transports[secure] = self._make(httpx.HTTPTransport, secure)
        return self.transports[secure].handle_request(request)

    def close(self) -> None:
        """Close every connection (once no request is in flight)."""
        for transport in self.transports.values():
            transport.close()


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


class Connections(_Lazy, httpx.AsyncBaseTransport):
    """An httpx async transport of ``size`` single-connection transports: each request
    takes an idle one (the one used last, whose connection is likely open) and gives it
    back when its answer is closed. Beyond ``size`` requests at once, they share them.

    Used on one event loop (the node's); ``settings`` are those of :class:`_Lazy`. A
    connection's transport is made at its first request, one for ``http`` and one for
    ``https`` URLs; the TLS context once for all, at the first ``https`` one or ``tls()``.

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

    def __init__(self, size: int, **settings: Any) -> None:
        super().__init__(httpx.Limits(max_connections=1, max_keepalive_connections=1), **settings)
        #: Each connection's transport for ``http`` URLs (None: not made yet).
        self.transports: list[Any] = [None] * size
        #: Each connection's transport for ``https`` URLs (None: not made yet).
        self.secure_transports: list[Any] = [None] * size
        #: Indices of the transports with no request; the last one is taken first.
        self.idle = list(range(size - 1, -1, -1))
        self._next_shared = 0

    def transport(self, index: int, scheme: str) -> Any:
        """Connection ``index``'s transport for URLs of ``scheme``, made at its first use
        (an ``https`` or ``wss`` one with the TLS context; see :meth:`_Lazy._make`)."""
        secure = scheme in _SECURE
        kept = self.secure_transports if secure else self.transports
        made = kept[index]
        if made is None:
            made = kept[index] = self._make(httpx.AsyncHTTPTransport, secure)
        return made

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
