"""HTTP connectors against a real local server (``http.server`` in a thread on 127.0.0.1)."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from http_api import API_KEY, TOKEN, ApiServer, run_items

import nanostream
from nanostream.connectors.http._base import _retry_after
from nanostream.connectors.http._connections import Transport, client_options
from nanostream.nodes.http import (
    ConnectorError,
    HttpPaginator,
    HttpPoller,
    HttpRequest,
    HttpStatusError,
)
from nanostream.testing import Collect
from support import FlagSink, OneAckedThenWait, OneThenWait, run_until_seen


@pytest.fixture(params=[None, 3], ids=["blocking", "async"])
def concurrency(request: pytest.FixtureRequest) -> int | None:
    """A paginator's ``concurrency``: None (the blocking client) or async requests."""
    value: int | None = request.param
    return value


@pytest.fixture(params=[None, 1], ids=["blocking", "async"])
def poll_concurrency(request: pytest.FixtureRequest) -> int | None:
    """A poller's ``concurrency`` for one URL: None (the blocking client) or async."""
    value: int | None = request.param
    return value


# ----------------------------------------------------------------------------- HttpRequest
def test_templates_fill_url_query_headers_and_json_from_the_item(
    api: ApiServer, runner: str
) -> None:
    node = HttpRequest(
        api.base + "/echo/{name}?tag={tag}",
        method="POST",
        params={"page": "{page}", "gone": "{nothing}"},
        headers={"X-User": "user-{user}"},
        json={"id": "{id}", "label": "item {id}", "tags": ["{tag}", 1]},
    )
    item = {"name": "a b/c?d", "tag": "x&y", "page": 2, "nothing": None, "user": "ada", "id": 7}
    [echo] = run_items(node, [item], runner)
    assert echo["method"] == "POST"
    assert echo["raw_path"].startswith("/echo/a%20b%2Fc%3Fd?")
    assert echo["query"] == {"tag": "x&y", "page": "2"}
    assert echo["headers"]["x-user"] == "user-ada"
    assert echo["json"] == {"id": 7, "label": "item 7", "tags": ["x&y", 1]}


def test_parse_modes_and_the_response_output(api: ApiServer) -> None:
    assert run_items(HttpRequest(api.base + "/text"), [1]) == ["hello ✓"]
    assert run_items(HttpRequest(api.base + "/text", parse="bytes"), [1]) == ["hello ✓".encode()]
    assert run_items(HttpRequest(api.base + "/items/{item}"), [5]) == [{"id": "5"}]
    [record] = run_items(HttpRequest(api.base + "/items/{id}", output="response"), [{"id": 3}])
    assert record["status"] == 200
    assert record["headers"]["content-type"] == "application/json"
    assert record["body"] == {"id": "3"}
    assert record["item"] == {"id": 3}


def test_5xx_is_retried_with_backoff_until_it_succeeds(api: ApiServer, runner: str) -> None:
    node = HttpRequest(api.base + "/flaky/{k}?fail=2&status=503", retries=3, backoff=0.01)
    assert run_items(node, [{"k": "a"}, {"k": "b"}], runner) == [
        {"key": "a", "attempts": 3},
        {"key": "b", "attempts": 3},
    ]
    gaps = [b - a for a, b in itertools.pairwise(api.attempts["/flaky/a"])]
    assert all(g >= 0.004 for g in gaps)  # jittered 0.005-0.01 s, then 0.01-0.02 s


def test_5xx_fails_after_the_retries_with_a_clear_error(api: ApiServer) -> None:
    node = HttpRequest(api.base + "/flaky/z?fail=9&status=500", retries=1, backoff=0.01)
    with pytest.raises(nanostream.NodeFailed) as info:
        run_items(node, [1])
    error = info.value.__cause__
    assert isinstance(error, HttpStatusError)
    assert error.status == 500
    assert "answered 500 Internal Server Error after 2 attempts: try again" in str(error)
    assert len(api.attempts["/flaky/z"]) == 2


def test_4xx_fails_at_once(api: ApiServer) -> None:
    with pytest.raises(nanostream.NodeFailed) as info:
        run_items(HttpRequest(api.base + "/status/404", retries=5), [1])
    assert isinstance(info.value.__cause__, HttpStatusError)
    assert info.value.__cause__.status == 404
    assert len(api.attempts["/status/404"]) == 1


def test_429_waits_as_long_as_retry_after_says(api: ApiServer) -> None:
    node = HttpRequest(api.base + "/throttle/{item}?after=1", backoff=0.001)
    assert run_items(node, ["t"]) == [{"key": "t", "attempts": 2}]
    first, second = api.attempts["/throttle/t"]
    assert second - first >= 0.95


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert _retry_after(answer("3")) == 3.0
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 <= (_retry_after(answer(in_a_minute)) or 0) <= 61
    assert _retry_after(answer("soon")) is None
    assert _retry_after(httpx.Response(429)) is None


def test_a_server_dropping_connections_loses_nothing(api: ApiServer, runner: str) -> None:
    node = HttpRequest(api.base + "/drop/{item}?n=1", retries=2, backoff=0.001)
    results = run_items(node, list(range(20)), runner)
    assert results == [{"key": str(i), "attempts": 2} for i in range(20)]


def test_a_dropped_post_is_not_repeated(api: ApiServer) -> None:
    node = HttpRequest(api.base + "/drop/p?n=1", method="POST", json={"x": 1}, backoff=0.001)
    with pytest.raises(nanostream.NodeFailed, match="failed talking to POST") as info:
        run_items(node, [1])
    assert isinstance(info.value.__cause__, ConnectorError)
    assert len(api.attempts["/drop/p"]) == 1


def test_connection_refused_at_start_is_a_clear_error(free_port: Callable[[], int]) -> None:
    port = free_port()
    node = HttpRequest(f"http://127.0.0.1:{port}/items/{{item}}", retries=2, backoff=0.001)
    with pytest.raises(nanostream.NodeFailed) as info:
        run_items(node, [1])
    assert isinstance(info.value.__cause__, ConnectorError)
    assert f"could not connect to GET http://127.0.0.1:{port}/items/1 after 3 attempt(s)" in str(
        info.value
    )


def test_workers_send_requests_at_once_and_keep_the_order(api: ApiServer, runner: str) -> None:
    node = HttpRequest(api.base + "/barrier/{item}", workers=4, retries=0)
    results = run_items(node, list(range(12)), runner)
    assert results == [{"id": str(i)} for i in range(12)]
    assert not api.barrier.broken


@pytest.mark.parametrize("workers", [1, 3])
def test_an_answer_goes_out_before_the_next_item_comes(
    api: ApiServer, runner: str, tmp_path: Any, workers: int
) -> None:
    flag = tmp_path / "answered"
    source = OneThenWait(flag, item=7)
    sink = FlagSink(flag)
    source > HttpRequest(api.base + "/items/{item}", workers=workers) > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert run.wait(timeout=30)
    assert source.answered, "the answer waited for an item that never came"
    assert sink.items == [{"id": "7"}]


@pytest.mark.parametrize(
    "make",
    [
        lambda url: HttpRequest(url + "/items/{item}"),
        lambda url: HttpRequest(url + "/items/{item}", workers=3),
        lambda url: HttpPaginator(url + "/pages/next", items="data", next="links.next"),
    ],
    ids=["request", "request-workers", "paginator"],
)
def test_an_answer_is_acknowledged_before_the_next_item_comes(
    api: ApiServer, runner: str, acks: bool, tmp_path: Any, make: Any
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    source = OneAckedThenWait(tmp_path / "acked", item=7)
    sink = Collect()
    source > make(api.base) > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert run.wait(timeout=30)
    assert source.answered, "the acknowledgement waited for the end of the stream"
    assert sink.items in ([{"id": "7"}], list(range(25)))


def test_rate_limit_spaces_the_requests(api: ApiServer) -> None:
    node = HttpRequest(api.base + "/items/{item}", workers=4, rate_limit=40)
    assert len(run_items(node, list(range(9)))) == 9
    times = sorted(t for _, _, t in api.requests)
    assert times[-1] - times[0] >= 0.18  # 8 intervals of 1/40 s


def test_secrets_stay_out_of_errors_logs_and_reprs(
    api: ApiServer, free_port: Callable[[], int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = HttpRequest(
        api.base.replace("http://", "http://robot:PASSW0RD-xyz@")
        + f"/status/403?api_key={API_KEY}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert TOKEN not in repr(node) and API_KEY not in repr(node) and "PASSW0RD" not in repr(node)
    with pytest.raises(nanostream.NodeFailed) as info:
        run_items(node, [1])
    # the server echoed the token and the key in its answer; the error shows neither
    assert "denied: you sent" in str(info.value)
    flaky = HttpRequest(
        api.base + "/flaky/s?fail=1&api_key={key}",
        headers={"X-Api-Key": "{key}"},
        backoff=0.001,
    )
    assert run_items(flaky, [{"key": API_KEY}]) == [{"key": "s", "attempts": 2}]
    refused = HttpRequest(f"http://127.0.0.1:{free_port()}/x?token={TOKEN}", retries=0)
    with pytest.raises(nanostream.NodeFailed) as refused_info:
        run_items(refused, [1])
    text = caplog.text
    for failure in (info.value, refused_info.value):
        text += "".join(traceback.format_exception(failure))
    assert "api_key=***" in caplog.text  # the retry warning and httpx's own request log
    for secret in (TOKEN, API_KEY, "PASSW0RD"):
        assert secret not in text


def test_an_answer_too_deeply_nested_is_not_json_like_a_malformed_one(
    api: ApiServer, runner: str
) -> None:
    fetch = HttpRequest(api.base + "/{item}", on_error="skip", name="fetch")
    values, dead = Collect(), Collect()
    nanostream.from_iterable(["malformed", "deep", "text"]) > fetch > values
    fetch.errors > dead
    values.global_start(runner=runner)
    assert values.items == ["hello ✓"]  # the items after them went on
    malformed, deep = dead.items
    for record, path in ((malformed, "/malformed"), (deep, "/deep")):
        assert record.exception_type == f"{ConnectorError.__module__}.ConnectorError"
        assert record.node == "fetch"
        assert f"the answer of {api.base}{path} is not JSON" in record.message
        assert "use parse='text'" in record.message
    assert "nested too deeply" in deep.message


def _redirecting_request(api: ApiServer, to: str, status: int = 302) -> HttpRequest:
    return HttpRequest(
        api.base + "/redirect",
        params={"to": to, "status": status},
        headers={"X-Api-Key": API_KEY, "Authorization": f"Bearer {TOKEN}"},
        client_options={"cookies": {"session": "SESSION-secret"}},
    )


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_origin_gets_no_configured_headers_auth_or_cookies(
    api: ApiServer, other_api: ApiServer, status: int
) -> None:
    [echo] = run_items(_redirecting_request(api, f"{other_api.base}/echo/there", status), [1])
    assert echo["path"] == "/echo/there"  # the redirect was followed, to the other server
    sent = echo["headers"]
    assert "x-api-key" not in sent
    assert "authorization" not in sent
    assert "cookie" not in sent
    assert API_KEY not in json.dumps(echo) and TOKEN not in json.dumps(echo)


def test_a_poller_redirected_to_another_origin_sends_no_configured_headers(
    api: ApiServer, other_api: ApiServer, poll_concurrency: int | None
) -> None:
    sink = Collect()
    poller = HttpPoller(
        api.base + "/redirect",
        concurrency=poll_concurrency,
        interval=60,
        params={"to": other_api.base + "/echo/polled"},
        headers={"X-Api-Key": API_KEY},
    )
    poller > sink
    run_until_seen(sink)
    [echo] = sink.items
    assert echo["path"] == "/echo/polled" and "x-api-key" not in echo["headers"]


def test_a_retry_after_a_redirect_elsewhere_sends_the_credentials_home_again(
    api: ApiServer, other_api: ApiServer
) -> None:
    fetch = HttpRequest(
        api.base + "/redirect",
        params={"to": f"{other_api.base}/flaky/k?fail=1"},
        headers={"X-Api-Key": API_KEY},
        retries=1,
        backoff=0,
    )
    [answer] = run_items(fetch, [1])
    assert answer == {"key": "k", "attempts": 2}  # the other server failed once
    assert [sent.get("x-api-key") for _, sent in api.headers_seen] == [API_KEY, API_KEY]
    assert [sent.get("x-api-key") for _, sent in other_api.headers_seen] == [None, None]


def test_a_redirect_chain_that_comes_back_home_stays_without_credentials(
    api: ApiServer, other_api: ApiServer
) -> None:
    back_home = f"{api.base}/echo/home"
    via_other = f"{other_api.base}/redirect?to={back_home}"
    [echo] = run_items(_redirecting_request(api, via_other), [1])
    assert echo["path"] == "/echo/home"
    assert "x-api-key" not in echo["headers"] and "authorization" not in echo["headers"]


def test_a_redirect_within_the_origin_keeps_the_headers(api: ApiServer) -> None:
    [echo] = run_items(_redirecting_request(api, "/echo/here"), [1])
    assert echo["path"] == "/echo/here"
    sent = echo["headers"]
    assert sent["x-api-key"] == API_KEY
    assert sent["authorization"] == f"Bearer {TOKEN}"
    assert "session=SESSION-secret" in sent["cookie"]


def test_redirects_are_bounded_and_can_be_turned_off(api: ApiServer) -> None:
    loop = HttpRequest(
        api.base + "/redirect",
        params={"to": "/redirect?to=/echo/x"},
        client_options={"max_redirects": 1},
    )
    with pytest.raises(nanostream.NodeFailed, match="redirected more than max_redirects=1"):
        run_items(loop, [1])
    kept = HttpRequest(
        api.base + "/redirect?to=/echo/x",
        output="response",
        client_options={"follow_redirects": False},
    )
    [answer] = run_items(kept, [1])
    assert answer["status"] == 302
    assert answer["headers"]["location"] == "/echo/x"


def test_missing_httpx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[http\]"):
        HttpRequest("http://127.0.0.1/")


def test_options_are_checked_while_building() -> None:
    with pytest.raises(nanostream.GraphError, match="workers"):
        HttpRequest("http://h/", workers=0)
    with pytest.raises(nanostream.GraphError, match="timeout"):
        HttpRequest("http://h/", timeout=0)
    with pytest.raises(nanostream.GraphError, match="bad template"):
        HttpRequest("http://h/{oops")
    with pytest.raises(nanostream.GraphError, match="needs cursor="):
        HttpPaginator("http://h/", style="cursor")


def test_a_missing_template_field_is_named(api: ApiServer) -> None:
    with pytest.raises(nanostream.NodeFailed, match="needs field 'id', which an item lacks"):
        run_items(HttpRequest(api.base + "/items/{id}"), [{"ident": 1}])


# ----------------------------------------------------------------------------- HttpPaginator
@pytest.mark.parametrize(
    "options",
    [
        {"url": "/pages/next", "style": "next", "items": "data", "next": "links.next"},
        {"url": "/pages/link", "style": "next"},
        {"url": "/pages/cursor", "style": "cursor", "items": "items", "cursor": "meta.next"},
        {"url": "/pages/offset", "style": "offset", "items": "data", "page_size": 10},
    ],
    ids=["next-link-in-body", "link-header", "cursor", "offset"],
)
def test_paginator_emits_every_item_of_every_page(
    api: ApiServer, runner: str, options: dict[str, Any], concurrency: int | None
) -> None:
    options = dict(options)
    url = api.base + options.pop("url")
    results = run_items(HttpPaginator(url, concurrency=concurrency, **options), [{}, {}], runner)
    assert results == list(range(25)) * 2  # 3 pages each time, the first one included
    assert len(api.requests) == 6


def test_paginator_stops_at_max_pages(api: ApiServer, concurrency: int | None) -> None:
    node = HttpPaginator(
        api.base + "/pages/next",
        items="data",
        next="links.next",
        max_pages=2,
        concurrency=concurrency,
    )
    assert run_items(node, [None]) == list(range(20))


SHAPES = {"body": {"items": "data", "next": "next"}, "link": {}}


def _paginator(first: str, shape: str, concurrency: int | None) -> HttpPaginator:
    """A paginator that carries every kind of credential the node can be given."""
    return HttpPaginator(
        first,
        concurrency=concurrency,
        **SHAPES[shape],  # type: ignore[arg-type]
        headers={"X-Api-Key": API_KEY},
        client_options={
            "auth": ("ada", "PASSW0RD"),
            "cookies": {"session": "SESSION-secret"},
            "headers": {"X-Client-Secret": TOKEN},
        },
    )


def _hop(server: ApiServer, to: str, shape: str) -> str:
    return f"{server.base}/hop?{httpx.QueryParams(to=to, shape=shape)}"


def _no_credentials(seen: dict[str, Any]) -> bool:
    sent = seen["headers"]
    named = {"x-api-key", "x-client-secret", "authorization", "cookie"} & set(sent)
    return not named and API_KEY not in json.dumps(seen) and TOKEN not in json.dumps(seen)


@pytest.mark.parametrize("shape", ["body", "link"], ids=["next-link-in-body", "link-header"])
def test_a_next_page_on_another_origin_gets_no_configured_headers_auth_or_cookies(
    api: ApiServer, other_api: ApiServer, runner: str, shape: str, concurrency: int | None
) -> None:
    elsewhere = f"{other_api.base}/seen?shape={shape}"
    hop, seen = run_items(_paginator(_hop(api, elsewhere, shape), shape, concurrency), [{}], runner)
    assert hop == "hop"
    assert seen["path"] == "/seen"  # the next page was read, from the other server
    assert _no_credentials(seen), seen


@pytest.mark.parametrize("shape", ["body", "link"], ids=["next-link-in-body", "link-header"])
def test_next_pages_that_come_back_home_stay_without_credentials(
    api: ApiServer, other_api: ApiServer, shape: str, concurrency: int | None
) -> None:
    back_home = f"{api.base}/seen?shape={shape}"
    first = _hop(api, _hop(other_api, back_home, shape), shape)
    hop, hop_again, seen = run_items(_paginator(first, shape, concurrency), [{}])
    assert (hop, hop_again) == ("hop", "hop")
    assert seen["path"] == "/seen" and _no_credentials(seen), seen
    assert [path for _, path, _ in api.requests] == ["/hop", "/seen"]


def test_an_error_from_another_origin_says_the_credentials_were_withheld(
    api: ApiServer, other_api: ApiServer, concurrency: int | None
) -> None:
    node = _paginator(_hop(api, f"{other_api.base}/status/401", "body"), "body", concurrency)
    with pytest.raises(nanostream.NodeFailed) as info:
        run_items(node, [{}])
    error = info.value.__cause__
    assert isinstance(error, HttpStatusError) and error.status == 401
    assert "denied: you sent ''" in str(error)
    assert (
        f"(sent without the node's headers, auth and cookies, which go only to {api.base}: "
        "the request had left that origin)"
    ) in str(error)
    with pytest.raises(nanostream.NodeFailed) as at_home:
        run_items(_paginator(api.base + "/status/401", "body", concurrency), [{}])
    assert "sent without" not in str(at_home.value.__cause__)


@pytest.mark.parametrize("shape", ["body", "link"], ids=["next-link-in-body", "link-header"])
def test_a_next_page_within_the_origin_keeps_the_credentials(
    api: ApiServer, shape: str, concurrency: int | None
) -> None:
    hop, seen = run_items(
        _paginator(_hop(api, f"/seen?shape={shape}", shape), shape, concurrency), [{}]
    )
    assert hop == "hop" and seen["path"] == "/seen"
    sent = seen["headers"]
    assert sent["x-api-key"] == API_KEY
    assert sent["x-client-secret"] == TOKEN
    assert sent["authorization"] == "Basic " + base64.b64encode(b"ada:PASSW0RD").decode()
    assert "session=SESSION-secret" in sent["cookie"]


# ----------------------------------------------------------------------------- HttpPoller


def test_poller_polls_until_stopped(
    api: ApiServer, runner: str, poll_concurrency: int | None
) -> None:
    sink = Collect(wait_for=3)
    HttpPoller(api.base + "/counter", interval=0.01, concurrency=poll_concurrency) > sink
    run = run_until_seen(sink, runner)
    assert run.state == "finished"
    assert sink.items[:3] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_poller_with_changes_only_emits_an_unchanged_answer_once(
    api: ApiServer, runner: str, poll_concurrency: int | None
) -> None:
    sink = Collect()
    HttpPoller(
        api.base + "/versioned", interval=0.01, changes_only=True, concurrency=poll_concurrency
    ) > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert api.wait_for_requests(4)
    finally:
        run.stop(timeout=10)
    assert sink.items == [{"version": 1}]


def test_stop_ends_a_poller_waiting_to_retry(
    free_port: Callable[[], int], runner: str, poll_concurrency: int | None
) -> None:
    retrying = threading.Event()

    class OnRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retry 1 of" in record.getMessage():
                retrying.set()

    handler = OnRetry()
    logging.getLogger("nanostream.http").addHandler(handler)
    try:
        poller = HttpPoller(
            f"http://127.0.0.1:{free_port()}/",
            interval=1,
            retries=5,
            backoff=60,
            max_backoff=60,
            concurrency=poll_concurrency,
        )
        run = poller.global_start(block=False, runner=runner)
        assert run is not None
        try:
            assert retrying.wait(10)
        finally:
            started = time.monotonic()
            run.stop(timeout=10)
        assert run.state == "finished"
        assert time.monotonic() - started < 5
    finally:
        logging.getLogger("nanostream.http").removeHandler(handler)


def test_a_poller_skips_a_failed_poll_and_polls_again(
    api: ApiServer, runner: str, poll_concurrency: int | None
) -> None:
    sink, dead = Collect(wait_for=2), Collect()
    poller = HttpPoller(
        api.base + "/flaky/p",
        concurrency=poll_concurrency,
        interval=0.01,
        params={"fail": 1, "status": 500},
        retries=0,
        on_error="skip",
        name="status",
    )
    poller > sink
    poller.errors > dead
    run = run_until_seen(sink, runner)  # answers after the failed poll: it went on polling
    assert run.state == "finished"
    assert sink.items[:2] == [{"key": "p", "attempts": 2}, {"key": "p", "attempts": 3}]
    [record] = dead.items
    assert (record.node, record.item) == ("status", None)
    assert "answered 500 Internal Server Error" in record.message
    assert run.stats()["status"].errors == 1


def test_a_failed_poll_fails_the_run_by_default(
    api: ApiServer, runner: str, poll_concurrency: int | None
) -> None:
    poller = HttpPoller(
        api.base + "/flaky/p",
        interval=0.01,
        params={"fail": 1, "status": 500},
        concurrency=poll_concurrency,
    )
    poller.configure(retries=0) > Collect()
    with pytest.raises(nanostream.NodeFailed, match="answered 500 Internal Server Error"):
        poller.global_start(runner=runner)


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: HttpRequest("http://h/", workers=True), "workers"),
        (lambda: HttpRequest("http://h/", retries=True), "retries"),
        (lambda: HttpRequest("http://h/", timeout=True), "timeout"),
        (lambda: HttpPaginator("http://h/", page_size=True), "page_size"),
        (lambda: HttpPoller("http://h/", interval=True), "interval"),
    ],
)
def test_a_bool_is_not_a_count_or_a_number_of_seconds(build: Callable[[], Any], says: str) -> None:
    with pytest.raises(nanostream.GraphError, match=f"{says} must be .*got True"):
        build()


def test_plain_http_makes_no_tls_context(api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    node = HttpRequest(api.base + "/echo/{item}", workers=3)
    node.setup()
    try:
        assert [node.call(i)["path"] for i in range(4)] == [f"/echo/{i}" for i in range(4)]
        transport = node._client._transport  # type: ignore[union-attr]
    finally:
        node._close()
    assert made == [] and isinstance(transport, Transport) and transport.tls_context is None
    # the plain transport trusts no authority: TLS on it could not go unverified
    plain = transport.transports[False]._pool._ssl_context
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.cert_store_stats()["x509_ca"] == 0
    assert list(transport.transports) == [False]


@pytest.mark.parametrize(
    ("url", "at_start"),
    [("http://h/{item}", False), ("https://h/{item}", True), ("{item}/x", True)],
)
def test_a_node_that_may_speak_tls_makes_its_context_at_start(url: str, at_start: bool) -> None:
    transport = client_options(HttpRequest(url, workers=2), 2, blocking=True)["transport"]
    assert isinstance(transport, Transport)
    assert (transport.tls_context is not None) is at_start
    poller = HttpPoller(["http://a/up", "https://b/up"], interval=5)
    assert client_options(poller, 1, blocking=True)["transport"].tls_context is not None


def test_the_blocking_clients_https_transport_has_the_tls_context() -> None:
    node = HttpRequest("https://h/x", workers=2, client_options={"verify": False})
    transport = client_options(node, 2, blocking=True)["transport"]
    assert isinstance(transport, Transport)
    made = transport._make(httpx.HTTPTransport, secure=True)
    assert made._pool._ssl_context is transport.tls_context
    assert not transport.tls_context.check_hostname  # verify=False reached it
    limits = httpx.Limits(max_connections=3)
    capped = HttpRequest("http://h/x", workers=8, client_options={"limits": limits})
    assert client_options(capped, 8, blocking=True)["limits"] is limits
    made.close()


@pytest.mark.parametrize("blocking", [True, False])
def test_a_proxy_keeps_the_tls_settings_of_the_client(blocking: bool) -> None:
    node = HttpRequest(
        "https://h/x",
        workers=2,
        client_options={"verify": False, "proxy": "http://127.0.0.1:9"},
    )
    options = client_options(node, 2, blocking=blocking)
    client = httpx.Client(**options) if blocking else httpx.AsyncClient(**options)
    (proxy,) = client._mounts.values()
    assert proxy is not None and proxy._pool._ssl_context.verify_mode == ssl.CERT_NONE
    if blocking:
        client.close()
