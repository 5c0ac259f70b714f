from collections.abc import Callable, Iterable
from typing import Any, TypeVar

_T = TypeVar("_T", bound=tuple[Any, ...])

class CheckedOutp:
    buf: list[Any]
    limit: list[int]
    flush: Callable[[], object]
    extend: Any
    def __init__(self, buf: list[Any], limit: list[int], flush: Callable[[], object]) -> None: ...
    def __call__(self, item: Any, /) -> None: ...

def drive(
    inp: Iterable[Any], process: Callable[[Any], Iterable[Any]], outp: Callable[[Any], Any], /
) -> None: ...
def drive_source(
    items: Iterable[Any],
    outp: Callable[[Any], Any],
    special_type: type,
    special: Callable[[Any], Any],
    /,
) -> None: ...
def drive_acked(
    items: Iterable[Any],
    outp: Callable[[Any], Any],
    acked_type: type,
    first_ack: Callable[[], Callable[[Any], Any]],
    bufs: list[list[Any]],
    mark: Callable[[], Any],
    /,
) -> None: ...
def typed_rows(
    items: list[Any],
    cls: type[tuple[Any, ...]],
    fields: tuple[int, ...],
    types: tuple[type, ...],
    /,
) -> bool: ...
def call_rows(
    cls: type[_T],
    objs: list[Any],
    fields: tuple[tuple[int, Any], ...],
    lasting: bool = False,
    /,
) -> list[_T]: ...
