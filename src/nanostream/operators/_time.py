"""Time as windows and joins read it: seconds as numbers, or timezone-aware datetimes.

A node that works with time (a window, a join) has one *kind* of time, fixed by the
durations it is given when it is made (``size``, ``step``, ``gap``, ``window``, ``lower``,
``upper``, ``offset``, ``allowed_lateness``):

- **seconds**: every duration is a number; timestamps (and clock readings) are numbers of
  seconds, and the node emits numbers;
- **datetimes**: the durations are ``datetime.timedelta`` values; timestamps are
  timezone-aware ``datetime`` values, and the node emits window bounds as ``datetime``
  values in UTC. A duration of ``0`` (a default such as ``allowed_lateness=0``) fits
  either kind.

Mixing the kinds in one node is an error that names the node: a number among timedelta
durations when the node is made (``OptionError``, a ``GraphError``), a timestamp of the
other kind when it is read (``TypeError``, under the node's error policy like a failing
``timestamp``). A naive ``datetime`` (no ``tzinfo``) is refused with a ``ValueError``: it
could be in any time zone, and guessing would shift windows by hours without a word.

Inside, a datetimes node counts whole microseconds since the Unix epoch, so its arithmetic
is exact (``datetime`` has microsecond resolution); bounds go back to ``datetime`` only
when they are emitted.

Example:
    >>> from datetime import datetime, timedelta, timezone
    >>> from nanostream.operators._time import TimeKind
    >>> kind = TimeKind.of("TumblingWindow", size=timedelta(minutes=1), allowed_lateness=0)
    >>> kind.datetimes, kind.duration("size", timedelta(minutes=1), "positive")
    (True, 60000000)
    >>> t = kind.point("timestamp", datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    >>> kind.out(t)
    datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .._core.errors import OptionError
from ._operator import check_non_negative, check_positive

__all__ = ["TimeKind"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SIGNS = ("positive", "non-negative", "any")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _described(value: object) -> str:
    if isinstance(value, datetime):
        return f"{value!r} (a datetime)"
    if _is_number(value):
        return f"{value!r} (a number)"
    return f"{value!r} (a {type(value).__name__})"


class TimeKind:
    """The kind of time of one node: seconds (numbers) or datetimes (see the module doc).

    Made by :meth:`of` from the node's durations; ``decided_by`` names the duration that
    fixed the kind, for messages.
    """

    __slots__ = ("datetimes", "decided_by", "label", "owner")

    def __init__(
        self, owner: str, *, datetimes: bool, decided_by: str, label: str | None = None
    ) -> None:
        self.owner = owner
        self.label = label or owner  # the node's label, for the checks of its options
        self.datetimes = datetimes
        self.decided_by = decided_by

    @classmethod
    def of(cls, owner: str, *, label: str | None = None, **durations: object) -> TimeKind:
        """The kind of time of the node ``owner`` (its class name) given its durations.

        A duration must be a number or a ``timedelta``; ``None`` means not given. Raise
        ``OptionError`` when some are ``timedelta`` values and others non-zero numbers.
        ``label`` (default: ``owner``) names the node in the messages of wrong options.

        Example:
            >>> from datetime import timedelta
            >>> from nanostream.operators._time import TimeKind
            >>> TimeKind.of("SlidingWindow", size=timedelta(seconds=10), step=5)
            Traceback (most recent call last):
            nanostream._core.errors.OptionError: SlidingWindow: size is a timedelta but step is a
            number (5); give every duration of one node as a timedelta ...
        """
        label = label or owner
        given = {what: value for what, value in durations.items() if value is not None}
        for what, value in given.items():
            if not isinstance(value, timedelta) and not _is_number(value):
                raise OptionError(
                    f"{label}: {what} must be a number of seconds or a timedelta, got {value!r}"
                )
        deltas = [what for what, value in given.items() if isinstance(value, timedelta)]
        if not deltas:
            decided_by = next(iter(given), "size")
            return cls(owner, datetimes=False, decided_by=decided_by, label=label)
        for what, value in given.items():
            if not isinstance(value, timedelta) and value != 0:
                raise OptionError(
                    f"{label}: {deltas[0]} is a timedelta but {what} is a number ({value!r}); "
                    "give every duration of one node as a timedelta (for datetime "
                    "timestamps) or every one in seconds (for numeric timestamps)"
                )
        return cls(owner, datetimes=True, decided_by=deltas[0], label=label)

    def duration(self, what: str, value: Any, sign: str) -> Any:
        """The duration ``value`` in the node's units, checked (``sign``: ``"positive"``,
        ``"non-negative"`` or ``"any"``). Seconds stay as given; a ``timedelta`` becomes
        whole microseconds.

        Example:
            >>> from datetime import timedelta
            >>> from nanostream.operators._time import TimeKind
            >>> kind = TimeKind.of("SessionWindow", gap=timedelta(0))
            >>> kind.duration("gap", timedelta(0), "positive")
            Traceback (most recent call last):
            nanostream._core.errors.OptionError: SessionWindow: gap must be a positive duration,
            got datetime.timedelta(0)
        """
        assert sign in _SIGNS
        if not self.datetimes:
            if sign == "positive":
                check_positive(self.label, what, value)
            elif sign == "non-negative":
                check_non_negative(self.label, what, value)
            elif not _is_number(value) or not math.isfinite(value):
                raise OptionError(f"{self.label}: {what} must be a number, got {value!r}")
            return value
        micros = 0 if not isinstance(value, timedelta) else value // _MICROSECOND
        if (sign == "positive" and micros <= 0) or (sign == "non-negative" and micros < 0):
            raise OptionError(f"{self.label}: {what} must be a {sign} duration, got {value!r}")
        return micros

    def seconds(self, duration: Any) -> float:
        """A duration in the node's units as a number of seconds (for tick intervals)."""
        return duration / 1_000_000 if self.datetimes else float(duration)

    def point(self, what: str, value: Any, node: str | None = None) -> Any:
        """The time ``value`` (returned by the user's ``what``) in the node's units.

        Raise ``TypeError`` for a value of the other kind or no time at all, and
        ``ValueError`` for a naive datetime; ``node`` is the node's label for messages.

        Example:
            >>> from datetime import datetime
            >>> from nanostream.operators._time import TimeKind
            >>> TimeKind.of("Join", window=60).point("timestamp", datetime(2026, 1, 1), "j")
            Traceback (most recent call last):
            TypeError: Join 'j': timestamp returned datetime.datetime(2026, 1, 1, 0, 0) (a
            datetime) but window is a number of seconds; give window as a timedelta ...
        """
        label = self.owner if node in (None, self.owner) else f"{self.owner} {node!r}"
        if self.datetimes:
            if isinstance(value, datetime):
                if value.utcoffset() is None:
                    raise ValueError(
                        f"{label}: {what} returned a naive datetime ({value!r}), which could "
                        "be in any time zone; return timezone-aware datetimes, e.g. "
                        "dt.replace(tzinfo=timezone.utc) for a datetime in UTC"
                    )
                return (value - _EPOCH) // _MICROSECOND
            raise TypeError(
                f"{label}: {what} returned {_described(value)} but {self.decided_by} is a "
                f"timedelta; return timezone-aware datetimes, or give {self.decided_by} "
                "in seconds"
            )
        if _is_number(value):
            return value
        example = "e.g. timedelta(seconds=60)"
        raise TypeError(
            f"{label}: {what} returned {_described(value)} but {self.decided_by} is a "
            + (
                f"number of seconds; give {self.decided_by} as a timedelta ({example}), "
                "or return numbers of seconds"
                if isinstance(value, datetime)
                else "number of seconds; return numbers of seconds (or datetimes, with "
                f"{self.decided_by} as a timedelta)"
            )
        )

    def reader(self, func: Callable[[Any], Any], what: str, node: str) -> Callable[[Any], Any]:
        """``item -> time`` in the node's units, from the user's ``func`` (called ``what``)."""
        point = self.point
        if self.datetimes:

            def read_datetime(item: Any) -> Any:
                return point(what, func(item), node)

            return read_datetime

        def read_seconds(item: Any) -> Any:
            value = func(item)
            kind = value.__class__
            if kind is float or kind is int:
                return value
            return point(what, value, node)

        return read_seconds

    def clock(self, clock: Callable[[], Any], node: str) -> Callable[[], Any]:
        """The clock's reading in the node's units; ``time.time`` gives the current time in
        either kind, any other clock must return the node's kind."""
        if clock is time.time:
            return (lambda: time.time_ns() // 1000) if self.datetimes else clock
        point = self.point

        def read_clock() -> Any:
            return point("clock", clock(), node)

        return read_clock

    def out(self, point: Any) -> Any:
        """A time in the node's units as the user sees it: seconds, or a UTC datetime."""
        if self.datetimes:
            return _EPOCH + timedelta(microseconds=point)
        return point
