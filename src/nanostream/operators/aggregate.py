"""Keyed state without windows: running aggregates (:class:`Aggregate`), running reductions
(:class:`Reduce`) and dedupe (:class:`Dedupe`). Windows are in :mod:`nanostream.operators.window`.

Example:
    >>> import nanostream
    >>> from nanostream.nodes import Dedupe
    >>> sink = nanostream.testing.Collect()
    >>> nanostream.from_iterable([1, 2, 1, 3, 2]) > Dedupe() > sink
    Collect(name=None)
    >>> sink.global_start()
    >>> sink.items
    [1, 2, 3]
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from .._core.context import node_label
from ._operator import (
    MISSING,
    Fold,
    Operator,
    Outp,
    PolicyGuard,
    check_callable,
    check_choice,
    check_positive,
)

__all__ = ["Aggregate", "Dedupe", "Reduce"]


class Aggregate(Operator):
    """Running aggregates per key: ``acc = add(acc, item)`` from a fresh ``create()``.

    ``emit="each"`` (the default) emits the current value after every item; ``emit="end"``
    emits the final value of every key (in the order keys were first seen) when the input
    ends, which also happens on ``stop()``. The value is ``result(acc)`` (``acc`` itself by
    default); with ``key=func`` each output is a ``(key, value)`` pair, without it the value
    alone. ``add`` must return the new accumulator. With ``emit="each"`` and a mutable
    accumulator, let ``result`` return a copy.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Aggregate
        >>> sink = nanostream.testing.Collect()
        >>> stats = Aggregate(
        ...     create=lambda: (0, 0),                        # (count, total)
        ...     add=lambda acc, x: (acc[0] + 1, acc[1] + x[1]),
        ...     result=lambda acc: acc[1] / acc[0],           # the mean
        ...     key=lambda x: x[0],
        ...     emit="end",
        ... )
        >>> nanostream.from_iterable([("a", 1), ("b", 5), ("a", 3)]) > stats > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [('a', 2.0), ('b', 5.0)]
    """

    holds_items = False  # True with emit="end" (set per instance)

    def __init__(
        self,
        create: Callable[[], Any],
        add: Callable[[Any, Any], Any],
        result: Callable[[Any], Any] | None = None,
        *,
        key: Callable[[Any], Hashable] | None = None,
        emit: str = "each",
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        owner = node_label(self, with_class=True)
        check_callable(owner, "create", create)
        check_callable(owner, "add", add)
        check_callable(owner, "result", result, optional=True)
        self.fold = Fold.aggregate(create, add, result)
        self._setup(key, emit)

    def _setup(self, key: Callable[[Any], Hashable] | None, emit: str) -> None:
        owner = node_label(self, with_class=True)
        check_callable(owner, "key", key, optional=True)
        check_choice(owner, "emit", emit, ("each", "end"))
        self.key = key
        self.emit = emit
        # With emit="end" every item is kept (in its total) until the end.
        self.holds_items = emit == "end"

    def _user_functions(self) -> tuple[str, ...]:
        return ("create", "add", "result", "key")

    # ----------------------------------------------------------------- state
    _accs: dict[Any, Any] | None = None
    _restored: dict[Any, Any] | None = None

    def snapshot_state(self) -> dict[Any, Any]:
        """Every key's accumulator (see docs/state.md).

        Example:
            >>> import operator
            >>> from nanostream.nodes import Reduce
            >>> node = Reduce(operator.add, key=len)
            >>> node.restore_state({1: 5})
            >>> node._begin(), node.snapshot_state()
            ({1: 5}, {1: 5})
        """
        return self._accs if self._accs is not None else {}

    def restore_state(self, state: dict[Any, Any]) -> None:
        """Start from these accumulators (what :meth:`snapshot_state` took).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        self._restored = dict(state)

    def _begin(self) -> dict[Any, Any]:
        """The accumulators a run starts from: restored, or none."""
        accs = self._restored if self._restored is not None else {}
        self._restored = None
        self._accs = accs
        return accs

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        if self.error_policy.guarded:
            with PolicyGuard.of(self, outp) as guard:
                self._run_guarded(inp, outp, guard)
            return
        first, add, result = self.fold.first, self.fold.add, self.fold.result
        key_of = self.key
        each = self.emit == "each"
        accs = self._begin()
        for item in inp:
            k = key_of(item) if key_of is not None else None
            acc = accs.get(k, MISSING)
            acc = first(item) if acc is MISSING else add(acc, item)
            accs[k] = acc
            if each:
                outp((k, result(acc)) if key_of is not None else result(acc))
        if not each:
            for k, acc in accs.items():
                outp((k, result(acc)) if key_of is not None else result(acc))

    def _run_guarded(self, inp: Iterable[Any], outp: Outp, guard: PolicyGuard) -> None:
        """Each item's key, new total and (with ``emit="each"``) value under the policy;
        with ``emit="end"`` also each key's final ``result`` (the record's item is then
        ``(key, accumulator)``)."""
        first, add, result = self.fold.first, self.fold.add, self.fold.result
        key_of = self.key
        each = self.emit == "each"
        accs = self._begin()

        def prepare(item: Any) -> tuple[Any, Any, Any]:
            k = key_of(item) if key_of is not None else None
            acc = accs.get(k, MISSING)
            acc = first(item) if acc is MISSING else add(acc, item)
            if not each:
                return k, acc, None
            return k, acc, (k, result(acc)) if key_of is not None else result(acc)

        def final(entry: tuple[Any, Any]) -> Iterable[Any]:
            k, acc = entry
            return ((k, result(acc)) if key_of is not None else result(acc),)

        for item in inp:
            prepared = guard.prepare(item, prepare)
            if prepared is MISSING:
                continue
            k, acc, out = prepared
            accs[k] = acc
            if each:
                outp(out)
        if not each:
            for entry in accs.items():
                if self.fold.has_result:
                    guard.unit(entry, final)
                else:
                    outp((entry[0], entry[1]) if key_of is not None else entry[1])


class Reduce(Aggregate):
    """Running ``func(acc, item)`` per key, from ``initial`` or else from the key's first item.

    A special case of :class:`Aggregate`, with the same ``key`` and ``emit`` options.

    Example:
        >>> import nanostream, operator
        >>> from nanostream.nodes import Reduce
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([1, 2, 3, 4]) > Reduce(operator.add) > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        [1, 3, 6, 10]
    """

    def __init__(
        self,
        func: Callable[[Any, Any], Any],
        *,
        initial: Any = MISSING,
        key: Callable[[Any], Hashable] | None = None,
        emit: str = "each",
        name: str | None = None,
        **options: Any,
    ) -> None:
        Operator.__init__(self, name=name, **options)
        check_callable(node_label(self, with_class=True), "the function", func)
        self.fold = Fold.reduce(func, initial)
        self._setup(key, emit)

    def _user_functions(self) -> tuple[str, ...]:
        return ("the function", "key") if self.key is not None else ("the function",)


class Dedupe(Operator):
    """Drop an item whose key (``key(item)``, or the item itself) has already passed.

    With ``ttl`` (seconds), a key is forgotten ``ttl`` seconds after its item passed, so the
    next item with it passes again, and memory stays bounded by the keys seen in ``ttl``.
    With ``max_size`` at most that many keys are remembered (the oldest is forgotten
    first). ``clock`` (seconds, default ``time.monotonic``) can be replaced, for tests; it is
    called once per item when there is a ``ttl``.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Dedupe
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable(["a", "b", "a", "c", "b"]) > Dedupe() > sink
        Collect(name=None)
        >>> sink.global_start()
        >>> sink.items
        ['a', 'b', 'c']
    """

    holds_items = False  # it keeps keys, not items

    def __init__(
        self,
        key: Callable[[Any], Hashable] | None = None,
        *,
        ttl: float | None = None,
        max_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, **options)
        label = node_label(self, with_class=True)
        check_callable(label, "key", key, optional=True)
        check_positive(label, "ttl", ttl, optional=True)
        check_positive(label, "max_size", max_size, integer=True, optional=True)
        check_callable(label, "clock", clock)
        self.key = key
        self.ttl = ttl
        self.max_size = max_size
        self.clock = clock

    def _user_functions(self) -> tuple[str, ...]:
        return ("key",) if self.key is not None else ()

    # ----------------------------------------------------------------- state
    _seen: OrderedDict[Any, float] | None = None
    _restored_keys: list[tuple[Any, float]] | None = None

    def snapshot_state(self) -> list[tuple[Any, float]]:
        """The keys remembered, oldest first, each with its age in seconds (with ``ttl``;
        else 0), so that a restart forgets them when it would have.

        Example:
            >>> from nanostream.nodes import Dedupe
            >>> node = Dedupe(ttl=60, clock=lambda: 100.0)
            >>> node.restore_state([("a", 30.0)])
            >>> dict(node._begin()), node.snapshot_state()
            ({'a': 70.0}, [('a', 30.0)])
        """
        seen = self._seen
        if not seen:
            return []
        now = self.clock() if self.ttl is not None else 0.0
        return [(k, now - at) for k, at in seen.items()]

    def restore_state(self, state: list[tuple[Any, float]]) -> None:
        """Remember these keys again (what :meth:`snapshot_state` took).

        Example: the one of :meth:`snapshot_state` shows the pair.
        """
        self._restored_keys = list(state)

    def _begin(self) -> OrderedDict[Any, float]:
        """The keys a run starts from (key -> when its item passed): restored, or none."""
        restored, self._restored_keys = self._restored_keys or [], None
        now = self.clock() if self.ttl is not None and restored else 0.0
        seen = self._seen = OrderedDict((k, now - age) for k, age in restored)
        return seen

    def _run(self, inp: Iterable[Any], outp: Outp) -> None:
        key_of, ttl, max_size, clock = self.key, self.ttl, self.max_size, self.clock
        seen = self._begin()  # key -> when its item passed
        now = 0.0
        if self.error_policy.guarded and key_of is not None:
            with PolicyGuard.of(self, outp) as guard:
                for item in inp:
                    k = guard.prepare(item, key_of)
                    if k is not MISSING:
                        self._admit(item, k, seen, outp)
            return
        for item in inp:
            k = key_of(item) if key_of is not None else item
            if ttl is not None:
                now = clock()
                while seen:
                    oldest, at = next(iter(seen.items()))
                    if now - at < ttl:
                        break
                    del seen[oldest]
            if k in seen:
                continue
            seen[k] = now
            if max_size is not None and len(seen) > max_size:
                seen.popitem(last=False)
            outp(item)

    def _admit(self, item: Any, k: Any, seen: OrderedDict[Any, float], outp: Outp) -> None:
        """The loop body above, for the guarded loop."""
        now = 0.0
        if self.ttl is not None:
            now = self.clock()
            while seen:
                oldest, at = next(iter(seen.items()))
                if now - at < self.ttl:
                    break
                del seen[oldest]
        if k in seen:
            return
        seen[k] = now
        if self.max_size is not None and len(seen) > self.max_size:
            seen.popitem(last=False)
        outp(item)
