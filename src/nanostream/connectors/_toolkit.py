"""The connector toolkit: ``ConnectorError``, retries on a lost connection (and the check of
their options), clean-up that always runs, and a sink's input read a slice at a time.

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
from .._core.errors import NanoStreamError, OptionError
from .._core.policy import backoff_delay
from .._core.ticks import TICK, TICKS
from ..operators._operator import check_non_negative
from ._secrets import Secrets

if TYPE_CHECKING:
    from .._core.node import NodeFunction

__all__ = [
    "ConnectorError",
    "closing_function",
    "connector_error",
    "input_slices",
    "lost_connection",
    "pause_after_lost_connection",
    "reconnect_options",
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


def reconnect_options(node: Any, *, retries: int, backoff: float, max_backoff: float) -> None:
    """Check a connector's options of retries after a lost connection and set them on
    ``node``: ``retries`` an integer >= 0, ``backoff`` and ``max_backoff`` seconds >= 0,
    ``max_backoff`` at least ``backoff``; a wrong one is an ``OptionError`` naming the node.

    Example:
        >>> import nanostream
        >>> from nanostream.connectors._toolkit import reconnect_options
        >>> from nanostream.testing import Collect
        >>> node = Collect(name="db")
        >>> reconnect_options(node, retries=3, backoff=0.5, max_backoff=30.0)
        >>> node.retries, node.backoff, node.max_backoff
        (3, 0.5, 30.0)
        >>> try:
        ...     reconnect_options(node, retries=3, backoff=5.0, max_backoff=1.0)
        ... except nanostream.OptionError as exc:
        ...     print(exc)
        Collect 'db': max_backoff (1.0) is below backoff (5.0); give max_backoff >= backoff
    """
    label = node_label(node, with_class=True)
    check_non_negative(label, "retries", retries, integer=True)
    check_non_negative(label, "backoff", backoff, unit="seconds")
    check_non_negative(label, "max_backoff", max_backoff, unit="seconds")
    if max_backoff < backoff:
        raise OptionError(
            f"{label}: max_backoff ({max_backoff}) is below backoff ({backoff}); "
            "give max_backoff >= backoff"
        )
    node.retries, node.backoff, node.max_backoff = retries, backoff, max_backoff


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


def pause_after_lost_connection(
    node: Any,
    failures: int,
    exc: BaseException,
    error: Callable[[str, BaseException], BaseException],
    *,
    log: logging.Logger,
    shown: str,
    doing: str = "",
    reason: str,
) -> bool:
    """A source ``node`` lost its connection to ``shown`` (``exc``) ``failures`` times in a
    row (1, 2, ...): log it (:func:`lost_connection`) and wait the back-off with
    ``node.sleep``, returning True if a stop ended the wait; past ``node.retries``, raise
    ``error(message, exc)``, the message saying how many times in a row.

    Example:
        >>> import logging
        >>> from nanostream.connectors._toolkit import pause_after_lost_connection
        >>> from nanostream.testing import Collect
        >>> node = Collect(name="feed")
        >>> node.retries, node.backoff, node.max_backoff = 1, 0.001, 0.001
        >>> log = logging.getLogger("example")
        >>> pause_after_lost_connection(
        ...     node, 1, OSError(), RuntimeError, log=log, shown="db", reason="OSError"
        ... )
        False
        >>> try:
        ...     pause_after_lost_connection(
        ...         node, 2, OSError(), RuntimeError, log=log, shown="db", reason="OSError"
        ...     )
        ... except RuntimeError as exc:
        ...     print(exc.args[0])
        Collect 'feed' lost its connection to db 2 times in a row
    """
    message = (
        f"{node_label(node, with_class=True)} lost its connection to {shown} "
        f"{failures} times in a row"
    )
    delay = lost_connection(
        node,
        failures,
        partial(error, message, exc),
        log=log,
        shown=shown,
        doing=doing,
        reason=reason,
    )
    return bool(node.sleep(delay))


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
