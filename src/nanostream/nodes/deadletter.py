"""The dead-letter file.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.deadletter`.

Example:
    >>> from nanostream.connectors import deadletter as code
    >>> from nanostream.nodes import deadletter
    >>> deadletter.DeadLetterFile is code.DeadLetterFile
    True
"""

from __future__ import annotations

from ..connectors.deadletter import DeadLetterFile, read_dead_letters

__all__: list[str] = [
    "DeadLetterFile",
    "read_dead_letters",
]
