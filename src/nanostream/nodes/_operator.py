"""The few primitives every built-in operator is made of.

- :class:`Operator`: a node defined by one node function (its ``_run(inp, outp)``), with
  the node contract's ``setup()`` / ``cleanup()`` around it.
- :class:`Fold`: how a value is accumulated from items (collect a list, reduce, aggregate);
  shared by the windows, ``Reduce`` and ``Aggregate``.
- :func:`run_in_pool`: the loop of a node whose per-item work runs on N worker threads,
  ordered or not, with a bounded number of items in flight.
"""

from __future__ import annotations

import math
import queue
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from .._core.errors import GraphError
from .._core.node import NanoNode, NodeFunction

__all__ = [
    "MISSING",
    "Fold",
    "Operator",
    "callable_label",
    "check_callable",
    "check_choice",
    "check_non_negative",
    "check_positive",
    "run_in_pool",
    "sleep_in_steps",
]

Outp = Callable[[Any], Any]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # one instance, also after pickling


MISSING: Final[Any] = _Missing()
"""Marks an argument that was not given (``None`` may be a real value)."""

# How long a node waits on its workers before it checks again; lets an abort interrupt it.
_POLL_S = 0.25


def callable_label(func: object) -> str:
    """A short name of a user callable for messages: its qualified name, or ``lambda``.

    Example:
        >>> from nanostream.nodes._operator import callable_label
        >>> callable_label(str.upper), callable_label(lambda x: x)
        ('str.upper', 'lambda')
    """
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not isinstance(name, str):
        return type(func).__name__
    return "lambda" if name.endswith("<lambda>") else name


def check_callable(owner: str, what: str, value: object, *, optional: bool = False) -> None:
    """Raise ``GraphError`` unless ``value`` is callable (or ``None`` when optional).

    Example:
        >>> from nanostream.nodes._operator import check_callable
        >>> check_callable("Map", "func", 3)
        Traceback (most recent call last):
        nanostream._core.errors.GraphError: Map: func must be a function, got 3
    """
    if value is None and optional:
        return
    if not callable(value):
        raise GraphError(f"{owner}: {what} must be a function, got {value!r}")


def check_positive(owner: str, what: str, value: object, *, integer: bool = False) -> None:
    """Raise ``GraphError`` unless ``value`` is a positive number (an int if ``integer``).

    Example:
        >>> from nanostream.nodes._operator import check_positive
        >>> check_positive("Batch", "size", 2.5, integer=True)
        Traceback (most recent call last):
        nanostream._core.errors.GraphError: Batch: size must be a positive integer, got 2.5
    """
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (isinstance(value, int) or not integer)
        and math.isfinite(value)
        and value > 0
    )
    if not ok:
        kind = "integer" if integer else "number"
        raise GraphError(f"{owner}: {what} must be a positive {kind}, got {value!r}")


def check_non_negative(owner: str, what: str, value: object) -> None:
    """Raise ``GraphError`` unless ``value`` is a finite number >= 0.

    Example:
        >>> from nanostream.nodes._operator import check_non_negative
        >>> check_non_negative("Delay", "seconds", 0)
    """
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not value >= 0
        or not math.isfinite(value)
    ):
        raise GraphError(f"{owner}: {what} must be a number >= 0, got {value!r}")


def check_choice(owner: str, what: str, value: object, choices: Sequence[str]) -> None:
    """Raise ``GraphError`` unless ``value`` is one of ``choices``.

    Example:
        >>> from nanostream.nodes._operator import check_choice
        >>> check_choice("Join", "how", "outer", ("inner", "left"))
        Traceback (most recent call last):
        nanostream._core.errors.GraphError: Join: how must be 'inner' or 'left', got 'outer'
    """
    if value not in choices:
        options = " or ".join(repr(c) for c in choices)
        raise GraphError(f"{owner}: {what} must be {options}, got {value!r}")


class Operator(NanoNode):
    """A node defined by one node function: subclasses implement ``_run(inp, outp)``.

    The node function runs ``setup()``, then ``_run``, then ``cleanup()`` (whose outputs
    are emitted), like any ``NanoNode``. Arguments are checked when the operator is made,
    so a wrong argument is a ``GraphError`` before any thread starts.

    Example:
        >>> from nanostream.nodes._operator import Operator
        >>> class Pairs(Operator):
        ...     def _run(self, inp, outp):
        ...         held = []
        ...         for item in inp:
        ...             held.append(item)
        ...             if len(held) == 2:
        ...                 outp(tuple(held))
        ...                 held = []
        >>> out = []
        >>> Pairs().as_function()(range(5), out.append)
        >>> out
        [(0, 1), (2, 3)]
    """

    #: Named output ports this node emits on besides the default; the runner routes
    #: ``TaggedOutput`` values when this is non-empty.
    ports: tuple[str, ...] = ()

    def __init__(self, *, name: str | None = None, **options: Any) -> None:
        super().__init__(name=name)
        if options:
            self.configure(**options)

    @property
    def label(self) -> str:
        """The node's name, or its class name while it has none (for messages)."""
        return self.name or type(self).__name__

    def validate(self) -> None:
        """Operators check their arguments when made; nothing is left to check here."""

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        raise NotImplementedError  # pragma: no cover - every operator defines it

    def as_function(self) -> NodeFunction:
        """This operator as a node function ``f(inp, outp)``."""
        node = self

        def operator_function(inp: Iterable[Any], outp: Outp) -> None:
            node.setup()
            node._run(inp, outp)
            node._run_cleanup(outp)

        operator_function.__qualname__ = operator_function.__name__ = (
            f"{type(self).__name__}.function"
        )
        return operator_function

    def default_name(self) -> str:
        """The name a pipeline gives this node when it has none: its class name."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Fold:
    """How one value is accumulated from items: ``first(item)``, ``add(acc, item)``, ``result``.

    Made by :meth:`collect` (a list of the items), :meth:`reduce` (like ``functools.reduce``)
    or :meth:`aggregate` (a fresh accumulator per key or window).

    Example:
        >>> import operator
        >>> from nanostream.nodes._operator import Fold
        >>> Fold.collect().over("abc"), Fold.reduce(operator.add, 10).over([1, 2])
        (['a', 'b', 'c'], 13)
        >>> Fold.aggregate(set, lambda s, x: s | {x}, sorted).over([3, 1, 3])
        [1, 3]
    """

    __slots__ = ("add", "first", "result")

    def __init__(
        self,
        first: Callable[[Any], Any],
        add: Callable[[Any, Any], Any],
        result: Callable[[Any], Any] | None = None,
    ) -> None:
        self.first = first
        self.add = add
        self.result: Callable[[Any], Any] = result if result is not None else _identity

    @classmethod
    def collect(cls) -> Fold:
        """The list of the items, in arrival order."""
        return cls(_singleton_list, _append)

    @classmethod
    def reduce(cls, func: Callable[[Any, Any], Any], initial: Any = MISSING) -> Fold:
        """``func(acc, item)`` over the items, starting from ``initial`` or the first item."""
        if initial is MISSING:
            return cls(_identity, func)
        return cls(lambda item: func(initial, item), func)

    @classmethod
    def aggregate(
        cls,
        create: Callable[[], Any],
        add: Callable[[Any, Any], Any],
        result: Callable[[Any], Any] | None = None,
    ) -> Fold:
        """``acc = add(acc, item)`` from a fresh ``create()``; the value is ``result(acc)``."""
        return cls(lambda item: add(create(), item), add, result)

    @classmethod
    def of(
        cls, owner: str, reduce: Callable[[Any, Any], Any] | None, initial: Any = MISSING
    ) -> Fold:
        """The fold for an operator's ``reduce=`` / ``initial=`` arguments (checked)."""
        if reduce is None:
            if initial is not MISSING:
                raise GraphError(f"{owner}: initial= needs reduce=; without it items are listed")
            return cls.collect()
        check_callable(owner, "reduce", reduce)
        return cls.reduce(reduce, initial)

    def over(self, items: Iterable[Any]) -> Any:
        """The value of the items (at least one)."""
        it = iter(items)
        acc = self.first(next(it))
        add = self.add
        for item in it:
            acc = add(acc, item)
        return self.result(acc)


def _identity(value: Any) -> Any:
    return value


def _singleton_list(item: Any) -> list[Any]:
    return [item]


def _append(acc: list[Any], item: Any) -> list[Any]:
    acc.append(item)
    return acc


def _wait_result(future: Future[list[Any]]) -> list[Any]:
    # Wait in short steps, so an abort (injected into this thread) is seen promptly.
    while True:
        try:
            return future.result(timeout=_POLL_S)
        except TimeoutError:
            if future.done():
                raise


def run_in_pool(
    inp: Iterable[Any],
    outp: Outp,
    work: Callable[[Any], list[Any]],
    *,
    workers: int,
    ordered: bool,
    max_in_flight: int,
    thread_name: str,
) -> None:
    """Emit ``work(item)``'s outputs for every item, computing them on ``workers`` threads.

    Runs in the node's own thread, which alone reads ``inp`` and calls ``outp``; the worker
    threads only call ``work``. At most ``max_in_flight`` items are submitted and not yet
    emitted: when that many are, the node waits before it reads more input, so
    back-pressure still reaches upstream. ``ordered`` keeps the input order; otherwise
    outputs go out as they complete. Completed outputs are emitted whenever the node gets
    a new item, and all of them before the input's end returns. The worker threads are
    joined before this returns, also when it fails.

    Example:
        >>> from nanostream.nodes._operator import run_in_pool
        >>> out = []
        >>> run_in_pool(range(5), out.append, lambda x: [x, -x], workers=3, ordered=True,
        ...             max_in_flight=6, thread_name="nanostream-example")
        >>> out
        [0, 0, 1, -1, 2, -2, 3, -3, 4, -4]
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name)
    try:
        if ordered:
            _ordered(inp, outp, work, pool, max_in_flight)
        else:
            _unordered(inp, outp, work, pool, max_in_flight)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ordered(
    inp: Iterable[Any],
    outp: Outp,
    work: Callable[[Any], list[Any]],
    pool: ThreadPoolExecutor,
    limit: int,
) -> None:
    pending: deque[Future[list[Any]]] = deque()
    submit = pool.submit
    for item in inp:
        pending.append(submit(work, item))
        while pending and (len(pending) >= limit or pending[0].done()):
            for out in _wait_result(pending.popleft()):
                outp(out)
    while pending:
        for out in _wait_result(pending.popleft()):
            outp(out)


def _unordered(
    inp: Iterable[Any],
    outp: Outp,
    work: Callable[[Any], list[Any]],
    pool: ThreadPoolExecutor,
    limit: int,
) -> None:
    done: queue.SimpleQueue[Future[list[Any]]] = queue.SimpleQueue()
    in_flight = 0
    submit = pool.submit

    def emit(future: Future[list[Any]]) -> None:
        for out in future.result():
            outp(out)

    def wait_one() -> Future[list[Any]]:
        while True:
            try:
                return done.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    for item in inp:
        submit(work, item).add_done_callback(done.put)
        in_flight += 1
        if in_flight >= limit:
            emit(wait_one())
            in_flight -= 1
        while in_flight:
            try:
                future = done.get_nowait()
            except queue.Empty:
                break
            in_flight -= 1
            emit(future)
    while in_flight:
        emit(wait_one())
        in_flight -= 1


def sleep_in_steps(seconds: float) -> None:
    """``time.sleep`` in steps of at most 0.1 s, so an abort is seen promptly.

    Example:
        >>> from nanostream.nodes._operator import sleep_in_steps
        >>> sleep_in_steps(0.001)
    """
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))
