"""What the HTTP nodes share: the client and its retries, templates filled from items,
the rate limit, redirects kept to the first origin, and :class:`HttpStatusError`.
"""

from __future__ import annotations

import email.utils
import logging
import string
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from ..._core.context import node_label
from ..._core.errors import OptionError, require
from ..._core.node import NanoNode
from ..._core.policy import POLICY_OPTIONS, backoff_delay
from ...operators._operator import check_choice, check_non_negative, check_positive
from .._fileread import FormatError, parse_json
from .._secrets import Secrets, install_log_masking, mask_url
from .._toolkit import ConnectorError, connector_error, reconnect_options

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpStatusError"]

log = logging.getLogger("nanostream.http")


_LOGGERS = ("nanostream", "nanostream.http", "httpx", "httpcore")


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


Parse = Literal["auto", "json", "text", "bytes"]


Output = Literal["body", "response"]


_require_httpx: Callable[[], Any] = partial(require, "httpx", extra="http")


class HttpStatusError(ConnectorError):
    """The server answered with an error status (after the retries, for 429 and 5xx).

    ``status`` is the HTTP status code, ``url`` the request's URL with secrets masked.

    Example:
        >>> from nanostream.nodes.http import HttpStatusError
        >>> err = HttpStatusError("GET https://x/?token=*** answered 404", status=404, url="https://x/")
        >>> err.status
        404
    """

    def __init__(self, message: str, *, status: int, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


# ----------------------------------------------------------------------------- templates
class _UrlFormatter(string.Formatter):
    """Fills ``{field}`` with the field's value, URL-encoded (``/`` included)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        return quote(super().format_field(value, format_spec), safe="")


_URL_FORMATTER = _UrlFormatter()


_PLAIN_FORMATTER = string.Formatter()


def _single_field(template: str) -> str | None:
    """The field name if ``template`` is exactly one ``{field}``, else None."""
    try:
        parts = list(_PLAIN_FORMATTER.parse(template))
    except ValueError:
        return None
    if len(parts) == 1:
        literal, field, spec, conversion = parts[0]
        if not literal and field and not spec and conversion is None:
            return field
    return None


def _fields(item: Any) -> dict[str, Any]:
    fields = dict(item) if isinstance(item, Mapping) else {}
    fields.setdefault("item", item)
    return fields


class _Templates:
    """A request's URL, query, headers and JSON body, filled from an item's fields."""

    def __init__(
        self,
        what: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, Any] | None,
        json: Any,
        secrets: Secrets,
    ) -> None:
        self.what = what
        self.url = url
        self.params = dict(params or {})
        self.headers = dict(headers or {})
        self.json = json
        self.secrets = secrets
        for template in [url, *self.params.values(), *self.headers.values()]:
            if isinstance(template, str):
                self._check(template)

    def _check(self, template: str) -> None:
        try:
            list(_PLAIN_FORMATTER.parse(template))
        except ValueError as exc:
            raise OptionError(
                f"{self.what}: bad template {self.secrets.scrub(template)!r} ({exc}); "
                "write a literal brace as {{ or }}"
            ) from None

    def _fill(self, template: str, fields: Mapping[str, Any], formatter: string.Formatter) -> str:
        try:
            return formatter.vformat(template, (), fields)
        except (KeyError, IndexError, AttributeError) as exc:
            raise ConnectorError(
                f"{self.what}: the template {self.secrets.scrub(template)!r} needs field "
                f"{exc.args[0]!r}, which an item lacks (it has {sorted(fields)})"
            ) from None

    def url_for(self, fields: Mapping[str, Any]) -> str:
        return self._fill(self.url, fields, _URL_FORMATTER)

    def value(self, template: Any, fields: Mapping[str, Any]) -> Any:
        """A filled value: strings are templates; ``"{x}"`` alone keeps x's type."""
        if isinstance(template, str):
            field = _single_field(template)
            if field is not None and field in fields:
                return fields[field]
            return self._fill(template, fields, _PLAIN_FORMATTER)
        if isinstance(template, Mapping):
            return {k: self.value(v, fields) for k, v in template.items()}
        if isinstance(template, list):
            return [self.value(v, fields) for v in template]
        return template

    def params_for(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        filled = {k: self.value(v, fields) for k, v in self.params.items()}
        return {k: v for k, v in filled.items() if v is not None}

    def headers_for(self, fields: Mapping[str, Any]) -> dict[str, str]:
        return {k: str(self.value(v, fields)) for k, v in self.headers.items()}

    def json_for(self, fields: Mapping[str, Any]) -> Any:
        return None if self.json is None else self.value(self.json, fields)


# ----------------------------------------------------------------------------- requests
class _RateLimit:
    """At most ``rate`` requests per second, shared by all of a node's workers."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = 0.0
        self.lock = threading.Lock()

    def reserve(self) -> float:
        """Seconds to wait before the caller's request may go."""
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
            return at - now


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _HttpNode(NanoNode):
    """What the HTTP nodes share: the client, templates, retries, rate limit, parsing."""

    kind = "HTTP"
    policy_options = POLICY_OPTIONS  # each wraps NanoNode's node function, or HttpRequest's
    own_options = ("retries", "backoff", "timeout")  # of each request
    holds_items = False  # each item is done once its answers are out (see HttpRequest)
    retries: int  # these three are set, checked, by reconnect_options()
    backoff: float
    max_backoff: float

    def __init__(
        self,
        url: str,
        method: str,
        *,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, Any] | None,
        json: Any,
        parse: Parse,
        timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float,
        max_retry_after: float,
        rate_limit: float | None,
        client_options: Mapping[str, Any] | None,
        name: str | None,
        queue_size: int | None,
        batch_size: int | None,
        options: Mapping[str, Any],
    ) -> None:
        super().__init__(name=name, queue_size=queue_size, batch_size=batch_size)
        _require_httpx()
        label = node_label(self, with_class=True)
        check_positive(label, "timeout", timeout, unit="seconds")
        check_positive(label, "rate_limit", rate_limit, unit="requests per second", optional=True)
        check_choice(label, "parse", parse, ("auto", "json", "text", "bytes"))
        reconnect_options(self, retries=retries, backoff=backoff, max_backoff=max_backoff)
        check_non_negative(label, "max_retry_after", max_retry_after, unit="seconds")
        self.method = method.upper()
        self.secrets = Secrets()
        self.secrets.add_url(url)
        self.secrets.add_headers(headers)
        self.url_shown = mask_url(url)
        self.templates = _Templates(
            self.kind, url, params=params, headers=headers, json=json, secrets=self.secrets
        )
        self.parse = parse
        self.timeout = float(timeout)
        self.max_retry_after = max_retry_after
        self.rate_limit = rate_limit
        self.client_options = dict(client_options or {})
        self.follow_redirects = bool(self.client_options.pop("follow_redirects", True))
        self.max_redirects = self.client_options.pop("max_redirects", 20)
        check_non_negative(label, "client_options max_redirects", self.max_redirects, integer=True)
        self.requests_sent = 0
        self._limiter = _RateLimit(rate_limit) if rate_limit else None
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None
        #: Requests in flight at once on ``httpx.AsyncClient``; None: the blocking client.
        self.concurrency: int | None = None
        self._lock = threading.Lock()
        self.configure(**options)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, method={self.method!r}, "
            f"url={self.url_shown!r})"
        )

    def render_url(self, item: Any) -> str:
        """The URL for ``item``: the template filled with its fields, each URL-encoded.

        Example:
            >>> from nanostream.nodes.http import HttpRequest
            >>> HttpRequest("https://h/{user}/repos?sort={order}").render_url(
            ...     {"user": "ada", "order": "a&b"}
            ... )
            'https://h/ada/repos?sort=a%26b'
        """
        return self.templates.url_for(_fields(item))

    # ------------------------------------------------------------------ client
    def _client_options(self, connections: int) -> dict[str, Any]:
        """The options of the node's client, blocking or async, for ``connections`` at once."""
        import httpx

        install_log_masking(*_LOGGERS)
        size = max(10, connections)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        # Redirects are followed by _follow, which keeps credentials to their origin.
        return {
            "timeout": httpx.Timeout(self.timeout),
            "limits": limits,
            **self.client_options,
            "follow_redirects": False,
        }

    def _open(self, connections: int = 10) -> None:
        """Make the node's ``httpx.Client``, for ``connections`` requests at once."""
        import httpx

        from ._connections import client_options

        self._client = httpx.Client(**client_options(self, connections, blocking=True))

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _open_async(self) -> None:
        """Make the node's ``httpx.AsyncClient``, on the node's event loop."""
        import httpx

        from ._connections import client_options

        self._async_client = httpx.AsyncClient(**client_options(self, self.concurrency or 1))

    async def _close_async(self) -> None:
        client, self._async_client = self._async_client, None
        if client is not None:
            await client.aclose()

    def _check_concurrency(self, concurrency: int | None) -> int | None:
        """``concurrency`` if it is None or a positive integer; else an ``OptionError``."""
        label, unit = node_label(self, with_class=True), "requests in flight at once"
        check_positive(label, "concurrency", concurrency, integer=True, unit=unit, optional=True)
        return concurrency

    # ------------------------------------------------------------------ one request
    def _send(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        wait: Callable[[float], object] | None = None,
        home: _Home | None = None,
    ) -> httpx.Response:
        """Send one request, retrying as configured; returns a successful response.

        ``home`` is where the node's credentials may go (see :class:`_Home`); by default
        the origin of ``url``.
        """
        import httpx

        client = self._client
        if client is None:
            raise ConnectorError(f"{self.kind} is not running: its client is closed")
        wait = wait or self._context().pause
        attempts = _Attempts(self, url, params, home)
        while True:
            if (delay := attempts.start()) > 0:
                wait(delay)
            try:
                request = client.build_request(
                    self.method, attempts.target, headers=headers, json=json
                )
                response = self._follow(
                    client, self._send_one(client, request, attempts.home), attempts.home
                )
            except httpx.TransportError as exc:
                delay = attempts.failed(exc)
            else:
                if (delay_or_none := attempts.answered(response)) is None:
                    return response
                delay = delay_or_none
            wait(delay)

    def _count_sent(self) -> None:
        with self._lock:
            self.requests_sent += 1

    def _after_transport_error(
        self, exc: httpx.TransportError, target: httpx.URL | str, attempt: int
    ) -> float:
        """Seconds to wait before retrying after ``exc``; raises when it is not retried."""
        import httpx

        method = self.method
        shown = mask_url(target)
        connect = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
        if not (connect or method in _IDEMPOTENT) or attempt >= self.retries:
            what = "could not connect to" if connect else "failed talking to"
            raise connector_error(
                f"{self.kind} {what} {method} {shown} after {attempt + 1} attempt(s): "
                f"{type(exc).__name__}: {exc}",
                exc,
                self.secrets,
            ) from None
        delay = backoff_delay(attempt, self.backoff, self.max_backoff)
        self._log_retry(shown, f"{type(exc).__name__}: {self.secrets.scrub(exc)}", attempt, delay)
        return delay

    def _after_error_status(self, response: httpx.Response, home: _Home, attempt: int) -> float:
        """Seconds to wait before retrying after an answer >= 400; raises when not retried."""
        self._count_sent()
        method = self.method
        status = response.status_code
        shown = mask_url(response.request.url)
        retryable = status == 429 or status >= 500
        if not retryable or attempt >= self.retries:
            raise HttpStatusError(
                self.secrets.scrub(
                    f"{self.kind}: {method} {shown} answered {status} "
                    f"{response.reason_phrase}"
                    + (f" after {attempt + 1} attempts" if retryable else "")
                    + f": {_snippet(response)}"
                    + _withheld(home)
                ),
                status=status,
                url=shown,
            )
        delay = backoff_delay(attempt, self.backoff, self.max_backoff)
        after = _retry_after(response)
        if after is not None:
            delay = min(after, self.max_retry_after)
        self._log_retry(shown, f"{status} {response.reason_phrase}", attempt, delay)
        return delay

    def _log_retry(self, shown: str, reason: str, attempt: int, delay: float) -> None:
        log.warning(
            "%s: %s %s: %s; retry %d of %d in %.2fs",
            node_label(self, with_class=True),
            self.method,
            shown,
            reason,
            attempt + 1,
            self.retries,
            delay,
        )

    def _credential_headers(self) -> set[str]:
        """The names (lower case) of the headers the user configured, and the credentials."""
        names = {"authorization", "proxy-authorization", "cookie"}
        configured = [self.templates.headers, self.client_options.get("headers") or {}]
        configured.append(getattr(self, "headers", None) or {})
        for headers in configured:
            names.update(str(name).lower() for name in headers)
        return names

    def _send_one(
        self, client: httpx.Client, request: httpx.Request, home: _Home
    ) -> httpx.Response:
        """Send ``request`` as it is if ``home`` admits its URL, else without credentials.

        Without credentials means without the headers the node was given (``headers=``,
        ``client_options`` headers), without ``Authorization`` (also httpx ``auth``) and
        without cookies.
        """
        if self._admitted(request, home):
            return client.send(request)
        return client.send(request, auth=None)

    def _admitted(self, request: httpx.Request, home: _Home) -> bool:
        """Whether ``home`` admits ``request``'s URL; if not, its credential headers go."""
        if home.admits(request.url):
            return True
        for name in self._credential_headers():
            request.headers.pop(name, None)
        return False

    def _follow(
        self, client: httpx.Client, response: httpx.Response, home: _Home
    ) -> httpx.Response:
        """Follow ``response``'s redirects; configured headers, auth and cookies stay home.

        A redirect to the same origin (scheme, host and port) keeps the request as it was;
        from the first redirect to another origin on, the request goes without the headers
        the node was given, without ``Authorization`` and without cookies.
        """
        redirects = 0
        while (request := self._next_redirect(response, redirects, home)) is not None:
            redirects += 1
            response = self._send_one(client, request, home)
        return response

    def _next_redirect(
        self, response: httpx.Response, redirects: int, home: _Home
    ) -> httpx.Request | None:
        """The request ``response`` redirects to, None if it is not followed; raises when
        ``redirects`` (those followed so far in the chain) reached ``max_redirects``."""
        following = response.next_request if self.follow_redirects else None
        if following is not None and redirects >= self.max_redirects:
            raise ConnectorError(
                f"{self.kind}: {self.method} {mask_url(home.origin)} was redirected more "
                f"than max_redirects={self.max_redirects} times (last to "
                f"{mask_url(following.url)})"
            )
        return following

    def _parse(self, response: httpx.Response) -> Any:
        parse = self.parse
        if parse == "bytes":
            return response.content
        if parse == "text":
            return response.text
        is_json = "json" in response.headers.get("content-type", "")
        if parse == "json" or is_json:
            if not response.content:
                return None
            try:
                return parse_json(response.content)
            except FormatError as exc:
                deep = isinstance(exc.__context__, RecursionError)
                raise ConnectorError(
                    f"{self.kind}: the answer of {mask_url(response.request.url)} is not JSON "
                    f"({'nested too deeply: ' if deep else ''}{exc.message}); use parse='text' "
                    "to take it as text"
                ) from None
        return response.text


class _Attempts:
    """The attempts at one request of a node, without their I/O: the blocking and the async
    client both drive it, so that they decide alike.

    Each attempt begins with :meth:`start` (the seconds the rate limit asks to wait first)
    and ends with :meth:`answered` or :meth:`failed`, which count it and give the seconds
    to wait before the next attempt (None: done), or raise when it is not retried.
    """

    def __init__(
        self, node: _HttpNode, url: str, params: Mapping[str, Any] | None, home: _Home | None
    ) -> None:
        self.node = node
        #: The URL, parsed once: the requests of each attempt are built from it.
        self.target = _target(url, params)
        #: Where the node's credentials may go; by default the origin of ``url``.
        self.home = home or _Home(self.target)
        self.left_before = self.home.left
        self.attempt = 0

    def start(self) -> float:
        """Begin an attempt; the seconds to wait before it is sent."""
        self.home.left = self.left_before  # each attempt runs the chain again from its start
        limiter = self.node._limiter
        return limiter.reserve() if limiter is not None else 0.0

    def answered(self, response: httpx.Response) -> float | None:
        """None when ``response`` is a success; else the seconds before the next attempt."""
        if response.status_code < 400:
            self.node._count_sent()
            return None
        delay = self.node._after_error_status(response, self.home, self.attempt)
        self.attempt += 1
        return delay

    def failed(self, exc: httpx.TransportError) -> float:
        """The seconds before the next attempt after ``exc``; raises if it is not retried."""
        delay = self.node._after_transport_error(exc, self.target, self.attempt)
        self.attempt += 1
        return delay


def _target(url: str, params: Mapping[str, Any] | None) -> httpx.URL:
    """``url`` with ``params`` added to its own query (httpx would replace the query)."""
    import httpx

    parsed = httpx.URL(url)
    return parsed.copy_merge_params(params) if params else parsed


def _origin(url: httpx.URL) -> str:
    """``scheme://host:port`` of ``url`` (the default port written out)."""
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return f"{url.scheme}://{url.host}:{port}"


def _withheld(home: _Home) -> str:
    """What an error adds when its request went without the node's credentials."""
    if not home.left:
        return ""
    return (
        f" (sent without the node's headers, auth and cookies, which go only to "
        f"{mask_url(home.origin)}: the request had left that origin)"
    )


class _Home:
    """The origin a node's credentials belong to, over one chain of requests.

    The chain is a request and its redirects, or the pages an :class:`HttpPaginator`
    reads for one item. Its first URL sets the origin. Every request of the chain to that
    origin carries the configured headers, auth and cookies until one request goes to
    another origin; from then on, none does, even back at home (the URLs were chosen by
    the other origin).

    Example:
        >>> import httpx
        >>> home = _Home(httpx.URL("https://api.example.com/a"))
        >>> home.admits(httpx.URL("https://api.example.com:443/b"))
        True
        >>> home.admits(httpx.URL("https://cdn.example.com/c"))
        False
        >>> home.admits(httpx.URL("https://api.example.com/d"))
        False
    """

    def __init__(self, first: httpx.URL) -> None:
        self.origin = _origin(first)
        self.left = False

    def admits(self, url: httpx.URL) -> bool:
        """Whether a request to ``url`` may carry the credentials (and note it if not)."""
        if _origin(url) != self.origin:
            self.left = True
        return not self.left


def _snippet(response: httpx.Response, limit: int = 200) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):  # an undecodable body: show nothing
        return "(body not shown)"
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "") if text else "(empty body)"


def _path(value: Any, path: str | None) -> Any:
    """The value at a dotted ``path`` ("data.items") of a parsed JSON body."""
    if path is None:
        return value
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            value = value[int(part)]
        else:
            return None
    return value


def _items_at(body: Any, path: str | None, what: str) -> list[Any]:
    items = _path(body, path)
    if items is None:
        return []
    if not isinstance(items, list):
        where = f"at {path!r}" if path else "(the whole body)"
        raise ConnectorError(
            f"{what}: expected a list of items {where}, got a {type(items).__name__}; "
            "set items= to the path of the list"
        )
    return items
