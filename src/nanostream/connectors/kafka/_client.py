"""What the Kafka source and sink share: the client settings (with their secrets masked),
the formats of keys and values, and the record a source emits.

Example:
    >>> from nanostream.connectors.kafka._client import ClientSettings
    >>> settings = ClientSettings(
    ...     "KafkaSource", "broker:9092", {"sasl.password": "hunter2-pw", "linger.ms": 5}
    ... )
    >>> settings.shown
    {'sasl.password': '***', 'linger.ms': 5}
    >>> settings.secrets.scrub("login with hunter2-pw failed")
    'login with *** failed'
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple, cast

from ..._core.errors import OptionError, require
from .._secrets import MASK, Secrets, install_log_masking
from .._toolkit import ConnectorError, connector_error

__all__ = [
    "ClientSettings",
    "Format",
    "KEEPS_BYTES",
    "KEEPS_DATA",
    "KafkaRecord",
    "decoder",
    "encoder",
    "field_getter",
    "header_pairs",
    "is_secret_setting",
    "require_kafka",
]

log = logging.getLogger("nanostream.kafka")

#: The logger librdkafka's own messages go to (through the client's ``logger`` setting).
CLIENT_LOG = logging.getLogger("nanostream.kafka.client")

_LOGGERS = ("nanostream", "nanostream.kafka", "nanostream.kafka.client")

#: librdkafka settings that hold a credential, besides those whose names say password or
#: secret. (Not the connectors' general rule for header names: ``session.timeout.ms`` is
#: no secret, and a remembered secret is masked in every message of the process.)
_SECRET_SETTINGS = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "ssl_key",
    }
)

#: A key or value format: ``"bytes"``, ``"str"``, ``"json"`` (``"auto"`` for a sink), or a
#: function of yours (a serialiser for a sink, a deserialiser for a source).
Format = str | Callable[[Any], Any]


#: Raise :class:`~nanostream.MissingDependencyError` unless confluent-kafka is installed.
require_kafka: Callable[[], Any] = partial(
    require, "confluent_kafka", extra="kafka", package="confluent-kafka"
)


def is_secret_setting(key: str) -> bool:
    """True when the librdkafka setting ``key`` holds a credential.

    Example:
        >>> from nanostream.connectors.kafka._client import is_secret_setting
        >>> is_secret_setting("ssl.key.pem"), is_secret_setting("sasl.username")
        (True, False)
        >>> is_secret_setting("session.timeout.ms")  # a number, not a session's secret
        False
    """
    lowered = key.lower()
    return lowered in _SECRET_SETTINGS or "password" in lowered or "secret" in lowered


class ClientSettings:
    """One node's librdkafka settings: checked when the node is built, secrets masked.

    ``reserved`` maps the settings the node sets itself to the argument to use instead;
    giving one of them in ``config`` is refused. A value written as ``***`` (what
    ``to_yaml`` and reprs show for a secret) is refused too: it is not the secret.
    """

    def __init__(
        self,
        node: str,
        bootstrap_servers: str,
        config: Mapping[str, Any] | None,
        reserved: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            raise OptionError(
                f"{node}: bootstrap_servers must be 'host:port' (or several, comma-separated), "
                f"got {bootstrap_servers!r}"
            )
        if config is not None and not isinstance(config, Mapping):
            raise OptionError(
                f"{node}: config must be a mapping of librdkafka settings, got a "
                f"{type(config).__name__}"
            )
        settings = dict(config or {})
        self.secrets = Secrets()
        for key, value in settings.items():
            if not isinstance(key, str):
                raise OptionError(f"{node}: config keys are librdkafka setting names, got {key!r}")
            if is_secret_setting(key):
                if value == MASK:
                    raise OptionError(
                        f"{node}: config[{key!r}] is {MASK!r}, the mask shown in place of a "
                        "secret; give the real value (in a pipeline file, as ${VARIABLE})"
                    )
                self.secrets.add(str(value))
            if key == "bootstrap.servers":
                raise OptionError(f"{node}: give the brokers as bootstrap_servers=, not in config")
            if reserved and key in reserved:
                raise OptionError(f"{node}: {node} sets {key!r} itself; {reserved[key]}")
        self.node = node
        self.bootstrap_servers = bootstrap_servers
        self.config = settings
        #: The settings as shown in reprs and pipeline files: secrets replaced by ``***``.
        self.shown = {k: (MASK if is_secret_setting(k) else v) for k, v in settings.items()}

    def client_config(self, **fixed: Any) -> dict[str, Any]:
        """The configuration to make a client with: the user's settings and ``fixed``."""
        install_log_masking(*_LOGGERS)
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": CLIENT_LOG,
            **self.config,
            **fixed,
        }

    def error(self, message: str, cause: BaseException | None = None) -> ConnectorError:
        """A :class:`ConnectorError` for ``message`` (about ``cause``), secrets scrubbed."""
        if cause is None:
            return ConnectorError(self.secrets.scrub(message))
        return connector_error(f"{message}: {cause}", cause, self.secrets)


class KafkaRecord(NamedTuple):
    """One record a :class:`KafkaSource` read: where it is in the log, and what it holds.

    ``key`` and ``value`` are decoded by the source's ``key_format`` and ``value_format``;
    ``headers`` is a tuple of ``(name, value)`` pairs, values as bytes (or None), in their
    order (a name may repeat); ``timestamp`` is in milliseconds since the epoch, or None.
    A :class:`KafkaSink` given a ``KafkaRecord`` writes its key, value and headers unless
    told otherwise. It is a named tuple: immutable, and cheap to make.

    Example:
        >>> from nanostream.nodes.kafka import KafkaRecord
        >>> record = KafkaRecord("orders", 0, 41, b"k1", b'{"n": 1}', (("trace", b"x"),), None)
        >>> record.topic, record.partition, record.offset
        ('orders', 0, 41)
    """

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp: int | None = None


# ----------------------------------------------------------------------------- formats
def _to_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"format 'bytes' takes bytes, got a {type(value).__name__}")


def _str_to_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"format 'str' takes text, got a {type(value).__name__}")


def _json_to_bytes(value: Any) -> bytes | None:
    return None if value is None else json.dumps(value).encode()


def _auto_to_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def _bytes_to_str(data: bytes | None) -> str | None:
    return None if data is None else data.decode()


def _bytes_to_json(data: bytes | None) -> Any:
    return None if data is None else json.loads(data)


def _same(data: bytes | None) -> bytes | None:
    return data


_ENCODERS: dict[str, Callable[[Any], bytes | None]] = {
    "bytes": _to_bytes,
    "str": _str_to_bytes,
    "json": _json_to_bytes,
    "auto": _auto_to_bytes,
}
#: The encoders that send bytes as they are (a caller may skip them for bytes).
KEEPS_BYTES: frozenset[Callable[[Any], bytes | None]] = frozenset(
    {_to_bytes, _str_to_bytes, _auto_to_bytes}
)
#: The decoder that returns the bytes as they are (a caller may skip calling it).
KEEPS_DATA: Callable[[bytes | None], Any] = _same
_DECODERS: dict[str, Callable[[bytes | None], Any]] = {
    "bytes": _same,
    "str": _bytes_to_str,
    "json": _bytes_to_json,
}


def encoder(node: str, argument: str, fmt: Format) -> Callable[[Any], Any]:
    """The function that turns a key or value into bytes for ``fmt`` (checked now).

    ``"bytes"`` takes bytes; ``"str"`` text (UTF-8); ``"json"`` anything JSON can hold;
    ``"auto"`` bytes as they are, text as UTF-8, anything else as JSON; a callable is a
    serialiser of yours (Avro, Protobuf, a Schema Registry serialiser) returning bytes.
    ``None`` is always sent as no key or no value (a tombstone).

    Example:
        >>> from nanostream.connectors.kafka._client import encoder
        >>> encoder("KafkaSink", "value_format", "auto")({"n": 1})
        b'{"n": 1}'
    """
    if callable(fmt):
        return fmt
    if fmt in _ENCODERS:
        return _ENCODERS[fmt]
    raise OptionError(
        f"{node}: {argument} must be 'bytes', 'str', 'json', 'auto' or a function returning "
        f"bytes (a serialiser), got {fmt!r}"
    )


def decoder(node: str, argument: str, fmt: Format) -> Callable[[bytes | None], Any]:
    """The function that turns a record's key or value bytes into a value, for ``fmt``.

    ``"bytes"`` keeps the bytes, ``"str"`` decodes UTF-8, ``"json"`` parses JSON, and a
    callable is a deserialiser of yours. A missing key or value (``None``) stays ``None``
    for the built-in formats.

    Example:
        >>> from nanostream.connectors.kafka._client import decoder
        >>> decoder("KafkaSource", "value_format", "json")(b'[1, 2]')
        [1, 2]
    """
    if callable(fmt):
        return fmt
    if fmt in _DECODERS:
        return _DECODERS[fmt]
    raise OptionError(
        f"{node}: {argument} must be 'bytes', 'str', 'json' or a function of the bytes "
        f"(a deserialiser), got {fmt!r}"
    )


def field_getter(node: str, argument: str, spec: Any) -> Callable[[Any], Any] | None:
    """How to take ``argument`` from an item: ``None``, a field name, or a callable.

    A field name reads ``item[name]`` from a mapping and the attribute ``name`` of any
    other item.

    Example:
        >>> from nanostream.connectors.kafka._client import field_getter
        >>> field_getter("KafkaSink", "key", "id")({"id": 7})
        7
    """
    if spec is None:
        return None
    if callable(spec):
        return cast(Callable[[Any], Any], spec)
    if isinstance(spec, str):

        def get(item: Any) -> Any:
            if isinstance(item, Mapping):
                if spec in item:
                    return item[spec]
            elif hasattr(item, spec):
                return getattr(item, spec)
            raise KeyError(f"{node}: the item has no field {spec!r} (its {argument})")

        return get
    raise OptionError(
        f"{node}: {argument} must be a field name or a function of the item, got {spec!r}"
    )


def header_pairs(headers: Any) -> list[tuple[str, bytes | None]] | None:
    """Headers as librdkafka takes them: ``(name, bytes)`` pairs, text values as UTF-8.

    Example:
        >>> from nanostream.connectors.kafka._client import header_pairs
        >>> header_pairs({"trace": "abc", "raw": b"\\x00"})
        [('trace', b'abc'), ('raw', b'\\x00')]
    """
    if headers is None:
        return None
    pairs: Sequence[Any] = list(headers.items()) if isinstance(headers, Mapping) else headers
    out: list[tuple[str, bytes | None]] = []
    for pair in pairs:
        name, value = pair
        if isinstance(value, str):
            value = value.encode()
        elif value is not None and not isinstance(value, bytes):
            raise TypeError(f"header {name!r} must be text or bytes, got a {type(value).__name__}")
        out.append((str(name), value))
    return out
