"""The engine's per-item loops: compiled when ``nanostream._speedups`` is built, else Python.

A few small things run once per item in every run, so they are written twice: in C
(``src/nanostream/_speedups.c``, built by ``pip install`` when a C compiler is present) and
here in Python, which is used when the compiled module is missing (no compiler, another
interpreter) or when the environment variable ``NANOSTREAM_PURE_PYTHON=1`` is set. Both
behave the same; the test suite runs both (``tests/core/test_fast.py``).

- :func:`checked_outp`: a source's ``outp``, which appends to a list and calls ``flush()``
  once the list holds ``limit[0]`` items (``limit`` is a one-item list that other threads may
  lower, e.g. to 1 when a consumer runs dry).
- :func:`drive`: ``for item in inp: for out in process(item): outp(out)``, the loop of every
  ``process_item`` node.
- :func:`drive_source`: ``outp(item)`` for each item of a source, or ``special(item)`` for
  items of one special type (a source's ``Acked`` items).
- :func:`drive_acked`: a source's items in a run, its ``Acked(item, ack)`` pairs emitted
  with the ack attached at the cost of an append.
- :func:`call_rows`: the rows of a list of objects as tuples of a given tuple type (a
  named tuple, whose own ``__new__`` is not run), each field made of the object by a
  function, or a constant, or such a result made a tuple, or the second item of a pair:
  a source's records made from its client's messages in one loop. The compiled one
  leaves a row untracked by the cyclic garbage collector when it holds only objects the
  collector does not track (numbers, text, bytes, None, tuples of those), as the
  collector itself does with a plain tuple, so that records in flight do not make
  collections longer. A row of a class made at run time (a named tuple) also refers to
  its class, which may refer back to the row (a class attribute, a module global its
  methods see): such rows are left untracked only when the caller passes
  ``lasting=True``, its word that the class lives as long as the process (a
  module-level class of nanostream), else a cycle through the class would never be
  collected.
- :func:`typed_rows`: whether every item of a list is exactly a given tuple type whose
  fields at some indexes are each exactly of one of some types (a sink's check, in one
  loop, that a slice holds records it may write as they are).

Example:
    >>> from nanostream._core.fast import drive
    >>> out = []
    >>> drive([1, 2], lambda x: [x, x * 10], out.append)
    >>> out
    [1, 10, 2, 20]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from itertools import repeat
from operator import itemgetter
from typing import Any, TypeVar

__all__ = [
    "CALL",
    "CONST",
    "SECOND",
    "SPEEDUPS",
    "TUPLE",
    "call_rows",
    "checked_outp",
    "drive",
    "drive_acked",
    "drive_source",
    "py_call_rows",
    "py_checked_outp",
    "py_typed_rows",
    "typed_rows",
]

Outp = Callable[[Any], Any]
T = TypeVar("T", bound=tuple[Any, ...])


def py_checked_outp(buf: list[Any], limit: list[int], flush: Callable[[], object]) -> Outp:
    """The Python ``outp`` of a source: append to ``buf``; ``flush()`` at ``limit[0]`` items.

    Example:
        >>> from nanostream._core.fast import py_checked_outp
        >>> buf, sent = [], []
        >>> outp = py_checked_outp(buf, [2], lambda: (sent.append(buf[:]), buf.clear()))
        >>> for i in range(5):
        ...     outp(i)
        >>> sent, buf
        ([[0, 1], [2, 3]], [4])
    """
    append = buf.append

    def outp(item: Any) -> None:
        append(item)
        if len(buf) >= limit[0]:
            flush()

    return outp


def py_drive(inp: Iterable[Any], process: Callable[[Any], Iterable[Any]], outp: Outp) -> None:
    """``for item in inp: for out in process(item): outp(out)``, in Python.

    Example:
        >>> from nanostream._core.fast import py_drive
        >>> out = []
        >>> py_drive("ab", lambda c: [c.upper()], out.append)
        >>> out
        ['A', 'B']
    """
    for item in inp:
        for out in process(item):
            outp(out)


def py_drive_source(
    items: Iterable[Any], outp: Outp, special_type: type, special: Callable[[Any], Any]
) -> None:
    """``outp(item)`` for each item, or ``special(item)`` when its type is ``special_type``.

    Example:
        >>> from nanostream._core.fast import py_drive_source
        >>> out, odd = [], []
        >>> py_drive_source([1, "x", 2], out.append, str, odd.append)
        >>> out, odd
        ([1, 2], ['x'])
    """
    for item in items:
        if type(item) is special_type:
            special(item)
        else:
            outp(item)


def py_drive_acked(  # noqa: PLR0917 - the compiled loop's positional signature
    items: Iterable[Any],
    outp: Outp,
    acked_type: type,
    first_ack: Callable[[], Callable[[Any], Any]],
    bufs: list[list[Any]],
    mark: Callable[[], Any],
) -> None:
    """``outp(item)`` for each item; for an ``acked_type`` pair ``(item, ack)``: ``outp(item)``,
    then ``append(ack)`` (also when ``outp`` raised), then ``mark()`` if a list in ``bufs``
    is empty (the item went out with its batch). ``append`` is what ``first_ack()``
    returns, asked for at the first pair.

    Example:
        >>> from nanostream._core.fast import py_drive_acked
        >>> out, acks, marks = [], [], []
        >>> py_drive_acked(
        ...     [1, (2, "a")], out.append, tuple, lambda: acks.append, [[]], lambda: marks.append(1)
        ... )
        >>> out, acks, marks
        ([1, 2], ['a'], [1])
    """
    append: Callable[[Any], Any] | None = None
    for entry in items:
        if type(entry) is acked_type:
            pair: Any = entry
            item, ack = pair
            try:
                outp(item)
            finally:
                if append is None:
                    append = first_ack()
                append(ack)
            for buf in bufs:
                if not buf:
                    mark()
                    break
        else:
            outp(entry)


#: What :func:`call_rows` makes of a field: the value given; the function's result; that
#: result as a tuple (None as ``()``); the second item of the pair it returns (None when -1).
CONST, CALL, TUPLE, SECOND = 0, 1, 2, 3


def _field(kind: int, made: Any) -> Any:
    if kind == TUPLE:
        return () if made is None else made if type(made) is tuple else tuple(made)
    if kind == SECOND:  # (what a tuple holds, whatever its class's len() and [] say)
        if not isinstance(made, tuple) or tuple.__len__(made) < 2:
            raise TypeError("call_rows: a 'second' field's function must return a pair")
        second = tuple.__getitem__(made, 1)
        return None if type(second) is int and second == -1 else second
    return made


def py_call_rows(
    cls: type[T], objs: list[Any], fields: tuple[tuple[int, Any], ...], lasting: bool = False
) -> list[T]:
    """The rows of ``objs`` as ``cls`` tuples, field ``j`` of each as ``fields[j]`` says:
    ``(CONST, value)`` the value; ``(CALL, f)`` ``f(obj)``; ``(TUPLE, f)`` ``f(obj)`` as a
    tuple, None as ``()``; ``(SECOND, f)`` the second item of the pair ``f(obj)``, None
    when it is -1. A kind is one of these four ints (an ``int``, not a float or a bool).

    ``cls`` is ``tuple`` or a subclass of it (a named tuple): each row is made as
    ``tuple.__new__(cls, row)``, so a named tuple's own ``__new__`` (Python code) is not
    run. ``lasting`` says ``cls`` lives as long as the process; only the compiled twin
    uses it (to leave rows of such a class untracked by the garbage collector, see above).

    Example:
        >>> from nanostream._core.fast import CALL, CONST, SECOND, TUPLE, py_call_rows
        >>> py_call_rows(tuple, [3, 4], ((CONST, "n"), (CALL, str), (TUPLE, lambda x: None),
        ...                              (SECOND, lambda x: (0, -1 if x == 3 else x))))
        [('n', '3', (), None), ('n', '4', (), 4)]
    """
    bool(lasting)  # (read first, as the compiled one does)
    if not (isinstance(cls, type) and issubclass(cls, tuple)):
        raise TypeError("call_rows: cls must be tuple or a subclass of it")
    if type(objs) is not list:
        raise TypeError("call_rows: objs must be a list")
    if type(fields) is not tuple:
        raise TypeError("call_rows: fields must be a tuple of (kind, x) pairs")
    if len(fields) > 16:
        raise ValueError("call_rows: at most 16 fields")
    for field in fields:
        if not (
            type(field) is tuple
            and len(field) == 2
            and type(field[0]) is int  # (an exact int: not 1.0, not True)
            and field[0] in (CONST, CALL, TUPLE, SECOND)
            and (field[0] == CONST or callable(field[1]))
        ):
            raise ValueError("call_rows: each field is (0, value), or (1, 2 or 3, function)")
    rows = [
        tuple(made if kind == CONST else _field(kind, made(obj)) for kind, made in fields)
        for obj in list(objs)  # (a copy: the functions may change the list)
    ]
    if cls is tuple:
        return rows  # type: ignore[return-value]
    return list(map(tuple.__new__, repeat(cls), rows))


def py_typed_rows(
    items: list[Any], cls: type[tuple[Any, ...]], fields: tuple[int, ...], types: tuple[type, ...]
) -> bool:
    """Whether every item of ``items`` is exactly a ``cls`` tuple (not a subclass) whose
    items at the indexes ``fields`` are each exactly of one of ``types``.

    Example:
        >>> from nanostream._core.fast import py_typed_rows
        >>> py_typed_rows([(b"k", b"v"), (None, b"w")], tuple, (0, 1), (bytes, type(None)))
        True
        >>> py_typed_rows([(b"k", "text")], tuple, (0, 1), (bytes, type(None)))
        False
    """
    if type(items) is not list:
        raise TypeError("typed_rows: items must be a list")
    if not (isinstance(cls, type) and issubclass(cls, tuple)):
        raise TypeError("typed_rows: cls must be tuple or a subclass of it")
    if type(fields) is not tuple or type(types) is not tuple:
        raise TypeError("typed_rows: fields and types must be tuples")
    if len(fields) > 8:
        raise ValueError("typed_rows: at most 8 fields")
    if any(at < 0 for at in fields):
        raise ValueError("typed_rows: fields are indexes, 0 or more")
    if not {cls}.issuperset(map(type, items)):
        return False
    for at in fields:  # (in C loops: map over the rows)
        try:
            found = set(map(type, map(itemgetter(at), items)))
        except IndexError:  # a row too short to have that field
            return False
        if not found.issubset(types):
            return False
    return True


SPEEDUPS = False
"""True when the compiled loops are in use."""

checked_outp: Callable[[list[Any], list[int], Callable[[], object]], Outp] = py_checked_outp
drive: Callable[[Iterable[Any], Callable[[Any], Iterable[Any]], Outp], None] = py_drive
drive_source: Callable[[Iterable[Any], Outp, type, Callable[[Any], Any]], None] = py_drive_source
drive_acked: Callable[
    [
        Iterable[Any],
        Outp,
        type,
        Callable[[], Callable[[Any], Any]],
        list[list[Any]],
        Callable[[], Any],
    ],
    None,
] = py_drive_acked
call_rows: Callable[[type[Any], list[Any], tuple[tuple[int, Any], ...], bool], list[Any]] = (
    py_call_rows
)
typed_rows: Callable[[list[Any], type[Any], tuple[int, ...], tuple[type, ...]], bool] = (
    py_typed_rows
)

if os.environ.get("NANOSTREAM_PURE_PYTHON", "") in ("", "0"):
    try:
        from .. import _speedups
    except ImportError:  # not built: no C compiler at install time, or another interpreter
        pass
    else:
        try:
            compiled = (
                _speedups.CheckedOutp,
                _speedups.drive,
                _speedups.drive_source,
                _speedups.drive_acked,
                _speedups.typed_rows,
                _speedups.call_rows,
            )
        except (AttributeError, TypeError):  # built from an older _speedups.c: reinstall
            pass
        else:
            checked_outp, drive, drive_source, drive_acked, typed_rows, call_rows = compiled
            SPEEDUPS = True
