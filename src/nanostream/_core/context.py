"""The node context: what the code around a node (its adapter) may ask of the running run.

A runner gives every node of a run a :class:`NodeContext` (with :meth:`PlanNode.bind
<nanostream.PlanNode.bind>`) before the node's function starts. The adapters of
:meth:`NanoNode.as_function <nanostream.NanoNode.as_function>` read it once, when the
function starts, to

- name the node in error records and messages (the plan's name, e.g. ``composite.inner``);
- know which output ports are linked (an error record goes to ``errors`` only when linked);
- count the items that failed for good (``NodeStats.errors``);
- wait in a retry's back-off or between polls, cut short by an abort (:meth:`NodeContext.pause`);
- tell a source that the run is stopping (``NanoNode.stop_requested`` and ``sleep`` wait on
  :attr:`NodeContext.stop_event`);
- attach a source's acknowledgements and release a stateful node's items (see
  :mod:`nanostream._core.acks`).

``Pipeline.start`` gives each node this base class; a runner replaces it with a subclass that
reaches its own counters. A node function called by hand gets :meth:`NodeContext.standalone`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .acks import Acked
from .fast import drive_source
from .signals import RunAborted

if TYPE_CHECKING:
    from .graph import PlanNode
    from .node import NanoNode

__all__ = ["NO_STATE", "NodeContext", "node_label"]

log = logging.getLogger("nanostream")


def node_label(node: NanoNode, *, in_run: bool = True, with_class: bool = False) -> str:
    """How messages, logs and pipelines name a node: the one helper for it.

    Its name in its run (``composite.inner``) once a runner gave it a context (unless
    ``in_run`` is false: how a pipeline names its nodes), else the name it was given, else
    its default name (a function node's function), else its class. ``with_class`` puts the
    class first and the name, if any, quoted after it.

    Example:
        >>> from nanostream._core.context import node_label
        >>> from nanostream.testing import Collect
        >>> node_label(Collect()), node_label(Collect(name="out"), with_class=True)
        ('Collect', "Collect 'out'")
    """
    context = getattr(node, "_ns_context", None) if in_run else None
    name = getattr(context, "name", None) or node.name
    if with_class:  # a name that is only the class's (an unnamed node in a run) is not repeated
        cls = type(node).__name__
        return f"{cls} {name!r}" if name and name != cls else cls
    default = getattr(node, "default_name", None)
    return str(name or (default() if callable(default) else type(node).__name__))


class _NoState:
    def __repr__(self) -> str:
        return "NO_STATE"


#: ``NodeContext.restored_state`` when the run has no state to give the node.
NO_STATE: Any = _NoState()


class NodeContext:
    """What a running node may ask of its run; one per node and run (for runner authors).

    This base class counts errors in :attr:`errors`, never reports an abort, and does not
    support acknowledgements: an ack attached under it is never called (at-least-once
    means never too early). Runners subclass it.

    Example:
        >>> from nanostream._core.context import NodeContext
        >>> ctx = NodeContext("parse", linked_ports=["out", "errors"])
        >>> ctx.count_error()
        >>> ctx.name, ctx.errors, "errors" in ctx.linked_ports
        ('parse', 1, True)
    """

    def __init__(
        self,
        name: str,
        *,
        linked_ports: Iterable[str] = (),
        abort_event: threading.Event | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.name = name
        self.linked_ports = frozenset(linked_ports)
        self.abort_event = abort_event if abort_event is not None else threading.Event()
        #: Set when the run stops (gracefully or not); None outside a running run.
        self.stop_event = stop_event
        self.errors = 0
        self._ack_warned = False
        #: The state a checkpoint stored for this node, handed to its ``restore_state``
        #: after ``setup()`` (see docs/state.md); :data:`NO_STATE` when there is none.
        self.restored_state: Any = NO_STATE
        #: Called by :meth:`between_items` (a run with a state store sets it).
        self.on_idle: Callable[[], None] | None = None
        #: A source that sleeps calls :meth:`between_items` at least this often (seconds;
        #: the checkpoint interval in a run with a state store), else once per sleep.
        self.idle_every: float | None = None

    @classmethod
    def for_plan_node(cls, pn: PlanNode) -> NodeContext:
        """The base context of one node of a plan."""
        return cls(pn.name, linked_ports=pn.outputs)

    @classmethod
    def standalone(cls, node: NanoNode) -> NodeContext:
        """The context of a node function called outside any run (by hand, in a test)."""
        return cls(node_label(node))

    def pause(self, seconds: float, *, until_stop: bool = False) -> bool:
        """Wait up to ``seconds``: the one wait of node code that an abort cuts short.

        An abort of the run (another node failed, or ``Run.abort()``) raises
        :class:`~nanostream.RunAborted` at once. A graceful stop ends the wait, returning
        True, only with ``until_stop`` (a source waiting for its next poll); otherwise the
        wait goes on (a retry's back-off while the pipeline drains).

        Example:
            >>> import threading
            >>> from nanostream._core.context import NodeContext
            >>> stop = threading.Event()
            >>> stop.set()
            >>> ctx = NodeContext("poll", stop_event=stop)
            >>> ctx.pause(0.001), ctx.pause(10, until_stop=True)
            (False, True)
        """
        if seconds <= 0:
            return False
        if until_stop and self.stop_event is not None:
            if not self.stop_event.wait(seconds):
                return False
        elif not self.abort_event.wait(seconds):
            return False
        if self.abort_event.is_set():
            raise RunAborted
        return True

    def count_error(self) -> None:
        """One more item of this node failed for good (skipped or dead-lettered)."""
        self.errors += 1

    def attach_ack(self, ack: Callable[[], Any]) -> None:
        """Call ``ack()`` once the item the source just emitted is fully processed.

        The base class cannot tell when that is, so it never calls ``ack`` and logs once.
        """
        if not self._ack_warned:
            self._ack_warned = True
            log.warning(
                "source %r attaches acknowledgements, but this runner does not support them; "
                "they will not be called (run it on the 'threads', 'cooperative' or 'ray' runner)",
                self.name,
            )

    def emit_source(self, items: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        """Emit a source's ``items`` with ``outp``; an ``Acked`` one attaches its ack.

        Example:
            >>> from nanostream._core.acks import Acked
            >>> from nanostream._core.context import NodeContext
            >>> out = []
            >>> NodeContext("src").emit_source([0, Acked(1, print)], out.append)
            >>> out
            [0, 1]
        """
        drive_source(items, outp, Acked, self.acked_outp(outp))

    def acked_outp(self, outp: Callable[[Any], Any]) -> Callable[[Any], None]:
        """How a source emits an ``Acked(item, ack)``: ``outp(item)``, then attach ``ack``.

        The ack is attached even when ``outp`` raises (the item may have gone out with its
        batch before a stop was raised). A runner's context may do it faster.

        Example:
            >>> from nanostream._core.acks import Acked
            >>> from nanostream._core.context import NodeContext
            >>> out = []
            >>> NodeContext("src").acked_outp(out.append)(Acked(1, print))
            >>> out
            [1]
        """
        attach = self.attach_ack

        def emit(acked: Any) -> None:
            item, ack = acked
            try:
                outp(item)
            finally:
                attach(ack)

        return emit

    def between_items(self) -> None:
        """A source waits between two items (``NanoNode.sleep``), or a node is between two
        outputs of one item (a file reader amid a file): a checkpoint's barrier may go out
        now, so that a source waiting for input, or a long item, does not hold it back."""
        if self.on_idle is not None:
            self.on_idle()

    def flush_outputs(self) -> None:
        """Send on what the node has emitted and its outboxes still hold (its own thread):
        the node is about to wait a while (:func:`~nanostream._core.aio.wait_future`).
        The base class (a node function called by hand) holds nothing."""

    def release_items(self, keep: int = 0) -> None:
        """A stateful node has emitted everything it read except its last ``keep`` items."""

    def request_stop(self) -> None:
        """Ask the run to stop gracefully, without waiting. The base class has no run."""

    def end_outputs(self) -> None:
        """The node's outputs end now: its downstreams see the end of their input.

        The base class (a node function called by hand) has no downstreams to tell.
        """

    def wait_for_run_outcome(self) -> None:
        """Wait until the rest of the run has ended well; raise ``RunAborted`` if it failed.

        For a node that publishes its work when its input ends (a file writer renaming its
        file into place): it calls this first, so that a run that fails publishes nothing
        from it. *The rest of the run* is every node except this one, the nodes downstream
        of it (they wait for its outputs) and the other nodes waiting here (and theirs):
        this returns once each of those has ended and none failed, and raises
        :class:`~nanostream.RunAborted` as soon as the run fails or is aborted. A graceful
        stop is no failure.

        The base class has no run to wait for (a node function called by hand): it returns
        at once.
        """
