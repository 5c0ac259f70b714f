"""Columnar file nodes: Parquet, Arrow IPC (Feather) and CSV read by Arrow.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.columnar`.

Example:
    >>> from nanostream.connectors import columnar as code
    >>> from nanostream.nodes import columnar
    >>> columnar.ParquetWriter is code.ParquetWriter
    True
"""

from __future__ import annotations

from ..connectors.columnar import (
    ArrowCSVReader,
    FeatherReader,
    FeatherWriter,
    ParquetReader,
    ParquetWriter,
)

__all__: list[str] = [
    "ArrowCSVReader",
    "FeatherReader",
    "FeatherWriter",
    "ParquetReader",
    "ParquetWriter",
]
