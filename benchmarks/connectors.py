"""Connector benchmarks: SQLite sink vs. a plain ``executemany`` loop, HTTP requests/s.

Each workload function takes N and returns the count it handled (``run.py``'s contract);
``rows(n)`` returns the table rows. Run alone with a small N to check it works:

    .venv/bin/python benchmarks/connectors.py --n 2000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nanostream

Row = tuple[str, float, str]

SQL_BATCH = 1000


def _sales(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"item {i}", "price": i * 0.25} for i in range(n)]


def _new_table(path: Path) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    db.close()


def _count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM sales").fetchone()[0])
    finally:
        db.close()


# --------------------------------------------------------------------- SQLite
def sqlite_sink(n: int, rows: list[dict[str, Any]] | None = None) -> int:
    """``from_iterable(rows) > SQLSink(...)`` into a fresh SQLite file; returns the rows in it."""
    from nanostream.nodes.sql import SQLSink

    rows = rows if rows is not None else _sales(n)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        _new_table(path)
        sink = SQLSink(f"sqlite:///{path}", "sales", batch_size=SQL_BATCH)
        nanostream.from_iterable(rows) > sink
        sink.global_start()
        return _count(path)


def sqlite_executemany(n: int, rows: list[dict[str, Any]] | None = None) -> int:
    """The baseline: ``sqlite3`` ``executemany`` per batch, one transaction per batch."""
    rows = rows if rows is not None else _sales(n)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        _new_table(path)
        db = sqlite3.connect(path)
        try:
            for start in range(0, len(rows), SQL_BATCH):
                chunk = rows[start : start + SQL_BATCH]
                with db:
                    db.executemany(
                        "INSERT INTO sales (id, name, price) VALUES (?, ?, ?)",
                        [(r["id"], r["name"], r["price"]) for r in chunk],
                    )
        finally:
            db.close()
        return _count(path)


# --------------------------------------------------------------------- HTTP
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms stall between headers and body

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if "delay_ms=" in self.path:  # a remote API's latency
            time.sleep(int(self.path.rsplit("delay_ms=", 1)[1]) / 1000)
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(port: int = 0) -> None:
    """Serve the small JSON API until killed, printing the port first (``--serve``)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


@contextmanager
def local_server() -> Iterator[str]:
    """The JSON API in its own process (so it does not share our GIL); yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def http_requests(n: int, workers: int = 16, base: str | None = None, delay_ms: int = 0) -> int:
    """N GET requests through ``HttpRequest(workers=...)``; returns the answers received.

    ``delay_ms`` makes the server wait that long before each answer, like a remote API.
    """
    from nanostream.nodes.http import HttpRequest

    def run(url: str) -> int:
        count = [0]

        def counter(inp: Any, outp: Any) -> None:
            for _ in inp:
                count[0] += 1

        src = nanostream.from_iterable(range(n))
        path = f"/items/{{item}}?delay_ms={delay_ms}" if delay_ms else "/items/{item}"
        src > HttpRequest(url + path, workers=workers) > counter
        src.global_start()
        return count[0]

    if base is not None:
        return run(base)
    with local_server() as url:
        return run(url)


# --------------------------------------------------------------------- the table
def _rate(func: Callable[[int], int], n: int) -> float:
    start = time.perf_counter()
    got = func(n)
    elapsed = time.perf_counter() - start
    if got != n:
        raise AssertionError(f"{func.__name__} handled {got}, expected {n}")
    return n / elapsed


def _medians(variants: dict[str, Callable[[int], int]], n: int, repeat: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):  # interleaved, so a slow moment hits every variant alike
        for name, func in variants.items():
            samples[name].append(_rate(func, n))
    return {name: statistics.median(values) for name, values in samples.items()}


def sqlite_rows(n: int, repeat: int = 3) -> list[Row]:
    """SQLite sink vs. plain executemany, measured in the same run."""
    data = _sales(n)
    sqlite_sink(10)  # warm up: imports and first-use costs are not per-row costs
    result = _medians(
        {
            "SQLSink": lambda k: sqlite_sink(k, data),
            "executemany": lambda k: sqlite_executemany(k, data),
        },
        n,
        repeat,
    )
    ratio = result["SQLSink"] / result["executemany"]
    return [
        (
            f"SQLite SQLSink, N={n:,}",
            result["SQLSink"],
            f"{ratio:.2f}x executemany (target >= 0.9x)",
        ),
        (f"SQLite plain executemany loop, N={n:,}", result["executemany"], "baseline"),
    ]


def http_rows(n: int, workers: int = 16, repeat: int = 3, delay_ms: int = 5) -> list[Row]:
    """HTTP requests/s against a local server: raw, and with ``delay_ms`` of latency."""
    slow_n = max(50, n // 4)
    with local_server() as base:
        http_requests(10, workers=1, base=base)  # warm up
        raw = _medians({"raw": lambda k: http_requests(k, workers=workers, base=base)}, n, repeat)
        slow = _medians(
            {
                "many": lambda k: http_requests(k, workers, base, delay_ms),
                "one": lambda k: http_requests(k, 1, base, delay_ms),
            },
            slow_n,
            repeat,
        )
    speedup = slow["many"] / slow["one"]
    return [
        (f"HttpRequest, workers={workers}, N={n:,}", raw["raw"], "requests/s, local server"),
        (
            f"HttpRequest, workers={workers}, {delay_ms} ms latency, N={slow_n:,}",
            slow["many"],
            f"{speedup:.1f}x workers=1 (ideal {workers}x)",
        ),
        (
            f"HttpRequest, workers=1, {delay_ms} ms latency, N={slow_n:,}",
            slow["one"],
            f"ideal {1000 / delay_ms:,.0f} requests/s",
        ),
    ]


def rows(n: int) -> list[Row]:
    """The connector rows for ``benchmarks/run.py`` (N scaled to each workload)."""
    return sqlite_rows(min(n, 200_000)) + http_rows(max(200, min(n // 100, 5_000)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="rows for SQLite, N/10 requests")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--serve", action="store_true", help="only serve the HTTP API")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    table = sqlite_rows(args.n, args.repeat) + http_rows(max(50, args.n // 10), repeat=args.repeat)
    for name, rate, note in table:
        print(f"{name:<45} {rate:>12,.0f}  {note}")


if __name__ == "__main__":
    main()
