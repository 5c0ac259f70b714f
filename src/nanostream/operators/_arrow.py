"""Arrow record batches as items: what the operators and the columnar connectors share.

A *batch* item is a ``pyarrow.RecordBatch`` or ``pyarrow.Table`` (or a pandas or polars
``DataFrame``, which the writers turn into Arrow); a *row* is a dict. pyarrow is optional
(``pip install 'nanostream[parquet]'``): nothing here imports it before a node asks for it,
and a node that needs it calls :func:`require_pyarrow` when it is built, so that a missing
package is refused before any thread starts.

Example:
    >>> import pyarrow as pa
    >>> from nanostream.operators._arrow import is_batch, rows_of
    >>> batch = pa.RecordBatch.from_pylist([{"x": 1}, {"x": 2}])
    >>> is_batch(batch), is_batch({"x": 1})
    (True, False)
    >>> rows_of(batch)
    [{'x': 1}, {'x': 2}]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from .._core.errors import GraphError, require

__all__ = [
    "BATCH_FORMATS",
    "arrow_packer",
    "check_batch_format",
    "convert_batch",
    "is_batch",
    "packing_error",
    "parse_schema",
    "require_pyarrow",
    "rows_of",
    "to_arrow",
    "to_table",
]

#: What a reader emits with ``as_batches=True``: ``batch_format`` is one of these.
BATCH_FORMATS = ("arrow", "pandas", "polars")

# The package each batch format needs, and the extra that installs it.
_FORMAT_PACKAGES = {"arrow": ("pyarrow", "parquet"), "pandas": ("pandas", "pandas")}
_FORMAT_PACKAGES["polars"] = ("polars", "polars")

# The classes of batch items, by (top-level module, class name); a class seen once is
# remembered, so telling a row from a batch costs one dict look-up per item.
_BATCH_CLASSES = {
    ("pyarrow", "RecordBatch"),
    ("pyarrow", "Table"),
    ("pandas", "DataFrame"),
    ("polars", "DataFrame"),
}
_seen: dict[type, bool] = {}


def require_pyarrow(extra: str = "parquet") -> Any:
    """The ``pyarrow`` module, or a :class:`~nanostream.MissingDependencyError` naming ``extra``.

    Example:
        >>> from nanostream.operators._arrow import require_pyarrow
        >>> require_pyarrow().__name__
        'pyarrow'
    """
    return require("pyarrow", extra=extra)


def check_batch_format(batch_format: str, node: str, *, as_batches: bool = True) -> None:
    """Refuse a ``batch_format`` that is unknown, or whose package is not installed, or
    that is not ``"arrow"`` on a node that emits rows (``as_batches=False``).

    Example:
        >>> from nanostream.operators._arrow import check_batch_format
        >>> check_batch_format("arrow", "reader")
        >>> try:
        ...     check_batch_format("excel", "reader")
        ... except Exception as exc:
        ...     print(exc)
        reader: batch_format must be one of 'arrow', 'pandas', 'polars', got 'excel'
    """
    if batch_format not in BATCH_FORMATS:
        allowed = ", ".join(repr(f) for f in BATCH_FORMATS)
        raise GraphError(f"{node}: batch_format must be one of {allowed}, got {batch_format!r}")
    package, extra = _FORMAT_PACKAGES[batch_format]
    require(package, extra=extra)
    if batch_format != "arrow" and not as_batches:
        raise GraphError(
            f"{node}: batch_format={batch_format!r} is the type of the batches it emits with "
            "as_batches=True; pass as_batches=True, or leave batch_format out to emit rows "
            "(dicts)"
        )


def convert_batch(batch: Any, batch_format: str) -> Any:
    """The Arrow ``batch`` as ``batch_format`` asks: itself, a pandas or a polars DataFrame.

    Example:
        >>> import pyarrow as pa
        >>> from nanostream.operators._arrow import convert_batch
        >>> batch = pa.RecordBatch.from_pylist([{"x": 1}])
        >>> convert_batch(batch, "arrow") is batch
        True
    """
    if batch_format == "arrow":
        return batch
    if batch_format == "pandas":
        return batch.to_pandas()
    return importlib.import_module("polars").from_arrow(batch)


def _is_batch_class(cls: type) -> bool:
    root = cls.__module__.partition(".")[0]
    return any((root, c.__name__) in _BATCH_CLASSES for c in cls.__mro__ if c is not object)


def is_batch(item: Any) -> bool:
    """True for an Arrow record batch or table, or a pandas or polars ``DataFrame``.

    Example:
        >>> from nanostream.operators._arrow import is_batch
        >>> is_batch([1, 2]), is_batch("text")
        (False, False)
    """
    cls = type(item)
    known = _seen.get(cls)
    if known is None:
        known = _seen[cls] = _is_batch_class(cls)
    return known


def to_arrow(item: Any) -> Any:
    """The batch ``item`` as a ``pyarrow.RecordBatch`` or ``pyarrow.Table``.

    A pandas ``DataFrame`` loses its index (write ``df.reset_index()`` to keep it).

    Example:
        >>> import pyarrow as pa
        >>> from nanostream.operators._arrow import to_arrow
        >>> table = pa.table({"x": [1, 2]})
        >>> to_arrow(table) is table
        True
    """
    root = type(item).__module__.partition(".")[0]
    if root == "pandas":
        pa = require_pyarrow()
        return pa.Table.from_pandas(item, preserve_index=False)
    if root == "polars":
        return item.to_arrow()
    return item


def to_table(item: Any) -> Any:
    """The batch ``item`` as a ``pyarrow.Table`` (a record batch becomes a one-chunk table).

    Example:
        >>> import pyarrow as pa
        >>> from nanostream.operators._arrow import to_table
        >>> to_table(pa.RecordBatch.from_pylist([{"x": 1}])).num_rows
        1
    """
    item = to_arrow(item)
    pa = require_pyarrow()
    if isinstance(item, pa.RecordBatch):
        return pa.Table.from_batches([item])
    return item


def rows_of(item: Any) -> list[dict[str, Any]]:
    """The rows of the batch ``item``, as dicts.

    Example:
        >>> import pyarrow as pa
        >>> from nanostream.operators._arrow import rows_of
        >>> rows_of(pa.table({"x": [1], "y": ["a"]}))
        [{'x': 1, 'y': 'a'}]
    """
    rows: list[dict[str, Any]] = to_arrow(item).to_pylist()
    return rows


def parse_schema(schema: Any, node: str) -> Any:
    """A ``pyarrow.Schema`` from ``schema``: one already, or a mapping of names to types.

    A type is a ``pyarrow.DataType`` or its name as pyarrow spells it (``"int64"``,
    ``"string"``, ``"double"``, ``"bool"``, ``"timestamp[us]"``, ``"date32"``...), so a
    pipeline file can give a schema. ``None`` stays ``None`` (the schema is inferred).

    Example:
        >>> from nanostream.operators._arrow import parse_schema
        >>> parse_schema({"id": "int64", "name": "string"}, "writer")
        id: int64
        name: string
    """
    if schema is None:
        return None
    pa = require_pyarrow()
    if isinstance(schema, pa.Schema):
        return schema
    if not isinstance(schema, Mapping):
        raise GraphError(
            f"{node}: schema must be a pyarrow.Schema or a mapping of column names to types "
            f"(e.g. {{'id': 'int64', 'name': 'string'}}), got {type(schema).__name__}"
        )
    fields = []
    for name, given in schema.items():
        kind = given
        if isinstance(given, str):
            try:
                kind = pa.type_for_alias(given)
            except (ValueError, KeyError):
                raise GraphError(
                    f"{node}: schema gives column {name!r} the type {given!r}, which pyarrow "
                    "does not know; use a pyarrow type name such as 'int64', 'double', "
                    "'string', 'bool', 'timestamp[us]' or 'date32', or a pyarrow.DataType"
                ) from None
        elif not isinstance(kind, pa.DataType):
            raise GraphError(
                f"{node}: schema gives column {name!r} the type {kind!r}; give a pyarrow "
                "type name (e.g. 'int64') or a pyarrow.DataType"
            )
        fields.append(pa.field(str(name), kind))
    return pa.schema(fields)


def arrow_packer(schema: Any, node: Any) -> Callable[[list[Any]], Any]:
    """A function making one ``pyarrow.RecordBatch`` of a list of rows (dicts).

    ``schema`` (a ``pyarrow.Schema``, or None to infer the columns from each list) gives
    the columns; ``node`` (with a ``label``) is named in the :class:`~nanostream.FormatError`
    raised for rows that do not fit.

    Example:
        >>> from nanostream.nodes import Batch
        >>> from nanostream.operators._arrow import arrow_packer, parse_schema
        >>> pack = arrow_packer(parse_schema({"x": "int32"}, "b"), Batch(name="b"))
        >>> pack([{"x": 1}, {"x": 2}]).schema
        x: int32
        >>> try:
        ...     pack([{"x": "one"}])
        ... except ValueError as exc:
        ...     print(exc)
        b: cannot make an Arrow record batch of these 1 items (ArrowInvalid: ...); ...
    """
    pa = require_pyarrow()
    from_pylist = pa.RecordBatch.from_pylist
    arrow_errors = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)

    def pack(rows: list[Any]) -> Any:
        try:
            return from_pylist(rows, schema=schema)
        except (*arrow_errors, AttributeError, TypeError) as exc:
            raise packing_error(node.label, rows, exc, schema is not None) from exc

    return pack


def packing_error(label: str, rows: list[Any], exc: BaseException, typed: bool) -> Exception:
    """The :class:`~nanostream.FormatError` for ``rows`` that do not make an Arrow batch."""
    from ..connectors._fileread import FormatError

    odd = next((r for r in rows if not isinstance(r, Mapping)), None)
    if odd is not None:
        hint = (
            f"the items must be dicts (rows), and one is a {type(odd).__name__}: "
            f"{odd!r:.80}; turn them into dicts first (e.g. with a Map)"
        )
    elif typed:
        hint = "make the values match the schema's types, or change schema="
    else:
        hint = (
            "pass schema={'column': 'type', ...} to give each column its type (a column "
            "whose values are of several types cannot be inferred)"
        )
    message = str(exc).splitlines()[0] if str(exc) else ""
    return FormatError(
        f"{label}: cannot make an Arrow record batch of these {len(rows)} items "
        f"({type(exc).__name__}: {message}); {hint}"
    )
