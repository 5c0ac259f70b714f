"""Joins, merge and routing.

The public import path of these nodes; the code lives in :mod:`nanostream.operators.join`.

Example:
    >>> from nanostream.operators import join as code
    >>> from nanostream.nodes import join
    >>> join.IntervalJoin is code.IntervalJoin
    True
"""

from __future__ import annotations

from ..operators.join import IntervalJoin, Join, JoinResult, Merge, Router, Tagged

__all__: list[str] = [
    "IntervalJoin",
    "Join",
    "JoinResult",
    "Merge",
    "Router",
    "Tagged",
]
