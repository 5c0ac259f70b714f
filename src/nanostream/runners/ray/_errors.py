"""The Ray runner's errors (part of the one tree under :class:`~nanostream.NanoStreamError`)."""

from __future__ import annotations

from ..._core.errors import NanoStreamError

__all__ = ["RayRunnerError", "RemoteError"]

# RayRunnerError's example starts a Ray run: it needs Ray (the root conftest.py skips it).
__doctest_requires__ = {"nanostream.runners.ray._errors.RayRunnerError": ("ray",)}


class RayRunnerError(NanoStreamError):
    """The Ray runner could not start a pipeline: no cluster, code not importable, ….

    Example:
        >>> import nanostream
        >>> from nanostream.runners.ray import RayRunnerError
        >>> src = nanostream.from_iterable(x for x in range(3))  # a generator cannot travel
        >>> try:
        ...     src.global_start(runner="ray")
        ... except RayRunnerError as exc:
        ...     print(str(exc).split(":")[0])
        node 'from_iterable' cannot be sent to the Ray workers
    """


class RemoteError(NanoStreamError):
    """Stands for a remote exception that could not be brought back to the driver as is.

    ``type_name`` is the remote exception's class, ``remote_traceback`` its traceback.

    Example:
        >>> from nanostream.runners.ray import RemoteError
        >>> err = RemoteError("mylib.Oops", "it broke", "Traceback ...")
        >>> str(err), err.type_name
        ('mylib.Oops: it broke', 'mylib.Oops')
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.remote_traceback = remote_traceback
