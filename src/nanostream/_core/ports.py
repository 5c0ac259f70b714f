"""Named output ports: ``node["name"] > other`` links one (a :class:`Port`); a node emits
``TaggedOutput(port, value)`` to send to one port."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

if TYPE_CHECKING:
    from .node import NanoNode

__all__ = ["Port", "TaggedOutput", "port_dispatcher"]


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


T = TypeVar("T")


class Port:
    """A named output of a node: ``node["name"] > other`` links that output only.

    Every node has the default port ``"out"``, which is what ``node > other`` uses.

    Example:
        >>> import nanostream
        >>> src = nanostream.from_iterable([1, 2])
        >>> sink = nanostream.testing.Collect()
        >>> src["out"] > sink  # the same as src > sink
        Collect(name=None)
        >>> src.global_start()
        >>> sink.items
        [1, 2]
    """

    __slots__ = ("name", "node")

    def __init__(self, node: NanoNode, name: str) -> None:
        self.node = node
        self.name = name

    def __gt__(self, other: T) -> T:
        self.node._link(self.name, other)
        return other

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"{self.node!r}[{self.name!r}]"
