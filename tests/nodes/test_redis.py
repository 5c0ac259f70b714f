"""Redis stream connectors against a real ``redis-server`` started by the tests."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any

import pytest
import redis

import nanostream
from nanostream.nodes.redis import ConnectorError, RedisStreamSink, RedisStreamSource
from nanostream.testing import Collect
from support import RECONNECT_REFUSALS


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield c
    finally:
        c.close()


def skip_on_one_thread(runner: str) -> None:
    """Skip where a read cannot be in flight while the test kills the connection."""
    if runner == "cooperative":
        pytest.skip(
            "cooperative runner: one thread, so the connection cannot be killed while a "
            "read is in flight"
        )


def add(client: redis.Redis, stream: str, n: int, start: int = 0) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.xadd(stream, {"n": i, "text": f"entry {i}"})
    return [str(x) for x in pipe.execute()]


def run_until(sink: Collect, source_run: nanostream.Run | None, timeout: float = 20) -> None:
    """Wait until the sink has what it waits for, then stop the (infinite) run."""
    assert source_run is not None
    try:
        assert sink.seen.wait(timeout), f"only {len(sink.items)} items arrived"
    finally:
        source_run.stop(timeout=20)
    assert source_run.state == "finished"


def pending(client: redis.Redis, stream: str, group: str) -> int:
    return int(client.xpending(stream, group)["pending"])


# ----------------------------------------------------------------------------- sink
def test_sink_appends_every_item_encoding_values(
    redis_url: str, client: redis.Redis, runner: str
) -> None:
    items = [
        {"n": i, "name": f"n{i}", "ok": i % 2 == 0, "tags": [i], "none": None} for i in range(250)
    ]
    sink = RedisStreamSink(redis_url, "out", batch_size=64)
    nanostream.from_iterable(items) > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None and run.wait(30)
    assert sink.entries_written == 250
    entries = client.xrange("out")
    assert len(entries) == 250
    assert entries[7][1] == {"n": "7", "name": "n7", "ok": "false", "tags": "[7]", "none": "null"}


def test_sink_caps_the_stream_at_maxlen(redis_url: str, client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_url, "capped", maxlen=50, approximate=False, batch_size=30)
    nanostream.from_iterable([{"n": i} for i in range(200)]) > sink
    sink.global_start()
    entries = client.xrange("capped")
    assert [int(fields["n"]) for _, fields in entries] == list(range(150, 200))


def test_sink_takes_dicts_only(redis_url: str) -> None:
    sink = RedisStreamSink(redis_url, "out")
    nanostream.from_iterable(["not a dict"]) > sink
    with pytest.raises(nanostream.NodeFailed, match="takes dicts") as info:
        sink.global_start()
    assert isinstance(info.value.__cause__, ConnectorError)


# ----------------------------------------------------------------------------- source
def test_source_reads_with_a_group_and_acknowledges(
    redis_url: str, client: redis.Redis, runner: str, acks: bool
) -> None:
    ids = add(client, "in", 300)
    sink = Collect(wait_for=300)
    source = RedisStreamSource(redis_url, "in", "loaders", "loader-1", batch_size=40, id_key="_id")
    source > sink
    run_until(sink, source.global_start(block=False, runner=runner))
    assert [item["_id"] for item in sink.items] == ids
    assert sink.items[5] == {"n": "5", "text": "entry 5", "_id": ids[5]}
    if not acks:  # never acknowledged by the pipeline, so never XACKed: all stay pending
        assert pending(client, "in", "loaders") == 300
        return
    assert pending(client, "in", "loaders") == 0
    assert source.acknowledged == 300


def test_source_waits_for_new_entries_and_stops_promptly(
    redis_url: str, client: redis.Redis, runner: str
) -> None:
    sink = Collect(wait_for=5)
    source = RedisStreamSource(redis_url, "live", "g", "c", start="$", poll_interval=0.01)
    source > sink
    run = source.global_start(block=False, runner=runner)
    assert run is not None
    try:
        # the group exists once the source has started: wait for it, then publish
        deadline = time.monotonic() + 10
        while not client.exists("live"):  # no event to wait on in another process
            assert time.monotonic() < deadline
            time.sleep(0.005)
        add(client, "live", 5)
        assert sink.seen.wait(10)
    finally:
        started = time.monotonic()
        run.stop(timeout=10)
    assert time.monotonic() - started < 5
    assert run.state == "finished"
    assert [item["n"] for item in sink.items] == ["0", "1", "2", "3", "4"]


def test_entries_taken_but_not_acknowledged_are_delivered_again(
    redis_url: str, client: redis.Redis, runner: str, acks: bool
) -> None:
    add(client, "jobs", 10)
    client.xgroup_create("jobs", "workers", id="0")
    # a consumer took 4 entries and crashed before acknowledging them
    taken = client.xreadgroup("workers", "w1", {"jobs": ">"}, count=4)
    assert len(taken[0][1]) == 4
    assert pending(client, "jobs", "workers") == 4

    sink = Collect(wait_for=10)
    RedisStreamSource(redis_url, "jobs", "workers", "w1") > sink
    run_until(sink, sink.global_start(block=False, runner=runner))
    assert sorted(int(item["n"]) for item in sink.items) == list(range(10))
    assert pending(client, "jobs", "workers") == (0 if acks else 10)


def is_pending(client: redis.Redis, stream: str, group: str, entry_id: str) -> bool:
    return bool(client.xpending_range(stream, group, min=entry_id, max=entry_id, count=1))


class PendingAtReceipt(Collect):
    """Notes, for each entry it gets, whether it is still pending; fails on ``fail_at``."""

    def __init__(self, url: str, fail_at: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.url = url
        self.fail_at = fail_at
        self.pending_at: list[bool] = []

    def process_item(self, item: Any) -> Iterator[Any]:
        check = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            self.pending_at.append(is_pending(check, "jobs", "g", item["_id"]))
        finally:
            check.close()
        yield from super().process_item(item)
        if item["n"] == self.fail_at:
            raise RuntimeError(f"the sink failed on entry {item['n']}")


def test_an_entry_is_acknowledged_only_once_the_sink_is_done_with_it(
    redis_url: str, client: redis.Redis, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    ids = add(client, "jobs", 10)

    def source() -> RedisStreamSource:
        return RedisStreamSource(redis_url, "jobs", "g", "c", batch_size=4, id_key="_id")

    first = PendingAtReceipt(redis_url, fail_at="5")
    source() > first
    run = first.global_start(block=False, runner=runner)
    assert run is not None
    with pytest.raises(nanostream.NodeFailed, match="failed on entry 5"):
        run.wait(20)
    assert [item["n"] for item in first.items] == ["0", "1", "2", "3", "4", "5"]
    assert first.pending_at == [True] * 6  # not acknowledged while the sink had it
    assert is_pending(client, "jobs", "g", ids[5])  # nor after the sink failed on it
    assert all(is_pending(client, "jobs", "g", i) for i in ids[6:8])  # read, not delivered

    second = PendingAtReceipt(redis_url, wait_for=1)
    source() > second
    done = {item["_id"] for item in first.items} - {
        i for i in ids if is_pending(client, "jobs", "g", i)
    }
    second.wait_for = 10 - len(done)
    run_until(second, second.global_start(block=False, runner=runner))
    again = [item["_id"] for item in second.items]
    assert ids[5] in again  # the entry the sink failed on is delivered again
    assert sorted(again) == sorted(set(ids) - done)  # with everything not done, once
    assert second.pending_at == [True] * len(again)
    assert pending(client, "jobs", "g") == 0


def test_consumers_of_one_group_share_the_entries(redis_url: str, client: redis.Redis) -> None:
    add(client, "shared", 400)
    sink = Collect(wait_for=400)
    a = RedisStreamSource(redis_url, "shared", "g", "a", batch_size=10, name="a")
    b = RedisStreamSource(redis_url, "shared", "g", "b", batch_size=10, name="b")
    a > sink
    b > sink
    run_until(sink, sink.global_start(block=False))
    assert sorted(int(item["n"]) for item in sink.items) == list(range(400))
    consumers = {c["name"]: c["pending"] for c in client.xinfo_consumers("shared", "g")}
    assert set(consumers) == {"a", "b"} and sum(consumers.values()) == 0


def kill_clients(url: str) -> int:
    """Close every other client's connection, as a failing server would."""
    admin = redis.Redis.from_url(url)
    try:
        return int(admin.client_kill_filter(_type="normal", skipme=True))
    finally:
        admin.close()


def stall_server(url: str, ms: int) -> None:
    """Make the server answer no one for ``ms`` milliseconds (clients time out meanwhile)."""
    admin = redis.Redis.from_url(url)
    try:
        admin.client_pause(ms)
    finally:
        admin.close()


class Killer(nanostream.NanoNode):
    """Passes items on; at item ``kill_at`` kills every other client connection of the
    server (keeping how many in ``killed``), at ``stall_at`` stalls the server 300 ms.

    With ``written``, it first waits (at most 10 s) until that stream has entries: the
    sink downstream is then connected and writing, whatever the runner (on ray the sink's
    actor may still be starting when this node has passed on ``kill_at`` items).
    ``killed`` is an attribute, so that the test reads it after the run on ray too.
    """

    def __init__(self, url: str, kill_at: int, stall_at: int, written: str | None = None) -> None:
        super().__init__(name="killer", queue_size=16, batch_size=8)
        self.url, self.kill_at, self.stall_at, self.written = url, kill_at, stall_at, written
        self.n = 0
        self.killed: list[int] = []

    def sink_is_writing(self) -> bool:
        check = redis.Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + 10
            while not check.xlen(self.written):
                if time.monotonic() > deadline or self.sleep(0.005):
                    return False
            return True
        finally:
            check.close()

    def process_item(self, item: Any) -> Iterator[Any]:
        self.n += 1
        if self.n == self.kill_at:
            assert self.written is None or self.sink_is_writing()
            self.killed.append(kill_clients(self.url))
        if self.n == self.stall_at:
            stall_server(self.url, 300)
        yield item


def test_source_survives_a_dropped_connection(
    redis_url: str, client: redis.Redis, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    skip_on_one_thread(runner)
    add(client, "big", 2000)
    sink = Collect(wait_for=2000)
    source = RedisStreamSource(
        redis_url,
        "big",
        "g",
        "c",
        batch_size=50,
        backoff=0.01,
        timeout=0.1,
        retries=20,
        id_key="id",
    )
    killer = Killer(redis_url, kill_at=300, stall_at=900)
    source > killer > sink
    run_until(sink, sink.global_start(block=False, runner=runner))
    assert killer.killed and killer.killed[0] >= 1
    ids = [item["id"] for item in sink.items]
    # nothing lost, nothing doubled: entries read while the server stalled are re-read
    # from the group's pending list, and acknowledgements are sent again after a failure
    assert len(ids) == len(set(ids)) == 2000
    assert pending(client, "big", "g") == 0
    assert "RedisStreamSource: connection to redis://:***@" in caplog.text  # it did retry


def test_sink_survives_a_dropped_connection(
    redis_url: str, client: redis.Redis, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RedisStreamSink(redis_url, "copy", batch_size=50, backoff=0.01, timeout=0.1, retries=20)
    items = [{"n": i} for i in range(1000)]
    killer = Killer(redis_url, kill_at=300, stall_at=700, written="copy")
    nanostream.from_iterable(items) > killer > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None and run.wait(30)
    assert sum(killer.killed) >= 1
    written = [int(fields["n"]) for _, fields in client.xrange("copy")]
    assert sorted(set(written)) == list(range(1000))  # at-least-once: nothing lost
    assert "RedisStreamSink: connection to redis://:***@" in caplog.text  # it did retry


def test_sink_acknowledges_entries_once_their_batch_is_sent(
    redis_url: str, client: redis.Redis, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")

    class Items(nanostream.NanoNode):
        """Emits 10 acked items; ``acked`` keeps, per acknowledgement, the item and the
        entries in the stream by then (an attribute: on ray it comes back after the run).

        The last 4 wait until the first ack was called: the sink has sent the batch of
        the first item by then, and can have the last items only after that.
        """

        def __init__(self) -> None:
            super().__init__(batch_size=1)
            self.acked: list[tuple[int, int]] = []

        def generator(self) -> Iterator[Any]:
            first_acked: Future[None] = Future()
            for i in range(10):
                if i == 6:
                    self.wait_future(first_acked)
                yield nanostream.Acked({"n": i}, partial(self.ack, i, first_acked))

        def ack(self, i: int, first_acked: Future[None]) -> None:
            check = redis.Redis.from_url(redis_url)
            try:
                self.acked.append((i, int(check.xlen("out"))))
            finally:
                check.close()
            if i == 0:
                first_acked.set_result(None)

    sink = RedisStreamSink(redis_url, "out", batch_size=3)
    source = Items()
    source > sink
    sink.global_start(runner=runner)
    acked = source.acked
    assert [i for i, _ in acked] == list(range(10))
    assert all(count > i for i, count in acked), acked  # in the stream by then
    assert acked[0][1] < 10, acked  # and not only at the end: once its batch was sent


def test_sink_sends_a_quiet_stream_after_flush_interval(
    redis_url: str, client: redis.Redis, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")

    class Trickle(nanostream.NanoNode):
        """Two acked items, then quiet; ``sent`` is set by the second's acknowledgement
        (an event of the node: on ray the driver's copy is set too)."""

        def __init__(self) -> None:
            super().__init__(batch_size=1)
            self.sent = threading.Event()

        def generator(self) -> Iterator[Any]:
            yield nanostream.Acked({"n": 1}, lambda: None)
            yield nanostream.Acked({"n": 2}, self.sent.set)
            while not self.sleep(0.01):  # quiet, until the run stops
                pass

    sink = RedisStreamSink(redis_url, "quiet", batch_size=1000, flush_interval=0.05)
    source = Trickle()
    source > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    try:
        assert source.sent.wait(10)  # sent and acknowledged...
        assert client.xlen("quiet") == 2
        assert run.state == "running"  # ...while the stream goes on
    finally:
        run.stop(timeout=10)
    assert sink.entries_written == 2


# ----------------------------------------------------------------------------- failures, secrets
def test_connection_refused_at_start_is_clear_and_hides_the_password(
    free_port: Callable[[], int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    url = f"redis://:Pa55-word-xyz@127.0.0.1:{port}/0"
    source = RedisStreamSource(url, "s", "g", "c")
    assert "Pa55-word-xyz" not in repr(source)
    sink = Collect()
    source > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start()
    assert isinstance(info.value.__cause__, ConnectorError)
    message = str(info.value)
    assert f"RedisStreamSource could not connect to redis://:***@127.0.0.1:{port}/0" in message
    assert "refused" in message.lower()
    assert "Pa55-word-xyz" not in "".join(traceback.format_exception(info.value)) + caplog.text


def test_a_wrong_password_is_a_clear_error(redis_server: dict[str, str]) -> None:
    url = redis_server["url"].replace(redis_server["password"], "wrong-password-123")
    sink = RedisStreamSink(url, "s")
    nanostream.from_iterable([{"a": 1}]) > sink
    with pytest.raises(nanostream.NodeFailed, match="could not connect") as info:
        sink.global_start()
    text = "".join(traceback.format_exception(info.value))
    assert "wrong-password-123" not in text
    assert redis_server["password"] not in text


def test_a_stream_deleted_under_the_source_is_a_clear_error(
    redis_url: str, client: redis.Redis
) -> None:
    add(client, "doomed", 3)
    seen = threading.Event()

    def delete_stream(inp: Any, outp: Any) -> None:
        for item in inp:
            if not seen.is_set():
                client.delete("doomed")  # the group goes with it
                seen.set()
            outp(item)

    source = RedisStreamSource(redis_url, "doomed", "g", "c", batch_size=1)
    source > delete_stream
    with pytest.raises(nanostream.NodeFailed, match="could not read 'doomed' as group 'g'") as info:
        source.global_start()
    assert isinstance(info.value.__cause__, ConnectorError)
    assert "NOGROUP" in str(info.value)


def test_a_failed_read_is_skipped_and_the_source_reads_again(
    redis_url: str, client: redis.Redis, runner: str
) -> None:
    add(client, "doomed", 1)
    sink, dead = Collect(wait_for=3), Collect()
    source = RedisStreamSource(
        redis_url, "doomed", "g", "c", poll_interval=0.02, on_error="skip", name="events"
    )
    source > sink
    source.errors > dead
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    try:
        # the first entry was read (run.stats(), not sink.items: a Ray sink's items come
        # back to this process only at the end)
        deadline = time.monotonic() + 20
        while run.stats()["events"].items_out == 0 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        client.delete("doomed")  # the group goes with it: the next read fails (NOGROUP)
        assert dead.seen.wait(20)
        client.xgroup_create("doomed", "g", id="0", mkstream=True)
        add(client, "doomed", 2, start=1)
        assert sink.seen.wait(20)  # read after the failed read: the source went on
    finally:
        run.stop(timeout=20)
    assert run.state == "finished"
    assert [item["n"] for item in sink.items] == ["0", "1", "2"]
    record = dead.items[0]
    assert (record.node, record.item) == ("events", None) and "NOGROUP" in record.message


def test_missing_redis_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[redis\]"):
        RedisStreamSink("redis://127.0.0.1/0", "s")


def test_options_are_checked_while_building() -> None:
    with pytest.raises(nanostream.GraphError, match="not a Redis URL"):
        RedisStreamSource("http://127.0.0.1/", "s", "g", "c")
    with pytest.raises(nanostream.GraphError, match="maxlen"):
        RedisStreamSink("redis://127.0.0.1/0", "s", maxlen=0)
    with pytest.raises(nanostream.GraphError, match="batch_size"):
        RedisStreamSource("redis://127.0.0.1/0", "s", "g", "c", batch_size=0)


def test_json_values_round_trip_through_a_stream(redis_url: str) -> None:
    records = [{"id": i, "payload": {"x": [i, None]}} for i in range(20)]
    sink = RedisStreamSink(redis_url, "round")
    nanostream.from_iterable(records) > sink
    sink.global_start()
    out = Collect(wait_for=20)
    RedisStreamSource(redis_url, "round", "g", "c") > out
    run_until(out, out.global_start(block=False))
    decoded = [{"id": int(r["id"]), "payload": json.loads(r["payload"])} for r in out.items]
    assert decoded == records


def test_stop_ends_the_source_without_losing_taken_entries(
    redis_url: str, client: redis.Redis
) -> None:
    add(client, "slow", 500)
    enough = threading.Event()

    def gate(inp: Any, outp: Any) -> None:
        for n, item in enumerate(inp, 1):
            outp(item)
            if n == 100:
                enough.set()

    sink = Collect()
    source = RedisStreamSource(redis_url, "slow", "g", "c", batch_size=10)
    source > nanostream.as_node(gate, queue_size=8, batch_size=4) > sink
    run = sink.global_start(block=False)
    assert run is not None
    assert enough.wait(10)
    run.stop(timeout=10)
    assert run.state == "finished"
    got = len(sink.items)
    assert 100 <= got < 500
    # what the pipeline received is acknowledged once drained; the rest of the last batch
    # read stays pending for this consumer
    assert source.acknowledged == got
    assert got + pending(client, "slow", "g") == (got - 1) // 10 * 10 + 10
    # a restart delivers the rest, and the pending entries again (at-least-once)
    rest = Collect(wait_for=500 - got)
    RedisStreamSource(redis_url, "slow", "g", "c") > rest
    run_until(rest, rest.global_start(block=False))
    seen = [int(i["n"]) for i in sink.items + rest.items]
    assert set(seen) == set(range(500))


_URL = "redis://127.0.0.1/0"  # never reached: the options are refused first


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: RedisStreamSource(_URL, "s", "g", "c", batch_size=True), "batch_size"),
        (lambda: RedisStreamSource(_URL, "s", "g", "c", poll_interval=True), "poll_interval"),
        (lambda: RedisStreamSink(_URL, "s", batch_size=True), "batch_size"),
        (lambda: RedisStreamSink(_URL, "s", maxlen=True), "maxlen"),
        (lambda: RedisStreamSink(_URL, "s", flush_interval=True), "flush_interval"),
    ],
)
def test_a_bool_is_not_a_count_or_a_number_of_seconds(build: Callable[[], Any], says: str) -> None:
    with pytest.raises(nanostream.GraphError, match=f"{says} must be a positive .*got True"):
        build()


@pytest.mark.parametrize(
    "make",
    [
        lambda **o: RedisStreamSource(_URL, "s", "g", "c", name="events", **o),
        lambda **o: RedisStreamSink(_URL, "s", name="events", **o),
    ],
)
@pytest.mark.parametrize(
    ("options", "says"),
    [
        *RECONNECT_REFUSALS,
        ({"timeout": 0}, "timeout must be a positive number (seconds), got 0"),
    ],
)
def test_the_reconnect_options_are_checked_when_the_node_is_made(
    make: Callable[..., Any], options: dict[str, Any], says: str
) -> None:
    with pytest.raises(nanostream.OptionError) as info:
        make(**options)
    assert "'events': " + says in str(info.value)


def test_an_option_error_is_still_caught_as_a_config_error() -> None:
    with pytest.raises(nanostream.ConfigError, match="batch_size"):  # as before
        RedisStreamSink(_URL, "s", batch_size=0)
