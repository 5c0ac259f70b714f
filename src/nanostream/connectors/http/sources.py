"""The HTTP sources: :class:`HttpPaginator` (every page of a listing) and
:class:`HttpPoller` (a URL polled at an interval).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal
from urllib.parse import urljoin

from ..._core.errors import ConfigError
from ..._core.node import NodeFunction
from ..._core.signals import SourceStopped
from .._toolkit import closing_function
from ._base import Parse, _fields, _Home, _HttpNode, _items_at, _path

__all__ = ["HttpPaginator", "HttpPoller"]


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
