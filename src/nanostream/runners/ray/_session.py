"""The Ray session of the Ray runner: connecting, sharing it between runs, idle actors.

Runs of one driver share one Ray session. A run that finds none starts a local instance
(or connects to ``address``) and the last run using it shuts it down; a session that was
already there is used and left alone. Actors whose node ended cleanly go to a small pool
for the next run, which then starts without new processes.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

from ..._core.errors import MissingDependencyError
from ._errors import RayRunnerError

__all__ = ["connect", "disconnect", "give_back", "release_actors", "take_actor"]


_session_lock = threading.Lock()
_session_users = 0
_session_owned = False


def require_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        raise MissingDependencyError("ray", extra="ray")


def _probe(address: str, timeout: float) -> None:
    """Fail fast, with a clear message, when a cluster address does not answer."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayRunnerError(
            f"cannot reach the Ray cluster at {address!r}: {exc}. Check that the cluster "
            "is running ('ray status' on its head node) and that the address is right: "
            "'ray://HEAD:10001' from outside the cluster, 'HEAD:6379' or 'auto' from a "
            "machine of the cluster"
        ) from None


def connect(address: str | None, runtime_env: Mapping[str, Any] | None, timeout: float) -> bool:
    """Join or start a Ray session; True when ``runtime_env`` must be given to each actor."""
    global _session_users, _session_owned
    import ray

    if address and address not in ("local", "auto"):
        _probe(address, timeout)
    with _session_lock:
        if ray.is_initialized():
            _session_users += 1
            return runtime_env is not None
        kwargs: dict[str, Any] = {"include_dashboard": False}
        if runtime_env is not None:
            kwargs["runtime_env"] = dict(runtime_env)
        if address and address != "local":
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = os.cpu_count() or 1
            kwargs["address"] = "local"
        where = repr(address) if address and address != "local" else "a new local instance"
        try:
            ray.init(**kwargs)
        except Exception as exc:
            raise RayRunnerError(
                f"cannot start Ray ({where}): {type(exc).__name__}: {exc}"
            ) from exc
        _session_users += 1
        _session_owned = True
        return False


def disconnect() -> None:
    """One run is done with the session; shut it down if we started it and it is unused."""
    global _session_users, _session_owned
    import ray

    with _session_lock:
        _session_users = max(0, _session_users - 1)
        if _session_users == 0 and _session_owned:
            _session_owned = False
            with _pool_lock:
                _pool.clear()
            ray.shutdown()


# Idle actors kept for the next run of this driver (see RayRunner's reuse_actors).
_pool_lock = threading.Lock()
_pool: list[Any] = []
_pool_token: Any = None
_POOL_MAX = 16


def _session_token() -> Any:
    """Names the Ray session (idle actors of another one are never used); None if unknown."""
    import ray

    if not ray.is_initialized():  # (asking for the context would start Ray)
        return None
    try:
        ctx = ray.get_runtime_context()
        return (ctx.get_job_id(), ctx.get_node_id())
    except Exception:  # noqa: BLE001 - not connected, or a client without these
        return None


def take_actor(actor_opts: dict[str, Any], reuse: bool) -> tuple[Any, bool]:
    """An actor for one node instance (an idle one when allowed); True if poolable."""
    global _pool_token
    poolable = reuse and set(actor_opts) <= {"max_restarts"}
    if poolable:
        with _pool_lock:
            token = _session_token()
            if token != _pool_token:
                _pool.clear()
                _pool_token = token
            if token is None:
                poolable = False
            elif _pool:
                return _pool.pop(), True
    return _host_actor_class().options(**actor_opts).remote(), poolable


def give_back(actors: list[Any]) -> list[Any]:
    """Keep up to ``_POOL_MAX`` idle actors for later runs; returns those not kept."""
    with _pool_lock:
        token = _session_token()
        if token is None or token != _pool_token:
            return actors
        room = max(0, _POOL_MAX - len(_pool))
        _pool.extend(actors[:room])
        return actors[room:]


def release_actors() -> int:
    """Kill the idle actors kept for reuse (see ``RayRunner(reuse_actors=...)``).

    Returns how many there were. Runs whose local Ray instance nanostream started do this
    when they shut Ray down; call it yourself to free the processes of a session you own.

    Example:
        >>> from nanostream.runners.ray import release_actors
        >>> release_actors() >= 0
        True
    """
    with _pool_lock:
        idle = list(_pool)
        _pool.clear()
    if idle:
        import ray

        for actor in idle:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
    return len(idle)


_host_class: Any = None


def _host_actor_class() -> Any:
    global _host_class
    if _host_class is None:
        import ray

        from ._actor import NodeHost

        _host_class = ray.remote(NodeHost)
    return _host_class
