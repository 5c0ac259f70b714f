"""Which plans can take checkpoints, and which can write exactly once: checked when built.

A run with a state store (``RunOptions.state``) takes checkpoints: a barrier travels from
every source through the graph, and each node that keeps state (``PlanNode.snapshot``)
snapshots it as the barrier passes (see :mod:`nanostream._engine.checkpoint`). A restart
resumes every source that snapshots its position from there, so

- a node downstream of such a source that keeps *items* between reads must snapshot them
  too, or the items it held at the checkpoint would be lost: refused otherwise;
- a sink that writes exactly once (``PlanNode.exactly_once``) must be the only sink (it
  commits each checkpoint in its own thread, then writes what the checkpoint holds for
  it), needs every source that reaches it to replay from a checkpoint, and no node on
  the way that merges several
  inputs (a barrier is aligned there by count, so items of one input that pass it before
  the other input's barrier would be written twice after a restart): refused otherwise.

Example:
    >>> import nanostream
    >>> class Sink(nanostream.NanoNode):
    ...     exactly_once = True
    ...     def process_item(self, item):
    ...         pass
    >>> src = nanostream.from_iterable([1], name="numbers")
    >>> src > Sink(name="out")
    Sink(name='out')
    >>> try:
    ...     nanostream.pipeline_of(src).plan(nanostream.RunOptions(state="run.state"))
    ... except nanostream.GraphError as exc:
    ...     print(exc)
    'out' writes exactly once, but source 'numbers' cannot replay from a checkpoint ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import GraphError

if TYPE_CHECKING:
    from .graph import Plan

__all__ = ["check_checkpointing"]


def _links(plan: Plan) -> tuple[list[list[int]], list[list[int]]]:
    n = len(plan.nodes)
    children: list[list[int]] = [[] for _ in range(n)]
    parents: list[list[int]] = [[] for _ in range(n)]
    for s, _port, t in plan.edges:
        children[s].append(t)
        parents[t].append(s)
    return children, parents


def _closure(starts: list[int], links: list[list[int]]) -> set[int]:
    seen = set(starts)
    stack = list(starts)
    while stack:
        for other in links[stack.pop()]:
            if other not in seen:
                seen.add(other)
                stack.append(other)
    return seen


def check_checkpointing(plan: Plan) -> None:
    """Raise ``GraphError`` naming the node when ``plan`` cannot keep its guarantees."""
    state = plan.options.state
    nodes = plan.nodes
    exactly = [pn for pn in nodes if pn.exactly_once]
    if state is None:
        if exactly:
            raise GraphError(
                f"{exactly[0].name!r} writes exactly once (exactly_once=True), which needs "
                "the run's state store: start the run with global_start(state='run.state') "
                "or 'nanostream run FILE --state run.state'"
            )
        return
    children, parents = _links(plan)
    replaying = [pn.index for pn in nodes if pn.is_source and pn.snapshot is not None]
    for i in sorted(_closure(replaying, children)):
        pn = nodes[i]
        if not pn.is_source and pn.holds_items is not False and pn.snapshot is None:
            if getattr(pn.node, "keeps_no_state", False):  # it would with exactly_once
                raise GraphError(
                    f"node {pn.name!r} keeps items between reads and snapshots them only "
                    "with exactly_once=True, so after a restart from a checkpoint the "
                    "items it held would be lost: pass exactly_once=True (a part file per "
                    "checkpoint, see docs/state.md), or run it without state="
                )
            raise GraphError(
                f"node {pn.name!r} keeps items between reads but cannot snapshot them (it "
                "defines no snapshot_state), so after a restart from a checkpoint the items "
                "it held would be lost: give it snapshot_state() and restore_state() (see "
                "docs/state.md), or configure holds_items=False if it emits each item's "
                "outputs before reading the next one"
            )
    sinks = [pn for pn in nodes if not pn.outputs]
    if exactly and plan.options.checkpoint_unaligned:
        raise GraphError(
            f"{exactly[0].name!r} writes exactly once, which nanostream gives with aligned "
            "checkpoints only: drop checkpoint_unaligned=True, or exactly_once=True "
            "(at-least-once)"
        )
    for sink in exactly:
        others = [pn.name for pn in sinks if pn is not sink]
        if others:
            raise GraphError(
                f"{sink.name!r} writes exactly once, which needs it to be the pipeline's "
                f"only sink (it commits each checkpoint), but {others[0]!r} is a sink too: "
                "give it its own pipeline, or drop exactly_once=True (at-least-once)"
            )
        upstream = _closure([sink.index], parents)
        for i in sorted(upstream):
            pn = nodes[i]
            if pn.is_source and pn.snapshot is None:
                raise GraphError(
                    f"{sink.name!r} writes exactly once, but source {pn.name!r} cannot "
                    "replay from a checkpoint (it defines no snapshot_state): use a source "
                    "that can, or drop exactly_once=True (at-least-once)"
                )
            if len(parents[i]) > 1:
                raise GraphError(
                    f"{sink.name!r} writes exactly once, but node {pn.name!r} on its way "
                    f"merges {len(parents[i])} inputs, and checkpoints are exact only along "
                    "single-input paths: drop exactly_once=True (at-least-once), or give "
                    "each input its own pipeline"
                )
