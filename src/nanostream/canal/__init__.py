"""A drop-in for the node-interface reference ``canal.Graph``: push values through node functions.

Code written against the reference runs unchanged after ``import nanostream.canal as
canal``. Every node function is a greenlet in the calling thread; ``feed(value)`` pushes a
value through the graph depth-first and returns once every node downstream has handled it.

Where nanostream differs from the reference, it is on purpose:

- ``terminate()`` ends a node with several parents only after all of them have ended (the
  reference ends it when the first one does, so the others' final outputs are lost).
- an exception in a node travels up like a function call's: out of the ``outp`` call of
  the node that delivered the value, and on to the ``feed()`` that caused it. A node that
  has ended that way refuses further values with :class:`~nanostream.RunStateError`.
- a node function that returns while its input goes on raises
  :class:`NodeEndedEarlyError` (a ``ValueError``) from the ``feed()`` that saw it.

Example:
    >>> import nanostream.canal as canal
    >>> graph = canal.Graph()
    >>> feed = graph.add_source()
    >>> lengths = []
    >>> def record(inp, outp):
    ...     for value in inp:
    ...         lengths.append(len(value))
    >>> graph.add_node(record)
    >>> graph.add_edge(feed, record)
    >>> feed("hello")
    >>> lengths
    [5]
    >>> graph.terminate()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from greenlet import getcurrent, greenlet

from .._core.context import node_label
from .._core.errors import CycleError, GraphError, NodeProtocolError, RunStateError
from .._core.node import NanoNode

__all__ = ["Graph", "NodeEndedEarlyError", "SinkEmitError", "ZombieNodeError"]


class SinkEmitError(GraphError):
    """A node with no outgoing edge emitted a value (or a source with no edge was fed).

    Example:
        >>> import nanostream.canal as canal
        >>> graph = canal.Graph()
        >>> def shout(inp, outp):
        ...     for value in inp:
        ...         outp(value.upper())
        >>> graph.add_node(shout)
        >>> feed = graph.add_source()
        >>> graph.add_edge(feed, shout)
        >>> try:
        ...     feed("hi")
        ... except canal.SinkEmitError as exc:
        ...     print(exc)
        node 'shout' emitted 'HI' but has no outgoing edge; add_edge() it to a node
    """


class ZombieNodeError(NodeProtocolError):
    """After ``terminate()`` ended its input, a node function was still running.

    Example:
        >>> import nanostream.canal as canal
        >>> graph = canal.Graph()
        >>> def undead(inp, outp):
        ...     while True:  # reads its input again and again
        ...         for value in inp:
        ...             pass
        >>> graph.add_node(undead)
        >>> try:
        ...     graph.terminate()
        ... except canal.ZombieNodeError as exc:
        ...     print(exc)
        node(s) still running after their input ended: 'undead'
    """


class NodeEndedEarlyError(NodeProtocolError, ValueError):
    """A node function returned before reading its whole input (also a ``ValueError``).

    Example:
        >>> import nanostream.canal as canal
        >>> def lazy(inp, outp):
        ...     return None
        >>> try:
        ...     canal.Graph().add_node(lazy)
        ... except ValueError as exc:
        ...     print(type(exc).__name__)
        NodeEndedEarlyError
    """


class _Signal:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_END = _Signal("END")  # sent into a node by terminate(): its input has ended
_NEED = _Signal("NEED")  # sent back by a node: give me the next value
_DONE = _Signal("DONE")  # a node's greenlet returns it when the node function has returned


def _label(obj: object) -> str:
    name = getattr(obj, "__name__", None)
    if isinstance(name, str):
        return name
    return node_label(obj) if isinstance(obj, NanoNode) else type(obj).__name__


class _Node:
    """One node function of a graph: its greenlet, and which greenlet waits for input."""

    __slots__ = ("greenlet", "key", "label", "state", "waiter")

    def __init__(self, key: object, label: str) -> None:
        self.key = key
        self.label = label
        self.greenlet: Any = None
        self.waiter: Any = None  # the greenlet that asked for the next value
        self.state = "starting"  # starting | waiting | busy | ended | failed


class _Input:
    """A node's ``inp``: each ``next()`` hands control back to whoever delivers values."""

    __slots__ = ("node",)

    def __init__(self, node: _Node) -> None:
        self.node = node

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        node = self.node
        node.state = "waiting"
        node.waiter = getcurrent()
        value = node.greenlet.parent.switch(_NEED)
        node.state = "busy"
        if value is _END:
            raise StopIteration
        return value


class Graph:
    """Node functions linked by edges, all run as greenlets in the calling thread.

    - ``add_source()`` returns ``feed``, a callable that is also the source's identity;
      ``feed(value)`` pushes ``value`` to the source's targets, depth-first, and returns
      once every node downstream has handled it.
    - ``add_node(function)`` starts the node function at once and runs it until it first
      reads its input; a ``NanoNode`` is accepted too (its ``as_function()`` runs).
    - ``add_edge(source, target)``: ``source``'s outputs go to every target, in the order
      the edges were added; several edges into one node merge into its one input.
    - ``terminate()`` ends the input of every node, parents before children, so a node's
      final outputs still reach its children.

    Exceptions raised in a node surface from the ``feed()`` (or ``terminate()``) call
    that caused them. A graph belongs to the thread that builds it: greenlets cannot
    switch between threads.

    Example:
        >>> import nanostream.canal as canal
        >>> from nanostream.canal.nodes import grep, sink_to_callable, transform
        >>> graph = canal.Graph()
        >>> feed = graph.add_source()
        >>> big, plus = grep(lambda x: x > 2), transform(lambda x: x + 100)
        >>> out = []
        >>> sink = sink_to_callable(out.append)
        >>> for node in (big, plus, sink):
        ...     graph.add_node(node)
        >>> graph.add_edge(feed, big)
        >>> graph.add_edge(big, plus)
        >>> graph.add_edge(plus, sink)
        >>> for x in range(5):
        ...     feed(x)
        >>> out
        [103, 104]
        >>> graph.terminate()
    """

    def __init__(self) -> None:
        self._nodes: dict[object, _Node] = {}
        self._sources: list[object] = []
        self._edges: dict[object, list[object]] = {}
        self._terminated = False

    # ----------------------------------------------------------------- building
    def add_source(self) -> Callable[[Any], None]:
        """A new source: the returned ``feed(value)`` pushes ``value`` through the graph.

        Example:
            >>> import nanostream.canal as canal
            >>> graph = canal.Graph()
            >>> feed = graph.add_source()
            >>> feed is graph.add_source()
            False
        """

        def feed(value: Any) -> None:
            if self._terminated:
                raise RunStateError("the graph has been terminated; build a new Graph to feed")
            self._emit(feed, value)

        self._sources.append(feed)
        return feed

    def add_node(self, function: Any) -> None:
        """Add a node function and run it until it first reads its input.

        Set-up code before the node's loop runs at once. A node function that returns
        without reading is a ``ValueError`` (:class:`NodeEndedEarlyError`). The function
        object is the node's identity: it can be added once.

        Example:
            >>> import nanostream.canal as canal
            >>> def greet(inp, outp):
            ...     print("setting up")
            ...     for value in inp:
            ...         pass
            >>> canal.Graph().add_node(greet)
            setting up
        """
        if function in self._nodes:
            raise GraphError(f"node {_label(function)!r} is already in this graph")
        if self._terminated:
            raise RunStateError("the graph has been terminated; build a new Graph")
        if isinstance(function, NanoNode):
            call = function.as_function()
        elif callable(function):
            call = function
        else:
            raise GraphError(f"cannot add {function!r}: a node is a function f(inp, outp)")
        node = _Node(function, _label(function))
        inp = _Input(node)

        def outp(value: Any) -> None:
            self._emit(function, value)

        def main() -> _Signal:
            call(inp, outp)
            return _DONE

        node.greenlet = node.waiter = greenlet(main)
        try:
            result = node.greenlet.switch()
        except BaseException:
            node.state = "failed"
            raise
        if result is _DONE:
            raise NodeEndedEarlyError(
                f"node function {node.label!r} returned without reading its input; a node "
                "function must iterate over its entire input"
            )
        self._nodes[function] = node

    def add_edge(self, source: Any, target: Any) -> None:
        """Send ``source``'s outputs to ``target`` too (after its earlier targets).

        ``source`` is a feed from :meth:`add_source` or a node; ``target`` is a node,
        which may be added with :meth:`add_node` later but before values reach it.

        Example:
            >>> import nanostream.canal as canal
            >>> graph = canal.Graph()
            >>> feed = graph.add_source()
            >>> seen = []
            >>> def first(inp, outp):
            ...     for value in inp:
            ...         seen.append(("first", value))
            >>> def second(inp, outp):
            ...     for value in inp:
            ...         seen.append(("second", value))
            >>> graph.add_node(first)
            >>> graph.add_node(second)
            >>> graph.add_edge(feed, second)
            >>> graph.add_edge(feed, first)
            >>> feed(1)
            >>> seen
            [('second', 1), ('first', 1)]
        """
        if target in self._sources:
            raise GraphError(f"a source ({_label(target)!r}) cannot be the target of an edge")
        if source is target:
            raise CycleError([_label(source)])
        path = self._path(target, source)
        if path is not None:
            raise CycleError([_label(n) for n in [source, *path[:-1]]])
        self._edges.setdefault(source, []).append(target)

    def _path(self, start: object, goal: object) -> list[object] | None:
        """A path of edges from ``start`` to ``goal`` (both included), or None."""
        stack: list[tuple[object, list[object]]] = [(start, [start])]
        seen = {id(start)}
        while stack:
            node, path = stack.pop()
            if node is goal:
                return path
            for child in self._edges.get(node, ()):
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, [*path, child]))
        return None

    # ----------------------------------------------------------------- running
    def _emit(self, source: object, value: Any) -> None:
        targets = self._edges.get(source)
        if not targets:
            raise SinkEmitError(
                f"node {_label(source)!r} emitted {value!r} but has no outgoing edge; "
                "add_edge() it to a node"
            )
        for target in targets:
            self._deliver(target, value)

    def _deliver(self, key: object, value: Any) -> None:
        node = self._nodes.get(key)
        if node is None:
            raise GraphError(
                f"node {_label(key)!r} has an incoming edge but was never added; "
                "call add_node() on it"
            )
        if node.state in ("ended", "failed"):
            raise RunStateError(f"node {node.label!r} cannot take {value!r}: it has ended")
        if node.state != "waiting":
            raise RunStateError(
                f"node {node.label!r} cannot take {value!r}: it is still handling an earlier "
                "value (is a feed() called from inside the graph?)"
            )
        self._resume(node, value)
        if node.state == "ended":
            raise NodeEndedEarlyError(
                f"node function {node.label!r} returned before its input ended; a node "
                "function must iterate over its entire input"
            )

    def _resume(self, node: _Node, value: Any) -> None:
        """Hand ``value`` to ``node``; return when it wants the next one or has ended."""
        node.state = "busy"
        # Whoever delivers is the node's parent, so the node's exception (or its end)
        # comes back here, as from a function call.
        node.greenlet.parent = getcurrent()
        try:
            result = node.waiter.switch(value)
        except BaseException:
            if node.greenlet.dead:
                node.state = "failed"
            raise
        if result is _DONE:
            node.state = "ended"

    def terminate(self) -> None:
        """End every node's input, parents before children; then check that all ended.

        A node's code after its loop runs while its children still run, so final outputs
        are delivered; a node fed by several parents ends after all of them. A node still
        running afterwards (it reads its input again) raises :class:`ZombieNodeError`.
        Feeding a terminated graph raises :class:`~nanostream.RunStateError`.

        Example:
            >>> import nanostream.canal as canal
            >>> from nanostream.canal.nodes import aggregate, sink_to_callable
            >>> graph = canal.Graph()
            >>> feed = graph.add_source()
            >>> pairs = aggregate(key_func=len, close_func=lambda group: len(group) == 2,
            ...                   flush=True)
            >>> out = []
            >>> sink = sink_to_callable(out.append)
            >>> graph.add_node(pairs)
            >>> graph.add_node(sink)
            >>> graph.add_edge(feed, pairs)
            >>> graph.add_edge(pairs, sink)
            >>> for word in ["a", "bb", "c", "dd", "e"]:
            ...     feed(word)
            >>> out
            [['a', 'c'], ['bb', 'dd']]
            >>> graph.terminate()  # the open group is flushed to the live sink
            >>> out
            [['a', 'c'], ['bb', 'dd'], ['e']]
        """
        if self._terminated:
            return
        self._terminated = True
        zombies = []
        for node in self._order():
            if node.state != "waiting":
                continue
            self._resume(node, _END)
            if node.state != "ended":
                zombies.append(node.label)
        if zombies:
            raise ZombieNodeError(
                f"node(s) still running after their input ended: {', '.join(map(repr, zombies))}"
            )

    def _order(self) -> list[_Node]:
        """The nodes, each after all of its parents (in the order they were added)."""
        indegree = dict.fromkeys(self._nodes, 0)
        for source, targets in self._edges.items():
            if source in self._nodes:  # feeds end first: they are nobody's target
                for target in targets:
                    if target in indegree:
                        indegree[target] += 1
        ready = [key for key, n in indegree.items() if n == 0]
        order: list[_Node] = []
        while ready:
            key = ready.pop(0)
            order.append(self._nodes[key])
            for target in self._edges.get(key, ()):
                if target in indegree:
                    indegree[target] -= 1
                    if indegree[target] == 0:
                        ready.append(target)
        return order
