"""HTTP APIs through httpx: :class:`HttpRequest`, :class:`HttpPaginator`, :class:`HttpPoller`.

Install the extra with ``pip install 'nanostream[http]'``. Every request has a timeout;
connection errors, ``429 Too Many Requests`` (honouring ``Retry-After``) and ``5xx`` answers
are retried with exponential back-off and jitter; other ``4xx`` answers fail at once with
:class:`HttpStatusError`. URLs, query parameters, headers and JSON bodies are templates
filled from each item (``"/users/{id}"``). Tokens in headers and passwords or keys in URLs
never appear in logs, reprs or error messages.

Example:
    >>> from nanostream.nodes.http import HttpRequest
    >>> node = HttpRequest(
    ...     "https://api.example.com/users/{id}?api_key=k-123456",
    ...     headers={"Authorization": "Bearer tok-abcdef"},
    ... )
    >>> node
    HttpRequest(name=None, method='GET', url='https://api.example.com/users/{id}?api_key=***')
    >>> node.render_url({"id": "a b/c"})
    'https://api.example.com/users/a%20b%2Fc?api_key=k-123456'
"""

from __future__ import annotations

import email.utils
import logging
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urljoin

from .._core.errors import ConfigError, MissingDependencyError
from .._core.node import NanoNode, NodeFunction
from .._core.policy import POLICY_OPTIONS
from .._core.signals import SourceStopped
from ..operators._operator import POOL_TICK_S, map_items
from ._secrets import Secrets, install_log_masking, mask_url
from ._toolkit import (
    ConnectorError,
    backoff_delay,
    closing_function,
    connector_error,
    node_label,
    pause,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["ConnectorError", "HttpPaginator", "HttpPoller", "HttpRequest", "HttpStatusError"]

log = logging.getLogger("nanostream.http")

_LOGGERS = ("nanostream", "nanostream.http", "httpx", "httpcore")
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

Parse = Literal["auto", "json", "text", "bytes"]
Output = Literal["body", "response"]


def _require_httpx() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise MissingDependencyError("httpx", extra="http") from None


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
            raise ConfigError(
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
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"{self.kind}: timeout must be positive seconds, got {timeout!r}")
        if rate_limit is not None and rate_limit <= 0:
            raise ConfigError(f"{self.kind}: rate_limit must be requests per second > 0")
        if parse not in ("auto", "json", "text", "bytes"):
            raise ConfigError(f"{self.kind}: parse must be auto, json, text or bytes: {parse!r}")
        if retries < 0:
            raise ConfigError(f"{self.kind}: retries must be 0 or more, got {retries!r}")
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
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.rate_limit = rate_limit
        self.client_options = dict(client_options or {})
        self.follow_redirects = bool(self.client_options.pop("follow_redirects", True))
        self.max_redirects = self.client_options.pop("max_redirects", 20)
        if not isinstance(self.max_redirects, int) or self.max_redirects < 0:
            raise ConfigError(
                f"{self.kind}: client_options max_redirects must be an integer >= 0, "
                f"got {self.max_redirects!r}"
            )
        self.requests_sent = 0
        self._limiter = _RateLimit(rate_limit) if rate_limit else None
        self._client: httpx.Client | None = None
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
    def _open(self, connections: int = 10) -> None:
        import httpx

        install_log_masking(*_LOGGERS)
        limits = httpx.Limits(
            max_connections=max(10, connections), max_keepalive_connections=max(10, connections)
        )
        # Redirects are followed by _follow, which keeps credentials to their origin.
        options = {"limits": limits, **self.client_options, "follow_redirects": False}
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout), **options)

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _wait_in_node(self, seconds: float) -> None:
        pause(self, seconds)

    # ------------------------------------------------------------------ one request
    def _send(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        wait: Callable[[float], None] | None = None,
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
        wait = wait or self._wait_in_node
        method = self.method
        target: httpx.URL | str = url
        if params:  # httpx would replace the URL's own query with params: merge them
            target = httpx.URL(url).copy_merge_params(params)
        home = home or _Home(httpx.URL(url))
        left_before = home.left
        attempt = 0
        while True:
            home.left = left_before  # each attempt runs the chain again from where it began
            if self._limiter is not None:
                delay = self._limiter.reserve()
                if delay > 0:
                    wait(delay)
            shown = mask_url(target)
            try:
                request = client.build_request(method, target, headers=headers, json=json)
                response = self._follow(client, self._send_one(client, request, home), home)
            except httpx.TransportError as exc:
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
                reason = f"{type(exc).__name__}: {self.secrets.scrub(exc)}"
            else:
                with self._lock:
                    self.requests_sent += 1
                status = response.status_code
                if status < 400:
                    return response
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
                reason = f"{status} {response.reason_phrase}"
            attempt += 1
            log.warning(
                "%s: %s %s: %s; retry %d of %d in %.2fs",
                node_label(self),
                method,
                shown,
                reason,
                attempt,
                self.retries,
                delay,
            )
            wait(delay)

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
        if home.admits(request.url):
            return client.send(request)
        for name in self._credential_headers():
            request.headers.pop(name, None)
        return client.send(request, auth=None)

    def _follow(
        self, client: httpx.Client, response: httpx.Response, home: _Home
    ) -> httpx.Response:
        """Follow ``response``'s redirects; configured headers, auth and cookies stay home.

        A redirect to the same origin (scheme, host and port) keeps the request as it was;
        from the first redirect to another origin on, the request goes without the headers
        the node was given, without ``Authorization`` and without cookies.
        """
        if not self.follow_redirects:
            return response
        redirects = 0
        while response.next_request is not None:
            if redirects >= self.max_redirects:
                raise ConnectorError(
                    f"{self.kind}: {self.method} {mask_url(home.origin)} was redirected more "
                    f"than max_redirects={self.max_redirects} times (last to "
                    f"{mask_url(response.next_request.url)})"
                )
            redirects += 1
            response = self._send_one(client, response.next_request, home)
        return response

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
                return response.json()
            except (ValueError, RecursionError) as exc:
                # json raises RecursionError for arrays or objects nested deeper than the
                # interpreter's recursion limit: not JSON this process can read, either.
                why = f"nested too deeply: {exc}" if isinstance(exc, RecursionError) else exc
                raise ConnectorError(
                    f"{self.kind}: the answer of {mask_url(response.request.url)} is not JSON "
                    f"({why}); use parse='text' to take it as text"
                ) from None
        return response.text


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


# ----------------------------------------------------------------------------- HttpRequest
class HttpRequest(_HttpNode):
    """Sends a request per item and emits the answer (the parsed body by default).

    ``url`` and the values of ``params``, ``headers`` and ``json`` are templates filled from
    the item's fields (``{field}``; ``{item}`` is the whole item); values in the URL are
    URL-encoded, and a JSON value that is exactly ``"{field}"`` keeps the field's type.
    ``parse`` is ``"auto"`` (JSON when the answer says so, else text), ``"json"``,
    ``"text"`` or ``"bytes"``; ``output="response"`` emits a dict with ``status``,
    ``headers``, ``body`` and the ``item`` instead of the body alone.

    Every request has a ``timeout`` (seconds). Connection errors, 429 and 5xx answers are
    retried ``retries`` times, waiting ``backoff * 2**attempt`` seconds (capped at
    ``max_backoff``, with jitter) or what ``Retry-After`` asks (capped at
    ``max_retry_after``); read errors are retried for idempotent methods only. Then the
    node fails with :class:`HttpStatusError` or :class:`ConnectorError`.

    Redirects are followed (``client_options`` ``max_redirects``, default 20, and
    ``follow_redirects``); one to another origin goes without the configured headers,
    ``Authorization`` and cookies.

    ``workers=N`` sends up to N requests at once (in N threads) and still emits answers in
    the items' order, each as soon as it and those before it have come (within the node's
    ``tick_interval``, 0.05 s, when no item arrives meanwhile). ``rate_limit`` caps the
    requests per second over all workers.

    The node options apply to each item as for any node, on the worker threads too:
    ``HttpRequest(url, on_error="skip")`` skips an item whose request still fails, with an
    error record on the ``errors`` port; ``max_errors`` and ``max_error_rate`` bound them.
    ``timeout``, ``retries`` and ``backoff`` are those of each request, given here or with
    ``configure()`` alike; the node retries by itself, so ``on_error="retry"`` is refused.

    Example:
        >>> from nanostream.nodes.http import HttpRequest
        >>> node = HttpRequest(
        ...     "https://api.example.com/orders",
        ...     method="POST",
        ...     json={"order": "{id}", "lines": "{lines}"},
        ...     workers=8,
        ...     rate_limit=50,
        ... )
        >>> node.templates.json_for({"id": 7, "lines": [1, 2]})
        {'order': 7, 'lines': [1, 2]}
    """

    kind = "HttpRequest"

    def __init__(
        self,
        url: str,
        method: str = "GET",
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        json: Any = None,
        parse: Parse = "auto",
        output: Output = "body",
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        workers: int = 1,
        rate_limit: float | None = None,
        client_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        queue_size: int | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            url,
            method,
            params=params,
            headers=headers,
            json=json,
            parse=parse,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            max_retry_after=max_retry_after,
            rate_limit=rate_limit,
            client_options=client_options,
            name=name,
            queue_size=queue_size,
            batch_size=batch_size,
            options=options,
        )
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"HttpRequest: workers must be a positive integer, got {workers!r}")
        if output not in ("body", "response"):
            raise ConfigError(f"HttpRequest: output must be 'body' or 'response': {output!r}")
        self.workers = workers
        self.output = output
        # With workers, the requests in flight are items kept between reads; the node asks
        # for ticks so that answers go out while no item comes.
        self.holds_items = workers > 1
        if workers > 1:
            self.tick_interval = POOL_TICK_S

    def setup(self) -> None:
        self._open(self.workers)

    def call(self, item: Any) -> Any:
        """Send the request for ``item`` and return what the node would emit.

        Runs in the node's thread or one of its workers, once the node is running.
        """
        fields = _fields(item)
        t = self.templates
        response = self._send(
            t.url_for(fields),
            params=t.params_for(fields),
            headers=t.headers_for(fields),
            json=t.json_for(fields),
        )
        body = self._parse(response)
        if self.output == "body":
            return body
        return {
            "status": response.status_code,
            "headers": dict(response.headers),
            "body": body,
            "item": item,
        }

    def process_item(self, item: Any) -> Iterator[Any]:
        yield self.call(item)

    def _answer(self, item: Any) -> tuple[Any]:
        return (self.call(item),)

    def as_function(self) -> NodeFunction:
        if self.workers == 1:
            return closing_function(super().as_function(), self._close)
        self.validate()
        node = self

        def http_request(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            node.setup()
            map_items(
                node,
                inp,
                outp,
                node._answer,
                workers=node.workers,
                release=node.release_items,
            )

        return closing_function(http_request, self._close)


# ----------------------------------------------------------------------------- HttpPaginator
class HttpPaginator(_HttpNode):
    """For each item, follows every page of a paginated API and emits every item of every page.

    The first page is the ``url`` template filled from the item (as in
    :class:`HttpRequest`). ``items`` is the dotted path of the list in each JSON page
    (``"data"``, ``"results.items"``; ``None`` when the page is the list itself). Styles:

    - ``style="next"``: the next page's URL is at the dotted path ``next`` of the page
      (relative URLs are resolved), or in the ``Link: <...>; rel="next"`` header when
      ``next`` is ``None``. Pagination ends when there is none.
    - ``style="cursor"``: the page's value at the dotted path ``cursor`` is sent as the
      query parameter ``cursor_param`` for the next page; ends on an empty cursor.
    - ``style="offset"``: the query parameters ``offset_param`` and ``limit_param`` step by
      ``page_size``; ends on a page shorter than ``page_size``.

    ``max_pages`` bounds the pages read per item. Retries, timeouts and the rate limit are
    those of :class:`HttpRequest`.

    Example:
        >>> from nanostream.nodes.http import HttpPaginator
        >>> HttpPaginator("https://api.example.com/repos", style="cursor", cursor="meta.next")
        HttpPaginator(name=None, method='GET', url='https://api.example.com/repos')
    """

    kind = "HttpPaginator"

    def __init__(
        self,
        url: str,
        *,
        style: Literal["next", "cursor", "offset"] = "next",
        items: str | None = None,
        next: str | None = None,
        cursor: str | None = None,
        cursor_param: str = "cursor",
        offset_param: str = "offset",
        limit_param: str = "limit",
        page_size: int = 100,
        max_pages: int | None = None,
        method: str = "GET",
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        rate_limit: float | None = None,
        client_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        queue_size: int | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            url,
            method,
            params=params,
            headers=headers,
            json=json,
            parse="json",
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            max_retry_after=max_retry_after,
            rate_limit=rate_limit,
            client_options=client_options,
            name=name,
            queue_size=queue_size,
            batch_size=batch_size,
            options=options,
        )
        if style not in ("next", "cursor", "offset"):
            raise ConfigError(f"HttpPaginator: style must be next, cursor or offset: {style!r}")
        if style == "cursor" and not cursor:
            raise ConfigError("HttpPaginator style='cursor' needs cursor=: the path of the cursor")
        if page_size < 1 or (max_pages is not None and max_pages < 1):
            raise ConfigError("HttpPaginator: page_size and max_pages must be positive")
        self.style = style
        self.items = items
        self.next = next
        self.cursor = cursor
        self.cursor_param = cursor_param
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.page_size = page_size
        self.max_pages = max_pages

    def setup(self) -> None:
        self._open()

    def as_function(self) -> NodeFunction:
        return closing_function(super().as_function(), self._close)

    def process_item(self, item: Any) -> Iterator[Any]:
        import httpx

        fields = _fields(item)
        t = self.templates
        url = t.url_for(fields)
        base = t.params_for(fields)
        headers, body = t.headers_for(fields), t.json_for(fields)
        params: dict[str, Any] | None = dict(base)
        offset = 0
        if self.style == "offset":
            params = {**base, self.offset_param: 0, self.limit_param: self.page_size}
        pages = 0
        home = _Home(httpx.URL(url))  # a next page elsewhere gets no credentials
        while True:
            response = self._send(url, params=params, headers=headers, json=body, home=home)
            page = self._parse(response)
            found = _items_at(page, self.items, self.kind)
            yield from found
            pages += 1
            if self.max_pages is not None and pages >= self.max_pages:
                return
            if self.style == "next":
                link = (
                    _path(page, self.next)
                    if self.next is not None
                    else response.links.get("next", {}).get("url")
                )
                if not link:
                    return
                url, params = urljoin(str(response.url), str(link)), None
            elif self.style == "cursor":
                token = _path(page, self.cursor)
                if token in (None, ""):
                    return
                params = {**base, self.cursor_param: token}
            else:
                if len(found) < self.page_size:
                    return
                offset += len(found)
                params = {**base, self.offset_param: offset, self.limit_param: self.page_size}


# ----------------------------------------------------------------------------- HttpPoller
class HttpPoller(_HttpNode):
    """A source that requests ``url`` every ``interval`` seconds and emits each answer.

    The first request goes at once. ``items`` (a dotted path, or ``""`` for the body
    itself) emits each element of a JSON list instead of the whole answer. With
    ``changes_only=True`` the poller sends ``If-None-Match`` / ``If-Modified-Since`` from
    the previous answer and emits nothing on ``304 Not Modified``. ``stop()`` ends the
    poller at once, also while it waits to retry. ``url``, ``params``, ``headers`` and
    ``json`` are sent as given (no templates: there is no item).

    The node's error policy applies to each poll: a request that still fails after the
    poller's own ``retries`` fails the run (``on_error="fail"``, the default), or with
    ``on_error="skip"`` is recorded (an error record on the ``errors`` port, counted for
    ``max_errors`` and ``max_error_rate``) and the poller polls again after ``interval``.

    Example:
        >>> from nanostream.nodes.http import HttpPoller
        >>> HttpPoller("https://status.example.com/api/v2/summary.json", interval=60)
        HttpPoller(name=None, method='GET', url='https://status.example.com/api/v2/summary.json')
    """

    kind = "HttpPoller"
    policy_per_poll = True

    def __init__(
        self,
        url: str,
        interval: float,
        *,
        items: str | None = None,
        changes_only: bool = False,
        method: str = "GET",
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        json: Any = None,
        parse: Parse = "auto",
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        client_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        queue_size: int | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            url,
            method,
            params=None,
            headers=None,
            json=None,
            parse=parse,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            max_retry_after=max_retry_after,
            rate_limit=None,
            client_options=client_options,
            name=name,
            queue_size=queue_size,
            batch_size=batch_size,
            options=options,
        )
        if interval <= 0:
            raise ConfigError(f"HttpPoller: interval must be positive seconds, got {interval!r}")
        self.secrets.add_headers(headers)
        self.url = url
        self.interval = float(interval)
        self.items = items
        self.changes_only = changes_only
        self.params = dict(params or {})
        self.headers = dict(headers or {})
        self.json = json

    def setup(self) -> None:
        self._open()

    def as_function(self) -> NodeFunction:
        return closing_function(super().as_function(), self._close)

    def _wait_or_stop(self, seconds: float) -> None:
        if self.sleep(seconds):
            raise SourceStopped

    def generator(self) -> Iterator[Any]:
        validators: dict[str, str] = {}
        with self.guard_polls() as guard:
            while True:
                started = time.monotonic()
                yield from guard(lambda: self._poll(validators))
                remaining = self.interval - (time.monotonic() - started)
                if self.sleep(max(0.0, remaining)):
                    return

    def _poll(self, validators: dict[str, str]) -> Iterator[Any]:
        """One request and its items; ``validators`` (changes_only) are updated in place."""
        response = self._send(
            self.url,
            params=self.params,
            headers={**self.headers, **validators},
            json=self.json,
            wait=self._wait_or_stop,
        )
        if response.status_code == 304:
            return
        if self.changes_only:
            validators.clear()
            if etag := response.headers.get("ETag"):
                validators["If-None-Match"] = etag
            if modified := response.headers.get("Last-Modified"):
                validators["If-Modified-Since"] = modified
        body = self._parse(response)
        if self.items is None:
            yield body
        else:
            yield from _items_at(body, self.items or None, self.kind)
