"""The graph model: which nodes a pipeline has, how they are linked, and the checked plan.

A :class:`Pipeline` is created implicitly when nodes are linked with ``>``; linking nodes of
two pipelines merges them. :meth:`Pipeline.plan` checks the graph (node contracts, unique
names, no cycles) and returns a :class:`Plan`: what every runner executes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import registry
from .checkpointing import check_checkpointing, choose_checkpoints, describe_checkpoints
from .context import NodeContext, node_label
from .errors import CycleError, GraphError, RunStateError
from .node import FunctionNode, IterableSource, NanoNode, NodeFunction, release_function
from .node_function import keeps_state

if TYPE_CHECKING:
    from .run import Run, RunOptions

__all__ = ["Edge", "Pipeline", "Plan", "PlanNode"]

log = logging.getLogger("nanostream")


@dataclass(frozen=True)
class Edge:
    """A link from ``source``'s output ``port`` to ``target``'s input."""

    source: NanoNode
    port: str
    target: NanoNode


@dataclass(frozen=True)
class PlanNode:
    """One node of a checked plan: everything a runner needs of the node.

    ``inputs`` and ``outputs`` hold indices into :attr:`Plan.nodes`; ``outputs`` maps each
    port to its targets, in the order the edges were made. A runner runs ``function`` and
    reads the rest of what it needs here (``holds_items``, ``ports``, ``makes_own_data``,
    ``options``); it gives the node its :class:`~nanostream._core.context.NodeContext`
    with :meth:`bind`, and never touches ``node`` itself (a runner that runs the node
    elsewhere, as Ray does, sends the whole plan node).

    Example:
        >>> import nanostream
        >>> src = nanostream.from_iterable([1], name="src", batch_size=5)
        >>> _ = src > nanostream.testing.Collect(name="sink")
        >>> plan = nanostream.pipeline_of(src).plan()
        >>> sink = plan.node("sink")
        >>> sink.inputs, sink.is_source, sink.makes_own_data, sink.holds_items
        ((0,), False, False, False)
        >>> plan.node("src").options, plan.node("src").makes_own_data
        ({'batch_size': 5}, True)
    """

    index: int
    name: str
    node: NanoNode
    function: NodeFunction
    inputs: tuple[int, ...]
    outputs: dict[str, tuple[int, ...]]
    queue_size: int
    batch_size: int
    #: Seconds of idle input after which the node gets ``TICK`` (None: never).
    tick_interval: float | None = None
    #: The input queue's capacity in approximate bytes (None: bounded by items only).
    queue_bytes: int | None = None
    #: Whether the node keeps items between reads (``NanoNode.items_held()``); None:
    #: unknown, treated as holding.
    holds_items: bool | None = None
    #: The output ports the node declares (its outputs go through a port dispatcher).
    ports: tuple[str, ...] = ()
    #: True when the node makes its own data (it defines ``generator()``), fed or not.
    makes_own_data: bool = False
    #: The node's options that were set explicitly (``NanoNode.options``).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: The node's ``snapshot_state`` when it keeps state across restarts (a checkpoint
    #: calls it in the node's thread), else None; see docs/state.md.
    snapshot: Callable[[], Any] | None = None
    #: The node (a sink) writes exactly once per checkpoint: the plan is refused unless
    #: every source that reaches it can replay (see ``_core/checkpointing.py``).
    exactly_once: bool = False
    #: The node's class (``module.qualname``), stored with its state to check it fits.
    kind: str = ""
    #: The node's ``checkpoint_committed()`` (a sink that writes exactly once): called in
    #: its thread once a checkpoint holding its latest snapshot is committed.
    on_commit: Callable[[], None] | None = None

    @property
    def is_source(self) -> bool:
        """True when nothing feeds this node."""
        return not self.inputs

    def bind(self, context: NodeContext) -> None:
        """Give the node ``context`` for its run, before its function starts.

        The node's adapters read it when the function starts; ``stop_requested`` and
        ``sleep`` wait on its ``stop_event``.

        Example:
            >>> import threading, nanostream
            >>> from nanostream._core.context import NodeContext
            >>> src = nanostream.from_iterable([1], name="src")
            >>> pn = nanostream.pipeline_of(src).plan().node("src")
            >>> stop = threading.Event()
            >>> pn.bind(NodeContext(pn.name, stop_event=stop))
            >>> stop.set()
            >>> src.stop_requested, pn.context().name
            (True, 'src')
        """
        self.node._ns_context = context

    def context(self) -> NodeContext:
        """The context bound to the node (before any: a standalone one, not kept)."""
        return self.node._context()

    def events(self) -> dict[str, threading.Event]:
        """The node object's ``threading.Event`` attributes, by name (its own, public).

        Example:
            >>> import threading, nanostream
            >>> class Gate(nanostream.NanoNode):
            ...     def __init__(self):
            ...         super().__init__(name="gate")
            ...         self.opened = threading.Event()
            ...     def process_item(self, item):
            ...         yield item
            >>> gate = Gate()
            >>> _ = nanostream.from_iterable([1]) > gate
            >>> pn = nanostream.pipeline_of(gate).plan().node("gate")
            >>> sorted(pn.events())
            ['opened']
        """
        return {
            k: v
            for k, v in vars(self.node).items()
            if isinstance(v, threading.Event) and not k.startswith("_ns_")
        }

    def state(self) -> dict[str, Any] | None:
        """The node object's attributes (a class node's; None for a function or iterable).

        A runner that runs the node in another process sends these back when the node
        ends, and :meth:`restore_state` copies them onto the user's node object.

        Example:
            >>> import nanostream
            >>> sink = nanostream.testing.Collect(name="sink")
            >>> _ = nanostream.from_iterable([1], name="src") > sink
            >>> plan = nanostream.pipeline_of(sink).plan()
            >>> plan.node("sink").state()["items"]
            []
            >>> plan.node("src").state() is None
            True
        """
        if isinstance(self.node, (FunctionNode, IterableSource)):
            return None
        return {k: v for k, v in vars(self.node).items() if not k.startswith("_ns_")}

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Copy a finished remote copy's attributes (:meth:`state`) onto the node object.

        Events are set (not replaced), so code waiting on the node's events wakes; locks
        and conditions stay the node's own.

        Example:
            >>> import nanostream
            >>> sink = nanostream.testing.Collect(name="sink")
            >>> pn = nanostream.pipeline_of(sink).plan().node("sink")
            >>> pn.restore_state({"items": [1, 2]})
            >>> sink.items
            [1, 2]
        """
        node = self.node
        for key, value in state.items():
            mine = getattr(node, key, None)
            if isinstance(mine, threading.Event):
                if isinstance(value, threading.Event) and value.is_set():
                    mine.set()
                continue
            if isinstance(mine, threading.Condition) or type(mine) in _LOCK_TYPES:
                continue
            setattr(node, key, value)

    def set_event(self, name: str) -> None:
        """Set the node object's event ``name`` (one of :meth:`events`), if it is one."""
        event = getattr(self.node, name, None)
        if isinstance(event, threading.Event):
            event.set()


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


@dataclass(frozen=True)
class Plan:
    """A checked graph: nodes in topological order, with their node functions.

    Example:
        >>> import nanostream
        >>> src = nanostream.from_iterable([1], name="src")
        >>> _ = src > nanostream.testing.Collect(name="sink")
        >>> plan = nanostream.pipeline_of(src).plan()
        >>> [n.name for n in plan.nodes], plan.edges
        (['src', 'sink'], ((0, 'out', 1),))
    """

    name: str
    nodes: tuple[PlanNode, ...]
    options: RunOptions
    edges: tuple[tuple[int, str, int], ...] = field(default=())

    def node(self, name: str) -> PlanNode:
        """The plan node called ``name``."""
        for pn in self.nodes:
            if pn.name == name:
                return pn
        raise KeyError(name)


class Pipeline:
    """A graph of linked nodes. Made and merged implicitly by ``>``; runs once.

    Example:
        >>> import nanostream
        >>> src = nanostream.from_iterable([1, 2], name="src")
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> src > sink
        Collect(name='sink')
        >>> pipeline = nanostream.pipeline_of(src)
        >>> [n.name for n in pipeline.plan().nodes]
        ['src', 'sink']
    """

    def __init__(self, name: str = "pipeline") -> None:
        self.name = name
        self.nodes: list[NanoNode] = []
        self.edges: dict[Edge, None] = {}  # an ordered set
        self.run: Run | None = None
        self._planned: list[NanoNode] = []
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- building
    def _add(self, node: NanoNode) -> None:
        self.nodes.append(node)
        node._ns_pipeline = self

    def _check_building(self) -> None:
        if self.run is not None:
            raise RunStateError(
                f"pipeline {self.name!r} has already been started; link nodes before "
                "global_start(), and build new nodes for a new pipeline"
            )

    def link(self, source: NanoNode, port: str, target: NanoNode) -> None:
        """Link ``source``'s ``port`` to ``target`` (what ``source[port] > target`` does)."""
        if source is target:
            raise GraphError(f"cannot link node {node_label(source, in_run=False)!r} to itself")
        if target.is_source:
            raise GraphError(
                f"node {node_label(target, in_run=False)!r} is a source (it defines generator()); "
                "it cannot take input"
            )
        self._check_building()
        other = target._pipeline()
        other._check_building()
        pipeline = self
        if other is not self:
            # merge the smaller pipeline into the larger one
            big, small = (self, other) if len(self.nodes) >= len(other.nodes) else (other, self)
            for node in small.nodes:
                big._add(node)
            big.edges.update(small.edges)
            if big.name == "pipeline" and small.name != "pipeline":
                big.name = small.name
            small.nodes = []
            small.edges = {}
            pipeline = big
        pipeline.edges[Edge(source, port, target)] = None

    # ----------------------------------------------------------------- checking
    def plan(self, options: RunOptions | None = None) -> Plan:
        """Check the graph and return its :class:`Plan`; raises ``GraphError`` if wrong.

        Checks every node's contract, that names are unique, and that the graph has no
        cycle, all before any thread starts. Composite nodes are expanded into their inner
        nodes, named ``composite.inner``.
        """
        from .run import RunOptions

        opts = options if options is not None else RunOptions()
        nodes, edges, names = self.flatten()
        for node in nodes:
            node.validate()
        order = _topological_order(nodes, edges, names)
        index = {id(node): i for i, node in enumerate(order)}
        inputs: dict[int, list[int]] = {i: [] for i in range(len(order))}
        outputs: dict[int, dict[str, list[int]]] = {i: {} for i in range(len(order))}
        plan_edges: list[tuple[int, str, int]] = []
        for edge in edges:
            s, t = index[id(edge.source)], index[id(edge.target)]
            inputs[t].append(s)
            outputs[s].setdefault(edge.port, []).append(t)
            plan_edges.append((s, edge.port, t))
        plan_nodes = []
        for i, node in enumerate(order):
            node_opts = node.options
            batch = node_opts.get("batch_size", opts.batch_size)
            queue = node_opts.get("queue_size", opts.queue_size)
            queue_bytes = node_opts.get("queue_bytes", opts.queue_bytes)
            plan_nodes.append(
                PlanNode(
                    index=i,
                    name=names[id(node)],
                    node=node,
                    function=node.as_function(),
                    inputs=tuple(inputs[i]),
                    outputs={p: tuple(ts) for p, ts in outputs[i].items()},
                    queue_size=queue,
                    batch_size=batch,
                    tick_interval=node.ticks_every(),
                    queue_bytes=queue_bytes,
                    holds_items=node.items_held(),
                    ports=tuple(getattr(node, "ports", ()) or ()),
                    makes_own_data=node.is_source,
                    options=node_opts,
                    snapshot=node.snapshot_state if keeps_state(node) else None,
                    exactly_once=bool(getattr(node, "exactly_once", False)),
                    kind=f"{type(node).__module__}.{type(node).__qualname__}",
                    on_commit=getattr(node, "checkpoint_committed", None)
                    if getattr(node, "exactly_once", False)
                    else None,
                )
            )
        plan = Plan(name=self.name, nodes=tuple(plan_nodes), options=opts, edges=tuple(plan_edges))
        check_checkpointing(plan)
        return plan

    def flatten(self) -> tuple[list[NanoNode], list[Edge], dict[int, str]]:
        """Nodes, edges and names with every composite replaced by its inner nodes."""
        names = self.node_names()
        return _flatten(self.nodes, list(self.edges), names)

    def node_names(self) -> dict[int, str]:
        """Each node's name in the pipeline, by ``id(node)``: its own, else its default name
        (``Collect``, then ``Collect-2``...). ``GraphError`` if two nodes share a name.

        Example:
            >>> import nanostream
            >>> src = nanostream.from_iterable([1], name="src")
            >>> _ = src > nanostream.testing.Collect() > nanostream.testing.Collect()
            >>> sorted(nanostream.pipeline_of(src).node_names().values())
            ['Collect', 'Collect-2', 'src']
        """
        names: dict[int, str] = {}
        taken: dict[str, NanoNode] = {}
        for node in self.nodes:
            if node.name is not None:
                if node.name in taken:
                    raise GraphError(
                        f"two nodes are named {node.name!r} ({taken[node.name]!r} and "
                        f"{node!r}); node names must be unique within a pipeline"
                    )
                taken[node.name] = node
                names[id(node)] = node.name
        for node in self.nodes:
            if node.name is None:
                base = node_label(node, in_run=False)
                name, n = base, 1
                while name in taken:
                    n += 1
                    name = f"{base}-{n}"
                taken[name] = node
                names[id(node)] = name
        return names

    # ----------------------------------------------------------------- running
    def start(
        self,
        *,
        runner: Any = "threads",
        progress: bool = False,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        ui: bool | int | None = None,
        ui_host: str = "127.0.0.1",
        otel: Any = None,
        **options: Any,
    ) -> Run:
        """Check the graph and start it on ``runner``; returns the :class:`Run` handle.

        ``progress=True`` shows a live view of the run and ``metrics_port`` serves
        Prometheus metrics while it runs (both from :mod:`nanostream.observe`, which needs
        ``nanostream[observe]``). ``ui=True`` (or a port) serves a live web page of the
        run on 127.0.0.1 (``ui_host`` for another address) and prints its address;
        ``otel=True`` exports metrics and spans through OpenTelemetry (``nanostream[otel]``).
        Options a runner declares in ``option_names`` (such as
        the Ray runner's ``address``) go to that runner; the rest are
        :class:`RunOptions`.
        """
        from .run import RunOptions

        _check_observe_options(ui, otel)
        with self._lock:
            self._check_building()
            if "name" in options:
                self.name = options.pop("name")
            impl = registry.get_runner(runner)
            own = set(getattr(impl, "option_names", ()))
            runner_options = {k: options.pop(k) for k in list(options) if k in own}
            if runner_options:
                impl = impl.with_options(**runner_options)  # type: ignore[attr-defined]
            plan = self.plan(RunOptions.from_kwargs(**options))
            if plan.options.state is not None and not getattr(impl, "checkpoints", False):
                raise GraphError(
                    f"the {impl.name!r} runner does not take checkpoints, so state= would "
                    "do nothing: run on the 'threads' or 'cooperative' runner, or without "
                    "state= (at-least-once through acknowledgements, see docs/state.md)"
                )
            chosen = plan.options.checkpoint_unaligned
            plan = choose_checkpoints(plan, impl)
            if plan.options.state is not None:
                log.info("pipeline %r: %s", self.name, describe_checkpoints(plan, impl, chosen))
            if plan.options.share_cores is not None and not getattr(impl, "shares_cores", False):
                raise GraphError(
                    f"the {impl.name!r} runner does not place node threads on cores, so "
                    "share_cores= would do nothing: run on the 'threads' runner, or without "
                    "share_cores="
                )
            wants_ui = ui is not None and ui is not False
            wants_otel = otel is not None and otel is not False
            observed = progress or metrics_port is not None or wants_ui or wants_otel
            # imported before the nodes start, so the observer sees the run from its start
            attach = registry.hook("observe") if observed else None
            self._planned = [pn.node for pn in plan.nodes]
            for pn in plan.nodes:  # runners bind their own
                pn.bind(NodeContext.for_plan_node(pn))
            self.run = impl.start(plan)
            self.run.add_done_callback(self._release)
            if attach is not None:
                try:
                    attach(
                        self.run,
                        progress=progress,
                        metrics_port=metrics_port,
                        metrics_host=metrics_host,
                        plan=plan,
                        ui=ui,
                        ui_host=ui_host,
                        otel=otel,
                    )
                except BaseException:
                    self.run.abort()
                    raise
            return self.run

    def _release(self) -> None:
        for node in self._planned:
            if isinstance(node, FunctionNode):
                release_function(node)


def _check_observe_options(ui: Any, otel: Any) -> None:
    """Refuse a ``ui=`` or ``otel=`` that cannot work, before anything starts."""
    port_ok = isinstance(ui, bool) or (isinstance(ui, int) and 0 <= ui <= 65535)
    if ui is not None and not port_ok:
        raise GraphError(
            f"ui={ui!r} is not a web view setting: pass ui=True (any free port) or a port "
            "number from 0 to 65535"
        )
    if otel not in (None, True, False) and not callable(getattr(otel, "update", None)):
        raise GraphError(
            f"otel={otel!r} is not an OpenTelemetry setting: pass otel=True (the global "
            "providers) or a nanostream.observe.otel.Telemetry"
        )


def pipeline_of(node: NanoNode) -> Pipeline:
    """The :class:`Pipeline` a node belongs to (one is made if it stands alone).

    Example:
        >>> import nanostream
        >>> a = nanostream.from_iterable([1])
        >>> b = nanostream.testing.Collect()
        >>> a > b
        Collect(name=None)
        >>> nanostream.pipeline_of(a) is nanostream.pipeline_of(b)
        True
    """
    return node._pipeline()


def _flatten(
    nodes: list[NanoNode], edges: list[Edge], names: dict[int, str]
) -> tuple[list[NanoNode], list[Edge], dict[int, str]]:
    """Expand composites (recursively): their inner nodes replace them, edges are rewired."""
    from .composite import Composite

    if not any(isinstance(n, Composite) for n in nodes):
        return nodes, edges, names
    flat: list[NanoNode] = []
    flat_names: dict[int, str] = {}
    entries: dict[int, list[NanoNode]] = {}
    exits: dict[int, list[NanoNode]] = {}
    inner_edges: list[Edge] = []
    for node in nodes:
        if not isinstance(node, Composite):
            flat.append(node)
            flat_names[id(node)] = names[id(node)]
            continue
        prefix = names[id(node)]
        inner = node._inner_pipeline()
        sub_nodes, sub_edges, sub_names = _flatten(
            list(inner.nodes), list(inner.edges), inner.node_names()
        )
        for sub in sub_nodes:
            flat.append(sub)
            flat_names[id(sub)] = f"{prefix}.{sub_names[id(sub)]}"
        inner_edges.extend(sub_edges)
        entries[id(node)] = [e for n in node.entries for e in _ends(n, "entries")]
        exits[id(node)] = [e for n in node.exits for e in _ends(n, "exits")]
    rewired: list[Edge] = list(inner_edges)
    for edge in edges:
        sources = exits.get(id(edge.source), [edge.source])
        targets = entries.get(id(edge.target), [edge.target])
        rewired.extend(Edge(s, edge.port, t) for s in sources for t in targets)
    return flat, list(dict.fromkeys(rewired)), flat_names


def _ends(node: NanoNode, which: str) -> list[NanoNode]:
    from .composite import Composite

    if isinstance(node, Composite):
        return [e for n in getattr(node, which) for e in _ends(n, which)]
    return [node]


def _topological_order(
    nodes: list[NanoNode], edges: list[Edge], names: dict[int, str]
) -> list[NanoNode]:
    indegree = {id(n): 0 for n in nodes}
    children: dict[int, list[NanoNode]] = {id(n): [] for n in nodes}
    for edge in edges:
        indegree[id(edge.target)] += 1
        children[id(edge.source)].append(edge.target)
    ready = [n for n in nodes if indegree[id(n)] == 0]
    order: list[NanoNode] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in children[id(node)]:
            indegree[id(child)] -= 1
            if indegree[id(child)] == 0:
                ready.append(child)
    if len(order) < len(nodes):
        done = {id(n) for n in order}
        start = next(n for n in nodes if id(n) not in done)
        path: list[NanoNode] = []
        on_path: dict[int, int] = {}
        node = start
        # every node left has a child that is left too; walk until one repeats
        while id(node) not in on_path:
            on_path[id(node)] = len(path)
            path.append(node)
            node = next(c for c in children[id(node)] if id(c) not in done)
        raise CycleError([names[id(n)] for n in path[on_path[id(node)] :]])
    return order
