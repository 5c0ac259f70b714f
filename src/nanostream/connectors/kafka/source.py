""":class:`KafkaSource`: records of Kafka topics, read as a member of a consumer group, their
offsets committed once the pipeline is done with them."""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import countOf, itemgetter, length_hint
from typing import TYPE_CHECKING, Any

from ..._core.acks import Acked
from ..._core.context import node_label
from ..._core.errors import OptionError
from ..._core.fast import CALL, CONST, SECOND, TUPLE, call_rows
from ..._core.graph import pipeline_of
from ..._core.node import NanoNode, NodeFunction
from ..._core.policy import POLICY_OPTIONS
from ...operators._operator import check_positive
from .._acked_progress import AckedProgress
from .._toolkit import closing_function
from ._client import KEEPS_DATA, ClientSettings, Format, KafkaRecord, decoder, log, require_kafka

if TYPE_CHECKING:
    import confluent_kafka

__all__ = ["KafkaSource"]

# Records taken from the client per poll; the client fetches ahead in its own threads.
# (A small poll keeps few of the client's messages alive at once: each is an object the
# garbage collector tracks, and fewer of them are there when a collection comes.)
_CONSUME_MAX = 100

_STARTS = ("committed", "earliest", "latest")

_RESERVED = {
    "group.id": "give the group as group=",
    "enable.auto.commit": "offsets are committed when the pipeline acknowledges a record",
    "enable.auto.offset.store": "offsets are committed when the pipeline acknowledges a record",
    "auto.commit.interval.ms": "use commit_interval= (seconds)",
    "on_commit": "the source counts its commits itself",
    "auto.offset.reset": "use start= ('committed', 'earliest', 'latest' or a time)",
}


_COMMITTED = "read_committed"


def _check_isolation(node: str, level: Any) -> None:
    """Refuse an unknown ``isolation.level``; say it when records not committed are read."""
    if level not in (_COMMITTED, "read_uncommitted"):
        raise OptionError(
            f"{node}: config['isolation.level'] must be 'read_committed' (the default) or "
            f"'read_uncommitted', got {level!r}"
        )
    if level != _COMMITTED:
        log.warning(
            "%s reads with isolation.level='read_uncommitted': it sees records of Kafka "
            "transactions that are not committed, and of aborted ones (a KafkaSink with "
            "exactly_once=True writes in transactions); drop the setting to read only "
            "committed records",
            node,
        )


def _start_time(node: str, start: Any) -> str | int:
    """``start`` checked: one of :data:`_STARTS`, or a time as milliseconds since the epoch."""
    if isinstance(start, str) and start in _STARTS:
        return start
    when = start
    if isinstance(start, str):
        try:
            when = dt.datetime.fromisoformat(start)
        except ValueError:
            when = None
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise OptionError(
                f"{node}: start={start!r} has no time zone; give one (say '+00:00' for UTC)"
            )
        return int(when.timestamp() * 1000)
    raise OptionError(
        f"{node}: start must be 'committed', 'earliest', 'latest', or a time (a datetime with "
        f"a time zone, or ISO 8601 text such as '2024-05-01T00:00:00+00:00'), got {start!r}"
    )


class _Partition:
    """One partition as long as this consumer owns it; a new assignment makes a new one."""

    __slots__ = ("committed", "first", "key", "next", "stored")

    def __init__(self, key: tuple[str, int]) -> None:
        self.key = key
        self.first = -1  # the first offset this run read
        self.next = -1  # the offset to commit: after the last record done
        self.stored = -1  # the offset stored in the client, which commits it
        self.committed = -1  # the offset known to be committed


#: A record's partition and offset.
Covered = tuple[_Partition, int]
#: What one acknowledgement commits: the last record of each partition among the records
#: it covers (one ack goes with the last record of each poll; the engine calls it once
#: that record and every record emitted before it are done).
Cover = tuple[Covered, ...]


class _Ledger:
    """The partitions one run of a source owns and the offsets it may commit for them.

    An acknowledgement is called once its record and every record emitted before it are
    done (the engine calls acks in emission order), so the offset to commit for a
    partition is the one after its last record acknowledged. A revoked partition is
    dropped: acknowledgements of its records that come later commit nothing (its new owner
    reads them again).
    """

    def __init__(self, settings: ClientSettings, label: str) -> None:
        self.settings = settings
        self.label = label
        self.consumer: confluent_kafka.Consumer | None = None
        self.lock = threading.Lock()
        self.parts: dict[tuple[str, int], _Partition] = {}
        self.closing = False
        self.fatal: list[Any] = []
        self._committed = 0
        self._confirmed: deque[list[Any]] = deque()  # the client's commits, to count

    def assigned(self, partitions: Sequence[Any]) -> None:
        with self.lock:
            for tp in partitions:
                key = (tp.topic, tp.partition)
                self.parts[key] = _Partition(key)

    def revoked(self, partitions: Sequence[Any]) -> None:
        with self.lock:
            for tp in partitions:
                self.parts.pop((tp.topic, tp.partition), None)

    def part(self, topic: str, partition: int) -> _Partition:
        """The partition a record came from (the source's thread)."""
        found = self.parts.get((topic, partition))
        if found is None:  # a record fetched before its assignment was seen: not expected
            found = _Partition((topic, partition))
            with self.lock:
                self.parts[found.key] = found
        return found

    def store(self, values: Sequence[Cover]) -> None:
        """Store in the client the offsets these acknowledgements make final (any thread).

        The client commits what is stored every ``commit_interval`` in its own thread
        (asynchronously, so also while the source waits on a full queue); :meth:`commit`
        commits it at once. The client is called without the ledger's lock: it waits
        while the source's thread runs one of its callbacks, which take that lock.
        """
        import confluent_kafka

        with self.lock:
            offsets = []
            for cover in values:
                for part, offset in cover:
                    if self.parts.get(part.key) is part:  # revoked since: not ours to commit
                        part.next = max(part.next, offset + 1)
            for part in self.parts.values():
                if part.next > part.stored:
                    part.stored = part.next
                    offsets.append(confluent_kafka.TopicPartition(*part.key, part.next))
            consumer = self.consumer
        if offsets and consumer is not None:
            try:
                consumer.store_offsets(offsets=offsets)
            except confluent_kafka.KafkaException as exc:  # a partition revoked meanwhile
                with self.lock:
                    for tp in offsets:  # stored again with the next acknowledgement
                        owned = self.parts.get((tp.topic, tp.partition))
                        if owned is not None:
                            owned.stored = -1
                raise self.settings.error(
                    f"{self.label} could not store its offsets", exc
                ) from None

    def commit(self) -> None:
        """Commit now, and wait for the outcome: the offsets acknowledged and not yet known
        to be committed (at a revocation, and at the end)."""
        import confluent_kafka

        with self.lock:
            offsets = [
                confluent_kafka.TopicPartition(*part.key, part.next)
                for part in self.parts.values()
                if part.next > part.committed
            ]
            consumer = self.consumer
            if not offsets or consumer is None:
                return
            try:
                result = consumer.commit(offsets=offsets, asynchronous=False)
            except confluent_kafka.KafkaException as exc:
                # (its callers log it: a revoked partition's new owner reads those records
                # again, and the client's periodic commits retry the rest)
                raise self.settings.error(
                    f"{self.label} could not commit its offsets", exc
                ) from None
            for tp in result or ():
                if tp.error is not None:
                    raise self.settings.error(
                        f"{self.label} could not commit offset {tp.offset} of "
                        f"{tp.topic}[{tp.partition}]: {tp.error}"
                    )
            self._count(result or ())

    def on_commit(self, error: Any, partitions: Sequence[Any]) -> None:
        """The client's commit callback (its own periodic commits): count what it committed.

        A commit that failed is logged; the client commits the stored offsets again.
        """
        if error is not None:
            log.info("%s: a commit failed (%s); it is made again", self.label, error)
            return
        # (in the source's thread, inside the client: no lock taken, see store)
        self._confirmed.append([tp for tp in partitions if tp.error is None])

    @property
    def committed(self) -> int:
        """Offsets committed: the records read and committed."""
        with self.lock:
            self._count(())
            return self._committed

    def _count(self, committed: Iterable[Any]) -> None:
        """Count the records these committed offsets cover, and those the client's own
        commits did (holding the lock)."""
        while self._confirmed:
            self._count(self._confirmed.popleft())
        for tp in committed:
            owned = self.parts.get((tp.topic, tp.partition))
            if owned is not None and tp.offset > owned.committed:
                self._committed += tp.offset - max(owned.committed, owned.first, 0)
                owned.committed = tp.offset

    def on_error(self, error: Any) -> None:
        """The client's error callback: a fatal error fails the source, others are logged."""
        if error.fatal():
            self.fatal.append(error)
        else:
            log.warning("%s: %s", self.label, self.settings.secrets.scrub(error))

    def check(self) -> None:
        if self.fatal:
            raise self.settings.error(f"{self.label}: fatal client error: {self.fatal[0]}")

    def close(self) -> None:
        """Commit what is acknowledged, leave the group and close the client (once)."""
        try:
            self.commit()
        except Exception as exc:  # noqa: BLE001 - logged: a restart reads those again
            log.warning(
                "%s could not commit its last offsets (%s); a restart reads their records again",
                self.label,
                self.settings.secrets.scrub(exc),
            )
        with self.lock:
            consumer, self.consumer = self.consumer, None
            self.closing = True
        if consumer is not None:
            consumer.close()


_where = itemgetter(0, 1)  # a record's (topic, partition)
_partition = itemgetter(1)
_offset = itemgetter(2)


def _decoded(decode: Callable[[Any], Any] | None, read: Callable[[Any], Any]) -> Any:
    """``read``, or a function of a message that decodes what ``read`` gives."""
    if decode is None:
        return read
    return lambda message: decode(read(message))


class _Emitting:
    """The records of one poll on their way out of the source (the source's thread).

    ``records`` is what the source yields from; what it has sent so far is what that
    iterator has passed (a checkpoint's barrier may come after any record).
    """

    __slots__ = ("all", "last", "ledger", "records")

    def __init__(
        self,
        records: list[KafkaRecord],
        ledger: _Ledger,
        last: dict[tuple[str, int], int] | None = None,
    ) -> None:
        self.all = records
        self.ledger = ledger
        self.records = iter(records)
        self.last = last  # last_offsets(records), if known

    def sent(self) -> list[KafkaRecord]:
        """The records sent so far."""
        return self.all[: len(self.all) - length_hint(self.records)]

    @staticmethod
    def last_offsets(records: list[KafkaRecord]) -> dict[tuple[str, int], int]:
        """The last offset of each partition among ``records`` (in a poll they ascend)."""
        return dict(zip(map(_where, records), map(_offset, records), strict=True))

    def cover(self, emitted: dict[tuple[str, int], int]) -> Cover:
        """What the ack of the records sent commits; ``emitted`` learns their offsets."""
        sent = self.sent()
        last = (
            self.last
            if self.last is not None and len(sent) == len(self.all)
            else self.last_offsets(sent)
        )
        cover = []
        for key, offset in last.items():
            emitted[key] = offset + 1
            part = self.ledger.part(*key)
            if part.first < 0:  # the first record this run read of the partition
                part.first = next(r.offset for r in sent if (r.topic, r.partition) == key)
            cover.append((part, offset))
        return tuple(cover)


class _RecordBuilder:
    """Makes the records of a poll's messages, in one C loop (``call_rows``).

    The decoders of the ``'bytes'`` format are not called (the client's bytes are the
    value), nor the messages' ``topic()`` when the source reads one topic; a decoder
    that raises on one message raises from the whole call, and :meth:`failure` finds
    which.
    """

    def __init__(
        self,
        decode_key: Callable[[Any], Any],
        decode_value: Callable[[Any], Any],
        topic: str | None = None,
    ) -> None:
        from confluent_kafka import Message  # (imported once: a poll is 100 messages)

        self.topic = topic  # the one topic every message is of, if the source reads one
        self.last: dict[tuple[str, int], int] = {}  # of the messages of the last call
        self.decode_key = None if decode_key is KEEPS_DATA else decode_key
        self.decode_value = None if decode_value is KEEPS_DATA else decode_value
        self.message = Message
        # KafkaRecord's fields, each made of a message (see nanostream._core.fast.call_rows):
        # headers a tuple of pairs, () for none; a timestamp the client does not have is
        # -1 (of kind TIMESTAMP_NOT_AVAILABLE), None in the record.
        self.fields = (
            (CALL, Message.topic) if topic is None else (CONST, topic),
            (CALL, Message.partition),
            (CALL, Message.offset),
            (CALL, _decoded(self.decode_key, Message.key)),
            (CALL, _decoded(self.decode_value, Message.value)),
            (TUPLE, Message.headers),
            (SECOND, Message.timestamp),
        )

    def __call__(self, messages: list[Any]) -> list[KafkaRecord]:
        """The records of ``messages``; :attr:`last` becomes the last offset of each
        partition among them (in a poll they ascend)."""
        # A record of bytes, text and numbers is left out of the garbage collector's
        # lists, as a plain tuple of them would be (KafkaRecord is a module-level class,
        # it lasts as long as the process).
        records = call_rows(KafkaRecord, messages, self.fields, True)
        topic = self.topic
        if topic is None:
            self.last = dict(zip(map(_where, records), map(_offset, records), strict=True))
        elif records and countOf(map(_partition, records), records[0][1]) == len(records):
            self.last = {(topic, records[0][1]): records[-1][2]}  # one partition: its last
        else:
            by_partition = dict(zip(map(_partition, records), map(_offset, records), strict=True))
            self.last = {(topic, p): offset for p, offset in by_partition.items()}
        return records

    def first_error(self, messages: list[Any]) -> int | None:
        """The index of the first message that is an error of the client, or None."""
        if not any(map(self.message.error, messages)):
            return None
        return next(i for i, msg in enumerate(messages) if msg.error() is not None)

    def failure(self, messages: list[Any]) -> tuple[int, Exception]:
        """The index of the first message a decoder fails on, and its exception."""
        for i, msg in enumerate(messages):
            try:
                if self.decode_key is not None:
                    self.decode_key(msg.key())
                if self.decode_value is not None:
                    self.decode_value(msg.value())
            except Exception as exc:  # noqa: BLE001 - a deserialiser of the user's
                return i, exc
        raise AssertionError("no message fails to decode")  # pragma: no cover


class KafkaSource(NanoNode):
    """A source that reads Kafka topics as a member of the consumer group ``group``.

    ``topics`` is a topic name, a list of them, or a pattern (a name that starts with
    ``^`` is a regular expression). Each record is emitted as a :class:`KafkaRecord`
    (topic, partition, offset, key, value, headers, timestamp), its key and value decoded
    by ``key_format`` and ``value_format``: ``"bytes"`` (the default), ``"str"``,
    ``"json"``, or a function of the bytes (an Avro, Protobuf or Schema Registry
    deserialiser).

    ``start`` says where to begin in a partition this source is given: ``"committed"``
    (the default: after the group's committed offset, or at the earliest record when the
    group has none), ``"earliest"``, ``"latest"``, or a time (a ``datetime`` with a time
    zone, or ISO 8601 text: the first record at or after it). The last three apply to the
    first assignment of each partition in a run; after a rebalance the group's committed
    offsets hold.

    Delivery is at-least-once. A record's offset is committed only once the pipeline has
    acknowledged it — everything made from it has reached every sink, and buffering
    sinks (:class:`KafkaSink` after delivery, ``SQLSink``, file writers) have written it
    — and every record emitted before it too. The records of one poll (up to 100) go
    out with one acknowledgement, after the last of them, which commits the last offset
    of each partition among them. An acknowledgement stores its offsets in the client,
    which commits what is stored every ``commit_interval`` seconds in its own thread
    (asynchronously, so also while the source waits on a full queue downstream); the
    source commits at once, and waits for the outcome, when a partition is revoked (what
    is acknowledged of it) and after the last acknowledgement. So a process killed with
    ``kill -9`` loses nothing (a restart reads again from the last commit),
    a rebalance neither loses nor double-commits (a revoked partition's records still in
    the pipeline commit nothing: its new owner reads them again), and ``stop()`` drains
    the pipeline and commits.

    When no record is waiting the source looks again after ``poll_interval`` seconds
    (``stop()`` ends the wait at once). ``config`` takes any other librdkafka consumer
    setting (``security.protocol``, ``sasl.*``, ``ssl.*``, ``fetch.max.bytes`` ...);
    secrets in it (``sasl.password``, ``ssl.key.password``, ``ssl.key.pem`` ...) are
    masked in reprs, pipeline files, logs and errors. ``timeout`` is the seconds the
    start-up requests may take (reaching the brokers, finding offsets for a time). The
    source reads with ``isolation.level=read_committed``: the records of a Kafka
    transaction (a ``KafkaSink(exactly_once=True)``'s) only once it is committed, never
    those of an aborted one; ``read_uncommitted`` in ``config`` is taken, with a warning.

    The node's error policy applies to each poll: a record that cannot be decoded, or an
    error of the client, fails the run (``on_error="fail"``, the default) or, with
    ``on_error="skip"``, is recorded on the ``errors`` port (an undecodable record's
    offset then counts as done) and the source goes on.

    Example:
        >>> from nanostream.nodes.kafka import KafkaSource
        >>> KafkaSource("broker:9092", "orders", "billing", value_format="json",
        ...             config={"security.protocol": "SASL_SSL", "sasl.password": "pw-1234"})
        ... # doctest: +NORMALIZE_WHITESPACE
        KafkaSource(name=None, bootstrap_servers='broker:9092', topics=['orders'],
                    group='billing', config={'security.protocol': 'SASL_SSL',
                    'sasl.password': '***'})
    """

    policy_options = POLICY_OPTIONS  # its node function is NanoNode's, closing the client
    policy_per_poll = True  # applied to each poll
    own_options = ("timeout",)  # of its start-up requests

    def __init__(
        self,
        bootstrap_servers: str,
        topics: str | Sequence[str],
        group: str,
        *,
        start: str | dt.datetime = "committed",
        key_format: Format = "bytes",
        value_format: Format = "bytes",
        commit_interval: float = 0.5,
        poll_interval: float = 0.05,
        config: dict[str, Any] | None = None,
        timeout: float = 10.0,
        name: str | None = None,
        queue_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, queue_size=queue_size)
        require_kafka()
        label = node_label(self, with_class=True)
        names = [topics] if isinstance(topics, str) else list(topics)
        if not names or not all(isinstance(t, str) and t for t in names):
            raise OptionError(
                f"{label}: topics must be a topic name, a list of them, or a '^pattern', "
                f"got {topics!r}"
            )
        if not isinstance(group, str) or not group:
            raise OptionError(f"{label}: group must be the consumer group's name, got {group!r}")
        check_positive(label, "commit_interval", commit_interval, unit="seconds")
        check_positive(label, "poll_interval", poll_interval, unit="seconds")
        check_positive(label, "timeout", timeout, unit="seconds")
        self._settings = ClientSettings(label, bootstrap_servers, config, _RESERVED)
        _check_isolation(label, self._settings.config.get("isolation.level", _COMMITTED))
        strategy = str(self._settings.config.get("partition.assignment.strategy", ""))
        self._start = _start_time(label, start)
        if "cooperative" in strategy and self._start != "committed":
            raise OptionError(
                f"{label}: start={start!r} needs an eager assignment strategy; with "
                f"{strategy!r} use start='committed'"
            )
        self._decode_key = decoder(label, "key_format", key_format)
        self._decode_value = decoder(label, "value_format", value_format)
        self.bootstrap_servers = bootstrap_servers
        self.topics = names
        self.group = group
        self.start = start
        self.key_format = key_format
        self.value_format = value_format
        self.commit_interval = commit_interval
        self.poll_interval = poll_interval
        self.config = self._settings.shown  # secrets masked; the client gets the real ones
        self.timeout = timeout
        self._ledger: _Ledger | None = None
        # The offset after the last record emitted, per partition (the source's thread):
        # what a checkpoint keeps; and the offsets a restored checkpoint starts from.
        self._emitted: dict[tuple[str, int], int] = {}
        self._restored: dict[tuple[str, int], int] = {}
        self._emitting: _Emitting | None = None  # the poll on its way out
        self.configure(**options)

    def __repr__(self) -> str:
        shown = f", config={self.config!r}" if self.config else ""
        return (
            f"KafkaSource(name={self.name!r}, bootstrap_servers={self.bootstrap_servers!r}, "
            f"topics={self.topics!r}, group={self.group!r}{shown})"
        )

    def as_function(self) -> NodeFunction:
        return closing_function(super().as_function(), self._after_run)

    def _after_run(self) -> None:
        """The node function ended: if the run failed, no acknowledgement will come."""
        ledger, run = self._ledger, pipeline_of(self).run
        if ledger is not None and run is not None and run.state in ("aborted", "failed"):
            ledger.close()

    @property
    def committed(self) -> int:
        """How many records of the last run have their offsets committed."""
        ledger = self._ledger
        return ledger.committed if ledger is not None else 0

    def snapshot_state(self) -> list[tuple[str, int, int]]:
        """The checkpoint's part of this source: per partition, the offset after the last
        record it emitted (``(topic, partition, offset)``); see docs/state.md.

        A run restored from the checkpoint reads each of those partitions from there, so
        the records before the checkpoint's barrier are not read again, whatever the
        group committed since.

        Example:
            >>> from nanostream.nodes.kafka import KafkaSource
            >>> source = KafkaSource("broker:9092", "orders", "billing")
            >>> source.restore_state([("orders", 0, 42)])
            >>> source.snapshot_state()
            [('orders', 0, 42)]
        """
        emitted = dict(self._emitted)
        emitting = self._emitting
        if emitting is not None:  # inside a poll: its records sent so far
            for key, offset in emitting.last_offsets(emitting.sent()).items():
                emitted[key] = offset + 1
        return [(topic, partition, offset) for (topic, partition), offset in emitted.items()]

    def restore_state(self, state: list[tuple[str, int, int]]) -> None:
        """Start each partition of ``state`` at its offset (see :meth:`snapshot_state`)."""
        self._restored = {(topic, partition): offset for topic, partition, offset in state}
        self._emitted = dict(self._restored)

    def _open(self, ledger: _Ledger) -> confluent_kafka.Consumer:
        import confluent_kafka

        settings = self._settings
        consumer = confluent_kafka.Consumer(
            settings.client_config(
                **{
                    "group.id": self.group,
                    # Acks store offsets; the client commits them every commit_interval.
                    "enable.auto.commit": True,
                    "auto.commit.interval.ms": max(1, int(self.commit_interval * 1000)),
                    "enable.auto.offset.store": False,
                    "on_commit": ledger.on_commit,
                    "auto.offset.reset": "latest" if self._start == "latest" else "earliest",
                    "error_cb": ledger.on_error,
                    # records of transactions only once committed (set, not left to a default)
                    "isolation.level": settings.config.get("isolation.level", _COMMITTED),
                }
            )
        )
        ledger.consumer = consumer
        try:
            consumer.list_topics(timeout=self.timeout)
        except confluent_kafka.KafkaException as exc:
            ledger.close()
            raise settings.error(
                f"{ledger.label} could not reach the brokers at {self.bootstrap_servers}", exc
            ) from None
        return consumer

    def _positions(self, consumer: Any, fresh: list[Any]) -> None:
        """Set the start offsets of partitions this run has not had before."""
        import confluent_kafka

        start = self._start
        if start == "earliest":
            for tp in fresh:
                tp.offset = confluent_kafka.OFFSET_BEGINNING
        elif start == "latest":
            for tp in fresh:
                tp.offset = confluent_kafka.OFFSET_END
        else:
            assert isinstance(start, int)
            query = [confluent_kafka.TopicPartition(tp.topic, tp.partition, start) for tp in fresh]
            found = consumer.offsets_for_times(query, timeout=self.timeout)
            for tp, at in zip(fresh, found, strict=True):
                tp.offset = at.offset if at.offset >= 0 else confluent_kafka.OFFSET_END

    def generator(self) -> Iterator[Any]:
        label = node_label(self)
        ledger = _Ledger(self._settings, label)
        self._ledger = ledger
        progress: AckedProgress[Cover] = AckedProgress(ledger.store, close=ledger.close, name=label)
        consumer = self._open(ledger)
        seen: set[tuple[str, int]] = set()

        restored, self._restored = self._restored, {}  # for this run only
        self._emitted = dict(restored)

        def on_assign(consumer: Any, partitions: list[Any]) -> None:
            ledger.assigned(partitions)
            fresh = [tp for tp in partitions if (tp.topic, tp.partition) not in seen]
            seen.update((tp.topic, tp.partition) for tp in partitions)
            at_checkpoint = [tp for tp in fresh if (tp.topic, tp.partition) in restored]
            for tp in at_checkpoint:  # the checkpoint's offsets before any start position
                tp.offset = restored[tp.topic, tp.partition]
            others = [tp for tp in fresh if (tp.topic, tp.partition) not in restored]
            if others and self._start != "committed":
                self._positions(consumer, others)
            elif not at_checkpoint:
                return
            consumer.assign(partitions)

        def on_revoke(consumer: Any, partitions: list[Any]) -> None:
            if not ledger.closing:
                # What the pipeline is done with, before another consumer takes it (not
                # through ``progress``: an ack's store may be waiting on this callback).
                try:
                    ledger.commit()
                except Exception as exc:  # noqa: BLE001 - its new owner reads it again
                    log.warning(
                        "%s could not commit on revocation (%s); the partitions' new owner "
                        "reads their uncommitted records again",
                        label,
                        self._settings.secrets.scrub(exc),
                    )
            ledger.revoked(partitions)

        def on_lost(consumer: Any, partitions: list[Any]) -> None:
            ledger.revoked(partitions)

        consumer.subscribe(self.topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        only = self.topics[0] if len(self.topics) == 1 else None
        build = _RecordBuilder(
            self._decode_key,
            self._decode_value,
            None if only is None or only.startswith("^") else only,
        )
        backlog: list[Any] = []  # messages taken from the client, not made records yet
        ready: list[KafkaRecord] = []  # the records of the poll, to emit
        undecodable: list[tuple[_Partition, int, Exception]] = []
        idle = False
        ctx = self._context()

        def poll() -> tuple[()]:
            """Take the next messages and make their records (``ready``), up to the first
            that is an error (raised, under the policy, once the records before it are
            out) or that cannot be decoded (``undecodable``)."""
            nonlocal idle, backlog, ready
            if backlog:
                messages, backlog = backlog, []
            else:
                ledger.check()
                messages = consumer.consume(_CONSUME_MAX, 0)
                idle = not messages
            while messages:
                error = build.first_error(messages)
                if error == 0:  # raised (the poll fails) or passing (logged)
                    backlog = messages[1:]
                    self._client_error(messages[0].error())
                    messages, backlog = backlog, []
                    continue
                good = messages if error is None else messages[:error]
                backlog = [] if error is None else messages[error:]
                try:
                    ready = build(good)
                except Exception:  # noqa: BLE001 - a deserialiser of the user's: find which
                    at, problem = build.failure(good)
                    ready = build(good[:at])
                    msg = good[at]
                    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                    undecodable.append(
                        (
                            ledger.part(topic, partition),
                            offset,
                            self._settings.error(
                                f"{label} could not decode the record at offset {offset} "
                                f"of {topic}[{partition}] ({type(problem).__name__})",
                                problem,
                            ),
                        )
                    )
                    backlog = good[at + 1 :] + backlog
                return ()
            return ()

        def failed_record() -> Iterator[Any]:
            raise undecodable[0][2]

        try:
            with self.guard_polls() as guard:
                while True:
                    yield from guard(poll)
                    if ready:
                        # The poll's records go out as they are (a checkpoint on the way
                        # counts those sent, see snapshot_state); one ack, attached after
                        # the last, covers the last offset of each partition among them.
                        emitting = self._emitting = _Emitting(ready, ledger, build.last)
                        ready = []
                        yield from emitting.records
                        self._emitting = None
                        ctx.attach_ack(progress.ack(emitting.cover(self._emitted)))
                    if undecodable:  # under the policy: its error record carries its ack
                        part, offset, _ = undecodable[0]
                        self._emitted[part.key] = offset + 1
                        if part.first < 0:  # the first record this run read of it
                            part.first = offset
                        for out in guard(failed_record):
                            yield Acked(out, progress.ack(((part, offset),)))
                        undecodable.clear()
                        continue
                    if idle and not backlog and self.sleep(self.poll_interval):
                        return
        finally:
            stopped, self._emitting = self._emitting, None
            if stopped is not None:  # stopped inside a poll: its records sent so far
                cover = stopped.cover(self._emitted)
                if cover:
                    ctx.attach_ack(progress.ack(cover))
            progress.finish()  # the last offsets are committed as their acks come

    def _client_error(self, error: Any) -> None:
        """An error the client returned instead of a record: raised unless it is passing."""
        import confluent_kafka

        if error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
            return
        passing = (
            error.retriable() or error.code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
        )
        if error.fatal() or not passing:
            raise self._settings.error(f"{node_label(self)}: {error.str()}")
        log.warning("%s: %s", node_label(self), self._settings.secrets.scrub(error.str()))
