"""Windows, dedupe, reduce and aggregate.

The public import path of these nodes; the code lives in :mod:`nanostream.operators.window`.

Example:
    >>> from nanostream.operators import window as code
    >>> from nanostream.nodes import window
    >>> window.Aggregate is code.Aggregate
    True
"""

from __future__ import annotations

from ..operators.window import (
    Aggregate,
    Dedupe,
    Reduce,
    SessionWindow,
    SlidingWindow,
    TumblingWindow,
    WindowResult,
)

__all__: list[str] = [
    "Aggregate",
    "Dedupe",
    "Reduce",
    "SessionWindow",
    "SlidingWindow",
    "TumblingWindow",
    "WindowResult",
]
