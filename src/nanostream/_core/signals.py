"""Control-flow signals a runner raises inside node code.

They derive from ``BaseException`` (like ``GeneratorExit``) so that a node's
``except Exception:`` does not swallow them.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["RunAborted", "SourceStopped", "clear_async_exception", "raise_async_exception"]


class SourceStopped(BaseException):
    """Raised by a source's ``outp`` once the run is stopping: the source should end.

    The item passed to that ``outp`` call was accepted and will be delivered. A source node
    function may catch it to end cleanly; if it does not, the runner treats its exit as a
    normal end of stream.

    Example:
        >>> import itertools, nanostream
        >>> def counter(inp, outp):
        ...     try:
        ...         for i in itertools.count():
        ...             outp(i)
        ...     except nanostream.SourceStopped:
        ...         print("stopping")
        ...         raise
        >>> node = nanostream.as_node(counter)
        >>> run = node.global_start(block=False)
        >>> run.stop(timeout=10)
        stopping
    """


class RunAborted(BaseException):
    """Raised inside a node when the run is aborted (another node failed, or abort()).

    Example:
        >>> import nanostream
        >>> issubclass(nanostream.RunAborted, Exception)  # not caught by 'except Exception'
        False
    """


_CPYTHON = sys.implementation.name == "cpython"


def raise_async_exception(thread_id: int, exc_type: type[BaseException]) -> None:
    """Make ``exc_type`` raise in thread ``thread_id`` at its next Python instruction.

    Used only to end a node thread that ignores an abort (CPython only; a no-op elsewhere).
    A thread blocked in a C call (sleep, I/O) sees it when the call returns.
    """
    if _CPYTHON:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
        )


def clear_async_exception(thread_id: int) -> None:
    """Cancel a pending :func:`raise_async_exception` for ``thread_id``."""
    if _CPYTHON:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
