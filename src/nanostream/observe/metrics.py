"""A Prometheus endpoint for one run (needs ``prometheus-client``: ``nanostream[observe]``).

Every metric carries the labels ``pipeline`` (the run's name) and ``node``:

=========================================== ========= ======================================
metric                                      type      meaning
=========================================== ========= ======================================
``nanostream_node_items_in_total``          counter   items the node took from its queue
``nanostream_node_items_out_total``         counter   items the node sent downstream
``nanostream_node_errors_total``            counter   errors raised by the node
``nanostream_node_blocked_input_seconds``   counter   time spent waiting for input
``nanostream_node_blocked_output_seconds``  counter   time spent waiting for room downstream
``nanostream_node_queue_depth``             gauge     items waiting in the input queue
``nanostream_node_queue_capacity``          gauge     size of the input queue (0: a source)
``nanostream_node_state``                   gauge     1 for the node's state (label
                                                      ``state``), 0 for the others
``nanostream_node_item_seconds``            histogram time per item (an estimate, see
                                                      :mod:`nanostream.observe.sampling`)
=========================================== ========= ======================================

Counters and gauges are read from ``run.stats()`` when the endpoint is scraped, so they are
always current. The histogram is filled by the observer's sampling thread.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .._core.errors import require
from .._core.run import NodeStats
from ._http import bind_server

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["ITEM_SECONDS_BUCKETS", "MetricsServer"]

#: Upper bounds (seconds) of the per-item time histogram: 1 µs to 10 s.
ITEM_SECONDS_BUCKETS: tuple[float, ...] = (
    *(float(f"{m}e{e}") for e in range(-6, 1) for m in ("1", "2.5", "5")),
    10.0,
)

log = logging.getLogger("nanostream")

_STATES = ("created", "running", "finished", "failed", "aborted")


_prometheus: Callable[[], Any] = partial(
    require, "prometheus_client", extra="observe", package="prometheus-client"
)


class _Histograms:
    """Bucket counts per node, filled by the sampler; read by the collector."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, node: str, seconds: float, count: int) -> None:
        i = bisect.bisect_left(self.buckets, seconds)  # first bucket with bound >= seconds
        with self._lock:
            counts = self._counts.setdefault(node, [0] * (len(self.buckets) + 1))
            counts[i] += count
            self._sums[node] = self._sums.get(node, 0.0) + seconds * count

    def snapshot(self) -> dict[str, tuple[list[int], float]]:
        with self._lock:
            return {n: (list(c), self._sums[n]) for n, c in self._counts.items()}


class _Collector:
    def __init__(
        self,
        pipeline: str,
        stats: Callable[[], Mapping[str, NodeStats]],
        histograms: _Histograms,
    ) -> None:
        self.pipeline = pipeline
        self.stats = stats
        self.histograms = histograms

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        _prometheus()
        from prometheus_client import metrics_core as core

        labels = ["pipeline", "node"]
        stats = self.stats()

        def counter(name: str, doc: str, field: str) -> Any:
            family = core.CounterMetricFamily(name, doc, labels=labels)
            for s in stats.values():
                family.add_metric([self.pipeline, s.name], float(getattr(s, field)))
            return family

        def gauge(name: str, doc: str, field: str) -> Any:
            family = core.GaugeMetricFamily(name, doc, labels=labels)
            for s in stats.values():
                family.add_metric([self.pipeline, s.name], float(getattr(s, field)))
            return family

        yield counter("nanostream_node_items_in", "Items the node took in.", "items_in")
        yield counter("nanostream_node_items_out", "Items the node sent.", "items_out")
        yield counter("nanostream_node_errors", "Errors raised by the node.", "errors")
        yield counter(
            "nanostream_node_blocked_input_seconds",
            "Seconds the node waited for input.",
            "blocked_input_s",
        )
        yield counter(
            "nanostream_node_blocked_output_seconds",
            "Seconds the node waited for room downstream.",
            "blocked_output_s",
        )
        yield gauge("nanostream_node_queue_depth", "Items in the input queue.", "queue_depth")
        yield gauge(
            "nanostream_node_queue_capacity",
            "Capacity of the input queue (0 for a source).",
            "queue_capacity",
        )
        state = core.GaugeMetricFamily(
            "nanostream_node_state",
            "1 for the node's current state, 0 for the others.",
            labels=[*labels, "state"],
        )
        for s in stats.values():
            for name in _STATES:
                state.add_metric([self.pipeline, s.name, name], 1.0 if s.state == name else 0.0)
        yield state
        hist = core.HistogramMetricFamily(
            "nanostream_node_item_seconds",
            "Busy seconds per item, estimated per sampling interval (see nanostream docs).",
            labels=labels,
        )
        bounds = self.histograms.buckets
        for node, (counts, total) in sorted(self.histograms.snapshot().items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*bounds, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            hist.add_metric([self.pipeline, node], buckets, total)
        yield hist


class MetricsServer:
    """Serves one run's metrics over HTTP at ``http://host:port/metrics``.

    ``stats`` is a callable returning the current ``run.stats()``. ``port=0`` picks a free
    port (read it from :attr:`port`). The server runs in one thread, named
    ``nanostream-metrics:<pipeline>``, until :meth:`close`.

    Example:
        >>> import urllib.request
        >>> import nanostream
        >>> from nanostream.observe import MetricsServer
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> nanostream.from_iterable(range(5), name="src") > sink
        Collect(name='sink')
        >>> run = sink.global_start(block=False, name="demo")
        >>> run.wait(10)
        True
        >>> server = MetricsServer("demo", run.stats, port=0)
        >>> with urllib.request.urlopen(server.url) as response:
        ...     text = response.read().decode()
        >>> server.close()
        >>> 'nanostream_node_items_out_total{node="src",pipeline="demo"} 5.0' in text
        True
    """

    def __init__(
        self,
        pipeline: str,
        stats: Callable[[], Mapping[str, NodeStats]],
        *,
        port: int = 9108,
        host: str = "127.0.0.1",
        buckets: tuple[float, ...] = ITEM_SECONDS_BUCKETS,
    ) -> None:
        prometheus = _prometheus()
        from prometheus_client.exposition import MetricsHandler

        self.pipeline = pipeline
        self.histograms = _Histograms(tuple(sorted(buckets)))
        self.registry: CollectorRegistry = prometheus.CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(pipeline, stats, self.histograms))
        handler = type("_Handler", (MetricsHandler,), {"registry": self.registry, "timeout": 5})
        self._server = bind_server(
            _Server, host, port, handler, what="metrics", option="metrics_port / --metrics-port"
        )
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"nanostream-metrics:{pipeline}",
        )
        self._thread.start()
        self._closed = False
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The address to scrape, e.g. ``http://127.0.0.1:9108/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def observe(self, node: str, seconds: float, count: int = 1) -> None:
        """Count ``count`` items of ``node`` that took ``seconds`` each in the histogram."""
        self.histograms.observe(node, seconds, count)

    def close(self) -> None:
        """Stop serving, close the socket and join the server's thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins request threads
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("nanostream metrics: error while serving %s", client_address)
