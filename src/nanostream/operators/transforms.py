"""Stateless operators, worker pools and batching.

Every operator here is a :class:`FlatMap` (each item becomes zero or more outputs) or a
small loop over the input: ``Map``, ``Filter``, ``Inspect`` and ``KeyBy`` are flat maps
with a faster loop, and each of them accepts ``workers=N`` to run the user function on N
threads. :class:`Parallel` gives the same to any ``process_item`` node.

Example:
    >>> import nanostream
    >>> from nanostream.nodes import Filter, Map
    >>> sink = nanostream.testing.Collect()
    >>> evens = Filter(lambda x: x % 2 == 0)
    >>> nanostream.from_iterable(range(6)) > evens > Map(lambda x: x * 10) > sink
    Collect(name=None)
    >>> sink.global_start()
    >>> sink.items
    [0, 20, 40]
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._core.aio import is_async_callable
from .._core.context import node_label
from .._core.errors import GraphError, OptionError
from .._core.fast import drive
from .._core.node import FunctionNode, NanoNode
from .._core.node_function import is_async_node
from .._core.policy import POLICY_OPTIONS
from .._core.ticks import TICK
from ._arrow import arrow_packer, is_batch, parse_schema, require_pyarrow, rows_of
from ._concurrency import async_expand, map_async, map_in_processes, require_cloudpickle
from ._operator import (
    POOL_TICK_S,
    Operator,
    Outp,
    PolicyGuard,
    callable_label,
    check_callable,
    check_non_negative,
    check_positive,
    map_items,
    tick_for,
)

__all__ = [
    "Batch",
    "Delay",
    "Filter",
    "FlatMap",
    "Inspect",
    "KeyBy",
    "Map",
    "Parallel",
    "Sample",
    "Take",
    "Throttle",
    "Unbatch",
]


def _check_concurrency(
    owner: str, kind: str | None, func: object, is_async: bool, concurrency: int | None
) -> int:
    """The number of calls of an async ``func`` at once (0 for a plain function)."""
    check_positive(owner, "concurrency", concurrency, integer=True, optional=True)
    if is_async and kind is None:
        raise GraphError(
            f"{owner} takes a plain function; for an async def function use Map, FlatMap "
            "or Filter (with concurrency=N)"
        )
    if concurrency is not None and not is_async:
        raise GraphError(
            f"{owner}: concurrency= is the number of calls at once of an async def function, "
            f"and {callable_label(func)} is a plain function; use workers=N for blocking "
            "I/O, or processes=N for CPU-bound work"
        )
    return (concurrency or 1) if is_async else 0


def _check_processes(
    owner: str, kind: str | None, workers: int, processes: int | None, ordered: object
) -> int:
    """The number of worker processes (0: none), checked against the other options."""
    if processes is None:
        return 0
    check_positive(owner, "processes", processes, integer=True)
    if kind is None:
        raise GraphError(f"{owner} takes no processes=; Map, FlatMap, Filter and Parallel do")
    if workers > 1:
        raise GraphError(
            f"{owner}: choose workers= (threads, for blocking I/O) or processes= "
            "(for CPU-bound work), not both"
        )
    require_cloudpickle()
    return processes


class FlatMap(Operator):
    """Emit every output of ``func(item)`` (an iterable) for each item.

    The primitive of the stateless operators. With ``workers=N`` (N > 1), ``func`` runs on
    N threads owned by the node, for I/O-bound work such as calling an API: outputs keep the
    input order when ``ordered=True`` (the default) or go out as they complete with
    ``ordered=False``. At most ``max_in_flight`` items (default ``2 * workers``) are being
    worked on or waiting to be emitted; beyond that the node stops reading its input, so
    back-pressure still holds. Completed outputs are emitted as later items arrive, within
    ``tick_interval`` (default 0.05 s) when no item comes, and all of them by the end of
    the input. The threads start with the run and are joined before the node ends, also
    when ``func`` raises (the run then fails as usual).

    An ``async def`` ``func`` (for ``FlatMap`` an async generator, or a coroutine returning
    an iterable) runs on the node's own event loop, ``concurrency=N`` calls at once (default
    1; ``max_in_flight`` defaults to ``2 * concurrency``), with the same ordering and
    bounds; the loop's thread is joined when the node ends. ``processes=N`` runs a plain
    ``func`` in N worker processes for CPU-bound work (see
    :mod:`nanostream.operators._concurrency`): ordered by default (``ordered=False``: each
    chunk of items as it is done), items and outputs pickled, ``func``
    sent with cloudpickle (lambdas work), ``max_in_flight`` default 1024 items.

    An error policy (``on_error="skip"`` or ``"retry"``, ``timeout``, ``max_errors`` ...)
    applies to each call of ``func``, on the worker threads, the event loop and the worker
    processes too: a failed item leaves no output, goes to the ``errors`` port and counts,
    in its place in the output order. A ``timeout`` cancels an async attempt.

    Example:
        >>> import asyncio, nanostream
        >>> from nanostream.nodes import FlatMap
        >>> sink = nanostream.testing.Collect()
        >>> words = FlatMap(str.split)
        >>> nanostream.from_iterable(["a b", "c"]) > words > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        ['a', 'b', 'c']
        >>> async def letters(word):
        ...     await asyncio.sleep(0.001)  # an async client's call in real life
        ...     return list(word)
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(["ab", "c"]) > FlatMap(letters, concurrency=8) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        ['a', 'b', 'c']
    """

    holds_items = False  # True with workers > 1, concurrency or processes (per instance)

    #: How the worker processes and the event loop compute one item (None: they do not).
    _kind: str | None = "flat_map"

    def __init__(
        self,
        func: Callable[[Any], Any],
        *,
        workers: int = 1,
        concurrency: int | None = None,
        processes: int | None = None,
        ordered: bool = True,
        max_in_flight: int | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        label = node_label(self, with_class=True)
        check_callable(label, "the function", func)
        check_positive(label, "workers", workers, integer=True)
        check_positive(label, "max_in_flight", max_in_flight, integer=True, optional=True)
        self.func = func
        self.is_async = is_async_callable(func)
        self.concurrency = _check_concurrency(label, self._kind, func, self.is_async, concurrency)
        self.processes = _check_processes(label, self._kind, workers, processes, ordered)
        if self.is_async and workers > 1:
            raise GraphError(
                f"{label}: an async def function runs on the node's event loop; ask for "
                f"concurrency={workers} instead of workers={workers}"
            )
        self.workers = workers
        self.ordered = bool(ordered)
        lanes = self.concurrency or self.processes or workers
        if max_in_flight is None:
            max_in_flight = 1024 if self.processes else 2 * lanes
        self.max_in_flight = max_in_flight
        # Items in flight (on threads, the loop or the processes) are kept between reads.
        self.holds_items = lanes > 1 or self.is_async or self.processes > 0
        if self.holds_items:
            self.tick_interval = POOL_TICK_S  # emit completed results on an idle input

    def _user_functions(self) -> tuple[str, ...]:
        return ("the function",)

    def _handles_ticks(self) -> bool:
        return bool(self.holds_items)

    def _expand(self, item: Any) -> Iterable[Any]:
        """The outputs of one item (what a worker thread computes)."""
        outs: Iterable[Any] = self.func(item)
        return outs

    def _serial(self, inp: Iterable[Any], outp: Outp) -> None:
        drive(inp, self.func, outp)  # for item in inp: for out in func(item): outp(out)

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        release = self.release_items if self._releases() else None
        if self.is_async:
            assert self._kind is not None
            map_async(
                self,
                inp,
                outp,
                async_expand(self._kind, self.func),
                concurrency=self.concurrency,
                ordered=self.ordered,
                max_in_flight=self.max_in_flight,
                release=release,
            )
            return
        if self.processes:
            self._run_in_processes(inp, outp, release)
            return
        map_items(
            self,
            inp,
            outp,
            self._expand,
            workers=self.workers,
            ordered=self.ordered,
            max_in_flight=self.max_in_flight,
            release=release,
            serial=self._serial,
        )

    def _run_in_processes(
        self, inp: Iterable[Any], outp: Outp, release: Callable[[int], None] | None
    ) -> None:
        assert self._kind is not None
        map_in_processes(
            self,
            inp,
            outp,
            self._kind,
            self.func,
            processes=self.processes,
            max_in_flight=self.max_in_flight,
            release=release,
            ordered=self.ordered,
        )

    def _releases(self) -> bool:
        """Whether the node says when the items it had in flight are out."""
        return True

    def __repr__(self) -> str:
        func = callable_label(self.func) if "func" in self.__dict__ else "?"
        return f"{type(self).__name__}({func}, name={self.name!r})"


class Map(FlatMap):
    """Emit ``func(item)`` for each item; ``workers=N`` runs ``func`` on N threads.

    See :class:`FlatMap` for ``workers``, ``concurrency`` (an ``async def`` ``func``),
    ``processes`` (N worker processes), ``ordered`` and ``max_in_flight``:
    ``Map(parse, processes=2)`` uses two cores for CPU-bound Python.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Map
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([1, 2, 3]) > Map(lambda x: x + 1, workers=2) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [2, 3, 4]
    """

    _kind = "map"

    def _expand(self, item: Any) -> Iterable[Any]:
        return (self.func(item),)

    def _serial(self, inp: Iterable[Any], outp: Outp) -> None:
        func = self.func
        for item in inp:
            outp(func(item))


class Filter(FlatMap):
    """Pass the items for which ``predicate(item)`` is true.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Filter
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(range(5)) > Filter(lambda x: x > 2) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [3, 4]
    """

    _kind = "filter"

    def _expand(self, item: Any) -> Iterable[Any]:
        return (item,) if self.func(item) else ()

    def _serial(self, inp: Iterable[Any], outp: Outp) -> None:
        predicate = self.func
        for item in inp:
            if predicate(item):
                outp(item)


class Inspect(FlatMap):
    """Call ``func(item)`` for its side effect (log, count, print) and pass the item on.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Inspect
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(["a", "b"]) > Inspect(print) > sink
        Collect(name=None)
        >>> sink.global_start()
        a
        b
        >>> sink.items
        ['a', 'b']
    """

    _kind = None

    def _expand(self, item: Any) -> Iterable[Any]:
        self.func(item)
        return (item,)

    def _serial(self, inp: Iterable[Any], outp: Outp) -> None:
        func = self.func
        for item in inp:
            func(item)
            outp(item)


class KeyBy(FlatMap):
    """Emit ``(func(item), item)`` pairs, for the operators that take ``(key, value)``.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import KeyBy
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(["apple", "bean"]) > KeyBy(len) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [(5, 'apple'), (4, 'bean')]
    """

    _kind = None

    def _expand(self, item: Any) -> Iterable[Any]:
        return ((self.func(item), item),)

    def _serial(self, inp: Iterable[Any], outp: Outp) -> None:
        func = self.func
        for item in inp:
            outp((func(item), item))


class Parallel(FlatMap):
    """Run a ``process_item`` node on ``workers`` threads, or in ``processes`` processes.

    With ``processes=N``, each worker process gets its own copy of ``node`` (sent with
    cloudpickle) and calls its ``setup()`` once; a node with a ``cleanup()`` is refused
    there (its outputs would have nowhere to go).

    ``node.process_item`` is called on the worker threads, so it must be safe to call
    concurrently (guard shared state with a lock); ``setup()`` and ``cleanup()`` run once,
    in the node's own thread. ``ordered``, ``max_in_flight``: as for :class:`FlatMap`.
    The error policy is ``node``'s (``Parallel(Fetch(on_error="retry"), workers=4)``),
    with the options given to ``Parallel`` taking precedence. A ``node`` that keeps items
    between calls (``holds_items = True``) has its acknowledgements wait until the end.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Parallel
        >>> class Fetch(nanostream.NanoNode):
        ...     def process_item(self, url):
        ...         yield f"<html of {url}>"  # a slow API call in real life
        >>> sink = nanostream.testing.Collect()
        >>> urls = nanostream.from_iterable(["a", "b"])
        >>> urls > Parallel(Fetch(), workers=4) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        ['<html of a>', '<html of b>']
    """

    def __init__(
        self,
        node: NanoNode,
        *,
        workers: int | None = None,
        processes: int | None = None,
        ordered: bool = True,
        max_in_flight: int | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(node, NanoNode) or isinstance(node, (FunctionNode, Operator)):
            raise GraphError(
                f"Parallel needs a NanoNode with process_item(), got {node!r}; for a plain "
                "function use Map(func, workers=N)"
            )
        if node.is_source:
            raise GraphError(f"Parallel cannot run source {node!r}: it has no input to share")
        if node._ns_pipeline is not None and node._ns_pipeline.edges:
            raise GraphError(
                f"{node!r} is already linked into a pipeline; give Parallel a fresh node and "
                "link the Parallel instead"
            )
        if workers is None and processes is None:
            raise GraphError(
                f"Parallel({node!r}) needs workers=N (threads, for blocking I/O) or "
                "processes=N (worker processes, for CPU-bound work)"
            )
        node.validate()
        if is_async_node(node):
            raise GraphError(
                f"Parallel cannot share {node!r}: its process_item is async def and runs on "
                "its own event loop; link the node itself"
            )
        if processes is not None and type(node).cleanup is not NanoNode.cleanup:
            raise GraphError(
                f"Parallel({node!r}, processes=...) runs copies of the node in worker "
                "processes, where cleanup() has nowhere to send its outputs; use workers=N, "
                "or move the work of cleanup() into a node downstream"
            )
        inherited = {key: node.options[key] for key in POLICY_OPTIONS if key in node.options}
        super().__init__(
            node._item_function(),
            workers=workers or 1,
            processes=processes,
            ordered=ordered,
            max_in_flight=max_in_flight,
            name=name,
            **{**inherited, **options},
        )
        self.node = node
        self.ports = tuple(getattr(node, "ports", ()) or ())
        self.holds_items = self.holds_items or bool(node.items_held())

    def _releases(self) -> bool:
        return not self.node.items_held()

    def _run_in_processes(
        self, inp: Iterable[Any], outp: Outp, release: Callable[[int], None] | None
    ) -> None:
        map_in_processes(
            self,
            inp,
            outp,
            "flat_map",
            self.func,
            processes=self.processes,
            max_in_flight=self.max_in_flight,
            release=release,
            setup=self.node.setup,
            ordered=self.ordered,
        )

    def setup(self) -> None:
        if not self.processes:  # else each worker process sets its own copy up
            self.node.setup()

    def cleanup(self) -> Iterator[Any] | None:
        return self.node.cleanup()

    def default_name(self) -> str:
        return self.node.name or type(self.node).__name__

    def __repr__(self) -> str:
        inner = self.__dict__.get("node", "?")
        return f"Parallel({inner!r}, workers={self.__dict__.get('workers')}, name={self.name!r})"


class Sample(Operator):
    """Pass each item with probability ``fraction``; ``seed`` makes the choice repeatable.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Sample
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(range(1000)) > Sample(0.1, seed=7) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> 50 < len(sink.items) < 150
        True
    """

    holds_items = False

    def __init__(
        self, fraction: float, *, seed: int | None = None, name: str | None = None, **options: Any
    ) -> None:
        super().__init__(name=name, **options)
        label = node_label(self, with_class=True)
        number = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
        if not number or not 0 <= fraction <= 1:
            raise OptionError(f"{label}: fraction must be a number from 0 to 1, got {fraction!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise OptionError(f"{label}: seed must be an integer or None, got {seed!r}")
        self.fraction = float(fraction)
        self.seed = seed

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        draw = random.Random(self.seed).random
        fraction = self.fraction
        for item in inp:
            if draw() < fraction:
                outp(item)


class Take(Operator):
    """Pass the first ``n`` items, then end the stream for the nodes downstream.

    Once ``n`` items have passed, the downstream nodes see the end of their input (their
    ``cleanup()`` runs and they finish) while ``Take`` reads the rest of its input and drops
    it, so its upstream is never blocked. For an endless source, ``stop=True`` also asks the
    run to stop gracefully (every source stops; what is in flight still drains). Called by
    hand, outside a run, it drops the rest as well.

    Example:
        >>> import itertools, nanostream
        >>> from nanostream.nodes import Take
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(itertools.count()) > Take(3, stop=True) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [0, 1, 2]
    """

    holds_items = False

    def __init__(
        self, n: int, *, stop: bool = False, name: str | None = None, **options: Any
    ) -> None:
        super().__init__(name=name, **options)
        label = node_label(self, with_class=True)
        check_non_negative(label, "n", n, integer=True)
        self.n = n
        self.stop = bool(stop)

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        it = iter(inp)
        left = self.n
        if left > 0:
            for item in it:
                outp(item)
                left -= 1
                if left == 0:
                    break
        if left == 0:
            self.end_outputs()
            if self.stop:
                self.request_stop()
        for _ in it:
            pass


class Throttle(Operator):
    """Pass at most ``rate_per_s`` items per second, waiting as needed (a token bucket).

    Up to ``burst`` items may pass at once after a quiet spell. ``clock`` (seconds) and
    ``sleep`` can be replaced, for tests; by default ``time.monotonic`` and a wait that an
    abort of the run cuts short. Each item is passed on before the next is read.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Throttle
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(range(3)) > Throttle(1000) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [0, 1, 2]
    """

    holds_items = False

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        label = node_label(self, with_class=True)
        check_positive(label, "rate_per_s", rate_per_s)
        check_positive(label, "burst", burst, integer=True)
        check_callable(label, "clock", clock)
        check_callable(label, "sleep", sleep, optional=True)
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self.clock = clock
        self._sleep = sleep

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        rate, burst, clock = self.rate_per_s, self.burst, self.clock
        sleep = self._sleep or self._context().pause
        tokens = float(burst)
        last: float | None = None
        for item in inp:
            now = clock()
            if last is None:
                last = now
            elif now > last:
                tokens = min(float(burst), tokens + (now - last) * rate)
                last = now
            if tokens < 1:
                wait = (1 - tokens) / rate
                sleep(wait)
                tokens = 1.0
                last += wait  # as if the clock moved on by the sleep
            tokens -= 1
            outp(item)


class Delay(Operator):
    """Wait ``seconds`` before passing each item on (so at most ``1/seconds`` items/s).

    ``sleep`` can be replaced, for tests; by default a wait that an abort of the run cuts
    short. Each item is passed on before the next is read.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Delay
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(["a", "b"]) > Delay(0.001) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        ['a', 'b']
    """

    holds_items = False

    def __init__(
        self,
        seconds: float,
        *,
        sleep: Callable[[float], Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        label = node_label(self, with_class=True)
        check_non_negative(label, "seconds", seconds)
        check_callable(label, "sleep", sleep, optional=True)
        self.seconds = float(seconds)
        self._sleep = sleep

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        seconds, sleep = self.seconds, self._sleep or self._context().pause
        for item in inp:
            sleep(seconds)
            outp(item)


class Batch(Operator):
    """Emit lists of items: when ``size`` items are held, or ``timeout`` seconds after the first.

    What is held is emitted when the input ends, which is also what happens on ``stop()``:
    the sources end and everything drains. The timeout is checked when an item arrives (an
    item that arrives after it first sends the held batch, then starts a new one) and, on
    an idle input, every ``tick_interval`` seconds: by default a quarter of ``timeout``
    (at least 1 ms, at most 1 s), so a batch goes out at most that late. With neither
    ``size`` nor ``timeout`` the whole input becomes one list. ``clock`` (seconds, default
    ``time.monotonic``) can be replaced, for tests; it is called once per item when there
    is a timeout, and then ticks are off unless ``tick_interval=`` is given (a test clock
    does not move with the time ticks measure).

    With ``as_arrow=True`` each batch is a ``pyarrow.RecordBatch`` made of the held items,
    which must be dicts (rows); ``schema`` (a ``pyarrow.Schema``, or a mapping of column
    names to pyarrow type names such as ``{"id": "int64"}``) gives its columns and types,
    otherwise pyarrow infers them from each batch. Items that do not fit (not dicts, or a
    value that does not convert) raise a :class:`~nanostream.FormatError` naming the node
    and saying what to pass. It needs pyarrow (``pip install 'nanostream[parquet]'``),
    checked when the node is built. :class:`Unbatch` turns such batches back into rows.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Batch
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(range(5)) > Batch(size=2) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [[0, 1], [2, 3], [4]]
        >>> arrow = nanostream.testing.Collect()
        >>> rows = [{"id": i, "name": f"n{i}"} for i in range(5)]
        >>> nanostream.from_iterable(rows) > Batch(size=4, as_arrow=True) > arrow
        Collect(name=None)
        >>> arrow.global_start()
        >>> [(b.num_rows, b.schema.names) for b in arrow.items]
        [(4, ['id', 'name']), (1, ['id', 'name'])]
    """

    holds_items = True

    def __init__(
        self,
        size: int | None = None,
        timeout: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        as_arrow: bool = False,
        schema: Any = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        label = node_label(self, with_class=True)
        check_positive(label, "size", size, integer=True, optional=True)
        if timeout is not None:
            check_non_negative(label, "timeout", timeout)
        check_callable(label, "clock", clock)
        if schema is not None and not as_arrow:
            raise OptionError(
                f"{label}: schema= gives the columns of Arrow batches; pass "
                "as_arrow=True with it, or leave it out"
            )
        self.size = size
        self.timeout = timeout
        self.clock = clock
        self.as_arrow = as_arrow
        self.schema = schema
        self._pack: Callable[[list[Any]], Any] | None = None
        if as_arrow:
            require_pyarrow()
            self._pack = arrow_packer(parse_schema(schema, name or "Batch"), self)
        if timeout is not None and clock is time.monotonic:
            self.tick_interval = tick_for(timeout)

    def _handles_ticks(self) -> bool:
        return self.timeout is not None

    _held: list[Any] | None = None  # the batch being filled (restored, then the loop's)

    def snapshot_state(self) -> list[Any]:
        """The items of the batch being filled (a restart goes on filling it; its
        ``timeout`` counts again from the restart).

        Example:
            >>> from nanostream.nodes import Batch
            >>> node = Batch(size=3)
            >>> node.restore_state([1, 2])
            >>> out = []
            >>> node.as_function()(iter([3, 4]), out.append)
            >>> out, node.snapshot_state()
            ([[1, 2, 3], [4]], [])
        """
        return list(self._held or ())

    def restore_state(self, state: list[Any]) -> None:
        """Start filling from these items (what :meth:`snapshot_state` took).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        self._held = list(state)

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        size, timeout, clock = self.size, self.timeout, self.clock
        release = self.release_items
        pack = self._pack
        if pack is not None:
            send = outp

            def outp(held: list[Any]) -> Any:
                return send(pack(held))

        held: list[Any] = list(self._held or ())  # restored items, if any
        self._held = held
        first_at = clock() if held and timeout is not None else 0.0
        for item in inp:
            if timeout is not None:
                if item is TICK:
                    if held and clock() - first_at >= timeout:
                        outp(held)
                        held = self._held = []
                        release()
                    continue
                now = clock()
                if held and now - first_at >= timeout:
                    outp(held)
                    held = self._held = []
                    release(keep=1)  # all but the item just read, which is not held yet
                if not held:
                    first_at = now
            held.append(item)
            if size is not None and len(held) >= size:
                outp(held)
                held = self._held = []
                release()
        self._held = []
        if held:
            outp(held)


class Unbatch(Operator):
    """Emit each element of each incoming list (or other iterable): undoes :class:`Batch`.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Unbatch
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([[1, 2], [], [3]]) > Unbatch() > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [1, 2, 3]
    """

    holds_items = False

    def _user_functions(self) -> tuple[str, ...]:
        return ("iterating each item",)  # an item that is not iterable fails

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        if self.error_policy.guarded:
            with PolicyGuard.of(self, outp) as guard:
                for batch in inp:
                    guard.process(batch, _elements)
            return
        for batch in inp:
            for item in rows_of(batch) if is_batch(batch) else batch:
                outp(item)


def _elements(batch: Iterable[Any]) -> Iterable[Any]:
    return rows_of(batch) if is_batch(batch) else batch
