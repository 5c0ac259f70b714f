"""Built-in nodes, by family. Each is also importable from this package.

Example:
    >>> import nanostream.nodes
    >>> isinstance(nanostream.nodes.__all__, list)
    True
"""

from __future__ import annotations

from .generic import (
    aggregate,
    grep,
    json_decode,
    json_encode,
    sink_to_callable,
    sink_to_file,
    transform,
    uniq,
)

__all__: list[str] = [
    "aggregate",
    "grep",
    "json_decode",
    "json_encode",
    "sink_to_callable",
    "sink_to_file",
    "transform",
    "uniq",
]
