"""OpenTelemetry: metrics and batch spans through the SDK's in-memory exporters, and OTLP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import nanostream
import support
from nanostream.testing import Collect
from support import OTLPCollector

try:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from nanostream.observe.otel import Telemetry
except ImportError:  # pragma: no cover - the otel extra is in dev
    Telemetry = None  # type: ignore[assignment,misc]


@pytest.fixture(autouse=True)
def need_sdk() -> None:
    if Telemetry is None:
        support.missing("the OpenTelemetry SDK is not installed: pip install 'nanostream[otel]'")


class Exporters:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def batches(self, node: str) -> list[Any]:
        return [
            s
            for s in self.spans.get_finished_spans()
            if s.name == "nanostream.batch" and s.attributes["nanostream.node"] == node
        ]

    def metric(self, name: str) -> dict[str, float]:
        """The latest value per node of metric ``name``."""
        data = self.reader.get_metrics_data()
        found: dict[str, float] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            found[str(point.attributes["nanostream.node"])] = point.value
        return found


class Parse(nanostream.NanoNode):
    def process_item(self, item: str) -> Iterator[int]:
        yield int(item)


def test_counts_and_batch_spans_under_every_runner(runner: str) -> None:
    exporters = Exporters()
    words = [str(i) if i % 7 else "x" for i in range(3000)]
    sink = Collect(name="sink")
    source = nanostream.from_iterable(words, name="words")
    source > Parse(name="parse", on_error="skip") > sink
    source.global_start(runner=runner, otel=exporters.telemetry, name="otel-demo")
    stats = nanostream.pipeline_of(source).run.stats()  # type: ignore[union-attr]

    assert exporters.metric("nanostream.node.items_out") == {
        "words": 3000,
        "parse": stats["parse"].items_out,
    }
    assert exporters.metric("nanostream.node.items_in") == {"parse": 3000, "sink": 3000 - 429}
    assert exporters.metric("nanostream.node.errors") == {"parse": 429}
    assert set(exporters.metric("nanostream.node.queue_fill")) == {"parse", "sink"}
    # the batch spans of each node add up to its totals
    for node, field in [("words", "items_out"), ("parse", "items_in"), ("sink", "items_in")]:
        batches = exporters.batches(node)
        assert batches, node
        assert sum(s.attributes[f"nanostream.{field}"] for s in batches) == getattr(
            stats[node], field
        )
    parse_batches = exporters.batches("parse")
    assert sum(s.attributes["nanostream.errors"] for s in parse_batches) == 429
    assert {s.status.status_code for s in parse_batches if s.attributes["nanostream.errors"]} == {
        StatusCode.ERROR
    }
    [run_span] = [s for s in exporters.spans.get_finished_spans() if s.name == "nanostream.run"]
    assert run_span.attributes["nanostream.pipeline"] == "otel-demo"
    assert run_span.attributes["nanostream.state"] == "finished"
    for span in exporters.batches("parse"):
        assert span.parent is not None and span.parent.span_id == run_span.context.span_id
        assert run_span.start_time <= span.start_time < span.end_time <= run_span.end_time


def test_a_failed_run_has_an_error_span_with_the_exception() -> None:
    exporters = Exporters()

    def explode(inp: Any, outp: Any) -> None:
        for item in inp:
            raise RuntimeError(f"no {item}")

    source = nanostream.from_iterable([1], name="src")
    source > explode
    with pytest.raises(nanostream.NodeFailed):
        source.global_start(otel=exporters.telemetry)
    [run_span] = [s for s in exporters.spans.get_finished_spans() if s.name == "nanostream.run"]
    assert run_span.status.status_code == StatusCode.ERROR
    assert run_span.attributes["nanostream.state"] == "failed"
    [event] = run_span.events
    assert event.name == "exception"
    assert "node 'explode' failed: RuntimeError: no 1" in str(event.attributes)


def test_global_providers_are_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import metrics, trace

    exporters = Exporters()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: exporters.tracer_provider)
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: exporters.meter_provider)
    sink = Collect(name="sink")
    nanostream.from_iterable(range(10), name="src") > sink
    sink.global_start(otel=True)
    assert sum(s.attributes["nanostream.items_in"] for s in exporters.batches("sink")) == 10
    assert exporters.metric("nanostream.node.items_in") == {"sink": 10}


# --------------------------------------------------------------------------- OTLP over HTTP
@pytest.fixture
def collector() -> Iterator[OTLPCollector]:
    server = OTLPCollector()
    yield server
    server.close()


def test_otlp_exports_spans_and_metrics_to_a_collector(collector: OTLPCollector) -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(100), name="src") > sink
    telemetry = Telemetry.otlp(endpoint=collector.url, service_name="orders")
    sink.global_start(otel=telemetry)  # flushed and shut down when the run ends
    assert "nanostream.run" in collector.span_names()
    assert "nanostream.batch" in collector.span_names()
    assert collector.service_names() == {"orders"}
    assert collector.received.get("/v1/metrics"), collector.received.keys()


def test_a_wrong_otel_is_refused_before_the_run_starts() -> None:
    source = nanostream.from_iterable([1], name="src")
    with pytest.raises(nanostream.GraphError, match=r"pass otel=True .* or a nanostream"):
        source.global_start(block=False, otel="jaeger")
    assert nanostream.pipeline_of(source).run is None
