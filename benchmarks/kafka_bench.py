"""Kafka benchmark: records/s through ``KafkaSource > KafkaSink`` against a plain
confluent-kafka consume/produce loop, on librdkafka's mock cluster, in the same run.

Both copy the same N records (keys and headers) from one topic to a fresh one, reading as
a new consumer group, with an idempotent producer whose every delivery is checked. Each is
timed by the records it wrote: from the first record's create time to the last one's (set
by the producer when the record is produced), so the consumer group's join (about 3 s on
the mock cluster, the same for both) is left out. Run alone with a small N:

    .venv/bin/python benchmarks/kafka_bench.py --n 20000

or, for the CPU time a record of each thread of the pipeline (Linux), over 3 copies:

    .venv/bin/python benchmarks/kafka_bench.py --n 100000 --cpu 3
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from pathlib import Path
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


def _thread_cpu() -> dict[int, tuple[str, int]]:
    """Each thread of this process: its native id -> (name, CPU nanoseconds) (Linux)."""
    found = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
        except OSError:  # the thread ended meanwhile
            continue
        found[int(task.name)] = (name, ns)
    return found


def nanostream_pipeline(
    bootstrap: str, topic: str, n: int, cpu: dict[str, float] | None = None
) -> float:
    """Records/s of ``KafkaSource > KafkaSink`` (threads runner, default options).

    With ``cpu`` (Linux), it gets the CPU time a record of each thread of the copy, in
    microseconds, from the first record delivered to the last: the source's and the
    sink's threads by node name, librdkafka's threads together as ``rdk``.
    """
    from nanostream.nodes.kafka import KafkaSink, KafkaSource

    out = f"nano-{uuid.uuid4().hex[:8]}"
    source = KafkaSource(bootstrap, topic, f"nano-{uuid.uuid4().hex[:8]}", config=GROUP)
    sink = KafkaSink(bootstrap, out)
    source > sink
    run = source.global_start(block=False)
    assert run is not None
    pause = threading.Event()
    deadline = time.monotonic() + 300
    start, first = _thread_cpu(), 0
    try:
        while sink.delivered < n:  # another thread's counter: look at it every 10 ms
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {sink.delivered} of {n} records copied in 300 s")
            if not first and sink.delivered:
                start, first = _thread_cpu(), sink.delivered
            pause.wait(0.01)
        end = _thread_cpu()
        names = {t.native_id: t.name.rsplit(":", 1)[-1] for t in threading.enumerate()}
    finally:
        run.stop(timeout=60)
    assert sink.delivered == n, sink.delivered
    if cpu is not None:
        for tid, (comm, ns) in end.items():
            name = "rdk" if comm.startswith("rdk:") else names.get(tid, "")
            if name in ("rdk", source.name or "KafkaSource", sink.name or "KafkaSink"):
                spent = (ns - start.get(tid, (comm, 0))[1]) / (n - first) / 1000
                cpu[name] = cpu.get(name, 0.0) + spent
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


def rows(n: int, repeat: int = 5) -> list[Row]:
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


def cpu_per_record(n: int, repeat: int) -> None:
    """Print the CPU time a record of each thread of ``repeat`` pipeline copies."""
    holder, bootstrap = _cluster()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    _fill(bootstrap, topic, n)
    for _ in range(repeat):
        cpu: dict[str, float] = {}
        rate = nanostream_pipeline(bootstrap, topic, n, cpu)
        shown = "  ".join(f"{name} {us:.2f}" for name, us in sorted(cpu.items()))
        print(f"{rate:>10,.0f} records/s  CPU us a record: {shown}", flush=True)
    del holder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument(
        "--cpu", type=int, metavar="COPIES", help="only the pipeline: CPU a record, by thread"
    )
    args = parser.parse_args()
    if args.cpu:
        cpu_per_record(min(args.n, 100_000), args.cpu)
    else:
        for name, rate, note in rows(args.n * 10):
            print(f"{name:<60} {rate:>12,.0f}  {note}")
