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

import dataclasses
from typing import TYPE_CHECKING, Any

from .errors import GraphError

if TYPE_CHECKING:
    from .graph import Plan
    from .run import RunOptions

__all__ = [
    "check_checkpointing",
    "choose_checkpoints",
    "describe_checkpoints",
    "unaligned_by_default",
]


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
                    "items it held would be lost: pass exactly_once=True (it then writes "
                    "per checkpoint, see docs/state.md), or run it without state="
                )
            raise GraphError(
                f"node {pn.name!r} keeps items between reads but cannot snapshot them (it "
                "defines no snapshot_state), so after a restart from a checkpoint the items "
                "it held would be lost: give it snapshot_state() and restore_state() (see "
                "docs/state.md), or configure holds_items=False if it emits each item's "
                "outputs before reading the next one"
            )
    sinks = [pn for pn in nodes if not pn.outputs]
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


def choose_checkpoints(plan: Plan, runner: Any) -> Plan:
    """``plan`` with its checkpoints' kind decided for ``runner`` (when it takes any).

    ``checkpoint_unaligned=None`` (the default) becomes unaligned where the runner can
    take unaligned checkpoints (its ``unaligned_checkpoints``: the threads and cooperative
    runners), else aligned, and aligned with ``checkpoint_items`` (a checkpoint due by
    count is one whose barrier follows its item: one put ahead of the items queued
    would overtake the very items it counts, and a burst of them would all be passed by
    one checkpoint); ``True`` where the runner cannot is refused, naming it.

    Example:
        >>> import nanostream
        >>> from nanostream._core.registry import get_runner
        >>> src = nanostream.from_iterable([1], name="src")
        >>> _ = src > nanostream.testing.Collect(name="sink")
        >>> plan = nanostream.pipeline_of(src).plan(nanostream.RunOptions(state="run.state"))
        >>> plan.options.checkpoint_unaligned is None
        True
        >>> choose_checkpoints(plan, get_runner("threads")).options.checkpoint_unaligned
        True
    """
    opts = plan.options
    can = bool(getattr(runner, "unaligned_checkpoints", False))
    if opts.state is None:
        return plan
    if opts.checkpoint_unaligned and not can:
        raise GraphError(
            f"the {runner.name!r} runner takes only aligned checkpoints, so "
            "checkpoint_unaligned=True would do nothing: run on the 'threads' or "
            "'cooperative' runner, or drop checkpoint_unaligned (aligned is then chosen)"
        )
    if opts.checkpoint_unaligned is None:
        chosen = dataclasses.replace(opts, checkpoint_unaligned=unaligned_by_default(opts, can))
        plan = dataclasses.replace(plan, options=chosen)
    return plan


def unaligned_by_default(options: RunOptions, can: bool) -> bool:
    """What ``checkpoint_unaligned=None`` means on a runner that ``can`` (or cannot) take
    unaligned checkpoints: unaligned where it can, unless ``checkpoint_items`` is set.

    Example:
        >>> import nanostream
        >>> options = nanostream.RunOptions(state="run.state")
        >>> unaligned_by_default(options, True), unaligned_by_default(options, False)
        (True, False)
    """
    return can and options.checkpoint_items is None


def describe_checkpoints(plan: Plan, runner: Any, chosen: bool | None = None) -> str:
    """Which checkpoints a run of ``plan`` (decided by :func:`choose_checkpoints`) takes,
    and why, in a line; ``chosen`` is the ``checkpoint_unaligned`` the user gave (None:
    the default). Empty without a state store.

    Example:
        >>> import nanostream
        >>> from nanostream._core.registry import get_runner
        >>> a = nanostream.from_iterable([1], name="a")
        >>> b = nanostream.from_iterable([2], name="b")
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> _ = a > sink; _ = b > sink
        >>> options = nanostream.RunOptions(state="run.state")
        >>> plan = nanostream.pipeline_of(a).plan(options)
        >>> runner = get_runner("threads")
        >>> said = describe_checkpoints(choose_checkpoints(plan, runner), runner)
        >>> said.startswith("unaligned checkpoints (the default on the 'threads' runner: ")
        True
        >>> said.split("; ")[-1]
        "aligned at 'sink', whose queue has 2 producers"
    """
    opts = plan.options
    if opts.state is None:
        return ""
    if chosen is not None:
        why = f"checkpoint_unaligned={chosen}"
    elif opts.checkpoint_unaligned:
        why = (
            f"the default on the {runner.name!r} runner: a barrier overtakes the items "
            "queued before it, which the checkpoint keeps"
        )
    elif getattr(runner, "unaligned_checkpoints", False):
        why = "the default with checkpoint_items: each barrier follows the item it counts"
    else:
        why = f"the {runner.name!r} runner takes aligned checkpoints only"
    if not opts.checkpoint_unaligned:
        return f"aligned checkpoints ({why})"
    merging = [
        f"{pn.name!r}, whose queue has {len(pn.inputs)} producers"
        for pn in plan.nodes
        if len(pn.inputs) > 1
    ]
    also = f"; aligned at {', '.join(merging)}" if merging else ""
    return f"unaligned checkpoints ({why}){also}"
