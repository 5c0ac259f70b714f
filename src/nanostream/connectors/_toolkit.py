"""The connector toolkit: ``ConnectorError``, retries on a lost connection, back-off, waits
that an abort cuts short, and clean-up that always runs.

Example:
    >>> from nanostream.connectors._toolkit import connector_error
    >>> from nanostream.connectors._secrets import Secrets
    >>> print(connector_error("no route to db", OSError(), Secrets([])))
    no route to db
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.context import node_label
from .._core.errors import NanoStreamError
from .._core.policy import backoff_delay
from .._core.signals import RunAborted
from ._secrets import Secrets

if TYPE_CHECKING:
    from .._core.node import NanoNode, NodeFunction

__all__ = [
    "ConnectorError",
    "closing_function",
    "connector_error",
    "pause",
    "retry_lost_connection",
]


T = TypeVar("T")


class ConnectorError(NanoStreamError):
    """A connector could not talk to its system (database, HTTP API, Redis).

    The message says what failed, where (the URL with its secrets masked) and what to do;
    it never contains a password or token.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes.sql import ConnectorError
        >>> issubclass(ConnectorError, nanostream.NanoStreamError)
        True
    """


def connector_error(message: str, cause: BaseException, secrets: Secrets) -> ConnectorError:
    """A :class:`ConnectorError` for ``message``, chained to ``cause`` unless that leaks a secret.

    ``message`` is scrubbed. When the driver's own exception text holds a secret, the new
    error is raised without it (as with ``raise ... from None``); otherwise ``cause`` is
    kept as ``__cause__`` for debugging.

    Example:
        >>> from nanostream.connectors._secrets import Secrets
        >>> from nanostream.connectors._toolkit import connector_error
        >>> secrets = Secrets(["hunter22"])
        >>> err = connector_error("login failed", ValueError("bad password hunter22"), secrets)
        >>> err.__cause__ is None, err.__suppress_context__
        (True, True)
        >>> connector_error("x", ValueError("refused"), secrets).__cause__
        ValueError('refused')
    """
    error = ConnectorError(secrets.scrub(message))
    chain: list[BaseException] = []
    link: BaseException | None = cause
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if any(secrets.contains(str(e)) or secrets.contains(repr(e)) for e in chain):
        error.__cause__ = None
        error.__suppress_context__ = True
    else:
        error.__cause__ = cause
    return error


def _aborting(node: NanoNode) -> bool:
    from .._core.graph import pipeline_of

    run = pipeline_of(node).run
    return run is not None and run.state in ("aborted", "failed")


def pause(node: NanoNode, seconds: float) -> None:
    """Wait ``seconds`` inside a processing node: a stop does not cut it short, an abort does.

    A stop lets the pipeline drain, so a retry in a processing node keeps its back-off; an
    abort (another node failed, or ``Run.abort()``) raises :class:`~nanostream.RunAborted`
    at once instead of waiting out the delay.

    Example:
        >>> import nanostream
        >>> from nanostream.connectors._toolkit import pause
        >>> pause(nanostream.testing.Collect(), 0.001)
    """
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        if node.sleep(remaining):
            # the stop event is set: either a graceful stop (keep waiting) or an abort
            if _aborting(node):
                raise RunAborted
            time.sleep(min(remaining, 0.05))


def retry_lost_connection(
    node: Any,
    attempt: Callable[[], T],
    *,
    errors: type[BaseException],
    lost: Callable[[Any], bool],
    fail: Callable[[Any], BaseException],
    log: logging.Logger,
    shown: str,
    doing: str = "",
    reason: Callable[[Any], str] = lambda exc: type(exc).__name__,
    after_error: Callable[[], None] | None = None,
) -> T:
    """``attempt()``, called again after a back-off while it fails with a lost connection.

    ``node`` (a connector node with ``retries``, ``backoff`` and ``max_backoff``) is the
    one that waits (see :func:`pause`) and is named in the warning logged before each
    retry: ``"<node>: connection to <shown> lost<doing> (<reason>); retry i of n in s"``.
    An error of type ``errors`` that is not ``lost``, or the last retry's, raises
    ``fail(exc)``. ``after_error`` runs after every error (e.g. to drop the connection).

    Example:
        >>> import logging
        >>> from nanostream.connectors._toolkit import retry_lost_connection
        >>> from nanostream.testing import Collect
        >>> node = Collect()
        >>> node.retries, node.backoff, node.max_backoff = 2, 0.001, 0.001
        >>> calls = []
        >>> def attempt():
        ...     calls.append(1)
        ...     if len(calls) < 3:
        ...         raise ConnectionError("gone")
        ...     return "written"
        >>> retry_lost_connection(
        ...     node, attempt, errors=ConnectionError, lost=lambda exc: True,
        ...     fail=RuntimeError, log=logging.getLogger("example"), shown="db",
        ... ), len(calls)
        ('written', 3)
    """
    failures = 0
    while True:
        try:
            return attempt()
        except errors as exc:
            if after_error is not None:
                after_error()
            if not lost(exc) or failures >= node.retries:
                raise fail(exc) from None
            delay = backoff_delay(failures, node.backoff, node.max_backoff)
            failures += 1
            log.warning(
                "%s: connection to %s lost%s (%s); retry %d of %d in %.2fs",
                node_label(node, with_class=True),
                shown,
                doing,
                reason(exc),
                failures,
                node.retries,
                delay,
            )
            pause(node, delay)


def closing_function(function: NodeFunction, close: Callable[[], None]) -> NodeFunction:
    """``function`` as a node function that always calls ``close()`` when it ends.

    ``cleanup()`` runs only at the end of the stream or on stop; connections must also be
    released when the run is aborted or the node fails, which this guarantees.

    Example:
        >>> from nanostream.connectors._toolkit import closing_function
        >>> closed = []
        >>> def copy(inp, outp):
        ...     for x in inp:
        ...         outp(x)
        >>> out = []
        >>> closing_function(copy, lambda: closed.append(True))([1, 2], out.append)
        >>> out, closed
        ([1, 2], [True])
    """

    def connector(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        try:
            function(inp, outp)
        finally:
            close()

    return connector
