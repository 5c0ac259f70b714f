"""Secrets masking for the connectors: credentials never reach logs or error messages.

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
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .._core.redact import MASK, mask_text, redact, remember_secret

__all__ = [
    "MASK",
    "Secrets",
    "install_log_masking",
    "is_sensitive_name",
    "mask_headers",
    "mask_text",
    "mask_url",
]


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
