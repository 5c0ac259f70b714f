"""What ``_core`` needs from the layers above it, filled by those layers.

``_core`` is the contract and the model; it imports nothing of nanostream outside itself.
Three things it needs are built above it, so the upper layers register them here when
``nanostream`` is imported:

- **runners by name** (``global_start(runner="threads")``): the built-in runners register
  themselves in :mod:`nanostream.runners`; a third-party package adds one by declaring it
  in the ``nanostream.runners`` entry-point group, which is read only when a name is not
  known yet::

      [project.entry-points."nanostream.runners"]
      mine = "my_package.runner:MyRunner"

- **the observer** behind ``global_start(progress=True)`` and ``metrics_port=``
  (:func:`nanostream.observe.attach`);
- **the inline executor** that runs a composite's inner nodes inside one node function
  (:func:`nanostream.runners.cooperative.run_inline`).

A registered target is an object or a ``"module:attribute"`` path, imported on first use
(so naming a runner does not import its dependencies).

Example:
    >>> from nanostream._core import registry
    >>> registry.register_runner("mine", "nanostream.runners.threads:ThreadsRunner")
    >>> registry.get_runner("mine").name
    'threads'
    >>> registry.unregister_runner("mine")
    >>> registry.get_runner("no-such-runner")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nanostream._core.errors.GraphError: unknown runner 'no-such-runner'; choose one of: ...
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .errors import GraphError

if TYPE_CHECKING:
    from .graph import Plan
    from .run import Run

__all__ = [
    "RUNNER_ENTRY_POINT_GROUP",
    "Runner",
    "get_runner",
    "hook",
    "provide",
    "register_runner",
    "runner_names",
    "unregister_runner",
]

#: The entry-point group a package declares its runners in (``name = "module:Class"``).
RUNNER_ENTRY_POINT_GROUP = "nanostream.runners"


class Runner(Protocol):
    """What a runner provides: a name and ``start(plan)`` (see docs/design.md)."""

    name: str

    def start(self, plan: Plan) -> Run:
        """Start the plan's node functions; return the run handle."""
        ...


_lock = threading.Lock()
_runners: dict[str, str | Any] = {}
_hooks: dict[str, str | Any] = {}


def _resolve(target: str | Any) -> Any:
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def register_runner(name: str, runner: str | Any) -> None:
    """Make ``global_start(runner=name)`` use ``runner``: a class, or ``"module:Class"``.

    Example:
        >>> from nanostream._core.registry import register_runner, runner_names
        >>> register_runner("mine", "nanostream.runners.threads:ThreadsRunner")
        >>> "mine" in runner_names()
        True
        >>> from nanostream._core.registry import unregister_runner
        >>> unregister_runner("mine")
    """
    with _lock:
        _runners[name] = runner


def unregister_runner(name: str) -> None:
    """Forget the runner registered as ``name`` (nothing happens if there is none).

    Example:
        >>> from nanostream._core.registry import register_runner, runner_names
        >>> register_runner("scratch", "nanostream.runners.threads:ThreadsRunner")
        >>> unregister_runner("scratch")
        >>> "scratch" in runner_names()
        False
    """
    with _lock:
        _runners.pop(name, None)


def _from_entry_points(name: str) -> str | None:
    """The ``"module:Class"`` an installed package declares as runner ``name``, if any."""
    for ep in importlib.metadata.entry_points(group=RUNNER_ENTRY_POINT_GROUP, name=name):
        with _lock:
            _runners.setdefault(name, ep.value)
        return ep.value
    return None


def runner_names() -> list[str]:
    """The runner names registered so far (entry points are read only for unknown names).

    Example:
        >>> from nanostream._core.registry import runner_names
        >>> runner_names()[:2]
        ['threads', 'cooperative']
    """
    with _lock:
        return list(_runners)


def get_runner(runner: Any) -> Runner:
    """The runner called ``runner`` (a new instance), or ``runner`` itself if it is one.

    An unknown name is looked up in the ``nanostream.runners`` entry points first.

    Example:
        >>> from nanostream._core.registry import get_runner
        >>> get_runner("cooperative").name
        'cooperative'
    """
    if not isinstance(runner, str):
        if not callable(getattr(runner, "start", None)):
            raise GraphError(f"{runner!r} is not a runner: it has no start(plan) method")
        return runner  # type: ignore[no-any-return]
    target = _runners.get(runner)
    if target is None:
        target = _from_entry_points(runner)
    if target is None:
        raise GraphError(
            f"unknown runner {runner!r}; choose one of: {', '.join(sorted(_runners))} (or "
            f"install a package that declares it in the {RUNNER_ENTRY_POINT_GROUP!r} "
            "entry-point group)"
        )
    return _resolve(target)()  # type: ignore[no-any-return]


def provide(name: str, target: str | Any) -> None:
    """Register what ``_core`` calls ``name``: an object, or ``"module:attribute"``.

    The names ``_core`` asks for are ``"observe"`` (``attach(run, *, progress,
    metrics_port, metrics_host, plan, ui, ui_host, otel)``) and ``"run_inline"``
    (``run_inline(plan, inp, outp)``).

    Example:
        >>> from nanostream._core.registry import hook, provide
        >>> provide("example", "math:sqrt")
        >>> hook("example")(9.0)
        3.0
    """
    with _lock:
        _hooks[name] = target


def hook(name: str) -> Any:
    """What the layers above registered as ``name`` (see :func:`provide`).

    Example:
        >>> from nanostream._core.registry import hook
        >>> hook("run_inline").__name__
        'run_inline'
    """
    target = _hooks.get(name)
    if target is None:
        raise GraphError(
            f"nothing provides {name!r} to nanostream's core; import nanostream (the "
            "package registers its runners, observer and inline executor when imported)"
        )
    return _resolve(target)
