"""Kafka source and sink against librdkafka's mock cluster (a real TCP port on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import gc
import inspect
import io
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

import nanostream  # noqa: E402
from nanostream._core import fast  # noqa: E402
from nanostream._core.redact import redact  # noqa: E402
from nanostream.connectors.kafka._client import decoder  # noqa: E402
from nanostream.connectors.kafka.source import (  # noqa: E402
    _Emitting,
    _Ledger,
    _Partition,
    _RecordBuilder,
)
from nanostream.nodes.kafka import ConnectorError, KafkaRecord, KafkaSink, KafkaSource  # noqa: E402
from nanostream.testing import Collect  # noqa: E402
from support import wait_until  # noqa: E402

PARTITIONS = 4  # the mock cluster's partitions per auto-created topic

# The mock cluster hands a closed consumer's partitions on only after its session timeout
# (45 s by default): a short one keeps each test's next consumer of a group quick.
GROUP_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def group_source(bootstrap: str, *args: Any, **options: Any) -> KafkaSource:
    return KafkaSource(bootstrap, *args, config=GROUP_CONFIG, **options)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def produce(
    bootstrap: str, topic: str, values: list[bytes], keyed: bool = True, timestamp: int = 0
) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for i, value in enumerate(values):
        key = f"k{i % 13}".encode() if keyed else None
        producer.produce(topic, value, key=key, timestamp=timestamp)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    """Every record of ``topic`` (waits until ``expected`` arrived)."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.2):
                assert msg.error() is None, msg.error()
                got.append(msg)
    finally:
        consumer.close()
    return got


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """The group's committed offset of each partition of ``topic`` (-1: none)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0}
    )
    try:
        parts = [confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: max(tp.offset, -1) for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic`` (0 while the topic does not exist)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique("w"), "log_level": 0}
    )
    ends = {}
    try:
        for p in range(PARTITIONS):
            tp = confluent_kafka.TopicPartition(topic, p)
            try:
                ends[p] = consumer.get_watermark_offsets(tp, timeout=10)[1]
            except confluent_kafka.KafkaException:
                ends[p] = 0
    finally:
        consumer.close()
    return ends


def fully_committed(bootstrap: str, topic: str, group: str) -> bool:
    """Whether the group has committed every record of ``topic``."""
    done = committed(bootstrap, topic, group)
    return all(done[p] == end for p, end in end_offsets(bootstrap, topic).items() if end > 0)


def run_until(sink: Collect, run: nanostream.Run | None, timeout: float = 60) -> None:
    """Wait until the sink has what it waits for, then stop the (endless) run."""
    assert run is not None
    try:
        assert sink.seen.wait(timeout), f"only {len(sink.items)} items arrived"
    finally:
        run.stop(timeout=60)
    assert run.state == "finished"


# ----------------------------------------------------------------------------- round trip
def test_round_trip_of_100000_records_with_keys_and_headers(
    kafka_cluster: str, runner: str, acks: bool
) -> None:
    n = 100_000
    topic, group = unique("round"), unique("g")
    items = [{"id": i, "user": f"u{i % 97}"} for i in range(n)]
    sink = KafkaSink(kafka_cluster, topic, key="user", headers=lambda item: {"id": str(item["id"])})
    nanostream.from_iterable(items) > sink
    started = time.monotonic()
    sink.global_start(runner=runner)
    got = Collect(wait_for=n)
    source = group_source(kafka_cluster, topic, group, key_format="str", value_format="json")
    source > got
    run_until(got, source.global_start(block=False, runner=runner))
    assert time.monotonic() - started < 90  # bounded: both ways, 100,000 records
    records: list[KafkaRecord] = got.items
    assert sorted(r.value["id"] for r in records) == list(range(n))
    assert all(r.key == r.value["user"] for r in records)
    assert all(r.headers == (("id", str(r.value["id"]).encode()),) for r in records)
    # one key, one partition, in the order written
    by_key: dict[str, set[int]] = {}
    for r in records:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    per_partition: dict[int, list[int]] = {}
    for r in records:
        per_partition.setdefault(r.partition, []).append(r.value["id"])
    assert all(ids == sorted(ids) for ids in per_partition.values())
    # stop() drained and committed everything acknowledged
    expected = end_offsets(kafka_cluster, topic) if acks else dict.fromkeys(range(PARTITIONS), -1)
    assert committed(kafka_cluster, topic, group) == expected


# ----------------------------------------------------------------------------- source
class FailAt(Collect):
    """Collects; raises on the record whose value is ``fail_at``."""

    def __init__(self, fail_at: bytes, **options: Any) -> None:
        super().__init__(**options)
        self.fail_at = fail_at

    def process_item(self, item: Any) -> Iterator[Any]:
        if item.value == self.fail_at:
            raise RuntimeError(f"the sink failed on {item.value!r}")
        yield from super().process_item(item)


def test_offsets_are_committed_only_when_acknowledged(
    kafka_cluster: str, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    topic, group = unique("acked"), unique("g")
    values = [f"v{i}".encode() for i in range(400)]
    produce(kafka_cluster, topic, values)
    first = FailAt(b"v200")
    group_source(kafka_cluster, topic, group) > first
    run = first.global_start(block=False, runner=runner)
    assert run is not None
    with pytest.raises(nanostream.NodeFailed, match="failed on b'v200'"):
        run.wait(60)
    done = {(r.partition, r.offset) for r in first.items}
    failed_at = committed(kafka_cluster, topic, group)
    # nothing committed past a record the pipeline was not done with
    for partition, offset in failed_at.items():
        assert all((partition, o) in done for o in range(max(offset, 0)))
    second = Collect(wait_for=1)
    group_source(kafka_cluster, topic, group) > second
    second.wait_for = sum(
        end - max(failed_at[p], 0) for p, end in end_offsets(kafka_cluster, topic).items()
    )
    run_until(second, second.global_start(block=False, runner=runner))
    seen = {r.value for r in first.items} | {r.value for r in second.items}
    assert seen == set(values)  # nothing lost
    assert b"v200" in {r.value for r in second.items}  # the failed record comes again
    assert committed(kafka_cluster, topic, group) == end_offsets(kafka_cluster, topic)


class StopAt(Collect):
    """Collects; asks the run to stop once it has ``at`` records."""

    def __init__(self, at: int, **options: Any) -> None:
        super().__init__(**options)
        self.at = at

    def process_item(self, item: Any) -> Iterator[Any]:
        yield from super().process_item(item)
        if len(self.items) == self.at:
            self.request_stop()


def test_a_stop_inside_a_poll_commits_every_record_emitted(
    kafka_cluster: str, runner: str, acks: bool
) -> None:
    """One ack goes with a poll's last record; a stop that ends the source inside a poll
    attaches it to the last record emitted, so the drained records are all committed."""
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    topic, group = unique("stopped"), unique("g")
    produce(kafka_cluster, topic, [f"v{i}".encode() for i in range(4000)])
    sink = StopAt(10)
    group_source(kafka_cluster, topic, group).configure(batch_size=1) > sink
    sink.global_start(runner=runner)
    emitted = len(sink.items)
    assert 10 <= emitted < 4000  # it stopped inside the stream
    assert sum(max(offset, 0) for offset in committed(kafka_cluster, topic, group).values()) == (
        emitted
    )


class Gate(Collect):
    """Collects; before its ``at``-th record waits until the test opens it."""

    def __init__(self, at: int, **options: Any) -> None:
        super().__init__(**options)
        self.at = at
        self.waiting = threading.Event()
        self.opened = threading.Event()

    def process_item(self, item: Any) -> Iterator[Any]:
        if len(self.items) == self.at:
            self.waiting.set()
            assert self.opened.wait(60), "the test never opened the gate"
        yield from super().process_item(item)


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_a_source_held_up_by_back_pressure_still_commits(
    kafka_cluster: str, local_runner: str
) -> None:
    """Acknowledgements store their offsets in the client, which commits them in its own
    thread: a source waiting on a full queue (it does not poll) still has what the
    pipeline finished committed within ``commit_interval``."""
    topic, group = unique("held"), unique("g")
    produce(kafka_cluster, topic, [f"v{i}".encode() for i in range(6000)])
    sink = Gate(5000, wait_for=6000)
    sink.configure(queue_size=64)
    group_source(kafka_cluster, topic, group, commit_interval=1.0) > sink
    run = sink.global_start(block=False, runner=local_runner)
    assert run is not None
    try:
        assert sink.waiting.wait(60)  # 5,000 records done, the source held up
        # the polls (at most 1,000 records each) done before the gate are acknowledged, but
        # the last one's marker may wait in the full queue: at least all but two of them
        assert wait_until(
            lambda: sum(max(o, 0) for o in committed(kafka_cluster, topic, group).values()) >= 3000,
            timeout=30,
        ), committed(kafka_cluster, topic, group)
        assert len(sink.items) == 5000  # still held up: the commits came without a poll
    except BaseException:
        sink.opened.set()
        run.stop(timeout=60)
        raise
    sink.opened.set()
    run_until(sink, run)
    assert fully_committed(kafka_cluster, topic, group)


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_offsets_are_part_of_the_checkpoint_and_a_restart_starts_there(
    kafka_cluster: str, tmp_path: Any, local_runner: str
) -> None:
    """A run restored from its state store reads each partition from the checkpoint's
    offsets, before the group's commits and the start position (here a new group reading
    from the earliest record). (On ray, checkpoints are not taken yet.)"""
    topic, state = unique("checkpointed"), str(tmp_path / "run.state")
    produce(kafka_cluster, topic, [f"a{i}".encode() for i in range(200)])
    first = Collect(wait_for=200)
    group_source(kafka_cluster, topic, unique("g"), name="kafka") > first
    run_until(first, first.global_start(block=False, state=state, runner=local_runner))
    produce(kafka_cluster, topic, [f"b{i}".encode() for i in range(50)])
    second = Collect(wait_for=50)
    source = group_source(kafka_cluster, topic, unique("g"), start="earliest", name="kafka")
    source > second
    run_until(second, second.global_start(block=False, state=state, runner=local_runner))
    assert len(first.items) == 200
    assert sorted(r.value for r in second.items) == sorted(f"b{i}".encode() for i in range(50))
    ends = end_offsets(kafka_cluster, topic)
    assert sorted(source.snapshot_state()) == [
        (topic, p, end) for p, end in sorted(ends.items()) if end > 0
    ]


def test_the_checkpoint_of_a_source_is_its_emitted_offsets() -> None:
    source = KafkaSource("broker:9092", "orders", "g")
    assert source.snapshot_state() == []
    source.restore_state([("orders", 1, 7), ("orders", 0, 3)])
    assert sorted(source.snapshot_state()) == [("orders", 0, 3), ("orders", 1, 7)]


@pytest.mark.parametrize("start", ["earliest", "latest"])
def test_start_positions(kafka_cluster: str, start: str) -> None:
    topic, group = unique("start"), unique("g")
    old = [b"old-0", b"old-1"]
    produce(kafka_cluster, topic, old, keyed=False)
    got = Collect(wait_for=len(old) if start == "earliest" else 1)
    source = group_source(kafka_cluster, topic, group, start=start, poll_interval=0.01)
    source > got
    run = source.global_start(block=False)
    assert run is not None
    if start == "latest":  # only what is written once the source has its partitions
        deadline = time.monotonic() + 30
        while not got.items and time.monotonic() < deadline:
            produce(kafka_cluster, topic, [b"late"], keyed=False)
            got.seen.wait(0.2)
        run_until(got, run)
        assert {r.value for r in got.items} == {b"late"}
        return
    run_until(got, run)
    assert sorted(r.value for r in got.items) == old


class OffsetsForTimes:
    """Stands in for a consumer: answers offsets_for_times from a table (the mock cluster
    does not implement the time lookup: it answers -1, no record at or after the time)."""

    def __init__(self, table: dict[int, int]) -> None:
        self.table = table
        self.asked: list[tuple[int, int]] = []

    def offsets_for_times(self, query: list[Any], timeout: float) -> list[Any]:
        self.asked += [(tp.partition, tp.offset) for tp in query]
        return [
            confluent_kafka.TopicPartition(tp.topic, tp.partition, self.table[tp.partition])
            for tp in query
        ]


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        "2024-05-01T14:00:00+02:00",
    ],
)
def test_a_start_time_is_looked_up_for_each_new_partition(when: Any) -> None:
    source = KafkaSource("127.0.0.1:9", "t", "g", start=when)
    consumer = OffsetsForTimes({0: 42, 1: -1})
    fresh = [confluent_kafka.TopicPartition("t", 0), confluent_kafka.TopicPartition("t", 1)]
    source._positions(consumer, fresh)
    ms = int(dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC).timestamp() * 1000)
    assert consumer.asked == [(0, ms), (1, ms)]
    # the first record at or after the time; none yet: from the end
    assert [tp.offset for tp in fresh] == [42, confluent_kafka.OFFSET_END]


@pytest.mark.parametrize("start", ["2024-05-01T12:00:00", "yesterday", 3])
def test_a_bad_start_is_refused_when_built(start: Any) -> None:
    with pytest.raises(nanostream.GraphError, match="start"):
        KafkaSource("127.0.0.1:9", "t", "g", start=start)


class FakeConsumer:
    """Records the offsets a ledger stores and commits."""

    def __init__(self) -> None:
        self.commits: list[list[tuple[str, int, int]]] = []
        self.stored: list[list[tuple[str, int, int]]] = []

    def store_offsets(self, offsets: list[Any]) -> None:
        self.stored.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def commit(self, offsets: list[Any], asynchronous: bool) -> list[Any]:
        assert asynchronous is False
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])
        return offsets

    def close(self) -> None:
        pass


def ledger_with(consumer: FakeConsumer) -> _Ledger:
    from nanostream.connectors.kafka._client import ClientSettings

    ledger = _Ledger(ClientSettings("KafkaSource", "127.0.0.1:9", None), "KafkaSource")
    ledger.consumer = consumer  # type: ignore[assignment]
    return ledger


def test_the_ledger_commits_each_partition_after_the_last_record_covered() -> None:
    consumer = FakeConsumer()
    ledger = ledger_with(consumer)
    tps = [confluent_kafka.TopicPartition("t", 0), confluent_kafka.TopicPartition("t", 1)]
    ledger.assigned(tps)
    p0, p1 = ledger.part("t", 0), ledger.part("t", 1)
    p0.first, p1.first = 10, 5  # where this run started to read them
    ledger.store([((p0, 10),), ((p0, 11), (p1, 5))])  # acks of offsets 10-11 and 5
    assert consumer.stored == [[("t", 0, 12), ("t", 1, 6)]]  # the client commits them...
    ledger.commit()  # ... or the source, at once
    assert consumer.commits == [[("t", 0, 12), ("t", 1, 6)]]
    ledger.store([((p0, 12),), ((p0, 14),)])  # two acks (13 was skipped), one commit
    ledger.commit()
    assert consumer.commits[-1] == [("t", 0, 15)]
    assert ledger.committed == 6


def test_a_revoked_partition_commits_nothing_more() -> None:
    consumer = FakeConsumer()
    ledger = ledger_with(consumer)
    tp = confluent_kafka.TopicPartition("t", 0)
    ledger.assigned([tp])
    before = ledger.part("t", 0)
    ledger.store([((before, 0),)])
    ledger.commit()
    ledger.revoked([tp])  # records 1 and 2 are still in the pipeline
    ledger.assigned([tp])  # and the partition comes back, from its committed offset 1
    after = ledger.part("t", 0)
    ledger.store([((before, 1),), ((before, 2),)])  # late acknowledgements of old records
    ledger.commit()
    assert consumer.commits == [[("t", 0, 1)]]  # ... store and commit nothing
    assert consumer.stored == [[("t", 0, 1)]]
    ledger.store([((after, 1),)])
    ledger.commit()
    assert consumer.commits[-1] == [("t", 0, 2)]
    assert isinstance(after, _Partition) and after is not before


def test_a_poll_ack_spanning_partitions_commits_only_those_still_owned() -> None:
    """One ack covers a poll's records of several partitions; a partition revoked while
    they were in flight commits nothing of them (its new owner reads them again), the
    others commit their last offset, and a late ack of the revoked one never commits
    over what its new owner committed."""
    consumer = FakeConsumer()
    ledger = ledger_with(consumer)
    tps = [confluent_kafka.TopicPartition("t", 0), confluent_kafka.TopicPartition("t", 1)]
    ledger.assigned(tps)
    p0, p1 = ledger.part("t", 0), ledger.part("t", 1)
    ledger.store([((p0, 3), (p1, 7))])  # the first poll, done
    ledger.commit()
    ledger.revoked(tps[:1])  # the second poll is in flight when partition 0 is revoked
    ledger.store([((p0, 9), (p1, 12))])
    ledger.commit()
    assert consumer.commits == [[("t", 0, 4), ("t", 1, 8)], [("t", 1, 13)]]
    assert consumer.stored == consumer.commits


def test_the_clients_own_commits_are_counted_without_taking_the_lock() -> None:
    """The client calls ``on_commit`` in the source's thread, inside ``consume()``, while
    another thread may hold the ledger's lock and wait in the client (``store_offsets``
    waits for such a callback): the callback only notes what was committed."""
    consumer = FakeConsumer()
    ledger = ledger_with(consumer)
    ledger.assigned([confluent_kafka.TopicPartition("t", 0)])
    part = ledger.part("t", 0)
    part.first = 0
    ledger.store([((part, 9),)])
    with ledger.lock:  # held by another thread (here: this one; a lock taken would hang)
        ledger.on_commit(None, [confluent_kafka.TopicPartition("t", 0, 10)])
    assert ledger.committed == 10
    ledger.commit()  # what the client committed is not committed again
    assert consumer.commits == []


def poll_records(*where: tuple[int, int]) -> list[KafkaRecord]:
    return [KafkaRecord("t", p, offset, None, b"v", (), None) for p, offset in where]


def test_a_poll_on_its_way_counts_only_the_records_sent() -> None:
    """A checkpoint's barrier may come after any record of a poll: the source's state
    then has the offsets of the records sent, and the poll's ack (a stop inside it)
    covers those."""
    ledger = ledger_with(FakeConsumer())
    ledger.assigned([confluent_kafka.TopicPartition("t", p) for p in (0, 1)])
    records = poll_records((0, 5), (1, 2), (0, 6), (1, 3))
    emitting = _Emitting(records, ledger)
    source = KafkaSource("127.0.0.1:9", "t", "g")
    source.restore_state([("t", 0, 5), ("t", 1, 2)])
    source._emitting = emitting
    assert sorted(source.snapshot_state()) == [("t", 0, 5), ("t", 1, 2)]
    sent = [next(emitting.records) for _ in range(3)]
    assert sent == records[:3]
    assert sorted(source.snapshot_state()) == [("t", 0, 7), ("t", 1, 3)]
    emitted: dict[tuple[str, int], int] = {}
    cover = emitting.cover(emitted)
    assert [(part.key, offset) for part, offset in cover] == [(("t", 0), 6), (("t", 1), 2)]
    assert emitted == {("t", 0): 7, ("t", 1): 3}
    assert [part.first for part, _ in cover] == [5, 2]


@pytest.mark.parametrize(
    ("topics", "key_format", "value_format"),
    [("one", "bytes", "bytes"), ("^o.*", "str", "json"), (["one", "two"], "bytes", "str")],
)
def test_records_are_built_from_a_poll_as_from_each_message(
    kafka_cluster: str, topics: Any, key_format: str, value_format: str
) -> None:
    """The records of a poll, made column by column, are what each message says."""
    one = unique("one")
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_cluster, "log_level": 0})
    for i in range(20):
        producer.produce(
            one,
            json.dumps({"i": i}).encode(),
            key=None if i % 3 == 0 else f"k{i}".encode(),
            headers=None if i % 2 else [("h", b"%d" % i), ("h", None)],
            timestamp=1_700_000_000_000 + i if i % 4 else 0,
        )
    assert producer.flush(30) == 0
    messages = read_all(kafka_cluster, one, 20)
    source = KafkaSource(
        "127.0.0.1:9",
        [t.replace("one", one) for t in topics]
        if isinstance(topics, list)
        else topics.replace("one", one),
        "g",
        key_format=key_format,
        value_format=value_format,
    )
    only = source.topics[0] if len(source.topics) == 1 else None
    build = _RecordBuilder(
        source._decode_key, source._decode_value, None if only is None or "^" in only else only
    )
    expected = [
        KafkaRecord(
            m.topic(),
            m.partition(),
            m.offset(),
            source._decode_key(m.key()),
            source._decode_value(m.value()),
            tuple(m.headers() or ()),
            m.timestamp()[1] if m.timestamp()[0] else None,
        )
        for m in messages
    ]
    assert build(messages) == expected
    assert all(type(record) is KafkaRecord for record in build(messages))
    assert build.first_error(messages) is None
    # The last offset of each partition among them (what the poll's ack commits), of
    # several partitions and of one
    assert build.last == {(m.topic(), m.partition()): m.offset() for m in messages}
    first = [m for m in messages if m.partition() == messages[0].partition()]
    assert build(first) == [r for r in expected if r.partition == messages[0].partition()]
    assert build.last == {(first[-1].topic(), first[-1].partition()): first[-1].offset()}
    if fast.SPEEDUPS and value_format != "json":  # records of bytes, text and numbers
        assert not any(map(gc.is_tracked, build(messages)))  # as plain tuples of them


def test_a_poll_is_cut_before_a_record_that_cannot_be_decoded() -> None:
    class Message:
        def __init__(self, value: bytes) -> None:
            self._value = value

        def key(self) -> None:
            return None

        def value(self) -> bytes:
            return self._value

    build = _RecordBuilder(decoder("s", "key_format", "bytes"), json.loads, "t")
    at, exc = build.failure([Message(b"1"), Message(b"2"), Message(b"{"), Message(b"3")])
    assert at == 2 and isinstance(exc, ValueError)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"key": lambda item: b"k"},
        {"value_format": lambda value: b"x"},
        {"headers": lambda item: {"h": "1"}},
    ],
)
def test_the_sink_copies_a_record_as_its_encode_says(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sink's per-record path (a straight copy of a record of bytes when it takes
    nothing from its items) writes what :meth:`KafkaSink.encode` describes, for records
    of bytes, of text, without a key, and for other items."""

    class Producer:
        """Records what is produced; every record is delivered at the next poll."""

        def __init__(self, config: dict[str, Any]) -> None:
            self.reports: list[Any] = []

        def produce(self, *args: Any, **kwargs: Any) -> None:
            call = produced(args, kwargs)
            partition = call["partition"]
            written.append(
                (
                    call["topic"],
                    call["key"],
                    call["value"],
                    call["headers"],
                    None if partition == -1 else partition,
                )
            )
            self.reports.append(call["callback"] or call["on_delivery"])

        def poll(self, timeout: float) -> int:
            reports, self.reports = self.reports, []
            for report in reports:
                report(None, None)
            return len(reports)

        flush = poll

    written: list[Any] = []
    monkeypatch.setattr(confluent_kafka, "Producer", Producer)
    sink = KafkaSink("broker:9092", "copy", **options)
    items = [
        KafkaRecord("t", 0, 1, b"k", b"v", (("trace", b"x"), ("trace", None)), 5),
        KafkaRecord("t", 0, 2, None, b"v", (), None),
        KafkaRecord("t", 0, 3, "text-key", "text", (), None),
        KafkaRecord("t", 0, 4, b"k", None, (), None),
        b"plain bytes",
    ]
    sink.as_function()(iter(items), lambda item: None)
    assert written == [sink.encode(item) for item in items]
    assert sink.delivered == len(items)
    assert sink._copies_records() == (not options)  # the straight copy only without options


def client_produce(  # the arguments of the client's Producer.produce, in their order
    topic: str,
    value: Any = None,
    key: Any = None,
    partition: int = -1,
    callback: Any = None,
    on_delivery: Any = None,
    timestamp: int = 0,
    headers: Any = None,
) -> None:
    """Stands for confluent_kafka.Producer.produce (a builtin without a signature)."""


def produced(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of one call of the client's ``produce``, by name, defaults filled in."""
    call = inspect.signature(client_produce).bind(*args, **kwargs)
    call.apply_defaults()
    return dict(call.arguments)


class ReportingProducer:
    """A stand-in for the client's producer: records what is produced and reports each
    record at the next poll, as delivered unless its value is in ``failing``; the first
    ``full`` produce calls find the queue full (``BufferError``)."""

    failing: frozenset[bytes] = frozenset()
    full = 0
    positional = 0  # calls with every argument given by position (a slice copied in C)
    written: list[Any]

    def __init__(self, config: dict[str, Any]) -> None:
        self.reports: list[Any] = []

    def produce(self, *args: Any, **kwargs: Any) -> None:
        # (the client's signature, whose arguments the sink may give by position)
        call = produced(args, kwargs)
        if len(args) == 8:
            ReportingProducer.positional += 1
        if ReportingProducer.full:
            ReportingProducer.full -= 1
            raise BufferError("queue full")
        topic, key, value = call["topic"], call["key"], call["value"]
        self.written.append((topic, key, value, call["headers"]))
        self.reports.append((call["callback"] or call["on_delivery"], topic, key, value))

    def poll(self, timeout: float) -> int:
        reports, self.reports = self.reports, []
        for report, topic, key, value in reports:
            msg = SimpleNamespace(
                topic=lambda t=topic: t, key=lambda k=key: k, value=lambda v=value: v
            )
            failed = value in self.failing
            report(
                SimpleNamespace(str=lambda: "Broker: message too large") if failed else None, msg
            )
        return len(reports)

    flush = poll

    def purge(self) -> None:
        self.reports = []


@pytest.fixture
def reporting_producer(monkeypatch: pytest.MonkeyPatch) -> type[ReportingProducer]:
    monkeypatch.setattr(confluent_kafka, "Producer", ReportingProducer)
    monkeypatch.setattr(ReportingProducer, "written", [], raising=False)
    monkeypatch.setattr(ReportingProducer, "positional", 0)
    return ReportingProducer


def numbered_records(n: int) -> list[KafkaRecord]:
    return [
        KafkaRecord("t", 0, i, b"k%d" % i, b"v%d" % i, (("i", b"%d" % i),), None) for i in range(n)
    ]


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_a_failed_delivery_of_a_copied_record_fails_the_run(
    reporting_producer: Any, monkeypatch: pytest.MonkeyPatch, local_runner: str
) -> None:
    """Records copied a slice at a time (the sink's loop without a policy per item): a
    record not delivered is still matched to its item, and fails the run."""
    monkeypatch.setattr(reporting_producer, "failing", frozenset({b"v1500"}))
    sink = KafkaSink("broker:9092", "copy", name="publish")
    nanostream.from_iterable(numbered_records(3000)) > sink
    with pytest.raises(nanostream.NodeFailed, match="publish") as info:
        sink.global_start(runner=local_runner)
    assert isinstance(info.value.__cause__, ConnectorError)
    assert "not delivered: Broker: message too large" in str(info.value.__cause__)


@pytest.mark.parametrize("local_runner", ["threads", "cooperative"])
def test_a_failed_delivery_of_a_copied_record_goes_to_the_errors_port(
    reporting_producer: Any, monkeypatch: pytest.MonkeyPatch, local_runner: str
) -> None:
    monkeypatch.setattr(reporting_producer, "failing", frozenset({b"v7", b"v1500"}))
    records = numbered_records(3000)
    sink = KafkaSink("broker:9092", "copy", on_error="skip")
    dead = Collect()
    nanostream.from_iterable(records) > sink
    sink.errors > dead
    sink.global_start(runner=local_runner)
    assert [r.item for r in dead.items] == [records[7], records[1500]]
    assert sink.delivered == 3000 - 2


def test_a_full_queue_while_copying_a_slice_waits_and_writes_each_record_once(
    reporting_producer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporting_producer, "full", 3)
    records = numbered_records(2500)
    sink = KafkaSink("broker:9092", "copy")
    nanostream.from_iterable(records) > sink
    sink.global_start()
    assert reporting_producer.written == [sink.encode(r)[:4] for r in records]
    assert sink.delivered == 2500
    assert reporting_producer.positional > 2000  # the slices were copied in one loop each


# ----------------------------------------------------------------------------- rebalance
def test_a_rebalance_between_two_consumers_of_one_group_loses_nothing(
    kafka_cluster: str, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    if runner == "ray":
        pytest.skip("the test reads its sinks while they run (on ray they are copies)")
    topic, group = unique("rebalance"), unique("g")
    values = [f"v{i}".encode() for i in range(3000)]
    produce(kafka_cluster, topic, values)

    first, second = Collect(), Collect(wait_for=1)
    a = group_source(kafka_cluster, topic, group, name="a")
    a > nanostream.nodes.Throttle(500) > first  # slow: still reading when b joins
    run_a = first.global_start(block=False, runner=runner)
    b = group_source(kafka_cluster, topic, group, name="b")
    b > second
    run_b = None
    try:
        assert first.seen.wait(30) or first.items
        run_b = second.global_start(block=False, runner=runner)
        assert second.seen.wait(60), "b got no partition"  # the group was rebalanced
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both drained, all committed
            if fully_committed(kafka_cluster, topic, group):
                break
            second.seen.clear()
            second.seen.wait(0.5)
    finally:
        for run in (run_a, run_b):
            if run is not None:
                run.stop(timeout=60)
    assert first.items and second.items  # each consumer had some of the partitions
    seen = {r.value for r in first.items} | {r.value for r in second.items}
    assert seen == set(values)  # nothing lost
    assert committed(kafka_cluster, topic, group) == end_offsets(kafka_cluster, topic)


# ----------------------------------------------------------------------------- kill -9
CHILD = r"""
import sys
import nanostream
from nanostream.nodes import Throttle
from nanostream.nodes.kafka import KafkaSink, KafkaSource

bootstrap, topic, out, group = sys.argv[1:5]
source = KafkaSource(
    bootstrap, topic, group, commit_interval=0.05,
    config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
)
# slow enough that each kill comes mid-stream, with records in flight
sink = KafkaSink(bootstrap, out, config={"linger.ms": 20})
source > Throttle(3000, burst=100) > sink
run = source.global_start(block=False)
print("started", flush=True)
run.wait_interruptibly()
"""

KILLS = 3
KAFKA_PRELOAD = ("nanostream.nodes.kafka", "confluent_kafka")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_kill_9_of_a_consumer_and_a_restart_lose_nothing(
    kafka_cluster: str, tmp_path: Any, kill_child: Any
) -> None:
    import random
    import signal

    topic, out, group = unique("crash-in"), unique("crash-out"), unique("g")
    values = [f"v{i}".encode() for i in range(12_000)]
    produce(kafka_cluster, topic, values)
    ends = end_offsets(kafka_cluster, topic)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    # each start forks an interpreter that has imported nanostream and the client once
    child = kill_child(script, kafka_cluster, topic, out, group, preload=KAFKA_PRELOAD)
    start = child.start

    def written() -> int:
        return sum(end_offsets(kafka_cluster, out).values())

    def committed_total() -> int:
        return sum(max(offset, 0) for offset in committed(kafka_cluster, topic, group).values())

    by_offset = {
        (m.partition(), m.offset()): m.value() for m in read_all(kafka_cluster, topic, len(values))
    }
    mid_stream = 0
    for _ in range(KILLS):
        before = committed_total()
        proc = start()
        try:  # a random moment once the child has committed something new (an ack covers
            # a whole poll: waiting a fixed time could kill it before its first commit)
            assert wait_until(lambda: committed_total() > before), "no commit"  # noqa: B023
            threading.Event().wait(random.uniform(0.0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        # post mortem: every record whose offset is committed has been written out
        done = committed(kafka_cluster, topic, group)
        out_values = {m.value() for m in read_all(kafka_cluster, out, written())}
        for (partition, offset), value in by_offset.items():
            if offset < done[partition]:
                assert value in out_values, "committed before it was written"
        if 0 < sum(max(offset, 0) for offset in done.values()) < sum(ends.values()):
            mid_stream += 1  # some records committed, others not
    assert mid_stream, "no kill came mid-stream"

    proc = start()
    try:  # the restart reads again from the last commit, to the end
        assert wait_until(lambda: committed(kafka_cluster, topic, group) == ends, 120)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    out_values = [m.value() for m in read_all(kafka_cluster, out, written())]
    assert set(out_values) == set(values)  # 0 lost (at-least-once: some twice)


# ----------------------------------------------------------------------------- sink
def test_a_failed_delivery_fails_the_run_naming_the_node(kafka_cluster: str, runner: str) -> None:
    sink = KafkaSink(
        kafka_cluster,
        unique("missing"),  # does not exist, and the producer may not create it
        config={"allow.auto.create.topics": False, "topic.metadata.propagation.max.ms": 200},
        timeout=5,
        name="publish",
    )
    nanostream.from_iterable([{"n": 1}]) > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    with pytest.raises(nanostream.NodeFailed, match="publish") as info:
        run.wait(60)
    assert isinstance(info.value.__cause__, ConnectorError)
    assert "not delivered" in str(info.value.__cause__)
    assert "Unknown topic" in str(info.value.__cause__)


def test_failed_deliveries_go_to_dead_letters_and_the_rest_is_delivered(
    kafka_cluster: str, runner: str
) -> None:
    good, missing_topic = unique("good"), unique("missing")
    items = [{"n": i, "to": missing_topic if i % 5 == 0 else good} for i in range(50)]
    items.append({"n": 50, "to": good, "blob": "x" * 2_000_000})  # larger than allowed
    sink = KafkaSink(
        kafka_cluster,
        lambda item: item["to"],
        key="n",
        config={"allow.auto.create.topics": False, "topic.metadata.propagation.max.ms": 200},
        timeout=5,
        on_error="skip",
    )
    dead = Collect()
    nanostream.from_iterable(items) > sink
    sink.errors > dead
    # the good topic exists: the producer may not create it
    produce(kafka_cluster, good, [b"first"], keyed=False)
    sink.global_start(runner=runner)
    failed = sorted(r.item["n"] for r in dead.items)
    assert failed == [i for i in range(51) if i % 5 == 0 or i == 50]
    assert all(r.node == "KafkaSink" for r in dead.items)
    assert any("too large" in r.message for r in dead.items)
    assert any("Unknown topic" in r.message for r in dead.items)
    delivered = read_all(kafka_cluster, good, 1 + 51 - len(failed))
    assert sorted(m.value() for m in delivered if m.value() != b"first") == sorted(
        json.dumps(item).encode() for item in items if item["n"] not in failed
    )


class AckProbe(nanostream.NanoNode):
    """A source of ``n`` acknowledged items; each acknowledgement notes how many records
    the topic holds at that moment."""

    def __init__(self, n: int, bootstrap: str, topic: str) -> None:
        super().__init__()
        self.n, self.bootstrap, self.topic = n, bootstrap, topic
        self.seen_at_ack: list[tuple[int, int]] = []

    def generator(self) -> Iterator[Any]:
        for i in range(self.n):
            yield nanostream.Acked(i, lambda i=i: self.seen_at_ack.append((i, self.count())))

    def count(self) -> int:
        return sum(end_offsets(self.bootstrap, self.topic).values())


def test_the_sink_passes_acknowledgements_on_only_after_delivery(
    kafka_cluster: str, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    if runner == "ray":
        pytest.skip("the acknowledgements are noted on the source object, a copy on ray")
    topic = unique("acks")
    produce(kafka_cluster, topic, [b"first"], keyed=False)  # the topic exists
    source = AckProbe(20, kafka_cluster, topic)
    source > KafkaSink(kafka_cluster, topic, config={"linger.ms": 50})
    source.global_start(runner=runner)
    assert [i for i, _ in source.seen_at_ack] == list(range(20))
    assert all(count >= 1 + i + 1 for i, count in source.seen_at_ack)


def test_serialisers_and_deserialisers_are_hooks(kafka_cluster: str) -> None:
    topic, group = unique("hooks"), unique("g")

    def encode(value: Any) -> bytes:  # a stand-in for an Avro or Protobuf serialiser
        return b"\x00" + json.dumps(value, sort_keys=True).encode()

    def decode(data: bytes) -> Any:
        assert data[:1] == b"\x00"
        return json.loads(data[1:])

    items = [{"id": i, "tags": ["a"] * i} for i in range(10)]
    sink = KafkaSink(kafka_cluster, topic, key=lambda item: item["id"], value_format=encode)
    nanostream.from_iterable(items) > sink
    sink.global_start()
    got = Collect(wait_for=10)
    group_source(kafka_cluster, topic, group, key_format="json", value_format=decode) > got
    run_until(got, got.global_start(block=False))
    assert sorted((r.key, r.value["id"]) for r in got.items) == [(i, i) for i in range(10)]
    assert sorted(got.items, key=lambda r: r.key)[3].value == items[3]


def test_an_undecodable_record_goes_to_the_errors_port_and_is_committed(
    kafka_cluster: str,
) -> None:
    topic, group = unique("bad-json"), unique("g")
    produce(kafka_cluster, topic, [b'{"n": 1}', b"not json", b'{"n": 3}'], keyed=False)
    got, dead = Collect(wait_for=2), Collect()
    source = group_source(kafka_cluster, topic, group, value_format="json", on_error="skip")
    source > got
    source.errors > dead
    run_until(got, got.global_start(block=False))
    assert sorted(r.value["n"] for r in got.items) == [1, 3]
    assert len(dead.items) == 1
    assert "could not decode the record at offset" in dead.items[0].message
    assert fully_committed(kafka_cluster, topic, group)


def test_a_kafka_record_is_written_as_it_was_read(kafka_cluster: str) -> None:
    topic, copy = unique("from"), unique("to")
    produce(kafka_cluster, topic, [b"a", b"b", b"c"])
    mirror = group_source(kafka_cluster, topic, unique("g"))
    sink = KafkaSink(kafka_cluster, copy)
    mirror > sink
    run = mirror.global_start(block=False)
    assert run is not None
    try:
        assert wait_until(lambda: sum(end_offsets(kafka_cluster, copy).values()) == 3)
    finally:
        run.stop(timeout=60)
    original = {(m.key(), m.value()) for m in read_all(kafka_cluster, topic, 3)}
    assert {(m.key(), m.value()) for m in read_all(kafka_cluster, copy, 3)} == original


# ----------------------------------------------------------------------------- secrets
SECRET_CONFIG = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "PLAIN",
    "sasl.username": "app",
    "sasl.password": "pw-7f3a9c21-kafka",
    "ssl.key.password": "kp-19ab77e0",
    "ssl.key.pem": "-----BEGIN PRIVATE KEY-----MIIEvQIBADAN-----END PRIVATE KEY-----",
}
SECRETS = [v for k, v in SECRET_CONFIG.items() if k.startswith(("sasl.password", "ssl.key"))]


@pytest.mark.parametrize("kind", ["source", "sink"])
def test_secrets_are_masked_in_reprs_and_pipeline_files(kind: str) -> None:
    node: nanostream.NanoNode
    if kind == "source":
        node = KafkaSource("broker:9092", "orders", "g", config=SECRET_CONFIG, name="node")
    else:
        node = KafkaSink("broker:9092", "orders", config=SECRET_CONFIG, name="node")
    tail = Collect(name="tail")
    if kind == "source":
        node > tail
    else:
        nanostream.from_iterable([], name="head") > node
    text = repr(node) + nanostream.to_yaml(node) + repr(vars(node))
    assert not [s for s in SECRETS if s in text]
    assert "sasl.password: '***'" in nanostream.to_yaml(node)
    assert "sasl.username: app" in nanostream.to_yaml(node)


def test_settings_that_are_no_secrets_are_shown_and_not_masked_elsewhere() -> None:
    source = KafkaSource("broker:9092", "orders", "g", config={"session.timeout.ms": 7123})
    assert source.config == {"session.timeout.ms": 7123}
    assert redact("took 7123 ms") == "took 7123 ms"


def test_a_masked_secret_read_back_is_refused() -> None:
    with pytest.raises(nanostream.GraphError, match=r"sasl.password.*real value"):
        KafkaSource("broker:9092", "orders", "g", config={"sasl.password": "***"})


def test_secrets_never_reach_errors_or_logs(
    kafka_cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The mock cluster speaks no SASL: the client fails to authenticate, and says so.
    caplog.set_level(logging.DEBUG)
    sink = KafkaSink(kafka_cluster, "t", config={**SECRET_CONFIG, "ssl.key.pem": None}, timeout=2)
    nanostream.from_iterable([b"x"]) > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start()
    text = str(info.value) + repr(info.value.__cause__) + caplog.text
    assert "not delivered" in text or "could not" in text
    assert not [s for s in SECRETS if s in text]


# ----------------------------------------------------------------------------- building
def test_missing_confluent_kafka_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[kafka\]"):
        KafkaSink("broker:9092", "t")
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[kafka\]"):
        KafkaSource("broker:9092", "t", "g")


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: KafkaSource("b:1", "t", "g", config={"group.id": "x"}), "group="),
        (lambda: KafkaSource("b:1", "t", "g", config={"enable.auto.commit": True}), "acknowl"),
        (lambda: KafkaSource("b:1", [], "g"), "topics"),
        (lambda: KafkaSource("b:1", "t", "g", value_format="xml"), "value_format"),
        (lambda: KafkaSink("b:1", "t", config={"enable.idempotence": False}), "idempotent="),
        (lambda: KafkaSink("b:1", "t", partitioner="java"), "murmur2_random"),
        (lambda: KafkaSink("b:1", "t", retries=0).validate(), "retries >= 1 or idempotent=False"),
        (lambda: KafkaSink("b:1", "t", key=3), "key must be a field name"),
        (lambda: KafkaSink("b:1", "t", on_error="retry"), "retries by itself"),
        (lambda: KafkaSink("b:1", "t", config={"bootstrap.servers": "x"}), "bootstrap_servers="),
    ],
)
def test_options_are_checked_when_the_node_is_built(build: Any, says: str) -> None:
    with pytest.raises(nanostream.GraphError, match=says):
        build()


def test_the_sink_takes_the_producer_options_it_names() -> None:
    sink = KafkaSink("b:1", "t", partitioner="murmur2_random", idempotent=False)
    sink.configure(retries=7, backoff=0.25, timeout=30)
    config = sink._client_config([])
    assert config["partitioner"] == "murmur2_random"
    assert config["enable.idempotence"] is False
    assert (config["retries"], config["retry.backoff.ms"]) == (7, 250)
    assert config["delivery.timeout.ms"] == 30_000


def test_both_nodes_are_usable_from_a_pipeline_file(kafka_cluster: str) -> None:
    topic = unique("yaml")
    text = f"""
nodes:
  numbers: {{class: IterableSource, args: {{iterable: [1, 2, 3]}}}}
  publish:
    class: KafkaSink
    args: {{bootstrap_servers: "{kafka_cluster}", topic: {topic}, value_format: json}}
chain: [numbers, publish]
"""
    nanostream.load_pipeline(io.StringIO(text)).start().wait(60)
    assert sorted(m.value() for m in read_all(kafka_cluster, topic, 3)) == [b"1", b"2", b"3"]
    text = f"""
nodes:
  read:
    class: nanostream.nodes.kafka:KafkaSource
    args:
      bootstrap_servers: "{kafka_cluster}"
      topics: [{topic}]
      group: yaml-group
      value_format: json
      config: {{session.timeout.ms: 6000, heartbeat.interval.ms: 500}}
  out: {{class: nanostream.testing:Collect, args: {{wait_for: 3}}}}
chain: [read, out]
"""
    pipeline = nanostream.load_pipeline(io.StringIO(text))
    out = next(n for n in pipeline.nodes if n.name == "out")
    assert isinstance(out, Collect)
    run_until(out, pipeline.start())
    assert sorted(r.value for r in out.items) == [1, 2, 3]


def test_a_producer_error_after_a_full_queue_is_a_connector_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[str] = []

    class FullThenBroken(confluent_kafka.Producer):  # type: ignore[misc]
        def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
            attempts.append(topic)
            if len(attempts) == 1:
                raise BufferError("queue full")
            raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(-195, "broken"))

    monkeypatch.setattr(confluent_kafka, "Producer", FullThenBroken)
    sink = KafkaSink("127.0.0.1:9", "t", timeout=1)
    nanostream.from_iterable([{"n": 1}]) > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start()
    assert attempts == ["t", "t"]  # the retry after the full queue failed
    assert isinstance(info.value.__cause__, ConnectorError)
    assert "could not produce to 't'" in str(info.value)


def test_records_of_several_topics_and_partitions_in_one_poll() -> None:
    """A pattern's poll mixes topics and partitions: ``last`` holds the last offset of
    each (topic, partition); no timestamp (-1) is None; headers None and [] are ()."""
    Message = confluent_kafka.Message
    messages = [
        Message(topic=t, partition=p, offset=o, key=None, value=b"v", headers=h, timestamp=s)
        for t, p, o, h, s in [
            ("a", 0, 5, None, (0, -1)),
            ("b", 0, 9, [], (1, 7)),
            ("a", 1, 2, [("h", b"1")], (1, 8)),
            ("a", 0, 6, None, (1, 9)),
            ("b", 0, 10, [], (0, -1)),
        ]
    ]
    build = _RecordBuilder(decoder("s", "key_format", "bytes"), decoder("s", "value_format", "str"))
    records = build(messages)
    assert [(r.topic, r.partition, r.offset, r.headers, r.timestamp) for r in records] == [
        ("a", 0, 5, (), None),
        ("b", 0, 9, (), 7),
        ("a", 1, 2, (("h", b"1"),), 8),
        ("a", 0, 6, (), 9),
        ("b", 0, 10, (), None),
    ]
    assert build.last == {("a", 0): 6, ("b", 0): 10, ("a", 1): 2}
    failing = _RecordBuilder(decoder("s", "key_format", "bytes"), json.loads)
    with pytest.raises(ValueError):  # the whole call; failure() finds which
        failing(messages)
    assert failing.failure(messages)[0] == 0
