"""``KafkaSink(exactly_once=True)``: each checkpoint's records written in one Kafka transaction.

The protocol is that of the other exactly-once sinks (``SQLSink(exactly_once=True)``, the
file writers; see docs/state.md): the records that come between two checkpoints are kept
in the sink's state (so in the run's state store), and once the checkpoint holding them is
committed the sink writes them, together with a *marker* of the checkpoint's number, in one
Kafka transaction. A restart writes the records its restored checkpoint kept unless the
marker says they were written.

- The producer is transactional, with a stable ``transactional.id``
  (:func:`default_transactional_id`, or the sink's ``transactional_id``). Its
  ``init_transactions()`` at start fences an older producer of the same id (a run that
  did not die yet) and aborts the transaction that one left open.
- The marker is a record keyed by the ``transactional.id`` in partition 0 of the marker
  topic (``marker_topic``), written last in the transaction, after every record of it is
  delivered. A restart reads the last one with ``isolation.level=read_committed``
  (:meth:`TransactionalWriter.last_written`): a marker of a transaction that was never
  committed is not seen, so its records are written again. (Not the offsets of a consumer
  group sent with ``send_offsets_to_transaction``: librdkafka's mock cluster accepts those
  but does not keep them, so that marker could not be tested; see docs/kafka.md.)
- A transaction that fails with an abortable error is aborted and written again, until
  ``timeout`` seconds have passed; a fatal one (fenced: another producer took the
  ``transactional.id`` over) fails the run naming the node. Nothing is dropped: what is
  not written stays in the state store for the restart.

Example:
    >>> from nanostream.connectors.kafka._transactions import default_transactional_id
    >>> default_transactional_id("billing", "invoices-out", "invoices")
    'nanostream.billing.invoices-out.invoices'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..._core.context import node_label
from ..._core.errors import OptionError
from ..._core.graph import pipeline_of
from ..._core.node import NodeFunction
from ..._core.node_function import restore_state
from ..._core.ticks import TICK
from .._toolkit import closing_function
from ._client import ClientSettings, log

if TYPE_CHECKING:
    import confluent_kafka

    from .sink import KafkaSink

__all__ = [
    "MARKER_TOPIC",
    "ExactlyOnce",
    "TransactionalWriter",
    "check_exactly_once",
    "default_transactional_id",
    "exactly_once_function",
    "write_committed",
]

#: The topic the markers of the exactly-once sinks go to by default (partition 0).
MARKER_TOPIC = "nanostream-checkpoints"

#: ``(topic, key, value, headers, partition)`` of a record, as ``KafkaSink.encode`` makes it.
Record = tuple[str, Any, Any, Any, "int | None"]

# Settings of the user's ``config`` that only a producer takes: not given to the marker's
# reader (librdkafka would warn about each).
_PRODUCER_ONLY = (
    "acks",
    "batch.",
    "compression.",
    "delivery.",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "queue.buffering.",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "retry.backoff",
    "sticky.partitioning",
    "transaction.timeout.ms",
)


def default_transactional_id(pipeline: str, sink: str, topic: Any) -> str:
    """The ``transactional.id`` of a sink named ``sink`` in pipeline ``pipeline``.

    The same pipeline, sink and topic give the same id on every run, so a restart fences
    the producer of the run before it. A topic given as a function is left out.

    Example:
        >>> default_transactional_id("pipeline", "out", lambda item: "t")
        'nanostream.pipeline.out'
    """
    parts = ["nanostream", pipeline, sink]
    if isinstance(topic, str):
        parts.append(topic)
    return ".".join(parts)


def check_exactly_once(
    label: str,
    *,
    exactly_once: Any,
    idempotent: bool,
    transactional_id: Any,
    marker_topic: Any,
    config: Any,
    timeout: Any,
) -> None:
    """Refuse, when the sink is built, options that do not go with ``exactly_once``.

    Example:
        >>> check_exactly_once("KafkaSink", exactly_once=True, idempotent=False,
        ...                    transactional_id=None, marker_topic=MARKER_TOPIC, config=None,
        ...                    timeout=120)
        Traceback (most recent call last):
        ...
        nanostream._core.errors.OptionError: KafkaSink: exactly_once=True writes in Kafka \
transactions, which need the idempotent producer: drop idempotent=False
    """
    if not isinstance(exactly_once, bool):
        raise OptionError(f"{label}: exactly_once must be true or false, got {exactly_once!r}")
    if transactional_id is not None:
        if not exactly_once:
            raise OptionError(
                f"{label}: transactional_id= is the producer's id in Kafka transactions, "
                "which only exactly_once=True uses: pass exactly_once=True, or drop it"
            )
        if not isinstance(transactional_id, str) or not transactional_id:
            raise OptionError(f"{label}: transactional_id must be text, got {transactional_id!r}")
    if not exactly_once:
        return
    if not idempotent:
        raise OptionError(
            f"{label}: exactly_once=True writes in Kafka transactions, which need the "
            "idempotent producer: drop idempotent=False"
        )
    if not isinstance(marker_topic, str) or not marker_topic:
        raise OptionError(f"{label}: marker_topic must be a topic name, got {marker_topic!r}")
    limit = (config or {}).get("transaction.timeout.ms") if isinstance(config, dict) else None
    if (
        limit is not None
        and isinstance(timeout, (int, float))
        and not isinstance(timeout, bool)
        and int(limit) < timeout * 1000
    ):
        raise OptionError(
            f"{label}: config['transaction.timeout.ms'] ({limit} ms) is shorter than "
            f"timeout={timeout} s, the time a record may take to be delivered: raise it, "
            "or lower timeout="
        )


class TransactionalWriter:
    """One run's transactional producer of a sink, and the reader of its marker.

    ``config`` is the producer's configuration (with ``transactional.id``); ``reader``
    that of a consumer for the marker (``isolation.level=read_committed``).
    """

    def __init__(
        self,
        settings: ClientSettings,
        label: str,
        *,
        config: dict[str, Any],
        reader: dict[str, Any],
        marker_topic: str,
        timeout: float,
        fatal: list[Any],
    ) -> None:
        self.settings = settings
        self.label = label
        self.config = config
        self.reader = reader
        self.transactional_id = str(config["transactional.id"])
        self.marker_topic = marker_topic
        self.timeout = timeout
        self.fatal = fatal  # the producer's fatal errors (its error_cb appends them)
        self.producer: confluent_kafka.Producer | None = None
        self.in_transaction = False

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Make the producer and initialise its transactions: this fences an older
        producer of the same ``transactional.id`` and ends the transaction it left open."""
        import confluent_kafka

        self.producer = confluent_kafka.Producer(self.config)
        try:
            self.producer.init_transactions(self.timeout)
        except confluent_kafka.KafkaException as exc:
            raise self.settings.error(
                f"{self.label} could not initialise transactions with transactional.id "
                f"{self.transactional_id!r} at {self.settings.bootstrap_servers} (the brokers "
                "must be reachable and allow transactions)",
                exc,
            ) from None

    def close(self) -> None:
        """Abort a transaction still open (the run failed while writing), drop the
        producer. (A restart's ``init_transactions`` would abort it too.)"""
        producer, self.producer = self.producer, None
        if producer is None:
            return
        if self.in_transaction:
            import confluent_kafka

            self.in_transaction = False
            try:
                producer.abort_transaction(min(self.timeout, 5.0))
            except confluent_kafka.KafkaException as exc:  # the restart aborts it
                log.warning("%s could not abort its open transaction: %s", self.label, exc)
        producer.purge()
        producer.flush(0)

    # ------------------------------------------------------------------ marker
    def last_written(self) -> int:
        """The number of the last checkpoint whose records a committed transaction wrote
        (0: none). Read with ``isolation.level=read_committed``, after :meth:`open`."""
        import confluent_kafka

        consumer = confluent_kafka.Consumer(self.reader)
        try:
            topics = consumer.list_topics(self.marker_topic, timeout=self.timeout).topics
            meta = topics.get(self.marker_topic)
            if meta is None or meta.error is not None or 0 not in meta.partitions:
                return 0  # no marker written yet
            part = confluent_kafka.TopicPartition(self.marker_topic, 0)
            low, high = consumer.get_watermark_offsets(part, timeout=self.timeout)
            window = 64
            while True:  # the last marker of ours, looked for in ever longer tails
                start = max(low, high - window)
                found = self._last_marker(consumer, start)
                if found is not None or start <= low:
                    return found or 0
                window *= 4
        except confluent_kafka.KafkaException as exc:
            raise self.settings.error(
                f"{self.label} could not read its marker in topic {self.marker_topic!r}", exc
            ) from None
        finally:
            consumer.close()

    def _last_marker(self, consumer: Any, start: int) -> int | None:
        """The checkpoint number of the last marker of ours from offset ``start`` on."""
        import confluent_kafka

        consumer.assign([confluent_kafka.TopicPartition(self.marker_topic, 0, start)])
        key = self.transactional_id.encode()
        found: int | None = None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                error = msg.error()
                if error is not None:
                    if error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                        return found
                    raise confluent_kafka.KafkaException(error)
                if msg.key() == key:
                    found = int(json.loads(msg.value())["checkpoint"])
        raise self.settings.error(
            f"{self.label} could not read its marker in topic {self.marker_topic!r} within "
            f"{self.timeout} s"
        )

    # ------------------------------------------------------------------ writing
    def write(self, staged: list[tuple[int, list[Record]]]) -> int:
        """Write the records of ``staged`` (checkpoints, oldest first) and the marker of
        the last one in one transaction; return how many records were written.

        An abortable error aborts the transaction, and it is written again until
        ``timeout`` seconds have passed; a fatal one (fenced) fails, naming the node.
        """
        import confluent_kafka

        number = staged[-1][0]
        records = [record for _number, part in staged for record in part]
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._transaction(number, records, deadline)
                return len(records)
            except confluent_kafka.KafkaException as exc:
                error = exc.args[0]
                self._fail_unless_abortable(number, error)
                try:
                    self._abort(number, error, deadline)
                except confluent_kafka.KafkaException as failed:
                    raise self.settings.error(
                        f"{self.label}: the transaction of checkpoint {number} failed "
                        f"({error.str()}) and could not be aborted; the checkpoint's "
                        "records stay in the state store and a restart writes them",
                        failed,
                    ) from None

    def _transaction(self, number: int, records: list[Record], deadline: float) -> None:
        import confluent_kafka

        producer = self.producer
        assert producer is not None
        failed: list[Any] = []

        def report(error: Any, _msg: Any) -> None:
            if error is not None:
                failed.append(error)

        producer.begin_transaction()
        self.in_transaction = True
        produce = producer.produce
        for topic, key, value, headers, partition in records:
            while True:
                try:
                    produce(
                        topic,
                        value,
                        key,
                        -1 if partition is None else partition,
                        report,
                        headers=headers,
                    )
                    break
                except BufferError:  # the producer's queue is full: wait for deliveries
                    producer.poll(0.05)
                except (TypeError, ValueError) as exc:
                    raise self.settings.error(
                        f"{self.label} could not produce to {topic!r} in the transaction of "
                        f"checkpoint {number}",
                        exc,
                    ) from None
        # every record delivered before the marker: a marker seen means its records are
        # there, whether or not the reader's brokers keep uncommitted records apart
        self._flush(producer, deadline)
        if failed:
            raise confluent_kafka.KafkaException(failed[0])
        marker = {"checkpoint": number, "records": len(records)}
        produce(
            self.marker_topic,
            json.dumps(marker).encode(),
            self.transactional_id.encode(),
            0,
            report,
        )
        self._flush(producer, deadline)
        if failed:
            raise confluent_kafka.KafkaException(failed[0])
        while True:
            try:
                producer.commit_transaction(max(0.1, deadline - time.monotonic()))
                break
            except confluent_kafka.KafkaException as exc:
                if not exc.args[0].retriable() or time.monotonic() > deadline:
                    raise
        self.in_transaction = False
        if self.fatal:
            raise confluent_kafka.KafkaException(self.fatal[0])

    def _flush(self, producer: Any, deadline: float) -> None:
        while producer.flush(0.1):
            if self.fatal or time.monotonic() > deadline:
                import confluent_kafka

                error = (
                    self.fatal[0]
                    if self.fatal
                    else confluent_kafka.KafkaError(
                        confluent_kafka.KafkaError._TIMED_OUT,
                        "records not delivered within the sink's timeout",
                        retriable=True,
                    )
                )
                raise confluent_kafka.KafkaException(error)

    def _fail_unless_abortable(self, number: int, error: Any) -> None:
        """Raise the run's error unless ``error`` lets the transaction be aborted and
        written again (librdkafka: ``txn_requires_abort()``, or a retriable delivery)."""
        import confluent_kafka

        code = error.code()
        fenced = code in (
            confluent_kafka.KafkaError._FENCED,
            getattr(confluent_kafka.KafkaError, "PRODUCER_FENCED", None),
            confluent_kafka.KafkaError.INVALID_PRODUCER_EPOCH,
        )
        if fenced:
            raise self.settings.error(
                f"{self.label}: the transaction of checkpoint {number} cannot be committed: "
                f"another producer with transactional.id {self.transactional_id!r} has "
                f"fenced this one ({error.str()}). Two runs of this pipeline (or two sinks "
                "with one transactional_id) write at once: stop the other run, or give each "
                "sink its own transactional_id; the checkpoint's records stay in the state "
                "store and a restart writes them"
            )
        if error.fatal() or not (error.txn_requires_abort() or error.retriable()):
            raise self.settings.error(
                f"{self.label}: the transaction of checkpoint {number} cannot be committed "
                f"({error.str()}); the checkpoint's records stay in the state store and a "
                "restart writes them once the cause is fixed"
            )

    def _abort(self, number: int, error: Any, deadline: float) -> None:
        """Abort the transaction (to write it again), or fail once ``timeout`` is over."""
        producer = self.producer
        assert producer is not None
        if time.monotonic() > deadline:
            raise self.settings.error(
                f"{self.label}: the transaction of checkpoint {number} could not be "
                f"committed within timeout={self.timeout} s (last: {error.str()}); the "
                "checkpoint's records stay in the state store and a restart writes them"
            )
        log.warning(
            "%s aborts the transaction of checkpoint %d and writes it again: %s",
            self.label,
            number,
            self.settings.secrets.scrub(error.str()),
        )
        producer.abort_transaction(max(0.1, deadline - time.monotonic()))
        self.in_transaction = False


class ExactlyOnce:
    """What an exactly-once sink keeps between checkpoints, and its writer.

    ``pending``: the records since the last checkpoint; ``staged``: ``(number, records)``
    of checkpoints taken and not yet written; ``number``: the last checkpoint's number;
    ``written``: the last number known written; ``since``: the elements read since the
    last checkpoint (ticks too), whose acknowledgements wait for the next one.

    Example:
        >>> from nanostream.connectors.kafka._transactions import ExactlyOnce
        >>> kept = ExactlyOnce()
        >>> kept.pending.append(("orders", None, b"1", None, None))
        >>> kept.snapshot()
        (1, [(1, [('orders', None, b'1', None, None)])])
    """

    def __init__(self) -> None:
        self.pending: list[Record] = []
        self.staged: list[tuple[int, list[Record]]] = []
        self.number = 0
        self.written = 0
        self.since = 0
        self.writer: TransactionalWriter | None = None

    def snapshot(self) -> tuple[int, list[tuple[int, list[Record]]]]:
        """The sink's state at a checkpoint: its number and the records not yet written."""
        self.number += 1
        self.staged.append((self.number, self.pending))
        self.pending = []
        self.since = 0
        return self.number, list(self.staged)

    def restore(self, state: tuple[int, list[tuple[int, list[Record]]]]) -> None:
        """Take the restored checkpoint's state (written by the node function once its
        writer has read the marker)."""
        self.number, staged = state
        self.staged = list(staged)


def _writer(sink: KafkaSink) -> TransactionalWriter:
    """The writer of ``sink`` in its run, its ``transactional.id`` resolved."""
    transactional_id = sink.transactional_id or default_transactional_id(
        pipeline_of(sink).name, sink._context().name, sink.topic
    )
    settings = sink._settings
    fatal: list[Any] = []  # the producer's fatal errors (its error_cb logs the others)
    config = sink._client_config(fatal)
    config["transactional.id"] = transactional_id
    if "transaction.timeout.ms" not in config:  # at least a delivery's timeout
        config["transaction.timeout.ms"] = max(60_000, config["delivery.timeout.ms"])
    reader = {
        key: value
        for key, value in settings.client_config().items()
        if not key.startswith(_PRODUCER_ONLY)
    }
    reader.update(
        {
            "group.id": f"{transactional_id}.marker-reader",  # never joined nor committed
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    return TransactionalWriter(
        settings,
        node_label(sink),
        config=config,
        reader=reader,
        marker_topic=sink.marker_topic,
        timeout=float(sink.timeout),
        fatal=fatal,
    )


def exactly_once_function(sink: KafkaSink) -> NodeFunction:
    """The node function of ``sink`` with ``exactly_once=True``: records are kept per
    checkpoint (``sink.snapshot_state``) and written once it is committed
    (``sink.checkpoint_committed``); see the module."""

    def exactly_once(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        kept = sink._exactly = ExactlyOnce()
        sink.delivered = 0
        writer = kept.writer = _writer(sink)
        writer.open()
        restore_state(sink)
        if kept.staged:  # written before the crash, or not: the marker says
            kept.written = writer.last_written()
            write_committed(sink, kept)
        encode = sink.encode

        def keep(item: Any) -> tuple[()]:
            kept.pending.append(encode(item))  # a new list after each checkpoint
            return ()

        with sink.guard_items(outp, keep) as process:
            for element in inp:
                kept.since += 1
                if element is not TICK:
                    process(element)

    def close() -> None:
        kept = sink._exactly
        writer, kept.writer = kept.writer, None
        if writer is not None:
            writer.close()

    return closing_function(exactly_once, close)


def write_committed(sink: KafkaSink, kept: ExactlyOnce) -> None:
    """The checkpoint holding ``kept.staged`` is committed: write what its marker does
    not cover, in one transaction; the items read before it are done then."""
    staged = [(number, part) for number, part in kept.staged if number > kept.written]
    if staged and any(part for _number, part in staged):
        writer = kept.writer
        opened = writer is None  # the final checkpoint: the node function has ended
        if opened:
            writer = _writer(sink)
            writer.open()
        assert writer is not None
        try:
            written = writer.write(staged)
        finally:
            if opened:
                writer.close()
        sink.delivered += written
        log.debug("%s wrote checkpoint %d (%d records)", node_label(sink), staged[-1][0], written)
    if kept.staged:
        kept.written = max(kept.written, kept.staged[-1][0])
    kept.staged = []
    sink.release_items(keep=kept.since)
