"""Files at fsspec URLs: the readers and writers on ``memory://``, on S3 (moto's server),
on Google Cloud Storage (the ``gcp-storage-emulator`` server) and on Azure (Azurite), each
on 127.0.0.1; atomic publishing, conditional puts, what killed writers leave, masked
credentials, and :class:`PrefixWatcher`.

Every test that runs a pipeline runs on the threads and the cooperative runner (a
``memory://`` store lives in one process, and Ray's nodes run in others).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.connectors._publish import AtomicFile
from nanostream.nodes import (
    CSVReader,
    CSVWriter,
    FileWriter,
    JSONLinesReader,
    JSONLinesWriter,
    LocalFileReader,
    Map,
    OutputExistsError,
    PathRefusedError,
    PrefixWatcher,
)
from nanostream.testing import Collect
from support import run_through

WAIT = 20
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


class Store:
    """A fresh "folder" in a store: ``url(key)`` names an object in it."""

    def __init__(self, kind: str, root: str, options: dict[str, Any] | None) -> None:
        from nanostream.connectors._filesystems import StorageOptions, filesystem

        self.kind = kind
        self.root = root
        self.options = options
        self.fs, self.inner = filesystem(root, StorageOptions(options))

    def url(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _path(self, key: str) -> str:
        return f"{self.inner}/{key}"

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data)
        self.fs.invalidate_cache()

    def get(self, key: str) -> bytes:
        return bytes(self.fs.cat_file(self._path(key)))

    def listing(self) -> list[str]:
        self.fs.invalidate_cache()
        found = self.fs.find(self.inner)
        names = (p[len(self.inner) + 1 :] for p in found)
        return sorted(name for name in names if name)  # not the prefix itself

    def remove(self, key: str) -> None:
        self.fs.rm_file(self._path(key))
        self.fs.invalidate_cache()

    def key_of(self, url: str) -> str:
        """The key of a URL that a node emitted (``memory:///x`` or ``s3://b/x``)."""
        _, inner = url.split("://", 1)
        return inner.lstrip("/")[len(self.inner.lstrip("/")) + 1 :]


def _s3_store(request: pytest.FixtureRequest) -> Store:
    name = f"t{uuid.uuid4().hex[:10]}"
    options = {
        "key": KEY_ID,
        "secret": SECRET,
        "endpoint_url": request.getfixturevalue("s3_endpoint"),
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    found = Store("s3", f"s3://{name}/data", options)
    found.fs.mkdir(name)
    return found


def _gs_store(request: pytest.FixtureRequest) -> Store:
    name = f"t{uuid.uuid4().hex[:10]}"
    options = {"endpoint_url": request.getfixturevalue("gcs_endpoint"), "token": "anon"}
    found = Store("gs", f"gs://{name}/data", options)
    found.fs.mkdir(name)
    return found


def _az_store(request: pytest.FixtureRequest) -> Store:
    from azure.storage.blob import BlobServiceClient

    name = f"t{uuid.uuid4().hex[:10]}"
    connection = request.getfixturevalue("azurite_endpoint")
    with BlobServiceClient.from_connection_string(connection) as client:
        client.create_container(name)
    return Store("az", f"az://{name}/data", {"connection_string": connection})


@pytest.fixture(params=["memory", "s3", "gs", "az"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A fresh folder in ``memory://``, then in a fresh bucket of moto's S3, of the GCS
    emulator and of Azurite."""
    if request.param in ("s3", "gs", "az"):
        yield {"s3": _s3_store, "gs": _gs_store, "az": _az_store}[request.param](request)
        return
    found = Store("memory", f"memory://t{uuid.uuid4().hex[:10]}", None)
    yield found
    if found.fs.exists(found.inner):
        found.fs.rm(found.inner, recursive=True)


@pytest.fixture
def s3_store(request: pytest.FixtureRequest) -> Store:
    return _s3_store(request)


# ----------------------------------------------------------------------------- reading
def test_readers_read_objects_by_url(store: Store, local_runner: str) -> None:
    rows = [{"id": str(i), "name": f"n{i}"} for i in range(30)]
    csv_text = "id,name\n" + "".join(f"{r['id']},{r['name']}\n" for r in rows)
    store.put("rows.csv", csv_text.encode())
    store.put("rows.jsonl.gz", gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    so = store.options
    got = run_through(
        [store.url("rows.csv")], CSVReader(paths=True, storage_options=so), runner=local_runner
    )
    assert got == rows
    reader = JSONLinesReader(paths=True, storage_options=so)
    assert run_through([store.url("rows.jsonl.gz")], reader, runner=local_runner) == rows
    whole = run_through(
        [store.url("rows.csv")], LocalFileReader(storage_options=so), runner=local_runner
    )
    assert whole == [csv_text] and whole[0].path == store.url("rows.csv")
    lines = LocalFileReader(serialize=True, binary=True, storage_options=so)
    assert run_through([store.url("rows.csv")], lines, runner=local_runner) == [
        line.encode() for line in csv_text.splitlines()
    ]


def test_a_reader_confined_to_a_url_directory_refuses_what_leads_out(store: Store) -> None:
    store.put("in/a.txt", b"inside")
    reader = LocalFileReader(store.url("in"), storage_options=store.options)
    assert list(reader.process_item("a.txt")) == ["inside"]
    for outside in ("../secret.txt", store.url("other/b.txt"), "gs://elsewhere/in/a.txt"):
        with pytest.raises(PathRefusedError, match="outside the directory"):
            list(reader.process_item(outside))


def test_a_missing_object_fails_the_run_naming_it(store: Store) -> None:
    sink = Collect()
    url = store.url("nowhere.csv")
    nanostream.from_iterable([url]) > CSVReader(paths=True, storage_options=store.options) > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start()
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert "nowhere.csv" in str(info.value.__cause__)


# ----------------------------------------------------------------------------- writing
def test_writers_publish_objects_by_url(store: Store, local_runner: str) -> None:
    rows = [{"id": i, "name": f"n{i}"} for i in range(10)]
    so = store.options
    src = nanostream.from_iterable(rows)
    src > JSONLinesWriter(store.url("out/rows.jsonl"), storage_options=so)
    src > CSVWriter(store.url("out/rows.csv.gz"), storage_options=so)
    src > FileWriter(store.url("out/rows.txt"), storage_options=so)
    src.global_start(runner=local_runner)
    assert [json.loads(x) for x in store.get("out/rows.jsonl").splitlines()] == rows
    csv_lines = gzip.decompress(store.get("out/rows.csv.gz")).decode().splitlines()
    assert csv_lines == ["id,name", *(f"{r['id']},{r['name']}" for r in rows)]
    assert store.get("out/rows.txt").decode().splitlines() == [str(r) for r in rows]


def test_rotated_parts_and_files_per_item_number_on_in_a_store(
    store: Store, local_runner: str
) -> None:
    so = store.options
    template = store.url("parts/p-{part:03d}.jsonl.gz")
    first = run_through(
        list(range(5)),
        JSONLinesWriter(template, rotate_items=2, storage_options=so),
        runner=local_runner,
    )
    assert first == [template.format(part=n) for n in range(3)]
    again = run_through(
        [5], JSONLinesWriter(template, rotate_items=2, storage_options=so), runner=local_runner
    )
    assert again == [template.format(part=3)]
    assert store.listing() == [f"parts/p-{n:03d}.jsonl.gz" for n in range(4)]
    assert gzip.decompress(store.get("parts/p-001.jsonl.gz")) == b"2\n3\n"

    writer = FileWriter(directory=store.url("each"), filename="{n:02d}.txt", storage_options=so)
    assert run_through(["a", "b"], writer, runner=local_runner) == [
        store.url("each/00.txt"),
        store.url("each/01.txt"),
    ]
    writer = FileWriter(directory=store.url("each"), filename="{n:02d}.txt", storage_options=so)
    assert run_through(["c"], writer, runner=local_runner) == [store.url("each/02.txt")]
    assert [store.get(f"each/{n:02d}.txt") for n in range(3)] == [b"a", b"b", b"c"]


def test_an_object_that_exists_is_refused_unless_append_or_overwrite(store: Store) -> None:
    so = store.options
    store.put("people.csv.gz", gzip.compress(b"name,age\nada,36\n"))
    src = nanostream.from_iterable([{"name": "alan", "age": 41}])
    with pytest.raises(OutputExistsError, match="append=True"):
        src > CSVWriter(store.url("people.csv.gz"), storage_options=so)
        src.global_start()
    src = nanostream.from_iterable([{"age": 41, "name": "alan"}])
    src > CSVWriter(store.url("people.csv.gz"), append=True, storage_options=so)
    src.global_start()
    text = gzip.decompress(store.get("people.csv.gz")).decode()
    assert text.splitlines() == ["name,age", "ada,36", "alan,41"]
    src = nanostream.from_iterable([{"name": "grace", "age": 85}])
    src > CSVWriter(store.url("people.csv.gz"), overwrite=True, storage_options=so)
    src.global_start()
    assert gzip.decompress(store.get("people.csv.gz")).decode() == "name,age\ngrace,85\n"


def test_an_object_appears_whole_only_when_committed(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the upload is built
    from nanostream.connectors._filesystems import StorageOptions

    options = StorageOptions(store.options)
    file = AtomicFile(store.url("big.jsonl.gz"), storage_options=options)
    for i in range(20_000):
        file.file.write(json.dumps({"i": i}) + "\n")
    assert store.listing() == []  # nothing visible while it is written
    assert file.commit() == store.url("big.jsonl.gz")
    assert len(gzip.decompress(store.get("big.jsonl.gz")).splitlines()) == 20_000
    dropped = AtomicFile(store.url("dropped.txt"), storage_options=options)
    dropped.file.write("half of it")
    dropped.discard()
    assert store.listing() == ["big.jsonl.gz"]
    assert list(tmp_path.iterdir()) == []  # the local staging folders are gone


class FailAt(nanostream.NanoNode):
    def __init__(self, at: Any) -> None:
        super().__init__()
        self.at = at

    def process_item(self, item: Any) -> Iterator[Any]:
        if item == self.at:
            raise RuntimeError(f"failed at {item}")
        yield item


def test_a_failed_run_leaves_no_partial_object(store: Store, local_runner: str) -> None:
    src = nanostream.from_iterable(range(7))
    template = store.url("p-{part}.jsonl")
    src > FailAt(5) > JSONLinesWriter(template, rotate_items=2, storage_options=store.options)
    with pytest.raises(nanostream.NodeFailed, match="failed at 5"):
        src.global_start(runner=local_runner)
    for key in store.listing():  # parts published before the failure are whole
        number = int(key[2:-6])
        assert store.get(key).split() == [str(2 * number).encode(), str(2 * number + 1).encode()]
    assert "p-2.jsonl" not in store.listing()  # the part that held item 4 was never put


def test_a_reader_listing_the_store_during_a_run_only_ever_sees_whole_objects(
    store: Store, local_runner: str
) -> None:
    """A bounded race: while 8 parts of 2,000 rows are written, another thread lists and
    reads the store until the run ends; every object it sees holds a whole part. (Where a
    put writes in place, as on ``memory://``, the part is put under a hidden name first:
    hidden names are left out, as by PrefixWatcher and the folder watchdog; one that is
    renamed between the listing and the read is not found.)"""
    template = store.url("w-{part:02d}.jsonl")
    src = nanostream.from_iterable({"row": i} for i in range(16_000))
    writer = JSONLinesWriter(template, rotate_items=2_000, storage_options=store.options)
    src > writer
    run = src.global_start(block=False, runner=local_runner)
    assert run is not None
    done = threading.Event()
    run_thread = threading.Thread(target=lambda: (run.wait(WAIT), done.set()))
    run_thread.start()
    try:
        while not done.is_set():
            for key in store.listing():
                if key.startswith("."):
                    continue
                assert len(store.get(key).splitlines()) == 2_000, key
    finally:
        run_thread.join(WAIT)
    assert len(store.listing()) == 8 and all(
        len(store.get(k).splitlines()) == 2_000 for k in store.listing()
    )


# ----------------------------------------------------------------------------- credentials
def test_credentials_are_masked_in_the_node_to_yaml_logs_and_errors(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    options = {
        "key": KEY_ID,
        "secret": SECRET,
        "client_kwargs": {"aws_session_token": SECRET + "T"},
    }
    reader = CSVReader(paths=True, storage_options=options, name="read")
    writer = JSONLinesWriter(store.url("x.jsonl"), storage_options=options, name="write")
    for node in (reader, writer):
        assert SECRET not in repr(node) and SECRET not in str(vars(node).get("storage_options"))
        assert node.storage_options == {
            "key": "***",
            "secret": "***",
            "client_kwargs": {"aws_session_token": "***"},
        }
    src = nanostream.from_iterable([], name="src")
    src > reader
    src > writer
    text = nanostream.to_yaml(src)
    assert SECRET not in text and KEY_ID not in text and "secret: '***'" in text
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        logging.getLogger("nanostream").warning("connecting with %s", SECRET)
    assert SECRET not in caplog.text and "connecting with ***" in caplog.text

    def leak(item: Any) -> Any:
        raise ValueError(f"the store said no to {SECRET}")

    sink = Collect()
    nanostream.from_iterable([1]) > Map(leak) > sink
    with pytest.raises(nanostream.NodeFailed) as info:
        sink.global_start()
    assert SECRET not in str(info.value) and "***" in str(info.value)


def test_storage_options_with_a_local_path_are_refused_when_built(tmp_path: Path) -> None:
    with pytest.raises(nanostream.GraphError, match="storage_options apply to URLs"):
        JSONLinesWriter(tmp_path / "x.jsonl", storage_options={"anon": True})


def test_a_protocol_whose_package_is_missing_is_refused_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fsspec

    def no_backend(protocol: str) -> Any:
        raise ImportError(f"Install the backend of {protocol}")

    monkeypatch.setattr(fsspec, "get_filesystem_class", no_backend)
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[s3\]"):
        JSONLinesWriter("s3://bucket/out.jsonl")
    with pytest.raises(nanostream.MissingDependencyError, match="pip install gcsfs"):
        PrefixWatcher("gs://bucket/in/")
    monkeypatch.setitem(__import__("sys").modules, "fsspec", None)
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[storage\]"):
        CSVReader(paths=True, storage_options={})


# ----------------------------------------------------------------------------- PrefixWatcher
def watch_until(
    store: Store, runner: str, expect: int, *, marker: str | None = None, **kw: Any
) -> list[str]:
    """Run a PrefixWatcher until ``expect`` items came (then, with ``marker``, until the
    marker object put after them came too); the keys it emitted, in order."""
    watch = PrefixWatcher(store.url("in"), poll_interval=0.02, storage_options=store.options, **kw)
    sink = Collect(wait_for=max(expect, 1))
    watch > sink
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    assert watch.ready.wait(WAIT)
    try:
        if expect:
            assert sink.seen.wait(WAIT)
        if marker is not None:
            sink.seen.clear()
            sink.wait_for = expect + 1
            store.put(f"in/{marker}", marker.encode())
            assert sink.seen.wait(WAIT)
    finally:
        run.stop(timeout=WAIT)
    return [store.key_of(url) for url in sink.items]


def test_the_watcher_emits_existing_and_new_objects_that_match(
    store: Store, local_runner: str
) -> None:
    store.put("in/a.csv", b"a")
    store.put("in/sub/b.csv", b"b")
    store.put("in/.hidden/c.csv", b"c")
    store.put("in/notes.txt", b"n")
    store.put("elsewhere/d.csv", b"d")
    watch = PrefixWatcher(
        store.url("in/"), "*.csv", poll_interval=0.02, storage_options=store.options
    )
    sink = Collect(wait_for=2)
    watch > sink
    run = sink.global_start(block=False, runner=local_runner)
    assert run is not None
    try:
        assert sink.seen.wait(WAIT)
        sink.seen.clear()
        sink.wait_for = 3
        store.put("in/e.csv", b"e")
        assert sink.seen.wait(WAIT)
    finally:
        run.stop(timeout=WAIT)
    assert sorted(store.key_of(u) for u in sink.items[:2]) == ["in/a.csv", "in/sub/b.csv"]
    assert store.key_of(sink.items[2]) == "in/e.csv"
    assert all(isinstance(u, nanostream.nodes.FilePath) for u in sink.items)


def test_the_watcher_emits_changed_and_recreated_objects_again(
    store: Store, local_runner: str
) -> None:
    store.put("in/a.csv", b"one")
    watch = PrefixWatcher(
        store.url("in"), recursive=False, poll_interval=0.02, storage_options=store.options
    )
    sink = Collect()
    watch > sink
    run = sink.global_start(block=False, runner=local_runner)
    assert run is not None
    try:
        assert sink.seen.wait(WAIT)
        for n, step in enumerate(("change", "delete", "recreate"), 2):
            sink.seen.clear()
            sink.wait_for = n
            if step == "change":
                store.put("in/a.csv", b"one, then two")
            elif step == "delete":
                store.remove("in/a.csv")
                store.put("in/gone.csv", b"marker")
            else:
                store.put("in/a.csv", b"one")
            assert sink.seen.wait(WAIT)
    finally:
        run.stop(timeout=WAIT)
    assert [store.key_of(u) for u in sink.items] == [
        "in/a.csv",
        "in/a.csv",
        "in/gone.csv",
        "in/a.csv",
    ]


def test_a_restart_with_a_ledger_neither_repeats_nor_misses(
    store: Store, local_runner: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    for name in "abc":
        store.put(f"in/{name}.csv", name.encode())
    first = watch_until(store, local_runner, 3, state=ledger)
    assert sorted(first) == ["in/a.csv", "in/b.csv", "in/c.csv"]

    # while it is down: one object changes, one goes, one arrives
    store.put("in/a.csv", b"a, changed")
    store.remove("in/c.csv")
    store.put("in/d.csv", b"d")
    second = watch_until(store, local_runner, 2, marker="m1.csv", state=ledger)
    assert sorted(second[:2]) == ["in/a.csv", "in/d.csv"]  # 0 missed
    assert second[2:] == ["in/m1.csv"]  # 0 repeated

    # nothing changed: only the marker; an object deleted while down and back is new
    assert watch_until(store, local_runner, 0, marker="m2.csv", state=ledger) == ["in/m2.csv"]
    store.put("in/c.csv", b"c")
    assert watch_until(store, local_runner, 1, marker="m3.csv", state=ledger) == [
        "in/c.csv",
        "in/m3.csv",
    ]

    with closing(sqlite3.connect(ledger)) as db:
        rows = db.execute("SELECT path, size, hash FROM files ORDER BY path").fetchall()
    assert [store.key_of(p) for p, _, _ in rows] == [
        f"in/{n}.csv" for n in ("a", "b", "c", "d", "m1", "m2", "m3")
    ]
    if store.kind == "s3":  # S3 gives ETags: the ledger keeps them
        assert all(isinstance(etag, str) and etag for _, _, etag in rows)


def test_only_new_with_a_ledger_applies_to_the_first_start_only(
    store: Store, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    store.put("in/old.csv", b"old")
    assert watch_until(store, "threads", 0, marker="m1.csv", only_new=True, state=ledger) == [
        "in/m1.csv"
    ]
    store.put("in/while-down.csv", b"new")
    assert watch_until(store, "threads", 1, marker="m2.csv", only_new=True, state=ledger) == [
        "in/while-down.csv",
        "in/m2.csv",
    ]


def test_an_s3_object_rewritten_with_the_same_content_is_no_change(
    s3_store: Store, tmp_path: Path
) -> None:
    """S3 gives each object an ETag of its content (memory:// gives none)."""
    store = s3_store
    ledger = tmp_path / "ledger.sqlite"
    store.put("in/a.csv", b"same")
    assert watch_until(store, "threads", 1, state=ledger) == ["in/a.csv"]
    store.put("in/a.csv", b"same")  # a new upload, a new LastModified, the same ETag
    assert watch_until(store, "threads", 0, marker="m.csv", state=ledger) == ["in/m.csv"]


def test_a_bad_prefix_or_interval_is_refused_when_built() -> None:
    with pytest.raises(nanostream.GraphError, match="LocalDirectoryWatchdog"):
        PrefixWatcher("/srv/inbox")
    with pytest.raises(nanostream.GraphError, match=r"poll_interval must be a positive number"):
        PrefixWatcher("memory://inbox", poll_interval=0)


class FlakyWatcher(PrefixWatcher):
    """A PrefixWatcher whose listings fail while ``broken`` is set."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.broken = threading.Event()

    def listing(self, fs: Any, root: str) -> dict[str, Any]:
        if self.broken.is_set():
            raise ConnectionError("the store cannot be reached")
        return super().listing(fs, root)


def test_a_listing_that_fails_is_skipped_and_the_watcher_goes_on(
    store: Store, local_runner: str
) -> None:
    watch = FlakyWatcher(
        store.url("in"),
        poll_interval=0.02,
        storage_options=store.options,
        on_error="skip",
        name="w",
    )
    sink, dead = Collect(), Collect()
    watch > sink
    watch.errors > dead
    run = sink.global_start(block=False, runner=local_runner)
    assert run is not None
    try:
        assert watch.ready.wait(WAIT)
        watch.broken.set()
        store.put("in/a.csv", b"a")
        assert dead.seen.wait(WAIT)
        watch.broken.clear()
        assert sink.seen.wait(WAIT)
    finally:
        run.stop(timeout=WAIT)
    assert run.state == "finished"
    assert [store.key_of(u) for u in sink.items] == ["in/a.csv"]
    record = dead.items[0]
    assert (record.node, record.item, record.message) == ("w", None, "the store cannot be reached")


def test_a_listing_that_fails_fails_the_run_by_default(store: Store, local_runner: str) -> None:
    watch = FlakyWatcher(store.url("in"), poll_interval=0.02, storage_options=store.options)
    sink = Collect()
    watch > sink
    run = sink.global_start(block=False, runner=local_runner)
    assert run is not None
    assert watch.ready.wait(WAIT)
    watch.broken.set()
    with pytest.raises(nanostream.NodeFailed, match="cannot be reached"):
        run.wait(WAIT)


class FailOn(Collect):
    """Collects URLs, and fails on the one whose key ends with ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def process_item(self, item: Any) -> Iterator[Any]:
        yield from super().process_item(item)
        if item.endswith(self.name):
            raise RuntimeError(f"the sink failed on {self.name}")


def test_objects_in_flight_when_a_run_fails_come_again_after_a_restart(
    store: Store, local_runner: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    names = [f"in/{n}.csv" for n in "abcde"]
    for name in names:
        store.put(name, name.encode())
    failing = FailOn("c.csv")
    watch = PrefixWatcher(
        store.url("in"), poll_interval=0.02, storage_options=store.options, state=ledger
    )
    watch > failing
    with pytest.raises(nanostream.NodeFailed, match=r"the sink failed on c\.csv"):
        failing.global_start(runner=local_runner)
    with closing(sqlite3.connect(ledger)) as db:
        done = {store.key_of(p) for (p,) in db.execute("SELECT path FROM files")}
    assert "in/c.csv" not in done and done < set(names)  # recorded: only what was done

    again = watch_until(store, local_runner, len(names) - len(done), marker="z.csv", state=ledger)
    assert sorted(again[:-1]) == sorted(set(names) - done)  # nothing done comes again
    assert again[-1] == "in/z.csv"


def test_a_pipeline_file_s_credentials_are_masked_when_written_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "yaml-secret-" + uuid.uuid4().hex
    text = """
name: watch
nodes:
  watch:
    class: nanostream.nodes.watch:PrefixWatcher
    args:
      prefix: memory://yaml-inbox/
      pattern: "*.csv"
      storage_options: {secret: "${S3_SECRET}"}
  read:
    class: nanostream.nodes.formats:CSVReader
    args: {paths: true, storage_options: {secret: "${S3_SECRET}"}}
  sink: {class: "nanostream.testing:Collect"}
"""
    pipeline = nanostream.load_pipeline(io.StringIO(text), env={"S3_SECRET": secret})
    watch = next(n for n in pipeline.nodes if n.name == "watch")
    assert isinstance(watch, PrefixWatcher) and watch.pattern == "*.csv"
    written = nanostream.to_yaml(pipeline)
    assert secret not in written
    assert written.count("secret: '***'") == 2
    again = nanostream.load_pipeline(io.StringIO(written))  # the rest is as it was
    assert [(n.name, type(n).__name__) for n in again.nodes] == [
        (n.name, type(n).__name__) for n in pipeline.nodes
    ]


def test_the_folder_watchdog_given_a_url_points_to_the_prefix_watcher() -> None:
    from nanostream.nodes import LocalDirectoryWatchdog

    watch = LocalDirectoryWatchdog("s3://bucket/in/", polling=True)
    with pytest.raises(nanostream.GraphError, match="PrefixWatcher"):
        watch.validate()


@pytest.fixture
def no_aws_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials but those a test sets, and never the instance metadata service."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)


def test_s3_credentials_come_from_the_usual_chain_without_storage_options(
    s3_store: Store, no_aws_config: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s3_store.put("in/a.csv", b"a,b\n1,2\n")
    assert s3_store.options is not None
    options = {
        "endpoint_url": s3_store.options["endpoint_url"],
        "client_kwargs": {"region_name": "eu-west-1"},
        "skip_instance_cache": True,  # a new client, that looks for credentials again
    }

    def read() -> list[Any]:
        reader = CSVReader(paths=True, storage_options=options)
        return run_through([s3_store.url("in/a.csv")], reader, runner="threads")

    with pytest.raises(nanostream.NodeFailed, match=r"(?i)credentials"):
        read()  # none anywhere
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    assert read() == [{"a": "1", "b": "2"}]  # from the environment
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    profile = tmp_path / "credentials"
    profile.write_text(f"[etl]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile))
    options["profile"] = "etl"
    assert read() == [{"a": "1", "b": "2"}]  # from a profile of the shared credentials file


@pytest.mark.parametrize("kind", ["parquet", "feather"])
def test_columnar_files_round_trip_through_a_store(
    store: Store, local_runner: str, kind: str
) -> None:
    """ParquetWriter/FeatherWriter publish to a URL; the readers read it back from there."""
    pytest.importorskip("pyarrow", reason="pip install 'nanostream[parquet]'")
    from nanostream.nodes.columnar import FeatherReader, FeatherWriter, ParquetReader, ParquetWriter

    writer, reader = (
        (ParquetWriter, ParquetReader)
        if kind == "parquet"
        else (
            FeatherWriter,
            FeatherReader,
        )
    )
    rows = [{"id": i, "name": f"n{i}", "price": i / 4} for i in range(500)]
    url = store.url(f"rows.{kind}")
    published = run_through(rows, writer(url, storage_options=store.options), runner=local_runner)
    assert [str(p) for p in published] == [url]
    assert store.listing() == [f"rows.{kind}"]
    back = run_through([url], reader(storage_options=store.options), runner=local_runner)
    assert back == rows


# ----------------------------------------------------------------------------- racing writers
@pytest.fixture(params=["s3", "az"])
def conditional_store(request: pytest.FixtureRequest) -> Store:
    """A fresh folder in a store whose put can be conditional: moto's S3, Azurite."""
    return _s3_store(request) if request.param == "s3" else _az_store(request)


def test_of_two_writers_racing_to_publish_a_key_the_second_is_refused(
    conditional_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conditional put (``If-None-Match: *``): the loser's object never replaces the
    winner's, even when it looked before the winner's put landed."""
    from nanostream.connectors._filesystems import StorageOptions

    options = StorageOptions(conditional_store.options)
    first = AtomicFile(
        conditional_store.url("out.txt"), replace=False, node="a", storage_options=options
    )
    second = AtomicFile(
        conditional_store.url("out.txt"), replace=False, node="b", storage_options=options
    )
    first.file.write("first\n")
    second.file.write("second\n")
    assert first.commit() == conditional_store.url("out.txt")
    # the second looked while the key was free: nothing but the put itself can stop it now
    monkeypatch.setattr(type(conditional_store.fs), "isfile", lambda self, path: False)
    monkeypatch.setattr(type(conditional_store.fs), "exists", lambda self, path: False)
    with pytest.raises(OutputExistsError, match="another writer published it"):
        second.commit()
    assert conditional_store.get("out.txt") == b"first\n"
    assert AtomicFile.leftovers(conditional_store.url("out.txt")) == []


def test_a_writer_that_may_replace_replaces_what_another_published(
    conditional_store: Store,
) -> None:
    from nanostream.connectors._filesystems import StorageOptions

    options = StorageOptions(conditional_store.options)
    first = AtomicFile(conditional_store.url("out.txt"), replace=False, storage_options=options)
    second = AtomicFile(conditional_store.url("out.txt"), storage_options=options)
    first.file.write("first\n")
    second.file.write("second\n")
    first.commit()
    second.commit()
    assert conditional_store.get("out.txt") == b"second\n"


def test_a_writer_refused_at_publishing_fails_the_run_naming_it(
    conditional_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is free when the run starts; another writer publishes it meanwhile."""
    so = conditional_store.options
    writer = JSONLinesWriter(conditional_store.url("rows.jsonl"), name="rows", storage_options=so)
    original = AtomicFile.commit

    def publish_first(self: AtomicFile) -> str:
        conditional_store.put("rows.jsonl", b'{"other": 1}\n')  # the other writer wins the race
        return original(self)

    monkeypatch.setattr(AtomicFile, "commit", publish_first)
    nanostream.from_iterable([{"id": 1}]) > writer
    with pytest.raises(nanostream.NodeFailed, match=r"node 'rows' would replace .*another writer"):
        writer.global_start()
    assert conditional_store.get("rows.jsonl") == b'{"other": 1}\n'


# ----------------------------------------------------------------------------- killed writers
def _dead_pid() -> int:
    """The id of a process that has ended (a killed writer's, for its leftovers' names)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_upload_folders_of_a_killed_writer_are_removed_on_the_next_start(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where uploads are built
    from nanostream.connectors._publish import _staging_prefix

    mine = _staging_prefix()  # nanostream-upload-<host>-<this process's id>-
    host_prefix = mine[: -len(f"{os.getpid()}-")]
    dead = tmp_path / f"{host_prefix}{_dead_pid()}-k1ll3d"
    dead.mkdir()
    (dead / "out.jsonl").write_text('{"half": "a file"}\n')
    running = [  # this process's and a running one's: they may be in use
        tmp_path / f"{mine}m1ne",
        tmp_path / f"{host_prefix}{os.getppid()}-0ther",
        tmp_path / f"nanostream-upload-another.host-{_dead_pid()}-abc",  # its pids aren't ours
        tmp_path / "nanostream-upload-n0p1d",  # not named by a writer: left alone
    ]
    for folder in running:
        folder.mkdir()
    writer = JSONLinesWriter(store.url("out.jsonl"), name="out", storage_options=store.options)
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        run_through([{"id": 1}], writer)
    assert not dead.exists()
    assert all(folder.exists() for folder in running)
    assert store.get("out.jsonl") == b'{"id":1}\n'
    assert "node 'out' removed 1 temporary file(s)" in caplog.text and dead.name in caplog.text
    # a writer of files per item into a folder at a URL cleans them too
    dead.mkdir()
    writer = FileWriter(
        directory=store.url("each"), filename="{n}.txt", storage_options=store.options
    )
    run_through(["a"], writer)
    assert not dead.exists() and all(folder.exists() for folder in running)


def test_hidden_objects_of_a_writer_killed_before_its_rename_are_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On a store whose put writes in place, a killed writer leaves ``.name.<hex>.tmp``."""
    store = Store("memory", f"memory://t{uuid.uuid4().hex[:10]}", None)
    store.put(".out.jsonl.0123abcd.tmp", b'{"half": 1}\n')  # killed between put and rename
    store.put("parts/.p-0003.jsonl.89abcdef.tmp", b'{"half": 2}\n')
    store.put(".other.jsonl.0123abcd.tmp", b"another target's")
    store.put(".out.jsonl.not-hex.tmp", b"not a temporary name of ours")
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        run_through([{"id": 1}], JSONLinesWriter(store.url("out.jsonl"), name="out"))
        template = store.url("parts/p-{part:04d}.jsonl")
        run_through([{"id": 2}], JSONLinesWriter(template, rotate_items=5, name="parts"))
    assert store.listing() == [
        ".other.jsonl.0123abcd.tmp",
        ".out.jsonl.not-hex.tmp",
        "out.jsonl",
        "parts/p-0000.jsonl",
    ]
    assert "node 'out' removed 1 temporary file(s)" in caplog.text
    assert ".out.jsonl.0123abcd.tmp" in caplog.text and ".p-0003.jsonl.89abcdef.tmp" in caplog.text
    store.fs.rm(store.inner, recursive=True)


def test_an_object_store_has_no_hidden_objects_to_remove(s3_store: Store) -> None:
    from nanostream.connectors._publish import store_leftovers

    s3_store.put(".out.jsonl.0123abcd.tmp", b"not ours: S3 writers put whole objects")
    assert store_leftovers(s3_store.url("out.jsonl"), None) == []
    so = s3_store.options
    run_through([{"id": 1}], JSONLinesWriter(s3_store.url("out.jsonl"), storage_options=so))
    assert s3_store.listing() == [".out.jsonl.0123abcd.tmp", "out.jsonl"]


# ----------------------------------------------------------------------------- exactly once
class _CrashAtPublish(JSONLinesWriter):
    """An exactly-once writer whose process "dies" at its ``crash_at``-th commit: before
    it publishes the parts (``before-publish``) or right after (``after-publish``)."""

    def __init__(self, url: str, options: dict[str, Any] | None, crash: str | None) -> None:
        super().__init__(url, exactly_once=True, storage_options=options, name="out")
        self.crash, self.commits = crash, 0

    def checkpoint_committed(self) -> None:
        self.commits += 1
        if self.crash == "before-publish" and self.commits == 2:
            raise RuntimeError("crash between the commit and the publish")
        super().checkpoint_committed()
        if self.crash == "after-publish" and self.commits == 2:
            raise RuntimeError("crash after the publish, before the next commit")


def _memory_root() -> str:
    return f"memory://t{uuid.uuid4().hex[:10]}"


def _objects(store: Store, under: str) -> dict[str, bytes]:
    return {key: store.get(key) for key in store.listing() if key.startswith(f"{under}/")}


@pytest.mark.parametrize("crash", ["before-commit", "before-publish", "after-publish"])
@pytest.mark.parametrize("kind", ["s3", "memory"])
def test_an_exactly_once_writer_at_a_url_publishes_the_objects_of_an_uninterrupted_run(
    request: pytest.FixtureRequest, kind: str, local_runner: str, crash: str, tmp_path: Path
) -> None:
    """A crash between sealing a part and its checkpoint's commit (the source fails), or
    between the commit and the put of the part (or just after the put): after the
    restart the store holds the same objects, byte for byte, as a run with no crash."""
    from support import Numbered

    where = _s3_store(request) if kind == "s3" else Store("memory", _memory_root(), None)

    def run(under: str, state: Path, fail_after: int | None, crash: str | None) -> None:
        url = where.url(f"{under}/part-{{part:05d}}.jsonl")
        writer = _CrashAtPublish(url, where.options, crash)
        Numbered(20, fail_after=fail_after) > writer
        writer.global_start(state=str(state), checkpoint_items=3, runner=local_runner)

    run("plain", tmp_path / "plain.state", None, None)
    expected = _objects(where, "plain")
    assert len(expected) == 7  # a part per checkpoint of 3 rows, and the last 2 rows

    state = tmp_path / "run.state"
    if crash == "before-commit":
        with pytest.raises(nanostream.NodeFailed, match="numbers"):
            run("out", state, 7, None)  # the part of rows 7 was sealed, never committed
    else:
        with pytest.raises(nanostream.NodeFailed, match="'out'"):
            run("out", state, None, crash)
    published = _objects(where, "out")
    assert published == {k: expected[k.replace("out/", "plain/")] for k in published}
    run("out", state, None, None)
    got = {k.replace("out/", "plain/"): v for k, v in _objects(where, "out").items()}
    assert got == expected


@pytest.mark.parametrize("kind", ["csv", "parquet", "feather"])
def test_exactly_once_parts_of_every_format_at_a_url_hold_each_row_once(
    local_runner: str, kind: str, tmp_path: Path
) -> None:
    """A CSV part has its header, a columnar part its footer: each part read back alone
    holds the rows of its checkpoint, every row once across a crash."""
    from support import Numbered

    if kind == "csv":
        writer_class: Any = CSVWriter
        read: Any = lambda: CSVReader(paths=True)  # noqa: E731
    else:
        pytest.importorskip("pyarrow", reason="pip install 'nanostream[parquet]'")
        from nanostream.nodes import columnar

        writer_class = columnar.ParquetWriter if kind == "parquet" else columnar.FeatherWriter
        read = columnar.ParquetReader if kind == "parquet" else columnar.FeatherReader
    where = Store("memory", _memory_root(), None)
    state = str(tmp_path / "run.state")
    for fail_after in (7, None):
        writer = writer_class(where.url(f"part-{{part:03d}}.{kind}"), exactly_once=True)
        Numbered(20, fail_after=fail_after) > writer.configure(name="out")
        if fail_after is None:
            writer.global_start(state=state, checkpoint_items=3, runner=local_runner)
        else:
            with pytest.raises(nanostream.NodeFailed, match="numbers"):
                writer.global_start(state=state, checkpoint_items=3, runner=local_runner)
    keys = where.listing()
    assert len(keys) == 7
    rows = [
        int(row["n"])
        for key in keys
        for row in run_through([where.url(key)], read(), runner="threads")
    ]
    assert rows == list(range(1, 21))
