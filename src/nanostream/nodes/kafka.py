"""Kafka nodes.

The public import path of these nodes; the code lives in :mod:`nanostream.connectors.kafka`.

Example:
    >>> from nanostream.connectors import kafka as code
    >>> from nanostream.nodes import kafka
    >>> kafka.KafkaSource is code.KafkaSource
    True
"""

from __future__ import annotations

from ..connectors.kafka import ConnectorError, KafkaRecord, KafkaSink, KafkaSource

__all__: list[str] = [
    "ConnectorError",
    "KafkaRecord",
    "KafkaSink",
    "KafkaSource",
]
