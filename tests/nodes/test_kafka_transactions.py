"""``KafkaSink(exactly_once=True)``: records written per checkpoint in Kafka transactions,
against librdkafka's mock cluster (and, for isolation, a real broker when one is given)."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

import nanostream  # noqa: E402
from nanostream.connectors.kafka._client import ClientSettings  # noqa: E402
from nanostream.connectors.kafka._transactions import (  # noqa: E402
    ExactlyOnce,
    Record,
    TransactionalWriter,
    default_transactional_id,
)
from nanostream.nodes.kafka import ConnectorError, KafkaSink, KafkaSource  # noqa: E402
from support import Numbers, Total, wait_until  # noqa: E402


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def read_committed(bootstrap: str, topic: str, timeout: float = 30) -> list[Any]:
    """Every record of ``topic`` a ``read_committed`` reader sees, to the end of each partition."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            return []
        parts = [
            confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
            for p in meta.partitions
        ]
        consumer.assign(parts)
        got: list[Any] = []
        ended: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ended) < len(parts):
            assert time.monotonic() < deadline, "the partitions did not end"
            for msg in consumer.consume(10_000, 0.2):
                error = msg.error()
                if error is None:
                    got.append(msg)
                elif error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    ended.add(msg.partition())
                else:
                    raise confluent_kafka.KafkaException(error)
        return got
    finally:
        consumer.close()


def numbers(bootstrap: str, topic: str) -> list[int]:
    return sorted(json.loads(m.value()) for m in read_committed(bootstrap, topic))


# ----------------------------------------------------------------------------- round trips
def test_kafka_to_kafka_with_state_copies_every_record_once(
    kafka_cluster: str, tmp_path: Path
) -> None:
    """``KafkaSource > KafkaSink(exactly_once=True)``: the source's offsets and the
    sink's records are in the same checkpoints; a second run copies only what is new."""
    source_topic, topic = unique("eo-in"), unique("eo-out")
    markers, store = unique("markers"), str(tmp_path / "run.state")
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_cluster, "log_level": 0})

    def produce(values: range) -> None:
        for n in values:
            producer.produce(source_topic, str(n).encode(), key=str(n % 5).encode())
        assert producer.flush(30) == 0

    def copy_until(expected: int) -> KafkaSource:
        source = KafkaSource(
            kafka_cluster,
            source_topic,
            unique("g"),  # a new group: only the checkpoint says where to go on
            start="earliest",
            config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
            name="in",
        )
        sink = KafkaSink(kafka_cluster, topic, exactly_once=True, marker_topic=markers, name="out")
        source > sink
        run = sink.global_start(block=False, state=store, checkpoint_interval=0.1)
        assert run is not None
        try:
            deadline = time.monotonic() + 60
            while len(read_committed(kafka_cluster, topic)) < expected:
                assert time.monotonic() < deadline, "not copied"
                threading.Event().wait(0.1)
        finally:
            run.stop(timeout=60)
        return source

    produce(range(1, 201))
    assert copy_until(200).committed == 200  # every record acknowledged, so committed
    produce(range(201, 251))
    assert copy_until(250).committed == 50
    records = read_committed(kafka_cluster, topic)
    assert sorted(int(m.value()) for m in records) == list(range(1, 251))
    assert all(m.key() == str(int(m.value()) % 5).encode() for m in records)


def test_a_run_with_state_writes_every_record_once(
    kafka_cluster: str, tmp_path: Path, runner: str
) -> None:
    """Two runs, the second resuming from the first's store: each number once, with its
    key and headers, and the sink counts what its transactions wrote."""
    topic, markers, store = unique("eo"), unique("markers"), str(tmp_path / "run.state")

    def run(stop: int) -> KafkaSink:
        sink = KafkaSink(
            kafka_cluster,
            topic,
            key=lambda n: str(n % 3),
            headers=lambda n: {"run": str(stop)},
            exactly_once=True,
            marker_topic=markers,
            name="out",
        )
        Numbers(stop, name="numbers") > Total(name="count") > sink
        sink.global_start(state=store, runner=runner, checkpoint_items=7)
        return sink

    assert run(30).delivered == 30
    assert run(50).delivered == 20
    records = read_committed(kafka_cluster, topic)
    assert sorted(json.loads(m.value()) for m in records) == list(range(1, 51))
    assert {m.key() for m in records} == {b"0", b"1", b"2"}
    assert {dict(m.headers())["run"] for m in records} == {b"30", b"50"}


def counting_run(
    bootstrap: str, topic: str, markers: str, store: str, stop: int, fail_at: int | None = None
) -> KafkaSink:
    sink = KafkaSink(bootstrap, topic, exactly_once=True, marker_topic=markers, name="out")
    Numbers(stop, name="numbers", fail_at=fail_at) > Total(name="count") > sink
    sink.global_start(state=store, checkpoint_items=5, checkpoint_unaligned=False)
    return sink


def test_a_failed_run_leaves_only_its_committed_checkpoints_and_a_restart_adds_the_rest(
    kafka_cluster: str, tmp_path: Path
) -> None:
    topic, markers, store = unique("eo"), unique("markers"), str(tmp_path / "run.state")
    with pytest.raises(nanostream.NodeFailed, match="source broke"):
        counting_run(kafka_cluster, topic, markers, store, 40, fail_at=23)
    written = numbers(kafka_cluster, topic)
    assert written == list(range(1, len(written) + 1)) and len(written) < 23
    counting_run(kafka_cluster, topic, markers, store, 40)
    assert numbers(kafka_cluster, topic) == list(range(1, 41))


def test_a_crash_between_the_checkpoint_and_its_transaction_writes_it_at_the_restart(
    kafka_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state store has committed a checkpoint, and the run dies before the sink's
    transaction: the restart finds no marker of it and writes its records, once."""
    topic, markers, store = unique("eo"), unique("markers"), str(tmp_path / "run.state")
    write = TransactionalWriter.write
    calls: list[int] = []

    def dies_at_the_third(self: TransactionalWriter, staged: Any) -> int:
        calls.append(staged[-1][0])
        if len(calls) == 3:
            raise RuntimeError("the process died here")
        return write(self, staged)

    monkeypatch.setattr(TransactionalWriter, "write", dies_at_the_third)
    with pytest.raises(nanostream.NodeFailed, match="the process died here"):
        counting_run(kafka_cluster, topic, markers, store, 30)
    assert numbers(kafka_cluster, topic) == list(range(1, 11))  # two checkpoints of five
    monkeypatch.setattr(TransactionalWriter, "write", write)
    counting_run(kafka_cluster, topic, markers, store, 30)
    assert numbers(kafka_cluster, topic) == list(range(1, 31))


def test_a_restart_after_the_transaction_does_not_write_it_again(
    kafka_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction of the last checkpoint was committed, the state store's next
    checkpoint was not: the restored checkpoint still holds those records, and its marker
    says they are written."""
    topic, markers, store = unique("eo"), unique("markers"), str(tmp_path / "run.state")
    write = TransactionalWriter.write

    def dies_after_the_second(self: TransactionalWriter, staged: Any) -> int:
        done = write(self, staged)
        if staged[-1][0] == 2:
            raise RuntimeError("the process died here")
        return done

    monkeypatch.setattr(TransactionalWriter, "write", dies_after_the_second)
    with pytest.raises(nanostream.NodeFailed, match="the process died here"):
        counting_run(kafka_cluster, topic, markers, store, 30)
    assert numbers(kafka_cluster, topic) == list(range(1, 11))
    monkeypatch.setattr(TransactionalWriter, "write", write)
    counting_run(kafka_cluster, topic, markers, store, 30)
    assert numbers(kafka_cluster, topic) == list(range(1, 31))


def test_a_failure_of_the_last_transaction_fails_the_run_naming_the_sink(
    kafka_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final checkpoint's transaction comes after the node function ended: its
    failure still fails the run, and the restart writes those records."""
    topic, markers, store = unique("eo"), unique("markers"), str(tmp_path / "run.state")
    write = TransactionalWriter.write

    def refused(self: TransactionalWriter, staged: Any) -> int:
        raise ConnectorError("the brokers said no")

    monkeypatch.setattr(TransactionalWriter, "write", refused)
    sink = KafkaSink(kafka_cluster, topic, exactly_once=True, marker_topic=markers, name="out")
    Numbers(4, name="numbers") > Total(name="count") > sink
    with pytest.raises(nanostream.NodeFailed, match="out") as info:
        sink.global_start(state=store)
    assert "the brokers said no" in str(info.value.__cause__)
    assert numbers(kafka_cluster, topic) == []
    monkeypatch.setattr(TransactionalWriter, "write", write)
    counting_run(kafka_cluster, topic, markers, store, 6)
    assert numbers(kafka_cluster, topic) == list(range(1, 7))


# ----------------------------------------------------------------------------- isolation
@pytest.fixture
def real_kafka() -> str:
    """A real broker's bootstrap servers (``NANOSTREAM_TEST_KAFKA``): librdkafka's mock
    cluster (2.16) does not keep the records of open or aborted transactions from
    ``read_committed`` readers (its fetches return no aborted transactions and a last
    stable offset at the end of the log), so isolation can only be checked on a broker."""
    bootstrap = os.environ.get("NANOSTREAM_TEST_KAFKA")
    if not bootstrap:
        pytest.skip("needs a real Kafka broker: set NANOSTREAM_TEST_KAFKA=host:port")
    return bootstrap


def test_a_record_of_a_transaction_never_committed_is_not_seen(real_kafka: str) -> None:
    topic, markers = unique("open"), unique("markers")
    settings = ClientSettings("KafkaSink", real_kafka, {})
    config = settings.client_config(**{"transactional.id": unique("tid"), "log_level": 0})
    writer = TransactionalWriter(
        settings, "'out'", config=config, reader={}, marker_topic=markers, timeout=30, fatal=[]
    )
    writer.open()
    producer = writer.producer
    assert producer is not None
    producer.begin_transaction()
    writer.in_transaction = True
    producer.produce(topic, b"never committed")
    assert producer.flush(30) == 0
    # open, neither committed nor aborted (as a crashed run leaves it until its restart)
    assert read_committed(real_kafka, topic, timeout=10) == []
    writer.close()  # aborted
    assert read_committed(real_kafka, topic) == []


# ----------------------------------------------------------------------------- kill -9
CHILD = r"""
import os, sys
import nanostream
from nanostream.nodes import Throttle
from nanostream.nodes.kafka import KafkaSink

bootstrap, topic, markers, store, stop = sys.argv[1:6]


class Numbers(nanostream.NanoNode):
    def __init__(self, stop, **options):
        super().__init__(**options)
        self.stop = stop

    def setup(self):
        self.position = 0

    def generator(self):
        while self.position < self.stop:
            self.position += 1
            yield self.position

    def snapshot_state(self):
        return self.position

    def restore_state(self, state):
        self.position = state


sink = KafkaSink(bootstrap, topic, key=lambda n: str(n % 5), exactly_once=True,
                 marker_topic=markers, name="out")
pace = Throttle(float(os.environ["KILL_TEST_RATE"]), burst=100, name="pace")
Numbers(int(stop), name="numbers") > pace > sink
run = sink.global_start(block=False, state=store, checkpoint_interval=0.5)
print("started", flush=True)
run.wait_interruptibly()
"""

KILLS = 3
STOP = 40_000  # 5 s at the kill test's pace: each kill comes mid-stream
LATE = 0.1  # a kill comes at most this long after a transaction's marker


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_kill_9_mid_stream_and_a_restart_write_every_record_once(
    kafka_cluster: str, tmp_path: Path, kill_child: Any
) -> None:
    """Killed three times while it writes, then run to its end: every number once.

    Each kill comes at a random moment within 0.1 s after one of the sink's transactions
    ended (its marker is in), before the next one (a checkpoint every 0.5 s): the mock
    cluster shows a transaction's records before it is committed, which a real broker
    keeps from ``read_committed`` readers, so a kill inside one would show them here."""
    topic, markers, store = unique("eo-kill"), unique("markers"), str(tmp_path / "run.state")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = kill_child(
        script,
        kafka_cluster,
        topic,
        markers,
        store,
        str(STOP),
        preload=("nanostream.nodes.kafka", "confluent_kafka"),
    )
    watcher = confluent_kafka.Consumer(
        {"bootstrap.servers": kafka_cluster, "group.id": unique("w"), "log_level": 0}
    )

    def marker_end() -> int:  # each transaction adds its marker and a control record
        try:
            part = confluent_kafka.TopicPartition(markers, 0)
            return int(watcher.get_watermark_offsets(part, timeout=5, cached=False)[1])
        except confluent_kafka.KafkaException:
            return 0  # no marker topic yet

    mid_stream = 0
    try:
        for _ in range(KILLS):
            before = marker_end()
            proc = child.start()
            try:
                assert wait_until(lambda: marker_end() > before or proc.poll() is not None)  # noqa: B023
                threading.Event().wait(random.uniform(0.0, LATE))
            finally:
                proc.send_signal(signal.SIGKILL)
                _, stderr = proc.communicate()
            assert proc.returncode == -signal.SIGKILL, stderr
            seen = numbers(kafka_cluster, topic)
            assert len(seen) == len(set(seen)), "a record written twice"
            mid_stream += 0 < len(seen) < STOP
        child.finish()
    finally:
        watcher.close()
    assert mid_stream, "no kill came mid-stream"
    assert numbers(kafka_cluster, topic) == list(range(1, STOP + 1))


# ----------------------------------------------------------------------------- failures
class FakeProducer:
    """A transactional producer whose commits fail as told (``errors``, in turn)."""

    def __init__(self, errors: list[Any]) -> None:
        self.errors = errors
        self.calls: list[str] = []
        self.produced: list[Any] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(
        self, topic: str, value: Any, key: Any, partition: int, report: Any, **_: Any
    ) -> None:
        self.produced.append((topic, value))
        report(None, None)

    def flush(self, _timeout: float = 0) -> int:
        return 0

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def commit_transaction(self, _timeout: float) -> None:
        self.calls.append("commit")
        if self.errors:
            raise confluent_kafka.KafkaException(self.errors.pop(0))

    def abort_transaction(self, _timeout: float) -> None:
        self.calls.append("abort")


def fake_writer(errors: list[Any], timeout: float = 30) -> tuple[TransactionalWriter, FakeProducer]:
    settings = ClientSettings("KafkaSink", "broker:9092", {"sasl.password": "pw-s3cret"})
    writer = TransactionalWriter(
        settings,
        "'out'",
        config={"transactional.id": "tid"},
        reader={},
        marker_topic="markers",
        timeout=timeout,
        fatal=[],
    )
    producer = FakeProducer(errors)
    writer.producer = producer  # type: ignore[assignment]
    return writer, producer


RECORDS: list[tuple[int, list[Record]]] = [
    (2, [("orders", None, b"1", None, None), ("orders", None, b"2", None, None)])
]


def test_an_abortable_error_aborts_the_transaction_and_writes_it_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    abortable = confluent_kafka.KafkaError(
        confluent_kafka.KafkaError._OUTDATED, "pw-s3cret broker went away", txn_requires_abort=True
    )
    writer, producer = fake_writer([abortable])
    with caplog.at_level(logging.WARNING, logger="nanostream.kafka"):
        assert writer.write(RECORDS) == 2
    assert producer.calls == ["begin", "commit", "abort", "begin", "commit"]
    assert [value for topic, value in producer.produced if topic == "orders"] == [b"1", b"2"] * 2
    markers = [json.loads(value) for topic, value in producer.produced if topic == "markers"]
    assert markers == [{"checkpoint": 2, "records": 2}] * 2
    assert "aborts the transaction of checkpoint 2" in caplog.text
    assert "pw-s3cret" not in caplog.text


def test_a_retriable_commit_is_committed_again_without_aborting() -> None:
    retriable = confluent_kafka.KafkaError(confluent_kafka.KafkaError._TIMED_OUT, retriable=True)
    writer, producer = fake_writer([retriable])
    assert writer.write(RECORDS) == 2
    assert producer.calls == ["begin", "commit", "commit"]


def test_a_fenced_producer_fails_naming_the_node_and_saying_what_to_do() -> None:
    fenced = confluent_kafka.KafkaError(confluent_kafka.KafkaError._FENCED, fatal=True)
    writer, producer = fake_writer([fenced])
    with pytest.raises(ConnectorError) as info:
        writer.write(RECORDS)
    message = str(info.value)
    assert "'out'" in message and "checkpoint 2" in message and "fenced" in message
    assert "stop the other run" in message and "restart writes them" in message
    assert "abort" not in producer.calls


def test_an_abortable_error_past_the_timeout_fails_the_run() -> None:
    abortable = confluent_kafka.KafkaError(
        confluent_kafka.KafkaError._OUTDATED, txn_requires_abort=True
    )
    writer, producer = fake_writer([], timeout=0.05)

    def commit(_timeout: float) -> None:  # fails every time
        producer.calls.append("commit")
        raise confluent_kafka.KafkaException(abortable)

    producer.commit_transaction = commit  # type: ignore[method-assign]
    with pytest.raises(ConnectorError, match=r"'out'.*checkpoint 2 could not be committed within"):
        writer.write(RECORDS)


def test_a_transaction_that_cannot_be_aborted_fails_naming_the_node() -> None:
    abortable = confluent_kafka.KafkaError(
        confluent_kafka.KafkaError._OUTDATED, txn_requires_abort=True
    )
    writer, producer = fake_writer([abortable])

    def abort(_timeout: float) -> None:
        raise confluent_kafka.KafkaException(
            confluent_kafka.KafkaError(confluent_kafka.KafkaError._FATAL, fatal=True)
        )

    producer.abort_transaction = abort  # type: ignore[method-assign]
    with pytest.raises(ConnectorError, match=r"'out'.*checkpoint 2 failed .* could not be aborted"):
        writer.write(RECORDS)


def test_a_fatal_error_is_never_retried() -> None:
    fatal = confluent_kafka.KafkaError(confluent_kafka.KafkaError._INVALID_ARG, fatal=True)
    writer, producer = fake_writer([fatal])
    with pytest.raises(ConnectorError, match="cannot be committed"):
        writer.write(RECORDS)
    assert producer.calls == ["begin", "commit"]


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"exactly_once": "yes"}, "exactly_once must be true or false"),
        ({"exactly_once": True, "idempotent": False}, "drop idempotent=False"),
        ({"transactional_id": "t"}, "pass exactly_once=True, or drop it"),
        ({"exactly_once": True, "transactional_id": ""}, "transactional_id must be text"),
        ({"exactly_once": True, "marker_topic": ""}, "marker_topic must be a topic name"),
        ({"config": {"transactional.id": "t"}}, "use transactional_id="),
        (
            {"exactly_once": True, "config": {"transaction.timeout.ms": 10_000}},
            r"shorter than timeout=120.0 s",
        ),
    ],
)
def test_options_that_do_not_go_with_exactly_once_are_refused(
    options: dict[str, Any], says: str
) -> None:
    with pytest.raises(nanostream.GraphError, match=says):
        KafkaSink("broker:9092", "orders", **options)


def exactly_once_sink() -> KafkaSink:
    return KafkaSink("broker:9092", "orders", exactly_once=True, name="out")


def test_exactly_once_without_a_state_store_is_refused_when_built() -> None:
    sink = exactly_once_sink()
    Numbers(3, name="numbers") > sink
    with pytest.raises(nanostream.GraphError, match=r"'out' .* needs the run's state store"):
        nanostream.pipeline_of(sink).plan(nanostream.RunOptions())


def test_exactly_once_after_a_source_that_cannot_resume_is_refused_when_built(
    tmp_path: Path,
) -> None:
    sink = exactly_once_sink()
    nanostream.from_iterable([1], name="src") > sink
    with pytest.raises(nanostream.GraphError, match="source 'src' cannot replay"):
        nanostream.pipeline_of(sink).plan(nanostream.RunOptions(state=str(tmp_path / "s")))


def test_an_exactly_once_sink_must_be_the_only_sink_and_no_node_may_merge(tmp_path: Path) -> None:
    state = nanostream.RunOptions(state=str(tmp_path / "run.state"))
    sink = exactly_once_sink()
    source = Numbers(3, name="numbers")
    source > sink
    source > nanostream.testing.Collect(name="other")
    with pytest.raises(nanostream.GraphError, match="only sink"):
        nanostream.pipeline_of(sink).plan(state)
    merged = exactly_once_sink()
    Numbers(3, name="a") > merged
    Numbers(3, name="b") > merged
    with pytest.raises(nanostream.GraphError, match="merges 2 inputs"):
        nanostream.pipeline_of(merged).plan(state)


def test_an_at_least_once_sink_in_a_run_with_state_is_told_to_write_exactly_once(
    tmp_path: Path,
) -> None:
    sink = KafkaSink("broker:9092", "orders", name="out")
    Numbers(3, name="numbers") > sink
    with pytest.raises(nanostream.GraphError, match=r"'out'.*pass exactly_once=True"):
        nanostream.pipeline_of(sink).plan(nanostream.RunOptions(state=str(tmp_path / "s")))


# ----------------------------------------------------------------------------- the parts
def test_the_transactional_id_is_derived_from_the_pipeline_the_sink_and_its_topic() -> None:
    assert default_transactional_id("p", "out", "orders") == "nanostream.p.out.orders"
    assert default_transactional_id("p", "out", str.upper) == "nanostream.p.out"


def test_each_checkpoint_keeps_the_records_since_the_one_before() -> None:
    kept = ExactlyOnce()
    kept.pending.append(("t", None, b"1", None, None))
    kept.since = 3
    assert kept.snapshot() == (1, [(1, [("t", None, b"1", None, None)])])
    assert kept.since == 0 and kept.pending == []
    kept.pending.append(("t", None, b"2", None, None))
    assert kept.snapshot()[1] == [
        (1, [("t", None, b"1", None, None)]),
        (2, [("t", None, b"2", None, None)]),
    ]
    kept.restore((5, [(5, [])]))
    assert (kept.number, kept.staged) == (5, [(5, [])])


def test_the_source_reads_committed_records_unless_told_otherwise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="nanostream.kafka"):
        KafkaSource("broker:9092", "orders", "g")
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="nanostream.kafka"):
        KafkaSource("broker:9092", "orders", "g", config={"isolation.level": "read_uncommitted"})
    assert "not committed" in caplog.text
    with pytest.raises(nanostream.GraphError, match=r"isolation\.level"):
        KafkaSource("broker:9092", "orders", "g", config={"isolation.level": "dirty"})


def test_the_marker_is_read_from_the_last_one_of_the_sink(kafka_cluster: str) -> None:
    """Markers of other sinks in between, and more than a first window's worth."""
    markers = unique("markers")
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_cluster, "log_level": 0})
    for number in range(1, 101):
        producer.produce(markers, json.dumps({"checkpoint": number}).encode(), b"mine", 0)
        for _ in range(3):
            producer.produce(markers, json.dumps({"checkpoint": 999}).encode(), b"other", 0)
    assert producer.flush(30) == 0
    settings = ClientSettings("KafkaSink", kafka_cluster, {})
    reader = settings.client_config(
        **{
            "group.id": unique("r"),
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    writer = TransactionalWriter(
        settings,
        "'out'",
        config={"transactional.id": "mine"},
        reader=reader,
        marker_topic=markers,
        timeout=30,
        fatal=[],
    )
    assert writer.last_written() == 100
    writer.marker_topic = unique("none")
    assert writer.last_written() == 0
    for _ in range(300):
        producer.produce(markers, b"{}", b"other", 0)
    assert producer.flush(30) == 0
    writer.marker_topic = markers
    assert writer.last_written() == 100  # found past the first window


def test_secrets_stay_masked_when_the_transactions_cannot_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pw-s3cret-txn"
    sink = KafkaSink(
        "127.0.0.1:1",  # nothing listens there
        "orders",
        exactly_once=True,
        timeout=1,
        config={
            "sasl.username": "app",
            "sasl.password": secret,
            "sasl.mechanism": "PLAIN",
            "security.protocol": "SASL_PLAINTEXT",
        },
        name="out",
    )
    Numbers(3, name="numbers") > sink
    assert secret not in repr(sink) + nanostream.to_yaml(sink)
    with (
        caplog.at_level(logging.DEBUG, logger="nanostream"),
        pytest.raises(nanostream.NodeFailed, match="out") as info,
    ):
        sink.global_start(state=str(tmp_path / "run.state"))
    cause = info.value.__cause__
    assert isinstance(cause, ConnectorError)
    assert "could not initialise transactions" in str(cause)
    assert secret not in str(info.value) + str(cause) + caplog.text
