"""Helpers that several test modules share (imported as ``support``: ``tests/`` is on the
path through its conftest). Ray workers receive this module by value, like the test
modules themselves (see ``conftest.send_by_value``)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import pytest

import nanostream
from nanostream.testing import Collect


def missing(reason: str) -> NoReturn:
    """Skip a test whose server or tool is not installed; fail it where the environment
    says everything is installed (``NANOSTREAM_REQUIRE_SERVICES=1``: CI's second pass, so
    those tests cannot skip there unseen)."""
    if os.environ.get("NANOSTREAM_REQUIRE_SERVICES") == "1":
        pytest.fail(f"NANOSTREAM_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def run_through(
    items: list[Any], *nodes: nanostream.NanoNode, runner: str = "threads"
) -> list[Any]:
    """Run ``items`` through ``nodes`` (linked in order) on ``runner``; what comes out."""
    sink = Collect()
    chain: Any = nanostream.from_iterable(items)
    for node in nodes:
        chain = chain > node
    chain > sink
    sink.global_start(runner=runner)
    return sink.items


# On the ray runner nodes run in other processes: a test and its nodes signal each other
# with files, and read what nodes kept from the node objects (copied back when they end).
def wait_for_file(
    path: str | os.PathLike[str],
    pause: Callable[[float], bool] | None = None,
    timeout: float = 10.0,
) -> bool:
    """Wait until ``path`` exists (at most ``timeout`` s); ``pause(s)`` waits between looks.

    A ``pause`` that returns True (a ``NanoNode.sleep()`` whose run is stopping) ends the
    wait at once.
    """
    pause = pause or threading.Event().wait
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        if pause(0.005):
            return os.path.exists(path)
    return True


class FlagSink(Collect):
    """Collects, and creates the file ``flag`` when the first item arrives."""

    def __init__(self, flag: Path, **options: Any) -> None:
        super().__init__(**options)
        self.flag = str(flag)

    def process_item(self, item: Any) -> Iterator[Any]:
        Path(self.flag).touch()
        yield from super().process_item(item)


class TruncatingSink(Collect):
    """Collects, and truncates the file ``path`` to ``keep`` bytes when the first item
    arrives: the file a reader upstream is still reading gets shorter under it.

    Its input queue holds one item, so the reader cannot get far ahead of it.
    """

    def __init__(self, path: Path, keep: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.configure(queue_size=1)
        self.path = str(path)
        self.keep = keep
        self.truncated = False

    def process_item(self, item: Any) -> Iterator[Any]:
        if not self.truncated:
            self.truncated = True
            os.truncate(self.path, self.keep)
        yield from super().process_item(item)


class Counter(nanostream.NanoNode):
    """Counts 0, 1, 2, ... for ever; ``produced`` is how many it gave (it comes back on ray)."""

    def __init__(self) -> None:
        super().__init__()
        self.produced = 0

    def generator(self) -> Iterator[int]:
        for i in itertools.count():
            self.produced = i + 1
            yield i


class OneThenWait(nanostream.NanoNode):
    """Emits one item, then waits (at most ``timeout`` s) for the file ``flag``, which a
    downstream creates when its answer arrives; ``answered`` says whether it came."""

    def __init__(self, flag: Path, item: Any = 1, timeout: float = 10.0) -> None:
        super().__init__()
        self.flag = str(flag)
        self.item = item
        self.timeout = timeout
        self.answered = False

    def generator(self) -> Iterator[Any]:
        yield self.item
        self.answered = wait_for_file(self.flag, self.sleep, timeout=self.timeout)


class OneAckedThenWait(OneThenWait):
    """Like :class:`OneThenWait`, but the item is ``Acked``: the flag is its acknowledgement."""

    def generator(self) -> Iterator[Any]:
        flag = self.flag
        yield nanostream.Acked(self.item, lambda: Path(flag).touch())
        self.answered = wait_for_file(flag, self.sleep, timeout=self.timeout)


class OTLPCollector:
    """A stand-in OTLP/HTTP collector on 127.0.0.1: keeps the bodies posted to each path."""

    def __init__(self) -> None:
        received: dict[str, list[bytes]] = {}
        self.received = received
        self.got = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def span_names(self) -> list[str]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        names = []
        for body in self.received.get("/v1/traces", []):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    names.extend(span.name for span in scope.spans)
        return names

    def service_names(self) -> set[str]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        found = set()
        for body in self.received.get("/v1/traces", []):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for attribute in resource.resource.attributes:
                    if attribute.key == "service.name":
                        found.add(attribute.value.string_value)
        return found
