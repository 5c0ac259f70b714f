"""Map, filter, batch, take, throttle and the other item-by-item operators.

The public import path of these nodes; the code lives in :mod:`nanostream.operators.transforms`.

Example:
    >>> from nanostream.operators import transforms as code
    >>> from nanostream.nodes import transforms
    >>> transforms.Batch is code.Batch
    True
"""

from __future__ import annotations

from ..operators.transforms import (
    Batch,
    Delay,
    Filter,
    FlatMap,
    Inspect,
    KeyBy,
    Map,
    Parallel,
    Sample,
    Take,
    Throttle,
    Unbatch,
)

__all__: list[str] = [
    "Batch",
    "Delay",
    "Filter",
    "FlatMap",
    "Inspect",
    "KeyBy",
    "Map",
    "Parallel",
    "Sample",
    "Take",
    "Throttle",
    "Unbatch",
]
