"""Composite nodes: several linked nodes that stand in a pipeline as one node."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import registry
from .context import node_label
from .errors import GraphError
from .node import NanoNode, NodeFunction, node_of

if TYPE_CHECKING:
    from .graph import Pipeline

__all__ = ["Composite"]


class Composite(NanoNode):
    """Several linked nodes that act as one node.

    Link the inner nodes with ``>`` first, then pass them (in any order) as ``nodes``. What
    is linked *into* the composite goes to its ``entries`` (by default: the inner nodes that
    nothing inside feeds, sources excepted); what the composite emits comes from its
    ``exits`` (by default: the inner nodes that feed nothing inside). A composite whose
    inner roots are all sources is itself a source.

    When a pipeline is checked, every composite is replaced by its inner nodes, named
    ``composite.inner``; each runs in its own thread like any node. Composites nest.

    Example:
        >>> import nanostream
        >>> def double(inp, outp):
        ...     for x in inp:
        ...         outp(2 * x)
        >>> def plus_one(inp, outp):
        ...     for x in inp:
        ...         outp(x + 1)
        >>> a, b = nanostream.as_node(double), nanostream.as_node(plus_one)
        >>> _ = a > b
        >>> both = nanostream.Composite([a, b], name="double_plus_one")
        >>> sink = nanostream.testing.Collect()
        >>> nanostream.from_iterable([1, 2]) > both > sink
        Collect(name=None)
        >>> run = sink.global_start(block=False)
        >>> run.wait(10)
        True
        >>> sink.items, sorted(run.stats())[:2]
        ([3, 5], ['Collect', 'double_plus_one.double'])
    """

    def __init__(
        self,
        nodes: Sequence[Any],
        *,
        entries: Sequence[Any] | None = None,
        exits: Sequence[Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name)
        if not nodes:
            raise GraphError(f"composite {name or type(self).__name__!r} has no inner nodes")
        self.inner: list[NanoNode] = [node_of(n) for n in nodes]
        pipeline = self._inner_pipeline()
        feeds = {id(e.target) for e in pipeline.edges}
        fed = {id(e.source) for e in pipeline.edges}
        self.entries: list[NanoNode] = (
            [node_of(n) for n in entries]
            if entries is not None
            else [n for n in self.inner if id(n) not in feeds and not n.is_source]
        )
        self.exits: list[NanoNode] = (
            [node_of(n) for n in exits]
            if exits is not None
            else [n for n in self.inner if id(n) not in fed]
        )
        if options:
            self.configure(**options)

    @property
    def is_source(self) -> bool:
        return not self.entries

    def _inner_pipeline(self) -> Pipeline:
        pipelines = {id(n._pipeline()): n._pipeline() for n in self.inner}
        label = node_label(self)
        if len(pipelines) > 1:
            raise GraphError(
                f"the inner nodes of composite {label!r} are not all linked together; link "
                "them with '>' before building the composite"
            )
        pipeline = next(iter(pipelines.values()))
        inner_ids = {id(n) for n in self.inner}
        outside = [n for n in pipeline.nodes if id(n) not in inner_ids]
        if outside:
            raise GraphError(
                f"composite {label!r}: inner nodes are linked to {outside[0]!r}, which is "
                "not part of the composite"
            )
        return pipeline

    def _refusal(self, key: str, value: Any = None) -> str | None:
        refused = super()._refusal(key, value)
        if refused is None:
            return None
        return (
            f"a composite applies no error policy itself ({key}= is not applied to "
            f"{type(self).__name__}): give {key}= to its inner nodes"
        )

    def validate(self) -> None:
        for node in self.inner:
            node.validate()

    def as_function(self) -> NodeFunction:
        """The whole composite as one node function, run on one thread (cooperatively)."""
        from .graph import Pipeline

        pipeline = Pipeline(node_label(self, in_run=False))
        pipeline.nodes.append(self)  # a private view: the composite keeps its own pipeline
        plan = pipeline.plan()
        run_inline = registry.hook("run_inline")  # the cooperative runner's, registered

        def composite_function(inp: Iterable[Any], outp: Any) -> None:
            run_inline(plan, inp, outp)

        return composite_function

    def default_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._ns_name!r})"
