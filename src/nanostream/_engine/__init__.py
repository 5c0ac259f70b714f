"""The runtime every runner shares: channels, outboxes, the input reader, the context.

A runner decides only how a node waits and wakes (threads and conditions, greenlets and a
hub, actors and remote calls); what a node's ``inp`` and ``outp`` do is here, once:

* :mod:`nanostream._engine.channel`: the bounded input queue of a node (``Channel``), the
  byte budget of ``queue_bytes``;
* :mod:`nanostream._engine.outbox`: the outboxes that fill channels in batches (towards
  any ``Downstream``: a channel, or a remote stand-in for one);
* :mod:`nanostream._engine.reader`: the ``inp`` of a node (``InputReader``): slices of its
  batches, ticks, acknowledgement markers;
* :mod:`nanostream._engine.node`: the node's context (``EngineContext``), how its function
  is run and ended, how markers are passed on.

It builds on :mod:`nanostream._core` (which imports nothing of it) and is not a public API.
"""
