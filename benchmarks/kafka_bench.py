"""Kafka benchmark: records/s through ``KafkaSource > KafkaSink`` against a plain
confluent-kafka consume/produce loop, on librdkafka's mock cluster, in the same run.

Both copy the same N records (keys and headers) from one topic to a fresh one, reading as
a new consumer group, with an idempotent producer whose every delivery is checked. Each is
timed by the records it wrote: from the first record's create time to the last one's (set
by the producer when the record is produced), so the consumer group's join (about 3 s on
the mock cluster, the same for both) is left out. Run alone with a small N:

    .venv/bin/python benchmarks/kafka_bench.py --n 20000
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from typing import Any

Row = tuple[str, float, str]

# The mock cluster gives a closed consumer's partitions on only after its session timeout.
GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def _cluster() -> tuple[Any, str]:
    import confluent_kafka

    holder = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 0})
    brokers = holder.list_topics(timeout=10).brokers.values()
    return holder, ",".join(f"{b.host}:{b.port}" for b in brokers)


def _fill(bootstrap: str, topic: str, n: int) -> None:
    import confluent_kafka

    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for i in range(n):
        while True:
            try:
                producer.produce(
                    topic, b"x" * 100, key=f"k{i % 101}".encode(), headers=[("i", b"%d" % i)]
                )
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0


def plain_loop(bootstrap: str, topic: str, n: int) -> float:
    """Records/s of a hand-written consume/produce loop (deliveries counted)."""
    import confluent_kafka

    out = f"plain-{uuid.uuid4().hex[:8]}"
    delivered = [0, 0]  # ok, failed

    def report(error: Any, _msg: Any) -> None:
        delivered[error is not None] += 1

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"plain-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 0,
            **GROUP,
        }
    )
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "on_delivery": report,
            "log_level": 0,
        }
    )
    consumer.subscribe([topic])
    copied = 0
    while copied < n:
        for msg in consumer.consume(1000, 0.05):
            while True:
                try:
                    producer.produce(out, msg.value(), key=msg.key(), headers=msg.headers())
                    break
                except BufferError:
                    producer.poll(0.01)
            copied += 1
        producer.poll(0)
    producer.flush(60)
    consumer.commit(asynchronous=False)
    consumer.close()
    assert delivered == [n, 0], delivered
    return _rate(bootstrap, out, n)


def nanostream_pipeline(bootstrap: str, topic: str, n: int) -> float:
    """Records/s of ``KafkaSource > KafkaSink`` (threads runner, default options)."""
    from nanostream.nodes.kafka import KafkaSink, KafkaSource

    out = f"nano-{uuid.uuid4().hex[:8]}"
    source = KafkaSource(bootstrap, topic, f"nano-{uuid.uuid4().hex[:8]}", config=GROUP)
    sink = KafkaSink(bootstrap, out)
    source > sink
    run = source.global_start(block=False)
    assert run is not None
    pause = threading.Event()
    deadline = time.monotonic() + 300
    try:
        while sink.delivered < n:  # another thread's counter: look at it every 10 ms
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {sink.delivered} of {n} records copied in 300 s")
            pause.wait(0.01)
    finally:
        run.stop(timeout=60)
    assert sink.delivered == n, sink.delivered
    return _rate(bootstrap, out, n)


def _rate(bootstrap: str, topic: str, n: int) -> float:
    """Records/s at which ``topic``'s ``n`` records were produced (their create times)."""
    import confluent_kafka

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "rate", "log_level": 0}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign(
        [
            confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
            for p in partitions
        ]
    )
    stamps: list[int] = []
    deadline = time.monotonic() + 120
    while len(stamps) < n and time.monotonic() < deadline:
        stamps += [msg.timestamp()[1] for msg in consumer.consume(10_000, 1.0)]
    consumer.close()
    return n / max(0.001, (max(stamps) - min(stamps)) / 1000)


def rows(n: int, repeat: int = 3) -> list[Row]:
    holder, bootstrap = _cluster()
    records = min(100_000, max(20_000, n // 10))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    _fill(bootstrap, topic, records)
    samples: dict[str, list[float]] = {"plain": [], "nanostream": []}
    for _ in range(repeat):
        samples["plain"].append(plain_loop(bootstrap, topic, records))
        samples["nanostream"].append(nanostream_pipeline(bootstrap, topic, records))
    del holder
    plain = statistics.median(samples["plain"])
    nano = statistics.median(samples["nanostream"])
    return [
        (f"Kafka copy, plain consume/produce loop, N={records:,}", plain, "baseline, mock cluster"),
        (
            f"Kafka copy, KafkaSource > KafkaSink, N={records:,}",
            nano,
            f"{nano / plain:.2f}x the plain loop (target >= 0.8x)",
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    for name, rate, note in rows(args.n * 10, repeat=3):
        print(f"{name:<60} {rate:>12,.0f}  {note}")
