"""What crosses between the driver and the actors, and how it is made to travel.

* :func:`dumps` and :func:`loads`: cloudpickle, with threading primitives re-created on the
  other side, runs and pipelines left behind, and exceptions kept whole (their
  ``__cause__`` chain, and loadable even when ``__init__`` takes other arguments);
* :func:`import_roots`: where the driver imported the nodes' code from, for the actors;
* :func:`describe_failure` and :func:`rebuild_failure`: a node's exception as an actor
  sends it (pickled when it can be, as text and frames in any case) and as the driver
  raises it again (its traceback made of the remote frames);
* :func:`portable` and :func:`emit_logs`: a log record of an actor, emitted again on the
  driver's loggers.

Imported where Ray is installed (it pickles with Ray's cloudpickle).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from types import FunctionType, TracebackType
from typing import Any

from ray import cloudpickle

from ..._core.redact import safe_str
from ._errors import RemoteError

__all__ = [
    "describe_failure",
    "dumps",
    "emit_logs",
    "import_roots",
    "loads",
    "portable",
    "rebuild_failure",
]

_LOCK_TYPE = type(threading.Lock())
_RLOCK_TYPE = type(threading.RLock())
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_PLAIN = (str, int, float, bool, type(None))


class _Pickler(cloudpickle.CloudPickler):
    """cloudpickle, but threading primitives travel as fresh ones and runs stay behind."""

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is _LOCK_TYPE:
            return ("lock",)
        if kind is _RLOCK_TYPE:
            return ("rlock",)
        if isinstance(obj, threading.Event):
            return ("event", obj.is_set())
        if isinstance(obj, threading.Condition):
            return ("condition",)
        from ..._core.graph import Pipeline
        from ..._core.run import Run

        if isinstance(obj, (Pipeline, Run)):
            return ("none",)
        return None

    #: Filled by :func:`dumps` with the modules of the classes and functions it met.
    modules: set[str] | None = None

    def reducer_override(self, obj: Any) -> Any:
        if self.modules is not None and isinstance(obj, (type, FunctionType)):
            module = getattr(obj, "__module__", None)
            if isinstance(module, str):
                self.modules.add(module)
        made = obj.__reduce_ex__(_PROTOCOL) if isinstance(obj, BaseException) else None
        if isinstance(made, tuple):
            # With the chain (__cause__, __context__) that plain pickling drops, and
            # loadable even when __init__ takes other arguments than ``args``.
            make, make_args = made[0], made[1]
            attributes = made[2] if len(made) > 2 else None
            chain = (obj.__cause__, obj.__context__, obj.__suppress_context__)
            args = (make, make_args, type(obj), obj.args)
            return _new_exception, args, (attributes, chain), None, None, _set_exception
        return super().reducer_override(obj)  # type: ignore[no-untyped-call]


def _new_exception(
    make: Callable[..., Any],
    make_args: tuple[Any, ...],
    cls: type[BaseException],
    args: tuple[Any, ...],
) -> BaseException:
    """The exception as its class pickles it; else made without calling ``__init__``."""
    try:
        exc = make(*make_args)
        if isinstance(exc, BaseException):
            return exc
    except Exception:  # noqa: BLE001 - an __init__ whose arguments are not ``args``
        pass
    try:
        exc = cls.__new__(cls, *args)
    except Exception:  # noqa: BLE001 - a __new__ with its own signature
        exc = cls.__new__(cls)
    exc.args = args
    return exc


def _set_exception(exc: BaseException, state: Any) -> None:
    attributes, (cause, context, suppress) = state
    if isinstance(attributes, dict):
        for key, value in attributes.items():
            setattr(exc, key, value)
    exc.__cause__, exc.__context__, exc.__suppress_context__ = cause, context, suppress


_PICKLER: Any = _Pickler


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0]
        if kind == "lock":
            return threading.Lock()
        if kind == "rlock":
            return threading.RLock()
        if kind == "event":
            event = threading.Event()
            if pid[1]:
                event.set()
            return event
        if kind == "condition":
            return threading.Condition()
        return None


def dumps(obj: Any, modules: set[str] | None = None) -> bytes:
    """Pickle ``obj`` for another process (locks and events are re-created there).

    ``modules``, if given, gets the names of the modules of the classes and functions met.

    Example:
        >>> import threading
        >>> from nanostream.runners.ray._wire import dumps, loads
        >>> event = threading.Event()
        >>> event.set()
        >>> copy = loads(dumps({"seen": event, "n": 1}))
        >>> copy["seen"].is_set(), copy["n"]
        (True, 1)
    """
    buffer = io.BytesIO()
    pickler: Any = _PICKLER(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.modules = modules
    pickler.dump(obj)
    return buffer.getvalue()


def import_roots(modules: Iterable[str]) -> list[str]:
    """The folders the named (loaded) modules were imported from, as ``sys.path`` entries.

    Example:
        >>> import os, nanostream
        >>> from nanostream.runners.ray._wire import import_roots
        >>> [root] = import_roots(["nanostream.testing"])
        >>> os.path.exists(os.path.join(root, "nanostream", "testing.py"))
        True
    """
    roots: list[str] = []
    for name in sorted(set(modules)):
        file = getattr(sys.modules.get(name), "__file__", None)
        if not isinstance(file, str):
            continue
        levels = name.count(".") + (os.path.basename(file) == "__init__.py")
        root = os.path.dirname(os.path.abspath(file))
        for _ in range(levels):
            root = os.path.dirname(root)
        if root not in roots:
            roots.append(root)
    return roots


def loads(data: bytes) -> Any:
    """Unpickle what :func:`dumps` made (see there)."""
    return _Unpickler(io.BytesIO(data)).load()


def portable(record: logging.LogRecord) -> dict[str, Any]:
    """A log record as a dict that pickles (``logging.makeLogRecord`` makes it again)."""
    data = dict(record.__dict__)
    data["msg"], data["args"] = record.getMessage(), None
    if record.exc_info:
        if not record.exc_text:
            data["exc_text"] = logging.Formatter().formatException(record.exc_info)
        data["exc_info"] = None
    for key, value in data.items():
        if not isinstance(value, _PLAIN):
            try:
                pickle.dumps(value)
            except Exception:  # noqa: BLE001 - kept as text
                data[key] = safe_str(_Repr(value))  # an item's repr() may raise too
    return data


class _Repr:
    """``str()`` of it is ``repr(value)`` (for :func:`safe_str`, which never raises)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return repr(self.value)


def emit_logs(records: Iterable[dict[str, Any]]) -> None:
    """Emit records an actor kept (see ``portable``) on the driver's loggers.

    Example:
        >>> import logging
        >>> from nanostream.runners.ray._wire import emit_logs
        >>> emit_logs([{"name": "nanostream.p.n", "levelno": logging.DEBUG, "msg": "hi"}])
    """
    for data in records:
        record = logging.makeLogRecord(data)
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def describe_failure(exc: BaseException) -> dict[str, Any]:
    """``exc`` as the driver gets it: pickled if it travels, its text and its frames."""
    text = "".join(traceback.format_exception(exc))
    data: bytes | None
    try:
        data = dumps(exc)
        loads(data)
    except Exception:  # noqa: BLE001 - sent as text only
        data = None
    frames = [
        (f.filename, f.lineno or 1, f.name, _span(f))
        for f in traceback.extract_tb(exc.__traceback__)
    ]
    return {
        "exception": data,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": safe_str(exc),
        "traceback": text,
        "frames": frames,
    }


def _span(frame: traceback.FrameSummary) -> tuple[int, int] | None:
    """The columns of the failing expression, when it is on one line."""
    if frame.colno is None or frame.end_colno is None or frame.end_lineno != frame.lineno:
        return None
    return frame.colno, frame.end_colno


def rebuild_failure(name: str, outcome: dict[str, Any]) -> BaseException:
    """The remote exception (or a :class:`RemoteError`) with the remote traceback.

    The traceback is rebuilt from the remote frames (file, line, function), so it prints
    like a local one; its full text, chained exceptions included, is ``remote_traceback``.
    """
    text = outcome["traceback"]
    exc: BaseException | None = None
    if outcome.get("exception") is not None:
        try:
            exc = loads(outcome["exception"])
        except Exception:  # noqa: BLE001 - the class is not importable here
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(outcome["type"], outcome["message"], text)
    else:
        try:
            exc.remote_traceback = text  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - exceptions with __slots__
            pass
    tb = _traceback_of(outcome.get("frames", []))
    if tb is not None:
        exc = exc.with_traceback(tb)
    else:
        exc.add_note(f"remote traceback (node {name!r}, on Ray):\n{text.rstrip()}")
    return exc


class _Here(Exception):
    pass


def _traceback_of(frames: list[Any]) -> TracebackType | None:
    """A traceback whose frames carry the remote file names, lines and function names.

    Each frame is made by running a ``raise`` compiled at the remote file and line (and,
    when known, spanning the remote failing expression's columns).
    """
    tb: TracebackType | None = None
    try:
        for filename, lineno, function, span in reversed(frames):
            name, statement, first = "_Here", "raise _Here", lineno
            if span is not None and span[1] - span[0] > len("raise _") and lineno > 1:
                name = "_" * (span[1] - span[0] - len("raise "))
                # an indented line must follow a block opener: "if 1:" on the line above
                statement = "if 1:\n" + " " * span[0] + "raise " + name
                first = lineno - 1
            source = "\n" * (max(1, first) - 1) + statement
            code = compile(source, filename, "exec")
            code = code.replace(co_name=function, co_qualname=function)
            try:
                exec(code, {name: _Here, "__name__": "nanostream.remote"})
            except _Here as here:
                own = here.__traceback__
                assert own is not None and own.tb_next is not None
                made = own.tb_next
            tb = TracebackType(tb, made.tb_frame, made.tb_lasti, made.tb_lineno)
    except Exception:  # noqa: BLE001 - fall back to the text
        return None
    return tb
