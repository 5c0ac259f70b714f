"""Structured logs: one logger per node, warnings with figures, JSON lines on request.

Loggers form one hierarchy: ``nanostream`` for the engine, ``nanostream.<pipeline>`` for a
pipeline and ``nanostream.<pipeline>.<node>`` for a node (an inner node of a composite is
``nanostream.<pipeline>.<composite>.<inner>``), so a standard ``logging`` configuration
can raise or lower the level of one pipeline or one node.

The observer's warnings (:class:`NodeWarnings`) go to the node's logger and carry the node
name and the figures as record attributes (``pipeline``, ``node``, ``seconds``,
``queue_depth``, ...), which :class:`JsonFormatter` writes as JSON fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from .sampling import NodeView, Sample

__all__ = ["JsonFormatter", "NodeWarnings", "configure_logging", "node_logger"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# The ErrorRecord an item's failure log line carries for handlers (its message says it).
_NOT_WRITTEN = {"error_record"}


def node_logger(pipeline: str, node: str | None = None) -> logging.Logger:
    """The logger of a pipeline, or of one of its nodes.

    Example:
        >>> from nanostream.observe import node_logger
        >>> node_logger("orders", "parse").name
        'nanostream.orders.parse'
        >>> node_logger("orders").name
        'nanostream.orders'
    """
    name = f"nanostream.{pipeline}" if node is None else f"nanostream.{pipeline}.{node}"
    return logging.getLogger(name)


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object per line.

    Fields: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, every attribute
    passed with ``extra=`` (such as ``pipeline``, ``node`` and the figures of the
    observer's warnings; not the ``error_record`` of an item's failure, which the message
    already states), and ``exception`` with the traceback when there is one.

    Example:
        >>> import logging
        >>> from nanostream.observe import JsonFormatter
        >>> record = logging.LogRecord(
        ...     "nanostream.p.n", logging.WARNING, __file__, 1, "slow: %s", ("x",), None
        ... )
        >>> record.created = 0.0
        >>> record.node = "n"
        >>> line = JsonFormatter().format(record)
        >>> import json
        >>> json.loads(line) == {"time": "1970-01-01T00:00:00.000Z", "level": "WARNING",
        ...     "logger": "nanostream.p.n", "message": "slow: x", "node": "n"}
        True
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data: dict[str, Any] = {
            "time": f"{stamp}.{int(record.created % 1 * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _NOT_WRITTEN and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str)


_HANDLER_MARK = "_nanostream_handler"


def configure_logging(
    level: int | str = "INFO",
    *,
    json_lines: bool = False,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the ``nanostream`` loggers to ``stream`` (standard error by default).

    With ``json_lines=True`` each record is one JSON object (see :class:`JsonFormatter`);
    otherwise a readable line. Calling it again replaces the handler it installed before.
    Returns the handler.

    Example:
        >>> import io, json, logging
        >>> from nanostream.observe import configure_logging, node_logger
        >>> out = io.StringIO()
        >>> handler = configure_logging("INFO", json_lines=True, stream=out)
        >>> node_logger("orders", "parse").warning("slow", extra={"node": "parse"})
        >>> json.loads(out.getvalue())["node"]
        'parse'
        >>> logging.getLogger("nanostream").removeHandler(handler)
        >>> logging.getLogger("nanostream").setLevel(logging.NOTSET)
    """
    root = logging.getLogger("nanostream")
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class NodeWarnings:
    """Warnings about nodes, from the observer's samples, logged to each node's logger.

    - *stalled*: a running node has taken in and sent nothing for ``stall_s`` seconds
      while items wait in its input queue;
    - *full queue*: a node's input queue has been full for ``full_queue_s`` seconds
      (off by default: the engine's monitor already warns when a node waits for room);
    - *slow items*: a node spent more than ``slow_item_s`` seconds per item (a mean over a
      sampling interval, see :mod:`nanostream.observe.sampling`); off by default.

    Each warning is logged once per episode, with ``pipeline``, ``node`` and the figures
    as record attributes.

    Example:
        >>> from nanostream.observe import NodeView, NodeWarnings, Sample
        >>> warnings = NodeWarnings("demo", slow_item_s=0.5)
        >>> sample = Sample(elapsed=1.0, nodes=(), item_times={"parse": (2.0, 3)})
        >>> warnings.check(sample)
        ['slow items']
    """

    def __init__(
        self,
        pipeline: str,
        *,
        stall_s: float | None = 60.0,
        full_queue_s: float | None = None,
        slow_item_s: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.stall_s = stall_s
        self.full_queue_s = full_queue_s
        self.slow_item_s = slow_item_s
        self._still_since: dict[str, tuple[float, int, int]] = {}
        self._full_since: dict[str, float] = {}
        self._warned: set[tuple[str, str]] = set()

    def check(self, sample: Sample) -> list[str]:
        """Log the warnings ``sample`` calls for; returns their kinds (for tests)."""
        kinds: list[str] = []
        for v in sample.nodes:
            if self.stall_s is not None and self._stalled(v, sample.elapsed, self.stall_s):
                kinds.append("stalled")
            if self.full_queue_s is not None and self._full(v, sample.elapsed, self.full_queue_s):
                kinds.append("full queue")
        if self.slow_item_s is not None:
            for name, (per_item, count) in sample.item_times.items():
                if per_item <= self.slow_item_s:
                    self._warned.discard(("slow items", name))
                elif self._once("slow items", name):
                    kinds.append("slow items")
                    self._warn(
                        name,
                        "node %r took %.3fs per item (mean over %d items), over the %.3fs "
                        "threshold",
                        (name, per_item, count, self.slow_item_s),
                        seconds_per_item=per_item,
                        items=count,
                        threshold_s=self.slow_item_s,
                    )
        return kinds

    def _stalled(self, v: NodeView, now: float, limit: float) -> bool:
        """Nothing moved for ``limit`` seconds while input waits in the queue."""
        seen = self._still_since.get(v.name)
        if seen is None or (seen[1], seen[2]) != (v.items_in, v.items_out):
            self._still_since[v.name] = (now, v.items_in, v.items_out)
            self._warned.discard(("stalled", v.name))
            return False
        waited = now - seen[0]
        if v.state != "running" or v.queue_depth == 0 or waited < limit:
            return False
        if not self._once("stalled", v.name):
            return False
        self._warn(
            v.name,
            "node %r has taken in and sent nothing for %.0fs while %d items wait in its "
            "input queue",
            (v.name, waited, v.queue_depth),
            seconds=round(waited, 3),
            **_figures(v),
        )
        return True

    def _full(self, v: NodeView, now: float, limit: float) -> bool:
        """The input queue has been (nearly) full for ``limit`` seconds."""
        if v.queue_capacity == 0 or v.queue_fill < 0.95 or v.state != "running":
            self._full_since.pop(v.name, None)
            self._warned.discard(("full queue", v.name))
            return False
        since = self._full_since.setdefault(v.name, now)
        if now - since < limit or not self._once("full queue", v.name):
            return False
        self._warn(
            v.name,
            "the input queue of node %r has been full (%d/%d) for %.0fs: this node is the "
            "bottleneck",
            (v.name, v.queue_depth, v.queue_capacity, now - since),
            seconds=round(now - since, 3),
            **_figures(v),
        )
        return True

    def _once(self, kind: str, node: str) -> bool:
        key = (kind, node)
        if key in self._warned:
            return False
        self._warned.add(key)
        return True

    def _warn(self, node: str, msg: str, args: tuple[Any, ...], **figures: Any) -> None:
        extra = {"pipeline": self.pipeline, "node": node, **figures}
        node_logger(self.pipeline, node).warning(msg, *args, extra=extra)


def _figures(v: NodeView) -> dict[str, int]:
    return {
        "queue_depth": v.queue_depth,
        "queue_capacity": v.queue_capacity,
        "items_in": v.items_in,
        "items_out": v.items_out,
    }
