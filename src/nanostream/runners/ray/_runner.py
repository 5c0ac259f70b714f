"""The Ray runner: the same pipeline, each node an actor on a Ray cluster (``runner="ray"``).

Needs the ``ray`` extra: ``pip install 'nanostream[ray]'``.

Mapping. Every plan node becomes one Ray actor (``replicas`` actors for a replicated node)
that hosts the node function for its whole life in its own thread, reading a bounded
inbox. Outputs move to downstream actors in batches, sent when full or after a short
linger, with at most ``max_in_flight`` calls in flight per link: a call waits at the
receiver while its inbox is full, so back-pressure holds across processes and machines.
The end of stream is a marker that follows a stream's last batch in order; a node ends
after one marker per upstream instance. The first failure aborts the actors (they are
killed after a short grace) and the run raises :class:`~nanostream.NodeFailed` whose
cause is the remote exception (with its ``__cause__`` chain), its traceback rebuilt from
the remote frames. ``stop()`` drains; ``stats()`` is gathered from the actors. A node
with ``tick_interval`` gets ``TICK`` when its inbox stays empty that long;
``end_outputs()`` sends the end markers at once; ``request_stop()`` reaches the driver.
Sources' acknowledgements (``Acked``) are called in the source's actor once every sink
instance has the items (see :mod:`nanostream.runners._ray_host`).

When a class node ends (finished, failed or aborted), its attributes that can be pickled
are copied back to the driver's node object (``sync_state``), so a sink that keeps what
it received, such as :class:`~nanostream.testing.Collect`, can be read after the run as
with the threads runner; its ``threading.Event`` attributes are mirrored while it runs.
Node *functions* run remotely, so closures over driver variables see copies. What nodes
log on the ``nanostream`` loggers is emitted again on the driver's loggers.

With no ``address`` (and no ``RAY_ADDRESS``), a local Ray instance is started with the
machine's cores and no dashboard, and shut down when the last run using it ends. If Ray is
already initialized in the process, that connection is used and left alone.

Example:
    >>> from nanostream.runners.ray import RayNodeOptions, RayRunner
    >>> runner = RayRunner(nodes={"parse": RayNodeOptions(replicas=4)})
    >>> runner.name, runner.nodes["parse"].replicas
    ('ray', 4)
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any

from .._core.acks import AckRouting
from .._core.errors import GraphError, NanoStreamError
from .._core.graph import Plan, PlanNode
from .._core.run import NodeStats, Run, RunOptions
from ._ray_session import connect, disconnect, give_back, release_actors, require_ray, take_actor

__all__ = [
    "RayNodeOptions",
    "RayRun",
    "RayRunner",
    "RayRunnerError",
    "RemoteError",
    "release_actors",
]

log = logging.getLogger("nanostream")

#: The examples in these docstrings start Ray; the test suite skips them, saying why, where
#: Ray is not installed (fnmatch patterns of doctest names; read by the repository's
#: ``conftest.py``). The other examples here run everywhere.
__doctest_requires__ = {
    "nanostream.runners.ray": ("ray",),
    "nanostream.runners.ray.RayRunner*": ("ray",),
}

# After an abort, actors get this long to end on their own before they are killed.
ABORT_GRACE_S = 1.0
_TICK_S = 0.2
_DEFAULT_BATCH = RunOptions().batch_size


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


# --------------------------------------------------------------------- the runner
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
        current: dict[str, Any] = {
            "address": self.address,
            "runtime_env": self.runtime_env,
            "nodes": self.nodes,
            "min_batch_size": self.min_batch_size,
            "max_in_flight": self.max_in_flight,
            "linger": self.linger,
            "sync_state": self.sync_state,
            "start_timeout": self.start_timeout,
            "connect_timeout": self.connect_timeout,
            "reuse_actors": self.reuse_actors,
        }
        if "ray_options" in options:
            options["nodes"] = options.pop("ray_options")
        return RayRunner(**{**current, **options})

    def start(self, plan: Plan) -> Run:
        """Place ``plan`` on Ray and start it; returns its run handle."""
        options = self._options_for(plan)
        payloads, import_path = self._payloads(plan, options)
        actor_env = connect(self.address, self.runtime_env, self.connect_timeout)
        try:
            run = RayRun(plan, self, options)
            run._launch(payloads, self.runtime_env if actor_env else None, import_path)
        except BaseException:
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
        return result

    def _payloads(
        self, plan: Plan, options: list[RayNodeOptions]
    ) -> tuple[list[bytes], tuple[str, ...]]:
        """Each node pickled; and the driver's import path, with where their code came from."""
        from ._ray_host import dumps, import_roots

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


# --------------------------------------------------------------------- the run
class RayRun(Run):
    """A pipeline running on :class:`RayRunner`; see :class:`~nanostream.Run`.

    Example:
        >>> from nanostream.runners.ray import RayRun
        >>> issubclass(RayRun, __import__("nanostream").Run)
        True
    """

    def __init__(self, plan: Plan, runner: RayRunner, options: list[RayNodeOptions]) -> None:
        super().__init__(plan.name)
        self.plan = plan
        self.runner = runner
        self.options = options
        self.actors: list[list[Any]] = []
        self.aborting = False
        self._abort_at: float | None = None
        self._killed = False
        self._killed_stuck = False
        n = len(plan.nodes)
        self._last: list[list[dict[str, Any] | None]] = [[None] * o.replicas for o in options]
        self._final: list[list[dict[str, Any] | None]] = [[None] * o.replicas for o in options]
        self._watcher = threading.Thread(
            target=self._watch, name=f"nanostream-ray:{plan.name}", daemon=True
        )
        self._done_refs: dict[Any, tuple[int, int]] = {}
        self._poolable: set[int] = set()
        self._event_refs: dict[Any, tuple[int, int]] = {}
        self._ended: set[int] = set()  # actors whose node ended leaving no thread behind
        self.run_id = uuid.uuid4().hex
        self._warned_stall: set[tuple[int, int]] = set()
        self._joined = False
        self._settled = False
        # Instances waiting for the rest of the run (NodeContext.wait_for_run_outcome), and
        # those told that it ended well.
        self._awaiting: set[tuple[int, int]] = set()
        self._released: set[tuple[int, int]] = set()
        self._emitted_all: set[tuple[int, int]] = set()  # sources done but for their acks
        self._reach: AckRouting | None = None
        assert len(options) == n

    # ----------------------------------------------------------------- launching
    def _launch(
        self,
        payloads: list[bytes],
        actor_env: Mapping[str, Any] | None,
        import_path: tuple[str, ...] = (),
    ) -> None:
        import ray

        from ._ray_host import HostSpec, dumps

        plan, runner = self.plan, self.runner
        replicas = [o.replicas for o in self.options]
        self._reach = AckRouting(plan, replicas)
        ack_routing = dumps(self._reach)
        n_streams = [0] * len(plan.nodes)
        for s, _port, t in plan.edges:
            n_streams[t] += replicas[s]
        for opts in self.options:
            actor_opts: dict[str, Any] = {"max_restarts": 0, **opts.actor_options()}
            if actor_env is not None:
                actor_opts["runtime_env"] = dict(actor_env)
            actors = []
            for _ in range(opts.replicas):
                actor, poolable = take_actor(actor_opts, runner.reuse_actors)
                actors.append(actor)
                if poolable:
                    self._poolable.add(id(actor))
            self.actors.append(actors)
        loads: dict[Any, tuple[int, int]] = {}
        driver_node: str | None = None
        if not (runner.address or "").startswith("ray://"):  # (a client is elsewhere)
            try:
                driver_node = ray.get_runtime_context().get_node_id()
            except Exception:  # noqa: BLE001 - unknown: the actors do not guess
                driver_node = None
        sources = {pn.index: self.actors[pn.index][0] for pn in plan.nodes if pn.is_source}
        for pn in plan.nodes:
            ports = dict(pn.outputs)
            ports.setdefault("out", ())
            use_ports = len(ports) > 1 or bool(pn.ports)
            routes = {
                port: [(plan.nodes[t].name, self.actors[t]) for t in targets]
                for port, targets in pn.outputs.items()
            }
            for r, actor in enumerate(self.actors[pn.index]):
                spec = HostSpec(
                    run_id=self.run_id,
                    name=pn.name,
                    index=pn.index,
                    replica=r,
                    payload=payloads[pn.index],
                    is_source=pn.is_source,
                    use_ports=use_ports,
                    queue_size=pn.queue_size,
                    batch_size=self._batch_size(pn),
                    n_streams=n_streams[pn.index],
                    max_in_flight=runner.max_in_flight,
                    linger=runner.linger,
                    sync_state=runner.sync_state and replicas[pn.index] == 1,
                    tick_interval=pn.tick_interval,
                    log_level=logging.getLogger("nanostream").getEffectiveLevel(),
                    driver_node=driver_node,
                    driver_path=import_path,
                    ack_routing=ack_routing,
                )
                loads[actor.load.remote(spec, routes, sources)] = (pn.index, r)
        try:
            self._check_loaded(loads)
            ray.get([a.start.remote() for actors in self.actors for a in actors])
        except BaseException:
            self._kill_actors()
            raise
        for i, actors in enumerate(self.actors):
            for r, actor in enumerate(actors):
                self._done_refs[actor.wait_done.remote()] = (i, r)
                self._event_refs[actor.events.remote(self.run_id, [])] = (i, r)
        self._watcher.start()

    def _batch_size(self, pn: PlanNode) -> int:
        if "batch_size" in pn.options or self.plan.options.batch_size != _DEFAULT_BATCH:
            return pn.batch_size
        return max(pn.batch_size, self.runner.min_batch_size)

    def _check_loaded(self, loads: dict[Any, tuple[int, int]]) -> None:
        import ray

        ready, waiting = ray.wait(
            list(loads), num_returns=len(loads), timeout=self.runner.start_timeout
        )
        if waiting:
            names = sorted({self.plan.nodes[loads[ref][0]].name for ref in waiting})
            asks = {n: self.options[self.plan.node(n).index].actor_options() for n in names}
            raise RayRunnerError(
                f"the actors of node(s) {', '.join(names)} were not placed within "
                f"{self.runner.start_timeout}s; the cluster may not have the resources they "
                f"ask for ({asks}); see 'ray status'"
            )
        for ref in ready:
            i, _r = loads[ref]
            name = self.plan.nodes[i].name
            try:
                error, _events = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise RayRunnerError(
                    f"the Ray actor for node {name!r} could not be created: {exc}. Is "
                    "nanostream installed on the workers? (e.g. runtime_env="
                    "{'pip': ['nanostream[ray]']})"
                ) from exc
            if error is not None:
                raise RayRunnerError(
                    f"node {name!r} cannot be loaded on the Ray workers: {error}. Workers "
                    "import your node classes and functions by module name: ship your code "
                    "with RayRunner(runtime_env={'working_dir': '.'}) (or 'py_modules'), or "
                    "install it on every machine of the cluster"
                )

    # ----------------------------------------------------------------- watching
    def _watch(self) -> None:
        import ray

        opts = self.plan.options
        next_check = time.monotonic() + opts.monitor_interval
        next_log = time.monotonic() + opts.log_interval
        try:
            while self._done_refs:
                refs = [*self._done_refs, *self._event_refs]
                ready, _ = ray.wait(refs, num_returns=1, timeout=_TICK_S)
                for ref in ready:
                    if ref in self._event_refs:
                        self._mirror_events(ref, *self._event_refs.pop(ref))
                    else:
                        self._collect(ref, *self._done_refs.pop(ref))
                self._settle_sources()
                self._release_awaiting()
                now = time.monotonic()
                if self._abort_at is not None:
                    if not self._killed_stuck and now - self._abort_at >= ABORT_GRACE_S:
                        self._kill_stuck()
                    continue
                if now >= next_check:
                    next_check = now + opts.monitor_interval
                    self._check(now >= next_log)
                    if now >= next_log:
                        next_log = now + opts.log_interval
            self._last_events()
        except Exception as exc:  # pragma: no cover - the watcher must end the run
            log.exception("nanostream Ray watcher failed")
            self._fail(self.plan.name, exc)
        finally:
            self._kill_actors(keep_idle=True)
            disconnect()
            self._finish()

    def _collect(self, ref: Any, i: int, r: int) -> None:
        import ray

        from ._ray_host import emit_logs, loads

        name = self.plan.nodes[i].name
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayError as exc:
            last = dict(self._last[i][r] or _EMPTY)
            last["state"] = "aborted" if self.aborting else "failed"
            self._final[i][r] = last
            if not self.aborting:
                self._fail(name, RayRunnerError(f"the Ray actor of node {name!r} died: {exc}"))
            return
        if outcome.get("node_state") is not None:  # before stats() says it has ended
            try:
                self.plan.nodes[i].restore_state(loads(outcome["node_state"]))
            except Exception as exc:  # noqa: BLE001 - the run itself is fine
                log.warning("could not copy the state of node %r back: %s", name, exc)
        self._final[i][r] = outcome["stats"]
        if outcome.get("clean"):  # its node ended (even failed) and left no thread behind
            self._ended.add(id(self.actors[i][r]))
        emit_logs(outcome.get("logs", ()))
        if outcome["state"] == "failed":
            self._fail(name, _rebuild(name, outcome))

    def _settle_sources(self) -> None:
        """Once only sources are left, no acknowledgement marker can come back to them:
        those that wait for their acks end (their unacknowledged items are redelivered)."""
        if self._settled or not all(
            self.plan.nodes[i].is_source for i, _ in self._done_refs.values()
        ):
            return
        self._settled = True
        for i, r in self._done_refs.values():
            self.actors[i][r].settle.remote(self.run_id)

    def _release_awaiting(self) -> None:
        """Tell the instances waiting for the rest of the run that it ended well, once
        every node has ended but the waiting ones and those downstream of them (as the
        threads runner's ``wait_for_outcome``). A failure aborts them instead."""
        waiting = self._awaiting - self._released
        if not waiting or self.aborting or self._reach is None:
            return
        reach = self._reach.reach
        spared = set().union(*(reach(i) for i, _ in self._awaiting))
        # A source that emitted everything counts as ended: its acks may wait for a writer.
        if not all(
            i in spared
            or all(f is not None or (i, r) in self._emitted_all for r, f in enumerate(final))
            for i, final in enumerate(self._final)
        ):
            return
        for i, r in sorted(waiting):
            self.actors[i][r].run_outcome.remote(self.run_id)
        self._released |= waiting

    def _mirror_events(self, ref: Any, i: int, r: int) -> None:
        """Set the driver's copies of a node's events that were set remotely, and emit
        the node's log records on the driver's loggers; then ask again."""
        import ray

        from ._ray_host import emit_logs

        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError:
            return
        names = answer["events"]
        pn = self.plan.nodes[i]
        for name in names:
            pn.set_event(name)
        emit_logs(answer["logs"])
        if answer["stop"]:  # the node asked its run to stop
            self.request_stop()
        if answer.get("awaiting"):  # it waits for the rest of the run to end well
            self._awaiting.add((i, r))
        if answer.get("emitted_all"):  # a source that only waits for its acks now
            self._emitted_all.add((i, r))
        if not answer["ended"] and self._final[i][r] is None:
            self._event_refs[self.actors[i][r].events.remote(self.run_id, names)] = (i, r)

    def _last_events(self) -> None:
        """After the last node ended: the answers to ``events`` calls still on the way."""
        import ray

        if not self._event_refs:
            return
        try:
            ready, _ = ray.wait(
                list(self._event_refs), num_returns=len(self._event_refs), timeout=_TICK_S
            )
        except Exception:  # noqa: BLE001 - Ray is going away
            return
        for ref in ready:
            self._mirror_events(ref, *self._event_refs.pop(ref))

    def _live_stats(self, timeout: float) -> None:
        import ray

        if not ray.is_initialized():  # Ray was shut down under a run: the last figures
            return
        refs, where = [], []
        for i, actors in enumerate(self.actors):
            for r, actor in enumerate(actors):
                if self._final[i][r] is None:
                    refs.append(actor.stats.remote())
                    where.append((i, r))
        if not refs:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        ready_set = set(ready)
        for ref, (i, r) in zip(refs, where, strict=True):
            if ref in ready_set:
                try:
                    self._last[i][r] = ray.get(ref)
                except ray.exceptions.RayError:
                    continue

    def _check(self, log_counts: bool) -> None:
        opts = self.plan.options
        self._live_stats(timeout=min(5.0, opts.monitor_interval))
        for pn in self.plan.nodes:
            for r, last in enumerate(self._last[pn.index]):
                waiting = last["output_waiting_s"] if last else 0.0
                if waiting >= opts.stall_timeout and (pn.index, r) not in self._warned_stall:
                    self._warned_stall.add((pn.index, r))
                    stats = self.stats(live=False)
                    full = [
                        f"{n} ({stats[n].queue_depth}/{stats[n].queue_capacity})"
                        for n in self.downstream_names(pn.index)
                    ]
                    log.warning(
                        "node %r has waited %.1fs for room downstream; bottleneck: %s",
                        pn.name,
                        waiting,
                        ", ".join(full),
                    )
                elif waiting == 0.0:
                    self._warned_stall.discard((pn.index, r))
        if log_counts:
            parts = [
                f"{s.name}: in={s.items_in} out={s.items_out} q={s.queue_depth}/{s.queue_capacity}"
                for s in self.stats(live=False).values()
            ]
            log.info("pipeline %r: %s", self.name, "; ".join(parts))

    def downstream_names(self, index: int) -> list[str]:
        """Names of the nodes fed by node ``index``."""
        pn = self.plan.nodes[index]
        return [self.plan.nodes[t].name for ts in pn.outputs.values() for t in ts]

    def _kill_stuck(self) -> None:
        """After an abort's grace period: kill the actors whose node has not ended."""
        import ray

        self._killed_stuck = True
        for i, r in list(self._done_refs.values()):
            name = self.plan.nodes[i].name
            log.warning("node %r did not end after the abort: killing its actor", name)
            try:
                ray.kill(self.actors[i][r], no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _kill_actors(self, keep_idle: bool = False) -> None:
        """Kill the run's actors; with ``keep_idle``, those whose node ended cleanly (and
        that ask for no resources) go back to the pool instead."""
        import ray

        if self._killed:
            return
        self._killed = True
        actors = [a for per_node in self.actors for a in per_node]
        if keep_idle:
            idle = {id(a) for a in actors if id(a) in self._poolable and id(a) in self._ended}
            spare = give_back([a for a in actors if id(a) in idle])
            actors = [a for a in actors if id(a) not in idle] + spare
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    # ----------------------------------------------------------------- Run contract
    def stats(self, live: bool = True) -> dict[str, NodeStats]:
        """Per-node figures, gathered from the actors (summed over replicas)."""
        if live and not self.done and not self.aborting:
            self._live_stats(timeout=5.0)
        result = {}
        for pn in self.plan.nodes:
            parts = []
            for r in range(self.options[pn.index].replicas):
                part = self._final[pn.index][r] or self._last[pn.index][r]
                if part is None:
                    part = dict(_EMPTY, state="running" if not self.done else "aborted")
                parts.append(part)
            result[pn.name] = _aggregate(pn.name, parts)
        return result

    def _on_stop(self) -> None:
        for pn in self.plan.nodes:
            for actor in self.actors[pn.index]:
                actor.stop.remote(self.run_id, pn.is_source)

    def _on_abort(self) -> None:
        if self.aborting:
            return
        self.aborting = True
        self._abort_at = time.monotonic()
        for actors in self.actors:
            for actor in actors:
                actor.abort.remote(self.run_id)

    def _join(self) -> None:
        if self._joined:
            return
        if self._watcher is not threading.current_thread() and self._watcher.ident is not None:
            self._watcher.join()
        self._joined = True


_EMPTY: dict[str, Any] = {
    "state": "created",
    "items_in": 0,
    "items_out": 0,
    "errors": 0,
    "queue_depth": 0,
    "queue_capacity": 0,
    "blocked_input_s": 0.0,
    "blocked_output_s": 0.0,
    "output_waiting_s": 0.0,
}


def _aggregate(name: str, parts: list[dict[str, Any]]) -> NodeStats:
    states = {p["state"] for p in parts}
    state: Any = next(
        (s for s in ("failed", "running", "aborted", "created") if s in states), "finished"
    )
    return NodeStats(
        name=name,
        state=state,
        items_in=sum(p["items_in"] for p in parts),
        items_out=sum(p["items_out"] for p in parts),
        errors=sum(p["errors"] for p in parts),
        queue_depth=sum(p["queue_depth"] for p in parts),
        queue_capacity=sum(p["queue_capacity"] for p in parts),
        blocked_input_s=sum(p["blocked_input_s"] for p in parts),
        blocked_output_s=sum(p["blocked_output_s"] for p in parts),
    )


def _rebuild(name: str, outcome: dict[str, Any]) -> BaseException:
    """The remote exception (or a :class:`RemoteError`) with the remote traceback.

    The traceback is rebuilt from the remote frames (file, line, function), so it prints
    like a local one; its full text, chained exceptions included, is ``remote_traceback``.
    """
    from ._ray_host import loads

    text = outcome["traceback"]
    exc: BaseException | None = None
    if outcome.get("exception") is not None:
        try:
            exc = loads(outcome["exception"])
        except Exception:  # noqa: BLE001 - the class is not importable here
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(outcome["type"], outcome["message"], text)
    else:
        try:
            exc.remote_traceback = text  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - exceptions with __slots__
            pass
    tb = _traceback_of(outcome.get("frames", []))
    if tb is not None:
        exc = exc.with_traceback(tb)
    else:
        exc.add_note(f"remote traceback (node {name!r}, on Ray):\n{text.rstrip()}")
    return exc


class _Here(Exception):
    pass


def _traceback_of(frames: list[Any]) -> TracebackType | None:
    """A traceback whose frames carry the remote file names, lines and function names.

    Each frame is made by running a ``raise`` compiled at the remote file and line (and,
    when known, spanning the remote failing expression's columns).
    """
    tb: TracebackType | None = None
    try:
        for filename, lineno, function, span in reversed(frames):
            name, statement, first = "_Here", "raise _Here", lineno
            if span is not None and span[1] - span[0] > len("raise _") and lineno > 1:
                name = "_" * (span[1] - span[0] - len("raise "))
                # an indented line must follow a block opener: "if 1:" on the line above
                statement = "if 1:\n" + " " * span[0] + "raise " + name
                first = lineno - 1
            source = "\n" * (max(1, first) - 1) + statement
            code = compile(source, filename, "exec")
            code = code.replace(co_name=function, co_qualname=function)
            try:
                exec(code, {name: _Here, "__name__": "nanostream.remote"})
            except _Here as here:
                own = here.__traceback__
                assert own is not None and own.tb_next is not None
                made = own.tb_next
            tb = TracebackType(tb, made.tb_frame, made.tb_lasti, made.tb_lineno)
    except Exception:  # noqa: BLE001 - fall back to the text
        return None
    return tb
