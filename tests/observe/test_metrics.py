"""The Prometheus endpoint: scraped over HTTP during a live run, closed with the run."""

from __future__ import annotations

import re
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.observe import ITEM_SECONDS_BUCKETS, MetricsServer, RunSummary, Sample, attach
from support import wait_for_file

N = 1000


class HoldAfter(nanostream.NanoNode):
    """A node that waits for the file ``gate`` once it has received ``n`` items, then
    passes on; ``holding`` is set meanwhile (on ray the driver's copy is set too).

    Blocking in a node holds the whole graph under the cooperative runner, so the run is
    kept alive at a known point whatever the runner. The gate is a file, so the test
    opens it from another process than the node's as well.
    """

    def __init__(self, n: int, gate: Path, name: str) -> None:
        super().__init__(name=name)
        self.n = n
        self.gate = str(gate)
        self.count = 0
        self.holding = threading.Event()

    def process_item(self, item: Any) -> Iterator[Any]:
        self.count += 1
        if self.count == self.n:
            self.holding.set()
            wait_for_file(self.gate)
        yield item


class ItemCounts:
    """A display that sets ``hit`` once the observer has accounted for ``n`` items of a node."""

    def __init__(self, node: str, n: int) -> None:
        self.node, self.n = node, n
        self.counted = 0
        self.hit = threading.Event()

    def update(self, sample: Sample) -> None:
        got = sample.item_times.get(self.node)
        if got is not None:
            self.counted += got[1]
        if self.counted >= self.n:
            self.hit.set()

    def finish(self, summary: RunSummary) -> None:
        pass


def scrape(url: str) -> dict[str, float]:
    """The samples of an exposition, as ``{'name{labels}': value}`` with sorted labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        assert match, line
        name, labels, value = match.groups()
        pairs = sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        key = name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"
        samples[key] = float(value)
    return samples


def key(metric: str, node: str, pipeline: str = "shop", **extra: str) -> str:
    labels = sorted({"node": node, "pipeline": pipeline, **extra}.items())
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


def test_scrape_during_a_live_run(runner: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    hold = HoldAfter(N, gate, name="hold")
    sink = nanostream.testing.Collect(name="sink")
    src = nanostream.from_iterable(range(N), name="src")
    src > hold > sink
    run = src.global_start(block=False, runner=runner, name="shop", queue_size=4096, batch_size=64)
    assert run is not None
    counts = ItemCounts("hold", N - 1)
    observer = attach(run, metrics_port=0, progress=counts, interval=0.02)
    try:
        assert observer.metrics_url is not None
        assert observer.metrics_url.startswith("http://127.0.0.1:")
        assert hold.holding.wait(10)
        assert counts.hit.wait(10)
        m = scrape(observer.metrics_url)
    finally:
        gate.touch()
    assert run.wait(10)
    assert hold.count == N  # on ray too: the node's attributes come back when it ends
    assert sink.items == list(range(N))
    assert m[key("nanostream_node_items_out_total", "src")] == N
    assert m[key("nanostream_node_items_in_total", "hold")] == N
    assert m[key("nanostream_node_items_out_total", "hold")] < N  # the last one is held
    assert m[key("nanostream_node_errors_total", "hold")] == 0
    assert m[key("nanostream_node_queue_capacity", "hold")] == 4096
    assert m[key("nanostream_node_queue_capacity", "src")] == 0
    assert m[key("nanostream_node_queue_depth", "hold")] == 0
    assert m[key("nanostream_node_state", "hold", state="running")] == 1
    assert m[key("nanostream_node_state", "hold", state="finished")] == 0
    assert m[key("nanostream_node_state", "src", state="finished")] == 1
    assert m[key("nanostream_node_blocked_input_seconds_total", "hold")] >= 0
    # per-item times: every item the observer accounted for is in the histogram
    count = m[key("nanostream_node_item_seconds_count", "hold")]
    assert counts.counted <= count <= N
    top = m[key("nanostream_node_item_seconds_bucket", "hold", le="+Inf")]
    assert top == count
    assert m[key("nanostream_node_item_seconds_sum", "hold")] >= 0
    # the endpoint went away with the run, and its thread was joined
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(observer.metrics_url, timeout=5)
    assert not [t for t in threading.enumerate() if t.name.startswith("nanostream-metrics")]


def test_errors_and_failed_state_after_a_failure() -> None:
    def boom(inp: Any, outp: Any) -> None:
        for x in inp:
            raise ValueError(f"bad {x}")

    src = nanostream.from_iterable([1, 2], name="src")
    _ = src > boom
    run = src.global_start(block=False, name="shop")
    assert run is not None
    with pytest.raises(nanostream.NodeFailed):
        run.wait(10)
    server = MetricsServer("shop", run.stats, port=0)
    try:
        m = scrape(server.url)
    finally:
        server.close()
    assert m[key("nanostream_node_errors_total", "boom")] == 1
    assert m[key("nanostream_node_state", "boom", state="failed")] == 1
    assert m[key("nanostream_node_state", "boom", state="running")] == 0


def test_histogram_buckets_are_cumulative() -> None:
    server = MetricsServer("p", dict, port=0)
    try:
        server.observe("n", 0.0003, 5)  # in the 0.0005 bucket
        server.observe("n", 3.0, 1)  # in the 5.0 bucket
        server.observe("n", 100.0, 2)  # only in +Inf
        m = scrape(server.url)
    finally:
        server.close()

    def bucket(le: str) -> float:
        return m[key("nanostream_node_item_seconds_bucket", "n", pipeline="p", le=le)]

    assert bucket("0.00025") == 0
    assert bucket("0.0005") == 5
    assert bucket("2.5") == 5
    assert bucket("5.0") == 6
    assert bucket("10.0") == 6
    assert bucket("+Inf") == 8
    assert m[key("nanostream_node_item_seconds_count", "n", pipeline="p")] == 8
    assert m[key("nanostream_node_item_seconds_sum", "n", pipeline="p")] == pytest.approx(
        0.0015 + 3.0 + 200.0
    )
    assert len(ITEM_SECONDS_BUCKETS) == 22


def test_binds_to_localhost_by_default() -> None:
    server = MetricsServer("p", dict, port=0)
    try:
        assert server.host == "127.0.0.1"
        assert server._server.server_address[0] == "127.0.0.1"
    finally:
        server.close()
    server.close()  # idempotent


def test_a_port_in_use_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            nanostream.ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"
        ):
            MetricsServer("p", dict, port=port)


def test_a_failed_attach_leaves_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    src = nanostream.from_iterable([1], name="src")
    run = src.global_start(block=False)
    assert run is not None and run.wait(10)
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(nanostream.MissingDependencyError):
        attach(run, metrics_port=0, progress=True, force_terminal=True)
    assert not [t for t in threading.enumerate() if t.name.startswith("nanostream")]


def test_metrics_need_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(nanostream.MissingDependencyError, match=r"prometheus-client"):
        MetricsServer("p", dict, port=0)
