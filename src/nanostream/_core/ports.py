"""Named output ports: a node emits ``TaggedOutput(port, value)`` to send to one port."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

__all__ = ["TaggedOutput", "port_dispatcher"]


class TaggedOutput(NamedTuple):
    """Emit ``value`` on the named output ``port`` instead of the default one.

    Example:
        >>> import nanostream
        >>> def split(inp, outp):
        ...     for x in inp:
        ...         outp(nanostream.TaggedOutput("even" if x % 2 == 0 else "odd", x))
        >>> evens, odds = nanostream.testing.Collect(), nanostream.testing.Collect()
        >>> src = nanostream.from_iterable(range(5))
        >>> _ = src > split
        >>> node = nanostream.as_node(split)
        >>> _ = node["even"] > evens
        >>> _ = node["odd"] > odds
        >>> src.global_start()
        >>> evens.items, odds.items
        ([0, 2, 4], [1, 3])
    """

    port: str
    value: Any


class _HasOutp(Protocol):
    outp: Callable[[Any], Any]


def port_dispatcher(boxes: Mapping[str, _HasOutp]) -> Callable[[Any], None]:
    """An ``outp`` that sends ``TaggedOutput`` values to their port, others to ``"out"``.

    A value tagged for a port that has no link is dropped, as a sink's outputs are.
    """
    default = boxes["out"].outp
    by_port = {port: box.outp for port, box in boxes.items()}

    def outp(item: Any) -> None:
        if type(item) is TaggedOutput:
            send = by_port.get(item.port)
            if send is not None:
                send(item.value)
        else:
            default(item)

    return outp
