"""AckedProgress: what sources that commit on acknowledgement share (nodes/_progress.py)."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Sequence

import pytest

from nanostream.connectors._acked_progress import AckedProgress


class Store:
    """A commit target that records each commit, and can be told to fail."""

    def __init__(self) -> None:
        self.commits: list[list[int]] = []
        self.closed = 0
        self.failing = False

    def commit(self, values: Sequence[int]) -> None:
        if self.failing:
            raise OSError("disk full")
        self.commits.append(list(values))

    def close(self) -> None:
        self.closed += 1


def test_acks_commit_in_order_and_the_last_one_closes() -> None:
    store = Store()
    progress = AckedProgress(store.commit, close=store.close, name="src")
    acks = [progress.ack(i) for i in range(3)]
    assert progress.outstanding == 3
    acks[0]()
    acks[1]()
    progress.finish()  # the source ended; one ack is still to come
    assert store.closed == 0
    acks[2]()
    assert [v for c in store.commits for v in c] == [0, 1, 2]
    assert store.closed == 1 and progress.committed == 3 and progress.outstanding == 0


def test_with_an_interval_acks_wait_for_the_source_or_the_end() -> None:
    store = Store()
    progress = AckedProgress(store.commit, close=store.close, interval=3600, name="src")
    acks = [progress.ack(i) for i in range(4)]
    acks[0]()
    acks[1]()
    assert store.commits == []  # an hour has not passed
    progress.commit()  # the source, between two items
    assert store.commits == [[0, 1]]
    acks[2]()
    progress.finish()  # commits what is acknowledged at once...
    assert store.commits == [[0, 1], [2]]
    acks[3]()  # ...and the rest after the last ack
    assert store.commits == [[0, 1], [2], [3]] and store.closed == 1


def test_a_source_without_outstanding_acks_closes_when_it_ends() -> None:
    store = Store()
    progress: AckedProgress[int] = AckedProgress(store.commit, close=store.close)
    progress.done(7)  # acknowledged at once (an entry the source skips)
    progress.finish()
    assert store.commits == [[7]] and store.closed == 1


def test_acks_that_never_come_commit_nothing_and_close_when_collected() -> None:
    store = Store()
    progress = AckedProgress(store.commit, close=store.close)
    progress.ack(1)  # never called: an aborted run, a runner without acknowledgements
    progress.finish()
    assert store.commits == [] and store.closed == 0
    del progress
    gc.collect()
    assert store.closed == 1


def test_a_failed_commit_is_logged_and_retried_and_raised_for_the_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store()
    progress = AckedProgress(store.commit, close=store.close, name="src")
    store.failing = True
    first, second = progress.ack(1), progress.ack(2)
    with caplog.at_level(logging.WARNING, logger="nanostream"):
        first()
    assert "src could not commit its progress (OSError: disk full)" in caplog.text
    with pytest.raises(OSError, match="disk full"):
        progress.commit()
    store.failing = False
    second()
    assert store.commits == [[1, 2]]  # nothing lost, in order


def test_acks_from_many_threads_commit_each_value_once() -> None:
    store = Store()
    progress = AckedProgress(store.commit, close=store.close)
    acks = [progress.ack(i) for i in range(1000)]
    progress.finish()
    lock = threading.Lock()  # the pipeline calls one source's acks one at a time, in order
    pending = iter(acks)

    def call_some() -> None:
        while True:
            with lock:
                ack = next(pending, None)
                if ack is None:
                    return
                ack()

    threads = [threading.Thread(target=call_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [v for c in store.commits for v in c] == list(range(1000))
    assert store.closed == 1


class SlowStore(Store):
    """A commit target whose commits wait until the test lets them end."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def commit(self, values: Sequence[int]) -> None:
        self.entered.set()
        assert self.go_on.wait(30), "the test never let the commit end"
        super().commit(values)


def call_in_thread(function: object) -> threading.Thread:
    thread = threading.Thread(target=function)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_commit_under_way_holds_up_neither_the_source_nor_other_acks() -> None:
    store = SlowStore()
    progress = AckedProgress(store.commit, close=store.close, name="src")
    first = progress.ack(1)
    committing = call_in_thread(first)  # an ack commits, and its commit takes long
    assert store.entered.wait(30)
    # Meanwhile the source hands out acks and the pipeline acknowledges items: neither
    # waits for the commit (they held the lock it was made under, before).
    others = call_in_thread(lambda: [progress.ack(v)() for v in (2, 3)])
    others.join(30)
    assert not others.is_alive(), "an ack waited for another thread's commit"
    assert progress.outstanding == 0 and store.commits == []
    store.go_on.set()
    committing.join(30)
    # The values acknowledged during the commit went with the next one, after it, once.
    assert store.commits == [[1], [2, 3]] and progress.committed == 3
    progress.finish()
    assert store.commits == [[1], [2, 3]] and store.closed == 1


def test_the_last_commit_and_close_wait_for_a_commit_under_way() -> None:
    store = SlowStore()
    at_close: list[list[list[int]]] = []
    progress = AckedProgress(
        store.commit,
        close=lambda: at_close.append([list(c) for c in store.commits]),
        interval=3600,
        name="src",
    )
    acks = [progress.ack(v) for v in (1, 2)]
    acks[0]()  # not due: waits for the source or the end
    committing = call_in_thread(progress.commit)  # the source commits [1], slowly
    assert store.entered.wait(30)
    ending = call_in_thread(lambda: (progress.finish(), acks[1]()))  # the end, the last ack
    store.go_on.set()
    for thread in (committing, ending):
        thread.join(30)
    assert store.commits == [[1], [2]]  # in order, each once
    assert at_close == [[[1], [2]]]  # closed once, after the last commit
