"""Kafka through confluent-kafka (librdkafka): :class:`KafkaSource` and :class:`KafkaSink`.

Install the extra with ``pip install 'nanostream[kafka]'``. The source commits a record's
offset only once the pipeline has acknowledged it, and the sink acknowledges an item only
once its record is delivered, so ``KafkaSource > ... > KafkaSink`` is at-least-once end
to end, across ``kill -9`` and rebalances; in a run with a state store,
``KafkaSink(exactly_once=True)`` writes each checkpoint's records once, in a Kafka
transaction. Secrets in ``config`` (``sasl.password``,
``ssl.key.password``, ``ssl.key.pem`` ...) are masked in reprs, pipeline files, logs and
errors. See docs/kafka.md.

Example:
    >>> from nanostream.nodes.kafka import KafkaSink, KafkaSource
    >>> KafkaSource("localhost:9092", ["orders", "refunds"], "billing").topics
    ['orders', 'refunds']
    >>> KafkaSink("localhost:9092", "invoices", key="id").idempotent
    True
"""

from __future__ import annotations

from .._toolkit import ConnectorError
from ._client import KafkaRecord
from .sink import KafkaSink
from .source import KafkaSource

__all__ = ["ConnectorError", "KafkaRecord", "KafkaSink", "KafkaSource"]
