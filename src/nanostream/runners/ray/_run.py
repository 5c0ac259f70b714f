"""A run on Ray, as the driver sees it: launching the actors, watching them, the outcome.

The driver starts one actor per node instance (:mod:`._actor`), then one thread watches
the run: it collects each node's end (its figures, its state copied back, its failure
rebuilt with the remote traceback), mirrors the nodes' events and log records, acts on
what the nodes tell it (stop the run, release those waiting for the rest of the run,
settle the sources' acknowledgements) and logs stalls and counts as the monitor does.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..._core.acks import AckRouting
from ..._core.graph import Plan, PlanNode
from ..._core.monitor import Monitor
from ..._core.run import NodeCounters, NodeStats, Run, RunOptions, downstream_names
from ._errors import RayRunnerError
from ._session import disconnect, give_back, take_actor

if TYPE_CHECKING:
    from ._checkpoints import DriverCheckpoints
    from ._runner import RayNodeOptions, RayRunner

__all__ = ["RayRun"]

log = logging.getLogger("nanostream")

# After an abort, actors get this long to end on their own before they are killed.
ABORT_GRACE_S = 1.0
_TICK_S = 0.2
_DRAIN_S = 5.0  # how long an ended node's last answer to ``events`` may take
_DEFAULT_BATCH = RunOptions().batch_size


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
        # What the run's monitor reads (see _check): it checks and logs in the watcher.
        self.counters = [NodeCounters() for _ in plan.nodes]
        self.threads: list[threading.Thread] = []  # the nodes' threads are in the actors
        self.monitor = Monitor(self)
        self._joined = False
        self._settled = False
        # Instances waiting for the rest of the run (NodeContext.wait_for_run_outcome), and
        # those told that it ended well.
        self._awaiting: set[tuple[int, int]] = set()
        self._released: set[tuple[int, int]] = set()
        self._emitted_all: set[tuple[int, int]] = set()  # sources done but for their acks
        self._reach: AckRouting | None = None
        # With a state store: its checkpoints (opened by _launch, see _checkpoints.py).
        self.checkpoints: DriverCheckpoints | None = None
        self._told: tuple[int, bool] | None = None  # the last commit told the sinks
        assert len(options) == n

    # ----------------------------------------------------------------- launching
    def _launch(
        self,
        payloads: list[bytes],
        actor_env: Mapping[str, Any] | None,
        import_path: tuple[str, ...] = (),
    ) -> None:
        import ray

        from ._actor import HostSpec
        from ._wire import dumps

        plan, runner = self.plan, self.runner
        replicas = [o.replicas for o in self.options]
        if plan.options.state is not None:  # the nodes' state back, before they start
            from ._checkpoints import DriverCheckpoints

            self.checkpoints = checkpoints = DriverCheckpoints(plan, replicas)
            self.add_done_callback(checkpoints.close)
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
                    batch_size=self._batch_size(pn),
                    n_streams=n_streams[pn.index],
                    max_in_flight=runner.max_in_flight,
                    linger=runner.linger,
                    sync_state=runner.sync_state and replicas[pn.index] == 1,
                    ack_routing=ack_routing,
                    log_level=logging.getLogger("nanostream").getEffectiveLevel(),
                    driver_node=driver_node,
                    driver_path=import_path,
                    checkpoints=self._checkpoint_spec(),
                    restored=(self.checkpoints.restored(pn.index) if self.checkpoints else None),
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

    def _checkpoint_spec(self) -> tuple[int, int | None] | None:
        checkpoints = self.checkpoints
        if checkpoints is None:
            return None
        return checkpoints.committed, self.plan.options.checkpoint_items

    def _begin_checkpoint(self, epoch: int | None) -> None:
        """Ask every source instance to send the barrier of ``epoch`` (if any)."""
        if epoch is None:
            return
        for pn in self.plan.nodes:
            if pn.is_source:
                for actor in self.actors[pn.index]:
                    actor.begin_checkpoint.remote(self.run_id, epoch)

    def _tell_committed(self, checkpoints: DriverCheckpoints) -> None:
        """Tell the sinks that write exactly once of a new commit (they write then)."""
        told = (checkpoints.committed, checkpoints.final)
        if told == self._told:
            return
        self._told = told
        for pn in self.plan.nodes:
            if pn.exactly_once:
                for actor in self.actors[pn.index]:
                    actor.checkpoint_committed.remote(self.run_id, *told)

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
                if self.checkpoints is not None and not self.aborting:
                    self._begin_checkpoint(self.checkpoints.due())
                now = time.monotonic()
                if self._abort_at is not None:
                    if not self._killed_stuck and now - self._abort_at >= ABORT_GRACE_S:
                        self.interrupt_stuck_nodes()
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

        from ._wire import emit_logs, loads, rebuild_failure

        name = self.plan.nodes[i].name
        if self.checkpoints is not None:
            self._drain_events(i, r)  # its checkpoint reports come before its end
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
            self._fail(name, rebuild_failure(name, outcome))

    def _drain_events(self, i: int, r: int) -> None:
        """Take the answers to instance ``r`` of node ``i``'s ``events`` calls until the
        one that says it ended (the node has ended: they come at once)."""
        import ray

        while True:
            ref = next((ref for ref, at in self._event_refs.items() if at == (i, r)), None)
            if ref is None:
                return
            del self._event_refs[ref]
            ready, _ = ray.wait([ref], timeout=_DRAIN_S)
            if not ready:
                return
            self._mirror_events(ref, i, r)

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

        from ._wire import emit_logs

        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError:
            return
        names = answer["events"]
        pn = self.plan.nodes[i]
        for name in names:
            pn.set_event(name)
        emit_logs(answer["logs"])
        checkpoints = self.checkpoints
        if checkpoints is not None and not self.aborting:  # a failed run commits no more
            for report in answer["reports"]:
                self._begin_checkpoint(checkpoints.report(i, r, report))
            self._tell_committed(checkpoints)
        for notice in answer["notices"]:  # each told once by the node's actor
            if notice == "stop":  # the node asked its run to stop
                self.request_stop()
            elif notice == "awaiting":  # it waits for the rest of the run to end well
                self._awaiting.add((i, r))
            elif notice == "emitted_all":  # a source that only waits for its acks now
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
        """The monitor's round: its counters from the actors' figures, then its checks."""
        opts = self.plan.options
        self._live_stats(timeout=min(5.0, opts.monitor_interval))
        now = time.monotonic()
        for pn in self.plan.nodes:
            waited = max(
                (last["output_waiting_s"] for last in self._last[pn.index] if last), default=0.0
            )
            self.counters[pn.index].output_wait_since = now - waited if waited else None
        self.monitor.check()
        if log_counts:
            self.monitor.log_counts()

    def downstream_names(self, index: int) -> list[str]:
        """Names of the nodes fed by node ``index``."""
        return downstream_names(self.plan, index)

    def interrupt_stuck_nodes(self) -> None:
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
