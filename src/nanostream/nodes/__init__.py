"""Built-in nodes, by family. Each is also importable from this package.

Example:
    >>> import nanostream.nodes
    >>> isinstance(nanostream.nodes.__all__, list)
    True
"""

from __future__ import annotations

from ._common import FileBytes, FileText, FormatError, PathRefusedError
from .files import FileWriter, LocalFileReader, PrinterOfThings
from .formats import CSVReader, CSVWriter, JSONLinesReader, JSONLinesWriter
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
from .watch import LocalDirectoryWatchdog

__all__: list[str] = [
    "CSVReader",
    "CSVWriter",
    "FileBytes",
    "FileText",
    "FileWriter",
    "FormatError",
    "JSONLinesReader",
    "JSONLinesWriter",
    "LocalDirectoryWatchdog",
    "LocalFileReader",
    "PathRefusedError",
    "PrinterOfThings",
    "aggregate",
    "grep",
    "json_decode",
    "json_encode",
    "sink_to_callable",
    "sink_to_file",
    "transform",
    "uniq",
]
