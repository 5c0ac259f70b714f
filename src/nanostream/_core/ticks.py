"""Ticks: how a node learns that time has passed while no item arrives.

A node whose ``tick_interval`` is set (class attribute, instance attribute or the
``tick_interval=`` option) gets :data:`TICK` in its input whenever no item has arrived for
``tick_interval`` seconds, and again every ``tick_interval`` while it stays idle. A batch
with a timeout or a processing-time window uses it to emit on time on a quiet stream.

Ticks are not items: they are not counted in ``stats()``, a ``process_item`` node never
sees one (its :meth:`~nanostream.NanoNode.tick` hook is called instead), and a node that
does not ask for ticks never gets one. The ``threads``, ``cooperative`` and ``ray``
runners give ticks; calling a node function by hand or on the ``canal`` reference runner
gives none (time-based behaviour then happens only when an item arrives).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["TICK", "TICKS", "Tick", "check_tick_interval"]


class Tick:
    """The type of :data:`TICK`; there is one instance.

    Example:
        >>> from nanostream import TICK
        >>> TICK
        TICK
        >>> type(TICK)() is TICK
        True
    """

    __slots__ = ()
    _instance: Tick | None = None

    def __new__(cls) -> Tick:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "TICK"

    def __reduce__(self) -> str:
        return "TICK"  # pickles as the module attribute: still the one instance


TICK: Final = Tick()
"""Put into the input of a node with ``tick_interval`` when no item came for that long."""


class _Ticks(tuple[Tick]):
    """The type of :data:`TICKS`: a tuple that pickles as the module attribute, so a node
    function sent to another process (the Ray runner's actors) still compares it by
    identity.

    Example:
        >>> import pickle
        >>> from nanostream._core.ticks import TICKS
        >>> pickle.loads(pickle.dumps(TICKS)) is TICKS
        True
    """

    __slots__ = ()

    def __reduce__(self) -> str:
        return "TICKS"


TICKS: Final = _Ticks((TICK,))
"""The input slice of a node with ``tick_interval`` when no item came for that long (a
node that reads its input by slices, ``inp.slices()``, sees this one object, also in
another process)."""


def check_tick_interval(value: Any) -> str | None:
    """An error message when ``value`` is not a valid ``tick_interval``, else None.

    Example:
        >>> from nanostream._core.ticks import check_tick_interval
        >>> check_tick_interval(0.5) is None, check_tick_interval(None) is None
        (True, True)
        >>> check_tick_interval(0)
        'tick_interval must be a positive number of seconds or null, got 0'
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return f"tick_interval must be a positive number of seconds or null, got {value!r}"
    return None
