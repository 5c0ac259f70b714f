"""The node contract, checked and adapted: how a :class:`~nanostream.NanoNode` class is
checked (:func:`check_contract`) and runs as a node function ``f(inp, outp)``
(:func:`node_function`): sources drive their generator, other nodes call
``process_item`` per item (under their error policy when they have one), ticks call
``tick()``, and ``cleanup()`` emits the final outputs.

Example:
    >>> import nanostream
    >>> from nanostream._core.node_function import node_function
    >>> class Double(nanostream.NanoNode):
    ...     def process_item(self, item):
    ...         yield item * 2
    >>> out = []
    >>> node_function(Double())([1, 2], out.append)
    >>> out
    [2, 4]
"""

from __future__ import annotations

import dis
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .context import NO_STATE, NodeContext, node_label
from .errors import GraphError, NodeProtocolError, StateError
from .fast import drive
from .policy import ItemGuard
from .signals import SourceStopped
from .ticks import TICK

if TYPE_CHECKING:
    from .node import NanoNode, NodeFunction

__all__ = [
    "check_contract",
    "is_async_node",
    "item_function",
    "keeps_state",
    "node_function",
    "restore_state",
    "run_cleanup",
    "untick",
]


def _callable_name(func: object) -> str:
    name = getattr(func, "__name__", None)
    if isinstance(name, str) and name != "<lambda>":
        return name
    if name == "<lambda>":
        return "lambda"
    return type(func).__name__


def _where(func: object) -> str:
    """``module.qualname (file:line)`` of a user callable, for error messages."""
    code = getattr(func, "__code__", None)
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or _callable_name(func)
    if code is None:
        return f"{module}.{qualname}"
    return f"{module}.{qualname} ({code.co_filename}:{code.co_firstlineno})"


def _returns_a_value(func: object) -> bool:
    """Whether ``func`` has a ``return`` of something other than ``None`` (read from its code).

    A callable without Python code (a builtin, a ``functools.partial``) is not known to, so
    the node checks what it returns when it runs.
    """
    code = getattr(func, "__code__", None)
    if code is None:
        return False
    previous: dis.Instruction | None = None
    for ins in dis.get_instructions(code):
        if ins.opname == "RETURN_CONST" and ins.argval is not None:
            return True
        if ins.opname == "RETURN_VALUE" and not (
            previous is not None and previous.opname == "LOAD_CONST" and previous.argval is None
        ):
            return True
        previous = ins
    return False


def _run_generator(node: NanoNode, ctx: NodeContext, outp: Callable[[Any], Any]) -> None:
    """Emit a source's items; ``Acked`` items attach their ack.

    A generator cannot go on after it raised, so its exception ends the source and fails
    the run. A source that applies its error policy (``policy_per_poll``) does so inside
    its generator, per poll, with :meth:`NanoNode.guard_polls`.
    """
    gen: Any = node.generator()
    try:
        ctx.emit_source(gen, outp)
    except SourceStopped:
        pass
    finally:
        gen.close()


def check_contract(node: NanoNode) -> None:
    """Raise ``GraphError`` unless ``node``'s class follows the node contract.

    See :meth:`NanoNode.validate <nanostream.NanoNode.validate>`.
    """
    from .node import NanoNode

    cls = type(node)
    label = node._ns_name or cls.__name__
    has_gen = cls.generator is not NanoNode.generator
    has_proc = cls.process_item is not NanoNode.process_item
    if has_gen and has_proc:
        raise GraphError(
            f"node {label!r} defines both generator() and process_item(); "
            "a source defines generator(), any other node process_item()"
        )
    if not has_gen and not has_proc:
        raise GraphError(
            f"node {label!r} ({cls.__module__}.{cls.__qualname__}) defines neither "
            "generator() nor process_item(); define one of them"
        )
    for hook in ("setup", "cleanup", "tick"):
        defined = getattr(cls, hook)
        if defined is getattr(NanoNode, hook):
            continue
        if inspect.iscoroutinefunction(defined) or inspect.isasyncgenfunction(defined):
            raise GraphError(
                f"{hook} of node {label!r} is 'async def': only generator() and "
                f"process_item() may be async; make {hook} a plain 'def': {_where(defined)}"
            )
    method = cls.generator if has_gen else cls.process_item
    if inspect.isgeneratorfunction(method) or inspect.isasyncgenfunction(method):
        return
    if inspect.iscoroutinefunction(method):
        if has_gen:
            raise GraphError(
                f"generator of node {label!r} is 'async def' but does not yield; an async "
                f"source is an async generator ('yield item' in it): {_where(method)}"
            )
        if _returns_a_value(method):
            raise GraphError(
                f"process_item of node {label!r} is a coroutine that returns a value; yield "
                f"its outputs (an async generator), or return nothing in a sink: "
                f"{_where(method)}"
            )
        return
    if has_gen or _returns_a_value(method):
        raise GraphError(
            f"{method.__name__} of node {label!r} must yield its outputs "
            f"(use 'yield value', not 'return value'): {_where(method)}"
        )


def is_async_node(node: NanoNode) -> bool:
    """Whether ``node``'s ``generator`` or ``process_item`` is ``async def``."""
    method = type(node).generator if node.is_source else type(node).process_item
    return inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)


def node_function(node: NanoNode) -> NodeFunction:
    """``node`` as a node function ``f(inp, outp)`` (see :meth:`NanoNode.as_function
    <nanostream.NanoNode.as_function>`)."""
    node.validate()
    if is_async_node(node):
        from .aio_node import async_node_function  # it builds on this module

        return async_node_function(node)
    policy = node.error_policy
    if node.is_source:

        def source_function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            for _ in inp:
                pass
            ctx = node._context()
            node.setup()
            restore_state(node)
            _run_generator(node, ctx, outp)
            run_cleanup(node, outp)

        return source_function

    ticks = node.ticks_every() is not None

    if not policy.guarded:

        def process_function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            node.setup()
            restore_state(node)
            process = item_function(node)
            if ticks:
                inp = untick(node, inp, outp)
            drive(inp, process, outp)
            run_cleanup(node, outp)

        return process_function

    def guarded_function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        ctx = node._context()
        node.setup()
        restore_state(node)
        guard = ItemGuard(policy, ctx, outp, item_function(node))
        guard.run(untick(node, inp, outp) if ticks else inp)
        run_cleanup(node, outp)

    return guarded_function


def keeps_state(node: NanoNode) -> bool:
    """Whether ``node``'s class defines ``snapshot_state`` (and so ``restore_state``).

    A node of such a class that is configured so that it cannot resume sets
    ``keeps_no_state = True``: it keeps none (an ``SQLSource`` without
    ``incremental_column``; a file writer without ``exactly_once=True``).
    """
    from .node import NanoNode

    cls = type(node)
    snaps = cls.snapshot_state is not NanoNode.snapshot_state
    restores = cls.restore_state is not NanoNode.restore_state
    if snaps != restores:
        label = node._ns_name or cls.__name__
        raise GraphError(
            f"node {label!r} defines {'snapshot_state' if snaps else 'restore_state'}() "
            f"without {'restore_state' if snaps else 'snapshot_state'}(); define both "
            "(see docs/state.md)"
        )
    return snaps and not getattr(node, "keeps_no_state", False)


def restore_state(node: NanoNode) -> None:
    """Give ``node`` the state its run restored for it, if any (after ``setup()``).

    A ``restore_state`` that raises fails the node, with a ``StateError`` that says how to
    start it afresh.
    """
    ctx = node._context()
    state = ctx.restored_state
    if state is NO_STATE:
        return
    ctx.restored_state = NO_STATE
    try:
        node.restore_state(state)
    except Exception as exc:
        raise StateError(
            f"node {ctx.name!r} could not restore its stored state ({type(exc).__name__}: "
            f"{exc}); if the node changed, restart with drop_state=True (--drop-state) to "
            "start it afresh"
        ) from exc


def item_function(node: NanoNode) -> Callable[[Any], Iterable[Any]]:
    """``process_item`` as a function of an item returning its outputs (an iterable).

    A ``process_item`` that yields is that function; a plain one (a sink) has no
    outputs, and returning a value from it is a ``NodeProtocolError``.
    """
    process: Callable[[Any], Any] = node.process_item
    method = type(node).process_item
    if inspect.isgeneratorfunction(method):
        return process
    label = node_label(node)

    def no_outputs(item: Any) -> Iterable[Any]:
        result = process(item)
        if result is not None:
            raise NodeProtocolError(
                f"process_item of node {label!r} returned {type(result).__name__}; "
                f"yield it to emit it ('yield value'), or return nothing in a sink: "
                f"{_where(method)}"
            )
        return ()

    return no_outputs


def untick(node: NanoNode, inp: Iterable[Any], outp: Callable[[Any], Any]) -> Iterator[Any]:
    """``inp`` without its ticks; each tick calls :meth:`tick` and emits its outputs."""
    for item in inp:
        if item is TICK:
            result = node.tick()
            if result is not None:
                for out in result:
                    outp(out)
            continue
        yield item


def run_cleanup(node: NanoNode, outp: Callable[[Any], Any]) -> None:
    result = node.cleanup()
    if result is None:
        return
    if isinstance(result, (str, bytes, dict)) or not hasattr(result, "__iter__"):
        raise NodeProtocolError(
            f"cleanup() of node {node_label(node)!r} returned "
            f"{type(result).__name__}; it must yield its final outputs or return None"
        )
    for out in result:
        outp(out)
