"""Nodes: the ``NanoNode`` base class, node functions as nodes, and linking with ``>``."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from .aio import wait_future
from .context import NodeContext, node_label
from .errors import GraphError, NodeProtocolError, OptionError
from .node_function import (
    check_contract,
    item_function,
    node_function,
    run_cleanup,
)
from .options import NODE_OPTIONS, check_node_option, own_option_refusal
from .policy import (
    POLICY_OPTIONS,
    ErrorPolicy,
    ItemGuard,
    PollGuard,
)
from .ports import Port
from .run import signals_recorded
from .signals import SourceStopped
from .ticks import check_tick_interval

if TYPE_CHECKING:
    from .graph import Pipeline
    from .run import Run

__all__ = [
    "NODE_OPTIONS",
    "FunctionNode",
    "IterableSource",
    "NanoNode",
    "NodeFunction",
    "Port",
    "as_node",
    "from_iterable",
    "node_of",
    "release_function",
]

NodeFunction = Callable[[Iterable[Any], Callable[[Any], Any]], Any]
"""A node function: ``f(inp, outp)`` reads all of ``inp`` and calls ``outp(value)`` to emit."""

T = TypeVar("T")
DEFAULT_PORT = "out"
ERRORS_PORT = "errors"

_UNSET: Any = object()


class NanoNode:
    """Base class of every node.

    A *source* defines ``generator(self)`` and yields items; any other node defines
    ``process_item(self, item)`` and yields zero or more outputs per item. Both may define
    ``setup()`` (runs in the node's thread before the first item) and ``cleanup()`` (runs
    after the input ends; it may yield final outputs). Subclasses with their own
    ``__init__`` call ``super().__init__()``.

    Keyword options: ``name`` (unique within a pipeline; defaults to the class name),
    ``queue_size`` (capacity of this node's input queue, in items), ``batch_size``
    (largest batch this node sends downstream), ``queue_bytes`` (capacity of this node's
    input queue in approximate bytes, as well; see :class:`~nanostream.RunOptions`), the
    error policy (``on_error``,
    ``retries``, ``backoff``, ``timeout``, ``max_errors``, ``max_error_rate``; see
    :meth:`configure`) and ``holds_items`` (see :meth:`release_items`).

    A node that keeps items from one ``process_item`` call to a later one (a batch, a
    window, a join, a buffered writer) sets the class attribute ``holds_items = True`` and
    calls :meth:`release_items` when it has emitted or written what it kept, so that
    sources' acknowledgements are not given too early.

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
    _ns_context: NodeContext | None = None

    #: Whether this node keeps items between reads (see :meth:`release_items`). ``None``
    #: means undeclared: false for a ``process_item`` node, assumed true for a node whose
    #: ``as_function`` is its own (a node function), until it says otherwise.
    holds_items: bool | None = None

    #: Seconds without input after which the node is told that time has passed (see
    #: :meth:`tick`); ``None`` (the default): never.
    tick_interval: float | None = None

    #: The error-policy options (``on_error``, ``retries`` ...) this node honours. ``None``
    #: (the default) means every one that applies for a node run by ``NanoNode``'s own
    #: :meth:`as_function`, and none for a class with its own ``as_function``, which says
    #: here which ones it applies. A source takes them only with :attr:`policy_per_poll`,
    #: and never ``timeout``. Any other is refused by :meth:`configure`, naming the node
    #: and the option.
    policy_options: ClassVar[tuple[str, ...] | None] = None

    #: True for a source that applies its error policy to each poll, with
    #: :meth:`guard_polls`: a poll that fails for good is skipped (recorded, counted) and
    #: the source goes on with the next one. Any other source is one generator, which
    #: cannot go on after it raised: it takes no error policy (only ``on_error="fail"``),
    #: so that ``skip`` never quietly ends an endless source.
    policy_per_poll: ClassVar[bool] = False

    #: Node options this class implements itself, as attributes of the same name (a
    #: connector's ``retries``, ``backoff`` and ``timeout``, which it applies to what it
    #: knows can be retried): its constructor and :meth:`configure` (so a pipeline file's
    #: node keys too) set that attribute, and the error policy leaves them alone. Such a
    #: node retries by itself, so ``on_error="retry"`` is refused for it. A ``backoff``
    #: given to :meth:`configure` above the node's own ``max_backoff`` is refused.
    own_options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        name: str | None = None,
        queue_size: int | None = None,
        batch_size: int | None = None,
        queue_bytes: int | None = None,
        on_error: str | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        timeout: float | None = None,
        max_errors: int | None = None,
        max_error_rate: float | None = None,
    ) -> None:
        self._ns_name = name
        self._ns_options = {}
        self.configure(
            queue_size=queue_size,
            batch_size=batch_size,
            queue_bytes=queue_bytes,
            on_error=on_error,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            max_errors=max_errors,
            max_error_rate=max_error_rate,
        )

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

    def configure(self, **options: Any) -> Self:
        """Set node options; returns the node. ``None`` resets an option to its default.

        - ``name``, ``queue_size``, ``batch_size``, ``queue_bytes``: see the class docstring.
        - ``on_error``: ``"fail"`` (default: the run fails), ``"skip"`` (log, count, go on)
          or ``"retry"`` (try again, then skip); applies to each ``process_item`` call, or
          to each poll of a polling source (:meth:`guard_polls`). A plain source (a
          generator, which cannot go on after it raised) takes no error policy.
        - ``retries`` (default 3) and ``backoff`` (seconds before the first retry, doubled
          for each next one, jittered; default 0.1).
        - ``timeout``: seconds one attempt may take, else it fails with ``TimeoutError``.
        - ``max_errors`` / ``max_error_rate``: fail the run once more than this many items
          (or this fraction of the last 100) failed for good.
        - ``holds_items``: see :meth:`release_items`.
        - ``tick_interval``: seconds; see :meth:`tick`.

        Each item that failed for good is sent, as an :class:`~nanostream.ErrorRecord`,
        to the node's ``errors`` port (:attr:`errors`), if that port is linked.

        Example:
            >>> import nanostream
            >>> node = nanostream.from_iterable([]).configure(queue_size=10)
            >>> node.options["queue_size"]
            10
            >>> sink = nanostream.testing.Collect()
            >>> sink.configure(on_error="retry", retries=2).options["on_error"]
            'retry'
        """
        if self._ns_options is None:
            self._ns_options = {}
        for key, value in options.items():
            if key == "name":
                self._ns_name = value
                continue
            if key not in NODE_OPTIONS:
                raise GraphError(
                    f"unknown node option {key!r} for {self!r}; node options: name, "
                    + ", ".join(NODE_OPTIONS)
                )
            own = key in type(self).own_options
            if value is None:
                if not own:
                    self._ns_options.pop(key, None)
                continue
            problem = check_node_option(key, value) or self._refusal(key, value)
            if problem is not None:
                raise OptionError(f"{node_label(self, with_class=True)}: {problem}")
            if own:
                setattr(self, key, value)
                continue
            self._ns_options[key] = value
        return self

    def _refusal(self, key: str, value: Any = None) -> str | None:
        """Why this node cannot honour the node option ``key`` (``=value``), or None."""
        cls = type(self)
        if key in cls.own_options or key not in POLICY_OPTIONS:
            return own_option_refusal(self, key, value) if key in cls.own_options else None
        if key == "on_error" and value == "retry" and "retries" in cls.own_options:
            return (
                f"on_error='retry' does not apply: {cls.__name__} retries by itself what can "
                "be retried (retries=, backoff=); use on_error='skip' to go on without an "
                "item that still fails"
            )
        if cls.generator is not NanoNode.generator:
            if key == "timeout":
                return (
                    "timeout= does not apply to a source (its items are not attempts of a "
                    "function of yours); give it to the node that processes them"
                )
            if not cls.policy_per_poll and not (key == "on_error" and value == "fail"):
                shown = f"on_error={value!r}" if key == "on_error" and value else f"{key}="
                return (
                    f"{shown} does not apply to {cls.__name__}: a source's generator cannot "
                    "go on after it raised, so it takes no error policy; catch the error "
                    "in generator(), or apply the policy to each poll with "
                    "self.guard_polls() and set policy_per_poll = True in the class"
                )
        honoured = cls.policy_options
        if honoured is None:
            honoured = POLICY_OPTIONS if cls.as_function is NanoNode.as_function else ()
        if key in honoured:
            return None
        applied = ", ".join(f"{k}=" for k in honoured) or "no error policy"
        return (
            f"{cls.__name__} does not apply {key}=: it runs its own node function, which "
            f"applies {applied}; leave {key}= out, or give it to a node that applies it"
        )

    def applies_option(self, key: str) -> bool:
        """Whether this node honours the node option ``key`` (else ``configure`` refuses it).

        Example:
            >>> import nanostream
            >>> nanostream.testing.Collect().applies_option("on_error")
            True
            >>> nanostream.from_iterable([]).applies_option("timeout")
            False
        """
        return self._refusal(key) is None

    @property
    def options(self) -> dict[str, Any]:
        """The node's options that were set explicitly (a copy).

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([], batch_size=5).options
            {'batch_size': 5}
        """
        return dict(self._ns_options or {})

    @property
    def error_policy(self) -> ErrorPolicy:
        """The node's error policy, from its options (see :meth:`configure`).

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([]).error_policy.on_error
            'fail'
        """
        return ErrorPolicy.from_options(self._ns_options or {})

    @property
    def errors(self) -> Any:
        """The node's ``errors`` port (``node["errors"]``): where its error records go.

        Link it to a sink to keep every item that failed for good (``on_error="skip"`` or
        ``"retry"``), as :class:`~nanostream.ErrorRecord` values. (A node class that uses
        the attribute name ``errors`` for something else keeps it; use ``node["errors"]``.)

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([], name="src").errors
            IterableSource(name='src')['errors']
        """
        own = self.__dict__.get("_ns_errors_attr", _UNSET)
        return self[ERRORS_PORT] if own is _UNSET else own

    @errors.setter
    def errors(self, value: Any) -> None:
        self.__dict__["_ns_errors_attr"] = value

    def items_held(self) -> bool | None:
        """Whether the node keeps items between reads: ``holds_items``, resolved.

        True or False when declared (class attribute or option); otherwise False for a
        ``process_item`` node and None (unknown, treated as holding) for a node function.

        Example:
            >>> import nanostream
            >>> nanostream.testing.Collect().items_held()
            False
            >>> nanostream.as_node(lambda inp, outp: None).items_held() is None
            True
        """
        value = (self._ns_options or {}).get("holds_items", self.holds_items)
        if value is not None:
            return bool(value)
        if type(self).as_function is NanoNode.as_function:
            return False
        return None

    def release_items(self, keep: int = 0) -> None:
        """Say that everything this node has read, except its last ``keep`` items, is done.

        For a node with ``holds_items = True``: call it whenever the items it kept have
        been emitted (a batch went out, a window closed) or written (a buffered writer
        committed). ``keep`` is how many of the most recently read items are still kept
        (count from the oldest one still kept). Until then, and at the latest when the node
        ends, sources' acknowledgements of those items wait. Call it from the node's own
        code (``process_item``, its thread). Outside a run it does nothing.

        Example:
            >>> import nanostream
            >>> class Pairs(nanostream.NanoNode):
            ...     holds_items = True
            ...     def setup(self):
            ...         self.kept = []
            ...     def process_item(self, item):
            ...         self.kept.append(item)
            ...         if len(self.kept) == 2:
            ...             yield tuple(self.kept)
            ...             self.kept = []
            ...             self.release_items()
            ...     def cleanup(self):
            ...         if self.kept:
            ...             yield tuple(self.kept)
            >>> sink = nanostream.testing.Collect()
            >>> nanostream.from_iterable(range(5)) > Pairs() > sink
            Collect(name=None)
            >>> sink.global_start()
            >>> sink.items
            [(0, 1), (2, 3), (4,)]
        """
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise NodeProtocolError(f"release_items(keep=...) takes an integer >= 0, got {keep!r}")
        ctx = self._ns_context
        if ctx is not None:
            ctx.release_items(keep)

    def ticks_every(self) -> float | None:
        """The node's ``tick_interval``, resolved: the option, else the attribute.

        Example:
            >>> import nanostream
            >>> nanostream.testing.Collect().ticks_every() is None
            True
            >>> nanostream.testing.Collect().configure(tick_interval=0.5).ticks_every()
            0.5
        """
        value = (self._ns_options or {}).get("tick_interval", self.tick_interval)
        problem = check_tick_interval(value)
        if problem is not None:
            raise GraphError(f"{self!r}: {problem}")
        return None if value is None else float(value)

    def tick(self) -> Iterator[Any] | None:
        """Called when no item has arrived for ``tick_interval`` seconds; may yield outputs.

        Only for a node whose ``tick_interval`` is set, and only on runners that keep time
        (``threads``, ``cooperative``, ``ray``), in the node's own thread, between
        ``process_item`` calls; again every ``tick_interval`` while no item comes. Use it
        to emit what is due by the clock (a batch's timeout, a window's end) on a quiet
        stream. A node function with ``tick_interval`` gets :data:`nanostream.TICK` in its
        input instead.

        Example:
            >>> import threading, nanostream
            >>> got_first = threading.Event()
            >>> class Quiet(nanostream.NanoNode):
            ...     def generator(self):
            ...         yield 1
            ...         got_first.wait(10)  # nothing more comes until the sink has item 1
            ...         yield 2
            >>> class Hold(nanostream.NanoNode):
            ...     tick_interval = 0.01
            ...     def setup(self):
            ...         self.kept = []
            ...     def process_item(self, item):
            ...         self.kept.append(item)
            ...         yield from ()
            ...     def tick(self):
            ...         yield from self.kept
            ...         self.kept = []
            ...     def cleanup(self):
            ...         yield from self.kept
            >>> class Sink(nanostream.testing.Collect):
            ...     def process_item(self, item):
            ...         got_first.set()
            ...         yield from super().process_item(item)
            >>> sink = Sink()
            >>> Quiet() > Hold() > sink
            Sink(name=None)
            >>> sink.global_start()
            >>> sink.items
            [1, 2]
        """
        return None

    def request_stop(self) -> None:
        """Ask the run this node is part of to stop gracefully, and return at once.

        Every source stops; what is already in flight drains to the sinks, as with
        ``Run.stop()``. Safe to call from the node's own code (unlike :meth:`global_stop`,
        which waits for the run to end). Outside a run it does nothing.

        Example:
            >>> import itertools, nanostream
            >>> class UpToThree(nanostream.NanoNode):
            ...     def process_item(self, item):
            ...         if item == 3:
            ...             self.request_stop()
            ...         yield item
            >>> sink = nanostream.testing.Collect()
            >>> nanostream.from_iterable(itertools.count()) > UpToThree() > sink
            Collect(name=None)
            >>> sink.global_start()
            >>> sink.items[:4]
            [0, 1, 2, 3]
        """
        ctx = self._ns_context
        if ctx is not None:
            ctx.request_stop()

    def end_outputs(self) -> None:
        """End this node's outputs now, while it goes on reading (and dropping) its input.

        Everything the node emitted so far is sent, then its downstreams see the end of
        their input (their ``cleanup()`` runs) even though this node's input goes on. The
        node must not emit afterwards (that is a ``NodeProtocolError``); it still reads
        its input to the end, so its upstreams are never blocked. ``Take(n)`` uses it.
        Call it from the node's own code. Outside a run it does nothing.

        Acknowledgements of the items the node reads after ending its outputs are not
        called, nor those of the last items before, whose acknowledgement marker had not
        reached the node yet: a restarted source sends them again (at least once).

        Example:
            >>> import nanostream
            >>> class FirstTwo(nanostream.NanoNode):
            ...     def setup(self):
            ...         self.seen = 0
            ...     def process_item(self, item):
            ...         self.seen += 1
            ...         if self.seen <= 2:
            ...             yield item
            ...         if self.seen == 2:
            ...             self.end_outputs()
            >>> sink = nanostream.testing.Collect()
            >>> nanostream.from_iterable(range(1000)) > FirstTwo() > sink
            Collect(name=None)
            >>> run = sink.global_start(block=False)
            >>> sink.ended.wait(10), sink.items
            (True, [0, 1])
            >>> run.wait(10)
            True
        """
        ctx = self._ns_context
        if ctx is not None:
            ctx.end_outputs()

    @contextmanager
    def guard_items(
        self, outp: Callable[[Any], Any], compute: Callable[[Any], Iterable[Any]]
    ) -> Iterator[Callable[[Any], None]]:
        """For a node with its own ``as_function``: apply the node's error policy per item.

        Yields ``process(item)``, which emits ``compute(item)``'s outputs with ``outp``
        under the node's policy (retries, timeout, skip, error records on the ``errors``
        port, ``max_errors``). Use it inside the node function, around the input loop, and
        list the options it applies in the class attribute :attr:`policy_options` (others
        are refused).

        Example:
            >>> import nanostream
            >>> class Inverse(nanostream.NanoNode):
            ...     policy_options = ("on_error", "retries", "max_errors")
            ...     def validate(self):
            ...         pass
            ...     def as_function(self):
            ...         def inverse(inp, outp):
            ...             with self.guard_items(outp, lambda x: [1 / x]) as process:
            ...                 for item in inp:
            ...                     process(item)
            ...         return inverse
            >>> sink = nanostream.testing.Collect()
            >>> nanostream.from_iterable([1, 0, 4]) > Inverse(on_error="skip") > sink
            Collect(name=None)
            >>> sink.global_start()
            >>> sink.items
            [1.0, 0.25]
        """
        policy = self.error_policy
        if not policy.guarded:

            def process(item: Any) -> None:
                for out in compute(item):
                    outp(out)

            yield process
            return
        guard = ItemGuard(policy, self._context(), outp, compute)
        try:
            yield guard
            guard.finish()
        finally:
            guard.close()

    @contextmanager
    def guard_polls(self) -> Iterator[PollGuard]:
        """For a polling source: apply the node's error policy to each poll.

        Yields ``guard``; in ``generator()``, ``yield from guard(poll)`` runs one poll
        (``poll()`` returns or yields that poll's items) under the policy: ``fail`` (the
        default) fails the run; ``skip`` records a poll that raised (an
        :class:`~nanostream.ErrorRecord` with ``item=None`` on the ``errors`` port, counted
        for ``max_errors`` and ``max_error_rate``) and returns, so the source goes on with
        its next poll; ``retry`` polls again after the back-off, ``retries`` times, then
        skips (a poll that had already emitted items is not retried). Set the class
        attribute :attr:`policy_per_poll` to ``True``, or the policy options are refused.
        What the generator does outside its polls (connecting, opening files) fails the run.

        Example:
            >>> import nanostream
            >>> class Readings(nanostream.NanoNode):
            ...     policy_per_poll = True
            ...     def generator(self):
            ...         with self.guard_polls() as guard:
            ...             for n in range(4):  # an endless loop in a real poller
            ...                 yield from guard(lambda: self.read(n))
            ...     def read(self, n):
            ...         if n == 1:
            ...             raise ConnectionError("sensor offline")
            ...         return [n * 10]
            >>> source = Readings(on_error="skip")
            >>> sink, dead = nanostream.testing.Collect(), nanostream.testing.Collect()
            >>> source > sink
            Collect(name=None)
            >>> source.errors > dead
            Collect(name=None)
            >>> sink.global_start()
            >>> sink.items, [(r.node, r.item, r.message) for r in dead.items]
            ([0, 20, 30], [('Readings', None, 'sensor offline')])
        """
        guard = PollGuard(self.error_policy, self._context())
        try:
            yield guard
        except (SourceStopped, GeneratorExit):  # a stop is a source's end too
            if not guard.ctx.abort_event.is_set():
                guard.finish()
            raise
        guard.finish()

    def _context(self) -> NodeContext:
        ctx = self._ns_context
        return ctx if ctx is not None else NodeContext.standalone(self)

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

    # ----------------------------------------------------------------- state
    def snapshot_state(self) -> Any:
        """Override (with :meth:`restore_state`) to keep state across restarts; see docs/state.md.

        Each checkpoint of a run with a state store (``global_start(state=PATH)``) calls it
        in the node's thread between two items (a source: right after an item it yielded
        was handed on) and stores what it returns (picklable); a restarted run gives it back.

        Example:
            >>> import nanostream
            >>> class Count(nanostream.NanoNode):
            ...     def setup(self):
            ...         self.n = 0
            ...     def process_item(self, item):
            ...         self.n += 1
            ...         yield self.n
            ...     def snapshot_state(self):
            ...         return self.n
            ...     def restore_state(self, state):
            ...         self.n = state
            >>> node = Count()
            >>> node.setup(); node.restore_state(41); list(node.process_item("x"))
            [42]
        """
        raise NotImplementedError  # pragma: no cover - defined by the nodes that keep state

    def restore_state(self, state: Any) -> None:
        """Take back what :meth:`snapshot_state` returned (called once, after ``setup()``).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        raise NotImplementedError  # pragma: no cover - defined by the nodes that keep state

    # ----------------------------------------------------------------- stop helpers
    @property
    def stop_requested(self) -> bool:
        """True once the run this node belongs to is stopping; a source may check it.

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([]).stop_requested
            False
        """
        ctx = self._ns_context
        event = ctx.stop_event if ctx is not None else None
        return event is not None and event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when the run stops; True if it was stopped.

        Sources that wait between items should use this instead of ``time.sleep`` so that
        ``stop()`` takes effect at once (and, in a run with a state store, a checkpoint's
        barrier goes out, as it sleeps and every ``checkpoint_interval`` while it does: a
        source's state must be whole whenever it sleeps).

        Example:
            >>> import nanostream
            >>> nanostream.from_iterable([]).sleep(0.001)
            False
        """
        ctx = self._ns_context
        if ctx is not None:
            ctx.between_items()  # a checkpoint's barrier may go out while a source waits
        event = (ctx.stop_event if ctx is not None else None) or threading.Event()
        every = ctx.idle_every if ctx is not None else None
        if every is None or seconds <= every:
            return event.wait(seconds)
        deadline = time.monotonic() + seconds  # a long sleep lets each due barrier out
        while (left := deadline - time.monotonic()) > 0:
            if event.wait(min(left, every)):
                return True
            assert ctx is not None
            ctx.between_items()
        return False

    def wait_future(self, future: Future[Any]) -> Any:
        """The result of a ``concurrent.futures.Future`` (or its exception), waited for here.

        An abort of the run ends the wait with :class:`~nanostream.RunAborted`; on the
        cooperative runner the other nodes run meanwhile (see :mod:`nanostream._core.aio`).

        Example:
            >>> import concurrent.futures, nanostream
            >>> with concurrent.futures.ThreadPoolExecutor(1) as pool:
            ...     nanostream.from_iterable([]).wait_future(pool.submit(sum, [1, 2]))
            3
        """
        return wait_future(future, self._ns_context)

    # ----------------------------------------------------------------- node function
    def validate(self) -> None:
        """Check that the class follows the node contract; raises ``GraphError`` if not.

        Called when a pipeline is checked, before any thread starts. A ``generator()``
        must yield. A ``process_item`` yields its outputs, or is a plain function that
        returns nothing: a sink, with no outputs. One that returns a value is refused
        (yield the value instead). ``generator`` and ``process_item`` may be ``async def``
        (an async generator; a coroutine returning nothing for a sink): the node then runs
        them on an event loop of its own (see :mod:`nanostream._core.aio`); ``setup``,
        ``cleanup`` and ``tick`` stay plain methods.

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
            >>> class Print(nanostream.NanoNode):  # a sink: returns nothing, emits nothing
            ...     def process_item(self, item):
            ...         print(item)
            >>> printer = Print()
            >>> nanostream.from_iterable([1, 2]) > printer
            Print(name=None)
            >>> printer.global_start()
            1
            2
        """
        check_contract(self)

    def _item_function(self) -> Callable[[Any], Iterable[Any]]:
        """``process_item`` as a function of an item returning its outputs (an iterable).

        A ``process_item`` that yields is that function; a plain one (a sink) has no
        outputs, and returning a value from it is a ``NodeProtocolError``.
        """
        return item_function(self)

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
        return node_function(self)

    def _run_cleanup(self, outp: Callable[[Any], Any]) -> None:
        run_cleanup(self, outp)

    # ----------------------------------------------------------------- linking
    def _pipeline(self) -> Pipeline:
        pipeline = self._ns_pipeline
        if pipeline is None:
            from .graph import Pipeline

            pipeline = Pipeline()
            pipeline._add(self)
        return pipeline

    def _link(self, port: str, other: object) -> None:
        # A node function may emit on a port it names "errors" itself (a TaggedOutput).
        if (
            port == ERRORS_PORT
            and not isinstance(self, FunctionNode)
            and not self.applies_option("on_error")
        ):
            raise GraphError(
                f"{self!r} has no {ERRORS_PORT!r} port to link: "
                + (self._refusal("on_error") or "")
            )
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
        raises :class:`~nanostream.NodeFailed` if one failed. Called on the main thread, it
        drains gracefully on SIGINT or SIGTERM (see :meth:`Run.wait_interruptibly
        <nanostream.Run.wait_interruptibly>`): after a SIGTERM drain it returns; after a
        SIGINT drain it raises ``KeyboardInterrupt``; a second signal aborts the run
        (``KeyboardInterrupt``, or ``SystemExit(143)`` for SIGTERM). With ``block=False`` it
        returns the :class:`~nanostream.Run` handle at once. ``runner`` picks the runner
        (``"threads"``, the default). ``progress=True`` shows a live view of the run
        and ``metrics_port=`` serves Prometheus metrics (``nanostream[observe]``);
        ``ui=True`` serves a live web page of the run, ``otel=True`` exports OpenTelemetry
        metrics and spans (see :func:`nanostream.observe.attach`). Other
        keyword options (``queue_size``,
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
        if not block:
            return self._pipeline().start(runner=runner, **options)
        received: list[int] = []
        # The handlers go in before the nodes start, so a signal as they start drains too,
        # and again once they have started: starting may install handlers of its own (Ray
        # does when it starts a local instance). The ones from before are put back after.
        with signals_recorded(received.append) as handling:
            run = self._pipeline().start(runner=runner, **options)
            with signals_recorded(received.append):
                signum = run._wait_recorded(received, handling, options.get("drain_timeout"))
        if signum is None:
            return None
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if run.state == "aborted":
            raise SystemExit(run.exit_code())
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


# The adapters are NanoNodes: their module needs this one complete first. They stay
# importable from here, and NanoNode's linking uses them.
from .adapters import (  # noqa: E402
    FunctionNode,
    IterableSource,
    as_node,
    from_iterable,
    node_of,
    release_function,
)
