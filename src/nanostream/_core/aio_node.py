"""A ``NanoNode`` with ``async def process_item`` or ``async def generator`` as a node function.

The node's coroutines run on its own :class:`~nanostream._core.aio.EventLoopThread`; its
thread (or greenlet) reads the input, hands each item to the loop, waits for the item's
outputs and emits them, exactly where a plain node would: ``setup()``, ``tick()`` and
``cleanup()`` stay plain methods run there, the error policy applies per item (a
``timeout`` cancels the attempt's coroutine), acknowledgements and back-pressure are those
of any node, since the node reads its next item only once the previous one's outputs are
out. A source's async generator is advanced one item at a time on the loop; when the run
stops, the generator is closed on the loop (its ``finally`` blocks run there).

Example:
    >>> import asyncio, nanostream
    >>> class Slow(nanostream.NanoNode):
    ...     async def process_item(self, item):
    ...         await asyncio.sleep(0.001)
    ...         yield item * 2
    >>> out = []
    >>> Slow().as_function()([1, 2], out.append)
    >>> out
    [2, 4]
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .acks import Acked
from .aio import END_OF_ITEMS, EventLoopThread, next_item, wait_future
from .errors import NodeProtocolError
from .fast import drive
from .node_function import _where, restore_state, run_cleanup, untick
from .policy import ItemGuard
from .signals import SourceStopped

if TYPE_CHECKING:
    from .node import NanoNode, NodeFunction

__all__ = ["async_node_function", "async_outputs"]


def async_outputs(
    func: Callable[[Any], Any], label: str, timeout: float | None = None
) -> Callable[[Any], Any]:
    """A coroutine function: the list of outputs of ``func(item)``, an ``async def``.

    ``func`` is an async generator function (its yields are the outputs) or a coroutine
    function (a sink: it must return ``None``). With ``timeout``, an attempt still
    running after that many seconds is cancelled and fails with ``TimeoutError``.

    Example:
        >>> import asyncio
        >>> from nanostream._core.aio_node import async_outputs
        >>> async def twice(x):
        ...     yield x
        ...     yield x
        >>> asyncio.run(async_outputs(twice, "twice")(3))
        [3, 3]
    """
    generates = inspect.isasyncgenfunction(func) or inspect.isasyncgenfunction(
        getattr(func, "__call__", None)  # noqa: B004
    )

    async def outputs(item: Any) -> list[Any]:
        if generates:
            return [out async for out in func(item)]
        result = await func(item)
        if result is not None:
            raise NodeProtocolError(
                f"process_item of node {label!r} returned {type(result).__name__}; "
                f"yield it to emit it ('yield value'), or return nothing in a sink: "
                f"{_where(func)}"
            )
        return []

    if timeout is None:
        return outputs

    async def timed(item: Any) -> list[Any]:
        try:
            async with asyncio.timeout(timeout):
                return await outputs(item)
        except TimeoutError as exc:
            raise TimeoutError(
                f"node {label!r}: an attempt took longer than timeout={timeout}s"
            ) from exc

    return timed


def async_node_function(node: NanoNode) -> NodeFunction:
    """``node`` (whose ``generator`` or ``process_item`` is ``async def``) as a node function."""
    if node.is_source:

        def async_source_function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            for _ in inp:
                pass
            ctx = node._context()
            node.setup()
            restore_state(node)
            loop = EventLoopThread(ctx.name)
            emit_acked = ctx.acked_outp(outp)
            try:
                items: Any = node.generator()  # an async generator here
                while True:
                    item = wait_future(loop.submit(next_item(items)), ctx)
                    if item is END_OF_ITEMS:
                        break
                    if type(item) is Acked:
                        emit_acked(item)
                    else:
                        outp(item)
            except SourceStopped:
                pass
            finally:
                loop.close()  # closes the generator on the loop (its finally blocks run)
            run_cleanup(node, outp)

        return async_source_function

    policy = node.error_policy
    ticks = node.ticks_every() is not None

    def async_process_function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        ctx = node._context()
        node.setup()
        restore_state(node)
        loop = EventLoopThread(ctx.name)
        attempt = async_outputs(node.process_item, ctx.name, policy.timeout)

        def compute(item: Any) -> list[Any]:
            outs: list[Any] = wait_future(loop.submit(attempt(item)), ctx)
            return outs

        if ticks:
            inp = untick(node, inp, outp)
        try:
            if not policy.guarded:
                drive(inp, compute, outp)
            else:
                # The loop applies the timeout (it cancels the attempt); the guard the rest.
                ItemGuard(replace(policy, timeout=None), ctx, outp, compute).run(inp)
        finally:
            loop.close()
        run_cleanup(node, outp)

    return async_process_function
