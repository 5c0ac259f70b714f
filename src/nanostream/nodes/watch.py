"""Watching a folder for new files, or an object-store prefix for new objects.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.watch`.

Example:
    >>> from nanostream.connectors import watch as code
    >>> from nanostream.nodes import watch
    >>> watch.LocalDirectoryWatchdog is code.LocalDirectoryWatchdog
    True
"""

from __future__ import annotations

from ..connectors.objstore import PrefixWatcher
from ..connectors.watch import LocalDirectoryWatchdog

__all__: list[str] = [
    "LocalDirectoryWatchdog",
    "PrefixWatcher",
]
