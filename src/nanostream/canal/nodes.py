"""Generic node constructors, compatible with the reference ``canal.nodes``.

Each is a node constructor: every call returns a new node function ``f(inp, outp)``, which
runs in a ``canal.Graph``, in any nanostream pipeline (link it with ``>``), or on its own.
They are also importable from :mod:`nanostream.nodes`.

Example:
    >>> import nanostream
    >>> from nanostream.canal.nodes import grep, transform
    >>> sink = nanostream.testing.Collect()
    >>> nanostream.from_iterable(range(6)) > grep(lambda x: x % 2 == 0) > sink
    Collect(name=None)
    >>> sink.global_start()
    >>> sink.items
    [0, 2, 4]
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

from ..connectors._fileread import describe, parse_json

__all__ = [
    "aggregate",
    "grep",
    "json_decode",
    "json_encode",
    "sink_to_callable",
    "sink_to_file",
    "transform",
    "uniq",
]

NodeFunction = Callable[[Iterable[Any], Callable[[Any], Any]], None]
_NOTHING: Any = object()


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def grep(cond: Callable[[Any], Any]) -> NodeFunction:
    """Pass on the values for which ``cond(value)`` is true.

    Example:
        >>> from nanostream.canal.nodes import grep
        >>> out = []
        >>> grep(lambda x: x > 5)([1, 7, 3, 9], out.append)
        >>> out
        [7, 9]
    """

    def grep_node(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        for value in inp:
            if cond(value):
                outp(value)

    return grep_node


def transform(func: Callable[[Any], Any]) -> NodeFunction:
    """Emit ``func(value)`` for every value.

    Example:
        >>> from nanostream.canal.nodes import transform
        >>> out = []
        >>> transform(lambda x: x + 3)([1, 2], out.append)
        >>> out
        [4, 5]
    """

    def transform_node(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        for value in inp:
            outp(func(value))

    return transform_node


def uniq(cmp_func: Callable[[Any], Any] | None = None) -> NodeFunction:
    """Drop a value equal to the one just before it (compare ``cmp_func(value)`` if given).

    The first value always passes, even ``None``. Only neighbours are compared: a value
    seen earlier passes again after a different one.

    Example:
        >>> from nanostream.canal.nodes import uniq
        >>> out = []
        >>> uniq()([None, None, 1, 1, 2, 1], out.append)
        >>> out
        [None, 1, 2, 1]
        >>> out = []
        >>> uniq(str.lower)(["a", "A", "b"], out.append)
        >>> out
        ['a', 'b']
    """

    def uniq_node(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        previous = _NOTHING
        for value in inp:
            current = value if cmp_func is None else cmp_func(value)
            if previous is _NOTHING or current != previous:
                outp(value)
            previous = current

    return uniq_node


def aggregate(
    key_func: Callable[[Any], Hashable],
    close_func: Callable[[list[Any]], Any],
    flush: bool = False,
) -> NodeFunction:
    """Collect values into a list per ``key_func(value)``; emit a list once it is closed.

    After each value is added to its key's list, ``close_func(that list)`` decides: if it
    is true, the list is emitted and the key forgotten (its next value starts a new list).
    Lists still open when the input ends are dropped, as the reference does; with
    ``flush=True`` they are emitted then, in the order they were started.

    Example:
        >>> from nanostream.canal.nodes import aggregate
        >>> node = aggregate(key_func=lambda v: v[0], close_func=lambda g: g[-1][1] == "end")
        >>> out = []
        >>> node([(1, "start"), (2, "start"), (1, "end"), (2, "more")], out.append)
        >>> out
        [[(1, 'start'), (1, 'end')]]
        >>> out = []
        >>> aggregate(len, lambda g: len(g) == 2, flush=True)(["a", "bb", "c"], out.append)
        >>> out
        [['a', 'c'], ['bb']]
    """

    def aggregate_node(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        groups: dict[Hashable, list[Any]] = {}
        for value in inp:
            key = key_func(value)
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
            group.append(value)
            if close_func(group):
                del groups[key]
                outp(group)
        if flush:
            for group in groups.values():
                outp(group)

    return aggregate_node


def json_encode(**kwargs: Any) -> NodeFunction:
    """Emit ``json.dumps(value, **kwargs)`` for every value.

    Example:
        >>> from nanostream.canal.nodes import json_encode
        >>> out = []
        >>> json_encode(sort_keys=True)([{"b": 1, "a": True}], out.append)
        >>> out
        ['{"a": true, "b": 1}']
    """

    def json_encode_node(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        for value in inp:
            outp(json.dumps(value, **kwargs))

    return json_encode_node


def json_decode(**kwargs: Any) -> NodeFunction:
    """Emit ``json.loads(value, **kwargs)`` for every value.

    A value that is not JSON, or JSON nested deeper than the parser can follow, raises
    :class:`~nanostream.FormatError` (a ``ValueError``) naming the value's position in the
    input (``input item #1`` for the first), or its file when it is text read from one.

    Example:
        >>> from nanostream.canal.nodes import json_decode
        >>> out = []
        >>> json_decode()(['{"a": [1, 2]}', "true"], out.append)
        >>> out
        [{'a': [1, 2]}, True]
        >>> try:
        ...     json_decode()(["[1]", "[" * 100_000], out.append)
        ... except ValueError as exc:
        ...     print(type(exc).__name__, exc)
        FormatError input item #2: not readable JSON: its arrays and objects are nested ...
    """
    loads = functools.partial(json.loads, **kwargs)

    def json_decode_node(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        for index, value in enumerate(inp, 1):
            outp(parse_json(value, source=describe(value, index), loads=loads))

    return json_decode_node


def sink_to_file(f: _Writable, separator: str = "\n") -> NodeFunction:
    """A sink that writes ``str(value) + separator`` to the file object ``f``.

    The file is neither flushed nor closed: it belongs to the caller.

    Example:
        >>> import io
        >>> from nanostream.canal.nodes import sink_to_file
        >>> f = io.StringIO()
        >>> sink_to_file(f, separator=" ")(["a", 1, None], print)
        >>> f.getvalue()
        'a 1 None '
    """

    def sink_to_file_node(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        write = f.write
        for value in inp:
            write(str(value) + separator)

    return sink_to_file_node


def sink_to_callable(func: Callable[[Any], Any]) -> NodeFunction:
    """A sink that calls ``func(value)`` for every value.

    Example:
        >>> from nanostream.canal.nodes import sink_to_callable
        >>> sink_to_callable(print)(["hello", 42], print)
        hello
        42
    """

    def sink_to_callable_node(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        for value in inp:
            func(value)

    return sink_to_callable_node
