"""The Ray side of the Ray runner: the actor that hosts one node, its inbox and outboxes.

Imported only where Ray is installed (the driver imports it when a run starts; Ray workers
import it to build the actor). See :mod:`nanostream.runners.ray` for the mapping as a whole.

Data plane, per node instance (one actor):

* **Inbox.** Upstream actors call ``push(run, stream, seq, batch, end)``. A *stream* is one
  (upstream node, replica, port); its batches carry a sequence number and are appended in
  order, whatever order the calls run in. A push waits (as a coroutine, holding no thread)
  while the inbox holds ``capacity`` items, so a caller's call stays *in flight*: that is
  back-pressure. The end marker of a stream is its last call; once every stream has ended
  the node thread sees the end of its input. Calls carry the run's id, so a late call of
  an earlier run is ignored by an actor that has been reused.
* **Node thread.** Runs the node function for the whole run; ``inp`` yields the items of the
  inbox's batches, and before it waits for more input it sends what it has emitted.
* **Outboxes.** ``outp`` appends to a buffer; a full buffer is sent as one call per target
  (round-robin over a target's replicas, or split by a stable hash of ``key(item)``), with
  at most ``max_in_flight`` unfinished calls per link. A linger thread sends buffers that
  have waited longer than ``linger`` seconds.
* **Acknowledgements** (see :mod:`nanostream._core.acks`). A source's actor keeps its
  pending acks and sends a :class:`~nanostream._core.acks.Marker` as an entry of each
  link's ordered calls once nothing it emitted is buffered; a marker goes to every
  instance of a target (not round-robin, not by key). A node aligns markers over every
  upstream instance (``AckRouting`` with replicas), holds them as ``holds_items`` says
  and passes them on after its outputs. A sink instance calls ``reached`` on the
  source's actor, which calls the acks a marker covers once every sink instance has it,
  on one thread of its own; a sink waits for those calls to be delivered before its
  actor reports the node's end, and a source's actor waits for its acks (or for the
  driver's ``settle``: every other node has ended) before it reports its own.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
import os
import pickle
import sys
import threading
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import chain
from operator import length_hint
from types import FunctionType
from typing import Any

import ray
from ray import cloudpickle

from .._core.acks import AckCoordinator, AckRouting, Marker, NodeMarkers
from .._core.context import NodeContext
from .._core.errors import NodeProtocolError
from .._core.graph import PlanNode
from .._core.ports import port_dispatcher
from .._core.redact import exception_text, safe_str
from .._core.signals import RunAborted, SourceStopped
from .._engine.channel import AFTER_END, checked_outp
from .._engine.reader import TICKS

__all__ = ["HostSpec", "NodeHost", "dumps", "emit_logs", "import_roots", "loads", "stable_hash"]

_END: Any = object()
_IDLE: Any = object()  # what the inbox gives a node with ticks when nothing came in time
_LOCK_TYPE = type(threading.Lock())
_RLOCK_TYPE = type(threading.RLock())
_WAIT_TICK_S = 0.1
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_ACK_THREAD = "nanostream-ray-acks"  # the actor's thread that calls a source's acks


# --------------------------------------------------------------------- serialization
class _Pickler(cloudpickle.CloudPickler):
    """cloudpickle, but threading primitives travel as fresh ones and runs stay behind."""

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is _LOCK_TYPE:
            return ("lock",)
        if kind is _RLOCK_TYPE:
            return ("rlock",)
        if isinstance(obj, threading.Event):
            return ("event", obj.is_set())
        if isinstance(obj, threading.Condition):
            return ("condition",)
        from .._core.graph import Pipeline
        from .._core.run import Run

        if isinstance(obj, (Pipeline, Run)):
            return ("none",)
        return None

    #: Filled by :func:`dumps` with the modules of the classes and functions it met.
    modules: set[str] | None = None

    def reducer_override(self, obj: Any) -> Any:
        if self.modules is not None and isinstance(obj, (type, FunctionType)):
            module = getattr(obj, "__module__", None)
            if isinstance(module, str):
                self.modules.add(module)
        made = obj.__reduce_ex__(_PROTOCOL) if isinstance(obj, BaseException) else None
        if isinstance(made, tuple):
            # With the chain (__cause__, __context__) that plain pickling drops, and
            # loadable even when __init__ takes other arguments than ``args``.
            make, make_args = made[0], made[1]
            attributes = made[2] if len(made) > 2 else None
            chain = (obj.__cause__, obj.__context__, obj.__suppress_context__)
            args = (make, make_args, type(obj), obj.args)
            return _new_exception, args, (attributes, chain), None, None, _set_exception
        return super().reducer_override(obj)  # type: ignore[no-untyped-call]


def _new_exception(
    make: Callable[..., Any],
    make_args: tuple[Any, ...],
    cls: type[BaseException],
    args: tuple[Any, ...],
) -> BaseException:
    """The exception as its class pickles it; else made without calling ``__init__``."""
    try:
        exc = make(*make_args)
        if isinstance(exc, BaseException):
            return exc
    except Exception:  # noqa: BLE001 - an __init__ whose arguments are not ``args``
        pass
    try:
        exc = cls.__new__(cls, *args)
    except Exception:  # noqa: BLE001 - a __new__ with its own signature
        exc = cls.__new__(cls)
    exc.args = args
    return exc


def _set_exception(exc: BaseException, state: Any) -> None:
    attributes, (cause, context, suppress) = state
    if isinstance(attributes, dict):
        for key, value in attributes.items():
            setattr(exc, key, value)
    exc.__cause__, exc.__context__, exc.__suppress_context__ = cause, context, suppress


_PICKLER: Any = _Pickler


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0]
        if kind == "lock":
            return threading.Lock()
        if kind == "rlock":
            return threading.RLock()
        if kind == "event":
            event = threading.Event()
            if pid[1]:
                event.set()
            return event
        if kind == "condition":
            return threading.Condition()
        return None


def dumps(obj: Any, modules: set[str] | None = None) -> bytes:
    """Pickle ``obj`` for another process (locks and events are re-created there).

    ``modules``, if given, gets the names of the modules of the classes and functions met.

    Example:
        >>> import threading
        >>> from nanostream.runners._ray_host import dumps, loads
        >>> event = threading.Event()
        >>> event.set()
        >>> copy = loads(dumps({"seen": event, "n": 1}))
        >>> copy["seen"].is_set(), copy["n"]
        (True, 1)
    """
    buffer = io.BytesIO()
    pickler: Any = _PICKLER(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.modules = modules
    pickler.dump(obj)
    return buffer.getvalue()


def import_roots(modules: Iterable[str]) -> list[str]:
    """The folders the named (loaded) modules were imported from, as ``sys.path`` entries.

    Example:
        >>> import os, nanostream
        >>> from nanostream.runners._ray_host import import_roots
        >>> [root] = import_roots(["nanostream.testing"])
        >>> os.path.exists(os.path.join(root, "nanostream", "testing.py"))
        True
    """
    roots: list[str] = []
    for name in sorted(set(modules)):
        file = getattr(sys.modules.get(name), "__file__", None)
        if not isinstance(file, str):
            continue
        levels = name.count(".") + (os.path.basename(file) == "__init__.py")
        root = os.path.dirname(os.path.abspath(file))
        for _ in range(levels):
            root = os.path.dirname(root)
        if root not in roots:
            roots.append(root)
    return roots


def loads(data: bytes) -> Any:
    """Unpickle what :func:`dumps` made (see there)."""
    return _Unpickler(io.BytesIO(data)).load()


def stable_hash(key: Any) -> int:
    """A hash of ``key`` that is the same in every process (``hash(str)`` is not).

    Used to route items to replicas by key. Ints, strings, bytes, floats, None, booleans
    and tuples of them hash by value; other objects by their ``repr``.

    Example:
        >>> from nanostream.runners._ray_host import stable_hash
        >>> stable_hash("user-1") == stable_hash("user-1"), stable_hash(7), stable_hash(7.0)
        (True, 7, 7)
    """
    if key is None or isinstance(key, bool):
        return zlib.crc32(repr(key).encode())
    if isinstance(key, int):
        return key
    if isinstance(key, float) and key.is_integer():
        return int(key)
    if isinstance(key, (str, bytes)):
        data = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
        return zlib.crc32(data)
    if isinstance(key, tuple):
        value = 0x345678
        for part in key:
            value = ((value * 1000003) ^ stable_hash(part)) & 0xFFFFFFFFFFFF
        return value
    return zlib.crc32(repr(key).encode())


# --------------------------------------------------------------------- what the driver sends
@dataclass(frozen=True)
class HostSpec:
    """What one actor needs to host one instance of a plan node.

    ``payload`` is ``dumps((plan_node, keys))`` (its :class:`~nanostream.PlanNode`) where
    ``keys`` maps each output port to the key functions of its targets (None where a
    target is not keyed).
    """

    run_id: str
    name: str
    index: int
    replica: int
    payload: bytes
    is_source: bool
    use_ports: bool
    queue_size: int
    batch_size: int
    n_streams: int
    max_in_flight: int
    linger: float
    sync_state: bool
    tick_interval: float | None = None
    log_level: int = logging.WARNING
    #: The driver's machine (Ray node id) and import path: an actor on the same machine
    #: imports from there too, as the node would in the driver's own process.
    driver_node: str | None = None
    driver_path: tuple[str, ...] = ()
    #: ``dumps`` of the run's :class:`~nanostream._core.acks.AckRouting` (counting
    #: replicas), for acknowledgements; None for a run without them.
    ack_routing: bytes | None = None


# A port's targets: (target node name, its actors) in edge order.
Routes = dict[str, list[tuple[str, list[Any]]]]


class _Counters:
    __slots__ = ("blocked_input_s", "blocked_output_s", "errors", "items_in", "items_out")

    def __init__(self) -> None:
        self.items_in = 0
        self.items_out = 0
        self.errors = 0
        self.blocked_input_s = 0.0
        self.blocked_output_s = 0.0


# --------------------------------------------------------------------- inbox
class _Inbox:
    """A node's bounded input: batches from several ordered streams."""

    def __init__(self, capacity: int, n_streams: int, loop: asyncio.AbstractEventLoop) -> None:
        self.capacity = capacity
        self.depth = 0
        self.aborted = False
        self._dq: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._next_seq: dict[str, int] = {}
        self._ends_left = n_streams
        self._loop = loop
        self._change: asyncio.Future[None] = loop.create_future()
        self._waiting = 0
        if n_streams == 0:
            self._dq.append(_END)

    # -- on the actor's event loop
    def _signal(self) -> None:
        change, self._change = self._change, self._loop.create_future()
        if not change.done():
            change.set_result(None)

    def _admits(self, stream: str, seq: int, size: int) -> bool:
        if self._next_seq.get(stream, 0) != seq:
            return False
        return size == 0 or self.depth == 0 or self.depth + size <= self.capacity

    async def put(self, stream: str, seq: int, batch: list[Any] | Marker, end: bool) -> bool:
        """Append a batch (or an acknowledgement marker) in its stream's order, waiting
        for room; False once aborted."""
        size = 0 if end else len(batch)
        self._waiting += 1
        try:
            while not self._admits(stream, seq, size):
                if self.aborted:
                    return False
                await self._change
        finally:
            self._waiting -= 1
        if self.aborted:
            return False
        self._next_seq[stream] = seq + 1
        with self._cond:
            if end:
                self._ends_left -= 1
                if self._ends_left == 0:
                    self._dq.append(_END)
            elif type(batch) is Marker:
                self._dq.append(batch)
            elif batch:
                self._dq.append(batch)
                self.depth += size
            self._cond.notify()
        if self._waiting:
            self._signal()
        return True

    # -- in the node thread
    def get(
        self, counters: _Counters, before_wait: Callable[[], None], timeout: float | None = None
    ) -> Any:
        """The next batch, or ``_END``; sends the node's outputs before it waits.

        With ``timeout``: ``_IDLE`` when nothing came for that many seconds.
        """
        cond, dq = self._cond, self._dq
        while True:
            with cond:
                if dq:
                    batch = dq.popleft()
                    if batch is not _END:
                        self.depth -= len(batch)
                    break
            if self.aborted:
                raise RunAborted
            before_wait()
            start = time.monotonic()
            with cond:
                cond.wait_for(lambda: dq or self.aborted, timeout)
            counters.blocked_input_s += time.monotonic() - start
            if not dq and not self.aborted:
                return _IDLE
        if self._waiting:
            self._loop.call_soon_threadsafe(self._signal)
        return batch

    def abort(self) -> None:
        """Wake everyone: pushes return False, the node thread raises ``RunAborted``."""
        self.aborted = True
        with self._cond:
            self._cond.notify_all()
        self._loop.call_soon_threadsafe(self._signal)


# --------------------------------------------------------------------- outboxes
class _Link:
    """One sender instance's port to one receiver actor: ordered, bounded calls in flight."""

    def __init__(self, host: _Instance, actor: Any, stream: str, max_in_flight: int) -> None:
        self.host = host
        self.actor = actor
        self.stream = stream
        self.max_in_flight = max_in_flight
        self.seq = 0
        self.in_flight: deque[Any] = deque()

    def send(self, items: list[Any] | Marker, end: bool = False) -> None:
        self.wait_below(self.max_in_flight)
        self.in_flight.append(
            self.actor.push.remote(self.host.spec.run_id, self.stream, self.seq, items, end)
        )
        self.seq += 1

    def wait_below(self, limit: int) -> None:
        """Wait until fewer than ``limit`` calls are unfinished (back-pressure)."""
        in_flight = self.in_flight
        host = self.host
        if len(in_flight) < limit:
            return
        start = time.monotonic()
        host.output_wait_since = start
        try:
            while len(in_flight) >= limit:
                if host.aborted:
                    raise RunAborted
                ref = in_flight[0]
                ready, _ = ray.wait([ref], timeout=_WAIT_TICK_S)
                if not ready:
                    continue
                # Finished; if the receiver refused (aborted) or died, the driver is
                # aborting the run and this actor hears of it at once.
                in_flight.popleft()
        finally:
            host.output_wait_since = None
            host.counters.blocked_output_s += time.monotonic() - start


class _Target:
    """A downstream node: its actors, and how a batch is spread over them."""

    def __init__(self, links: list[_Link], key: Callable[[Any], Any] | None) -> None:
        self.links = links
        self.key = key
        self._next = 0

    def send(self, items: list[Any]) -> None:
        links = self.links
        if len(links) == 1:
            links[0].send(items)
        elif self.key is None:
            links[self._next].send(items)
            self._next = (self._next + 1) % len(links)
        else:
            n, key = len(links), self.key
            parts: list[list[Any]] = [[] for _ in links]
            for item in items:
                parts[stable_hash(key(item)) % n].append(item)
            for link, part in zip(links, parts, strict=True):
                if part:
                    link.send(part)


class _PortBox:
    """The outbox of one output port: ``outp`` buffers, full buffers go to every target."""

    outp: Callable[[Any], Any]

    def __init__(self, host: _Instance, targets: list[_Target], batch_size: int) -> None:
        self.host = host
        self.targets = targets
        self.batch_size = batch_size
        self.lock = threading.Lock()
        self.sent = False
        self.error: BaseException | None = None
        self.stopping = False
        self.ended = False  # the end marker has gone out (see close)
        #: Called after a send outside the lock (a source with acks: mark its items).
        self.after_send: Callable[[], None] | None = None
        self._stop_raised = False
        buf: list[Any] = []
        self.buf = buf
        self.limit = [batch_size]
        self.outp = checked_outp(buf, self.limit, self._flush_from_outp, batch_size)

    def _take(self) -> list[Any]:
        buf = self.buf
        items = buf[:]
        del buf[: len(items)]
        return items

    def flush(self) -> None:
        """Send what is buffered; re-raise an error the linger thread met."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if not self.buf:
            return
        if self.ended:
            raise NodeProtocolError(AFTER_END)
        with self.lock:
            self._send_locked()
        if self.after_send is not None:
            self.after_send()

    def send_marker(self, marker: Marker) -> None:
        """Send what is buffered, then ``marker`` to every instance of every target."""
        self.flush()
        with self.lock:
            if self.ended:
                return
            self._send_locked()
            self.send_marker_locked(marker)

    def send_marker_locked(self, marker: Marker) -> None:
        """``marker`` to every instance of every target (a replica gets its own copy)."""
        for target in self.targets:
            for link in target.links:
                link.send(marker)

    def _send_locked(self) -> None:
        items = self._take()
        if not items:
            return
        self.host.counters.items_out += len(items)
        self.sent = True
        for target in self.targets:
            target.send(items)

    def _flush_from_outp(self) -> None:
        self.flush()
        if self.host.aborted:
            raise RunAborted
        self.limit[0] = self.batch_size
        if self.stopping and not self._stop_raised:
            self._stop_raised = True
            raise SourceStopped

    def linger_tick(self) -> None:
        """Called every ``linger`` seconds: send a buffer nothing has sent since last time."""
        if self.sent:
            self.sent = False
            return
        if self.buf and self.error is None and self.lock.acquire(blocking=False):
            try:
                if not self.ended:  # after the end, the node thread's flush complains
                    self._send_locked()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the node thread
                self.error = exc
            finally:
                self.lock.release()
            if self.after_send is not None and self.error is None:
                try:
                    self.after_send()
                except BaseException as exc:  # noqa: BLE001 - re-raised in the node thread
                    self.error = exc

    def close(self) -> None:
        """Send the rest, then the end marker to every receiver (once), and wait for
        delivery."""
        self.flush()
        with self.lock:
            if self.ended:
                return
            self._send_locked()
            self.ended = True
            for target in self.targets:
                for link in target.links:
                    link.send([], end=True)
            for target in self.targets:
                for link in target.links:
                    link.wait_below(1)

    def request_stop(self) -> None:
        self.stopping = True
        self.limit[0] = 0

    def abort(self) -> None:
        self.limit[0] = 0


def _follow_driver_path(spec: HostSpec) -> None:
    """On the driver's machine, import from the driver's path too (after our own)."""
    if spec.driver_node is None or not spec.driver_path:
        return
    try:
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - unknown: do not guess
        return
    if here != spec.driver_node:
        return
    added = False
    for entry in spec.driver_path:
        if entry and entry not in sys.path and os.path.exists(entry):
            sys.path.append(entry)
            added = True
    if added:
        importlib.invalidate_caches()


# --------------------------------------------------------------------- logs
_MAX_LOGS = 10_000  # records kept between two deliveries to the driver
_PLAIN = (str, int, float, bool, type(None))


class _LogRelay(logging.Handler):
    """In an actor: passes the ``nanostream`` loggers' records to the hosted node, whose
    driver emits them again on its own loggers (so they show where the run was started)."""

    def __init__(self) -> None:
        super().__init__()
        self.instance: _Instance | None = None

    def emit(self, record: logging.LogRecord) -> None:
        instance = self.instance
        if instance is not None:
            instance.keep_log(record)


_relay: _LogRelay | None = None


def _relay_logs(instance: _Instance) -> None:
    """Send this process's ``nanostream`` log records to ``instance``'s driver."""
    global _relay
    logger = logging.getLogger("nanostream")
    if _relay is None:
        _relay = _LogRelay()
        logger.addHandler(_relay)
        logger.propagate = False  # shown by the driver, not in the worker's own log too
    logger.setLevel(instance.spec.log_level)
    _relay.instance = instance


def _portable(record: logging.LogRecord) -> dict[str, Any]:
    """A log record as a dict that pickles (``logging.makeLogRecord`` makes it again)."""
    data = dict(record.__dict__)
    data["msg"], data["args"] = record.getMessage(), None
    if record.exc_info:
        if not record.exc_text:
            data["exc_text"] = logging.Formatter().formatException(record.exc_info)
        data["exc_info"] = None
    for key, value in data.items():
        if not isinstance(value, _PLAIN):
            try:
                pickle.dumps(value)
            except Exception:  # noqa: BLE001 - kept as text
                data[key] = safe_str(_Repr(value))  # an item's repr() may raise too
    return data


class _Repr:
    """``str()`` of it is ``repr(value)`` (for :func:`safe_str`, which never raises)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return repr(self.value)


def emit_logs(records: Iterable[dict[str, Any]]) -> None:
    """Emit records an actor kept (see :class:`_LogRelay`) on the driver's loggers.

    Example:
        >>> import logging
        >>> from nanostream.runners._ray_host import emit_logs
        >>> emit_logs([{"name": "nanostream.p.n", "levelno": logging.DEBUG, "msg": "hi"}])
    """
    for data in records:
        record = logging.makeLogRecord(data)
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


# --------------------------------------------------------------------- the actor
class NodeHost:
    """Hosts one instance of one plan node; made a Ray actor by the driver.

    Only the remote methods live here (Ray wraps every method of an actor class); the
    node's thread and outboxes are a :class:`_Instance`.

    Example:
        >>> from nanostream.runners._ray_host import NodeHost
        >>> NodeHost().instance is None
        True
    """

    def __init__(self) -> None:
        self.instance: _Instance | None = None
        self._ack_executor: ThreadPoolExecutor | None = None

    async def load(
        self, spec: HostSpec, routes: Routes, sources: dict[int, Any] | None = None
    ) -> tuple[str | None, list[str]]:
        """Unpack the node and wire its outputs.

        ``sources`` are the actors of the run's sources by node index: a sink tells them
        when their acknowledgement markers reach it (see :meth:`reached`).

        Returns an error message (None if all went well) and the names of the node's
        events that the driver should mirror (see :meth:`events`).
        """
        _follow_driver_path(spec)
        try:
            entry, keys = loads(spec.payload)
        except Exception as exc:  # noqa: BLE001 - reported to the driver as text
            return exception_text(exc), []
        self.instance = _Instance(
            spec=spec,
            entry=entry,
            keys=keys,
            routes=routes,
            loop=asyncio.get_running_loop(),
            sources=sources or {},
        )
        _relay_logs(self.instance)
        return None, sorted(self.instance.events)

    async def start(self) -> None:
        """Start the node thread."""
        assert self.instance is not None
        self.instance.start()

    def _current(self, run_id: str) -> _Instance | None:
        instance = self.instance
        return instance if instance is not None and instance.spec.run_id == run_id else None

    async def push(
        self, run_id: str, stream: str, seq: int, batch: list[Any] | Marker, end: bool
    ) -> bool:
        """Take a batch (a marker, or a stream's end) from upstream; False if the run was
        aborted."""
        instance = self._current(run_id)
        if instance is None or instance.inbox is None:
            return False
        return await instance.inbox.put(stream, seq, batch, end)

    async def reached(self, run_id: str, source: int, seq: int) -> None:
        """Marker ``seq`` of this (source) node has reached one sink instance; when it has
        reached them all, the acknowledgements it covers are called (here, off the loop)."""
        instance = self._current(run_id)
        if instance is None or instance.acks is None:
            return
        if self._ack_executor is None:  # the actor's own: one thread, acks in order
            self._ack_executor = ThreadPoolExecutor(1, thread_name_prefix=_ACK_THREAD)
        loop = asyncio.get_running_loop()
        marker = Marker(source, seq)
        await loop.run_in_executor(self._ack_executor, instance.ack_reached, marker)

    async def settle(self, run_id: str) -> None:
        """Every other node has ended: a source waits for no more acknowledgements."""
        instance = self._current(run_id)
        if instance is not None:
            instance.settle()

    async def stop(self, run_id: str, source: bool) -> None:
        """The run is stopping: a source ends at its next ``outp``."""
        instance = self._current(run_id)
        if instance is not None:
            instance.stop(source)

    async def abort(self, run_id: str) -> None:
        """The run is aborting: reads and sends raise ``RunAborted`` in the node thread."""
        instance = self._current(run_id)
        if instance is not None:
            instance.abort()

    async def events(self, run_id: str, known: list[str]) -> dict[str, Any]:
        """Wait until one of the node's events not in ``known`` is set, the node logs,
        or the node ends; the names of all its events that are set (``events``) and the
        log records since the last call (``logs``).

        The driver keeps one such call pending per node, sets its own copies of the
        events (so ``Collect.seen.wait()`` works in the driver while the run goes on) and
        hands the records to its own loggers. ``stop`` is True once, after the node asked
        its run to stop (``NanoNode.request_stop()``); ``awaiting`` is True once, after the
        node began to wait for the rest of the run (``wait_for_run_outcome``); ``emitted_all``
        is True once, after a source emitted everything (it may still wait for its acks).
        """
        instance = self._current(run_id)
        if instance is None:
            return {"events": [], "logs": [], "ended": True, "stop": False}
        while (
            not (set(instance.events_set) - set(known))
            and not instance.logs
            and not (instance.stop_requested and not instance.stop_sent)
            and not (instance.awaiting_outcome and not instance.awaiting_sent)
            and not (instance.emitted_all and not instance.emitted_all_sent)
            and not instance.done.done()
        ):
            await instance.events_changed
        stop = instance.stop_requested and not instance.stop_sent
        instance.stop_sent = instance.stop_requested
        awaiting = instance.awaiting_outcome and not instance.awaiting_sent
        instance.awaiting_sent = instance.awaiting_outcome
        emitted_all = instance.emitted_all and not instance.emitted_all_sent
        instance.emitted_all_sent = instance.emitted_all
        return {
            "events": sorted(instance.events_set),
            "logs": instance.take_logs(),
            "ended": instance.done.done(),
            "stop": stop,
            "awaiting": awaiting,
            "emitted_all": emitted_all,
        }

    async def run_outcome(self, run_id: str) -> None:
        """The rest of the run has ended well: the node's ``wait_for_run_outcome`` returns."""
        instance = self._current(run_id)
        if instance is not None:
            instance.release_outcome()

    async def stats(self) -> dict[str, Any]:
        """The node's figures now."""
        assert self.instance is not None
        return self.instance.stats()

    async def wait_done(self) -> dict[str, Any]:
        """Wait until the node thread has ended; its outcome (see ``_Instance.main``)."""
        assert self.instance is not None
        return await self.instance.done


class _HostAcks(AckCoordinator):
    """The acknowledgements as one actor sees them.

    In a source's actor, the source's pending acks and markers (as on the threads
    runner); elsewhere, the routing its :class:`NodeMarkers` align with. A sink instance
    tells the source's actor that a marker reached it (``NodeHost.reached``), and waits
    for those calls to be delivered before its actor reports the node's end.
    """

    def __init__(self, instance: _Instance, routing: AckRouting, sources: dict[int, Any]):
        super().__init__(None, instance.inject_marker, routing)
        self.instance = instance
        self.sources = sources
        self._calls: list[Any] = []

    def reached(self, marker: Marker) -> None:
        instance = self.instance
        if marker.source == instance.spec.index:  # a source without outputs
            AckCoordinator.reached(self, marker)
            return
        actor = self.sources.get(marker.source)
        if actor is None:
            return
        calls = self._calls
        calls.append(actor.reached.remote(instance.spec.run_id, marker.source, marker.seq))
        if len(calls) >= 64:  # forget the delivered ones
            _, calls[:] = ray.wait(calls, num_returns=len(calls), timeout=0)

    def wait_delivered(self) -> None:
        """Wait until the source actors have handled this sink's ``reached`` calls."""
        calls = self._calls
        while calls and not self.instance.aborted:
            _, calls[:] = ray.wait(calls, num_returns=len(calls), timeout=_WAIT_TICK_S)


class _Reader:
    """The ``inp`` of a node: the items of its inbox's batches, and its markers."""

    def __init__(self, instance: _Instance, inbox: _Inbox) -> None:
        self.instance = instance
        self.inbox = inbox
        self.exhausted = False
        self.markers: NodeMarkers | None = None
        # The slice the node is reading, and how many items it and those before it hold.
        self.slice: Iterator[Any] = iter(())
        self.slice_end = 0

    def batches(self) -> Iterator[Iterable[Any]]:
        instance, inbox = self.instance, self.inbox
        counters, flush = instance.counters, instance.flush_all
        tick = instance.spec.tick_interval
        while True:
            batch = inbox.get(counters, flush, tick)
            if batch is _END:
                self.exhausted = True
                return
            if batch is _IDLE:  # no item for tick_interval seconds: a tick, not an item
                self.slice, self.slice_end = iter(()), counters.items_in
                yield TICKS
                flush()
                if self.markers is not None:
                    self.markers.apply()
                continue
            if type(batch) is Marker:
                self.node_markers().arrived(batch, counters.items_in)
                continue
            counters.items_in += len(batch)
            self.slice = it = iter(batch)
            self.slice_end = counters.items_in
            yield it
            if self.markers is not None:
                self.markers.apply()

    def node_markers(self) -> NodeMarkers:
        markers = self.markers
        if markers is None:
            instance = self.instance
            assert instance.acks is not None
            spec = instance.spec
            markers = self.markers = NodeMarkers(
                spec.name, spec.index, instance.acks, instance.entry.holds_items, self._forward
            )
        return markers

    def _forward(self, marker: Marker) -> None:
        boxes = list(self.instance.boxes.values())
        for box in boxes:
            box.flush()
        for box in boxes:
            box.send_marker(marker)

    def release(self, keep: int) -> None:
        """The node has emitted all it read except its last ``keep`` items."""
        read = self.slice_end - length_hint(self.slice)
        if self.instance.acks is not None:
            self.node_markers().request_release(read - keep)


class _RayContext(NodeContext):
    """A node's context inside its actor (see :mod:`nanostream._core.context`)."""

    supports_acks = True

    def __init__(self, instance: _Instance, base: NodeContext) -> None:
        super().__init__(base.name, linked_ports=base.linked_ports, stop_event=instance.stop_event)
        self.instance = instance
        self._acking = False

    def attach_ack(self, ack: Callable[[], Any]) -> None:
        instance = self.instance
        acks = instance.acks
        if acks is None:  # not a run's actor (cannot happen in a run): never early
            super().attach_ack(ack)
            return
        index = instance.spec.index
        if not self._acking:
            self._acking = True
            mark = partial(acks.mark, index)
            for box in instance.boxes.values():
                box.after_send = mark
        acks.attach(index, ack)

    def release_items(self, keep: int = 0) -> None:
        reader = self.instance.reader
        if reader is not None:
            reader.release(keep)

    def end_outputs(self) -> None:
        instance = self.instance
        reader = instance.reader
        if reader is not None:
            markers = reader.node_markers()
            markers.finish()  # what it has read so far was emitted
            markers.ended = True
        else:
            instance.mark_final()
        for box in instance.boxes.values():
            box.close()

    def request_stop(self) -> None:
        instance = self.instance
        # This node stops at once (a source at its next outp), as on the other runners;
        # the driver hears of it through ``events`` and stops the rest of the run.
        instance.stop(instance.spec.is_source)
        instance.stop_requested = True
        instance.loop.call_soon_threadsafe(instance._events_signal, [])

    def wait_for_run_outcome(self) -> None:
        instance = self.instance
        instance.awaiting_outcome = True  # the driver hears of it through ``events``
        instance.loop.call_soon_threadsafe(instance._events_signal, [])
        with instance._settled:
            instance._settled.wait_for(lambda: instance.outcome_released or instance.aborted)
        if instance.aborted:
            raise RunAborted


class _Instance:
    """One running instance of a node inside its actor: inbox, outboxes, threads."""

    def __init__(
        self,
        *,
        spec: HostSpec,
        entry: PlanNode,
        keys: dict[str, list[Callable[[Any], Any] | None]],
        routes: Routes,
        loop: asyncio.AbstractEventLoop,
        sources: dict[int, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.entry = entry
        self.function = entry.function
        self.loop = loop
        self.counters = _Counters()
        self.state = "created"
        self.aborted = False
        self.output_wait_since: float | None = None
        self.stop_event = threading.Event()
        self.threads_before: set[threading.Thread] = set()
        self.stop_requested = False  # by the node (request_stop); told to the driver once
        self.stop_sent = False  # (on the event loop)
        # In NodeContext.wait_for_run_outcome (told to the driver once); released by the
        # driver once the rest of the run has ended well (``NodeHost.run_outcome``).
        self.awaiting_outcome = False
        self.awaiting_sent = False  # (on the event loop)
        self.outcome_released = False
        self.emitted_all = False  # a source has emitted everything (told to the driver once)
        self.emitted_all_sent = False  # (on the event loop)
        self.done: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.inbox = None if spec.is_source else _Inbox(spec.queue_size, spec.n_streams, loop)
        self.boxes: dict[str, _PortBox] = {}
        stream_base = f"{spec.index}:{spec.replica}"
        for port, targets in routes.items():
            port_targets = []
            for (_, actors), key in zip(targets, keys.get(port, []), strict=True):
                stream = f"{stream_base}:{port}"
                links = [_Link(self, a, stream, spec.max_in_flight) for a in actors]
                port_targets.append(_Target(links, key))
            self.boxes[port] = _PortBox(self, port_targets, spec.batch_size)
        self.boxes.setdefault("out", _PortBox(self, [], spec.batch_size))
        # The node's adapter reads its context when it starts; sleep() waits on stop_event.
        self.context = _RayContext(self, entry.context())
        entry.bind(self.context)
        self.events: dict[str, threading.Event] = entry.events() if spec.sync_state else {}
        self.events_set: list[str] = []  # changed on the event loop only
        self.logs: deque[dict[str, Any]] = deque()  # records for the driver
        self.logs_dropped = 0
        self._logs_lock = threading.Lock()
        self.events_changed: asyncio.Future[None] = loop.create_future()
        self._events_seen: set[str] = set()  # the linger thread's view
        # Acknowledgements (see nanostream._core.acks): the markers of a node with input,
        # the pending acks of a source, the sink's "reached" calls still on their way.
        self.reader: _Reader | None = None
        self.acks: _HostAcks | None = None
        if spec.ack_routing is not None:
            routing = loads(spec.ack_routing)
            self.acks = _HostAcks(self, routing, sources or {})
        self._settled = threading.Condition(threading.Lock())
        self._settle = False

    # ----------------------------------------------------------------- acknowledgements
    def inject_marker(self, source: int, marker: Marker, final: bool) -> bool:
        """Send ``marker`` after everything this source has sent, on every output link.

        Only when no item is buffered or being sent (else False: the next send marks);
        with ``final`` (the source has ended and flushed) it waits for the outbox locks.
        """
        boxes = list(self.boxes.values())
        locked: list[Any] = []
        try:
            for box in boxes:
                if not box.lock.acquire(blocking=final):
                    return False
                locked.append(box.lock)
                if box.buf or box.ended:
                    return False
            for box in boxes:
                box.send_marker_locked(marker)
            return True
        finally:
            for lock in locked:
                lock.release()

    def mark_final(self) -> None:
        """A source has ended: its last marker goes after everything it emitted."""
        acks = self.acks
        if acks is not None and acks.has_acks(self.spec.index):
            self.flush_all()
            acks.mark(self.spec.index, final=True)

    def ack_reached(self, marker: Marker) -> None:
        """(Source actor, any thread.) One sink instance has the marker."""
        acks = self.acks
        if acks is None or self.aborted:
            return
        AckCoordinator.reached(acks, marker)
        with self._settled:
            self._settled.notify_all()

    def settle(self) -> None:
        """No more markers can come back: a source waiting for acks ends."""
        with self._settled:
            self._settle = True
            self._settled.notify_all()

    def outputs_ended(self) -> None:
        """(Source.) It has emitted everything: the driver hears of it through ``events``
        (its actor reports its end only once its acks are called, which a writer waiting
        for the rest of the run holds back)."""
        self.emitted_all = True
        self.loop.call_soon_threadsafe(self._events_signal, [])

    def release_outcome(self) -> None:
        """The rest of the run has ended well: ``wait_for_run_outcome`` returns."""
        with self._settled:  # the condition abort() notifies too
            self.outcome_released = True
            self._settled.notify_all()

    def wait_for_acks(self) -> None:
        """(Source, after it ended.) Wait until its acks are called, or none can be."""
        acks = self.acks
        if acks is None or not acks.has_acks(self.spec.index):
            return
        with self._settled:
            self._settled.wait_for(lambda: self._settle or self.aborted or not acks.pending())

    def start(self) -> None:
        self.threads_before = set(threading.enumerate())
        self.state = "running"
        thread = threading.Thread(
            target=self.main, name=f"nanostream-ray:{self.spec.name}", daemon=True
        )
        thread.start()

    def stop(self, source: bool) -> None:
        self.stop_event.set()
        if source:
            for box in self.boxes.values():
                box.request_stop()

    def abort(self) -> None:
        self.aborted = True
        self.stop_event.set()
        self.settle()
        self.context.abort_event.set()  # wakes a retry's back-off
        for box in self.boxes.values():
            box.abort()
        if self.inbox is not None:
            self.inbox.abort()

    def stats(self) -> dict[str, Any]:
        c, inbox = self.counters, self.inbox
        since = self.output_wait_since
        skipped = self.context.errors  # items a node skipped for good
        return {
            "state": self.state,
            "items_in": c.items_in,
            "items_out": c.items_out,
            "errors": c.errors + (skipped if isinstance(skipped, int) else 0),
            "queue_depth": inbox.depth if inbox is not None else 0,
            "queue_capacity": inbox.capacity if inbox is not None else 0,
            "blocked_input_s": c.blocked_input_s,
            "blocked_output_s": c.blocked_output_s,
            "output_waiting_s": time.monotonic() - since if since is not None else 0.0,
        }

    # ----------------------------------------------------------------- node thread
    def flush_all(self) -> None:
        for box in self.boxes.values():
            box.flush()

    def linger_main(self, finished: threading.Event) -> None:
        boxes = list(self.boxes.values())
        while not finished.wait(self.spec.linger):
            for box in boxes:
                box.linger_tick()
            if self.events:
                self.check_events()

    def check_events(self) -> None:
        """Tell the event loop about node events that have been set since last time."""
        new = [k for k, e in self.events.items() if k not in self._events_seen and e.is_set()]
        if new:
            self._events_seen.update(new)
            self.loop.call_soon_threadsafe(self._events_signal, new)

    def keep_log(self, record: logging.LogRecord) -> None:
        """Keep a log record of the node (any thread) for the driver."""
        data = _portable(record)
        with self._logs_lock:
            if len(self.logs) >= _MAX_LOGS:
                self.logs_dropped += 1
                return
            first = not self.logs
            self.logs.append(data)
        if first:
            self.loop.call_soon_threadsafe(self._events_signal, [])

    def take_logs(self) -> list[dict[str, Any]]:
        """The records kept since the last call."""
        with self._logs_lock:
            records = list(self.logs)
            self.logs.clear()
            dropped, self.logs_dropped = self.logs_dropped, 0
        if dropped:
            note = logging.LogRecord(
                "nanostream",
                logging.WARNING,
                __file__,
                0,
                "%d more log records of node %r "
                "were dropped (at most %d are kept between two deliveries)",
                (dropped, self.spec.name, _MAX_LOGS),
                None,
            )
            records.append(_portable(note))
        return records

    def _events_signal(self, new: list[str]) -> None:
        self.events_set.extend(new)
        changed, self.events_changed = self.events_changed, self.loop.create_future()
        if not changed.done():
            changed.set_result(None)

    def main(self) -> None:
        """The node thread: run the node function, then report the outcome."""
        finished = threading.Event()
        linger = threading.Thread(
            target=self.linger_main, args=(finished,), name="nanostream-ray-linger", daemon=True
        )
        linger.start()
        outcome: dict[str, Any]
        try:
            self.execute()
            self.state = "finished"
            outcome = {"state": "finished"}
        except RunAborted:
            self.state = "aborted"
            outcome = {"state": "aborted"}
        except BaseException as exc:  # noqa: BLE001 - reported to the driver
            self.state = "failed"
            self.counters.errors += 1
            outcome = {"state": "failed", **_describe_failure(exc)}
        finally:
            finished.set()
        linger.join()
        self.check_events()
        outcome["node_state"] = self.node_state()  # whatever the ending, as on threads
        # The actor may host another run if the node left no thread of its own behind.
        current = threading.current_thread()
        outcome["clean"] = all(
            t in self.threads_before or t is current or t.name.startswith(_ACK_THREAD)
            for t in threading.enumerate()
        )
        outcome["stats"] = self.stats()
        self.loop.call_soon_threadsafe(self._report, outcome)

    def _report(self, outcome: dict[str, Any]) -> None:
        if not self.done.done():
            outcome["logs"] = self.take_logs()
            self.done.set_result(outcome)
        self._events_signal([])

    def execute(self) -> None:
        spec, boxes = self.spec, self.boxes
        outp = port_dispatcher(boxes) if spec.use_ports else boxes["out"].outp
        reader = None
        inp: Iterable[Any]
        if self.inbox is None:
            inp = iter(())
        else:
            reader = self.reader = _Reader(self, self.inbox)
            inp = chain.from_iterable(reader.batches())
        try:
            self.function(inp, outp)
        except SourceStopped:
            pass
        if reader is not None and not reader.exhausted:
            raise NodeProtocolError(
                f"node function of {spec.name!r} returned before its input ended; a node "
                "function must iterate over its entire input"
            )
        if reader is not None:
            if reader.markers is not None:
                reader.markers.finish()  # the held markers go out before the end
        else:
            self.mark_final()
        for box in boxes.values():
            box.close()
        if self.acks is not None:
            self.acks.wait_delivered()  # a sink's "reached" calls, before it reports its end
        if reader is None:
            self.outputs_ended()
            self.wait_for_acks()

    def node_state(self) -> bytes | None:
        """The node object's attributes, for the driver's copy (class nodes only)."""
        state = self.entry.state() if self.spec.sync_state else None
        if state is None:
            return None
        try:
            return dumps(state)
        except Exception:  # noqa: BLE001 - some attribute cannot travel (an open file, ...)
            pass
        travels = {}
        for key, value in state.items():
            try:
                dumps(value)
            except Exception:  # noqa: BLE001 - that one stays remote
                continue
            travels[key] = value
        try:
            return dumps(travels)
        except Exception:  # noqa: BLE001 - they travel alone, not together
            return None


def _describe_failure(exc: BaseException) -> dict[str, Any]:
    text = "".join(traceback.format_exception(exc))
    data: bytes | None
    try:
        data = dumps(exc)
        loads(data)
    except Exception:  # noqa: BLE001 - sent as text only
        data = None
    frames = [
        (f.filename, f.lineno or 1, f.name, _span(f))
        for f in traceback.extract_tb(exc.__traceback__)
    ]
    return {
        "exception": data,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": safe_str(exc),
        "traceback": text,
        "frames": frames,
    }


def _span(frame: traceback.FrameSummary) -> tuple[int, int] | None:
    """The columns of the failing expression, when it is on one line."""
    if frame.colno is None or frame.end_colno is None or frame.end_lineno != frame.lineno:
        return None
    return frame.colno, frame.end_colno
