"""The Ray runner's options and its ``start``: checking a plan and placing it on Ray."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..._core.errors import GraphError
from ..._core.graph import Plan
from ..._core.run import Run
from ._checkpoints import check_checkpoints
from ._errors import RayRunnerError
from ._run import RayRun
from ._session import connect, disconnect, require_ray

__all__ = ["RayNodeOptions", "RayRunner"]

#: The examples of RayRunner need Ray installed; the suite skips them, saying why, where it
#: is not (fnmatch patterns of doctest names; read by the repository's ``conftest.py``).
__doctest_requires__ = {"nanostream.runners.ray._runner.RayRunner*": ("ray",)}


@dataclass(frozen=True)
class RayNodeOptions:
    """How one node is placed on Ray: ``replicas``, routing ``key`` and ``resources``.

    - ``replicas``: run N copies of a (stateless) processing node; each batch goes to one
      copy, round-robin, or by ``key``. Each copy ends after its own end markers.
    - ``key``: ``key(item)`` picks the replica (by a hash that is the same in every
      process), so all items with one key meet in one copy, e.g. for keyed windows.
    - ``resources``: what each copy's actor asks of the cluster: ``num_cpus``,
      ``num_gpus``, ``memory`` (bytes) and any custom resource, e.g. ``{"num_gpus": 1}``.

    A plain dict with these keys is accepted wherever options are.

    Example:
        >>> from nanostream.runners.ray import RayNodeOptions
        >>> opts = RayNodeOptions.of({"replicas": 2, "resources": {"num_cpus": 1, "ssd": 1}})
        >>> opts.replicas, opts.actor_options()
        (2, {'num_cpus': 1, 'resources': {'ssd': 1}})
    """

    replicas: int = 1
    key: Callable[[Any], Any] | None = None
    resources: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.replicas
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise GraphError(f"replicas must be a positive integer, got {r!r}")
        if self.key is not None and not callable(self.key):
            raise GraphError(f"key must be a function of an item, got {self.key!r}")
        for name, amount in dict(self.resources).items():
            if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount < 0:
                raise GraphError(f"resource {name!r} must be a number >= 0, got {amount!r}")

    @classmethod
    def of(cls, value: RayNodeOptions | Mapping[str, Any]) -> RayNodeOptions:
        """``value`` itself, or options made from a dict (unknown keys are a GraphError)."""
        if isinstance(value, RayNodeOptions):
            return value
        if not isinstance(value, Mapping):
            raise GraphError(f"Ray node options must be a dict or RayNodeOptions, got {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise GraphError(
                f"unknown Ray node option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**value)

    def actor_options(self) -> dict[str, Any]:
        """The keyword arguments of Ray's ``.options()`` for this node's actors."""
        result: dict[str, Any] = {}
        custom: dict[str, float] = {}
        for name, amount in dict(self.resources).items():
            if name in ("num_cpus", "CPU"):
                result["num_cpus"] = amount
            elif name in ("num_gpus", "GPU"):
                result["num_gpus"] = amount
            elif name == "memory":
                result["memory"] = amount
            else:
                custom[name] = amount
        if custom:
            result["resources"] = custom
        return result


class RayRunner:
    """Runs each node as a Ray actor (``runner="ray"``, or an instance for options).

    - ``address``: the cluster (``"ray://head:10001"``, ``"auto"``, …); default
      ``RAY_ADDRESS`` or, if unset, a local instance with the machine's cores.
    - ``runtime_env``: Ray's runtime environment for the workers, e.g.
      ``{"working_dir": ".", "pip": ["nanostream[ray]"]}`` so your modules reach them.
    - ``nodes``: per-node :class:`RayNodeOptions` (or dicts), by node name.
    - ``min_batch_size``: batches on Ray are at least this big (default 4096: a Ray call
      costs far more than a queue put), unless ``batch_size`` is set on the node or
      the run. Partial batches still leave after ``linger``.
    - ``max_in_flight``: unfinished batch calls per link (default 2).
    - ``linger``: seconds a partial batch may wait before it is sent (default 0.01).
    - ``sync_state``: copy class nodes' attributes back when they finish (default True).
    - ``start_timeout``: seconds to wait for the actors to be placed (default 120).
    - ``reuse_actors``: after a run that finished cleanly, keep up to 16 idle actors
      (those without resource requests) for the next run of this driver, which then
      starts without new worker processes (default True). Their processes keep modules
      they imported; pass False for fresh processes on every run.

    Example:
        >>> from nanostream.runners.ray import RayRunner
        >>> runner = RayRunner(address="ray://head:10001", runtime_env={"working_dir": "."})
        >>> runner.address, runner.max_in_flight
        ('ray://head:10001', 2)
    """

    name = "ray"
    #: It takes checkpoints into a run's state store (``state=``, see docs/state.md).
    checkpoints = True

    def __init__(
        self,
        *,
        address: str | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        nodes: Mapping[str, RayNodeOptions | Mapping[str, Any]] | None = None,
        min_batch_size: int = 4096,
        max_in_flight: int = 2,
        linger: float = 0.01,
        sync_state: bool = True,
        start_timeout: float = 120.0,
        connect_timeout: float = 10.0,
        reuse_actors: bool = True,
    ) -> None:
        require_ray()
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise GraphError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
        if not isinstance(min_batch_size, int) or min_batch_size < 1:
            raise GraphError(f"min_batch_size must be a positive integer, got {min_batch_size!r}")
        if not linger > 0:
            raise GraphError(f"linger must be a positive number of seconds, got {linger!r}")
        self.address = address if address is not None else os.environ.get("RAY_ADDRESS")
        self.runtime_env = dict(runtime_env) if runtime_env is not None else None
        self.nodes = {name: RayNodeOptions.of(o) for name, o in (nodes or {}).items()}
        self.min_batch_size = min_batch_size
        self.max_in_flight = max_in_flight
        self.linger = linger
        self.sync_state = sync_state
        self.start_timeout = start_timeout
        self.connect_timeout = connect_timeout
        self.reuse_actors = reuse_actors

    #: The keyword options :meth:`with_options` takes (``ray_options`` is ``nodes``).
    option_names = (
        "address",
        "runtime_env",
        "ray_options",
        "min_batch_size",
        "max_in_flight",
        "linger",
        "sync_state",
        "start_timeout",
        "connect_timeout",
        "reuse_actors",
    )

    def with_options(self, **options: Any) -> RayRunner:
        """A copy of this runner with some options changed (``ray_options=`` sets ``nodes``).

        Example:
            >>> from nanostream.runners.ray import RayRunner
            >>> runner = RayRunner().with_options(ray_options={"parse": {"replicas": 2}})
            >>> runner.nodes["parse"].replicas
            2
        """
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            raise GraphError(
                f"unknown Ray runner option(s) {', '.join(unknown)}; "
                f"known: {', '.join(self.option_names)}"
            )
        current = {n: getattr(self, n) for n in self.option_names if n != "ray_options"}
        if "ray_options" in options:
            options["nodes"] = options.pop("ray_options")
        return RayRunner(**{**current, "nodes": self.nodes, **options})

    def start(self, plan: Plan) -> Run:
        """Place ``plan`` on Ray and start it; returns its run handle."""
        options = self._options_for(plan)
        payloads, import_path = self._payloads(plan, options)
        actor_env = connect(self.address, self.runtime_env, self.connect_timeout)
        run: RayRun | None = None
        try:
            run = RayRun(plan, self, options)
            run._launch(payloads, self.runtime_env if actor_env else None, import_path)
        except BaseException:
            if run is not None and run.checkpoints is not None:  # the store it opened
                run.checkpoints.close()
            disconnect()
            raise
        return run

    def _options_for(self, plan: Plan) -> list[RayNodeOptions]:
        names = {pn.name for pn in plan.nodes}
        unknown = sorted(set(self.nodes) - names)
        if unknown:
            raise GraphError(
                f"Ray options for node(s) {', '.join(map(repr, unknown))} that the pipeline "
                f"does not have; its nodes are: {', '.join(pn.name for pn in plan.nodes)}"
            )
        unbounded = "; on Ray, bound memory with queue_size (and batch_size) instead"
        if plan.options.queue_bytes is not None:
            raise GraphError(
                f"the ray runner bounds queues by items only and cannot honour the run "
                f"option queue_bytes={plan.options.queue_bytes}{unbounded}"
            )
        result = []
        for pn in plan.nodes:
            if pn.queue_bytes is not None:
                raise GraphError(
                    f"node {pn.name!r}: the ray runner bounds queues by items only and "
                    f"cannot honour queue_bytes={pn.queue_bytes}{unbounded}"
                )
            opts = self.nodes.get(pn.name, RayNodeOptions())
            if opts.replicas > 1 and pn.is_source:
                raise GraphError(
                    f"node {pn.name!r} is a source; replicas are for processing nodes "
                    "(each replica would emit the whole stream)"
                )
            result.append(opts)
        check_checkpoints(plan, result)
        return result

    def _payloads(
        self, plan: Plan, options: list[RayNodeOptions]
    ) -> tuple[list[bytes], tuple[str, ...]]:
        """Each node pickled; and the driver's import path, with where their code came from."""
        from ._wire import dumps, import_roots

        payloads = []
        modules: set[str] = set()
        for pn in plan.nodes:
            keys = {port: [options[t].key for t in targets] for port, targets in pn.outputs.items()}
            try:
                payloads.append(dumps((pn, keys), modules))
            except Exception as exc:
                raise RayRunnerError(
                    f"node {pn.name!r} cannot be sent to the Ray workers: "
                    f"{type(exc).__name__}: {exc}. On Ray every node runs in another "
                    "process, so the node and everything it refers to must be picklable; "
                    "create unpicklable things (open files, connections, generators) in "
                    "setup() or inside the node function"
                ) from exc
        # e.g. a pipeline file's imports: found next to the file, then off sys.path again
        return payloads, tuple(dict.fromkeys([*sys.path, *import_roots(modules)]))
