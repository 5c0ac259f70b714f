"""Dead letters: a sink that keeps every item that failed for good, as JSON lines.

Link a node's ``errors`` port to it: ``node.errors > DeadLetterFile("dead.jsonl")``. Each
:class:`~nanostream.ErrorRecord` becomes one line; :func:`read_dead_letters` reads them back.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .._core.errors import GraphError
from .._core.node import NanoNode, NodeFunction
from .._core.policy import POLICY_OPTIONS, ErrorRecord
from ._fileread import FormatError, parse_json
from ._filesystems import compression_of, is_url

__all__ = ["DeadLetterFile", "read_dead_letters"]

log = logging.getLogger("nanostream")


def _jsonable(value: Any) -> Any:
    """A JSON-friendly stand-in for a value ``json`` cannot write."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return {"repr": _safe_repr(value)}


def _safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder naming the failure when ``repr()`` raises."""
    try:
        return repr(value)
    except Exception as exc:  # noqa: BLE001 - the placeholder says what happened
        return f"<unrepresentable {type(value).__name__}: repr() raised {type(exc).__name__}>"


class DeadLetterFile(NanoNode):
    """A sink that appends each error record it receives to a JSON-lines file.

    One line per record: ``node``, ``item``, ``exception_type``, ``message``,
    ``traceback``, ``attempt`` and ``time`` (ISO 8601, UTC). An item JSON cannot hold is
    written as a readable stand-in (``{"repr": ...}``, bytes as text or
    ``{"base64": ...}``; an object whose ``repr()`` raises as
    ``{"repr": "<unrepresentable Type: repr() raised Error>"}``); anything that is not an
    :class:`~nanostream.ErrorRecord` is written as ``{"item": ...}``. Each line is
    flushed at once, so the file is complete after a crash of the process; ``fsync=True``
    also survives a power cut, at a cost.
    The file is opened for appending, so a restart adds to it. A process killed in the
    middle of a record leaves its last line cut short: the next run reports that line
    (a warning with the file and line number) and starts its first record on a new line,
    so that no record is glued to it.

    Example:
        >>> import nanostream, tempfile, pathlib
        >>> from nanostream.nodes.deadletter import DeadLetterFile, read_dead_letters
        >>> class Parse(nanostream.NanoNode):
        ...     def process_item(self, item):
        ...         yield int(item)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "dead.jsonl"
        >>> parse = Parse(on_error="skip")
        >>> nanostream.from_iterable(["1", "two", "3"]) > parse
        Parse(name=None)
        >>> parse.errors > DeadLetterFile(path)
        DeadLetterFile(name=None)
        >>> parse.global_start()
        >>> [(d["node"], d["item"], d["exception_type"]) for d in read_dead_letters(path)]
        [('Parse', 'two', 'ValueError')]
    """

    holds_items = False  # every record is written before the next is read
    policy_options = POLICY_OPTIONS  # as_function wraps NanoNode's

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = False,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise GraphError(f"DeadLetterFile: path must be a file name, got {path!r}")
        self.path = os.fspath(path)
        if is_url(self.path) or compression_of(self.path) is not None:
            raise GraphError(
                f"{name or 'DeadLetterFile'}: {self.path!r} is a URL or a compressed file, "
                "but dead letters are appended and flushed one line at a time, which needs "
                "a plain local file; pass a local path without .gz/.bz2/.xz/.zst (and copy "
                "it to a store or compress it afterwards)"
            )
        self.fsync = bool(fsync)
        self._file: IO[str] | None = None
        self.configure(**options)

    def setup(self) -> None:
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in cleanup
        torn = _torn_last_line(self.path)
        if torn is not None:
            log.warning(
                "%s, line %d: a dead letter cut short (the process writing it was killed); "
                "node %r keeps it as it is and writes its records on the lines after it",
                self.path,
                torn,
                self._context().name,
            )
            self._file.write("\n")
            self._file.flush()

    def process_item(self, item: Any) -> Iterator[Any]:
        file = self._file
        assert file is not None, "setup() opens the file"
        if isinstance(item, ErrorRecord):
            data = item.to_dict()
            data["time"] = datetime.datetime.fromtimestamp(item.time, tz=datetime.UTC).isoformat()
        else:
            data = {"item": item}
        file.write(json.dumps(data, default=_jsonable, ensure_ascii=False) + "\n")
        file.flush()
        if self.fsync:
            os.fsync(file.fileno())
        yield from ()

    def cleanup(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def as_function(self) -> NodeFunction:
        standard = super().as_function()
        node = self

        def write_dead_letters(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
            try:
                standard(inp, outp)
            finally:
                node.cleanup()  # the file is closed also when the run fails or aborts

        return write_dead_letters


def read_dead_letters(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records a :class:`DeadLetterFile` wrote to ``path``, as dicts, oldest first.

    Each line is read on its own: a line that is not a whole record (the process writing
    it was killed, perhaps in the middle of a character of more than one byte), or that
    does not parse for another reason (such as nesting deeper than the parser can follow),
    is left out with a warning naming the file and the line, and every other line is read.

    Example:
        >>> import tempfile, pathlib
        >>> from nanostream.nodes.deadletter import read_dead_letters
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "dead.jsonl"
        >>> _ = path.write_text('{"item": 1}\\n{"item": 2}\\n{"ite')
        >>> read_dead_letters(path)
        [{'item': 1}, {'item': 2}]
    """
    records = []
    name = os.fspath(path)
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            records.append(parse_json(raw, source=name, line=number))
        except FormatError as exc:
            log.warning(
                "%s, line %d is not a whole dead letter (%s; was the process writing it "
                "killed?); it is left out: %.200r",
                name,
                number,
                exc.message,
                raw.decode("utf-8", "replace"),
            )
    return records


def _torn_last_line(path: str) -> int | None:
    """The number of the last line of ``path`` if it does not end with a line break."""
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return None
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return None
        file.seek(0)
        return 1 + sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
