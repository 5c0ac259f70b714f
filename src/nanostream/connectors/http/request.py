""":class:`HttpRequest`: one request per item."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..._core.context import node_label
from ..._core.errors import OptionError
from ..._core.node import NodeFunction
from ...operators._operator import POOL_TICK_S, check_choice, check_positive, map_items
from .._toolkit import closing_function
from ._async import node_function, send
from ._base import Output, Parse, _fields, _HttpNode

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpRequest"]


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
    ``tick_interval``, 0.05 s, when no item arrives meanwhile). ``concurrency=N`` does the
    same with ``httpx.AsyncClient`` on the node's own event loop: hundreds of requests in
    flight from one thread, with the same retries, redirects and masking. ``rate_limit``
    caps the requests per second over all of them.

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
        concurrency: int | None = None,
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
        label = node_label(self, with_class=True)
        check_positive(label, "workers", workers, integer=True)
        check_choice(label, "output", output, ("body", "response"))
        if self._check_concurrency(concurrency) is not None and workers > 1:
            raise OptionError(
                f"{label}: choose workers= (threads) or "
                "concurrency= (async requests on one thread), not both"
            )
        self.workers = workers
        self.concurrency = concurrency
        self.output = output
        # With workers or concurrency, the requests in flight are items kept between reads;
        # the node asks for ticks so that answers go out while no item comes.
        self.holds_items = workers > 1 or concurrency is not None
        if self.holds_items:
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
        return self._emitted(item, response)

    async def call_async(self, item: Any) -> Any:
        """:meth:`call` on the node's event loop, with its ``httpx.AsyncClient``."""
        fields = _fields(item)
        t = self.templates
        response = await send(
            self,
            t.url_for(fields),
            params=t.params_for(fields),
            headers=t.headers_for(fields),
            json=t.json_for(fields),
        )
        return self._emitted(item, response)

    def _emitted(self, item: Any, response: httpx.Response) -> Any:
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

    async def _answer_async(self, item: Any) -> list[Any]:
        return [await self.call_async(item)]

    def as_function(self) -> NodeFunction:
        if self.concurrency is not None:
            return self._async_function(self.concurrency)
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

    def _async_function(self, concurrency: int) -> NodeFunction:
        self.validate()
        return node_function(self, self._answer_async, concurrency, "http_request_async")
