"""The HTTP sources: :class:`HttpPaginator` (every page of a listing) and
:class:`HttpPoller` (URLs polled at an interval).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from concurrent import futures
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin

from ..._core.aio import EventLoopThread, wait_future
from ..._core.context import node_label
from ..._core.errors import OptionError
from ..._core.node import NodeFunction
from ..._core.signals import SourceStopped
from ...operators._operator import POOL_TICK_S, check_choice, check_positive
from .._secrets import mask_url
from .._toolkit import closing_function
from ._async import node_function, send
from ._base import Parse, _fields, _Home, _HttpNode, _items_at, _path

if TYPE_CHECKING:
    import httpx

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

    ``max_pages`` bounds the pages read per item. Retries, timeouts, redirects and the rate
    limit are those of :class:`HttpRequest`.

    ``concurrency=N`` reads the pages of up to N items at once with ``httpx.AsyncClient``
    on the node's own event loop. The pages of one item still follow each other (the next
    page is known from the page before), so N items are paged side by side; the items of
    each input item go out together once its last page has come, in the input's order.
    The error policy applies to each input item: under ``on_error="skip"`` an item whose
    pages fail emits none of its items (without ``concurrency``, those of the pages read
    before the failure are already out).

    Example:
        >>> from nanostream.nodes.http import HttpPaginator
        >>> HttpPaginator("https://api.example.com/repos", style="cursor", cursor="meta.next")
        HttpPaginator(name=None, method='GET', url='https://api.example.com/repos')
        >>> HttpPaginator("https://api.example.com/users/{user}/repos", concurrency=16).concurrency
        16
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
        concurrency: int | None = None,
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
        label = node_label(self, with_class=True)
        check_choice(label, "style", style, ("next", "cursor", "offset"))
        if style == "cursor" and not cursor:
            raise OptionError(f"{label}: style='cursor' needs cursor=: the path of the cursor")
        check_positive(label, "page_size", page_size, integer=True)
        check_positive(label, "max_pages", max_pages, integer=True, optional=True)
        self.style = style
        self.items = items
        self.next = next
        self.cursor = cursor
        self.cursor_param = cursor_param
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.page_size = page_size
        self.max_pages = max_pages
        self.concurrency = self._check_concurrency(concurrency)
        if concurrency is not None:
            # The items whose pages are being read are kept between reads; ticks let
            # their items go out while no item comes.
            self.holds_items = True
            self.tick_interval = POOL_TICK_S

    def setup(self) -> None:
        self._open()

    def as_function(self) -> NodeFunction:
        if self.concurrency is None:
            return closing_function(super().as_function(), self._close)
        self.validate()
        return node_function(self, self._all_pages, self.concurrency, "http_paginator_async")

    def process_item(self, item: Any) -> Iterator[Any]:
        pages = _Pages(self, item)
        while pages.request is not None:
            url, params = pages.request
            yield from pages.read(
                self._send(
                    url, params=params, headers=pages.headers, json=pages.json, home=pages.home
                )
            )

    async def _all_pages(self, item: Any) -> list[Any]:
        """The items of every page for ``item``, read with the node's async client."""
        pages = _Pages(self, item)
        found: list[Any] = []
        while pages.request is not None:
            url, params = pages.request
            response = await send(
                self, url, params=params, headers=pages.headers, json=pages.json, home=pages.home
            )
            found += pages.read(response)
        return found


class _Pages:
    """The pages of one item of an :class:`HttpPaginator`: the next request, and what a
    page gives (its items and the request after it). Both clients, blocking and async,
    read pages with it."""

    def __init__(self, node: HttpPaginator, item: Any) -> None:
        import httpx

        self.node = node
        fields = _fields(item)
        t = node.templates
        url = t.url_for(fields)
        self.base = t.params_for(fields)
        params: dict[str, Any] | None = dict(self.base)
        if node.style == "offset":
            params = {**self.base, node.offset_param: 0, node.limit_param: node.page_size}
        #: The URL and query of the next page to read; None after the last page.
        self.request: tuple[str, dict[str, Any] | None] | None = (url, params)
        home = _Home(httpx.URL(url))  # a next page elsewhere gets no credentials
        self.url = url
        self.headers = t.headers_for(fields)
        self.json = t.json_for(fields)
        self.home = home
        self.pages = 0
        self.offset = 0

    def read(self, response: httpx.Response) -> list[Any]:
        """The items of the page ``response``; sets :attr:`request` to the next page's."""
        node = self.node
        page = node._parse(response)
        found = _items_at(page, node.items, node.kind)
        self.pages += 1
        self.request = None
        if node.max_pages is not None and self.pages >= node.max_pages:
            return found
        if node.style == "next":
            link = (
                _path(page, node.next)
                if node.next is not None
                else response.links.get("next", {}).get("url")
            )
            if link:
                self.request = (urljoin(str(response.url), str(link)), None)
        elif node.style == "cursor":
            token = _path(page, node.cursor)
            if token not in (None, ""):
                self.request = (self.url, {**self.base, node.cursor_param: token})
        elif len(found) >= node.page_size:
            self.offset += len(found)
            step = {node.offset_param: self.offset, node.limit_param: node.page_size}
            self.request = (self.url, {**self.base, **step})
        return found


# ----------------------------------------------------------------------------- HttpPoller
class HttpPoller(_HttpNode):
    """A source that requests ``url`` every ``interval`` seconds and emits each answer.

    The first request goes at once. ``items`` (a dotted path, or ``""`` for the body
    itself) emits each element of a JSON list instead of the whole answer. With
    ``changes_only=True`` the poller sends ``If-None-Match`` / ``If-Modified-Since`` from
    the previous answer and emits nothing on ``304 Not Modified``. ``stop()`` ends the
    poller at once, also while it waits to retry. ``url``, ``params``, ``headers`` and
    ``json`` are sent as given (no templates: there is no item).

    ``url`` may be a list of URLs: each round polls every one of them (with the same
    ``params``, ``headers`` and ``json``), one after the other, and emits their answers in
    the list's order; ``interval`` runs from the start of one round to the next.
    ``concurrency=N`` polls up to N of them at once with ``httpx.AsyncClient`` on the
    node's own event loop, and emits the round's answers once all have come, still in the
    list's order (a ``concurrency`` above the number of URLs is refused).

    The node's error policy applies to each poll (each URL of a round): a request that
    still fails after the poller's own ``retries`` fails the run (``on_error="fail"``, the
    default), or with ``on_error="skip"`` is recorded (an error record on the ``errors``
    port, counted for ``max_errors`` and ``max_error_rate``) and the poller goes on.

    Example:
        >>> from nanostream.nodes.http import HttpPoller
        >>> HttpPoller("https://status.example.com/api/v2/summary.json", interval=60)
        HttpPoller(name=None, method='GET', url='https://status.example.com/api/v2/summary.json')
        >>> regions = [f"https://{r}.example.com/health" for r in ("eu", "us", "ap")]
        >>> HttpPoller(regions, interval=10, concurrency=3).urls == regions
        True
    """

    kind = "HttpPoller"
    policy_per_poll = True

    def __init__(
        self,
        url: str | Sequence[str],
        interval: float,
        *,
        items: str | None = None,
        changes_only: bool = False,
        concurrency: int | None = None,
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
        urls = [url] if isinstance(url, str) else list(url)
        if not urls or not all(isinstance(u, str) for u in urls):
            raise OptionError(
                f"HttpPoller{f' {name!r}' if name else ''}: url must be a URL or a non-empty "
                f"list of URLs, got {url!r}"
            )
        super().__init__(
            urls[0],
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
        check_positive(node_label(self, with_class=True), "interval", interval, unit="seconds")
        for other in urls[1:]:
            self.secrets.add_url(other)
        if len(urls) > 1:
            self.url_shown = ", ".join(mask_url(u) for u in urls)
        self.secrets.add_headers(headers)
        self.url = url
        #: The URLs polled in each round, in the order their answers go out.
        self.urls = urls
        self.interval = float(interval)
        self.items = items
        self.changes_only = changes_only
        self.params = dict(params or {})
        self.headers = dict(headers or {})
        self.json = json
        self.concurrency = self._check_concurrency(concurrency)
        if concurrency is not None and concurrency > len(urls):
            raise OptionError(
                f"{node_label(self, with_class=True)}: concurrency={concurrency} polls up to "
                f"{concurrency} URLs at once, but it polls {len(urls)}; give url the list of "
                f"URLs to poll, or set concurrency to {len(urls)} at most"
            )

    def setup(self) -> None:
        if self.concurrency is None:
            self._open()

    def as_function(self) -> NodeFunction:
        return closing_function(super().as_function(), self._close)

    def _wait_or_stop(self, seconds: float) -> None:
        if self.sleep(seconds):
            raise SourceStopped

    def generator(self) -> Iterator[Any]:
        if self.concurrency is not None:
            yield from self._generate_async(self.concurrency)
            return
        validators: list[dict[str, str]] = [{} for _ in self.urls]
        with self.guard_polls() as guard:
            while True:
                started = time.monotonic()
                for url, seen in zip(self.urls, validators, strict=True):
                    yield from guard(partial(self._poll, url, seen))
                if self._rest(started):
                    return

    def _rest(self, started: float) -> bool:
        """Wait for the next round (``interval`` after ``started``); True if stopped."""
        return self.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def _poll(self, url: str, validators: dict[str, str]) -> list[Any]:
        """One request and its items; ``validators`` (changes_only) are updated in place."""
        response = self._send(
            url,
            params=self.params,
            headers={**self.headers, **validators},
            json=self.json,
            wait=self._wait_or_stop,
        )
        return self._polled(response, validators)

    async def _poll_async(self, url: str, validators: dict[str, str]) -> list[Any]:
        """:meth:`_poll` with the node's async client."""
        headers = {**self.headers, **validators}
        response = await send(self, url, params=self.params, headers=headers, json=self.json)
        return self._polled(response, validators)

    def _polled(self, response: httpx.Response, validators: dict[str, str]) -> list[Any]:
        """The items of a poll's answer; keeps its validators when ``changes_only``."""
        if response.status_code == 304:
            return []
        if self.changes_only:
            validators.clear()
            if etag := response.headers.get("ETag"):
                validators["If-None-Match"] = etag
            if modified := response.headers.get("Last-Modified"):
                validators["If-Modified-Since"] = modified
        body = self._parse(response)
        if self.items is None:
            return [body]
        return _items_at(body, self.items or None, self.kind)

    # ------------------------------------------------------------------ concurrency=
    def _generate_async(self, concurrency: int) -> Iterator[Any]:
        """The rounds of polls, each on the node's event loop, ``concurrency`` at once."""
        loop = EventLoopThread(node_label(self))
        ctx = self._context()

        def wait(coro: Coroutine[Any, Any, Any]) -> Any:
            return wait_future(loop.submit(coro), ctx, until_stop=True)

        try:
            wait(self._open_async())
            validators: list[dict[str, str]] = [{} for _ in self.urls]
            with self.guard_polls() as guard:
                while True:
                    started = time.monotonic()
                    outcomes = wait(self._poll_round(validators, concurrency))
                    for outcome in outcomes:
                        yield from guard(partial(_settled, outcome))
                    if self._rest(started):
                        return
        finally:
            closed = loop.submit(self._close_async())
            futures.wait([closed], timeout=self.timeout)
            loop.close()

    async def _poll_round(
        self, validators: list[dict[str, str]], concurrency: int
    ) -> list[list[Any] | BaseException]:
        """Poll every URL, ``concurrency`` at once: each one's items, or its exception."""
        slots = asyncio.Semaphore(concurrency)

        async def poll(url: str, seen: dict[str, str]) -> list[Any]:
            async with slots:
                return await self._poll_async(url, seen)

        polls = [poll(url, seen) for url, seen in zip(self.urls, validators, strict=True)]
        return await asyncio.gather(*polls, return_exceptions=True)


def _settled(outcome: list[Any] | BaseException) -> list[Any]:
    """A poll of a round, for the guard: its items, or its exception raised."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
