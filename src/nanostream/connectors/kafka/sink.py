""":class:`KafkaSink`: items written to a Kafka topic, passed on as done only once delivered."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..._core.context import node_label
from ..._core.errors import OptionError
from ..._core.node import NanoNode, NodeFunction
from ..._core.policy import ItemGuard
from ..._core.ticks import TICK
from ...operators._operator import check_choice, check_non_negative, check_positive
from .._toolkit import closing_function
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
    from its own retries); writes are at least once: ``exactly_once=True`` (Kafka
    transactions) is refused when the node is built, as not supported yet. Each record's
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
        label = "KafkaSink"
        if not (callable(topic) or (isinstance(topic, str) and topic)):
            raise OptionError(f"{label}: topic must be a topic name or a function of the item")
        if partitioner is not None:
            check_choice(label, "partitioner", partitioner, _PARTITIONERS)
        if not isinstance(idempotent, bool):
            raise OptionError(f"{label}: idempotent must be true or false, got {idempotent!r}")
        if exactly_once is not False:
            raise OptionError(
                f"{label}: exactly_once={exactly_once!r} (writes in Kafka transactions) is "
                "not supported yet; the sink writes at least once, with an idempotent "
                "producer, so a restart may write again records of the last moments before "
                "a crash. Leave exactly_once out, and make the consumers of the topic "
                "tolerate a repeat (by the record's key)"
            )
        self.exactly_once = exactly_once
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

    def __repr__(self) -> str:
        return (
            f"KafkaSink(name={self.name!r}, bootstrap_servers={self.bootstrap_servers!r}, "
            f"topic={self.topic!r})"
        )

    def validate(self) -> None:
        """Check the producer's options (when the pipeline is built; it runs its own node
        function, so it defines neither ``generator()`` nor ``process_item()``)."""
        label = node_label(self)
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

    def _record_encoder(self) -> Callable[[Any], tuple[str, Any, Any, Any, int | None]]:
        """:meth:`encode`, or, when the sink takes nothing from its items (a fixed topic,
        no key, value, headers or partition of its own, formats that keep bytes), one that
        copies a :class:`KafkaRecord` of bytes straight, without looking at the options."""
        encode = self.encode
        topic = self.topic
        if (
            not isinstance(topic, str)
            or self._encode_key not in KEEPS_BYTES
            or self._encode_value not in KEEPS_BYTES
            or any(
                getter is not None
                for getter in (self._key, self._value, self._headers, self._partition)
            )
        ):
            return encode

        def copy(item: Any) -> tuple[str, Any, Any, Any, int | None]:
            if type(item) is KafkaRecord:
                key, value, headers = item[3], item[4], item[5]
                if (type(value) is bytes or value is None) and (type(key) is bytes or key is None):
                    return topic, key, value, list(headers) if headers else None, None
            return encode(item)

        return copy

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
        return closing_function(self._function, self._close)

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
        failed: deque[tuple[int, Any]] = deque()  # (position, error) of failed deliveries
        # Items waiting for their delivery report, by position in the input (1 = the first
        # element read; ticks count too), oldest first (a dict keeps its insertion order).
        pending: dict[int, Any] = {}
        read = 0  # elements of the input read
        released = 0  # elements passed on as done (release_items)
        delivered = 0
        producer = confluent_kafka.Producer(self._client_config(fatal))
        self._producer = producer
        self.delivered = 0

        def report(position: int, error: Any, _msg: Any) -> None:
            nonlocal delivered
            if error is None:
                del pending[position]
                delivered += 1
            else:
                failed.append((position, error))

        encode = self._record_encoder()
        produce = producer.produce

        def send(item: Any) -> tuple[()]:
            topic, key, value, headers, partition = encode(item)
            to = -1 if partition is None else partition
            while True:
                try:
                    produce(topic, value, key, to, partial(report, read), headers=headers)
                    break
                except BufferError:  # the producer's queue is full: wait for deliveries
                    producer.poll(0.05)
                except (confluent_kafka.KafkaException, TypeError, ValueError) as exc:
                    raise settings.error(f"{label} could not produce to {topic!r}", exc) from None
            pending[read] = item
            return ()

        with self.guard_items(outp, send) as guarded:
            guard = guarded if isinstance(guarded, ItemGuard) else None
            process = guarded if guard is not None else send

            def settle() -> None:
                """Handle the delivery reports collected; pass on what is delivered."""
                nonlocal released
                if fatal:
                    raise settings.error(f"{label}: fatal producer error: {fatal[0]}")
                while failed:
                    position, error = failed.popleft()
                    item = pending.pop(position)
                    exc = settings.error(f"{label}: a record was not delivered: {error.str()}")
                    if guard is None:
                        raise exc
                    guard.record_failure(item, exc, 1)
                # all before the oldest undelivered
                done = next(iter(pending)) - 1 if pending else read
                if done > released:
                    released = done
                    self.release_items(read - done)
                self.delivered = delivered

            for element in inp:
                read += 1
                if element is TICK:
                    producer.poll(0)
                    settle()
                elif not read % _REPORT_EVERY:
                    process(element)
                    producer.poll(0)
                    settle()
                else:
                    process(element)
            while pending:  # the input ended: wait until every record is reported
                producer.flush(0.1)
                settle()
            settle()
        self._producer = None
        log.debug("%s delivered %d records", label, delivered)


def _client_error(fatal: list[Any], settings: ClientSettings, label: str, error: Any) -> None:
    """The producer's error callback: a fatal error fails the sink, others are logged."""
    if error.fatal():
        fatal.append(error)
    else:
        log.warning("%s: %s", label, settings.secrets.scrub(error))
