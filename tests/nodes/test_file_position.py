"""File readers keep their place inside a file in checkpoints (docs/state.md).

A run fails in its sink in the middle of a file; the checkpoint it committed last holds
the reader's position inside that file, and a restart emits the rest of the file and
nothing twice.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream.nodes import CSVReader, JSONLinesReader, LocalFileReader
from nanostream.state import open_store

LOCAL = ["threads", "cooperative"]
ROWS = 400


class Paths(nanostream.NanoNode):
    """Emits ``paths`` from its stored position, then waits (letting barriers out) until
    ``done`` is set."""

    def __init__(self, paths: list[str], done: threading.Event) -> None:
        super().__init__(name="paths")
        self.paths = paths
        self.done = done

    def setup(self) -> None:
        self.position = 0

    def generator(self) -> Iterator[Any]:
        while self.position < len(self.paths):
            self.position += 1
            yield self.paths[self.position - 1]
        while not self.done.is_set():
            if self.sleep(0.002):
                return

    def snapshot_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


class Keep(nanostream.NanoNode):
    """Exactly once into memory; fails at its ``fail_at``-th item; sets ``done`` at ``total``."""

    exactly_once = True

    def __init__(self, done: threading.Event, total: int, fail_at: int | None = None) -> None:
        # a short queue: the reader waits for the sink now and then, and on the
        # cooperative runner the source gets its turns (and sends barriers) meanwhile
        super().__init__(name="keep", queue_size=8)
        self.items: list[Any] = []
        self.done, self.total, self.fail_at = done, total, fail_at
        self.received = 0

    def process_item(self, item: Any) -> None:
        self.received += 1
        if self.received == self.fail_at:
            self.done.set()  # the source ends too
            raise RuntimeError("crash")
        self.items.append(item)
        if len(self.items) >= self.total:
            self.done.set()

    def snapshot_state(self) -> list[Any]:
        return self.items

    def restore_state(self, state: list[Any]) -> None:
        self.items = list(state)


def _csv(path: Path, start: int) -> None:
    path.write_text("n\n" + "".join(f"{i}\n" for i in range(start, start + ROWS)))


def _jsonl(path: Path, start: int) -> None:
    lines = "".join(json.dumps({"n": i}) + "\n" for i in range(start, start + ROWS))
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(lines.encode()))
    else:
        path.write_text(lines)


def _lines(path: Path, start: int) -> None:
    path.write_text("".join(f"{i}\n" for i in range(start, start + ROWS)))


READERS: dict[str, tuple[str, Callable[[Path, int], None], Callable[[], nanostream.NanoNode]]] = {
    "csv": (".csv", _csv, lambda: CSVReader(paths=True, types={"n": int}, name="reader")),
    "csv-skip": (
        ".csv",
        _csv,
        lambda: CSVReader(paths=True, types={"n": int}, name="reader", on_error="skip"),
    ),
    "jsonl": (".jsonl", _jsonl, lambda: JSONLinesReader(paths=True, name="reader")),
    "jsonl-gzip": (".jsonl.gz", _jsonl, lambda: JSONLinesReader(paths=True, name="reader")),
    "lines": (
        ".txt",
        _lines,
        lambda: LocalFileReader(serialize=True, name="reader"),
    ),
}


@pytest.mark.parametrize("runner", LOCAL)
@pytest.mark.parametrize("kind", sorted(READERS))
def test_a_restart_resumes_inside_the_file(tmp_path: Path, runner: str, kind: str) -> None:
    suffix, write, reader = READERS[kind]
    paths = []
    for i in range(2):
        path = tmp_path / f"part{i}{suffix}"
        write(path, i * ROWS)
        paths.append(str(path))
    state = tmp_path / "run.state"
    fail_at = ROWS + ROWS // 2  # in the middle of the second file

    done = threading.Event()
    crashed = Keep(done, 2 * ROWS, fail_at=fail_at)
    Paths(paths, done) > reader() > crashed
    with pytest.raises(nanostream.NodeFailed, match="keep"):
        crashed.global_start(
            state=str(state), checkpoint_interval=0.001, batch_size=1, runner=runner
        )
    store = open_store(str(state))
    try:
        checkpoint = store.load()
    finally:
        store.close()
    if kind.endswith("-skip"):  # outputs held back per item: checkpoints between files
        assert checkpoint is None or checkpoint.states["reader"][1] is None
        kept = [] if checkpoint is None else checkpoint.states["keep"][1]
        assert len(kept) % ROWS == 0
    else:
        assert checkpoint is not None
        position = checkpoint.states["reader"][1]
        kept = checkpoint.states["keep"][1]
        assert position is not None, "no checkpoint was taken inside a file"
        assert position[0] == paths[len(kept) // ROWS]
        assert position[1] == len(kept) % ROWS  # the reader's place is the sink's count

    done = threading.Event()
    restarted = Keep(done, 2 * ROWS)
    Paths(paths, done) > reader() > restarted
    restarted.global_start(state=str(state), runner=runner)
    expected: list[Any] = [{"n": i} for i in range(2 * ROWS)]
    if kind == "lines":
        expected = [str(i) for i in range(2 * ROWS)]
    assert restarted.items == expected
    assert restarted.received == 2 * ROWS - len(kept)  # nothing read twice


class Tally(nanostream.NanoNode):
    """Keeps the rows it receives; fails at its ``fail_at``-th; stops the run once it has
    every row of ``missing``."""

    def __init__(self, missing: set[int], fail_at: int | None = None) -> None:
        super().__init__(name="tally")
        self.items: list[Any] = []
        self.missing, self.fail_at = set(missing), fail_at

    def process_item(self, item: Any) -> None:
        if len(self.items) + 1 == self.fail_at:
            raise RuntimeError("crash")
        self.items.append(item)
        self.missing.discard(item["n"])
        if not self.missing:
            self.request_stop()


BACKLOG_FILES = 6


@pytest.mark.parametrize("runner", LOCAL)
@pytest.mark.parametrize("reader_queue", [None, 2], ids=["long-queue", "short-queue"])
def test_a_backlog_of_paths_repeats_at_most_one_interval(
    tmp_path: Path, runner: str, reader_queue: int | None
) -> None:
    """A watched folder lists every file at once (one batch of paths before the reader):
    with ``checkpoint_items=1`` a checkpoint follows each path, so what a restart repeats
    is at most one path's rows, whatever the backlog."""
    pytest.importorskip("watchdog")
    from nanostream.nodes import LocalDirectoryWatchdog

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(BACKLOG_FILES):
        _csv(folder / f"part{i}.csv", i * ROWS)
    state = str(tmp_path / "run.state")
    options: dict[str, Any] = {} if reader_queue is None else {"queue_size": reader_queue}
    fail_at = 3 * ROWS + ROWS // 2  # in the fourth file

    def run(sink: Tally) -> None:
        watch = LocalDirectoryWatchdog(folder, "*.csv", polling=True, settle=0, name="watch")
        reader = CSVReader(paths=True, types={"n": int}, name="reader", **options)
        watch > reader > sink
        sink.global_start(
            state=state,
            checkpoint_items=1,
            checkpoint_interval=3600,
            batch_size=100,
            runner=runner,
        )

    every = set(range(BACKLOG_FILES * ROWS))
    crashed = Tally(every, fail_at=fail_at)
    with pytest.raises(nanostream.NodeFailed, match="tally"):
        run(crashed)
    first = [r["n"] for r in crashed.items]
    assert len(first) == fail_at - 1
    restarted = Tally(every - set(first))  # stops once nothing is missing
    run(restarted)
    again = [r["n"] for r in restarted.items]
    repeated = len(set(first) & set(again))
    assert repeated <= ROWS, f"{repeated} rows repeated; one interval (a path) is {ROWS}"
