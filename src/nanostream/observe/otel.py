"""OpenTelemetry: a run's metrics and spans through the OpenTelemetry SDK.

Needs ``pip install 'nanostream[otel]'`` (the SDK and its OTLP exporter over HTTP).
``global_start(otel=True)`` (or :func:`~nanostream.observe.attach` with ``otel=``) feeds
:class:`Telemetry` from the observer's samples of ``run.stats()``, so it works the same on
every runner.

**Metrics** (attributes ``nanostream.pipeline`` and ``nanostream.node``):

================================== ============== =====================================
instrument                         kind           meaning
================================== ============== =====================================
``nanostream.node.items_in``       counter        items the node took from its queue
``nanostream.node.items_out``      counter        items the node sent downstream
``nanostream.node.errors``         counter        items (or polls) that failed for good
``nanostream.node.blocked_input``  counter (s)    time spent waiting for input
``nanostream.node.blocked_output`` counter (s)    time spent waiting for room downstream
``nanostream.node.queue_depth``    gauge          items waiting in the input queue
``nanostream.node.queue_fill``     gauge (0 - 1)  how full the input queue is
================================== ============== =====================================

**Traces.** One span for the run (``nanostream.run``, status ERROR when a node failed,
with the failure recorded as an exception) and, as its children, one span per node per
batch of items: each sampling interval (0.5 s by default) in which a node handled items
gives a span ``nanostream.batch`` from the start to the end of that interval, with the
node's name and the counts of that batch (``nanostream.items_in``, ``.items_out``,
``.errors``); a batch with errors has status ERROR. Spans are not made item by item: that
would cost a clock call and an allocation per item.

**Where the data goes.** By default, to the providers set globally
(``opentelemetry.trace.set_tracer_provider``, ``opentelemetry.metrics.set_meter_provider``),
so an application that already configures OpenTelemetry needs nothing more.
:meth:`Telemetry.otlp` (the CLI's ``--otel``, a pipeline file's ``otel:``) makes providers
of its own that export over OTLP/HTTP to ``http://localhost:4318`` or to the endpoint the
SDK's environment variables name (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ...), and flushes and shuts them down when the run ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from .._core.errors import MissingDependencyError, require
from .._core.run import NodeStats, Run
from .progress import RunSummary
from .sampling import Sample

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["Telemetry"]


_sdk: Callable[[], Any] = partial(
    require, "opentelemetry.sdk", extra="otel", package="opentelemetry-sdk"
)


class Telemetry:
    """Sends one run's metrics and spans to OpenTelemetry providers.

    ``tracer_provider`` and ``meter_provider`` default to the global ones. With
    ``shutdown=True`` the providers are flushed and shut down when the run ends (for
    providers made for this run, as :meth:`otlp` does). The observer calls
    :meth:`start`, then :meth:`update` with each sample and :meth:`finish` at the end.

    Example:
        >>> import nanostream
        >>> from opentelemetry.sdk.metrics import MeterProvider
        >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        ...     InMemorySpanExporter)
        >>> from nanostream.observe.otel import Telemetry
        >>> spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
        >>> tracer_provider = TracerProvider()
        >>> tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        >>> telemetry = Telemetry(
        ...     tracer_provider=tracer_provider,
        ...     meter_provider=MeterProvider(metric_readers=[reader]),
        ... )
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> nanostream.from_iterable(range(1000), name="numbers") > sink
        Collect(name='sink')
        >>> sink.global_start(otel=telemetry, name="demo")
        >>> batches = [s for s in spans.get_finished_spans() if s.name == "nanostream.batch"]
        >>> sum(s.attributes["nanostream.items_out"] for s in batches
        ...     if s.attributes["nanostream.node"] == "numbers")
        1000
        >>> [s.name for s in spans.get_finished_spans()][-1]
        'nanostream.run'
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        shutdown: bool = False,
    ) -> None:
        _sdk()
        from opentelemetry import metrics, trace

        from .. import __version__

        self._tracer_provider = tracer_provider
        self._shutdown = shutdown
        tp = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        mp = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self._providers: tuple[Any, Any] = (tp, mp)
        self.tracer = tp.get_tracer("nanostream", __version__)
        meter = mp.get_meter("nanostream", __version__)
        self._counters = {
            "items_in": meter.create_counter(
                "nanostream.node.items_in", unit="{item}", description="Items the node took in."
            ),
            "items_out": meter.create_counter(
                "nanostream.node.items_out", unit="{item}", description="Items the node sent."
            ),
            "errors": meter.create_counter(
                "nanostream.node.errors", unit="{error}", description="Failures for good."
            ),
            "blocked_input_s": meter.create_counter(
                "nanostream.node.blocked_input", unit="s", description="Waiting for input."
            ),
            "blocked_output_s": meter.create_counter(
                "nanostream.node.blocked_output", unit="s", description="Waiting for room."
            ),
        }
        self._depth = meter.create_gauge(
            "nanostream.node.queue_depth", unit="{item}", description="Items in the input queue."
        )
        self._fill = meter.create_gauge(
            "nanostream.node.queue_fill", unit="1", description="Input queue fill, 0 to 1."
        )
        self._lock = threading.Lock()
        self._run: Run | None = None
        self._run_span: Span | None = None
        self._last: dict[str, NodeStats] = {}
        self._last_ns = 0

    @classmethod
    def otlp(cls, *, endpoint: str | None = None, service_name: str | None = None) -> Telemetry:
        """Telemetry exported over OTLP/HTTP by providers of its own, shut down at the end.

        ``endpoint`` is the collector's base address (``http://localhost:4318`` unless
        ``OTEL_EXPORTER_OTLP_ENDPOINT`` says otherwise); ``service_name`` the
        ``service.name`` resource attribute (else ``OTEL_SERVICE_NAME``, else
        ``nanostream``). Metrics are exported every 5 s and at the end.

        Example:
            >>> from nanostream.observe.otel import Telemetry
            >>> telemetry = Telemetry.otlp(endpoint="http://127.0.0.1:9", service_name="demo")
            >>> telemetry.tracer_provider.resource.attributes["service.name"]
            'demo'
            >>> telemetry.close()
        """
        _sdk()
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise MissingDependencyError(
                "opentelemetry-exporter-otlp-proto-http", extra="otel"
            ) from None
        import os

        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes: dict[str, str] = {}
        if service_name is not None:
            attributes["service.name"] = service_name
        elif not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "nanostream"
        resource = Resource.create(attributes)
        base = endpoint.rstrip("/") if endpoint is not None else None
        spans = OTLPSpanExporter(endpoint=f"{base}/v1/traces" if base else None)
        numbers = OTLPMetricExporter(endpoint=f"{base}/v1/metrics" if base else None)
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(spans))
        reader = PeriodicExportingMetricReader(numbers, export_interval_millis=5000)
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        return cls(tracer_provider=tracer_provider, meter_provider=meter_provider, shutdown=True)

    @property
    def tracer_provider(self) -> Any:
        """The tracer provider in use (None: the global one)."""
        return self._tracer_provider

    def start(self, run: Run) -> None:
        """Begin the run's span; the figures of ``run`` are counted from zero."""
        with self._lock:
            self._run = run
            self._last = {}
            self._last_ns = time.time_ns() - int((time.monotonic() - run.started_at) * 1e9)
            self._run_span = self.tracer.start_span(
                "nanostream.run",
                start_time=self._last_ns,
                attributes={"nanostream.pipeline": run.name},
            )

    def update(self, sample: Sample, stats: Mapping[str, NodeStats]) -> None:
        """Count what changed since the last update; a batch span per node that worked."""
        with self._lock:
            self._record(sample, stats, time.time_ns())

    def finish(self, summary: RunSummary) -> None:
        """Count the final figures, end the run's span, flush (and shut down, if owned)."""
        from opentelemetry.trace import Status, StatusCode

        run = self._run
        with self._lock:
            stats = {n.name: n for n in summary.nodes}
            self._record(None, stats, time.time_ns())
            span = self._run_span
            self._run_span = None
        if span is not None:
            span.set_attribute("nanostream.state", summary.state)
            failure = run.failure if run is not None else None
            if failure is not None:
                span.record_exception(failure)
                span.set_status(Status(StatusCode.ERROR, str(failure)))
            span.end()
        self.close()

    def close(self) -> None:
        """Flush the providers, and shut them down when they were made for this run."""
        for provider in self._providers:
            if self._shutdown:
                provider.shutdown()
            else:
                flush = getattr(provider, "force_flush", None)
                if callable(flush):
                    flush()

    # ----------------------------------------------------------------- internals
    def _record(self, sample: Sample | None, stats: Mapping[str, NodeStats], now_ns: int) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        run = self._run
        pipeline = run.name if run is not None else ""
        views = {v.name: v for v in sample.nodes} if sample is not None else {}
        context = trace.set_span_in_context(self._run_span) if self._run_span else None
        for name, s in stats.items():
            old = self._last.get(name)
            attrs = {"nanostream.pipeline": pipeline, "nanostream.node": name}
            deltas = {}
            for field, counter in self._counters.items():
                delta = getattr(s, field) - (getattr(old, field) if old is not None else 0)
                deltas[field] = delta
                if delta > 0:
                    counter.add(delta, attrs)
            if s.queue_capacity > 0:
                self._depth.set(s.queue_depth, attrs)
                view = views.get(name)
                fill = view.queue_fill if view is not None else s.queue_depth / s.queue_capacity
                self._fill.set(min(1.0, fill), attrs)
            if deltas["items_in"] or deltas["items_out"] or deltas["errors"]:
                span = self.tracer.start_span(
                    "nanostream.batch",
                    context=context,
                    start_time=self._last_ns,
                    attributes={
                        **attrs,
                        "nanostream.items_in": deltas["items_in"],
                        "nanostream.items_out": deltas["items_out"],
                        "nanostream.errors": deltas["errors"],
                        "nanostream.queue_depth": s.queue_depth,
                    },
                )
                if deltas["errors"]:
                    span.set_status(Status(StatusCode.ERROR, f"{deltas['errors']} error(s)"))
                span.end(end_time=now_ns)
        self._last = dict(stats)
        self._last_ns = now_ns
