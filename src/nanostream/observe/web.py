"""The web view: a live page of one run, served from this process with the standard library.

:class:`WebView` serves a small page (``observe/webpage/index.html``, shipped in the
package: no CDN, no network) and three endpoints:

- ``GET /api/graph``: the pipeline as a DAG with its layout (layers by longest path from
  the sources), and each node's details: class, options and error policy (masked, see
  :mod:`nanostream._core.redact`);
- ``GET /api/state``: the latest figures: the run's state, and per node items in and out,
  rate and its recent history (the sparkline), queue fill, waiting shares (over the last
  seconds; over the whole run once it has ended) and seconds blocked on input and output,
  errors, the bottleneck (the rule of
  :mod:`nanostream.observe.sampling`, as in the terminal view), the latest dead letters;
- ``GET /api/events``: the same figures as server-sent events, about once a second
  (``push_interval``);
- ``POST /api/stop`` (with the header ``X-Nanostream: stop``): drains the run like
  :meth:`Run.request_stop <nanostream.Run.request_stop>`. A page of another site cannot
  send that header without a preflight the view does not answer, and a request naming
  another host (a rebinding DNS name pointing at this address) is refused.

The view is fed by the observer (:func:`nanostream.observe.attach` with ``ui=``), which
samples ``run.stats()``; nothing here reads a runner's internals, so every runner (Ray
too) shows the same page. Errors of items that failed for good come from the engine's log
records (the first ten of each node are warnings; later ones reach the view only when
the ``nanostream`` logger is at DEBUG; on Ray they come with the records the actors send
back to the driver); a node failure comes from ``run.failure``.

**Threads and lifetime.** The server runs in a daemon thread (``nanostream-web:<pipeline>``)
with one daemon thread per connection; :meth:`WebView.close` shuts it down, ends the
event streams and joins every one of those threads. The view outlives the run (it keeps
showing the final figures) until :meth:`WebView.close` or the interpreter's exit, when an
``atexit`` hook closes it: being daemons, its threads never keep a finished program alive.
:func:`open_web_views` lists the views still open.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, ClassVar

from .._core.graph import Plan
from .._core.policy import POLICY_OPTIONS, ErrorRecord
from .._core.redact import exception_text, redact, safe_str
from .._core.run import NodeStats, Run
from ._http import bind_server
from .draw import _class_label
from .progress import RunSummary
from .sampling import Sample

__all__ = ["WebView", "open_web_views"]

log = logging.getLogger("nanostream")

#: Dead letters and errors kept for the page (the latest ones).
_KEPT_ERRORS = 20
_ITEM_TEXT = 200


class WebView:
    """Serves the live page of ``run`` at :attr:`url` until :meth:`close`.

    ``port=0`` picks a free port. ``host`` is 127.0.0.1 unless you ask for another address
    (``"0.0.0.0"`` for every interface: anyone who can reach it can stop the run). The
    observer (:func:`~nanostream.observe.attach` with ``ui=``, or ``global_start(ui=...)``)
    makes it and calls :meth:`update` with each sample and :meth:`finish` at the end; one
    made by hand shows the run's figures as they were when it was made (final if the run
    has ended), unless fed.
    Figures go out to the page every ``push_interval`` seconds; ``history`` rates per node
    make the sparkline.

    Example:
        >>> import json, urllib.request
        >>> import nanostream
        >>> from nanostream.observe import WebView
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> nanostream.from_iterable(range(5), name="src") > sink
        Collect(name='sink')
        >>> run = sink.global_start(block=False, name="demo")
        >>> run.wait(10)
        True
        >>> view = WebView(run, port=0)
        >>> with urllib.request.urlopen(view.url + "api/graph") as response:
        ...     graph = json.load(response)
        >>> [(n["name"], n["layer"]) for n in graph["nodes"]], graph["edges"]
        ([('src', 0), ('sink', 1)], [{'source': 'src', 'target': 'sink', 'port': 'out'}])
        >>> view.close()
        >>> view in nanostream.observe.open_web_views()
        False
    """

    def __init__(
        self,
        run: Run,
        *,
        plan: Plan | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        push_interval: float = 1.0,
        history: int = 60,
    ) -> None:
        self.run = run
        if plan is None:
            found = getattr(run, "plan", None)
            plan = found if isinstance(found, Plan) else None
        self.plan = plan
        self.push_interval = push_interval
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._history: dict[str, deque[float]] = {}
        self._history_len = history
        self._sample: Sample | None = None
        self._stats: dict[str, NodeStats] = dict(run.stats())
        self._finished: RunSummary | None = None
        self._errors: dict[str, deque[dict[str, Any]]] = {}
        self._dead_letters: deque[dict[str, Any]] = deque(maxlen=_KEPT_ERRORS)
        self._version = 0
        self._graph = json.dumps(self._graph_data()).encode()
        self._state = json.dumps(self._state_data()).encode()
        if run.done:  # an ended run's final figures are known now
            self.finish(RunSummary.of(run))
        handler = type("_BoundHandler", (_Handler,), {"view": self})
        self._server = bind_server(
            _Server, host, port, handler, what="the web view", option="ui= / --ui-port"
        )
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"nanostream-web:{run.name}",
            daemon=True,
        )
        _error_feed.add(self)
        self._thread.start()
        with _open_lock:
            _open.append(self)

    # ----------------------------------------------------------------- public
    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8321/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed.is_set()

    def update(self, sample: Sample, stats: Mapping[str, NodeStats] | None = None) -> None:
        """Take the figures of one sample (and the ``run.stats()`` it was made from).

        Once the view has the final figures (:meth:`finish`), later samples change nothing.
        """
        with self._lock:
            if self._finished is not None:
                return
            self._sample = sample
            if stats is not None:
                self._stats = dict(stats)
            for v in sample.nodes:
                h = self._history.get(v.name)
                if h is None:
                    h = self._history[v.name] = deque(maxlen=self._history_len)
                h.append(round(v.rate, 2))
            self._publish()

    def finish(self, summary: RunSummary) -> None:
        """Take the run's final figures; the page shows them until the view closes.

        Only the first call counts (a view made on a run that has ended has them at once).
        """
        with self._lock:
            if self._finished is not None:
                return
            self._finished = summary
            self._stats = {n.name: n for n in summary.nodes}
            failure = self.run.failure
            if failure is not None:
                self._add_error(failure.node, _failure_entry(failure))
            self._publish()

    def graph(self) -> dict[str, Any]:
        """The graph the page draws: nodes with layout and details, edges.

        Example:
            >>> import nanostream
            >>> from nanostream.observe import WebView
            >>> src = nanostream.from_iterable([1], name="src")
            >>> _ = src > nanostream.testing.Collect(name="sink").configure(on_error="skip")
            >>> run = src.global_start(block=False)
            >>> view = WebView(run)
            >>> view.graph()["nodes"][1]["details"]["policy"]
            {'on_error': 'skip'}
            >>> view.close(); run.wait(10)
            True
        """
        return json.loads(self._graph)  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        """The figures the page shows now (what ``/api/state`` returns).

        Example:
            >>> import nanostream
            >>> from nanostream.observe import WebView
            >>> run = nanostream.from_iterable(range(3), name="src").global_start(block=False)
            >>> run.wait(10)
            True
            >>> view = WebView(run)
            >>> view.state()["state"]
            'finished'
            >>> view.close()
        """
        with self._lock:
            return json.loads(self._state)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop serving: end the event streams, close the socket, join every thread.

        Safe to call more than once; called at the interpreter's exit for a view still
        open.
        """
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._changed.notify_all()
        _error_feed.remove(self)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server.join_requests()
        with _open_lock:
            if self in _open:
                _open.remove(self)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the view is closed (by :meth:`close`); True if it is.

        Example:
            >>> import nanostream
            >>> from nanostream.observe import WebView
            >>> run = nanostream.from_iterable([1]).global_start(block=False)
            >>> view = WebView(run)
            >>> view.wait_closed(0.01)
            False
            >>> view.close(); view.wait_closed()
            True
            >>> run.wait(10)
            True
        """
        return self._closed.wait(timeout)

    # ----------------------------------------------------------------- internals
    def _publish(self) -> None:
        """Rebuild the state document (lock held) and wake the event streams."""
        self._state = json.dumps(self._state_data()).encode()
        self._version += 1
        self._changed.notify_all()

    def _state_bytes(self) -> bytes:
        with self._lock:
            return self._state

    def _wait_change(self, version: int, timeout: float) -> tuple[int, bytes]:
        with self._lock:
            if self._version == version and not self._closed.is_set():
                self._changed.wait(timeout)
            return self._version, self._state

    def _add_error(self, node: str, entry: dict[str, Any]) -> None:
        kept = self._errors.get(node)
        if kept is None:
            kept = self._errors[node] = deque(maxlen=_KEPT_ERRORS)
        kept.append(entry)
        self._dead_letters.append({"node": node, **entry})

    def _record_error(self, record: ErrorRecord) -> None:
        entry = {
            "time": record.time,
            "type": record.exception_type,
            "message": record.message,
            # None for a source's poll; else the item as text, masked
            "item": None if record.item is None else _short(redact(safe_str(_ReprOf(record.item)))),
            "attempt": record.attempt,
            "traceback": record.traceback,
        }
        with self._lock:  # shown with the next sample (this runs in the node's thread)
            self._add_error(record.node, entry)
            if self._finished is not None:  # there is no next sample
                self._publish()

    def _graph_data(self) -> dict[str, Any]:
        if self.plan is None:
            stats = self.run.stats()
            nodes = [
                {"name": n, "layer": 0, "row": i, "kind": "node", "details": {}}
                for i, n in enumerate(stats)
            ]
            return {"pipeline": self.run.name, "nodes": nodes, "edges": []}
        plan = self.plan
        layers, rows = _layout(plan)
        nodes = []
        for pn in plan.nodes:
            options = {k: _masked(k, v) for k, v in sorted(pn.options.items())}
            policy = {k: options.pop(k) for k in POLICY_OPTIONS if k in options}
            nodes.append(
                {
                    "name": pn.name,
                    "layer": layers[pn.index],
                    "row": rows[pn.index],
                    "kind": "source" if pn.is_source else "sink" if not pn.outputs else "node",
                    "details": {
                        "class": _class_label(pn),
                        "options": options,
                        "policy": policy or {"on_error": "fail"},
                        "queue_size": pn.queue_size,
                        "batch_size": pn.batch_size,
                        "ports": sorted(pn.outputs),
                    },
                }
            )
        edges = [
            {"source": plan.nodes[s].name, "target": plan.nodes[t].name, "port": port}
            for s, port, t in plan.edges
        ]
        return {"pipeline": plan.name, "nodes": nodes, "edges": edges}

    def _state_data(self) -> dict[str, Any]:
        run = self.run
        end = run.finished_at if run.finished_at is not None else time.monotonic()
        sample = self._sample
        views = {v.name: v for v in sample.nodes} if sample is not None else {}
        finished = self._finished is not None
        wall = self._finished.wall_s if self._finished is not None else 0.0
        nodes: dict[str, Any] = {}
        for name, s in self._stats.items():
            v = views.get(name)
            if finished:  # waiting shares over the whole run
                wait_in = min(1.0, s.blocked_input_s / wall) if wall > 0 else 0.0
                wait_out = min(1.0, s.blocked_output_s / wall) if wall > 0 else 0.0
            else:
                wait_in = v.wait_input if v is not None else 0.0
                wait_out = v.wait_output if v is not None else 0.0
            nodes[name] = {
                "state": s.state,
                "in": s.items_in,
                "out": s.items_out,
                "errors": s.errors,
                "rate": 0.0 if finished or v is None else round(v.rate, 2),
                "history": list(self._history.get(name, ())),
                "queue_depth": s.queue_depth,
                "queue_capacity": s.queue_capacity,
                "queue_fill": round(v.queue_fill, 3) if v is not None else 0.0,
                "wait_in": round(wait_in, 3),
                "wait_out": round(wait_out, 3),
                "blocked_in_s": round(s.blocked_input_s, 3),
                "blocked_out_s": round(s.blocked_output_s, 3),
                "bottleneck": bool(v is not None and v.bottleneck and not finished),
                "recent_errors": list(self._errors.get(name, ())),
            }
        failure = run.failure
        bottleneck = None if finished or sample is None else sample.bottleneck
        return {
            "pipeline": run.name,
            "state": run.state,
            "done": finished,
            "elapsed": round(max(0.0, end - run.started_at), 2),
            "failure": str(failure) if failure is not None else None,
            "bottleneck": bottleneck.name if bottleneck is not None else None,
            "nodes": nodes,
            "dead_letters": list(self._dead_letters)[::-1][:10],
        }


class _ReprOf:
    """Defers ``repr(item)`` to :func:`safe_str`, which never raises."""

    def __init__(self, item: Any) -> None:
        self.item = item

    def __str__(self) -> str:
        return repr(self.item)


def _short(text: str) -> str:
    return text if len(text) <= _ITEM_TEXT else text[: _ITEM_TEXT - 1] + "…"


def _masked(key: str, value: Any) -> str:
    """An option's value as text, masked by the run's redaction (keys named like secrets
    and registered secret values hide their value)."""
    text = _short(value if isinstance(value, str) else safe_str(_ReprOf(value)))
    return redact(f"{key}={text}").partition("=")[2]


def _failure_entry(failure: Any) -> dict[str, Any]:
    cause = failure.__cause__
    tb = "".join(traceback.format_exception(cause)) if cause is not None else ""
    return {
        "time": time.time(),
        "type": type(cause).__name__ if cause is not None else "NodeFailed",
        "message": exception_text(cause) if cause is not None else str(failure),
        "item": None,
        "attempt": 1,
        "traceback": redact(tb),
        "failed_run": True,
    }


def _layout(plan: Plan) -> tuple[list[int], list[int]]:
    """Layer (longest path from a source) and row within the layer of every plan node.

    Plan nodes are in topological order, so one pass finds the layers. Rows follow the
    mean row of each node's inputs (one sweep), which keeps most edges short and
    uncrossed.
    """
    layers = [0] * len(plan.nodes)
    for pn in plan.nodes:
        for t in (t for ts in pn.outputs.values() for t in ts):
            layers[t] = max(layers[t], layers[pn.index] + 1)
    rows = [0] * len(plan.nodes)
    by_layer: dict[int, list[int]] = {}
    for pn in plan.nodes:
        by_layer.setdefault(layers[pn.index], []).append(pn.index)
    for layer in sorted(by_layer):
        members = by_layer[layer]
        if layer > 0:
            members.sort(
                key=lambda i: (
                    sum(rows[s] for s in plan.nodes[i].inputs) / max(1, len(plan.nodes[i].inputs)),
                    i,
                )
            )
        for row, i in enumerate(members):
            rows[i] = row
    return layers, rows


class _ErrorFeed(logging.Filter):
    """Picks the error records of items that failed for good out of the engine's log
    records, keeps the latest ones and hands each to the open views whose run it belongs
    to. One per process, a filter of the ``nanostream`` logger (which the engine logs those
    on) from this module's import: ``attach`` imports it before a run starts, so a view
    made just after the run started still gets the first errors. It lets every record
    through: as a filter, not a handler, it changes nothing in how records are shown
    (without a handler of yours, Python's last-resort handler still prints warnings)."""

    def __init__(self) -> None:
        super().__init__()
        self.recent: deque[tuple[float, ErrorRecord]] = deque(maxlen=_KEPT_ERRORS * 10)
        self.views: list[tuple[WebView, frozenset[str] | None]] = []
        self.feed_lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        error = getattr(record, "error_record", None)
        if not isinstance(error, ErrorRecord):
            return True
        stamp = time.monotonic()
        with self.feed_lock:
            self.recent.append((stamp, error))
            for view, names in self.views:
                if _belongs(view, names, stamp, error):
                    view._record_error(error)
        return True

    def add(self, view: WebView) -> None:
        plan = view.plan
        names = frozenset(pn.name for pn in plan.nodes) if plan is not None else None
        with self.feed_lock:
            for stamp, error in self.recent:
                if _belongs(view, names, stamp, error):
                    view._record_error(error)
            self.views.append((view, names))

    def remove(self, view: WebView) -> None:
        with self.feed_lock:
            self.views = [(v, n) for v, n in self.views if v is not view]


def _belongs(view: WebView, names: frozenset[str] | None, stamp: float, error: ErrorRecord) -> bool:
    run = view.run
    ended = run.finished_at
    in_time = stamp >= run.started_at and (ended is None or stamp <= ended)
    return in_time and (names is None or error.node in names)


_error_feed = _ErrorFeed()
logging.getLogger("nanostream").addFilter(_error_feed)


class _Handler(BaseHTTPRequestHandler):
    view: ClassVar[WebView]
    server_version = "nanostream"
    timeout = 5

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("nanostream web view: " + format, *args)

    def _host_ok(self) -> bool:
        """Only requests for the address the view serves on (not a name a rebinding DNS
        points at it): a page of another site can then neither read nor stop the run."""
        view = self.view
        if view.host in ("0.0.0.0", "::"):
            return True
        host = self.headers.get("Host") or ""
        name = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
        allowed = {view.host, "localhost"}
        if view.host in ("127.0.0.1", "::1"):
            allowed |= {"127.0.0.1", "::1"}
        return name in allowed

    def do_GET(self) -> None:
        if not self._host_ok():
            self._send(403, "text/plain; charset=utf-8", b"unknown host\n")
            return
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", _page())
        elif path == "/api/graph":
            self._send(200, "application/json", self.view._graph)
        elif path == "/api/state":
            self._send(200, "application/json", self.view._state_bytes())
        elif path == "/api/events":
            self._events()
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def do_POST(self) -> None:
        if not self._host_ok():
            self._send(403, "text/plain; charset=utf-8", b"unknown host\n")
            return
        if self.path != "/api/stop":
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        if self.headers.get("X-Nanostream") != "stop":
            self._send(403, "text/plain; charset=utf-8", b"send the header X-Nanostream: stop\n")
            return
        run = self.view.run
        log.warning("pipeline %r: stop asked from the web view; draining", run.name)
        run.request_stop()
        self._send(202, "application/json", json.dumps({"state": run.state}).encode())

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _events(self) -> None:
        view = self.view
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        version = -1
        try:
            while not view.closed:
                version, body = view._wait_change(version, view.push_interval)
                if view.closed:
                    break
                self.wfile.write(b"event: state\ndata: " + body + b"\n\n")
                self.wfile.flush()
                if view._closed.wait(view.push_interval):
                    break
        except (BrokenPipeError, ConnectionResetError):  # the page was closed
            return


_page_cache: list[bytes] = []


def _page() -> bytes:
    if not _page_cache:
        _page_cache.append(
            resources.files("nanostream.observe").joinpath("webpage/index.html").read_bytes()
        )
    return _page_cache[0]


class _Server(ThreadingHTTPServer):
    """One daemon thread per connection, each joined by :meth:`join_requests`."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._requests: list[threading.Thread] = []
        self._requests_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"nanostream-web-request:{client_address}",
            daemon=True,
        )
        with self._requests_lock:
            self._requests = [t for t in self._requests if t.is_alive()]
            self._requests.append(thread)
        thread.start()

    def join_requests(self) -> None:
        with self._requests_lock:
            threads, self._requests = self._requests, []
        for thread in threads:
            thread.join()

    def handle_error(self, request: Any, client_address: Any) -> None:
        kind = sys.exc_info()[0]
        if kind is not None and issubclass(kind, (BrokenPipeError, ConnectionResetError)):
            return
        log.exception("nanostream web view: error while serving %s", client_address)


_open: list[WebView] = []
_open_lock = threading.Lock()


def open_web_views() -> list[WebView]:
    """The web views still open in this process (``global_start(ui=True)`` leaves one
    serving the final figures after the run; close it with :meth:`WebView.close`).

    Example:
        >>> import nanostream
        >>> from nanostream.observe import open_web_views
        >>> nanostream.from_iterable(range(3), name="numbers").global_start(ui=True)
        >>> [view.run.name for view in open_web_views()]
        ['pipeline']
        >>> for view in open_web_views():
        ...     view.close()
        >>> open_web_views()
        []
    """
    with _open_lock:
        return list(_open)


@atexit.register
def _close_all() -> None:
    for view in open_web_views():
        view.close()
