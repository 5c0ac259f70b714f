""":class:`KafkaSink`: items written to a Kafka topic, passed on as done only once delivered."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from itertools import repeat
from operator import itemgetter, length_hint
from typing import TYPE_CHECKING, Any

from ..._core.context import node_label
from ..._core.errors import OptionError
from ..._core.fast import typed_rows
from ..._core.node import NanoNode, NodeFunction
from ..._core.policy import ItemGuard
from ..._core.ticks import TICKS
from ...operators._operator import check_choice, check_non_negative, check_positive
from .._toolkit import closing_function, input_slices
from ._client import (
    KEEPS_BYTES,
    ClientSettings,
    Format,
    KafkaRecord,
    encoder,
    field_getter,
    header_pairs,
    log,
    require_kafka,
)
from ._transactions import (
    MARKER_TOPIC,
    ExactlyOnce,
    check_exactly_once,
    exactly_once_function,
    write_committed,
)

if TYPE_CHECKING:
    import confluent_kafka

__all__ = ["KafkaSink"]

# Delivery reports are collected after this many items (and on every tick, and at the end).
_REPORT_EVERY = 1000

_PARTITIONERS = (
    "random",
    "consistent",
    "consistent_random",
    "murmur2",
    "murmur2_random",
    "fnv1a",
    "fnv1a_random",
)

_RESERVED = {
    "enable.idempotence": "use idempotent=",
    "partitioner": "use partitioner=",
    "retries": "use retries=",
    "message.send.max.retries": "use retries=",
    "retry.backoff.ms": "use backoff= (seconds)",
    "delivery.timeout.ms": "use timeout= (seconds)",
    "message.timeout.ms": "use timeout= (seconds)",
    "on_delivery": "deliveries are checked by the sink",
    "error_cb": "errors are reported by the sink",
    "transactional.id": "use transactional_id= (with exactly_once=True)",
}


class KafkaSink(NanoNode):
    """A sink that writes each item as a record of a Kafka topic, and checks its delivery.

    ``topic`` is a topic name or a function of the item. ``key``, ``value``, ``headers``
    and ``partition`` say what to take from each item: a field name (``item[name]`` of a
    dict, the attribute of any other item), a function of the item, or ``None``: no key,
    the item itself as the value, no headers, and the partition the ``partitioner``
    chooses (librdkafka's ``consistent_random`` by default; ``murmur2_random`` is the Java
    client's). A :class:`KafkaRecord` item (from a :class:`KafkaSource`) gives its own
    key, value and headers unless told otherwise. Headers are a dict or ``(name, value)``
    pairs, values text or bytes. Keys and values become bytes by ``key_format`` and
    ``value_format``: ``"auto"`` (the default: bytes as they are, text as UTF-8, anything
    else as JSON), ``"bytes"``, ``"str"``, ``"json"``, or a serialiser of yours (a
    function returning bytes: Avro, Protobuf, a Schema Registry serialiser).

    The producer is idempotent unless ``idempotent=False`` (no duplicates or reordering
    from its own retries); writes are at least once. Each record's
    delivery report is checked: the sink passes an
    item on as done — the acknowledgement its source waits for — only once Kafka has
    acknowledged its record, and the input's end (or a stop) waits until everything is
    delivered. A record that cannot be produced or delivered (after the producer's
    ``retries`` within ``timeout`` seconds) is an error under the node's policy: the run
    fails (``on_error="fail"``, the default) or, with ``on_error="skip"``, the item goes
    to the ``errors`` port (dead letters), counted for ``max_errors`` and
    ``max_error_rate``; it is never dropped silently. ``config`` takes any other
    librdkafka producer setting (``linger.ms``, ``compression.type``, ``sasl.*`` ...), its
    secrets masked everywhere.

    With ``exactly_once=True`` (in a run with a state store, ``state=``; see
    docs/kafka.md and docs/state.md) records are written only at checkpoints, in Kafka
    transactions: a checkpoint keeps the records since the one before, and once it is
    committed they are written in one transaction together with a marker record of the
    checkpoint's number (keyed by the producer's ``transactional.id``, in partition 0 of
    ``marker_topic``, ``"nanostream-checkpoints"`` by default). A restart writes the
    records its checkpoint kept unless the marker, read with
    ``isolation.level=read_committed``, says they were written: each record is written
    once. ``transactional_id`` is by default ``nanostream.<pipeline>.<sink>.<topic>``, the
    same on every run, so a restart fences the producer of the run before it. Consumers
    of the topic must read with ``isolation.level=read_committed`` (librdkafka's default,
    and :class:`KafkaSource`'s). The pipeline is refused unless every source can resume
    from a checkpoint, no node on the way merges inputs and this is its only sink.

    Example:
        >>> from nanostream.nodes.kafka import KafkaSink
        >>> sink = KafkaSink("broker:9092", "invoices", key="customer",
        ...                  headers=lambda item: {"source": "billing"})
        >>> sink
        KafkaSink(name=None, bootstrap_servers='broker:9092', topic='invoices')
        >>> sink.encode({"customer": "ada", "total": 12})
        ('invoices', b'ada', b'{"customer": "ada", "total": 12}', [('source', b'billing')], None)
    """

    policy_options = ("on_error", "max_errors", "max_error_rate")
    own_options = ("retries", "backoff", "timeout")  # the producer's own
    holds_items = True  # an item is done once its record is delivered
    tick_interval = 0.1  # delivery reports are collected on a quiet input too

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str | Callable[[Any], str],
        *,
        key: str | Callable[[Any], Any] | None = None,
        value: str | Callable[[Any], Any] | None = None,
        headers: str | Callable[[Any], Any] | None = None,
        partition: str | Callable[[Any], int] | None = None,
        partitioner: str | None = None,
        key_format: Format = "auto",
        value_format: Format = "auto",
        idempotent: bool = True,
        exactly_once: bool = False,
        transactional_id: str | None = None,
        marker_topic: str = MARKER_TOPIC,
        config: dict[str, Any] | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        timeout: float = 120.0,
        name: str | None = None,
        queue_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, queue_size=queue_size)
        require_kafka()
        label = node_label(self, with_class=True)
        if not (callable(topic) or (isinstance(topic, str) and topic)):
            raise OptionError(f"{label}: topic must be a topic name or a function of the item")
        if partitioner is not None:
            check_choice(label, "partitioner", partitioner, _PARTITIONERS)
        if not isinstance(idempotent, bool):
            raise OptionError(f"{label}: idempotent must be true or false, got {idempotent!r}")
        check_exactly_once(
            label,
            exactly_once=exactly_once,
            idempotent=idempotent,
            transactional_id=transactional_id,
            marker_topic=marker_topic,
            config=config,
            timeout=timeout,
        )
        self.exactly_once = exactly_once
        self.transactional_id = transactional_id
        self.marker_topic = marker_topic
        # with exactly_once: the records kept per checkpoint; without, no state to keep
        self.keeps_no_state = not exactly_once
        self._exactly = ExactlyOnce()
        self._settings = ClientSettings(label, bootstrap_servers, config, _RESERVED)
        self._key = field_getter(label, "key", key)
        self._value = field_getter(label, "value", value)
        self._headers = field_getter(label, "headers", headers)
        self._partition = field_getter(label, "partition", partition)
        self._encode_key = encoder(label, "key_format", key_format)
        self._encode_value = encoder(label, "value_format", value_format)
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.partition = partition
        self.partitioner = partitioner
        self.key_format = key_format
        self.value_format = value_format
        self.idempotent = idempotent
        self.config = self._settings.shown  # secrets masked; the client gets the real ones
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.delivered = 0  # records delivered by the last run
        self._producer: confluent_kafka.Producer | None = None
        self.configure(**options)
        self.validate()  # and again when the pipeline is built, after any configure()

    def __repr__(self) -> str:
        return (
            f"KafkaSink(name={self.name!r}, bootstrap_servers={self.bootstrap_servers!r}, "
            f"topic={self.topic!r})"
        )

    def validate(self) -> None:
        """Check the producer's options (when the pipeline is built; it runs its own node
        function, so it defines neither ``generator()`` nor ``process_item()``)."""
        label = node_label(self, with_class=True)
        for what, value in (("retries", self.retries), ("backoff", self.backoff)):
            if value is not None:
                check_non_negative(label, what, value, integer=what == "retries")
        if self.retries == 0 and self.idempotent:
            raise OptionError(
                f"{label}: an idempotent producer retries; give retries >= 1 or idempotent=False"
            )
        check_positive(label, "timeout", self.timeout, unit="seconds")

    def encode(self, item: Any) -> tuple[str, Any, Any, Any, int | None]:
        """``(topic, key, value, headers, partition)`` of the record written for ``item``."""
        topic = self.topic(item) if callable(self.topic) else self.topic
        if type(item) is KafkaRecord:
            key, value, headers = item.key, item.value, list(item.headers) or None
        else:
            key, value, headers = None, item, None
        if self._key is not None:
            key = self._key(item)
        if self._value is not None:
            value = self._value(item)
        if self._headers is not None:
            headers = header_pairs(self._headers(item))
        partition = self._partition(item) if self._partition is not None else None
        if type(key) is not bytes or self._encode_key not in KEEPS_BYTES:
            key = self._encode_key(key)
        if type(value) is not bytes or self._encode_value not in KEEPS_BYTES:
            value = self._encode_value(value)
        return topic, key, value, headers, partition

    def _copies_records(self) -> bool:
        """True when the sink takes nothing from its items (a fixed topic, no key, value,
        headers or partition of its own, formats that keep bytes): a :class:`KafkaRecord`
        of bytes is then written as it is, as :meth:`encode` would, without looking at
        the options."""
        return (
            isinstance(self.topic, str)
            and self._encode_key in KEEPS_BYTES
            and self._encode_value in KEEPS_BYTES
            and all(
                getter is None
                for getter in (self._key, self._value, self._headers, self._partition)
            )
        )

    def _client_config(self, failures: list[Any]) -> dict[str, Any]:
        fixed: dict[str, Any] = {
            "enable.idempotence": self.idempotent,
            "delivery.timeout.ms": int(self.timeout * 1000),
            "error_cb": partial(_client_error, failures, self._settings, node_label(self)),
        }
        if self.partitioner is not None:
            fixed["partitioner"] = self.partitioner
        if self.retries is not None:
            fixed["retries"] = self.retries
        if self.backoff is not None:
            fixed["retry.backoff.ms"] = int(self.backoff * 1000)
        return self._settings.client_config(**fixed)

    def as_function(self) -> NodeFunction:
        self.validate()
        if self.exactly_once:
            return exactly_once_function(self)
        return closing_function(self._function, self._close)

    def snapshot_state(self) -> Any:
        """With ``exactly_once``: the records since the last checkpoint, kept by this one
        (and those kept before and not written yet), with its number (see docs/state.md).

        Example:
            >>> from nanostream.nodes.kafka import KafkaSink
            >>> sink = KafkaSink("broker:9092", "orders", exactly_once=True)
            >>> sink._exactly.pending.append(sink.encode({"n": 1}))
            >>> sink.snapshot_state()
            (1, [(1, [('orders', None, b'{"n": 1}', None, None)])])
        """
        return self._exactly.snapshot()

    def restore_state(self, state: Any) -> None:
        """With ``exactly_once``: the restored checkpoint's records, written at start
        unless the marker says they were. Example: the one of :meth:`snapshot_state`."""
        self._exactly.restore(state)

    def checkpoint_committed(self) -> None:
        """With ``exactly_once``: the checkpoint holding the kept records is committed:
        write them and its marker in one Kafka transaction.

        Example:
            >>> from nanostream.nodes.kafka import KafkaSink
            >>> KafkaSink("broker:9092", "orders", exactly_once=True).checkpoint_committed()
        """
        write_committed(self, self._exactly)

    def _close(self) -> None:
        """After the node function: a producer still open here has undelivered records
        (the run failed or was aborted): they are dropped, and never passed on as done."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge()
            producer.flush(0)

    def _function(self, inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        import confluent_kafka

        label = node_label(self)
        settings = self._settings
        fatal: list[Any] = []  # fatal client errors (error_cb)
        # The records produced since the last look at the delivery reports are one
        # _Sent; the ones closed and not yet wholly reported wait in ``waiting``, oldest
        # first. Positions count the items of the input read.
        waiting: deque[_Sent] = deque()
        read = 0  # items of the input read
        released = 0  # items passed on as done (release_items)
        delivered = 0
        producer = confluent_kafka.Producer(self._client_config(fatal))
        self._producer = producer
        self.delivered = 0
        current = _Sent(0)
        on_report, keep = current.report, current.items.append

        encode = self.encode
        copying = self._copies_records()
        the_topic = self.topic if isinstance(self.topic, str) else ""  # when copying
        produce = producer.produce

        def send(item: Any) -> tuple[()]:
            # A record of bytes copied as it is (see _copies_records), else encode().
            if (
                copying
                and type(item) is KafkaRecord
                and (type(item[4]) is bytes or item[4] is None)
                and (type(item[3]) is bytes or item[3] is None)
            ):
                topic, key, value, partition = the_topic, item[3], item[4], -1
                headers: Any = list(item[5]) if item[5] else None
            else:
                topic, key, value, headers, at = encode(item)
                partition = -1 if at is None else at
            while True:
                try:
                    produce(topic, value, key, partition, on_report, headers=headers)
                    break
                except BufferError:  # the producer's queue is full: wait for deliveries
                    producer.poll(0.05)
                except (confluent_kafka.KafkaException, TypeError, ValueError) as exc:
                    raise settings.error(f"{label} could not produce to {topic!r}", exc) from None
            keep(item)
            return ()

        def copy_slice(records: list[KafkaRecord]) -> int:
            """Produce ``records`` (each one send() would copy as it is) in one C loop, as
            send() does; how many were produced (the rest: the queue was full, or a
            record could not be produced, which send() then waits for or raises)."""
            values = iter(list(map(_VALUE, records)))
            found = list(map(_HEADERS, records))
            headers = (
                list(map(list, found)) if all(found) else [list(h) if h else None for h in found]
            )
            try:
                # (the producer's positional arguments: topic, value, key, partition,
                # callback, on_delivery, timestamp, headers; a timestamp of 0 is now)
                deque(
                    map(
                        produce,
                        repeat(the_topic),
                        values,
                        map(_KEY, records),
                        repeat(-1),
                        repeat(on_report),
                        repeat(None),
                        repeat(0),
                        headers,
                    ),
                    0,
                )
            except Exception:  # noqa: BLE001 - the record at which it stopped goes to send()
                return len(records) - length_hint(values) - 1
            return len(records)

        with self.guard_items(outp, send) as guarded:
            guard = guarded if isinstance(guarded, ItemGuard) else None
            process = guarded if guard is not None else send

            def settle() -> None:
                """Look at the delivery reports collected; pass on what is delivered."""
                nonlocal released, delivered, current, on_report, keep
                if fatal:
                    raise settings.error(f"{label}: fatal producer error: {fatal[0]}")
                if current.items:
                    waiting.append(current)
                    current = _Sent(read)
                    on_report, keep = current.report, current.items.append
                while waiting and waiting[0].reported == len(waiting[0].items):
                    done = waiting.popleft()
                    for error, item in done.failed(encode):
                        exc = settings.error(f"{label}: a record was not delivered: {error.str()}")
                        if guard is None or item is None:  # (None: not expected)
                            raise exc
                        guard.record_failure(item, exc, 1)
                    delivered += len(done.items) - len(done.failures)
                # every item before the oldest records not wholly reported
                upto = waiting[0].start if waiting else read
                if upto > released:
                    released = upto
                    self.release_items(read - upto)  # (keeps the rest)
                self.delivered = delivered

            # Without a policy to apply per item, a slice of records copied as they are
            # is produced in one C loop (copy_slice); what it leaves goes through send().
            fast = copying and guard is None
            due = _REPORT_EVERY  # the reports are looked at once this many items are read
            for part in input_slices(inp):
                if part is TICKS:
                    producer.poll(0)
                    settle()
                    continue
                read += length_hint(part)
                if not fast:
                    for item in part:
                        process(item)
                else:
                    items = list(part)
                    if _copyable(items):
                        copied = copy_slice(items)
                        current.items.extend(items[:copied])
                        items = items[copied:]
                    for item in items:
                        send(item)
                if read >= due:
                    producer.poll(0)
                    settle()
                    due = read + _REPORT_EVERY
            settle()
            while waiting:  # the input ended: wait until every record is reported
                producer.flush(0.1)
                settle()
        self._producer = None
        log.debug("%s delivered %d records", label, delivered)


_KEY, _VALUE, _HEADERS = itemgetter(3), itemgetter(4), itemgetter(5)  # of a KafkaRecord
_KEY_AND_VALUE = (3, 4)
_BYTES_OR_NONE = (bytes, type(None))


def _copyable(items: list[Any]) -> bool:
    """Whether every item is a :class:`KafkaRecord` whose key and value are bytes (or
    None): what a sink that copies records writes as they are (looked at in one C loop,
    :func:`~nanostream._core.fast.typed_rows`)."""
    return typed_rows(items, KafkaRecord, _KEY_AND_VALUE, _BYTES_OR_NONE)


class _Sent:
    """The records a sink produced between two looks at its delivery reports, and their
    items, in order: they are passed on as done once every one of them is reported.

    One delivery callback (:meth:`report`) serves them all, so producing a record makes
    no object of its own. A record not delivered is matched back to its item by what
    was written (topic, key and value; among records alike, the first not yet matched).

    Example:
        >>> from nanostream.connectors.kafka.sink import _Sent
        >>> sent = _Sent(start=0)
        >>> sent.items += [{"n": 1}, {"n": 2}]
        >>> sent.report(None, None)
        >>> sent.reported, len(sent.items)
        (1, 2)
    """

    __slots__ = ("failures", "items", "reported", "start")

    def __init__(self, start: int) -> None:
        self.start = start  # the input position before its first item
        self.items: list[Any] = []
        self.reported = 0
        self.failures: list[tuple[Any, Any]] = []  # (error, message) of records not delivered

    def report(self, error: Any, msg: Any) -> None:
        """The delivery callback of each of its records."""
        self.reported += 1
        if error is not None:
            self.failures.append((error, msg))

    def failed(self, encode: Callable[[Any], tuple[Any, ...]]) -> list[tuple[Any, Any]]:
        """``(error, item)`` of each record not delivered (``item`` None when no item
        written matches its record: not expected)."""
        found = []
        matched: set[int] = set()
        for error, msg in self.failures:
            wrote = (msg.topic(), msg.key(), msg.value())
            at = next(
                (
                    i
                    for i, item in enumerate(self.items)
                    if i not in matched and encode(item)[:3] == wrote
                ),
                None,
            )
            if at is not None:
                matched.add(at)
            found.append((error, None if at is None else self.items[at]))
        return found


def _client_error(fatal: list[Any], settings: ClientSettings, label: str, error: Any) -> None:
    """The producer's error callback: a fatal error fails the sink, others are logged."""
    if error.fatal():
        fatal.append(error)
    else:
        log.warning("%s: %s", label, settings.secrets.scrub(error))
