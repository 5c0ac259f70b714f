"""Redis stream nodes.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.redis`.

Example:
    >>> from nanostream.connectors import redis as code
    >>> from nanostream.nodes import redis
    >>> redis.RedisStreamSink is code.RedisStreamSink
    True
"""

from __future__ import annotations

from ..connectors.redis import ConnectorError, RedisStreamSink, RedisStreamSource

__all__: list[str] = [
    "ConnectorError",
    "RedisStreamSink",
    "RedisStreamSource",
]
