"""What the connectors share: masking secrets, ``ConnectorError``, waits and clean-up.

Secrets (passwords in URLs, API tokens in headers and query strings) must never reach logs,
statistics, reprs or error messages. :func:`mask_url` and :func:`mask_headers` hide them
in the values a connector shows; a :class:`Secrets` holds the exact secret strings of one
connector and scrubs them (and anything that looks like a credential) out of any text,
such as a driver's exception message.

Example:
    >>> from nanostream.connectors._secrets import Secrets, mask_url
    >>> mask_url("postgresql://app:hunter2@db.local:5432/sales")
    'postgresql://app:***@db.local:5432/sales'
    >>> secrets = Secrets.from_url("redis://:hunter2@cache:6379/0")
    >>> secrets.scrub("AUTH failed for hunter2")
    'AUTH failed for ***'
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .._core.errors import NanoStreamError
from .._core.redact import MASK, mask_text, redact, remember_secret
from .._core.signals import RunAborted

if TYPE_CHECKING:
    from .._core.node import NanoNode, NodeFunction

__all__ = [
    "MASK",
    "ConnectorError",
    "Secrets",
    "backoff_delay",
    "closing_function",
    "connector_error",
    "install_log_masking",
    "is_sensitive_name",
    "mask_headers",
    "mask_text",
    "mask_url",
    "node_label",
    "pause",
    "retry_lost_connection",
]


T = TypeVar("T")

# Names of headers, query parameters and key=value pairs whose values are credentials.
_SENSITIVE_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "credential",
    "signature",
    "session",
    "cookie",
    "private",
)
_SENSITIVE_NAMES = frozenset({"key", "pwd", "pass", "sig", "access_key", "client_secret"})


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
        >>> from nanostream.connectors._secrets import Secrets, connector_error
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


def is_sensitive_name(name: str) -> bool:
    """True when a header, parameter or field called ``name`` holds a credential.

    Example:
        >>> from nanostream.connectors._secrets import is_sensitive_name
        >>> is_sensitive_name("X-Api-Key"), is_sensitive_name("Accept")
        (True, False)
    """
    lowered = name.lower()
    return lowered in _SENSITIVE_NAMES or any(part in lowered for part in _SENSITIVE_PARTS)


def mask_url(url: object) -> str:
    """``url`` as text with its password and credential-like query values replaced by ``***``.

    Example:
        >>> from nanostream.connectors._secrets import mask_url
        >>> mask_url("https://api.example.com/v1/items?api_key=abc123&page=2")
        'https://api.example.com/v1/items?api_key=***&page=2'
        >>> mask_url("https://ghp_token@github.com/x.git")
        'https://***@github.com/x.git'
        >>> mask_url("sqlite:///data.db")
        'sqlite:///data.db'
    """
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return mask_text(text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if colon:
            netloc = f"{user}:{MASK}@{hostport}"
        elif parts.scheme in ("http", "https"):
            netloc = f"{MASK}@{hostport}"  # a token used as the user name
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_sensitive_name(k) for k, _ in pairs):
            query = urlencode(
                [(k, MASK if is_sensitive_name(k) else v) for k, v in pairs], safe="*/:,"
            )
    if netloc != parts.netloc:
        text = text.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    if query != parts.query:
        text = text.replace(f"?{parts.query}", f"?{query}", 1)
    return text


def mask_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``headers`` with the values of credential headers replaced by ``***``.

    Example:
        >>> from nanostream.connectors._secrets import mask_headers
        >>> mask_headers({"Authorization": "Bearer abc", "Accept": "application/json"})
        {'Authorization': '***', 'Accept': 'application/json'}
    """
    return {k: (MASK if is_sensitive_name(str(k)) else v) for k, v in (headers or {}).items()}


class Secrets:
    """The exact secret strings of one connector; :meth:`scrub` hides them in any text.

    Every secret added is also masked in the records of the loggers that
    :func:`install_log_masking` watches.

    Example:
        >>> from nanostream.connectors._secrets import Secrets
        >>> s = Secrets()
        >>> s.add("tok-123456")
        >>> s.scrub("header was tok-123456")
        'header was ***'
        >>> "tok-123456" in repr(s)
        False
    """

    # Shorter strings would mask ordinary words; they are still hidden by the patterns.
    MIN_LENGTH = 4

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        for value in values:
            self.add(value)

    @classmethod
    def from_url(cls, url: object) -> Secrets:
        """The secrets in a URL: its password (raw and decoded) and credential query values.

        Example:
            >>> from nanostream.connectors._secrets import Secrets
            >>> Secrets.from_url("postgresql://u:p%40ss-word@h/db").scrub("p@ss-word")
            '***'
        """
        secrets = cls()
        secrets.add_url(url)
        return secrets

    def add(self, value: object) -> None:
        """Remember ``value`` (a string) as a secret, in its raw and URL-encoded forms."""
        if not isinstance(value, str) or len(value) < self.MIN_LENGTH:
            return
        for form in {value, unquote(value), quote(value, safe="")}:
            if len(form) >= self.MIN_LENGTH:
                self._values.add(form)
                remember_secret(form)

    def add_url(self, url: object) -> None:
        """Remember the secrets of ``url``: its password and credential query values."""
        text = str(url)
        try:
            parts = urlsplit(text)
        except ValueError:
            return
        if "@" in parts.netloc:
            userinfo = parts.netloc.rpartition("@")[0]
            user, colon, password = userinfo.partition(":")
            self.add(password if colon else user)
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if is_sensitive_name(name):
                self.add(value)

    def add_headers(self, headers: Mapping[str, Any] | None) -> None:
        """Remember the values of credential headers (and their token part)."""
        for name, value in (headers or {}).items():
            if is_sensitive_name(str(name)) and isinstance(value, str):
                self.add(value)
                scheme, _, token = value.partition(" ")
                if token and scheme.isalpha():
                    self.add(token.strip())

    def scrub(self, text: object) -> str:
        """``text`` with every known secret and anything credential-like masked."""
        result = str(text)
        for value in sorted(self._values, key=len, reverse=True):
            if value in result:
                result = result.replace(value, MASK)
        return mask_text(result)

    def contains(self, text: object) -> bool:
        """True when ``text`` holds one of the secrets verbatim."""
        result = str(text)
        return any(value in result for value in self._values)

    def __repr__(self) -> str:
        return f"Secrets({len(self._values)} hidden)"


class _MaskingFilter(logging.Filter):
    """Rewrites each record's message with every known secret masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging module's business
            return True
        masked = redact(message)
        if masked != message:
            record.msg = masked
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text)
        return True


_FILTER = _MaskingFilter()
_installed: set[str] = set()
_installed_lock = threading.Lock()


def install_log_masking(*logger_names: str) -> None:
    """Mask every known secret in the records of these loggers (idempotent).

    Connectors call it for their own loggers and for the client libraries' ones (for
    example ``httpx``, which logs each request's URL).

    Example:
        >>> import logging
        >>> from nanostream.connectors._secrets import Secrets, install_log_masking
        >>> install_log_masking("example.masked")
        >>> secrets = Secrets(["s3cr3t-value"])
        >>> record = logging.makeLogRecord({"msg": "got %s", "args": ("s3cr3t-value",)})
        >>> logging.getLogger("example.masked").filter(record), record.getMessage()
        (True, 'got ***')
    """
    with _installed_lock:
        for name in logger_names:
            if name not in _installed:
                logging.getLogger(name).addFilter(_FILTER)
                _installed.add(name)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): exponential, capped, with jitter.

    The delay is drawn uniformly from the upper half of ``min(cap, base * 2**attempt)``, so
    clients that failed together do not retry together.

    Example:
        >>> from nanostream.connectors._secrets import backoff_delay
        >>> 0.5 <= backoff_delay(0, 1.0, 30.0) <= 1.0
        True
        >>> 15.0 <= backoff_delay(10, 1.0, 30.0) <= 30.0
        True
    """
    ceiling = min(cap, base * (2.0 ** min(attempt, 62)))
    return random.uniform(ceiling / 2.0, ceiling)


def node_label(node: NanoNode) -> str:
    """How log lines name a node: its class, and its name when it has one.

    Example:
        >>> from nanostream.connectors._secrets import node_label
        >>> from nanostream.testing import Collect
        >>> node_label(Collect()), node_label(Collect(name="out"))
        ('Collect', "Collect 'out'")
    """
    return f"{type(node).__name__} {node.name!r}" if node.name else type(node).__name__


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
        >>> from nanostream.connectors._secrets import pause
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
        >>> from nanostream.connectors._secrets import retry_lost_connection
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
                node_label(node),
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
        >>> from nanostream.connectors._secrets import closing_function
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
