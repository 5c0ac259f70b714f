"""The observer: one thread per watched run that samples its figures and shows them.

:func:`attach` starts it. Twice a second (``interval``) it reads ``run.stats()``, updates
the progress view, fills the metrics histogram and checks for warnings; when the run ends
it takes a last sample, prints the summary, shuts the metrics server down and joins every
thread it started, before ``run.wait()`` returns. A web view (``ui=``) is fed by the same
samples and outlives the run: see :mod:`nanostream.observe.web`.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from .._core.graph import Plan
from .._core.monitor import RunThread
from .._core.run import Run
from .logs import NodeWarnings
from .metrics import MetricsServer
from .progress import Display, RunSummary, make_display
from .sampling import Sample, Sampler
from .web import WebView

if TYPE_CHECKING:
    from .otel import Telemetry

__all__ = ["Observer", "attach"]

log = logging.getLogger("nanostream")


class Observer(RunThread):
    """Watches one run: progress view, metrics endpoint, warnings. Made by :func:`attach`.

    Example:
        >>> import io, nanostream
        >>> from nanostream.observe import attach
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> nanostream.from_iterable(range(3), name="src") > sink
        Collect(name='sink')
        >>> run = sink.global_start(block=False, name="demo")
        >>> out = io.StringIO()
        >>> observer = attach(run, progress=True, stream=out)
        >>> run.wait(10)
        True
        >>> observer.summary.state
        'finished'
        >>> print(out.getvalue())  # doctest: +ELLIPSIS
        nanostream: pipeline 'demo' finished in ...s, 0 errors
          src   finished  in=0  out=3  errors=0 ...
          sink  finished  in=3  out=0  errors=0 ...
    """

    def __init__(
        self,
        run: Run,
        *,
        progress: bool | Display = False,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        plan: Plan | None = None,
        interval: float = 0.5,
        window: float = 3.0,
        stream: TextIO | None = None,
        force_terminal: bool | None = None,
        plain_interval: float = 10.0,
        stall_warning_s: float | None = 60.0,
        full_queue_warning_s: float | None = None,
        slow_item_s: float | None = None,
        ui: bool | int | None = None,
        ui_host: str = "127.0.0.1",
        otel: Telemetry | None = None,
    ) -> None:
        self.run = run
        self.interval = interval
        if plan is None:
            # the threads and cooperative runners expose the plan they run
            found = getattr(run, "plan", None)
            plan = found if isinstance(found, Plan) else None
        downstream = (
            {
                pn.name: [plan.nodes[t].name for ts in pn.outputs.values() for t in ts]
                for pn in plan.nodes
            }
            if plan is not None
            else None
        )
        self.sampler = Sampler(window=window, downstream=downstream)
        self.warnings = NodeWarnings(
            run.name,
            stall_s=stall_warning_s,
            full_queue_s=full_queue_warning_s,
            slow_item_s=slow_item_s,
        )
        self.metrics: MetricsServer | None = None
        if metrics_port is not None:
            self.metrics = MetricsServer(run.name, run.stats, port=metrics_port, host=metrics_host)
        self.display: Display | None = None
        self.web: WebView | None = None
        self.otel = otel
        if otel is not None:
            otel.start(run)
        try:
            if ui is not None and ui is not False:
                port = 0 if ui is True else int(ui)
                self.web = WebView(run, plan=plan, port=port, host=ui_host)
            if progress is True:
                self.display = make_display(
                    run.name,
                    stream=stream,
                    force_terminal=force_terminal,
                    plain_interval=plain_interval,
                )
            elif progress is not False:
                self.display = progress
        except BaseException:
            if self.metrics is not None:
                self.metrics.close()
            if self.web is not None:
                self.web.close()
            raise
        self.latest: Sample | None = None
        self.summary: RunSummary | None = None
        super().__init__(f"nanostream-observe:{run.name}")
        self._close_lock = threading.Lock()
        self._closed = False

    @property
    def ui_url(self) -> str | None:
        """The web view's address (``http://127.0.0.1:PORT/``), or None."""
        return self.web.url if self.web is not None else None

    @property
    def metrics_url(self) -> str | None:
        """Where the metrics are served (``http://127.0.0.1:PORT/metrics``), or None."""
        return self.metrics.url if self.metrics is not None else None

    def start(self) -> None:
        """Start the observer's thread; it ends (and is joined) when the run ends."""
        super().start()
        self.run.add_done_callback(self.close)

    def close(self) -> None:
        """Stop observing now: last sample, summary, metrics server shut down, threads joined.

        Called automatically when the run ends; safe to call more than once.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self.finish()
            self.join()
            if self.metrics is not None:
                self.metrics.close()

    # ----------------------------------------------------------------- thread
    def _main(self) -> None:
        try:
            self.sampler.baseline(self.run.stats(), at=self.run.started_at)
        except Exception:  # pragma: no cover - observing must never break a run
            log.exception("nanostream observer failed")
        while True:
            stopping = self._done.wait(self.interval)
            try:
                self._tick()
            except Exception:  # pragma: no cover - observing must never break a run
                log.exception("nanostream observer failed")
            if stopping:
                break
        try:
            self._finish()
        except Exception:  # pragma: no cover - defensive
            log.exception("nanostream observer failed")

    def _tick(self) -> None:
        stats = self.run.stats()
        sample = self.sampler.sample(stats)
        self.latest = sample
        if self.web is not None:
            self.web.update(sample, stats)
        if self.otel is not None:
            self.otel.update(sample, stats)
        if self.metrics is not None:
            for node, (seconds, count) in sample.item_times.items():
                self.metrics.observe(node, seconds, count)
        self.warnings.check(sample)
        if self.display is not None:
            self.display.update(sample)

    def _finish(self) -> None:
        rest = self.sampler.flush()
        if self.metrics is not None:
            for node, (seconds, count) in rest.items():
                self.metrics.observe(node, seconds, count)
        self.summary = RunSummary.of(self.run)
        if self.web is not None:
            self.web.finish(self.summary)
        if self.otel is not None:
            self.otel.finish(self.summary)
        if self.display is not None:
            self.display.finish(self.summary)


def attach(
    run: Run,
    *,
    progress: bool | Display = False,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    plan: Plan | None = None,
    interval: float = 0.5,
    window: float = 3.0,
    stream: TextIO | None = None,
    force_terminal: bool | None = None,
    plain_interval: float = 10.0,
    stall_warning_s: float | None = 60.0,
    full_queue_warning_s: float | None = None,
    slow_item_s: float | None = None,
    ui: bool | int | None = None,
    ui_host: str = "127.0.0.1",
    otel: bool | Telemetry | None = None,
) -> Observer:
    """Watch ``run``: a progress view, a Prometheus endpoint, warnings about nodes.

    - ``progress=True`` shows the live table on a terminal, plain lines every
      ``plain_interval`` seconds otherwise (``stream``: standard output by default;
      ``force_terminal`` overrides the detection), and a summary when the run ends.
    - ``metrics_port`` serves Prometheus metrics at ``http://metrics_host:port/metrics``
      (``0``: any free port, see :attr:`Observer.metrics_url`). Bound to 127.0.0.1 unless
      ``metrics_host`` says otherwise (``"0.0.0.0"`` for every interface).
    - ``interval`` is the seconds between samples (and redraws); rates and waiting shares
      are taken over the last ``window`` seconds.
    - ``plan`` (the run's :class:`~nanostream.Plan`; by default ``run.plan`` when the
      runner exposes it) lets the view recognise a node stuck waiting for room downstream
      before the wait ends.
    - Warnings go to ``nanostream.<pipeline>.<node>`` loggers: a node that made no
      progress with input waiting for ``stall_warning_s`` seconds, an input queue full for
      ``full_queue_warning_s`` seconds, more than ``slow_item_s`` seconds per item.
    - ``ui=True`` serves the web view on a free port (``ui=8321``: on that port, ``0``: any
      free port) of ``ui_host`` (127.0.0.1 unless it says otherwise) and prints its
      address on standard error; it keeps serving the final figures after the run, until
      it is closed (:attr:`Observer.web`, :func:`~nanostream.observe.open_web_views`) or
      the interpreter exits. See :mod:`nanostream.observe.web`.
    - ``otel=True`` exports metrics and spans through the OpenTelemetry providers set
      globally (a :class:`~nanostream.observe.otel.Telemetry` for others); needs
      ``nanostream[otel]``. See :mod:`nanostream.observe.otel`.

    Starts one thread (``nanostream-observe:<pipeline>``), plus the metrics server's
    (``nanostream-metrics:<pipeline>``); both are joined when the run ends, before
    ``run.wait()`` returns. The web view's threads (``nanostream-web:<pipeline>`` and one
    per connection) are daemon threads, joined by its ``close()``, which runs at the
    interpreter's exit at the latest. Needs ``nanostream[observe]`` for the live table and
    metrics.

    Example:
        >>> import nanostream
        >>> from nanostream.observe import attach
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(range(10), name="src") > sink
        Collect(name=None)
        >>> run = sink.global_start(block=False)
        >>> observer = attach(run)
        >>> run.wait(10)
        True
        >>> observer.summary.nodes[0].items_out
        10
    """
    observer = Observer(
        run,
        progress=progress,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        plan=plan,
        interval=interval,
        window=window,
        stream=stream,
        force_terminal=force_terminal,
        plain_interval=plain_interval,
        stall_warning_s=stall_warning_s,
        full_queue_warning_s=full_queue_warning_s,
        slow_item_s=slow_item_s,
        ui=ui,
        ui_host=ui_host,
        otel=_telemetry(otel, run),
    )
    if observer.web is not None:
        print(
            f"nanostream: web view of pipeline {run.name!r} at {observer.web.url}",
            file=sys.stderr,
            flush=True,
        )
    observer.start()
    return observer


def _telemetry(otel: bool | Telemetry | None, run: Run) -> Telemetry | None:
    if otel is None or otel is False:
        return None
    from .otel import Telemetry

    if otel is True:
        return Telemetry()
    return otel
