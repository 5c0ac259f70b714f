"""CSV and JSON lines nodes.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.formats`.

Example:
    >>> from nanostream.connectors import formats as code
    >>> from nanostream.nodes import formats
    >>> formats.CSVReader is code.CSVReader
    True
"""

from __future__ import annotations

from ..connectors.formats import CSVReader, CSVWriter, JSONLinesReader, JSONLinesWriter, infer_type

__all__: list[str] = [
    "CSVReader",
    "CSVWriter",
    "JSONLinesReader",
    "JSONLinesWriter",
    "infer_type",
]
