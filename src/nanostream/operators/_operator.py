"""The few primitives every built-in operator is made of.

- :class:`Operator`: a node defined by one node function (its ``_run(inp, outp)``), with
  the node contract's ``setup()`` / ``cleanup()`` around it.
- :class:`Fold`: how a value is accumulated from items (collect a list, reduce, aggregate);
  shared by the windows, ``Reduce`` and ``Aggregate``.
- :class:`PolicyGuard`: the node's error policy (``on_error``, ``retries``, ``timeout``,
  ``max_errors`` ...) applied by an operator to the calls of user code it makes per item,
  per window, or on worker threads.
- :func:`run_in_pool`: the loop of a node whose per-item work runs on N worker threads,
  ordered or not, with a bounded number of items in flight.
- :func:`map_items`: the loop of every node with ``workers=`` (``Map``, ``Parallel``,
  ``HttpRequest`` ...): one thread or a pool, under the node's error policy.
"""

from __future__ import annotations

import math
import queue
import threading
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Final, NamedTuple, TypeGuard

from .._core.aio import wait_future
from .._core.context import node_label
from .._core.errors import GraphError, OptionError
from .._core.fast import drive
from .._core.node import NanoNode, NodeFunction
from .._core.node_function import restore_state
from .._core.policy import POLICY_OPTIONS, ItemGuard, back_off
from .._core.ticks import TICK

__all__ = [
    "MISSING",
    "POOL_TICK_S",
    "Fold",
    "Operator",
    "PolicyGuard",
    "callable_label",
    "check_callable",
    "check_choice",
    "check_non_negative",
    "check_positive",
    "emit_all",
    "kept_reads",
    "map_items",
    "oldest_open",
    "run_in_pool",
    "tick_for",
]

Outp = Callable[[Any], Any]

POOL_TICK_S: Final = 0.05
"""The ``tick_interval`` of a node with worker threads: how long it waits for input before
it emits the results completed meanwhile."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # one instance, also after pickling


MISSING: Final[Any] = _Missing()
"""Marks an argument that was not given (``None`` may be a real value)."""

# Ticks for a deadline of ``period`` seconds come every quarter period, within these bounds.
_TICK_MIN_S = 0.001
_TICK_MAX_S = 1.0


def tick_for(period: float) -> float:
    """The ``tick_interval`` that keeps a deadline of ``period`` seconds on an idle input.

    A quarter of the period, at least 1 ms and at most 1 s: a batch's timeout or a window's
    end passes by at most that much (or 1 s for periods over 4 s) when no item comes.

    Example:
        >>> from nanostream.operators._operator import tick_for
        >>> tick_for(0.1), tick_for(60), tick_for(0)
        (0.025, 1.0, 0.001)
    """
    return max(_TICK_MIN_S, min(period / 4, _TICK_MAX_S))


def kept_reads(reads: int, oldest: int | None, pending: int) -> int:
    """How many of the ``reads`` items read an operator holds (``release_items(keep=)``):
    from the ``oldest`` one held (its read number) on, else the ``pending`` last ones.

    Example:
        >>> from nanostream.operators._operator import kept_reads
        >>> kept_reads(10, 7, 1), kept_reads(10, None, 1)
        (4, 1)
    """
    return pending if oldest is None else reads - oldest + 1


def oldest_open(opened: deque[tuple[int, Any]], still_open: Container[Any]) -> int | None:
    """The read number of the oldest ``(read number, key)`` of ``opened`` (in the order the
    keys opened) whose key is ``still_open``, or None; closed ones leave its front."""
    while opened and opened[0][1] not in still_open:
        opened.popleft()
    return opened[0][0] if opened else None


def callable_label(func: object) -> str:
    """A short name of a user callable for messages: its qualified name, or ``lambda``.

    Example:
        >>> from nanostream.operators._operator import callable_label
        >>> callable_label(str.upper), callable_label(lambda x: x)
        ('str.upper', 'lambda')
    """
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not isinstance(name, str):
        return type(func).__name__
    return "lambda" if name.endswith("<lambda>") else name


def check_callable(owner: str, what: str, value: object, *, optional: bool = False) -> None:
    """Raise ``OptionError`` unless ``value`` is callable (or ``None`` when optional).

    Example:
        >>> from nanostream.operators._operator import check_callable
        >>> check_callable("Map", "func", 3)
        Traceback (most recent call last):
        nanostream._core.errors.OptionError: Map: func must be a function, got 3
    """
    if value is None and optional:
        return
    if not callable(value):
        raise OptionError(f"{owner}: {what} must be a function, got {value!r}")


def check_positive(
    owner: str,
    what: str,
    value: object,
    *,
    integer: bool = False,
    unit: str = "",
    optional: bool = False,
) -> None:
    """Raise ``OptionError`` unless ``value`` is a positive number (an int if ``integer``;
    ``None`` too when ``optional``): the one check of a count, size or number option.
    A bool is refused (``True`` is not a count); ``unit`` goes into the message.

    Example:
        >>> from nanostream.operators._operator import check_positive
        >>> check_positive("Batch", "size", True, integer=True)
        Traceback (most recent call last):
        nanostream._core.errors.OptionError: Batch: size must be a positive integer, got True
    """
    if value is None and optional:
        return
    if not _is_number(value, integer) or not value > 0:
        kind = "integer" if integer else "number"
        unit = f" ({unit})" if unit else ""
        raise OptionError(f"{owner}: {what} must be a positive {kind}{unit}, got {value!r}")


def check_non_negative(
    owner: str, what: str, value: object, *, integer: bool = False, unit: str = ""
) -> None:
    """Raise ``OptionError`` unless ``value`` is a finite number >= 0 (an int if ``integer``);
    ``unit`` goes into the message.

    Example:
        >>> from nanostream.operators._operator import check_non_negative
        >>> check_non_negative("Take", "n", 1.5, integer=True)
        Traceback (most recent call last):
        nanostream._core.errors.OptionError: Take: n must be an integer >= 0, got 1.5
    """
    if not _is_number(value, integer) or not value >= 0:
        kind = "an integer" if integer else "a number"
        unit = f" ({unit})" if unit else ""
        raise OptionError(f"{owner}: {what} must be {kind} >= 0{unit}, got {value!r}")


def _is_number(value: object, integer: bool) -> TypeGuard[float]:
    """A finite int or float (an int if ``integer``), not a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or (not integer and math.isfinite(value))


def check_choice(owner: str, what: str, value: object, choices: Sequence[str]) -> None:
    """Raise ``OptionError`` unless ``value`` is one of ``choices``.

    Example:
        >>> from nanostream.operators._operator import check_choice
        >>> check_choice("Join", "how", "outer", ("inner", "left"))
        Traceback (most recent call last):
        nanostream._core.errors.OptionError: Join: how must be 'inner' or 'left', got 'outer'
    """
    if value not in choices:
        options = " or ".join(repr(c) for c in choices)
        raise OptionError(f"{owner}: {what} must be {options}, got {value!r}")


class Operator(NanoNode):
    """A node defined by one node function: subclasses implement ``_run(inp, outp)``.

    The node function runs ``setup()``, then ``_run``, then ``cleanup()`` (whose outputs
    are emitted), like any ``NanoNode``. Arguments are checked when the operator is made,
    so a wrong argument is a ``GraphError`` before any thread starts.

    Subclasses say which functions of the user they call per item (``_user_functions``):
    an error policy (``on_error=`` ...) applies to those calls, and on an operator that
    calls none it is a ``GraphError`` when the pipeline is built. Each subclass also
    declares ``holds_items`` (see :meth:`NanoNode.release_items`). An operator whose
    ``_run`` handles :data:`~nanostream.TICK` says so with ``_handles_ticks``; any other
    one never sees a tick, even with a ``tick_interval`` option.

    Example:
        >>> from nanostream.operators._operator import Operator
        >>> class Pairs(Operator):
        ...     holds_items = True
        ...     def _run(self, inp, outp):
        ...         held = []
        ...         for item in inp:
        ...             held.append(item)
        ...             if len(held) == 2:
        ...                 outp(tuple(held))
        ...                 held = []
        ...                 self.release_items()
        >>> out = []
        >>> Pairs().as_function()(range(5), out.append)
        >>> out
        [(0, 1), (2, 3)]
    """

    #: Named output ports this node emits on besides the default; the runner routes
    #: ``TaggedOutput`` values when this is non-empty.
    ports: tuple[str, ...] = ()

    #: An operator applies the whole error policy to the user code it calls (see
    #: :meth:`validate` for one that calls none).
    policy_options = POLICY_OPTIONS

    def __init__(self, *, name: str | None = None, **options: Any) -> None:
        super().__init__(name=name)
        if options:
            self.configure(**options)

    @property
    def label(self) -> str:
        """The node's name in messages (see :func:`~nanostream._core.context.node_label`)."""
        return node_label(self)

    def _user_functions(self) -> tuple[str, ...]:
        """The arguments naming user code this operator calls per item (or per window)."""
        return ()

    def validate(self) -> None:
        """Refuse an error policy on an operator that calls no user code per item.

        Arguments are checked when the operator is made; this runs when the pipeline is
        built, after every option is set.
        """
        policy = [key for key in POLICY_OPTIONS if key in self.options]
        if policy and not self._user_functions():
            raise GraphError(
                f"{self.label}: {policy[0]}= has nothing to apply to: "
                f"{type(self).__name__} calls no function of yours per item. Give the error "
                "policy to the node whose code may fail"
            )

    def _handles_ticks(self) -> bool:
        """Whether ``_run`` reads :data:`~nanostream.TICK` (else ticks are dropped before)."""
        return False

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        raise NotImplementedError  # pragma: no cover - every operator defines it

    def as_function(self) -> NodeFunction:
        """This operator as a node function ``f(inp, outp)``."""
        node = self
        drop_ticks = self.ticks_every() is not None and not self._handles_ticks()

        def operator_function(inp: Iterable[Any], outp: Outp) -> None:
            node.setup()
            restore_state(node)
            node._run(_without_ticks(inp) if drop_ticks else inp, outp)
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


def _without_ticks(inp: Iterable[Any]) -> Iterator[Any]:
    for item in inp:
        if item is not TICK:
            yield item


class _Failed(NamedTuple):
    """What a worker thread returns for an item that failed for good."""

    exc: Exception
    attempt: int


class PolicyGuard:
    """A node's error policy, applied by an operator to the user code it calls.

    Use it only when ``node.error_policy.guarded`` (operators keep a separate fast loop for
    the default policy), through the context manager :meth:`of`. It offers

    - :meth:`process`: emit ``compute(item)``'s outputs, as ``process_item`` nodes do;
    - :meth:`prepare`: for a stateful operator, run the user code of one item (key,
      timestamp, reducer ...) *before* changing any state, so a failed or retried attempt
      leaves no trace; returns ``MISSING`` when the item failed for good;
    - :meth:`unit`: like :meth:`process` for work that is not one item (a window closing):
      its error record names ``unit`` as the item;
    - :meth:`worker` / :meth:`settle`: attempts (retries, timeouts) on worker threads, the
      accounting (skip count, error record, ``max_errors``) in order on the node's thread.

    All of them count towards the same ``max_errors`` and send their error records on the
    node's ``errors`` port.

    Example:
        >>> from nanostream.operators._operator import MISSING, Operator, PolicyGuard
        >>> class Inverse(Operator):
        ...     def _user_functions(self):
        ...         return ("the function",)
        ...     def _run(self, inp, outp):
        ...         with PolicyGuard.of(self, outp) as guard:
        ...             for item in inp:
        ...                 value = guard.prepare(item, lambda x: 1 / x)
        ...                 if value is not MISSING:
        ...                     outp(value)
        >>> out = []
        >>> Inverse(on_error="skip").as_function()([1, 0, 4], out.append)
        >>> out
        [1.0, 0.25]
    """

    def __init__(self, guard: ItemGuard, outp: Outp) -> None:
        self.guard = guard
        self.outp = outp
        self._compute: Callable[[Any], Iterable[Any]] = _nothing
        self._prepare: Callable[[Any], Any] = _nothing
        self._value: Any = MISSING
        self._workers: list[ItemGuard] = []
        self._local = threading.local()

    @classmethod
    @contextmanager
    def of(cls, node: NanoNode, outp: Outp) -> Iterator[PolicyGuard]:
        """The guard of ``node``'s policy while the node runs (its outputs go to ``outp``)."""
        guard_box: list[PolicyGuard] = []

        def dispatch(item: Any) -> Iterable[Any]:
            return guard_box[0]._compute(item)

        with node.guard_items(outp, dispatch) as guard:
            if not isinstance(guard, ItemGuard):
                raise GraphError(f"{node!r}: PolicyGuard needs a guarded error policy")
            policy_guard = cls(guard, outp)
            guard_box.append(policy_guard)
            try:
                yield policy_guard
            finally:
                policy_guard._close_workers()

    def process(self, item: Any, compute: Callable[[Any], Iterable[Any]]) -> None:
        """Emit ``compute(item)``'s outputs under the policy."""
        self._compute = compute
        self.guard(item)

    unit = process

    def prepare(self, item: Any, func: Callable[[Any], Any]) -> Any:
        """``func(item)`` under the policy (retried as it says); ``MISSING`` if it failed."""
        self._value = MISSING
        self._compute = self._run_prepare
        self._prepare = func
        guard = self.guard
        failed = guard.failed
        guard(item)
        value = self._value
        self._value = MISSING
        return value if guard.failed == failed else MISSING

    def _run_prepare(self, item: Any) -> Iterable[Any]:
        self._value = self._prepare(item)
        return ()

    # ----------------------------------------------------------------- worker threads
    def worker(self, compute: Callable[[Any], Iterable[Any]]) -> Callable[[Any], Any]:
        """A function for worker threads: ``compute(item)``'s outputs as a list, or a failure.

        Each worker thread makes its attempts itself (with the policy's ``timeout``,
        ``retries`` and ``backoff``); pass what it returns to :meth:`settle`, on the node's
        thread, in the order the outputs are to go out.
        """
        policy = self.guard.policy
        once = replace(policy, on_error="fail", max_errors=None, max_error_rate=None)
        ctx = self.guard.ctx
        local = self._local
        workers = self._workers

        def work(item: Any) -> Any:
            attempt_guard: ItemGuard | None = getattr(local, "guard", None)
            if attempt_guard is None:
                attempt_guard = local.guard = ItemGuard(once, ctx, _nothing, compute)
                workers.append(attempt_guard)
            attempt = 0
            while True:
                attempt += 1
                outs: list[Any] = []
                attempt_guard.outp = outs.append
                try:
                    attempt_guard(item)
                except Exception as exc:  # noqa: BLE001 - the policy decides
                    if policy.on_error == "retry" and attempt <= policy.retries:
                        back_off(policy, ctx, attempt, exc)
                        continue
                    return _Failed(exc, attempt)
                return outs

        return work

    def settle(self, item: Any, result: Any) -> None:
        """Emit a worker's outputs for ``item``, or account for its failure (node's thread)."""
        if type(result) is _Failed:
            if self.guard.policy.on_error == "fail":
                raise result.exc
            self.guard.record_failure(item, result.exc, result.attempt)
            return
        outp = self.outp
        for out in result:
            outp(out)

    def _close_workers(self) -> None:
        for guard in self._workers:
            guard.close()


def _nothing(item: Any) -> Iterable[Any]:
    return ()


class Fold:
    """How one value is accumulated from items: ``first(item)``, ``add(acc, item)``, ``result``.

    Made by :meth:`collect` (a list of the items), :meth:`reduce` (like ``functools.reduce``)
    or :meth:`aggregate` (a fresh accumulator per key or window).

    Example:
        >>> import operator
        >>> from nanostream.operators._operator import Fold
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

    @property
    def collects(self) -> bool:
        """True for :meth:`collect`: no user code runs to fold the items."""
        return self.add is _append

    @property
    def has_result(self) -> bool:
        """True when the value is ``result(acc)`` of a user ``result`` function."""
        return self.result is not _identity

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


def map_items(
    node: NanoNode,
    inp: Iterable[Any],
    outp: Outp,
    expand: Callable[[Any], Iterable[Any]],
    *,
    workers: int = 1,
    ordered: bool = True,
    max_in_flight: int | None = None,
    release: Callable[[int], None] | None = None,
    serial: Callable[[Iterable[Any], Outp], None] | None = None,
) -> None:
    """Emit every output of ``expand(item)`` for each item, under ``node``'s error policy.

    The loop of every node whose per-item work may run on ``workers`` threads (``Map``,
    ``FlatMap``, ``Parallel``, ``HttpRequest``). With one worker it runs in the node's
    thread (``serial(inp, outp)`` when given and the policy is the plain default). With
    more it runs :func:`run_in_pool` (``ordered``, ``max_in_flight``, default
    ``2 * workers``, ``release``); its input must then carry
    :data:`~nanostream.TICK` (the node's ``tick_interval``), on which completed results go
    out while no item comes. An error policy (``on_error``, ``retries``, ``backoff``,
    ``timeout``, ``max_errors``, ``max_error_rate``, the ``errors`` port) applies to each
    call of ``expand``, on the worker threads too.

    Example:
        >>> import nanostream
        >>> from nanostream.operators._operator import map_items
        >>> node = nanostream.NanoNode(on_error="skip")
        >>> out = []
        >>> map_items(node, [1, 0, 4], out.append, lambda x: [1 / x], workers=2)
        >>> out
        [1.0, 0.25]
    """
    guarded = node.error_policy.guarded
    if workers == 1:
        if not guarded:
            if serial is not None:
                serial(inp, outp)
            else:
                drive(inp, expand, outp)
            return
        with PolicyGuard.of(node, outp) as guard:
            for item in inp:
                if item is not TICK:
                    guard.process(item, expand)
        return
    label = node_label(node)

    def pool(work: Callable[[Any], Any], emit: Callable[[Any, Any], None]) -> None:
        run_in_pool(
            inp,
            work,
            emit,
            workers=workers,
            ordered=ordered,
            max_in_flight=max_in_flight if max_in_flight is not None else 2 * workers,
            thread_name=f"nanostream-worker:{label}",
            release=release,
            node=node,
        )

    if not guarded:

        def work(item: Any) -> list[Any]:
            return list(expand(item))

        pool(work, emit_all(outp))
        return
    with PolicyGuard.of(node, outp) as guard:
        pool(guard.worker(expand), guard.settle)


def emit_all(outp: Outp) -> Callable[[Any, Iterable[Any]], None]:
    """The ``emit`` for :func:`run_in_pool` whose work returns a list of outputs."""

    def emit(item: Any, outs: Iterable[Any]) -> None:
        for out in outs:
            outp(out)

    return emit


def run_in_pool(
    inp: Iterable[Any],
    work: Callable[[Any], Any],
    emit: Callable[[Any, Any], None],
    *,
    workers: int,
    ordered: bool,
    max_in_flight: int,
    thread_name: str,
    release: Callable[[int], None] | None = None,
    node: NanoNode | None = None,
    executor: Executor | None = None,
) -> None:
    """Call ``emit(item, work(item))`` for every item, computing ``work`` on ``workers`` threads.

    Runs in the node's own thread, which alone reads ``inp`` and calls ``emit``; the
    worker threads only call ``work``. At most ``max_in_flight`` items are submitted and
    not yet emitted: when that many are, the node waits before it reads more input, so
    back-pressure still reaches upstream. ``ordered`` keeps the input order; otherwise
    results go out as they complete. Completed results are emitted whenever the node gets
    a new item or a :data:`~nanostream.TICK`, and all of them before the input's end
    returns; after emitting, the node
    calls ``release(keep)`` with the number of most recently read items still in flight
    (for acknowledgements, see :meth:`NanoNode.release_items`). The worker threads are
    joined before this returns, also when it fails. The node waits for results with
    ``node.wait_future`` (an abort ends the wait; on the cooperative runner the other nodes
    run meanwhile). With ``executor`` (an event loop's, see ``_concurrency.py``), ``work``
    is submitted there instead of to new threads, and the caller shuts it down.

    Example:
        >>> from nanostream.operators._operator import emit_all, run_in_pool
        >>> out = []
        >>> run_in_pool(range(5), lambda x: [x, -x], emit_all(out.append), workers=3,
        ...             ordered=True, max_in_flight=6, thread_name="nanostream-example")
        >>> out
        [0, 0, 1, -1, 2, -2, 3, -3, 4, -4]
    """
    pool = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name)
    keep = release if release is not None else _no_release
    wait = node.wait_future if node is not None else _wait_result
    try:
        flow = _ordered if ordered else _unordered
        flow(inp, work, emit, release=keep, submit=pool.submit, limit=max_in_flight, wait=wait)
    finally:
        if executor is None:
            pool.shutdown(wait=True, cancel_futures=True)


def _wait_result(future: Future[Any]) -> Any:
    return wait_future(future)


def _no_release(keep: int) -> None:
    pass


def _ordered(
    inp: Iterable[Any],
    work: Callable[[Any], Any],
    emit: Callable[[Any, Any], None],
    *,
    release: Callable[[int], None],
    submit: Callable[..., Future[Any]],
    limit: int,
    wait: Callable[[Future[Any]], Any],
) -> None:
    pending: deque[tuple[Any, Future[Any]]] = deque()
    for item in inp:
        if item is TICK:
            if not (pending and pending[0][1].done()):
                continue
        else:
            pending.append((item, submit(work, item)))
        if len(pending) >= limit or pending[0][1].done():
            while pending and (len(pending) >= limit or pending[0][1].done()):
                done_item, future = pending.popleft()
                emit(done_item, wait(future))
            release(len(pending))  # the items still pending are the last ones read
    while pending:
        done_item, future = pending.popleft()
        emit(done_item, wait(future))


def _unordered(
    inp: Iterable[Any],
    work: Callable[[Any], Any],
    emit: Callable[[Any, Any], None],
    *,
    release: Callable[[int], None],
    submit: Callable[..., Future[Any]],
    limit: int,
    wait: Callable[[Future[Any]], Any],
) -> None:
    done: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
    submitted: dict[Future[Any], tuple[int, Any]] = {}  # future -> (read number, item)
    in_order: deque[int] = deque()  # read numbers of the items in flight, oldest first
    finished: set[int] = set()
    # Set when a result is done, so that the node can wait for "any result" with wait().
    lock = threading.Lock()
    signal: list[Future[None]] = [Future()]

    def on_done(future: Future[Any]) -> None:
        done.put(future)
        with lock:
            if not signal[0].done():
                signal[0].set_result(None)

    def complete(future: Future[Any]) -> None:
        number, item = submitted.pop(future)
        emit(item, future.result())
        finished.add(number)
        while in_order and in_order[0] in finished:
            finished.discard(in_order.popleft())

    def wait_one() -> Future[Any]:
        while True:
            try:
                return done.get_nowait()
            except queue.Empty:
                pass
            with lock:
                if signal[0].done():
                    signal[0] = Future()
                waiting = signal[0]
            if done.empty():
                wait(waiting)

    reads = 0
    for item in inp:
        emitted = False
        if item is not TICK:
            reads += 1
            future = submit(work, item)
            submitted[future] = (reads, item)
            in_order.append(reads)
            future.add_done_callback(on_done)
        if len(submitted) >= limit:
            complete(wait_one())
            emitted = True
        while submitted:
            try:
                future = done.get_nowait()
            except queue.Empty:
                break
            complete(future)
            emitted = True
        if emitted:
            release(reads - in_order[0] + 1 if in_order else 0)
    while submitted:
        complete(wait_one())
