"""Nodes adapted from plain Python objects: a node function (:class:`FunctionNode`,
:func:`as_node`) or an iterable (:class:`IterableSource`, :func:`from_iterable`), and
:func:`node_of`, which turns whatever ``>`` links (a node or a node function) into a node.

Example:
    >>> import nanostream
    >>> from nanostream._core.adapters import node_of
    >>> def double(inp, outp):
    ...     for x in inp:
    ...         outp(x * 2)
    >>> node_of(double) is node_of(double)
    True
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self

from .errors import GraphError
from .node import NanoNode, NodeFunction
from .node_function import _callable_name
from .policy import POLICY_OPTIONS
from .ports import Port
from .signals import SourceStopped

__all__ = [
    "FunctionNode",
    "IterableSource",
    "as_node",
    "from_iterable",
    "node_of",
    "release_function",
]


class FunctionNode(NanoNode):
    """A node function ``f(inp, outp)`` standing in a graph; the function is its identity.

    Made by :func:`as_node` or implicitly when a function is linked with ``>``.

    Example:
        >>> import nanostream
        >>> def add_one(inp, outp):
        ...     for x in inp:
        ...         outp(x + 1)
        >>> nanostream.as_node(add_one).function is add_one
        True
    """

    def __init__(self, function: NodeFunction, **options: Any) -> None:
        super().__init__()
        self.function = function
        self.configure(**options)

    @property
    def is_source(self) -> bool:
        return False

    def configure(self, **options: Any) -> Self:
        policy = [key for key in POLICY_OPTIONS if options.get(key) is not None]
        if policy:
            raise GraphError(
                f"{self!r}: {policy[0]} applies to NanoNode classes, whose process_item runs "
                "once per item; a node function handles its own errors (or make it a "
                "NanoNode with process_item)"
            )
        return super().configure(**options)

    def validate(self) -> None:
        if not callable(self.function):
            raise GraphError(f"node {self._ns_name!r}: {self.function!r} is not callable")

    def as_function(self) -> NodeFunction:
        return self.function

    def default_name(self) -> str:
        return _callable_name(self.function)

    def __repr__(self) -> str:
        return f"FunctionNode({_callable_name(self.function)}, name={self._ns_name!r})"


# The identity of a node function is the callable object itself. This maps each callable
# that stands in a graph to its FunctionNode; entries vanish with the graph, and a run that
# finishes releases its functions so they can be linked into a new pipeline.
_function_nodes: weakref.WeakValueDictionary[Any, FunctionNode] = weakref.WeakValueDictionary()


_function_nodes_lock = threading.Lock()


def as_node(function: NodeFunction, **options: Any) -> FunctionNode:
    """Wrap a node function ``f(inp, outp)`` as a node, with options such as ``name``.

    Linking a function with ``>`` does this implicitly; the same function object always
    means the same node within one pipeline.

    Example:
        >>> import nanostream
        >>> def add_one(inp, outp):
        ...     for x in inp:
        ...         outp(x + 1)
        >>> node = nanostream.as_node(add_one, name="plus")
        >>> node is nanostream.as_node(add_one)
        True
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([1, 2]) > add_one > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [2, 3]
    """
    if isinstance(function, NanoNode):
        raise GraphError(f"{function!r} is already a node; as_node() wraps node functions")
    if not callable(function):
        raise GraphError(
            f"cannot use {function!r} as a node: expected a NanoNode or a node function "
            "f(inp, outp)"
        )
    try:
        hash(function)
    except TypeError:
        raise GraphError(
            f"cannot use {function!r} as a node: a node function must be hashable "
            "(its identity is the node's identity)"
        ) from None
    with _function_nodes_lock:
        node = _function_nodes.get(function)
        if node is None:
            node = FunctionNode(function)
            _function_nodes[function] = node
    if options:
        node.configure(**options)
    return node


def release_function(node: FunctionNode) -> None:
    """Forget ``node``'s function, so it can be linked into a new pipeline."""
    with _function_nodes_lock:
        if _function_nodes.get(node.function) is node:
            del _function_nodes[node.function]


def node_of(obj: object) -> NanoNode:
    """The node ``obj`` stands for in a graph: itself, or its function's node."""
    if isinstance(obj, NanoNode):
        return obj
    if isinstance(obj, Port):
        raise GraphError(f"a port ({obj!r}) can only be on the left of '>'")
    return as_node(obj)  # type: ignore[arg-type]


class IterableSource(NanoNode):
    """A source that emits every item of an iterable (see :func:`from_iterable`).

    Example:
        >>> import nanostream
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.IterableSource("ab") > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        ['a', 'b']
    """

    def __init__(self, iterable: Iterable[Any], **options: Any) -> None:
        super().__init__()
        self.iterable = iterable
        self.configure(**options)

    def generator(self) -> Iterator[Any]:
        yield from self.iterable

    def as_function(self) -> NodeFunction:
        iterable = self.iterable

        def iterable_source(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            for _ in inp:
                pass
            # A runner's outp may offer ``extend(list)`` to take many items at once; a
            # sized sequence never blocks between items, so it can go in slices.
            extend = getattr(outp, "extend", None)
            try:
                if extend is not None and isinstance(iterable, (list, tuple, range)):
                    for start in range(0, len(iterable), 4096):
                        extend(list(iterable[start : start + 4096]))
                    return
                for item in iterable:
                    outp(item)
            except SourceStopped:
                pass

        return iterable_source

    def default_name(self) -> str:
        return "from_iterable"


def from_iterable(iterable: Iterable[Any], **options: Any) -> IterableSource:
    """A source node that emits each item of ``iterable`` (a list, range, generator, …).

    Example:
        >>> import nanostream
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(range(5)) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [0, 1, 2, 3, 4]
    """
    return IterableSource(iterable, **options)
