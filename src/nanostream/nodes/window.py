"""Windows, dedupe, reduce and aggregate.

The public import path of these nodes; the code lives in :mod:`nanostream.operators.window`
(windows) and :mod:`nanostream.operators.aggregate` (keyed state without windows).

Example:
    >>> from nanostream.operators import aggregate, window as code
    >>> from nanostream.nodes import window
    >>> window.TumblingWindow is code.TumblingWindow, window.Dedupe is aggregate.Dedupe
    (True, True)
"""

from __future__ import annotations

from ..operators.aggregate import Aggregate, Dedupe, Reduce
from ..operators.window import (
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
