"""The Ray runner: the same pipeline, each node an actor on a Ray cluster (``runner="ray"``).

Needs the ``ray`` extra: ``pip install 'nanostream[ray]'``.

Mapping. Every plan node becomes one Ray actor (``replicas`` actors for a replicated node)
that hosts the node function for its whole life in its own thread, on the runtime every
runner shares (:mod:`nanostream._engine`), reading a bounded input channel. Outputs
move to downstream actors in batches, sent when full or after a short linger, with at
most ``max_in_flight`` calls in flight per link: a call waits at the receiver while its
channel is full, so back-pressure holds across processes and machines.
The end of stream is a marker that follows a stream's last batch in order; a node ends
after one marker per upstream instance. The first failure aborts the actors (they are
killed after a short grace) and the run raises :class:`~nanostream.NodeFailed` whose
cause is the remote exception (with its ``__cause__`` chain), its traceback rebuilt from
the remote frames. ``stop()`` drains; ``stats()`` is gathered from the actors. A node
with ``tick_interval`` gets ``TICK`` when its channel stays empty that long;
``end_outputs()`` sends the end markers at once; ``request_stop()`` reaches the driver.
Sources' acknowledgements (``Acked``) are called in the source's actor once every sink
instance has the items (see :mod:`nanostream.runners.ray._actor`).

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

from ._errors import RayRunnerError, RemoteError
from ._run import RayRun
from ._runner import RayNodeOptions, RayRunner
from ._session import release_actors

__all__ = [
    "RayNodeOptions",
    "RayRun",
    "RayRunner",
    "RayRunnerError",
    "RemoteError",
    "release_actors",
]

#: The example above starts Ray: the suite skips it where Ray is not installed.
__doctest_requires__ = {"nanostream.runners.ray": ("ray",)}
