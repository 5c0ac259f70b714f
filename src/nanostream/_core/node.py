"""Nodes: the ``NanoNode`` base class, node functions as nodes, and linking with ``>``."""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import GraphError, NodeProtocolError
from .signals import SourceStopped

if TYPE_CHECKING:
    from .graph import Pipeline
    from .run import Run

__all__ = [
    "FunctionNode",
    "IterableSource",
    "NanoNode",
    "NodeFunction",
    "Port",
    "as_node",
    "from_iterable",
]

NodeFunction = Callable[[Iterable[Any], Callable[[Any], Any]], Any]
"""A node function: ``f(inp, outp)`` reads all of ``inp`` and calls ``outp(value)`` to emit."""

T = TypeVar("T")
DEFAULT_PORT = "out"


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


class Port:
    """A named output of a node: ``node["name"] > other`` links that output only.

    Every node has the default port ``"out"``, which is what ``node > other`` uses.

    Example:
        >>> import nanostream
        >>> src = nanostream.from_iterable([1, 2])
        >>> sink = nanostream.testing.Collect()
        >>> src["out"] > sink  # the same as src > sink
        Collect(name=None)
        >>> src.global_start()
        >>> sink.items
        [1, 2]
    """

    __slots__ = ("name", "node")

    def __init__(self, node: NanoNode, name: str) -> None:
        self.node = node
        self.name = name

    def __gt__(self, other: T) -> T:
        self.node._link(self.name, other)
        return other

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"{self.node!r}[{self.name!r}]"


class NanoNode:
    """Base class of every node.

    A *source* defines ``generator(self)`` and yields items; any other node defines
    ``process_item(self, item)`` and yields zero or more outputs per item. Both may define
    ``setup()`` (runs in the node's thread before the first item) and ``cleanup()`` (runs
    after the input ends; it may yield final outputs). Subclasses with their own
    ``__init__`` call ``super().__init__()``.

    Keyword options: ``name`` (unique within a pipeline; defaults to the class name),
    ``queue_size`` (capacity of this node's input queue, in items) and ``batch_size``
    (largest batch this node sends downstream).

    Example:
        >>> import nanostream
        >>> class Double(nanostream.NanoNode):
        ...     def process_item(self, item):
        ...         yield item * 2
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([1, 2, 3]) > Double() > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [2, 4, 6]
    """

    # Class-level defaults, so a subclass that forgets super().__init__() still works.
    _ns_name: str | None = None
    _ns_options: dict[str, Any] | None = None
    _ns_pipeline: Pipeline | None = None
    _ns_stop_event: threading.Event | None = None

    def __init__(
        self,
        *,
        name: str | None = None,
        queue_size: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self._ns_name = name
        self._ns_options = {}
        self.configure(queue_size=queue_size, batch_size=batch_size)

    # ----------------------------------------------------------------- options
    @property
    def name(self) -> str | None:
        """The node's explicit name, or ``None`` until the pipeline names it.

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([], name="numbers").name
            'numbers'
        """
        return self._ns_name

    @name.setter
    def name(self, value: str | None) -> None:
        self._ns_name = value

    def configure(self, **options: Any) -> NanoNode:
        """Set node options (``name``, ``queue_size``, ``batch_size``); returns the node.

        Example:
            >>> import nanostream
            >>> node = nanostream.from_iterable([]).configure(queue_size=10)
            >>> node.options["queue_size"]
            10
        """
        if self._ns_options is None:
            self._ns_options = {}
        for key, value in options.items():
            if key == "name":
                self._ns_name = value
                continue
            if key not in ("queue_size", "batch_size"):
                raise GraphError(f"unknown node option {key!r} for {self!r}")
            if value is None:
                self._ns_options.pop(key, None)
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise GraphError(f"{key} of {self!r} must be a positive integer, got {value!r}")
            self._ns_options[key] = value
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The node's options that were set explicitly (a copy).

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([], batch_size=5).options
            {'batch_size': 5}
        """
        return dict(self._ns_options or {})

    # ----------------------------------------------------------------- kinds
    @property
    def is_source(self) -> bool:
        """True when the node makes its own data (it defines ``generator()``).

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([1]).is_source
            True
        """
        return type(self).generator is not NanoNode.generator

    def generator(self) -> Iterator[Any]:
        """Override in a source node: yield the items the source emits."""
        raise NotImplementedError  # pragma: no cover - replaced by subclasses

    def process_item(self, item: Any) -> Iterator[Any]:
        """Override in a processing node: yield zero or more outputs for ``item``."""
        raise NotImplementedError  # pragma: no cover - replaced by subclasses

    def setup(self) -> None:
        """Runs in the node's thread before the first item. Override as needed."""

    def cleanup(self) -> Iterator[Any] | None:
        """Runs after the node's input has ended; may yield final outputs. Override as needed."""
        return None

    # ----------------------------------------------------------------- stop helpers
    @property
    def stop_requested(self) -> bool:
        """True once the run this node belongs to is stopping; a source may check it.

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([]).stop_requested
            False
        """
        event = self._ns_stop_event
        return event is not None and event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when the run stops; True if it was stopped.

        Sources that wait between items should use this instead of ``time.sleep`` so that
        ``stop()`` takes effect at once.

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([]).sleep(0.001)
            False
        """
        event = self._ns_stop_event
        if event is None:
            event = threading.Event()
        return event.wait(seconds)

    # ----------------------------------------------------------------- node function
    def validate(self) -> None:
        """Check that the class follows the node contract; raises ``GraphError`` if not.

        Called when a pipeline is checked, before any thread starts.

        Example:
            >>> import nanostream
            >>> class Bad(nanostream.NanoNode):
            ...     def process_item(self, item):
            ...         return item + 1
            >>> try:
            ...     Bad().validate()
            ... except nanostream.GraphError as exc:
            ...     print(str(exc).split("(")[0])
            process_item of node 'Bad' must yield its outputs
        """
        cls = type(self)
        label = self._ns_name or cls.__name__
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
        method = cls.generator if has_gen else cls.process_item
        if not inspect.isgeneratorfunction(method):
            raise GraphError(
                f"{method.__name__} of node {label!r} must yield its outputs "
                f"(use 'yield value', not 'return value'): {_where(method)}"
            )

    def as_function(self) -> NodeFunction:
        """This node as a node function ``f(inp, outp)``, runnable by any system.

        Example:
            >>> import nanostream
            >>> class AddOne(nanostream.NanoNode):
            ...     def process_item(self, item):
            ...         yield item + 1
            >>> out = []
            >>> AddOne().as_function()([1, 2], out.append)
            >>> out
            [2, 3]
        """
        self.validate()
        node = self
        if self.is_source:

            def source_function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
                for _ in inp:
                    pass
                node.setup()
                gen: Any = node.generator()
                try:
                    for item in gen:
                        outp(item)
                except SourceStopped:
                    pass
                finally:
                    gen.close()
                node._run_cleanup(outp)

            return source_function

        def process_function(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            node.setup()
            process = node.process_item
            for item in inp:
                for out in process(item):
                    outp(out)
            node._run_cleanup(outp)

        return process_function

    def _run_cleanup(self, outp: Callable[[Any], Any]) -> None:
        result = self.cleanup()
        if result is None:
            return
        if isinstance(result, (str, bytes, dict)) or not hasattr(result, "__iter__"):
            raise NodeProtocolError(
                f"cleanup() of node {self._ns_name or type(self).__name__!r} returned "
                f"{type(result).__name__}; it must yield its final outputs or return None"
            )
        for out in result:
            outp(out)

    # ----------------------------------------------------------------- linking
    def _pipeline(self) -> Pipeline:
        pipeline = self._ns_pipeline
        if pipeline is None:
            from .graph import Pipeline

            pipeline = Pipeline()
            pipeline._add(self)
        return pipeline

    def _link(self, port: str, other: object) -> None:
        target = node_of(other)
        self._pipeline().link(self, port, target)

    def __gt__(self, other: T) -> T:
        self._link(DEFAULT_PORT, other)
        return other

    def __lt__(self, other: object) -> NanoNode:
        # Reflected ``other > self``: Python calls it when ``other`` is a plain function.
        node_of(other)._link(DEFAULT_PORT, self)
        return self

    def __getitem__(self, port: str) -> Port:
        if not isinstance(port, str):
            raise TypeError(f"a port name is a string, got {port!r}")
        return Port(self, port)

    def __bool__(self) -> bool:
        return True

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._ns_name!r})"

    # ----------------------------------------------------------------- running
    def global_start(
        self,
        *,
        block: bool = True,
        runner: str | Any = "threads",
        **options: Any,
    ) -> Run | None:
        """Start every node of the graph this node belongs to.

        With ``block=True`` (the default) it returns when every node has finished and
        raises :class:`~nanostream.NodeFailed` if one failed. With ``block=False`` it
        returns the :class:`~nanostream.Run` handle at once. ``runner`` picks the runner
        (``"threads"``, the default). Other keyword options (``queue_size``,
        ``batch_size``, ``name``, ``monitor_interval``, ``stall_timeout``, …) set
        pipeline-wide defaults; see :class:`~nanostream.RunOptions`.

        Example:
            >>> import nanostream
            >>> sink = nanostream.testing.Collect()
            >>> nanostream.from_iterable(range(3)) > sink
            Collect(name=None)
            >>> run = sink.global_start(block=False)
            >>> run.wait(timeout=10)
            True
            >>> sink.items
            [0, 1, 2]
        """
        run = self._pipeline().start(runner=runner, **options)
        if not block:
            return run
        run.wait_interruptibly()
        return None

    def global_stop(self, timeout: float | None = None) -> None:
        """Stop the running pipeline gracefully (like :meth:`Run.stop`).

        Example:
            >>> import nanostream, itertools
            >>> src = nanostream.from_iterable(itertools.count())
            >>> run = src.global_start(block=False)
            >>> src.global_stop(timeout=10)
            >>> run.state
            'finished'
        """
        run = self._pipeline().run
        if run is None:
            from .errors import RunStateError

            raise RunStateError(f"{self!r} is not running; call global_start() first")
        run.stop(timeout=timeout)


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

    def validate(self) -> None:
        if not callable(self.function):
            raise GraphError(f"node {self._ns_name!r}: {self.function!r} is not callable")

    def as_function(self) -> NodeFunction:
        return self.function

    def default_name(self) -> str:
        return _callable_name(self.function)

    def __repr__(self) -> str:
        return f"FunctionNode({_callable_name(self.function)}, name={self._ns_name!r})"


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
