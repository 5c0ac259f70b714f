"""Secrets never reach error records, error messages or logs: the run's redaction.

Connectors register the exact secret strings they hold (passwords, API tokens) with
:func:`remember_secret`; :func:`redact` hides those and anything that looks like a
credential (a URL's password, ``token=...``, ``Bearer ...``). The core applies it to every
:class:`~nanostream.ErrorRecord` (message and traceback) and every ``NodeFailed`` message;
the original exception, kept as ``__cause__`` for debugging, is left as it is.

Turning an exception into text can itself fail: ``str()`` runs the exception's (or its
arguments') own code. :func:`exception_text` is how nanostream writes an exception in a
message or a log line: it is masked like :func:`redact` and never raises.

Example:
    >>> from nanostream._core.redact import redact, remember_secret
    >>> remember_secret("s3cr3t-api-value")
    >>> redact("GET /items?x=1 failed with s3cr3t-api-value; password=hunter2")
    'GET /items?x=1 failed with ***; password=***'
"""

from __future__ import annotations

import re
import threading

__all__ = [
    "MASK",
    "exception_text",
    "hide_secrets",
    "mask_text",
    "redact",
    "remember_secret",
    "safe_str",
]

MASK = "***"

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^\s/@:]*):(?P<pw>[^\s/@]*)@")
_KEY_VALUE = re.compile(
    r"(?i)(?P<name>\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"
    r"signature|sig|credential|key)\b)(?P<sep>\s*[=:]\s*)(?P<quote>['\"]?)(?P<value>[^\s&;,'\"]+)"
)
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer|basic|token)\s+(?P<value>[A-Za-z0-9._~+/=-]{6,})")


def mask_text(text: str) -> str:
    """``text`` with URL passwords, ``name=value`` credentials and bearer tokens masked.

    Example:
        >>> from nanostream._core.redact import mask_text
        >>> mask_text("connect to mysql://root:pw@h/db failed; token=xyz")
        'connect to mysql://root:***@h/db failed; token=***'
    """
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['name']}{m['sep']}{m['quote']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['scheme']} {MASK}", text)


class _Registry:
    """Every secret registered in this process, longest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        with self._lock:
            if value not in self.values:
                self.values = tuple(sorted({*self.values, value}, key=len, reverse=True))


_REGISTRY = _Registry()


def remember_secret(value: str) -> None:
    """Hide ``value`` wherever :func:`redact` is applied, from now on, in this process."""
    if value:
        _REGISTRY.add(value)


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder naming the failure when ``str()`` raises.

    Example:
        >>> from nanostream._core.redact import safe_str
        >>> class Broken:
        ...     def __str__(self):
        ...         raise RuntimeError("no text")
        >>> safe_str(ValueError(Broken()))
        '<unprintable ValueError: str() raised RuntimeError>'
    """
    try:
        text = str(value)
    except Exception as exc:  # noqa: BLE001 - the placeholder says what happened
        return f"<unprintable {type(value).__name__}: str() raised {type(exc).__name__}>"
    return text


def hide_secrets(text: str) -> str:
    """``text`` with every remembered secret replaced by ``***`` (and nothing else changed).

    Example:
        >>> from nanostream._core.redact import hide_secrets, remember_secret
        >>> remember_secret("tok-0123456789")
        >>> hide_secrets("redis://:tok-0123456789@cache:6379/0"), hide_secrets("token=abc")
        ('redis://:***@cache:6379/0', 'token=abc')
    """
    for value in _REGISTRY.values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact(text: object) -> str:
    """``str(text)`` with every remembered secret and anything credential-like masked.

    It never raises: an object whose ``str()`` fails gives the :func:`safe_str` placeholder.

    Example:
        >>> from nanostream._core.redact import redact
        >>> redact("auth: Bearer abcdef123456")
        'auth: Bearer ***'
    """
    result = safe_str(text)
    for value in _REGISTRY.values:
        if value in result:
            result = result.replace(value, MASK)
    return mask_text(result)


def exception_text(exc: BaseException) -> str:
    """``exc`` as ``Type: message`` for messages and logs: masked, and it never raises.

    Example:
        >>> from nanostream._core.redact import exception_text
        >>> exception_text(ConnectionError("login failed, password=hunter2"))
        'ConnectionError: login failed, password=***'
        >>> class Broken:
        ...     def __str__(self):
        ...         raise RuntimeError("no text")
        >>> exception_text(ValueError(Broken()))
        'ValueError: <unprintable ValueError: str() raised RuntimeError>'
    """
    return f"{type(exc).__name__}: {redact(exc)}"
