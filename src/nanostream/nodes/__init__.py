"""Built-in nodes, by family. Each is also importable from this package.

Example:
    >>> import nanostream.nodes
    >>> isinstance(nanostream.nodes.__all__, list)
    True
"""

from __future__ import annotations

from ..connectors._fileread import FileBytes, FilePath, FileText, FormatError, PathRefusedError
from ..connectors._publish import OutputExistsError
from .deadletter import DeadLetterFile, read_dead_letters
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
from .join import IntervalJoin, Join, JoinResult, Merge, Router, Tagged
from .transforms import (
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
from .watch import LocalDirectoryWatchdog, PrefixWatcher
from .window import (
    Aggregate,
    Dedupe,
    Reduce,
    SessionWindow,
    SlidingWindow,
    TumblingWindow,
    WindowResult,
)

__all__: list[str] = [
    "Aggregate",
    "Batch",
    "CSVReader",
    "CSVWriter",
    "DeadLetterFile",
    "Dedupe",
    "Delay",
    "FileBytes",
    "FilePath",
    "FileText",
    "FileWriter",
    "Filter",
    "FlatMap",
    "FormatError",
    "Inspect",
    "IntervalJoin",
    "JSONLinesReader",
    "JSONLinesWriter",
    "Join",
    "JoinResult",
    "KeyBy",
    "LocalDirectoryWatchdog",
    "LocalFileReader",
    "Map",
    "Merge",
    "OutputExistsError",
    "Parallel",
    "PathRefusedError",
    "PrefixWatcher",
    "PrinterOfThings",
    "Reduce",
    "Router",
    "Sample",
    "SessionWindow",
    "SlidingWindow",
    "Tagged",
    "Take",
    "Throttle",
    "TumblingWindow",
    "Unbatch",
    "WindowResult",
    "aggregate",
    "grep",
    "json_decode",
    "json_encode",
    "read_dead_letters",
    "sink_to_callable",
    "sink_to_file",
    "transform",
    "uniq",
]
