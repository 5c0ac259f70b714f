"""Async code in a node: an event loop per node, and waits that never hold up a run.

A node with ``async def process_item`` or ``async def generator`` (and an operator given
an ``async def`` function) runs its coroutines on an :class:`EventLoopThread`: an asyncio
event loop in a thread of its own (``nanostream-loop:<node>``), started when the node
starts and joined before the node's function returns. The node's own thread (or greenlet,
on the cooperative runner) keeps reading input and emitting outputs, as for every node;
it hands each item's coroutine to the loop and waits for its outcome with
:func:`wait_future`.

On the threads runner that wait blocks the node's thread. On the cooperative runner, where
every node shares one thread, it must not: there :func:`wait_future` pauses the node in
short steps (0.2 ms, doubling up to 5 ms) through the run's abort event, so the other
nodes run meanwhile and the loop's thread does the I/O.

Example:
    >>> import asyncio
    >>> from nanostream._core.aio import EventLoopThread, wait_future
    >>> async def double(x):
    ...     await asyncio.sleep(0)
    ...     return 2 * x
    >>> loop = EventLoopThread("example")
    >>> wait_future(loop.submit(double(21)))
    42
    >>> loop.close()
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Final

from greenlet import getcurrent

from .signals import RunAborted, SourceStopped

if TYPE_CHECKING:
    from .context import NodeContext

__all__ = ["END_OF_ITEMS", "EventLoopThread", "is_async_callable", "next_item", "wait_future"]

# Threads: how long one wait on a future lasts before it looks at the abort event again.
_POLL_S: Final = 0.25
# Cooperative runner: the first and the longest pause between two looks at a future.
_FIRST_PAUSE_S: Final = 0.0002
_LONGEST_PAUSE_S: Final = 0.005
# How long a node waits on a future before what it emitted so far goes on without it (the
# linger of the runners' input readers: 0.05 s on threads, 0.005 s in a greenlet).
_FLUSH_AFTER_S: Final = 0.05
_FLUSH_AFTER_IN_GREENLET_S: Final = 0.005


def is_async_callable(func: object) -> bool:
    """Whether calling ``func`` gives a coroutine or an async generator (``async def``).

    Example:
        >>> from nanostream._core.aio import is_async_callable
        >>> async def fetch(url): ...
        >>> is_async_callable(fetch), is_async_callable(len)
        (True, False)
    """
    call = getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    return any(
        inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in (func, call)
    )


def _in_greenlet() -> bool:
    """True inside a greenlet run by a hub (the cooperative runner, ``run_inline``)."""
    return getcurrent().parent is not None


def wait_future(
    future: Future[Any], ctx: NodeContext | None = None, *, until_stop: bool = False
) -> Any:
    """The result of ``future`` (or its exception), waited for as the node's runner wants.

    ``ctx`` is the waiting node's context: an abort of its run ends the wait with
    :class:`~nanostream.RunAborted`; with ``until_stop`` (a source's wait), a ``stop()``
    of the run cancels ``future`` and ends the wait with ``SourceStopped`` (within 0.25 s).
    Inside a greenlet of the cooperative runner the node pauses in short steps while the
    other nodes run; elsewhere it blocks its thread. Once the wait has lasted a linger
    (0.05 s; 0.005 s in a greenlet), what the node emitted so far is sent on
    (``ctx.flush_outputs()``), so that its consumers do not wait for the future too.

    Example:
        >>> from concurrent.futures import Future
        >>> from nanostream._core.aio import wait_future
        >>> done = Future()
        >>> done.set_result("ok")
        >>> wait_future(done)
        'ok'
    """
    abort = ctx.abort_event if ctx is not None else None
    stop = ctx.stop_event if ctx is not None and until_stop else None
    # What the node emitted before a long wait goes on once the wait has lasted a linger,
    # so that its consumers do not wait with it (an unordered map waiting on a slow item).
    flush = ctx.flush_outputs if ctx is not None else None
    if abort is not None and _in_greenlet():
        pause = _FIRST_PAUSE_S
        waited = 0.0
        while not future.done():
            if abort.wait(pause):
                raise RunAborted
            _stopped(future, stop)
            waited += pause
            if flush is not None and waited >= _FLUSH_AFTER_IN_GREENLET_S:
                flush()
                flush = None
            pause = min(pause * 2, _LONGEST_PAUSE_S)
        return future.result()
    timeout = _FLUSH_AFTER_S if flush is not None else _POLL_S
    while True:
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            if future.done():
                raise
            if abort is not None and abort.is_set():
                raise RunAborted from None
            _stopped(future, stop)
            if flush is not None:
                flush()
                flush = None
                timeout = _POLL_S


def _stopped(future: Future[Any], stop: threading.Event | None) -> None:
    """Cancel ``future`` and raise ``SourceStopped`` if ``stop`` is set."""
    if stop is not None and stop.is_set():
        future.cancel()
        raise SourceStopped


class _End:
    """What :func:`next_item` returns at the end of an async generator."""

    __slots__ = ()


END_OF_ITEMS: Final = _End()


async def next_item(items: AsyncIterator[Any]) -> Any:
    """The next item of ``items``, or ``END_OF_ITEMS`` at its end (a coroutine to submit).

    Example:
        >>> import asyncio
        >>> from nanostream._core.aio import END_OF_ITEMS, next_item
        >>> async def two():
        ...     yield 1
        ...     yield 2
        >>> async def read_all():
        ...     items = two()
        ...     return [await next_item(items) for _ in range(3)]
        >>> asyncio.run(read_all()) == [1, 2, END_OF_ITEMS]
        True
    """
    try:
        return await anext(items)
    except StopAsyncIteration:
        return END_OF_ITEMS


class EventLoopThread:
    """An asyncio event loop running in a thread of its own, for one node and one run.

    :meth:`submit` hands it a coroutine from any thread and returns a
    ``concurrent.futures.Future``; :meth:`close` cancels what still runs, finalizes async
    generators, shuts the loop's default executor down and joins the thread. Each node
    that runs async code owns one, from its start to its end (the user writes no
    ``asyncio.run``).

    Example:
        >>> import asyncio
        >>> from nanostream._core.aio import EventLoopThread
        >>> async def forever():
        ...     await asyncio.Event().wait()
        >>> loop = EventLoopThread("example")
        >>> pending = loop.submit(forever())
        >>> loop.close()
        >>> pending.cancelled()
        True
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"nanostream-loop:{name}")
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._started.set)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Run ``coro`` on the loop; its future (thread-safe)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, func: Callable[[], Any]) -> None:
        """Call ``func()`` in the loop's thread, soon."""
        self.loop.call_soon_threadsafe(func)

    def close(self) -> None:
        """Cancel the coroutines still running, end the loop and join its thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
