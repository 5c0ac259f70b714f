"""See a pipeline: live progress, a web view, Prometheus metrics, OpenTelemetry, pictures of
the graph, structured logs.

Everything here is built on the engine's public API (``run.stats()``, ``Plan``,
``run.add_done_callback``). The live table needs ``rich`` and the metrics endpoint
``prometheus-client``: ``pip install 'nanostream[observe]'``; OpenTelemetry
(:mod:`nanostream.observe.otel`) needs ``nanostream[otel]``. The web view
(:mod:`nanostream.observe.web`), drawing Mermaid or DOT text, plain progress lines and
logging need nothing more.

Example:
    >>> import io, nanostream
    >>> from nanostream import observe
    >>> sink = nanostream.testing.Collect(name="sink")
    >>> nanostream.from_iterable(range(100), name="numbers") > sink
    Collect(name='sink')
    >>> run = sink.global_start(block=False, name="demo")
    >>> observer = observe.attach(run, progress=True, stream=io.StringIO())
    >>> run.wait(10)
    True
    >>> print(observe.draw(sink, "dot", stats=run))  # doctest: +ELLIPSIS
    digraph "demo" {
    ...
      n0 -> n1 [label="100"];
    }
"""

from __future__ import annotations

from .draw import FORMATS, GraphvizNotFoundError, draw
from .logs import JsonFormatter, NodeWarnings, configure_logging, node_logger
from .metrics import ITEM_SECONDS_BUCKETS, MetricsServer
from .observer import Observer, attach
from .progress import Display, LiveProgress, PlainProgress, RunSummary, make_display
from .sampling import NodeView, Sample, Sampler
from .web import WebView, open_web_views

__all__ = [
    "FORMATS",
    "ITEM_SECONDS_BUCKETS",
    "Display",
    "GraphvizNotFoundError",
    "JsonFormatter",
    "LiveProgress",
    "MetricsServer",
    "NodeView",
    "NodeWarnings",
    "Observer",
    "PlainProgress",
    "RunSummary",
    "Sample",
    "Sampler",
    "WebView",
    "attach",
    "configure_logging",
    "draw",
    "make_display",
    "node_logger",
    "open_web_views",
]
