"""The exceptions nanostream raises: :class:`NanoStreamError` draws their one tree.

Example:
    >>> import nanostream
    >>> issubclass(nanostream.NodeFailed, nanostream.NanoStreamError)
    True
"""

from __future__ import annotations

import importlib
from typing import Any

from .redact import exception_text

__all__ = [
    "ConfigError",
    "CycleError",
    "GraphError",
    "MissingDependencyError",
    "NanoStreamError",
    "NodeFailed",
    "NodeProtocolError",
    "OptionError",
    "RunStateError",
    "StateError",
    "TooManyErrors",
    "require",
]


class NanoStreamError(Exception):
    """Base class of every error nanostream raises on purpose: ``except NanoStreamError``
    catches them all. The tree (where a class is defined outside this module, its module
    is named; some also derive from the builtin named in brackets)::

        NanoStreamError
        ├── GraphError                the graph is wrong; raised while it is built or checked
        │   ├── CycleError            the edges form a cycle
        │   ├── OptionError           a node's option is wrong (also a ConfigError: see below)
        │   ├── OutputExistsError     a writer would replace a file (connectors; FileExistsError)
        │   └── SinkEmitError         a node with no outgoing edge emitted (canal)
        ├── ConfigError               a configuration (YAML) is wrong; names the file and line
        │   └── ConfigErrors          several of them, found at once (config)
        ├── NodeProtocolError         a node broke the node contract (e.g. returned early)
        │   ├── ZombieNodeError       a node still ran after terminate() (canal)
        │   └── NodeEndedEarlyError   a node returned before its input ended (canal; ValueError)
        ├── RunStateError             a pipeline was used in the wrong lifecycle state
        ├── StateError                saved state (a state store, a connector's state file) that
        │                             does not fit the pipeline, or cannot be read
        ├── NodeFailed                a node raised while running; ``__cause__`` is the original
        ├── TooManyErrors             a node's skipped errors passed max_errors / max_error_rate
        ├── MissingDependencyError    an optional dependency is missing (ImportError)
        │   └── GraphvizNotFoundError Graphviz's dot is not installed (observe)
        ├── ConnectorError            a connector could not talk to its system (connectors)
        │   └── HttpStatusError       an HTTP error status, after the retries (connectors)
        ├── FormatError               input data is malformed (connectors; ValueError)
        ├── PathRefusedError          a path outside a node's directory (connectors;
        │                             PermissionError)
        ├── RayRunnerError            the Ray runner could not start a pipeline (runners.ray)
        ├── RemoteError               a remote exception that could not come back as is
        │                             (runners.ray)
        └── WorkerTraceback           a worker process's traceback: the ``__cause__`` of an
                                      error raised under ``processes=`` (operators)

    One rule for a node's options: a wrong one, given in Python, is a :class:`GraphError`
    raised when the node is made (the shared checks of counts, numbers and choices raise
    its subclass :class:`OptionError`); a pipeline file's mistakes, a node's wrong option
    in it too, are a :class:`ConfigError` naming the file and line. ``OptionError`` is
    also a ``ConfigError``, since the SQL, HTTP, Redis and Kafka nodes raised that for
    their options before: ``except ConfigError`` written for them keeps working.

    Two signals are not errors and derive from ``BaseException``, so that ``except
    Exception`` in node code does not swallow them: :class:`~nanostream.SourceStopped`
    and :class:`~nanostream.RunAborted`.

    Example:
        >>> import nanostream
        >>> try:
        ...     raise nanostream.GraphError("bad graph")
        ... except nanostream.NanoStreamError as exc:
        ...     print(type(exc).__name__, exc)
        GraphError bad graph
    """


class GraphError(NanoStreamError):
    """The graph is wrong: raised while it is linked or checked, before any thread starts.

    Example:
        >>> import nanostream
        >>> a = nanostream.from_iterable([1], name="a")
        >>> try:
        ...     a > a
        ... except nanostream.GraphError as exc:
        ...     print(exc)
        cannot link node 'a' to itself
    """


class CycleError(GraphError):
    """The edges of a graph form a cycle; the message lists the nodes on it.

    Example:
        >>> import nanostream
        >>> a = nanostream.as_node(lambda inp, outp: [outp(x) for x in inp], name="a")
        >>> b = nanostream.as_node(lambda inp, outp: [outp(x) for x in inp], name="b")
        >>> _ = a > b > a
        >>> try:
        ...     a.global_start()
        ... except nanostream.CycleError as exc:
        ...     print(exc)
        the graph has a cycle: a > b > a; a pipeline must be acyclic
    """

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        path = " > ".join([*cycle, cycle[0]])
        super().__init__(f"the graph has a cycle: {path}; a pipeline must be acyclic")


class ConfigError(NanoStreamError):
    """A configuration is wrong. ``location`` is ``FILE:LINE:COLUMN`` when known.

    Example:
        >>> import nanostream
        >>> str(nanostream.ConfigError("unknown class 'Foo'", location="p.yaml:3:10"))
        "p.yaml:3:10: unknown class 'Foo'"
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}" if location else message)


class OptionError(GraphError, ConfigError):
    """A node's option is wrong, found when the node is made; the message names the node
    and the option. Also a :class:`ConfigError`: see :class:`NanoStreamError`.

    Example:
        >>> import nanostream
        >>> from nanostream.nodes import Batch
        >>> try:
        ...     Batch(True)
        ... except nanostream.GraphError as exc:
        ...     print(type(exc).__name__, "|", exc)
        OptionError | Batch: size must be a positive integer, got True
    """


class NodeProtocolError(NanoStreamError):
    """A node broke the node contract, for example a node function returned early.

    Example:
        >>> import nanostream
        >>> def lazy(inp, outp):
        ...     return None  # never reads its input
        >>> src = nanostream.from_iterable([1, 2, 3])
        >>> _ = src > lazy
        >>> try:
        ...     src.global_start()
        ... except nanostream.NodeFailed as exc:
        ...     print(type(exc.__cause__).__name__)
        NodeProtocolError
    """


class RunStateError(NanoStreamError):
    """A pipeline or run was used in the wrong lifecycle state (e.g. started twice).

    Example:
        >>> import nanostream
        >>> src = nanostream.from_iterable([1])
        >>> src.global_start()
        >>> try:
        ...     src.global_start()
        ... except nanostream.RunStateError as exc:
        ...     print("already ran")
        already ran
    """


class NodeFailed(NanoStreamError):
    """A node raised an exception while the pipeline ran.

    ``node`` is the node's name; ``__cause__`` is the original exception, with its traceback.
    Secrets in the cause's text are masked in the message (see :mod:`nanostream._core.redact`).

    Example:
        >>> import nanostream
        >>> def boom(inp, outp):
        ...     for x in inp:
        ...         raise ValueError(f"bad item {x}")
        >>> src = nanostream.from_iterable([1])
        >>> _ = src > boom
        >>> try:
        ...     src.global_start()
        ... except nanostream.NodeFailed as exc:
        ...     print(exc.node, "|", repr(exc.__cause__))
        boom | ValueError('bad item 1')
    """

    def __init__(self, node: str, cause: BaseException) -> None:
        self.node = node
        # The message is masked (it reaches logs); the cause is kept as it is, for debugging.
        super().__init__(f"node {node!r} failed: {exception_text(cause)}")
        self.__cause__ = cause


class MissingDependencyError(NanoStreamError, ImportError):
    """An optional dependency is missing; the message gives the ``pip install`` to run.

    Example:
        >>> import nanostream
        >>> print(nanostream.MissingDependencyError("ray", extra="ray"))
        this feature needs the 'ray' package: pip install 'nanostream[ray]'
    """

    def __init__(self, package: str, *, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"this feature needs the {package!r} package: pip install 'nanostream[{extra}]'"
        )


def require(module: str, *, extra: str, package: str | None = None) -> Any:
    """The optional dependency ``module``, imported; without it, a
    :class:`MissingDependencyError` naming ``package`` (default: ``module``) and ``extra``.

    Example:
        >>> from nanostream._core.errors import require
        >>> require("json", extra="none").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package or module, extra=extra) from None


class StateError(NanoStreamError):
    """Saved state cannot be used with this pipeline; the message says what to do.

    Raised when the run starts: the run's state store holds state for a node the pipeline
    no longer has (or no longer snapshots), state a node's ``restore_state`` refuses, or
    cannot be opened; ``drop_state=True`` (``--drop-state``) starts such nodes afresh.
    Also when a connector's own record of its progress is for something else or cannot be
    read (``SQLSource``'s ``state_file``: the message says which file to delete).

    Example:
        >>> import nanostream
        >>> issubclass(nanostream.StateError, nanostream.NanoStreamError)
        True
    """


class TooManyErrors(NanoStreamError):
    """A node skipped more failed items than its ``max_errors`` or ``max_error_rate`` allow.

    Raised inside the node, so the run fails with :class:`NodeFailed` whose ``__cause__``
    is this error; its own ``__cause__`` is the last item's exception.

    Example:
        >>> import nanostream
        >>> class Broken(nanostream.NanoNode):
        ...     def process_item(self, item):
        ...         raise ValueError(item)
        ...         yield
        >>> src = nanostream.from_iterable(range(10))
        >>> _ = src > Broken(on_error="skip", max_errors=2)
        >>> try:
        ...     src.global_start()
        ... except nanostream.NodeFailed as exc:
        ...     print(exc.__cause__)
        node 'Broken' failed for 3 items, more than max_errors=2
    """

    def __init__(self, node: str, message: str) -> None:
        self.node = node
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # it crosses processes (the ray runner)
        return (type(self), (self.node, str(self)))
