"""The options every node takes besides its name, and their one check (``configure()`` and
pipeline files use it)."""

from __future__ import annotations

from typing import Any

from .policy import POLICY_OPTIONS, check_policy_option
from .run import QUEUE_OPTIONS, check_queue_option
from .ticks import check_tick_interval

__all__ = ["NODE_OPTIONS", "check_node_option"]

NODE_OPTIONS = (*QUEUE_OPTIONS, *POLICY_OPTIONS, "holds_items", "tick_interval")
"""Every option ``NanoNode.configure()`` takes besides ``name`` (pipeline files use the same)."""


def check_node_option(key: str, value: Any) -> str | None:
    """An error message if ``value`` is not valid for node option ``key``, else None.

    For configuration readers, which report every problem with its place in the file.

    Example:
        >>> from nanostream._core.options import check_node_option
        >>> check_node_option("batch_size", 0)
        'batch_size must be a positive integer, got 0'
        >>> check_node_option("on_error", "skip") is None
        True
    """
    if key in QUEUE_OPTIONS:
        return check_queue_option(key, value)
    if key == "holds_items":
        ok = isinstance(value, bool)
        return None if ok else f"holds_items must be true or false, got {value!r}"
    if key == "tick_interval":
        return check_tick_interval(value)
    if key in POLICY_OPTIONS:
        return check_policy_option(key, value)
    return f"unknown node option {key!r}; node options: name, {', '.join(NODE_OPTIONS)}"
