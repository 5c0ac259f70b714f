"""Redis streams: read with :class:`RedisStreamSource` (a consumer group), write with
:class:`RedisStreamSink`.

Install the extra with ``pip install 'nanostream[redis]'``. URLs look like
``redis://:password@host:6379/0``; the password never appears in reprs, logs or errors.

Example:
    >>> from nanostream.nodes.redis import RedisStreamSink, RedisStreamSource
    >>> RedisStreamSource("redis://:s3cret-pw@cache:6379/0", "orders", "billing", "worker-1")
    RedisStreamSource(name=None, url='redis://:***@cache:6379/0', stream='orders', group='billing')
    >>> RedisStreamSink("redis://cache:6379/0", "invoices", maxlen=100_000)
    RedisStreamSink(name=None, url='redis://cache:6379/0', stream='invoices')
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from .._core.acks import Acked
from .._core.context import node_label
from .._core.errors import OptionError, require
from .._core.node import NanoNode, NodeFunction
from .._core.policy import POLICY_OPTIONS
from .._core.signals import SourceStopped
from ..operators._operator import check_positive
from ._acked_progress import AckedProgress
from ._buffered_sink import BufferedSink
from ._secrets import Secrets, install_log_masking, mask_url
from ._toolkit import (
    ConnectorError,
    closing_function,
    connector_error,
    pause_after_lost_connection,
    reconnect_options,
    retry_lost_connection,
)

if TYPE_CHECKING:
    import redis

__all__ = ["ConnectorError", "RedisStreamSink", "RedisStreamSource"]

log = logging.getLogger("nanostream.redis")

_LOGGERS = ("nanostream", "nanostream.redis", "redis")

# Acknowledgements send XACK at most this often (the source also sends one before each read).
_XACK_INTERVAL_S = 0.5


_require_redis: Callable[[], Any] = partial(require, "redis", extra="redis")


class _Client:
    """One node's Redis client: made in the node's thread, closed when the node ends."""

    def __init__(self, url: str, *, timeout: float, decode: bool, label: str = "Redis") -> None:
        self.url = url
        self.shown = mask_url(url)
        self.secrets = Secrets.from_url(url)
        self.timeout = timeout
        self.decode = decode
        self.client: redis.Redis | None = None
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise OptionError(
                f"{label}: not a Redis URL: {self.shown!r}; use "
                "redis://[:password@]host[:port][/db]"
            )

    def open(self, what: str, *, ping: bool = True) -> redis.Redis:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        install_log_masking(*_LOGGERS)
        # The node retries by itself (with its back-off and logging), so the client does not.
        self.client = redis.Redis.from_url(
            self.url,
            decode_responses=self.decode,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        if not ping:
            return self.client
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise self.error(f"{what} could not connect to {self.shown}", exc) from None
        return self.client

    def error(self, message: str, exc: BaseException) -> ConnectorError:
        return connector_error(f"{message}: {type(exc).__name__}: {exc}", exc, self.secrets)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()


def _connection(
    node: NanoNode,
    url: str,
    *,
    batch_size: int,
    timeout: float,
    decode: bool,
    retries: int,
    backoff: float,
    max_backoff: float,
) -> _Client:
    """What the constructors of both Redis nodes check and set: the entries per round trip
    (``batch_size``), the command ``timeout``, the reconnect options (set on ``node``), and
    the node's client for ``url``, not opened yet; a wrong option is an ``OptionError``
    naming the node."""
    _require_redis()
    label = node_label(node, with_class=True)
    check_positive(label, "batch_size", batch_size, integer=True)
    check_positive(label, "timeout", timeout, unit="seconds")
    reconnect_options(node, retries=retries, backoff=backoff, max_backoff=max_backoff)
    return _Client(url, timeout=timeout, decode=decode, label=label)


def _lost(exc: BaseException) -> bool:
    import redis

    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError))


# ----------------------------------------------------------------------------- source
def _get_timeout(node: Any) -> float:
    return float(node._redis.timeout)


def _set_timeout(node: Any, value: float) -> None:
    node._redis.timeout = float(value)


_TIMEOUT = property(_get_timeout, _set_timeout, doc="Seconds a Redis command may take.")


class _Acknowledger:
    """``XACK``s the entries of one run of a source that the pipeline is done with.

    Called with those entries' ids from any of the pipeline's threads (one call at a
    time), so it has a client of its own, opened on first use.
    """

    def __init__(self, source: RedisStreamSource) -> None:
        self.source = source
        main = source._redis
        self.redis = _Client(main.url, timeout=main.timeout, decode=main.decode)
        self.in_flight: set[Any] = set()  # emitted and not acknowledged yet
        self.lock = threading.Lock()

    def __call__(self, ids: Sequence[Any]) -> None:
        import redis

        source = self.source

        def acknowledge() -> None:
            client = self.redis.client
            if client is None:
                client = self.redis.open("RedisStreamSource", ping=False)
            client.xack(source.stream, source.group, *ids)

        retry_lost_connection(
            source,
            acknowledge,
            errors=redis.RedisError,
            lost=_lost,
            fail=lambda exc: self.redis.error(
                f"could not acknowledge {len(ids)} entries of {source.stream!r}", exc
            ),
            log=log,
            shown=self.redis.shown,
            doing=f" while acknowledging {len(ids)} entries",
            after_error=self.redis.close,  # a fresh connection next time
        )
        with self.lock:
            self.in_flight.difference_update(ids)
        source.acknowledged += len(ids)

    def close(self) -> None:
        self.redis.close()


class RedisStreamSource(NanoNode):
    """A source that reads a Redis stream as a member of a consumer group.

    Each entry is emitted as a dict of its fields (with the entry id under ``id_key``,
    if given). The group is created if missing, starting at ``start`` (``"0"``: the whole
    stream, ``"$"``: only new entries). Entries are read ``batch_size`` at a time; when
    the stream has nothing new the source waits ``poll_interval`` seconds (``stop()`` ends
    the wait at once).

    Delivery is at-least-once: an entry is acknowledged in Redis (``XACK``) only once the
    pipeline has acknowledged it — everything made from it has reached every sink, and
    buffering sinks (:class:`RedisStreamSink`, ``SQLSink``, file writers) have written it
    — never when it is only emitted (see ``nanostream.Acked``). ``XACK`` goes out before
    each read, at most every half second while acknowledgements come, and after the last
    one, so a graceful ``stop()`` acknowledges everything it delivered. On start the
    source first re-reads the entries this consumer had taken but not acknowledged (after
    a crash or an aborted run), so they are delivered again rather than lost. On a runner
    that does not call acknowledgements (the built-in runners all do; one from another
    package may not) entries stay pending, and a restart delivers them all again.

    A lost connection is retried ``retries`` times in a row with exponential back-off (the
    source then re-reads its pending entries, skipping those still in the pipeline);
    failing to connect at the start fails at once with a clear error.

    The node's error policy applies to each read: a read that fails (after those retries)
    fails the run (``on_error="fail"``, the default), or with ``on_error="skip"`` is
    recorded (an error record on the ``errors`` port, counted for ``max_errors`` and
    ``max_error_rate``) and the source reads again after ``poll_interval``, its pending
    entries first.

    Example:
        >>> from nanostream.nodes.redis import RedisStreamSource
        >>> source = RedisStreamSource(
        ...     "redis://localhost:6379/0", "events", "loader", "loader-1", id_key="_id"
        ... )
        >>> source.is_source, source.batch_size
        (True, 100)
    """

    policy_options = POLICY_OPTIONS  # its node function is NanoNode's, closing the client
    policy_per_poll = True  # applied to each read
    own_options = ("retries", "backoff", "timeout")  # of its connection

    timeout = _TIMEOUT

    def __init__(
        self,
        url: str,
        stream: str,
        group: str,
        consumer: str,
        *,
        start: str = "0",
        batch_size: int = 100,
        poll_interval: float = 0.1,
        id_key: str | None = None,
        decode: bool = True,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        name: str | None = None,
        queue_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, queue_size=queue_size)
        self._redis = _connection(
            self,
            url,
            batch_size=batch_size,
            timeout=timeout,
            decode=decode,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        check_positive(
            node_label(self, with_class=True), "poll_interval", poll_interval, unit="seconds"
        )
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.start = start
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.id_key = id_key
        self.acknowledged = 0
        self._position: Any = None  # the last entry emitted (or restored)
        self.configure(**options)

    def __repr__(self) -> str:
        return (
            f"RedisStreamSource(name={self.name!r}, url={self._redis.shown!r}, "
            f"stream={self.stream!r}, group={self.group!r})"
        )

    def setup(self) -> None:
        import redis

        self._position = None  # a checkpoint's restores it after setup()
        client = self._redis.open("RedisStreamSource")
        try:
            client.xgroup_create(self.stream, self.group, id=self.start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise self._redis.error(
                    f"RedisStreamSource could not create group {self.group!r}", exc
                ) from None

    def as_function(self) -> NodeFunction:
        return closing_function(super().as_function(), self._redis.close)

    def snapshot_state(self) -> Any:
        """The id of the last entry emitted (docs/state.md).

        In a run with a state store each checkpoint keeps it; a restart acknowledges the
        pending entries of this consumer up to it (the checkpoint holds what was made of
        them) and delivers the others again.

        Example:
            >>> from nanostream.nodes.redis import RedisStreamSource
            >>> source = RedisStreamSource("redis://localhost:6379/0", "s", "g", "c")
            >>> source.restore_state("1700000000000-3")
            >>> source.snapshot_state()
            '1700000000000-3'
        """
        return self._position

    def restore_state(self, state: Any) -> None:
        """Go on after this entry (what :meth:`snapshot_state` took).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        self._position = state

    def _read(self, from_id: Any) -> list[tuple[Any, Any]]:
        client = self._redis.client
        assert client is not None
        reply = cast(
            Any,
            client.xreadgroup(
                self.group, self.consumer, {self.stream: from_id}, count=self.batch_size
            ),
        )
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3
            return list(next(iter(reply.values()))[0])
        return list(reply[0][1])

    def generator(self) -> Iterator[Acked]:
        import redis

        acker = _Acknowledger(self)
        progress: AckedProgress[Any] = AckedProgress(
            acker,
            close=acker.close,
            interval=_XACK_INTERVAL_S,
            name=node_label(self, with_class=True),
        )
        in_flight, lock = acker.in_flight, acker.lock
        # Our own pending entries are read first (from after ``cursor``): those taken but
        # not acknowledged before a crash or a lost connection. None: read new entries.
        cursor: Any = "0"
        failures = 0
        idle = False
        # Pending entries up to a restored checkpoint's are done: it holds what came of them.
        restored = _entry_order(self._position) if self._position is not None else None

        def poll() -> Iterator[Acked]:
            """One read (``XREADGROUP``) and its entries; sets ``idle`` if there were none."""
            nonlocal cursor, failures, idle
            idle = False
            try:
                progress.commit()
                entries = self._read(">" if cursor is None else cursor)
                failures = 0
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                failures += 1
                cursor = "0"  # then re-read what is pending
                if pause_after_lost_connection(
                    self,
                    failures,
                    exc,
                    self._redis.error,
                    log=log,
                    shown=self._redis.shown,
                    reason=type(exc).__name__,
                ):
                    raise SourceStopped from None
                return
            except redis.RedisError as exc:
                raise self._redis.error(
                    f"RedisStreamSource could not read {self.stream!r} as group {self.group!r}",
                    exc,
                ) from None
            if not entries:
                if cursor is not None:
                    cursor = None
                else:
                    idle = True
                return
            if cursor is not None:
                cursor = entries[-1][0]
            for entry_id, fields in entries:
                if not fields:  # deleted from the stream while pending
                    progress.done(entry_id)
                    continue
                if restored is not None and _entry_order(entry_id) <= restored:
                    progress.done(entry_id)
                    continue
                with lock:
                    if entry_id in in_flight:  # re-read after a lost connection
                        continue
                    in_flight.add(entry_id)
                item = dict(fields)
                if self.id_key is not None:
                    item[self.id_key] = entry_id
                self._position = entry_id  # a checkpoint after the item counts it
                yield Acked(item, progress.ack(entry_id))

        try:
            with self.guard_polls() as guard:
                while True:
                    if not (yield from guard(poll)):  # skipped: re-read what is pending
                        cursor, failures, idle = "0", 0, True
                    if idle and self.sleep(self.poll_interval):
                        return
        finally:
            progress.finish()  # the last entries are acknowledged as their acks come


def _entry_order(entry_id: Any) -> tuple[int, ...]:
    """A stream entry's id (``"1700000000000-3"``, text or bytes) as numbers, to compare."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return tuple(int(part) for part in text.split("-"))


# ----------------------------------------------------------------------------- sink
def _encode_value(value: Any) -> Any:
    if isinstance(value, (str, bytes, float)) or (
        isinstance(value, int) and not isinstance(value, bool)
    ):
        return value
    return json.dumps(value, default=str)


class RedisStreamSink(BufferedSink):
    """A sink that appends each item (a dict of fields) to a Redis stream with ``XADD``.

    Field values that are text, bytes or numbers are stored as they are; anything else
    (``None``, booleans, lists, dicts) as JSON. ``maxlen`` caps the stream's length
    (approximately, which is much cheaper, unless ``approximate=False``). Items are sent
    ``batch_size`` at a time in one round trip, or fewer once the oldest of them has
    waited ``flush_interval`` seconds (default 0.2, also on a quiet stream; ``None``: only
    full batches); what is pending is sent when the stream ends and when the run stops.
    A lost connection is retried ``retries`` times with exponential back-off, resending
    the batch (at-least-once: an entry may be doubled). Sources' acknowledgements of the
    items (``nanostream.Acked``) wait until the batch holding them has been sent.

    Example:
        >>> from nanostream.nodes.redis import RedisStreamSink
        >>> sink = RedisStreamSink("redis://localhost:6379/0", "events", maxlen=10_000)
        >>> sink.encode({"user": "ada", "n": 3, "ok": True, "tags": ["a"]})
        {'user': 'ada', 'n': 3, 'ok': 'true', 'tags': '["a"]'}
    """

    own_options = ("retries", "backoff", "timeout")  # of its connection

    timeout = _TIMEOUT

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        maxlen: int | None = None,
        approximate: bool = True,
        batch_size: int = 100,
        flush_interval: float | None = 0.2,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        name: str | None = None,
        queue_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, queue_size=queue_size)
        self._redis = _connection(
            self,
            url,
            batch_size=batch_size,
            timeout=timeout,
            decode=True,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        label = node_label(self, with_class=True)
        check_positive(label, "maxlen", maxlen, integer=True, optional=True)
        self.stream = stream
        self.maxlen = maxlen
        self.approximate = approximate
        self.batch_size = batch_size
        self._start_buffer(batch_size, flush_interval)  # entries wait until sent (flush)
        self.entries_written = 0
        self.configure(**options)

    def __repr__(self) -> str:
        return (
            f"RedisStreamSink(name={self.name!r}, url={self._redis.shown!r}, "
            f"stream={self.stream!r})"
        )

    def encode(self, item: Any) -> dict[str, Any]:
        """The fields ``XADD`` stores for ``item``."""
        if not isinstance(item, Mapping):
            raise ConnectorError(
                f"RedisStreamSink takes dicts (field -> value); got a {type(item).__name__}"
            )
        if not item:
            raise ConnectorError("RedisStreamSink: a stream entry needs at least one field")
        return {str(k): _encode_value(v) for k, v in item.items()}

    def setup(self) -> None:
        self._empty_buffer()
        self._redis.open("RedisStreamSink")

    def as_function(self) -> NodeFunction:
        return closing_function(self._buffer_function(), self._redis.close)

    def flush(self) -> None:
        """Send the pending entries in one round trip (retried if the connection drops)."""
        entries = self._pending
        client = self._redis.client
        if not entries or client is None:
            return
        import redis

        def write() -> None:
            pipe = client.pipeline(transaction=False)
            for fields in entries:
                pipe.xadd(
                    self.stream,
                    cast(Any, fields),
                    maxlen=self.maxlen,
                    approximate=self.approximate,
                )
            pipe.execute()

        retry_lost_connection(
            self,
            write,
            errors=redis.RedisError,
            lost=_lost,
            fail=lambda exc: self._redis.error(
                f"RedisStreamSink could not write {len(entries)} entries to "
                f"{self.stream!r} at {self._redis.shown}",
                exc,
            ),
            log=log,
            shown=self._redis.shown,
            doing=f" while writing {len(entries)} entries",
        )
        self.entries_written += len(entries)
        self._empty_buffer()
        self.release_items()  # their sources' acknowledgements may go now
