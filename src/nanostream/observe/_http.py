"""Binding the observe layer's small HTTP servers (the web view, the metrics endpoint)."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

from .._core.errors import ConfigError

__all__ = ["bind_server"]

S = TypeVar("S", bound=ThreadingHTTPServer)


def bind_server(
    server_cls: type[S],
    host: str,
    port: int,
    handler: type[BaseHTTPRequestHandler],
    *,
    what: str,
    option: str,
) -> S:
    """``server_cls`` (made IPv6 for an IPv6 ``host``) listening on ``host:port``; a port
    that cannot be had is a :class:`~nanostream.ConfigError` naming ``option``.

    Example:
        >>> from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        >>> from nanostream.observe._http import bind_server
        >>> server = bind_server(
        ...     ThreadingHTTPServer, "127.0.0.1", 0, BaseHTTPRequestHandler,
        ...     what="a test", option="port=",
        ... )
        >>> server.server_address[1] > 0
        True
        >>> server.server_close()
    """
    cls: type[S] = server_cls
    if ":" in host:
        cls = type(f"IPv6{server_cls.__name__}", (server_cls,), {"address_family": socket.AF_INET6})
    try:
        return cls((host, port), handler)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve {what} on {host}:{port}: {exc.strerror or exc}; choose another "
            f"port ({option}), or 0 for any free port"
        ) from exc
