"""File nodes: read files, write files, print items.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.files`.

Example:
    >>> from nanostream.connectors import files as code
    >>> from nanostream.nodes import files
    >>> files.FileWriter is code.FileWriter
    True
"""

from __future__ import annotations

from ..connectors.files import FileWriter, LocalFileReader, PrinterOfThings

__all__: list[str] = [
    "FileWriter",
    "LocalFileReader",
    "PrinterOfThings",
]
