"""The options every node takes besides its name, and their one check (``configure()`` and
pipeline files use it)."""

from __future__ import annotations

from typing import Any

from .policy import POLICY_OPTIONS, check_policy_option
from .run import QUEUE_OPTIONS, check_queue_option
from .ticks import check_tick_interval

__all__ = ["NODE_OPTIONS", "check_node_option", "own_option_refusal"]

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


def own_option_refusal(node: Any, key: str, value: Any) -> str | None:
    """Why ``node`` refuses ``key=value`` for a node option it implements itself (see
    ``NanoNode.own_options``), or None: a ``backoff`` above the node's ``max_backoff``.

    Example:
        >>> from types import SimpleNamespace
        >>> from nanostream._core.options import own_option_refusal
        >>> print(own_option_refusal(SimpleNamespace(max_backoff=1.0), "backoff", 2.0))
        backoff (2.0) is above max_backoff (1.0); give backoff <= max_backoff, or make the
        node with a larger max_backoff
    """
    ceiling = getattr(node, "max_backoff", None)
    if key == "backoff" and isinstance(ceiling, int | float) and value > ceiling:
        return (
            f"backoff ({value}) is above max_backoff ({ceiling}); give backoff <= "
            "max_backoff, or make the node with a larger max_backoff"
        )
    return None
