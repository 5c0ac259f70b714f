"""The HTTP connectors' tests' API server (``http.server`` in a thread on 127.0.0.1), which
the ``api`` and ``other_api`` fixtures of tests/nodes/conftest.py serve, and ``run_items``.
Shared by test_http.py (the blocking client) and test_http_async.py (``concurrency=``)."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import nanostream
from nanostream.testing import Collect

TOKEN = "tok-Very-Secret-123"
API_KEY = "KEY-secret-987"


# ----------------------------------------------------------------------------- the server
class ApiServer(ThreadingHTTPServer):
    """A small API that can be told to fail, throttle, drop connections and paginate."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.attempts: dict[str, list[float]] = defaultdict(list)
        self.requests: list[tuple[str, str, float]] = []
        self.headers_seen: list[tuple[str, dict[str, str]]] = []  # path, headers (lower case)
        self.barrier = threading.Barrier(4)
        self.got_request = threading.Condition(self.lock)
        self.connections = 0  # accepted

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, method: str, path: str, headers: dict[str, str]) -> int:
        """Note a request; returns how many requests this path has had, this one included."""
        with self.lock:
            now = time.monotonic()
            self.requests.append((method, path, now))
            self.headers_seen.append((path, headers))
            self.attempts[path].append(now)
            self.got_request.notify_all()
            return len(self.attempts[path])

    def wait_for_requests(self, n: int, timeout: float = 10) -> bool:
        with self.got_request:
            return self.got_request.wait_for(lambda: len(self.requests) >= n, timeout)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms stall between headers and body
    server: ApiServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.handle_any()

    def do_POST(self) -> None:
        self.handle_any()

    def handle_any(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        n = self.server.record(self.command, path, {k.lower(): v for k, v in self.headers.items()})
        segments = path.strip("/").split("/")
        route = segments[0]
        if route == "echo":
            self.send_json(
                200,
                {
                    "method": self.command,
                    "path": path,
                    "raw_path": self.path,
                    "query": query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "json": json.loads(raw) if raw else None,
                },
            )
        elif route == "redirect":  # send the client on to `to`, with status `status`
            self.send_response(int(query.get("status", "302")))
            self.send_header("Location", query["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "items":
            self.send_json(200, {"id": segments[1]})
        elif route == "text":
            self.send_text(200, "hello ✓")
        elif route == "flaky":  # fail `fail` times with `status`, then succeed
            if n <= int(query.get("fail", "1")):
                self.send_text(int(query.get("status", "503")), "try again")
            else:
                self.send_json(200, {"key": segments[1], "attempts": n})
        elif route == "throttle":  # 429 with Retry-After first, then succeed
            if n == 1:
                self.send_text(429, "slow down", {"Retry-After": query.get("after", "1")})
            else:
                self.send_json(200, {"key": segments[1], "attempts": n})
        elif route == "drop":  # close the connection without answering, `n` times
            if n <= int(query.get("n", "1")):
                self.close_connection = True
                return
            self.send_json(200, {"key": segments[1], "attempts": n})
        elif route == "status":  # answer with that status, echoing the credentials sent
            auth = self.headers.get("Authorization", "")
            self.send_text(int(segments[1]), f"denied: you sent {auth!r} to {self.path}")
        elif route == "barrier":  # succeeds only if 4 requests are in flight at once
            try:
                self.server.barrier.wait(timeout=5)
            except threading.BrokenBarrierError:
                self.send_text(500, "not concurrent")
                return
            body = {"id": segments[1]}
            self.send_json(200, [body] if query.get("as") == "list" else body)
        elif route == "pages":
            self.pages(segments[1], query)
        elif route == "hop":  # a page whose next page is `to`, in the body or a Link header
            self.page(["hop"], query["to"], query["shape"])
        elif route == "seen":  # the last page: what this request carried
            seen = {"path": path, "headers": {k.lower(): v for k, v in self.headers.items()}}
            self.page([seen], None, query["shape"])
        elif route == "malformed":  # a JSON answer that is not JSON
            self.send_raw(200, b'{"a": [1, 2', "application/json")
        elif route == "deep":  # a JSON answer nested deeper than the parser's recursion
            self.send_raw(200, b"[" * 100_000, "application/json")
        elif route == "counter":
            self.send_json(200, {"n": n})
        elif route == "versioned":
            if self.headers.get("If-None-Match") == '"v1"':
                self.send_response(304)
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_json(200, {"version": 1}, {"ETag": '"v1"'})
        else:
            self.send_text(404, "no such route")

    def send_raw(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def page(self, data: list[Any], next_url: str | None, shape: str) -> None:
        """A page: ``{"data", "next"}`` (``shape="body"``) or a list with a Link header."""
        if shape == "body":
            self.send_json(200, {"data": data, "next": next_url})
        else:
            link = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
            self.send_json(200, data, link)

    def pages(self, style: str, query: dict[str, str]) -> None:
        total, size = 25, 10
        if style == "offset":
            offset, limit = int(query["offset"]), int(query["limit"])
            self.send_json(200, {"data": list(range(offset, min(total, offset + limit)))})
            return
        page = int(query.get("page") or query.get("cursor") or 0)
        data = list(range(page * size, min(total, (page + 1) * size)))
        more = (page + 1) * size < total
        if style == "next":
            link = f"/pages/next?page={page + 1}" if more else None
            self.send_json(200, {"data": data, "links": {"next": link}})
        elif style == "link":
            headers = {"Link": f'</pages/link?page={page + 1}>; rel="next"'} if more else {}
            self.send_json(200, data, headers)
        elif style == "cursor":
            self.send_json(200, {"items": data, "meta": {"next": str(page + 1) if more else None}})


def serve() -> Iterator[ApiServer]:
    server = ApiServer()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="test-http-server"
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def run_items(node: nanostream.NanoNode, items: list[Any], runner: str = "threads") -> list[Any]:
    sink = Collect()
    nanostream.from_iterable(items) > node > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert run.wait(timeout=60)
    return sink.items
