"""Runners execute a checked :class:`~nanostream.Plan`; each runs node functions only.

``get_runner("threads")`` returns the default runner. A runner is any object with a
``start(plan) -> Run`` method; pass one as ``global_start(runner=...)`` to use your own.
"""

from __future__ import annotations

from .._core import registry
from .._core.registry import Runner, get_runner, register_runner, unregister_runner

__all__ = ["Runner", "available_runners", "get_runner", "register_runner", "unregister_runner"]

# The built-in runners, by name; each is imported when first asked for (so naming "ray"
# does not import Ray). Other packages add theirs with register_runner() or through the
# "nanostream.runners" entry-point group (see nanostream._core.registry).
register_runner("threads", "nanostream.runners.threads:ThreadsRunner")
register_runner("cooperative", "nanostream.runners.cooperative:CooperativeRunner")
register_runner("ray", "nanostream.runners.ray:RayRunner")
# What a composite's node function runs its inner nodes with.
registry.provide("run_inline", "nanostream.runners.cooperative:run_inline")


def available_runners() -> list[str]:
    """Names of the runners whose dependencies are installed, default first.

    ``"ray"`` is listed when Ray is installed (this imports it, which takes a moment).

    Example:
        >>> from nanostream.runners import available_runners
        >>> available_runners()[0]
        'threads'
    """
    names = []
    for name in registry.runner_names():
        try:
            get_runner(name)
        except ImportError:
            continue
        names.append(name)
    return names
