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
- :func:`tuples`: the rows of equal-length columns as tuples of a given tuple type (a
  source's records); the compiled one leaves a row untracked by the cyclic garbage
  collector when it holds only objects the collector does not track (numbers, text,
  bytes, None, tuples of those), as the collector itself does with a plain tuple, so that
  records in flight do not make collections longer. A row of a class made at run time
  (a named tuple) also refers to its class, which may refer back to the row (a class
  attribute, a module global its methods see): such rows are left untracked only when
  the caller passes ``lasting=True``, its word that the class lives as long as the
  process (a module-level class of nanostream), else a cycle through the class would
  never be collected.
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
    "SPEEDUPS",
    "checked_outp",
    "drive",
    "drive_acked",
    "drive_source",
    "py_checked_outp",
    "py_tuples",
    "py_typed_rows",
    "tuples",
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


def py_tuples(cls: type[T], columns: Iterable[list[Any]], lasting: bool = False) -> list[T]:
    """The rows of ``columns`` (lists of one length) as ``cls`` tuples, ``cls`` not called.

    ``cls`` is ``tuple`` or a subclass of it (a named tuple): each row is made as
    ``tuple.__new__(cls, row)``, so a named tuple's own ``__new__`` (Python code) is not run.
    ``lasting`` says ``cls`` lives as long as the process; only the compiled twin uses it
    (to leave rows of such a class untracked by the garbage collector, see above).

    Example:
        >>> from typing import NamedTuple
        >>> from nanostream._core.fast import py_tuples
        >>> class Point(NamedTuple):
        ...     x: int
        ...     y: int
        >>> py_tuples(Point, [[1, 2], [10, 20]])
        [Point(x=1, y=10), Point(x=2, y=20)]
    """
    if not (isinstance(cls, type) and issubclass(cls, tuple)):
        raise TypeError("tuples: cls must be tuple or a subclass of it")
    columns = list(columns)  # read once, as the compiled one does
    if not all(type(column) is list for column in columns):
        raise TypeError("tuples: each column must be a list")
    if len({len(column) for column in columns}) > 1:
        raise ValueError("tuples: the columns are of different lengths")
    if not columns:
        return []
    rows = zip(*columns, strict=True)
    if cls is tuple:
        return list(rows)  # type: ignore[arg-type]
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
tuples: Callable[[type[Any], Iterable[list[Any]], bool], list[Any]] = py_tuples
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
                _speedups.tuples,
                _speedups.typed_rows,
            )
            _speedups.tuples(tuple, [], False)  # an older build takes no third argument
        except (AttributeError, TypeError):  # built from an older _speedups.c: reinstall
            pass
        else:
            checked_outp, drive, drive_source, drive_acked, tuples, typed_rows = compiled
            SPEEDUPS = True
