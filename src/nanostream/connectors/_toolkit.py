"""The connector toolkit: ``ConnectorError``, retries on a lost connection, clean-up that
always runs, and a sink's input read a slice at a time.

Example:
    >>> from nanostream.connectors._toolkit import connector_error
    >>> from nanostream.connectors._secrets import Secrets
    >>> print(connector_error("no route to db", OSError(), Secrets([])))
    no route to db
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .._core.context import node_label
from .._core.errors import NanoStreamError
from .._core.policy import backoff_delay
from .._core.ticks import TICK, TICKS
from ._secrets import Secrets

if TYPE_CHECKING:
    from .._core.node import NodeFunction

__all__ = [
    "ConnectorError",
    "closing_function",
    "connector_error",
    "input_slices",
    "lost_connection",
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
    one that waits (``NodeContext.pause``: an abort cuts it short, a stop does not) and is
    named in the warning logged before each retry (:func:`lost_connection`). An error of
    type ``errors`` that is not ``lost``, or the last retry's, raises ``fail(exc)``.
    ``after_error`` runs after every error (e.g. to drop the connection).

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
            if not lost(exc):
                raise fail(exc) from None
            failures += 1
            delay = lost_connection(
                node,
                failures,
                partial(fail, exc),
                log=log,
                shown=shown,
                doing=doing,
                reason=reason(exc),
            )
            node._context().pause(delay)


def lost_connection(
    node: Any,
    failures: int,
    fail: Callable[[], BaseException],
    *,
    log: logging.Logger,
    shown: str,
    doing: str = "",
    reason: str,
) -> float:
    """The back-off before ``node`` (with ``retries``, ``backoff``, ``max_backoff``) retries
    after losing its connection to ``shown`` ``failures`` times in a row (1, 2, ...), logged
    as ``"<node>: connection to <shown> lost<doing> (<reason>); retry i of n in s"``; past
    ``node.retries``, it raises ``fail()`` instead."""
    if failures > node.retries:
        raise fail() from None
    delay = backoff_delay(failures - 1, node.backoff, node.max_backoff)
    log.warning(
        "%s: connection to %s lost%s (%s); retry %d of %d in %.2fs",
        node_label(node, with_class=True),
        shown,
        doing,
        reason,
        failures,
        node.retries,
        delay,
    )
    return delay


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


def input_slices(inp: Iterable[Any]) -> Iterator[Iterable[Any]]:
    """A node's input a slice at a time: ``inp.slices()`` where the runner offers it (see
    ``nanostream._engine.reader.Input``), else slices of one item (``TICKS`` for a tick),
    as for a node function called by hand with a list.

    Example:
        >>> from nanostream.connectors._toolkit import input_slices
        >>> [list(part) for part in input_slices([1, 2])]
        [[1], [2]]
    """
    slices = getattr(inp, "slices", None)
    if slices is not None:
        return cast(Iterator[Iterable[Any]], slices())
    return _one_by_one(inp)


def _one_by_one(items: Iterable[Any]) -> Iterator[Iterable[Any]]:
    for item in items:
        yield TICKS if item is TICK else iter((item,))
