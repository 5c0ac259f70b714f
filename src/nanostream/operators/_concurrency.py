"""Where an operator's per-item work runs besides threads: an event loop, worker processes.

- :func:`map_async`: the loop of ``Map``, ``FlatMap`` and ``Filter`` given an ``async def``
  function with ``concurrency=N``: the node's own event loop (an
  :class:`~nanostream._core.aio.EventLoopThread`) runs up to N calls at once; the node's
  thread reads the input and emits the results, ordered or first-come, with
  :func:`~nanostream.operators._operator.run_in_pool`.
- :func:`map_in_processes`: the loop of the same operators (and ``Parallel``) given
  ``processes=N``: a pool of N worker processes (``concurrent.futures`` with the
  ``forkserver`` start method; the function reaches them with cloudpickle, so lambdas and
  closures work), started when the node starts and reused for the whole run. Items go to
  the workers in chunks sized to take about 50 ms of a worker's CPU each, so the cost of a
  round trip between processes (0.5-1 ms of the node's CPU) is shared by many items.

Both keep what every node guarantees: at most ``max_in_flight`` items read and not yet
emitted (back-pressure), the node's error policy per item (a ``timeout`` cancels the
attempt: the coroutine is cancelled; in a worker process a ``SIGALRM`` interrupts it),
acknowledgements released once an item's outputs are out, and a drained input on
``stop()``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, Final, NamedTuple

from .._core.aio import EventLoopThread
from .._core.errors import NanoStreamError, require
from .._core.node import NanoNode
from .._core.policy import ErrorPolicy
from .._core.ticks import TICK
from ._operator import Outp, PolicyGuard, _Failed, emit_all, run_in_pool

__all__ = [
    "LoopExecutor",
    "WorkerTraceback",
    "async_expand",
    "chunk_size",
    "map_async",
    "map_in_processes",
    "require_cloudpickle",
]

#: The kinds of per-item work, as the worker processes compute them.
KINDS: Final = ("map", "flat_map", "filter")


# ----------------------------------------------------------------------------- async
class LoopExecutor(Executor):
    """An ``Executor`` whose ``submit(fn, item)`` runs the coroutine ``fn(item)`` on an
    event loop of its own, at most ``concurrency`` of them at once.

    Example:
        >>> import asyncio
        >>> from nanostream.operators._concurrency import LoopExecutor
        >>> async def square(x):
        ...     await asyncio.sleep(0)
        ...     return x * x
        >>> pool = LoopExecutor("example", concurrency=2)
        >>> [f.result() for f in [pool.submit(square, n) for n in range(4)]]
        [0, 1, 4, 9]
        >>> pool.shutdown()
    """

    def __init__(self, name: str, concurrency: int) -> None:
        self._loop = EventLoopThread(name)
        self._slots = asyncio.Semaphore(concurrency)
        # Calls submitted and not yet started: the loop is woken once for all of them.
        self._queued: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = deque()
        self._lock = threading.Lock()
        self._woken = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        call = partial(fn, **kwargs) if kwargs else fn
        with self._lock:
            self._queued.append((future, call, args))
            wake, self._woken = not self._woken, True
        if wake:
            self._loop.call(self._start_queued)
        return future

    def _start_queued(self) -> None:
        """In the loop's thread: start every call submitted since the last time."""
        with self._lock:
            queued = list(self._queued)
            self._queued.clear()
            self._woken = False
        create_task = self._loop.loop.create_task
        for future, call, args in queued:
            if not future.set_running_or_notify_cancel():
                continue
            task = create_task(self._limited(call, args))
            self._tasks.add(task)
            task.add_done_callback(partial(self._finished, future))

    async def _limited(self, call: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        async with self._slots:
            return await call(*args)

    def _finished(self, future: Future[Any], task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            future.set_exception(CancelledError())
        elif (exc := task.exception()) is not None:
            future.set_exception(exc)
        else:
            future.set_result(task.result())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Run ``coro`` on the loop now, outside the ``concurrency`` bound."""
        return self._loop.submit(coro)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel the calls still running and join the loop's thread."""
        self._loop.close()


def async_expand(kind: str, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A coroutine function: the list of outputs of one item for ``kind`` of operator.

    Example:
        >>> import asyncio
        >>> from nanostream.operators._concurrency import async_expand
        >>> async def positive(x):
        ...     return x > 0
        >>> asyncio.run(async_expand("filter", positive)(3))
        [3]
    """
    if kind == "map":

        async def map_one(item: Any) -> list[Any]:
            return [await func(item)]

        return map_one
    if kind == "filter":

        async def keep(item: Any) -> list[Any]:
            return [item] if await func(item) else []

        return keep

    async def expand(item: Any) -> list[Any]:
        result = func(item)
        if hasattr(result, "__aiter__"):  # an async generator function
            return [out async for out in result]
        return list(await result)

    return expand


def _async_attempts(
    compute: Callable[[Any], Any], policy: ErrorPolicy, label: str
) -> Callable[[Any], Any]:
    """``compute`` under ``policy`` on the loop: timeouts cancel, retries back off there;
    returns the outputs, or ``_Failed`` for :meth:`PolicyGuard.settle`."""
    timeout = policy.timeout

    async def attempt(item: Any) -> list[Any]:
        if timeout is None:
            outs: list[Any] = await compute(item)
            return outs
        try:
            async with asyncio.timeout(timeout):
                outs = await compute(item)
                return outs
        except TimeoutError as exc:
            raise TimeoutError(
                f"node {label!r}: an attempt took longer than timeout={timeout}s"
            ) from exc

    if not policy.guarded:
        return attempt

    async def attempts(item: Any) -> Any:
        tried = 0
        while True:
            tried += 1
            try:
                return await attempt(item)
            except Exception as exc:  # noqa: BLE001 - the policy decides
                if policy.on_error == "retry" and tried <= policy.retries:
                    await asyncio.sleep(policy.delay(tried))
                    continue
                return _Failed(exc, tried)

    return attempts


def map_async(
    node: NanoNode,
    inp: Iterable[Any],
    outp: Outp,
    expand: Callable[[Any], Any],
    *,
    concurrency: int,
    ordered: bool,
    max_in_flight: int,
    release: Callable[[int], None] | None,
    opening: Callable[[], Coroutine[Any, Any, Any]] | None = None,
    closing: Callable[[], Coroutine[Any, Any, Any]] | None = None,
) -> None:
    """Emit the outputs of ``await expand(item)`` (a list) for each item, on an event loop.

    ``opening()`` and ``closing()``, when given, run on the loop before the first item and
    after the last (also when the node fails): an async client is made and closed there.

    Example:
        >>> import asyncio, nanostream
        >>> from nanostream.operators._concurrency import async_expand, map_async
        >>> async def slow_double(x):
        ...     await asyncio.sleep(0.001 * (5 - x))  # later items finish first
        ...     return 2 * x
        >>> out = []
        >>> map_async(nanostream.NanoNode(), range(5), out.append,
        ...           async_expand("map", slow_double), concurrency=5, ordered=True,
        ...           max_in_flight=10, release=None)
        >>> out
        [0, 2, 4, 6, 8]
    """
    label = node.name or type(node).__name__
    policy = node.error_policy
    work = _async_attempts(expand, policy, label)
    executor = LoopExecutor(label, concurrency)
    try:
        if opening is not None:
            node.wait_future(executor.run(opening()))

        def flow(emit: Callable[[Any, Any], None]) -> None:
            run_in_pool(
                inp,
                work,
                emit,
                workers=concurrency,
                ordered=ordered,
                max_in_flight=max_in_flight,
                thread_name="",
                release=release,
                node=node,
                executor=executor,
            )

        try:
            if not policy.guarded:
                flow(emit_all(outp))
            else:
                with PolicyGuard.of(node, outp) as guard:
                    flow(guard.settle)
        finally:
            if closing is not None:
                node.wait_future(executor.run(closing()))
    finally:
        executor.shutdown()


# ----------------------------------------------------------------------------- processes
class WorkerTraceback(NanoStreamError):
    """The traceback of an exception raised in a worker process (its ``__cause__``)."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0]) if self.args else ""


class _ItemFailed(NamedTuple):
    """What a worker process returns for an item that failed for good."""

    exc: BaseException
    attempt: int
    traceback: str


# The worker process's state, set once by _start_worker.
_WORK: dict[str, Any] = {}

# A chunk of items is sized to take about _CHUNK_S of a worker's CPU time. Each chunk costs
# the node's process 0.5-1 ms of CPU (pickling, the pool's threads, waking them), taken from
# the cores the workers use; and when the input ends, one worker may finish up to a chunk
# before the other. Sized by CPU time, not by the time a chunk took, a loaded machine (where
# a worker waits for a core) does not make the chunks smaller and the node's work larger;
# _CHUNK_WALL_S bounds how long a chunk of items that wait (a sleep, a socket) holds them.
_CHUNK_S: Final = 0.05
_CHUNK_WALL_S: Final = 0.25
_START_METHOD: Final = (
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)


def chunk_size(took: float, cpu: float, count: int, cap: int) -> int:
    """How many items to send in the next chunk, going by the last one (``count`` items in
    ``took`` seconds, ``cpu`` of them the worker's CPU time): as many as take about
    ``_CHUNK_S`` of CPU and at most ``_CHUNK_WALL_S``; 1 to ``cap``.

    Example:
        >>> from nanostream.operators._concurrency import chunk_size
        >>> chunk_size(0.02, 0.02, 100, cap=1000)  # 200 us an item: 50 ms is 250 items
        250
        >>> chunk_size(0.08, 0.02, 100, cap=1000)  # the same on a busy machine
        250
        >>> chunk_size(1.0, 0.0, 100, cap=1000)  # 10 ms of waiting an item: 250 ms
        25
        >>> chunk_size(0.02, 0.02, 100, cap=64), chunk_size(3.0, 3.0, 1, cap=64)
        (64, 1)
        >>> chunk_size(0.0, 0.0, 5, cap=64)  # too quick to time: as many as may be in flight
        64
    """
    size = cap
    if cpu > 0:
        size = min(size, int(_CHUNK_S * count / cpu))
    if took > 0:
        size = min(size, int(_CHUNK_WALL_S * count / took))
    return max(1, size)


def _process_cores() -> set[int] | None:
    """The cores of the process's main thread (Linux), whichever thread asks."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        return os.sched_getaffinity(os.getpid())
    except OSError:
        return None


class _AttemptTimedOut(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _AttemptTimedOut


def _start_worker(search_path: list[str], payload: bytes, cores: set[int] | None = None) -> None:
    """In each worker process, once: load the function (and run the node's ``setup()``).

    ``cores`` are the cores the parent process runs on: a worker forked from a node thread
    that shares one core with the other computing nodes (the threads runner's placement)
    gets them all back.
    """
    import cloudpickle

    sys.path[:] = search_path
    if cores:
        os.sched_setaffinity(0, cores)

    kind, func, setup, policy, label = cloudpickle.loads(payload)
    if setup is not None:
        setup()
    _WORK.update(kind=kind, func=func, policy=policy, label=label)
    if policy.timeout is not None:
        signal.signal(signal.SIGALRM, _on_alarm)


def _once(item: Any) -> list[Any]:
    kind, func = _WORK["kind"], _WORK["func"]
    if kind == "map":
        return [func(item)]
    if kind == "filter":
        return [item] if func(item) else []
    return list(func(item))


def _attempts(item: Any) -> Any:
    policy: ErrorPolicy = _WORK["policy"]
    timeout = policy.timeout
    tried = 0
    while True:
        tried += 1
        try:
            if timeout is None:
                return _once(item)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                return _once(item)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _AttemptTimedOut:
            exc: Exception = TimeoutError(
                f"node {_WORK['label']!r}: an attempt took longer than timeout={timeout}s"
            )
        except Exception as error:  # noqa: BLE001 - the policy decides
            exc = error
        if policy.on_error == "retry" and tried <= policy.retries:
            time.sleep(policy.delay(tried))
            continue
        text = "".join(traceback.format_exception(exc))
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that cannot travel
            exc = RuntimeError(f"{type(exc).__qualname__}: {exc}")
        return _ItemFailed(exc, tried, text)


def _run_chunk(items: list[Any]) -> tuple[list[Any], float, float]:
    """In a worker process: each item's outputs (or its failure), the time it took, and the
    CPU time it took."""
    started, cpu = time.perf_counter(), time.process_time()
    results = [_attempts(item) for item in items]
    return results, time.perf_counter() - started, time.process_time() - cpu


class _Workers:
    """A node's pool of worker processes; a fresh one replaces a pool whose worker died."""

    def __init__(self, processes: int, payload: bytes, search_path: list[str]) -> None:
        self.processes = processes
        self.payload = payload
        self.search_path = search_path
        self.pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context(_START_METHOD)
        if _START_METHOD == "forkserver":
            # The fork server imports nanostream and cloudpickle once; each worker forked
            # from it starts with them imported, which halves a worker's start-up CPU (a
            # no-op once the server runs, which it does for the process's lifetime).
            context.set_forkserver_preload([__name__, "cloudpickle"])
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self.search_path, self.payload, _process_cores()),
        )

    def submit(self, items: list[Any]) -> Future[Any]:
        try:
            return self.pool.submit(_run_chunk, items)
        except BrokenProcessPool:  # a worker died since the last result: start afresh
            self.renew()
            return self.pool.submit(_run_chunk, items)

    def close(self) -> None:
        """Take no more chunks: each worker exits as soon as the chunks sent are done."""
        self.pool.shutdown(wait=False)

    def renew(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = self._new()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


#: The ``cloudpickle`` module; ``MissingDependencyError`` (with its extra) without it.
require_cloudpickle: Callable[[], Any] = partial(require, "cloudpickle", extra="processes")


def map_in_processes(
    node: NanoNode,
    inp: Iterable[Any],
    outp: Outp,
    kind: str,
    func: Callable[[Any], Any],
    *,
    processes: int,
    max_in_flight: int,
    release: Callable[[int], None] | None,
    setup: Callable[[], Any] | None = None,
    ordered: bool = True,
) -> None:
    """Emit the outputs of ``func`` for each item, computed in ``processes`` worker processes.

    Outputs keep the input order; with ``ordered=False`` each chunk's go out as soon as it
    is done (first-come by chunk; within a chunk, in order). The node's thread reads the
    input into chunks (sent when full, or on a :data:`~nanostream.TICK` when the input is
    idle), keeps at most ``2 * processes`` chunks and ``max_in_flight`` items in flight,
    and emits each chunk's results in order under the node's error policy (failures carry
    the worker's traceback as their ``__cause__``). When a worker process dies, the pool is
    replaced and each item it may have been working on runs again alone; one that kills its
    worker alone fails with ``BrokenProcessPool`` under the policy (``retry`` runs it again
    at once).
    ``setup`` runs once in each worker process (``Parallel`` gives its node's).
    """
    cloudpickle = require_cloudpickle()
    label = node.name or type(node).__name__
    policy = node.error_policy
    payload = cloudpickle.dumps((kind, func, setup, policy, label))
    workers = _Workers(processes, payload, _search_path(func, setup))
    keep = release if release is not None else (lambda _: None)
    most_chunks = 2 * processes
    chunk_cap = max(1, max_in_flight // most_chunks)
    size = 1  # items in the next chunk: one until a chunk's time is known
    # The chunks in flight: their items, their future, the read number of their first item.
    pending: deque[tuple[list[Any], Future[Any], int]] = deque()
    held = 0  # items read and not yet emitted
    reads = 0  # items read
    chunk: list[Any] = []
    # Set when a chunk is done, so that the node can wait for "any chunk" (ordered=False).
    lock = threading.Lock()
    any_done: list[Future[None]] = [Future()]
    # True once a chunk is done since the node last looked: reading an item costs no look
    # at the futures while none is.
    news = [False]

    def on_done(_: Future[Any]) -> None:
        news[0] = True
        with lock:
            if not any_done[0].done():
                any_done[0].set_result(None)

    def next_done(must: bool) -> int | None:
        """The index in ``pending`` of the chunk to emit next; None if none is due yet.
        ``must``: wait for one (the bounds are reached, or the input ended)."""
        if ordered:
            return 0 if must or pending[0][1].done() else None
        while True:
            with lock:
                if any_done[0].done():
                    any_done[0] = Future()
                waiting = any_done[0]
            for index, (_, future, _) in enumerate(pending):
                if future.done():
                    return index
            if not must:
                return None
            node.wait_future(waiting)

    def still_held() -> int:
        """How many of the last items read are not out yet (see ``release_items``)."""
        oldest = min((first for _, _, first in pending), default=reads - len(chunk) + 1)
        return reads - oldest + 1 if held else 0

    def settle_all(emit: Callable[[Any, Any], None], index: int = 0) -> None:
        """Emit the results of ``pending[index]``; after a worker died, every chunk's."""
        nonlocal held, size
        items, future, _ = pending[index]
        del pending[index]
        try:
            results, took, cpu = node.wait_future(future)
        except BrokenProcessPool:
            # Every chunk in flight was on the broken pool: those that had not finished
            # run again, each item alone, on a fresh pool.
            chunks: list[tuple[list[Any], list[Any] | None]] = [(items, None)]
            while pending:
                more, other, _ = pending.popleft()
                try:
                    chunks.append((more, node.wait_future(other)[0]))
                except (BrokenProcessPool, CancelledError):
                    chunks.append((more, None))
            workers.renew()
            for done_items, finished in chunks:
                done_results = _again_alone(done_items) if finished is None else finished
                held -= len(done_items)
                for item, result in zip(done_items, done_results, strict=True):
                    emit(item, result)
            return
        size = chunk_size(took, cpu, len(items), chunk_cap)
        held -= len(items)
        for item, result in zip(items, results, strict=True):
            emit(item, result)

    def _again_alone(items: list[Any]) -> list[Any]:
        results = []
        for item in items:
            tried = 0
            while True:
                tried += 1
                try:
                    (result,), _, _ = node.wait_future(workers.submit([item]))
                except BrokenProcessPool:
                    workers.renew()
                    if policy.on_error == "retry" and tried <= policy.retries:
                        continue
                    result = _ItemFailed(
                        BrokenProcessPool(
                            f"node {label!r}: its worker process died while working on this "
                            "item alone (killed, or the process exited: os._exit, a crash "
                            "in an extension)"
                        ),
                        tried,
                        "",
                    )
                results.append(result)
                break
        return results

    def run(emit: Callable[[Any, Any], None]) -> None:
        nonlocal chunk, held, reads

        def send() -> None:
            nonlocal chunk
            if chunk:
                future = workers.submit(chunk)
                pending.append((chunk, future, reads - len(chunk) + 1))
                future.add_done_callback(on_done)
                chunk = []

        for item in inp:
            if item is TICK:
                send()
            else:
                chunk.append(item)
                held += 1
                reads += 1
                if len(chunk) >= size:
                    send()
            emitted = False
            full = len(pending) >= most_chunks or held >= max_in_flight
            if full or news[0]:
                news[0] = False
                while pending:
                    index = next_done(len(pending) >= most_chunks or held >= max_in_flight)
                    if index is None:
                        break
                    settle_all(emit, index)
                    emitted = True
            if emitted:
                keep(still_held())
        send()
        # Nothing more will be sent but the chunks of a dead worker (on a fresh pool): the
        # workers exit while the last results are emitted.
        workers.close()
        while pending:
            index = next_done(True)
            assert index is not None
            settle_all(emit, index)

    def emit_outputs(item: Any, result: Any) -> None:
        if type(result) is _ItemFailed:
            raise _with_traceback(result)
        for out in result:
            outp(out)

    try:
        if not policy.guarded:
            run(emit_outputs)
            return
        with PolicyGuard.of(node, outp) as guard:

            def settle(item: Any, result: Any) -> None:
                if type(result) is _ItemFailed:
                    exc = _with_traceback(result)
                    if not isinstance(exc, Exception):  # a BaseException ends the node
                        raise exc
                    result = _Failed(exc, result.attempt)
                guard.settle(item, result)

            run(settle)
    finally:
        workers.shutdown()


def _search_path(*objects: object) -> list[str]:
    """``sys.path``, and the folders of the modules that define ``objects`` (a pipeline
    file's own modules are imported from its folder, which is not on ``sys.path``)."""
    path = list(sys.path)
    for obj in objects:
        for owner in (obj, getattr(obj, "__self__", None), getattr(obj, "func", None)):
            module = sys.modules.get(getattr(owner, "__module__", None) or "")
            if module is None and owner is not None:
                module = sys.modules.get(type(owner).__module__)
            file = getattr(module, "__file__", None)
            if file and os.path.dirname(file) not in path:
                path.append(os.path.dirname(file))
    return path


def _with_traceback(failed: _ItemFailed) -> BaseException:
    """The worker's exception, with its traceback in the worker as its ``__cause__``."""
    exc = failed.exc
    if failed.traceback and exc.__cause__ is None:
        exc.__cause__ = WorkerTraceback(failed.traceback)
    return exc
