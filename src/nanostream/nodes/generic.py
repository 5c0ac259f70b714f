"""Generic node constructors: ``grep``, ``transform``, ``uniq``, ``aggregate``, JSON, sinks.

The same functions as :mod:`nanostream.canal.nodes` (see there); each call returns a new
node function.

Example:
    >>> import nanostream
    >>> from nanostream.nodes import transform, uniq
    >>> sink = nanostream.testing.Collect()
    >>> as_text = nanostream.as_node(transform(str))  # two plain functions cannot be chained
    >>> nanostream.from_iterable([1, 1, 2, 2, 1]) > uniq() > as_text > sink
    Collect(name=None)
    >>> sink.global_start()
    >>> sink.items
    ['1', '2', '1']
"""

from __future__ import annotations

from ..canal.nodes import (
    aggregate,
    grep,
    json_decode,
    json_encode,
    sink_to_callable,
    sink_to_file,
    transform,
    uniq,
)

__all__ = [
    "aggregate",
    "grep",
    "json_decode",
    "json_encode",
    "sink_to_callable",
    "sink_to_file",
    "transform",
    "uniq",
]
