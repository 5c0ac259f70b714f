"""Where the file nodes' files live and how they are packed.

* **Compression by extension**: a path ending in ``.gz``, ``.bz2``, ``.xz`` or ``.zst``
  is read through a decompressor and written through a compressor (the standard
  library's ``gzip``, ``bz2`` and ``lzma``; ``zstandard`` for ``.zst``, from the
  ``compress`` extra). :func:`decompressing` and :func:`compressing` wrap a binary file.
* **Object storage**: a path that is a URL (``s3://bucket/key``, ``memory://...``,
  ``gs://``, ``az://``, any protocol of ``fsspec``) is opened through ``fsspec`` with the
  node's ``storage_options``; ``file://`` URLs are local paths. :func:`filesystem` gives
  the ``fsspec`` file system of a URL, :func:`require_url` checks at build time that its
  package is installed.
* **Credentials**: :class:`StorageOptions` keeps a node's ``storage_options``, remembers
  their secrets so that logs and error messages mask them, and shows them masked.

Example:
    >>> from nanostream.connectors._filesystems import compression_of, is_url
    >>> compression_of("rows.jsonl.gz"), compression_of("rows.jsonl")
    ('gzip', None)
    >>> is_url("s3://bucket/in/rows.csv"), is_url("file:///data/rows.csv"), is_url("/data")
    (True, False, False)
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import IO, Any, cast

from .._core.errors import MissingDependencyError, require
from ._secrets import MASK, Secrets, install_log_masking, is_sensitive_name, mask_url

__all__ = [
    "COMPRESSIONS",
    "StorageOptions",
    "compressing",
    "compression_of",
    "decompressing",
    "filesystem",
    "is_decompression_error",
    "is_url",
    "local_path",
    "require_compression",
    "require_reader",
    "require_url",
    "url_exists",
]

COMPRESSIONS: dict[str, str] = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
"""The file name endings that mean a compressed file, and the compression each names."""

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")

# The fsspec protocols whose implementation is a package of its own, with the extra that
# installs it (None: no extra; the message names the package).
_BACKENDS: dict[str, tuple[str, str | None]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", None),
    "gcs": ("gcsfs", None),
    "az": ("adlfs", None),
    "abfs": ("adlfs", None),
    "abfss": ("adlfs", None),
}


def compression_of(path: str) -> str | None:
    """The compression that ``path``'s extension names, or None.

    Example:
        >>> from nanostream.connectors._filesystems import compression_of
        >>> [compression_of(p) for p in ("a.csv.bz2", "a.xz", "s3://b/a.zst", "a.GZ")]
        ['bz2', 'xz', 'zstd', 'gzip']
    """
    _, ext = os.path.splitext(path)
    return COMPRESSIONS.get(ext.lower())


_zstandard: Callable[[], Any] = partial(require, "zstandard", extra="compress")


def require_compression(path: str) -> None:
    """Raise :class:`~nanostream.MissingDependencyError` if ``path``'s compression needs a
    package that is not installed (``zstandard`` for ``.zst``)."""
    if compression_of(path) == "zstd":
        _zstandard()


def decompressing(raw: IO[bytes], compression: str | None) -> IO[bytes]:
    """A binary file that reads ``raw`` decompressed (``raw`` itself without compression).

    Several compressed streams one after the other (gzip members, as appending writes
    them; bz2, xz or zstd streams) read as one. Closing the result leaves ``raw`` open.

    Example:
        >>> import gzip, io
        >>> from nanostream.connectors._filesystems import decompressing
        >>> data = gzip.compress(b"one\\n") + gzip.compress(b"two\\n")
        >>> decompressing(io.BytesIO(data), "gzip").read()
        b'one\\ntwo\\n'
    """
    if compression is None:
        return raw
    if compression == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if compression == "bz2":
        return bz2.BZ2File(raw, "rb")
    if compression == "xz":
        return lzma.LZMAFile(raw, "rb")
    return io.BufferedReader(_ZstdReader(raw, _zstandard()), 1 << 16)


class _ZstdReader(io.RawIOBase):
    """Reads zstd frames one after the other, and says so when the last one is cut short
    (``zstandard``'s own stream reader ends quietly there)."""

    def __init__(self, raw: IO[bytes], zstd: Any) -> None:
        super().__init__()
        self._raw = raw
        self._context = zstd.ZstdDecompressor()
        self._frame: Any = None
        self._out = b""
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._at >= len(self._out):
            chunk = self._raw.read(1 << 14)
            if not chunk:
                if self._frame is not None and not self._frame.eof:
                    raise EOFError("the zstd data ended before the end of its last frame")
                return 0
            pieces = []
            while chunk:
                if self._frame is None or self._frame.eof:
                    self._frame = self._context.decompressobj()
                pieces.append(self._frame.decompress(chunk))
                chunk = self._frame.unused_data if self._frame.eof else b""
            self._out, self._at = b"".join(pieces), 0
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._out) - self._at)
        view[:n] = self._out[self._at : self._at + n]
        self._at += n
        return n


def compressing(raw: IO[bytes], compression: str | None) -> IO[bytes]:
    """A binary file whose writes reach ``raw`` compressed; closing it ends the compressed
    stream and leaves ``raw`` open (the caller closes it).

    Levels are the usual command-line defaults: gzip 6, bz2 9, xz 6, zstd 3.

    Example:
        >>> import gzip, io
        >>> from nanostream.connectors._filesystems import compressing
        >>> raw = io.BytesIO()
        >>> with compressing(raw, "gzip") as out:
        ...     _ = out.write(b"hello\\n")
        >>> gzip.decompress(raw.getvalue())
        b'hello\\n'
    """
    if compression is None:
        return raw
    if compression == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0))
    if compression == "bz2":
        return bz2.BZ2File(raw, "wb")
    if compression == "xz":
        return lzma.LZMAFile(raw, "wb")
    writer: IO[bytes] = _zstandard().ZstdCompressor().stream_writer(raw, closefd=False)
    return writer


def is_decompression_error(exc: BaseException, compression: str | None) -> bool:
    """True when ``exc`` says that compressed data is cut short or corrupt."""
    if compression is None:
        return False
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)):
        return True
    if compression == "zstd":
        return type(exc).__name__ == "ZstdError"
    return compression == "bz2" and isinstance(exc, OSError) and "data stream" in str(exc)


# ----------------------------------------------------------------------------- URLs
def is_url(path: str) -> bool:
    """True when ``path`` is a URL for ``fsspec`` (``file://`` URLs are local paths).

    Example:
        >>> from nanostream.connectors._filesystems import is_url
        >>> is_url("memory://bucket/a.csv"), is_url("C:\\\\data\\\\a.csv"), is_url("a.csv")
        (True, False, False)
    """
    return bool(_URL.match(path)) and not path.lower().startswith("file://")


def local_path(path: str) -> str:
    """``path`` without a ``file://`` prefix.

    Example:
        >>> from nanostream.connectors._filesystems import local_path
        >>> local_path("file:///data/a.csv"), local_path("/data/a.csv")
        ('/data/a.csv', '/data/a.csv')
    """
    if path[:7].lower() == "file://":
        return path[7:]
    return path


_fsspec: Callable[[], Any] = partial(require, "fsspec", extra="storage")


def require_url(url: str) -> None:
    """Raise :class:`~nanostream.MissingDependencyError` (with the ``pip install`` to run)
    when the package that ``url``'s protocol needs is not installed; contacts nothing."""
    fsspec = _fsspec()
    protocol = url.split("://", 1)[0].rsplit("::", maxsplit=1)[-1].lower()
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        package, extra = _BACKENDS.get(protocol, (f"the fsspec backend for {protocol}://", None))
        if extra is not None:
            raise MissingDependencyError(package, extra=extra) from None
        raise MissingBackendError(package, protocol) from None
    except ValueError:
        raise MissingBackendError(f"an fsspec backend for {protocol}://", protocol) from None


def require_reader(storage_options: object, directory: str | None = None) -> None:
    """For a reader: check at build time that what it was told to read from can be opened.

    A URL ``directory`` needs its protocol's package; ``storage_options`` need ``fsspec``.
    (Each URL an item names is checked when it is read.)
    """
    if directory is not None and is_url(directory):
        require_url(directory)
    elif storage_options is not None:
        _fsspec()


class MissingBackendError(MissingDependencyError):
    """The ``fsspec`` implementation of a URL's protocol is not installed.

    Example:
        >>> from nanostream.connectors._filesystems import MissingBackendError
        >>> print(MissingBackendError("gcsfs", "gs"))
        gs:// URLs need the 'gcsfs' package: pip install gcsfs
    """

    def __init__(self, package: str, protocol: str) -> None:
        self.package = package
        self.extra = ""
        install = f"pip install {package}" if " " not in package else "install it"
        ImportError.__init__(self, f"{protocol}:// URLs need the {package!r} package: {install}")


def filesystem(url: str, options: StorageOptions | None) -> tuple[Any, str]:
    """The ``fsspec`` file system of ``url`` and the path within it.

    Example:
        >>> from nanostream.connectors._filesystems import filesystem
        >>> fs, path = filesystem("memory://docs/a.txt", None)
        >>> type(fs).__name__, path
        ('MemoryFileSystem', '/docs/a.txt')
    """
    require_url(url)
    fsspec = _fsspec()
    given = {} if options is None else options.given
    return fsspec.core.url_to_fs(url, **given)  # type: ignore[no-any-return]


def url_exists(url: str, options: StorageOptions | None) -> bool:
    """True when an object or file is stored at ``url``."""
    fs, path = filesystem(url, options)
    fs.invalidate_cache(path)
    return bool(fs.isfile(path))


# ----------------------------------------------------------------------------- credentials
# The loggers whose records are masked once a node has storage options: nanostream's and
# those of fsspec and of the storage libraries under it.
_LOGGERS = (
    "nanostream",
    "nanostream.watch",
    "fsspec",
    "s3fs",
    "aiobotocore",
    "botocore",
    "botocore.credentials",
    "gcsfs",
    "adlfs",
)


def _is_credential(name: str) -> bool:
    lowered = name.lower()
    return (
        is_sensitive_name(lowered)
        or lowered.endswith(("key", "key_id", "connection_string", "sas_token"))
        or lowered in ("anon_token", "sas", "profile_token")
    )


def _masked(value: Any, name: str = "") -> Any:
    if name and _is_credential(name):
        return MASK
    if isinstance(value, Mapping):
        return {k: _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def _secret_values(value: Any, name: str = "") -> Iterator[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _secret_values(v, str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _secret_values(v, name)
    elif isinstance(value, str) and name and _is_credential(name):
        yield value


class StorageOptions:
    """A node's ``storage_options`` for ``fsspec``: given as they are, shown masked.

    Every value whose name says it is a credential (``key``, ``secret``, ``token``,
    ``password``, ``aws_secret_access_key``, ``account_key``, ``sas_token``, ... at any
    depth, such as in ``client_kwargs``) is remembered as a secret, so that log records
    and error messages show ``***`` instead, and :attr:`shown` (what the node keeps as its
    ``storage_options`` attribute, and what ``to_yaml`` writes) has ``***`` in its place.

    Example:
        >>> from nanostream.connectors._filesystems import StorageOptions
        >>> options = StorageOptions({"key": "AKIA-EXAMPLE", "secret": "wJalr-EXAMPLE",
        ...                           "client_kwargs": {"region_name": "eu-west-1"}})
        >>> options.shown
        {'key': '***', 'secret': '***', 'client_kwargs': {'region_name': 'eu-west-1'}}
        >>> options.secrets.scrub("signature mismatch for wJalr-EXAMPLE")
        'signature mismatch for ***'
        >>> "wJalr" in repr(options)
        False
    """

    def __init__(self, given: Mapping[str, Any] | None) -> None:
        self.given: dict[str, Any] = dict(given or {})
        self.secrets = Secrets(_secret_values(self.given))
        self.shown: dict[str, Any] = _masked(self.given)
        if self.given:
            install_log_masking(*_LOGGERS)

    def __repr__(self) -> str:
        return f"StorageOptions({self.shown!r})"

    def __bool__(self) -> bool:
        return bool(self.given)
