"""``HttpRequest(concurrency=N)``: the requests on ``httpx.AsyncClient``, on the node's own
event loop, with the behaviours ``test_http.py`` checks for the blocking client."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl
import traceback
from typing import Any

import httpx
import pytest
from http_api import API_KEY, TOKEN, ApiServer, run_items

import nanostream
from nanostream.connectors.http._connections import Connections, client_options
from nanostream.nodes.http import HttpPaginator, HttpPoller, HttpRequest, HttpStatusError
from nanostream.testing import Collect
from support import run_until_seen


def test_requests_are_in_flight_at_once_and_answers_keep_the_order(
    api: ApiServer, runner: str
) -> None:
    node = HttpRequest(api.base + "/barrier/{item}", concurrency=4, retries=0)
    assert run_items(node, list(range(12)), runner) == [{"id": str(i)} for i in range(12)]
    assert not api.barrier.broken  # the server saw 4 requests at once, three times


def test_5xx_is_retried_with_backoff_until_it_succeeds(api: ApiServer, runner: str) -> None:
    node = HttpRequest(
        api.base + "/flaky/{k}?fail=2&status=503", retries=3, backoff=0.01, concurrency=8
    )
    assert run_items(node, [{"k": "a"}, {"k": "b"}], runner) == [
        {"key": "a", "attempts": 3},
        {"key": "b", "attempts": 3},
    ]
    gaps = [b - a for a, b in itertools.pairwise(api.attempts["/flaky/a"])]
    assert all(g >= 0.004 for g in gaps)


def test_5xx_fails_after_the_retries_with_a_clear_error(api: ApiServer) -> None:
    node = HttpRequest(
        api.base + "/flaky/z?fail=9&status=500", retries=1, backoff=0.01, concurrency=2
    )
    with pytest.raises(nanostream.NodeFailed) as info:
        run_items(node, [1])
    error = info.value.__cause__
    assert isinstance(error, HttpStatusError) and error.status == 500
    assert "answered 500 Internal Server Error after 2 attempts: try again" in str(error)
    assert len(api.attempts["/flaky/z"]) == 2


def test_429_waits_as_long_as_retry_after_says(api: ApiServer) -> None:
    node = HttpRequest(api.base + "/throttle/{item}?after=1", backoff=0.001, concurrency=2)
    assert run_items(node, ["t"]) == [{"key": "t", "attempts": 2}]
    first, second = api.attempts["/throttle/t"]
    assert second - first >= 0.95


def test_a_server_dropping_connections_loses_nothing(api: ApiServer, runner: str) -> None:
    node = HttpRequest(api.base + "/drop/{item}?n=1", retries=2, backoff=0.001, concurrency=5)
    assert run_items(node, list(range(20)), runner) == [
        {"key": str(i), "attempts": 2} for i in range(20)
    ]


def test_a_failed_request_under_skip_is_a_dead_letter(api: ApiServer, runner: str) -> None:
    node = HttpRequest(api.base + "/status/{item}", retries=0, concurrency=3, on_error="skip")
    sink, dead = nanostream.testing.Collect(), nanostream.testing.Collect()
    nanostream.from_iterable([200, 404, 200]) > node > sink
    node.errors > dead
    sink.global_start(runner=runner)
    assert len(sink.items) == 2
    assert [(r.item, r.exception_type) for r in dead.items] == [
        (404, "nanostream.connectors.http._base.HttpStatusError")
    ]


def test_rate_limit_spaces_the_requests(api: ApiServer) -> None:
    node = HttpRequest(api.base + "/items/{item}", concurrency=8, rate_limit=20)
    assert len(run_items(node, list(range(9)))) == 9
    times = sorted(t for _, _, t in api.requests)
    # 8 intervals of 1/20 s; the server sees them late by what its first request took
    assert times[-1] - times[0] >= 0.3


def test_secrets_stay_out_of_errors_and_logs(
    api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = HttpRequest(
        api.base.replace("http://", "http://robot:PASSW0RD-xyz@")
        + f"/status/403?api_key={API_KEY}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        concurrency=2,
    )
    with pytest.raises(nanostream.NodeFailed) as info:
        run_items(node, [1])
    assert "denied: you sent" in str(info.value)
    flaky = HttpRequest(
        api.base + "/flaky/s?fail=1&api_key={key}",
        headers={"X-Api-Key": "{key}"},
        backoff=0.001,
        concurrency=2,
    )
    assert run_items(flaky, [{"key": API_KEY}]) == [{"key": "s", "attempts": 2}]
    text = caplog.text + "".join(traceback.format_exception(info.value))
    assert "api_key=***" in caplog.text
    for secret in (TOKEN, API_KEY, "PASSW0RD"):
        assert secret not in text


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_another_origin_gets_no_credentials(
    api: ApiServer, other_api: ApiServer, status: int
) -> None:
    node = HttpRequest(
        api.base + "/redirect",
        params={"to": f"{other_api.base}/echo/there", "status": status},
        headers={"X-Api-Key": API_KEY, "Authorization": f"Bearer {TOKEN}"},
        client_options={"cookies": {"session": "SESSION-secret"}},
        concurrency=2,
    )
    [echo] = run_items(node, [1])
    assert echo["path"] == "/echo/there"
    sent = echo["headers"]
    assert "x-api-key" not in sent and "authorization" not in sent and "cookie" not in sent
    assert API_KEY not in json.dumps(echo) and TOKEN not in json.dumps(echo)


def test_redirects_are_bounded_and_can_be_turned_off(api: ApiServer) -> None:
    loop = HttpRequest(
        api.base + "/redirect",
        params={"to": "/redirect?to=/echo/x"},
        client_options={"max_redirects": 1},
        concurrency=2,
    )
    with pytest.raises(nanostream.NodeFailed, match="redirected more than max_redirects=1"):
        run_items(loop, [1])
    kept = HttpRequest(
        api.base + "/redirect?to=/echo/x",
        output="response",
        client_options={"follow_redirects": False},
        concurrency=2,
    )
    [answer] = run_items(kept, [1])
    assert answer["status"] == 302 and answer["headers"]["location"] == "/echo/x"


def test_each_request_in_flight_has_a_connection_kept_for_the_next(api: ApiServer) -> None:
    node = HttpRequest(api.base + "/barrier/{item}", concurrency=4, retries=0)
    assert len(run_items(node, list(range(12)))) == 12
    assert api.connections == 4  # 4 at once, three times, on the same 4 connections


def _counting_transports(size: int) -> tuple[Connections, list[int], list[int]]:
    """A :class:`Connections` of ``size`` answering from memory after a pause: each
    transport's requests at once now and at most."""
    connections = Connections(size)
    now, most = [0] * size, [0] * size

    def transport(index: int) -> httpx.MockTransport:
        async def answer(request: httpx.Request) -> httpx.Response:
            now[index] += 1
            most[index] = max(most[index], now[index])
            await asyncio.sleep(0.001)
            now[index] -= 1
            return httpx.Response(200, text=str(index))

        return httpx.MockTransport(answer)

    connections.transports = [transport(i) for i in range(size)]
    return connections, now, most


async def _get_all(connections: Connections, count: int, at_once: int) -> list[str]:
    slots = asyncio.Semaphore(at_once)
    async with httpx.AsyncClient(transport=connections) as client:

        async def one(i: int) -> str:
            async with slots:
                return (await client.get(f"http://h/{i}")).text

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_connections_give_each_request_in_flight_its_own_transport() -> None:
    connections, _, most = _counting_transports(4)
    used = asyncio.run(_get_all(connections, 40, at_once=4))
    assert most == [1, 1, 1, 1]  # never two requests at once on one connection
    assert sorted(connections.idle) == [0, 1, 2, 3]  # each given back
    assert set(used) <= {"0", "1", "2", "3"}


def test_connections_are_shared_by_more_requests_than_them() -> None:
    connections, now, most = _counting_transports(2)
    assert len(asyncio.run(_get_all(connections, 20, at_once=6))) == 20
    assert max(most) >= 2 and now == [0, 0]
    assert sorted(connections.idle) == [0, 1]


def test_the_users_transport_limits_or_http2_keep_one_pool() -> None:
    mine = httpx.MockTransport(lambda request: httpx.Response(204))
    chosen = HttpRequest("http://h/x", concurrency=8, client_options={"transport": mine})
    assert client_options(chosen, 8)["transport"] is mine
    limits = httpx.Limits(max_connections=3)
    capped = HttpRequest("http://h/x", concurrency=8, client_options={"limits": limits})
    assert client_options(capped, 8)["limits"] is limits
    assert "transport" not in client_options(capped, 8)
    plain = client_options(HttpRequest("http://h/x", concurrency=8), 8)
    assert isinstance(plain["transport"], Connections) and "limits" not in plain
    assert len(plain["transport"].transports) == 8 and plain["transport"].tls_context is None


def test_unverified_tls_reaches_every_connection() -> None:
    node = HttpRequest("https://h/x", concurrency=3, client_options={"verify": False})
    connections = client_options(node, 3)["transport"]
    assert isinstance(connections, Connections)
    made = [connections.transport(index, "https") for index in range(3)]
    contexts = {t._pool._ssl_context for t in made}
    assert len(contexts) == 1 and not contexts.pop().check_hostname
    assert connections.secure_transports == made and connections.transports == [None] * 3


def test_plain_http_makes_no_tls_context(api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    real = httpx.create_ssl_context

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counted)
    connections = Connections(4)
    assert asyncio.run(_get_all_from(connections, api.base + "/echo/{}", 8)) == 8
    assert made == [] and connections.tls_context is None
    # a plain connection's transport trusts no authority: TLS on it could not go unverified
    plain = connections.transport(0, "http")._pool._ssl_context
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.cert_store_stats()["x509_ca"] == 0
    secure = connections.transport(0, "https")
    assert connections.tls_context is secure._pool._ssl_context and len(made) == 1
    connections.transport(1, "https")
    assert len(made) == 1  # one TLS context for every https connection


@pytest.mark.parametrize(
    ("url", "at_start"),
    [("http://h/{item}", False), ("https://h/{item}", True), ("{item}/x", True)],
)
def test_a_node_that_may_speak_tls_makes_its_context_at_start(url: str, at_start: bool) -> None:
    connections = client_options(HttpRequest(url, concurrency=2), 2)["transport"]
    assert isinstance(connections, Connections)
    assert (connections.tls_context is not None) is at_start
    poller = HttpPoller(["http://a/up", "https://b/up"], interval=5, concurrency=2)
    assert client_options(poller, 2)["transport"].tls_context is not None


async def _get_all_from(connections: Connections, url: str, count: int) -> int:
    async with httpx.AsyncClient(transport=connections) as client:
        answers = await asyncio.gather(*(client.get(url.format(i)) for i in range(count)))
    return sum(answer.status_code == 200 for answer in answers)


def test_concurrency_is_checked_while_building() -> None:
    with pytest.raises(nanostream.GraphError, match="concurrency must be a positive integer"):
        HttpRequest("http://h/x", concurrency=0)
    with pytest.raises(
        nanostream.GraphError, match=r"HttpRequest 'get': choose workers= .* or concurrency="
    ):
        HttpRequest("http://h/x", concurrency=4, workers=4, name="get")
    with pytest.raises(nanostream.GraphError, match="HttpPaginator 'pages': concurrency must"):
        HttpPaginator("http://h/x", concurrency=-1, name="pages")
    with pytest.raises(nanostream.GraphError, match=r"HttpPoller 'health': concurrency=3 .* 2;"):
        HttpPoller(["http://h/a", "http://h/b"], interval=1, concurrency=3, name="health")
    with pytest.raises(nanostream.GraphError, match="a non-empty list of URLs"):
        HttpPoller([], interval=1)


# ----------------------------------------------------------------------------- HttpPaginator
def test_paginator_reads_the_pages_of_several_items_at_once_in_order(
    api: ApiServer, runner: str
) -> None:
    # Each item's one page answers only once 4 requests are in flight together.
    node = HttpPaginator(api.base + "/barrier/{item}?as=list", concurrency=4, retries=0)
    assert run_items(node, list(range(8)), runner) == [{"id": str(i)} for i in range(8)]
    assert not api.barrier.broken


def test_paginator_pages_of_one_item_follow_each_other(api: ApiServer) -> None:
    node = HttpPaginator(api.base + "/pages/link", concurrency=8)
    assert run_items(node, [{}]) == list(range(25))
    pages = [query for _, query, _ in api.requests]
    assert len(pages) == 3  # one after the other: each one's link names the next


def test_paginator_under_skip_emits_none_of_a_failed_items_pages(
    api: ApiServer, runner: str
) -> None:
    node = HttpPaginator(
        api.base + "/{route}/{arg}",
        style="offset",
        items="data",
        page_size=10,
        concurrency=2,
        retries=0,
        on_error="skip",
    )
    sink, dead = Collect(), Collect()
    good, bad = {"route": "pages", "arg": "offset"}, {"route": "status", "arg": "404"}
    nanostream.from_iterable([good, bad, good]) > node > sink
    node.errors > dead
    sink.global_start(runner=runner)
    assert sink.items == list(range(25)) * 2
    assert [r.item for r in dead.items] == [bad]


# ----------------------------------------------------------------------------- HttpPoller
def test_poller_polls_its_urls_at_once_and_emits_them_in_order(api: ApiServer, runner: str) -> None:
    sink = Collect(wait_for=4)
    urls = [f"{api.base}/barrier/{name}" for name in "abcd"]
    HttpPoller(urls, interval=60, concurrency=4, retries=0) > sink
    run = run_until_seen(sink, runner)
    assert run.state == "finished"
    assert sink.items == [{"id": name} for name in "abcd"]
    assert not api.barrier.broken  # the 4 polls were in flight together


def test_poller_without_concurrency_polls_its_urls_one_after_the_other(
    api: ApiServer,
) -> None:
    sink = Collect(wait_for=2)
    HttpPoller([f"{api.base}/items/a", f"{api.base}/items/b"], interval=60) > sink
    run_until_seen(sink)
    assert sink.items == [{"id": "a"}, {"id": "b"}]


def test_poller_skips_one_failed_url_of_a_round(api: ApiServer, runner: str) -> None:
    sink, dead = Collect(wait_for=1), Collect()
    urls = [f"{api.base}/status/503", f"{api.base}/items/two"]
    poller = HttpPoller(urls, interval=60, concurrency=2, retries=0, on_error="skip", name="up")
    poller > sink
    poller.errors > dead
    run_until_seen(sink, runner)
    assert sink.items == [{"id": "two"}]
    [record] = dead.items
    assert (record.node, record.item) == ("up", None)
    assert "answered 503 Service Unavailable" in record.message


def test_an_async_poll_waits_as_long_as_retry_after_says(api: ApiServer) -> None:
    sink = Collect(wait_for=1)
    urls = [api.base + "/throttle/t?after=1", api.base + "/items/i"]
    HttpPoller(urls, interval=60, backoff=0.001, concurrency=2) > sink
    run_until_seen(sink)
    assert sink.items == [{"key": "t", "attempts": 2}, {"id": "i"}]
    first, second = api.attempts["/throttle/t"]
    assert second - first >= 0.95


def test_an_async_poll_keeps_secrets_out_of_errors_and_logs(
    api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    poller = HttpPoller(
        [api.base + "/items/ok", api.base + f"/status/403?api_key={API_KEY}"],
        interval=60,
        headers={"Authorization": f"Bearer {TOKEN}"},
        concurrency=2,
    )
    poller > Collect()
    with pytest.raises(nanostream.NodeFailed) as info:
        poller.global_start()
    assert "denied: you sent" in str(info.value)
    text = caplog.text + "".join(traceback.format_exception(info.value)) + repr(poller)
    assert "api_key=***" in text
    for secret in (TOKEN, API_KEY):
        assert secret not in text


def test_an_async_paginator_keeps_the_rate_limit_over_all_its_items(api: ApiServer) -> None:
    node = HttpPaginator(api.base + "/pages/link", concurrency=4, rate_limit=20)
    assert run_items(node, [{}, {}, {}]) == list(range(25)) * 3
    times = sorted(t for _, _, t in api.requests)
    assert len(times) == 9
    assert times[-1] - times[0] >= 0.3  # 8 intervals of 1/20 s, less the first's lateness
