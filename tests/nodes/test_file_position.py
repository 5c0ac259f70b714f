"""File readers keep their place inside a file in checkpoints (docs/state.md).

A run fails in its sink in the middle of a file; the checkpoint it committed last holds
the reader's position inside that file, and a restart emits the rest of the file and
nothing twice.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import nanostream
from nanostream._engine.checkpoint import InFlight
from nanostream.nodes import CSVReader, JSONLinesReader, LocalFileReader
from nanostream.state import open_store
from support import Kept, Replay, crash_and_restart

LOCAL = ["threads", "cooperative"]
ROWS = 400


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
    found: dict[str, Any] = {}

    def pipeline(sink: Kept) -> None:
        # the source waits, letting barriers out, until the sink has all it needs; the
        # sink's short queue makes the reader wait for it now and then, and on the
        # cooperative runner the source gets its turns (and sends barriers) meanwhile
        sink.done = threading.Event()
        Replay(paths, sink.done, name="paths") > reader() > sink

    def look() -> None:  # what the checkpoint committed last holds
        store = open_store(str(state))
        try:
            found["checkpoint"] = store.load()
        finally:
            store.close()

    restarted = crash_and_restart(
        pipeline,
        partial(Kept, total=2 * ROWS, queue_size=8),
        fail_at,
        str(state),
        runner,
        between=look,
        # the sink has its items (and the source ends) at a checkpoint: not the default 5 s
        restart={"checkpoint_interval": 0.01},
        checkpoint_interval=0.001,
        batch_size=1,
    )
    checkpoint = found["checkpoint"]
    # unaligned checkpoints (the default): the rows in flight at the sink were emitted
    # before the reader's place too, and the sink reads them again after the restart
    kept, in_flight = _split(None if checkpoint is None else checkpoint.states["keep"][1])
    kept = kept or []
    if kind.endswith("-skip"):  # outputs held back per item: checkpoints between files
        assert checkpoint is None or _split(checkpoint.states["reader"][1])[0] is None
        assert (len(kept) + len(in_flight)) % ROWS == 0
    else:
        assert checkpoint is not None
        position, _paths = _split(checkpoint.states["reader"][1])
        emitted = len(kept) + len(in_flight)
        assert position is not None, "no checkpoint was taken inside a file"
        assert position[0] == paths[emitted // ROWS]
        assert position[1] == emitted % ROWS  # the reader's place is the sink's count

    expected: list[Any] = [{"n": i} for i in range(2 * ROWS)]
    if kind == "lines":
        expected = [str(i) for i in range(2 * ROWS)]
    assert restarted.items == expected
    assert restarted.received == 2 * ROWS - len(kept)  # nothing read twice


def _split(state: Any) -> tuple[Any, list[Any]]:
    """A node's stored state and the items in flight at it (unaligned checkpoints)."""
    if isinstance(state, InFlight):
        return state.state, state.items
    return state, []


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
    is at most one interval's path, whatever the backlog: the rows of the file being read
    at the crash, and of the previous one those after its barrier (on a loaded machine
    the barrier behind a path can reach the reader after it began that file). Main
    repeated the whole backlog read before the crash (1,399 rows here)."""
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
    assert repeated < 2 * ROWS, f"{repeated} rows repeated; one interval is a path: {ROWS} rows"
