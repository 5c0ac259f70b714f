"""The runtime every runner shares: channels, outboxes and the input reader.

A runner decides only how a node waits and wakes (threads and conditions, greenlets and a
hub); what a node's ``inp`` and ``outp`` do is here, once:

* :mod:`nanostream._engine.channel`: the bounded input queue of a node (``Channel``), the
  outboxes that fill it in batches, the byte budget of ``queue_bytes``;
* :mod:`nanostream._engine.reader`: the ``inp`` of a node (``InputReader``): slices of its
  batches, ticks, acknowledgement markers.

It builds on :mod:`nanostream._core` (which imports nothing of it) and is not a public API.
"""
