"""nanostream: stream processing for medium data.

Write small nodes, link them with ``>`` into a directed acyclic graph, and start it. Each
node runs in its own thread with bounded queues between them.

Example:
    >>> import nanostream
    >>> class Double(nanostream.NanoNode):
    ...     def process_item(self, item):
    ...         yield item * 2
    >>> sink = nanostream.testing.Collect()
    >>> nanostream.from_iterable([1, 2, 3]) > Double() > sink
    Collect(name=None)
    >>> sink.global_start()
    >>> sink.items
    [2, 4, 6]
"""

from __future__ import annotations

from . import runners as runners  # its import registers the built-in runners
from . import testing
from ._core import registry as _registry
from ._core.acks import Acked
from ._core.composite import Composite
from ._core.errors import (
    ConfigError,
    CycleError,
    GraphError,
    MissingDependencyError,
    NanoStreamError,
    NodeFailed,
    NodeProtocolError,
    OptionError,
    RunStateError,
    StateError,
    TooManyErrors,
)
from ._core.graph import Pipeline, Plan, PlanNode, pipeline_of
from ._core.node import (
    FunctionNode,
    IterableSource,
    NanoNode,
    NodeFunction,
    Port,
    as_node,
    from_iterable,
)
from ._core.policy import ErrorPolicy, ErrorRecord
from ._core.ports import TaggedOutput
from ._core.run import NodeStats, Run, RunOptions
from ._core.signals import RunAborted, SourceStopped
from ._core.ticks import TICK, Tick
from .config import class_factory, load_pipeline, to_yaml
from .nodes import (
    CSVReader,
    FormatError,
    LocalDirectoryWatchdog,
    LocalFileReader,
    PrinterOfThings,
)

# The layers above _core fill its registry: the runners register themselves when
# nanostream.runners is imported (above); the observer is imported when first used.
_registry.provide("observe", "nanostream.observe:attach")

__version__ = "0.1.0"

__all__ = [
    "Acked",
    "CSVReader",
    "Composite",
    "ConfigError",
    "CycleError",
    "ErrorPolicy",
    "ErrorRecord",
    "FormatError",
    "FunctionNode",
    "GraphError",
    "IterableSource",
    "LocalDirectoryWatchdog",
    "LocalFileReader",
    "MissingDependencyError",
    "NanoNode",
    "NanoStreamError",
    "NodeFailed",
    "NodeFunction",
    "NodeProtocolError",
    "NodeStats",
    "OptionError",
    "Pipeline",
    "Plan",
    "PlanNode",
    "Port",
    "PrinterOfThings",
    "Run",
    "RunAborted",
    "RunOptions",
    "RunStateError",
    "SourceStopped",
    "StateError",
    "TICK",
    "TaggedOutput",
    "Tick",
    "TooManyErrors",
    "__version__",
    "as_node",
    "class_factory",
    "from_iterable",
    "load_pipeline",
    "pipeline_of",
    "testing",
    "to_yaml",
]
