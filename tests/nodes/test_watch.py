"""LocalDirectoryWatchdog on real folders: appear, modify, half-written, many files, nested
folders, restart with a ledger, prompt stop, and the guide's first example."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.nodes import CSVReader, LocalDirectoryWatchdog, LocalFileReader
from nanostream.testing import Collect

WAIT = 20  # seconds to wait for an event before failing


@pytest.fixture(params=["events", "polling"])
def mode(request: pytest.FixtureRequest) -> str:
    """Each behaviour with watchdog events and with the polling fallback."""
    return str(request.param)


def watchdog(folder: Path, mode: str, **options: Any) -> LocalDirectoryWatchdog:
    options.setdefault("settle", 0.05)
    options.setdefault("poll_interval", 0.02)
    return LocalDirectoryWatchdog(folder, polling=mode == "polling", **options)


def start(source: nanostream.NanoNode, sink: Collect, runner: str) -> nanostream.Run:
    run = sink.global_start(block=False, runner=runner)
    assert run is not None
    if isinstance(source, LocalDirectoryWatchdog):
        assert source.ready.wait(WAIT)
    return run


class Steps(Collect):
    """A Collect sink that sets the event ``step1`` once it holds ``steps[0]`` items,
    ``step2`` once it holds ``steps[1]``, and so on (``seen`` with the last).

    Events of the node, so that on ray the test's copies are set too while the run goes
    on (the items themselves come back when the run ends): the test waits for each step
    instead of changing ``wait_for`` during the run, which a node in another process
    would not see.
    """

    def __init__(self, *steps: int, **options: Any) -> None:
        steps = steps or (1,)
        super().__init__(wait_for=steps[-1], **options)
        self.steps = steps
        for i in range(len(steps)):
            setattr(self, f"step{i + 1}", threading.Event())

    def step(self, i: int) -> threading.Event:
        """The event of step ``i`` (from 1)."""
        event = getattr(self, f"step{i}")
        assert isinstance(event, threading.Event)
        return event

    def process_item(self, item: Any) -> Iterator[Any]:
        yield from super().process_item(item)
        for i, n in enumerate(self.steps, 1):
            if len(self.items) >= n:
                self.step(i).set()


def names(items: list[Any], folder: Path) -> list[str]:
    return [os.path.relpath(p, folder) for p in items]


def test_files_present_at_start_and_new_files_are_emitted(
    tmp_path: Path, mode: str, runner: str
) -> None:
    (tmp_path / "old.csv").write_text("a\n")
    (tmp_path / "notes.txt").write_text("not a csv\n")
    (tmp_path / ".hidden.csv").write_text("hidden\n")
    watch = watchdog(tmp_path, mode, pattern="*.csv")
    sink = Collect(wait_for=2)
    watch > sink
    run = start(watch, sink, runner)
    (tmp_path / "new.csv").write_text("b\n")
    assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert sorted(names(sink.items, tmp_path)) == ["new.csv", "old.csv"]
    assert all(os.path.isabs(p) for p in sink.items)


def test_only_new_skips_the_files_already_there(tmp_path: Path, mode: str, runner: str) -> None:
    (tmp_path / "old.csv").write_text("a\n")
    watch = watchdog(tmp_path, mode, only_new=True)
    sink = Collect()
    watch > sink
    run = start(watch, sink, runner)
    (tmp_path / "new.csv").write_text("b\n")
    assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert names(sink.items, tmp_path) == ["new.csv"]


def test_a_modified_file_is_emitted_again_with_its_new_content(
    tmp_path: Path, mode: str, runner: str
) -> None:
    path = tmp_path / "data.txt"
    path.write_text("version 1\n")
    watch = watchdog(tmp_path, mode)
    sink = Steps(1, 2)
    watch > LocalFileReader() > sink
    run = start(watch, sink, runner)
    assert sink.step(1).wait(WAIT)
    path.write_text("version 2, longer\n")
    assert sink.step(2).wait(WAIT)
    run.stop(timeout=WAIT)
    assert sink.items == ["version 1\n", "version 2, longer\n"]


def test_a_half_written_file_is_emitted_only_once_it_has_stopped_changing(
    tmp_path: Path, mode: str, runner: str
) -> None:
    big = tmp_path / "big.txt"
    watch = watchdog(tmp_path, mode, settle=0.5)
    sink = Steps(1, 2)
    watch > LocalFileReader() > sink
    with big.open("w") as f:
        f.write("start\n")
        f.flush()
        run = start(watch, sink, runner)
        (tmp_path / "other.txt").write_text("other\n")
        # keep writing (well within `settle`) until the other file has been emitted
        writes = 0
        while not sink.step(1).wait(0.01):
            f.write("more\n")
            f.flush()
            writes += 1
        f.write("end\n")
    assert sink.step(2).wait(WAIT)
    run.stop(timeout=WAIT)
    assert writes > 10
    # the other file first, then the big one once, complete: never half of it
    assert sink.items == ["other\n", "start\n" + "more\n" * writes + "end\n"]


def test_a_thousand_files_at_once_are_each_emitted_once(
    tmp_path: Path, mode: str, runner: str
) -> None:
    watch = watchdog(tmp_path, mode, pattern="*.csv")
    sink = Steps(1000, 1001)
    watch > sink
    run = start(watch, sink, runner)
    expected = {f"f{i:04d}.csv" for i in range(1000)}
    for name in sorted(expected):
        # whole files at once (written under a hidden name, renamed): on a loaded machine
        # a file written in place could be emitted empty, and again once written
        (tmp_path / f".{name}").write_text(f"{name}\n")
        (tmp_path / f".{name}").rename(tmp_path / name)
    assert sink.step(1).wait(WAIT)
    # A file dropped after all of them is emitted after all of them: once it is seen,
    # any repeat would have been seen too.
    (tmp_path / "zz-last.csv").write_text("last\n")
    assert sink.step(2).wait(WAIT)
    run.stop(timeout=WAIT)
    counts = Counter(names(sink.items, tmp_path))
    assert set(counts) == expected | {"zz-last.csv"}
    assert max(counts.values()) == 1


def test_nested_folders_with_recursive(tmp_path: Path, mode: str, runner: str) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.csv").write_text("1\n")
    (tmp_path / "a" / "b" / "two.csv").write_text("2\n")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "skip.csv").write_text("hidden folder\n")
    (tmp_path / "top.csv").write_text("0\n")
    watch = watchdog(tmp_path, mode, pattern="*.csv", recursive=True)
    sink = Steps(3, 4)
    watch > sink
    run = start(watch, sink, runner)
    assert sink.step(1).wait(WAIT)
    # a folder created while running, with a file written into it at once
    (tmp_path / "new" / "deep").mkdir(parents=True)
    (tmp_path / "new" / "deep" / "three.csv").write_text("3\n")
    assert sink.step(2).wait(WAIT)
    run.stop(timeout=WAIT)
    assert sorted(names(sink.items, tmp_path)) == sorted(
        ["a/one.csv", "a/b/two.csv", "top.csv", "new/deep/three.csv"]
    )


def test_without_recursive_sub_folders_are_ignored(tmp_path: Path, mode: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.csv").write_text("1\n")
    watch = watchdog(tmp_path, mode)
    sink = Collect(wait_for=2)
    watch > sink
    run = start(watch, sink, "threads")
    (tmp_path / "sub" / "later.csv").write_text("2\n")
    (tmp_path / "top.csv").write_text("0\n")
    (tmp_path / "top2.csv").write_text("0\n")
    assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert sorted(names(sink.items, tmp_path)) == ["top.csv", "top2.csv"]


def test_a_deleted_and_recreated_file_is_emitted_again(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "x.txt"
    path.write_text("same\n")
    watch = watchdog(tmp_path, mode)
    sink = Collect()
    watch > sink
    run = start(watch, sink, "threads")
    assert sink.seen.wait(WAIT)
    path.unlink()
    # wait until the deletion has been noticed: a file written after it is emitted after
    sink.seen.clear()
    sink.wait_for = 2
    (tmp_path / "marker.txt").write_text("m\n")
    assert sink.seen.wait(WAIT)
    sink.seen.clear()
    sink.wait_for = 3
    path.write_text("same\n")
    assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert names(sink.items, tmp_path) == ["x.txt", "marker.txt", "x.txt"]


def test_with_events_a_periodic_rescan_finds_files_whose_events_were_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nanostream.connectors import watch as watch_module

    monkeypatch.setattr(watch_module._Changes, "dispatch", lambda self, event: None)
    watch = watchdog(tmp_path, "events", rescan_interval=0.05)
    sink = Collect()
    watch > sink
    run = start(watch, sink, "threads")
    (tmp_path / "quiet.txt").write_text("no event for me\n")
    assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert names(sink.items, tmp_path) == ["quiet.txt"]


def test_symbolic_links_out_of_the_folder_are_left_out_and_named_once(
    tmp_path: Path, mode: str, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder, outside = tmp_path / "in", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "secret.csv").write_text("secret\n")
    (folder / "real.csv").write_text("real\n")
    (folder / "out.csv").symlink_to(outside / "secret.csv")
    (folder / "in.csv").symlink_to(folder / "real.csv")  # a link inside: fine
    watch = watchdog(folder, mode, name="watch")
    sink = Steps(3, 4)
    watch > sink
    with caplog.at_level(logging.WARNING, logger="nanostream.watch"):
        run = start(watch, sink, runner)
        (folder / "z1.csv").write_text("marker\n")  # settles after the files already there
        assert sink.step(1).wait(WAIT)
        (outside / "secret.csv").write_text("secret, changed\n")  # out.csv changes too
        (folder / "z2.csv").write_text("marker\n")
        assert sink.step(2).wait(WAIT)
        run.stop(timeout=WAIT)
    assert sorted(names(sink.items, folder)) == ["in.csv", "real.csv", "z1.csv", "z2.csv"]
    if runner != "ray":  # the warning is logged in the node's process
        (warning,) = [r.getMessage() for r in caplog.records if r.name == "nanostream.watch"]
        assert f"LocalDirectoryWatchdog 'watch' leaves out {folder / 'out.csv'}" in warning
        assert str(outside / "secret.csv") in warning
        assert "follow_outside_links=True" in warning


def test_follow_outside_links_emits_links_out_of_the_folder(tmp_path: Path, mode: str) -> None:
    folder, outside = tmp_path / "in", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "shared.csv").write_text("shared\n")
    (folder / "out.csv").symlink_to(outside / "shared.csv")
    watch = watchdog(folder, mode, follow_outside_links=True)
    sink = Collect()
    watch > sink
    run = start(watch, sink, "threads")
    assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert names(sink.items, folder) == ["out.csv"]


# ----------------------------------------------------------------------------- the ledger
def run_until(
    folder: Path, mode: str, ledger: Path, expect: int, *, marker: str | None = None, **kw: Any
) -> list[str]:
    """Run a watchdog with a ledger until ``expect`` items came (then a marker file)."""
    watch = watchdog(folder, mode, state=ledger, **kw)
    sink = Collect(wait_for=expect)
    watch > sink
    run = start(watch, sink, "threads")
    if expect:
        assert sink.seen.wait(WAIT)
    if marker is not None:
        sink.seen.clear()
        sink.wait_for = expect + 1
        (folder / marker).write_text(marker)
        assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    return names(sink.items, folder)


def test_a_restart_with_a_ledger_neither_repeats_nor_misses(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ledger = tmp_path / "ledger.sqlite"
    (folder / "a.csv").write_text("a\n")
    (folder / "b.csv").write_text("b\n")
    (folder / "c.csv").write_text("c\n")
    assert sorted(run_until(folder, mode, ledger, 3)) == ["a.csv", "b.csv", "c.csv"]

    # while it is down: one file changes, one is only touched, one goes, one arrives
    (folder / "a.csv").write_text("a, changed\n")
    stat = (folder / "b.csv").stat()
    os.utime(folder / "b.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    (folder / "c.csv").unlink()
    (folder / "d.csv").write_text("d\n")
    second = run_until(folder, mode, ledger, 2, marker="m1.csv")
    assert sorted(second[:2]) == ["a.csv", "d.csv"]
    assert second[2:] == ["m1.csv"]

    # nothing changed: nothing is emitted but the marker; a deleted file that comes back
    # is new again
    assert run_until(folder, mode, ledger, 0, marker="m2.csv") == ["m2.csv"]
    (folder / "c.csv").write_text("c\n")
    assert run_until(folder, mode, ledger, 1, marker="m3.csv") == ["c.csv", "m3.csv"]

    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT path, size, hash FROM files ORDER BY path").fetchall()
    assert [Path(p).name for p, _, _ in rows] == [
        *["a.csv", "b.csv", "c.csv", "d.csv"],
        *["m1.csv", "m2.csv", "m3.csv"],
    ]
    assert all(size > 0 and isinstance(digest, str) for _, size, digest in rows)


def test_only_new_with_a_ledger_applies_to_the_first_start_only(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ledger = tmp_path / "ledger.sqlite"
    (folder / "old.csv").write_text("old\n")
    assert run_until(folder, mode, ledger, 0, marker="m1.csv", only_new=True) == ["m1.csv"]
    (folder / "while-down.csv").write_text("new\n")
    assert run_until(folder, mode, ledger, 1, marker="m2.csv", only_new=True) == [
        "while-down.csv",
        "m2.csv",
    ]


def test_the_ledger_inside_the_watched_folder_is_not_emitted(tmp_path: Path, mode: str) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    assert run_until(tmp_path, mode, tmp_path / "ledger.db", 1, marker="m.txt") == [
        "a.txt",
        "m.txt",
    ]


def in_ledger(ledger: Path, path: str) -> bool:
    """Whether the ledger records ``path`` as emitted (and done with)."""
    if not ledger.exists():
        return False
    with closing(sqlite3.connect(ledger)) as db:
        found = db.execute("SELECT 1 FROM files WHERE path = ? AND emitted = 1", (path,))
        return found.fetchone() is not None


class LedgerAtReceipt(Steps):
    """Notes, for each path it gets, whether the ledger has it; fails on file ``fail_at``."""

    def __init__(self, ledger: Path, *steps: int, fail_at: str | None = None) -> None:
        super().__init__(*steps)
        self.ledger = ledger
        self.fail_at = fail_at
        self.in_ledger_at: list[bool] = []

    def process_item(self, item: Any) -> Iterator[Any]:
        self.in_ledger_at.append(in_ledger(self.ledger, item))
        yield from super().process_item(item)
        if Path(item).name == self.fail_at:
            raise RuntimeError(f"the sink failed on {self.fail_at}")


def test_a_file_enters_the_ledger_once_the_sink_is_done_else_it_comes_again(
    tmp_path: Path, mode: str, runner: str, acks: bool
) -> None:
    if not acks:
        pytest.skip(f"the {runner} runner does not call acknowledgements")
    folder = tmp_path / "in"
    folder.mkdir()
    ledger = tmp_path / "ledger.sqlite"
    files = [f"{name}.csv" for name in "abcde"]
    for name in files:
        (folder / name).write_text(name)
    first = LedgerAtReceipt(ledger, fail_at="c.csv")
    watch = watchdog(folder, mode, state=ledger)
    watch > first
    run = start(watch, first, runner)
    with pytest.raises(nanostream.NodeFailed, match=r"the sink failed on c\.csv"):
        run.wait(WAIT)
    assert names(first.items, folder) == ["a.csv", "b.csv", "c.csv"]  # settled together
    assert first.in_ledger_at == [False] * 3  # not recorded while the sink had them
    assert not in_ledger(ledger, str(folder / "c.csv"))  # nor after the sink failed on it
    done = {p for p in first.items if in_ledger(ledger, p)}  # a.csv, b.csv, or some of them

    left = len(files) - len(done)
    second = LedgerAtReceipt(ledger, left, left + 1)
    watch = watchdog(folder, mode, state=ledger)
    watch > second
    run = start(watch, second, runner)
    assert second.step(1).wait(WAIT)
    (folder / "z.csv").write_text("after")  # a marker: anything else would come before it
    assert second.step(2).wait(WAIT)
    run.stop(timeout=WAIT)
    again = names(second.items, folder)
    assert "c.csv" in again  # the file the sink failed on comes again...
    assert sorted(again[:-1]) == sorted(set(files) - {os.path.basename(p) for p in done})
    assert again[-1] == "z.csv"  # ...with every file not done, and nothing done
    assert second.in_ledger_at == [False] * len(again)
    assert all(in_ledger(ledger, str(folder / name)) for name in [*files, "z.csv"])


def break_ledger(ledger: Path, table: str = "files", to: str = "files_away") -> None:
    """Rename the ledger's table (another program's doing): looks that use it fail."""
    with closing(sqlite3.connect(ledger)) as db:
        db.execute(f"ALTER TABLE {table} RENAME TO {to}")
        db.commit()


def test_a_look_that_fails_is_skipped_and_the_watchdog_goes_on(
    tmp_path: Path, mode: str, runner: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ledger = tmp_path / "ledger.sqlite"
    sink, dead = Collect(), Collect()
    watch = watchdog(folder, mode, state=ledger, on_error="skip", name="watch")
    watch > sink
    watch.errors > dead
    run = start(watch, sink, runner)
    try:
        break_ledger(ledger)
        (folder / "a.csv").write_text("a")
        assert dead.seen.wait(WAIT)  # the look that met a.csv could not read the ledger
        break_ledger(ledger, "files_away", "files")
        assert sink.seen.wait(WAIT)  # a later look emits it: the watchdog went on
    finally:
        run.stop(timeout=WAIT)
    assert run.state == "finished"
    assert names(sink.items, folder) == ["a.csv"]
    record = dead.items[0]
    assert (record.node, record.item) == ("watch", None)
    assert "no such table: files" in record.message


def test_a_look_that_fails_fails_the_run_by_default(tmp_path: Path, mode: str, runner: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ledger = tmp_path / "ledger.sqlite"
    watch = watchdog(folder, mode, state=ledger)
    sink = Collect()
    watch > sink
    run = start(watch, sink, runner)
    break_ledger(ledger)
    (folder / "a.csv").write_text("a")
    with pytest.raises(nanostream.NodeFailed, match="no such table: files"):
        run.wait(WAIT)


def test_a_csv_reader_given_the_watchdogs_paths_as_text_fails_and_the_file_is_not_done(
    tmp_path: Path, mode: str, runner: str, acks: bool
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ledger = tmp_path / "ledger.sqlite"
    (folder / "people.csv").write_text("name,age\nada,36\n")
    watch = watchdog(folder, mode, state=ledger)
    nothing = Collect()
    watch > CSVReader(name="csv") > nothing
    run = start(watch, nothing, runner)
    try:
        with pytest.raises(nanostream.NodeFailed, match="'csv'") as info:
            run.wait(WAIT)
    finally:
        if run.state == "running":  # it did not fail: stop it before failing the test
            run.stop(timeout=WAIT)
    message = str(info.value.__cause__)
    assert f"CSVReader 'csv' got {str(folder / 'people.csv')!r}, the path of a file" in message
    assert "pass paths=True" in message and "put a LocalFileReader before it" in message
    assert not in_ledger(ledger, str(folder / "people.csv"))

    # the corrected pipeline reads the file: it was not recorded as done
    watch = watchdog(folder, mode, state=ledger)
    rows = Collect()
    watch > CSVReader(paths=True) > rows
    run = start(watch, rows, runner)
    assert rows.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert rows.items == [{"name": "ada", "age": "36"}]
    assert in_ledger(ledger, str(folder / "people.csv")) == acks


# ----------------------------------------------------------------------------- lifecycle
def test_stop_is_prompt_even_with_long_intervals(tmp_path: Path, mode: str, runner: str) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    watch = watchdog(tmp_path, mode, settle=30, poll_interval=30)
    sink = Collect()
    watch > sink
    run = start(watch, sink, runner)
    began = time.monotonic()
    run.stop(timeout=WAIT)
    assert time.monotonic() - began < 10  # not the 30 s of an interval
    assert run.state == "finished"
    assert sink.items == []  # 'a.txt' had not settled yet


def test_a_missing_directory_is_refused_before_the_run_starts(tmp_path: Path) -> None:
    watch = LocalDirectoryWatchdog(tmp_path / "nope", polling=True)
    watch > Collect()
    with pytest.raises(nanostream.GraphError, match="not an existing directory"):
        watch.global_start()


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(nanostream.GraphError, match="settle"):
        LocalDirectoryWatchdog(tmp_path, settle=-1, polling=True)
    with pytest.raises(nanostream.GraphError, match="poll_interval"):
        LocalDirectoryWatchdog(tmp_path, poll_interval=0, polling=True)
    with pytest.raises(nanostream.GraphError, match="pattern"):
        LocalDirectoryWatchdog(tmp_path, pattern=[], polling=True)


def test_without_the_watchdog_package_events_need_the_extra_and_polling_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "watchdog", None)
    monkeypatch.setitem(sys.modules, "watchdog.observers", None)
    with pytest.raises(nanostream.MissingDependencyError, match=r"nanostream\[files\]"):
        LocalDirectoryWatchdog(tmp_path)
    (tmp_path / "a.txt").write_text("a\n")
    watch = LocalDirectoryWatchdog(tmp_path, polling=True, settle=0.01, poll_interval=0.01)
    sink = Collect()
    watch > sink
    run = start(watch, sink, "threads")
    assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert names(sink.items, tmp_path) == ["a.txt"]


def test_the_guides_first_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nanostream import CSVReader, LocalDirectoryWatchdog, LocalFileReader, PrinterOfThings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data_directory").mkdir()
    (tmp_path / "data_directory" / "people.csv").write_text("name,age\nada,36\nalan,41\n")

    # Instantiate the classes:
    watchdog = LocalDirectoryWatchdog(directory="./data_directory")
    file_reader = LocalFileReader(serialize=False)
    csv_reader = CSVReader()
    printer = PrinterOfThings()

    # Use ">" to create connections between the nodes
    watchdog > file_reader > csv_reader > printer

    sink = Collect(wait_for=2)
    printer > sink  # only so that the test can wait for the rows
    run = watchdog.global_start(block=False)
    assert run is not None
    assert sink.seen.wait(WAIT)
    run.stop(timeout=WAIT)
    assert capsys.readouterr().out.splitlines() == [
        "{'name': 'ada', 'age': '36'}",
        "{'name': 'alan', 'age': '41'}",
    ]
