"""State that survives a restart: a run's state store and what it holds (docs/state.md).

A run started with ``state=PATH`` (``global_start(state="run.state")``, or
``nanostream run FILE --state run.state``) takes checkpoints into the store at ``PATH``
and, when restarted, gives every node that keeps state what the last checkpoint stored
for it. :func:`describe` lists what a store holds (``nanostream state show PATH``).

Example:
    >>> import os, tempfile
    >>> from nanostream.state import describe, encode_state, open_store
    >>> path = os.path.join(tempfile.mkdtemp(), "run.state")
    >>> store = open_store(path)
    >>> store.commit(2, "demo", {"total": ("m.Total", encode_state(42))})
    >>> store.close()
    >>> print(describe(path))  # doctest: +ELLIPSIS
    checkpoint 2 of pipeline 'demo', taken ...
    node   kind     bytes  state
    total  m.Total  ...    42
"""

from __future__ import annotations

import datetime
import os

from .store import Checkpoint, StateStore, encode_state, open_store

__all__ = ["Checkpoint", "StateStore", "describe", "encode_state", "open_store"]

_PREVIEW = 60


def describe(spec: str | os.PathLike[str]) -> str:
    """What the state store at ``spec`` holds, as a small table (one line per node).

    Example:
        >>> import os, tempfile
        >>> print(describe(os.path.join(tempfile.mkdtemp(), "empty.state")))
        no checkpoint committed yet
    """
    store = open_store(spec)
    try:
        checkpoint = store.load()
    finally:
        store.close()
    if checkpoint is None:
        return "no checkpoint committed yet"
    when = datetime.datetime.fromtimestamp(checkpoint.taken_at, datetime.UTC)
    rows = [("node", "kind", "bytes", "state")]
    for name, (kind, state) in sorted(checkpoint.states.items()):
        preview = repr(state)
        if len(preview) > _PREVIEW:
            preview = preview[: _PREVIEW - 3] + "..."
        rows.append((name, kind, str(len(encode_state(state))), preview))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"checkpoint {checkpoint.epoch} of pipeline {checkpoint.pipeline!r}, taken "
        f"{when:%Y-%m-%d %H:%M:%S} UTC"
    ]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3]
        )
    return "\n".join(line.rstrip() for line in lines)
