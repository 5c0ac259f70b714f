"""Concurrency workloads: ``processes=`` for CPU-bound Python, ``concurrency=`` for async I/O.

- ``cpu_rows``: 20,000 items of about 200 µs of pure-Python work each, through
  ``Map(work, processes=2)``, against the plain loop ``[work(x) for x in items]`` in one
  process, in the same run (target: >= 1.8x on 2 cores). The machine's load average is
  noted, since other processes take cores from both, and so is the CPU that the node's
  process spends per 1,000 items (time taken from the workers' cores on 2 cores), which
  depends much less on the load than the ratio does. A third variant, two plain loops in
  two processes let go at once (each on half the items), tells what two cores give this
  work on this machine: the ceiling of ``processes=2``, which is under 2x wherever two busy
  cores run slower than one (shared caches, a host's hyperthreads, frequency).
- ``async_rows``: 2,000 calls of an ``async def`` function that awaits 20 ms (a stand-in for
  a request's latency), through ``Map(call, concurrency=C)`` for C = 16 and 64, against a
  plain ``asyncio`` loop with a semaphore of C doing the same calls, and against the ideal
  C / latency calls per second.

- ``http_rows``: 2,000 GET requests to a server in processes of its own (two, sharing the
  port) that answers each after 20 ms (an asyncio protocol with a timer per request,
  keep-alive: its CPU is not what bounds the rate), through
  ``HttpRequest(url, concurrency=C)`` for C = 16 and 64, against a plain ``asyncio`` +
  ``httpx.AsyncClient`` + semaphore loop of the same requests (target: >= the plain loop
  at both), and against the same loop on the HTTP nodes' transport (one single-connection
  httpx transport per request in flight), which tells what nanostream adds per request
  from what its transport saves. Each row also gives what the server takes from C raw
  asyncio sockets (no HTTP library). At 20 ms the ideal C / latency needs the client to
  spend under 1.25 ms of CPU per request at C = 16 (0.3 ms at 64), less than httpx itself
  costs on this machine, so the ideal is checked by one more row (target >= 0.85x ideal
  at 16), with the server answering after 100 ms: there 160 requests/s take httpx a
  quarter of a core or less, and what is measured is how well the node keeps 16 requests
  in flight.

``rows(n)`` gives them as rows for ``benchmarks/run.py`` (``--only concurrency``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import nanostream
from nanostream.nodes import Map

Row = tuple[str, float, str]
CPU_ITEMS = 20_000
CPU_TARGET = 1.8
LATENCY_S = 0.02
CALLS = 2_000


def work(x: int, rounds: int = 2000) -> int:
    """Pure-Python work: ``rounds`` multiplications and remainders."""
    total = 0
    for i in range(rounds):
        total += (i * x) % 7
    return total


def calibrate(target_s: float = 200e-6) -> int:
    """The ``rounds`` that make ``work`` take about ``target_s`` here."""
    start = time.perf_counter()
    for x in range(200):
        work(x)
    per_call = (time.perf_counter() - start) / 200
    return max(1, int(2000 * target_s / per_call))


def _count_sink(result: list[int]) -> Any:
    def count_sink(inp: Iterable[Any], outp: Any) -> None:
        count = 0
        for _ in inp:
            count += 1
        result.append(count)

    return nanostream.as_node(count_sink)


def plain_loop(n: int, rounds: int) -> float:
    """Seconds for ``[work(x, rounds) for x in range(n)]``."""
    start = time.perf_counter()
    out = [work(x, rounds) for x in range(n)]
    elapsed = time.perf_counter() - start
    assert len(out) == n
    return elapsed


def two_loops(n: int, rounds: int) -> float:
    """Seconds for ``n`` items of ``work`` as two plain loops of ``n // 2`` in two processes
    started beforehand and let go at once (their start-up is not counted)."""
    command = [sys.executable, __file__, "--loop", str(n // 2), str(rounds)]
    children = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    pipes = [(child.stdin, child.stdout) for child in children]
    try:
        for _, said in pipes:
            assert said is not None and said.readline() == "ready\n"
        start = time.perf_counter()
        for told, _ in pipes:
            assert told is not None
            told.write("go\n")
            told.flush()
        for _, said in pipes:
            assert said is not None and said.readline() == "done\n"
        return time.perf_counter() - start
    finally:
        for child in children:
            child.kill()
            child.wait()


def _loop_when_told(n: int, rounds: int) -> None:
    """A child of :func:`two_loops`: says it is ready, waits for "go", runs the loop."""
    print("ready", flush=True)
    sys.stdin.readline()
    plain_loop(n, rounds)
    print("done", flush=True)


def with_processes(n: int, rounds: int, processes: int = 2) -> tuple[float, float]:
    """Seconds for ``n`` items through ``Map(work, processes=processes)`` (with start-up),
    and the CPU seconds this process spent meanwhile (every thread of it: the source, the
    node, the sink, the pool's threads; not the workers)."""
    result: list[int] = []
    src = nanostream.from_iterable(range(n))
    src > Map(functools.partial(work, rounds=rounds), processes=processes) > _count_sink(result)
    start, cpu = time.perf_counter(), time.process_time()
    src.global_start()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert result == [n]
    return elapsed, cpu


def cpu_rows(n: int = CPU_ITEMS, repeat: int = 3) -> list[Row]:
    rounds = calibrate()
    with_processes(10, rounds)  # starts the fork server, once per program
    start_up = statistics.median(with_processes(2, rounds)[0] for _ in range(3))
    plain: list[float] = []
    pooled: list[float] = []
    parent_cpu: list[float] = []
    ceiling: list[float] = []
    for _ in range(repeat):
        plain.append(plain_loop(n, rounds))
        elapsed, cpu = with_processes(n, rounds)
        pooled.append(elapsed)
        parent_cpu.append(cpu)
        ceiling.append(two_loops(n, rounds))
    base, two = statistics.median(plain), statistics.median(pooled)
    cores = statistics.median(ceiling)
    per_1000 = statistics.median(parent_cpu) / n * 1000
    load = os.getloadavg()[0]
    return [
        (
            f"plain loop, {n:,} items of ~200 us ({rounds} rounds)",
            n / base,
            f"{base / n * 1e6:.0f} us per item; load average {load:.1f} on {os.cpu_count()} cores",
        ),
        (
            "Map(work, processes=2)",
            n / two,
            f"{base / two:.2f}x the plain loop (target >= {CPU_TARGET}x); "
            f"start-up and end of a run with 2 items: {start_up:.2f} s; "
            f"CPU of the node's process per 1,000 items: {per_1000 * 1000:.1f} ms; "
            f"{cores / two:.2f}x the two loops below",
        ),
        (
            "two plain loops in two processes at once",
            n / cores,
            f"{base / cores:.2f}x the plain loop: what 2 cores give this work here, "
            "the ceiling of processes=2",
        ),
    ]


async def _call(x: int) -> int:
    await asyncio.sleep(LATENCY_S)
    return x


def plain_async(n: int, concurrency: int) -> float:
    """Seconds for ``n`` calls with an asyncio semaphore of ``concurrency``."""

    async def main() -> list[int]:
        slots = asyncio.Semaphore(concurrency)

        async def one(x: int) -> int:
            async with slots:
                return await _call(x)

        return await asyncio.gather(*(one(x) for x in range(n)))

    start = time.perf_counter()
    out = asyncio.run(main())
    elapsed = time.perf_counter() - start
    assert len(out) == n
    return elapsed


def with_concurrency(n: int, concurrency: int, runner: str = "threads") -> float:
    """Seconds for ``n`` items through ``Map(_call, concurrency=concurrency)``."""
    result: list[int] = []
    src = nanostream.from_iterable(range(n))
    src > Map(_call, concurrency=concurrency) > _count_sink(result)
    start = time.perf_counter()
    src.global_start(runner=runner)
    elapsed = time.perf_counter() - start
    assert result == [n]
    return elapsed


def async_rows(n: int = CALLS, repeat: int = 3) -> list[Row]:
    rows: list[Row] = []
    for concurrency in (16, 64):
        plain: list[float] = []
        ours: list[float] = []
        coop: list[float] = []
        for _ in range(repeat):
            plain.append(plain_async(n, concurrency))
            ours.append(with_concurrency(n, concurrency))
            coop.append(with_concurrency(n, concurrency, "cooperative"))
        ideal = concurrency / LATENCY_S
        base = n / statistics.median(plain)
        for name, samples in (("threads", ours), ("cooperative", coop)):
            rate = n / statistics.median(samples)
            rows.append(
                (
                    f"Map(async, concurrency={concurrency}), {name}, {LATENCY_S * 1000:.0f} ms",
                    rate,
                    f"{rate / base:.2f}x asyncio+semaphore ({base:,.0f}/s); "
                    f"{rate / ideal:.2f}x ideal ({ideal:,.0f}/s)",
                )
            )
    return rows


_ANSWER = (
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"ok": true}'
)

#: Processes of the benchmark's HTTP server, which share its port (``SO_REUSEPORT``).
SERVER_PROCESSES = 2


class _Delayed(asyncio.Protocol):
    """One keep-alive connection: each GET is answered ``latency`` s after it came.

    A protocol, not streams: a request costs the server a buffer scan and a timer, so
    that the latency, not the server's CPU, bounds the requests per second.
    """

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *heads, self.buffer = self.buffer.split(b"\r\n\r\n")
        loop = asyncio.get_running_loop()
        for _ in heads:  # GETs without a body: one head per request
            loop.call_later(self.latency, self._answer)

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_ANSWER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve(latency: float, port: int = 0) -> None:
    """A keep-alive HTTP server answering every GET after ``latency`` s; prints its port."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Delayed(latency), "127.0.0.1", port, backlog=1024, reuse_port=True
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def server_process(latency: float, processes: int = SERVER_PROCESSES) -> Iterator[str]:
    """The base URL of :func:`serve` running in ``processes`` child processes (one port)."""
    command = [sys.executable, __file__, "--serve", str(latency)]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True)]
    try:
        assert children[0].stdout is not None
        port = int(children[0].stdout.readline())
        for _ in range(processes - 1):
            child = subprocess.Popen([*command, str(port)], stdout=subprocess.PIPE, text=True)
            children.append(child)
            assert child.stdout is not None
            child.stdout.readline()  # listening
        yield f"http://127.0.0.1:{port}"
    finally:
        for child in children:
            child.terminate()
            child.wait()


def plain_httpx(base: str, n: int, concurrency: int, one_per_request: bool = False) -> float:
    """Seconds for ``n`` GETs with ``httpx.AsyncClient`` and a semaphore of ``concurrency``;
    ``one_per_request``: on the transport the HTTP nodes use, a single-connection httpx
    transport per request in flight, instead of httpx's one pool."""
    import httpx

    from nanostream.connectors.http._connections import Connections

    async def main() -> int:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        slots = asyncio.Semaphore(concurrency)
        options: dict[str, Any] = (
            {"transport": Connections(concurrency)} if one_per_request else {"limits": limits}
        )
        async with httpx.AsyncClient(**options) as client:

            async def one(i: int) -> Any:
                async with slots:
                    response = await client.get(f"{base}/items/{i}")
                    response.raise_for_status()
                    return response.json()

            return len(await asyncio.gather(*(one(i) for i in range(n))))

    start = time.perf_counter()
    assert asyncio.run(main()) == n
    return time.perf_counter() - start


def raw_sockets(base: str, n: int, concurrency: int) -> float:
    """Seconds for ``n`` GETs over ``concurrency`` keep-alive asyncio streams, no HTTP
    library: what the server can take (the client's CPU costs next to nothing)."""
    port = int(base.rsplit(":", 1)[1])
    request = b"GET /items/0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(request)
            await reader.readuntil(_ANSWER[-12:])
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        await asyncio.gather(*(connection(n // concurrency) for _ in range(concurrency)))

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def with_http_request(base: str, n: int, concurrency: int) -> float:
    """Seconds for ``n`` GETs through ``HttpRequest(concurrency=concurrency)``."""
    from nanostream.nodes.http import HttpRequest

    result: list[int] = []
    src = nanostream.from_iterable(range(n))
    src > HttpRequest(base + "/items/{item}", concurrency=concurrency) > _count_sink(result)
    start = time.perf_counter()
    src.global_start()
    elapsed = time.perf_counter() - start
    assert result == [n]
    return elapsed


def _cpu_s() -> float:
    """CPU seconds of this process so far, all its threads (the server's are not in it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(samples: dict[str, list[tuple[float, float]]], name: str, run: Any) -> None:
    """Add ``run()``'s (seconds, CPU seconds) to ``samples[name]``."""
    cpu = _cpu_s()
    elapsed = run()
    samples.setdefault(name, []).append((elapsed, _cpu_s() - cpu))


def _median(samples: list[tuple[float, float]], n: int) -> tuple[float, float]:
    """Requests per second and CPU ms per request, medians of ``samples`` of ``n``."""
    return (
        n / statistics.median(s for s, _ in samples),
        statistics.median(c for _, c in samples) / n * 1000,
    )


def http_rows(n: int = CALLS, repeat: int = 3) -> list[Row]:
    rows: list[Row] = []
    with server_process(LATENCY_S) as base:
        plain_httpx(base, 50, 16)  # warm up the server
        for concurrency in (16, 64):
            samples: dict[str, list[tuple[float, float]]] = {}
            for _ in range(repeat):
                _run(samples, "raw", functools.partial(raw_sockets, base, n, concurrency))
                _run(samples, "plain", functools.partial(plain_httpx, base, n, concurrency))
                _run(
                    samples,
                    "same",
                    functools.partial(plain_httpx, base, n, concurrency, one_per_request=True),
                )
                _run(samples, "ours", functools.partial(with_http_request, base, n, concurrency))
            ideal = concurrency / LATENCY_S
            server_rate, _ = _median(samples["raw"], n)
            base_rate, base_cpu = _median(samples["plain"], n)
            same_rate, same_cpu = _median(samples["same"], n)
            rate, cpu = _median(samples["ours"], n)
            rows.append(
                (
                    f"HttpRequest(concurrency={concurrency}), {LATENCY_S * 1000:.0f} ms server",
                    rate,
                    f"{rate / base_rate:.2f}x asyncio+httpx+semaphore ({base_rate:,.0f}/s); "
                    f"{rate / same_rate:.2f}x the same loop on one connection per request "
                    f"({same_rate:,.0f}/s); {rate / ideal:.2f}x ideal ({ideal:,.0f}/s); "
                    f"the server takes {server_rate:,.0f}/s from raw asyncio sockets "
                    f"({server_rate / ideal:.2f}x); client CPU per request {cpu:.2f} ms, "
                    f"{base_cpu:.2f} ms for the plain loop, {same_cpu:.2f} ms on one "
                    "connection per request",
                )
            )
    rows.append(http_ideal_row(max(160, n // 5), repeat))
    return rows


#: The server latency of the row that checks the ideal at 16 in flight: long enough that the
#: client's CPU is not what bounds the rate (160 requests/s at about 1-2 ms of httpx CPU
#: each take a quarter of a core or less), which at 20 ms it is on 2 cores.
IDEAL_LATENCY_S = 0.1


def http_ideal_row(n: int, repeat: int = 3, concurrency: int = 16) -> Row:
    """``HttpRequest(concurrency=16)`` against the ideal and the plain loop, with a server
    answering after :data:`IDEAL_LATENCY_S`."""
    samples: dict[str, list[tuple[float, float]]] = {}
    with server_process(IDEAL_LATENCY_S) as base:
        plain_httpx(base, 50, concurrency)  # warm up the server
        for _ in range(repeat):
            _run(samples, "plain", functools.partial(plain_httpx, base, n, concurrency))
            _run(samples, "ours", functools.partial(with_http_request, base, n, concurrency))
    ideal = concurrency / IDEAL_LATENCY_S
    base_rate, base_cpu = _median(samples["plain"], n)
    rate, cpu = _median(samples["ours"], n)
    return (
        f"HttpRequest(concurrency={concurrency}), {IDEAL_LATENCY_S * 1000:.0f} ms server",
        rate,
        f"{rate / ideal:.2f}x ideal ({ideal:,.0f}/s; target >= 0.85x); "
        f"{rate / base_rate:.2f}x asyncio+httpx+semaphore ({base_rate:,.0f}/s); "
        f"client CPU per request {cpu:.2f} ms, {base_cpu:.2f} ms for the plain loop",
    )


def rows(n: int) -> list[Row]:
    load = os.getloadavg()[0]
    return [
        *cpu_rows(),
        *async_rows(),
        *http_rows(),
        (f"(load average {load:.1f} when the group started)", 0.0, ""),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(float(sys.argv[2]), *(int(p) for p in sys.argv[3:4]))
    elif sys.argv[1:2] == ["--loop"]:
        _loop_when_told(int(sys.argv[2]), int(sys.argv[3]))
    else:
        for name, rate, note in rows(0):
            print(f"{name:<60} {rate:>10,.0f}  {note}")
