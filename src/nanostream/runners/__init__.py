"""Runners execute a checked :class:`~nanostream.Plan`; each runs node functions only.

``get_runner("threads")`` returns the default runner. A runner is any object with a
``start(plan) -> Run`` method; pass one as ``global_start(runner=...)`` to use your own.
"""

from __future__ import annotations

from typing import Any, Protocol

from .._core.errors import GraphError
from .._core.graph import Plan
from .._core.run import Run

__all__ = ["Runner", "available_runners", "get_runner", "register_runner"]


class Runner(Protocol):
    """What a runner provides: a name and ``start(plan)``."""

    name: str

    def start(self, plan: Plan) -> Run:
        """Start the plan's node functions; return the run handle."""
        ...


_FACTORIES: dict[str, str] = {
    "threads": "nanostream.runners.threads:ThreadsRunner",
    "cooperative": "nanostream.runners.cooperative:CooperativeRunner",
    "ray": "nanostream.runners.ray:RayRunner",
}


def register_runner(name: str, path: str) -> None:
    """Make ``global_start(runner=name)`` use the runner class at ``module:Class``.

    Example:
        >>> from nanostream.runners import register_runner, get_runner
        >>> register_runner("mine", "nanostream.runners.threads:ThreadsRunner")
        >>> get_runner("mine").name
        'threads'
    """
    _FACTORIES[name] = path


def get_runner(runner: Any) -> Runner:
    """The runner called ``runner`` (or ``runner`` itself if it is a runner object).

    Example:
        >>> from nanostream.runners import get_runner
        >>> get_runner("threads").name
        'threads'
    """
    if not isinstance(runner, str):
        if not callable(getattr(runner, "start", None)):
            raise GraphError(f"{runner!r} is not a runner: it has no start(plan) method")
        return runner  # type: ignore[no-any-return]
    path = _FACTORIES.get(runner)
    if path is None:
        raise GraphError(
            f"unknown runner {runner!r}; choose one of: {', '.join(sorted(_FACTORIES))}"
        )
    import importlib

    module_name, _, class_name = path.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls()  # type: ignore[no-any-return]


def available_runners() -> list[str]:
    """Names of the runners whose dependencies are installed, default first.

    ``"ray"`` is listed when Ray is installed (this imports it, which takes a moment).

    Example:
        >>> from nanostream.runners import available_runners
        >>> available_runners()[0]
        'threads'
    """
    names = []
    for name in _FACTORIES:
        try:
            get_runner(name)
        except ImportError:
            continue
        names.append(name)
    return names
