"""Built-in nodes, by family. Each is also importable from this package.

Example:
    >>> import nanostream.nodes
    >>> isinstance(nanostream.nodes.__all__, list)
    True
"""

from __future__ import annotations

__all__: list[str] = []
