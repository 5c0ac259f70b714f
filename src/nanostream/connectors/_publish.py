"""Files published atomically: written under a hidden temporary name (or in an upload
folder, for an object store) and then renamed or put whole; numbered output files; the
refusal of an output that exists; and the clean-up of what a killed writer left behind.
"""

from __future__ import annotations

import glob
import io
import logging
import os
import posixpath
import re
import secrets
import shutil
import socket
import string
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from .._core.errors import GraphError
from ._fileread import FormatError
from ._filesystems import (
    StorageOptions,
    compressing,
    compression_of,
    decompressing,
    filesystem,
    is_decompression_error,
    is_url,
    local_path,
    require_compression,
)

__all__ = [
    "AtomicFile",
    "OutputExistsError",
    "numbered_files",
    "publish_once",
    "refusal",
    "remove_leftovers",
    "store_leftovers",
    "upload",
]


log = logging.getLogger("nanostream")


class OutputExistsError(GraphError, FileExistsError):
    """A writer would replace a file that exists, and was not told what to do with it.

    Its earlier content may be the output of an earlier run that nothing will deliver
    again, so a writer never replaces it silently: pass ``append=True`` to add to it, or
    ``overwrite=True`` to replace it.

    Example:
        >>> import pathlib, tempfile, nanostream
        >>> from nanostream.nodes import FileWriter, OutputExistsError
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "log.txt"
        >>> _ = out.write_text("an earlier run\\n")
        >>> src = nanostream.from_iterable(["new"])
        >>> _ = src > FileWriter(out, name="log")
        >>> try:
        ...     src.global_start()
        ... except OutputExistsError as exc:
        ...     print(exc)
        node 'log' would replace '/.../log.txt', which exists (the output of an earlier
        run?); pass append=True to add to it, or overwrite=True to replace it
    """


# ----------------------------------------------------------------------------- atomic files
_TMP_SUFFIX = re.compile(r"\.[0-9a-f]{8}\.tmp$")
_STAGING = "nanostream-upload-"  # + host + "-" + the writing process's id + "-" + random
_STAGING_NAME = re.compile(rf"^{_STAGING}(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+$")


def _staging_prefix() -> str:
    """The start of this process's upload folders' names: the writer's host and process.

    The host is in it because a temporary directory may be shared by machines or
    containers whose process ids are not this one's.
    """
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
    return f"{_STAGING}{host}-{os.getpid()}-"


WHOLE_PUTS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss", "r2"})
"""The fsspec protocols whose put shows an object only once it is complete (object stores:
one put, or a multipart upload completed at its end). Elsewhere (``memory://``, an SFTP
or HDFS file system) a put writes in place, so a file is put under a hidden name and then
renamed."""

CONDITIONAL_PUTS: Mapping[str, Mapping[str, Any]] = {
    "s3": {"mode": "create"},
    "s3a": {"mode": "create"},
    "az": {"overwrite": False},
    "abfs": {"overwrite": False},
    "abfss": {"overwrite": False},
}
"""The fsspec protocols whose put can be made conditional on the key being free, with the
arguments of ``put_file`` that make it so: S3's ``If-None-Match: *`` (s3fs's
``mode="create"``), Azure's ``If-None-Match: *`` (adlfs's ``overwrite=False``). A writer
that must not replace an object publishes with it, so of two writers racing to publish the
same key the second gets :class:`OutputExistsError` instead of replacing the first one's
object. On other stores the key is looked up just before the put, which leaves a short
window."""


class AtomicFile:
    """A file written under a hidden temporary name beside ``target``, renamed when done.

    A reader never sees half a file: ``target`` appears (or is replaced) only by
    :meth:`commit`; :meth:`discard` removes the temporary file. With ``append=True`` the
    temporary file starts as a copy of ``target``'s existing content. With
    ``replace=False`` :meth:`commit` never replaces a file that exists by then: it raises
    :class:`OutputExistsError` instead (``node`` names the writer in that message, and
    ``can_append`` says whether to suggest ``append=True``).

    The temporary name is ``.<target's name>.<8 hex digits>.tmp``; one left behind by a
    process that was killed is found by :meth:`leftovers`.

    A ``target`` ending in ``.gz``, ``.bz2``, ``.xz`` or ``.zst`` is written compressed
    (``file`` takes the content; appending adds a compressed stream after the existing
    ones, which every reader of the format reads as one). A ``target`` that is a URL
    (``s3://bucket/key``, ``memory://...``; ``storage_options`` are ``fsspec``'s) is
    built in a local temporary folder and uploaded whole, in one put, by :meth:`commit`:
    an object store has no rename, and a reader never sees part of an object.
    ``destination`` is the path or URL published to (as given); ``target`` is the local
    file (for a URL, the one uploaded).

    Example:
        >>> import tempfile, pathlib
        >>> from nanostream.connectors._publish import AtomicFile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> f = AtomicFile(target)
        >>> _ = f.file.write("hello\\n")
        >>> target.exists(), [p.name for p in AtomicFile.leftovers(target)] == [f.tmp.name]
        (False, True)
        >>> f.commit() == str(target), target.read_text()
        (True, 'hello\\n')
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        binary: bool = False,
        encoding: str = "utf-8",
        newline: str | None = None,
        append: bool = False,
        fsync: bool = False,
        replace: bool = True,
        node: str = "the writer",
        can_append: bool = True,
        storage_options: StorageOptions | None = None,
    ) -> None:
        self.destination = os.fspath(target)
        self.compression = compression_of(self.destination)
        require_compression(self.destination)
        self.fsync = fsync
        self.replace = replace
        self.node = node
        self.can_append = can_append  # whether the writer offers append=True (messages)
        self._upload: tuple[Any, str] | None = None
        self._staging: str | None = None
        if is_url(self.destination):
            fs, inner = filesystem(self.destination, storage_options)
            self._upload = (fs, inner)
            self._staging = tempfile.mkdtemp(prefix=_staging_prefix())
            self.target = Path(self._staging) / (posixpath.basename(inner) or "object")
        else:
            self.target = Path(local_path(self.destination))
            self.target.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = self.target.with_name(f".{self.target.name}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:  # pragma: no cover - 32 random bits collided
                continue
            break
        self.tmp = tmp
        raw = os.fdopen(fd, "wb", buffering=1 << 16)
        self.existing = 0
        try:
            if append:
                self.existing = self._copy_existing(raw)
            packed = compressing(raw, self.compression)
        except BaseException:
            raw.close()
            os.unlink(tmp)
            self._remove_staging()
            raise
        self._raw = raw
        self._packed = packed if self.compression is not None else None
        self.file: IO[Any] = (
            packed if binary else io.TextIOWrapper(packed, encoding=encoding, newline=newline)
        )
        self.done = False

    def _copy_existing(self, raw: IO[bytes]) -> int:
        """Copy the content there is at the destination into ``raw``; how much there was.

        For a compressed file that is the size of its compressed streams, or 0 when they
        hold no data (so that a writer with a header still writes it).
        """
        if self._upload is not None:
            fs, inner = self._upload
            fs.invalidate_cache(inner)
            if not fs.isfile(inner):
                return 0
            with fs.open(inner, "rb") as old:
                shutil.copyfileobj(old, raw)
        elif self.target.exists():
            with open(self.target, "rb") as old:
                shutil.copyfileobj(old, raw)
        else:
            return 0
        size = raw.tell()
        if size and self.compression is not None:
            raw.flush()
            try:
                with open(self.tmp, "rb") as copy, decompressing(copy, self.compression) as data:
                    if not data.read(1):
                        return 0
            except Exception as exc:
                if not is_decompression_error(exc, self.compression):
                    raise
                raise FormatError(
                    f"{self.node} appends to this file, but it is not readable as "
                    f"{self.compression} ({exc}); write to a new file, or pass overwrite=True",
                    source=self.destination,
                ) from exc
        return size

    @staticmethod
    def leftovers(target: str | os.PathLike[str]) -> list[Path]:
        """The temporary files of ``target`` that are there now (e.g. left by a crash).

        ``target`` may hold glob wildcards (``*``) to cover several targets. A URL has
        none beside it on the local disk (see :func:`store_leftovers`).
        """
        if is_url(os.fspath(target)):
            return []
        path = Path(local_path(os.fspath(target)))
        found = glob.glob(os.path.join(glob.escape(str(path.parent)), f".{path.name}.*.tmp"))
        return sorted(Path(p) for p in found if _TMP_SUFFIX.search(p))

    def _close(self) -> None:
        """Flush (and fsync) and close the temporary file."""
        if self._packed is not None:
            self.file.close()  # ends the compressed stream; the raw file stays open
        else:
            self.file.flush()
        self._raw.flush()
        if self.fsync:
            os.fsync(self._raw.fileno())
        self._raw.close()
        self.file.close()

    def seal(self, hidden: str | os.PathLike[str]) -> None:
        """Flush, close and rename the finished file to ``hidden`` (a local path beside
        ``target``), to be published later by renaming it to ``target``.

        Example:
            >>> import tempfile, pathlib
            >>> from nanostream.connectors._publish import AtomicFile
            >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
            >>> f = AtomicFile(target)
            >>> _ = f.file.write("sealed\\n")
            >>> f.seal(target.with_name(".out.txt.pending"))
            >>> sorted(p.name for p in target.parent.iterdir())
            ['.out.txt.pending']
        """
        if self.done:
            return
        self.done = True
        try:
            self._close()
            os.replace(self.tmp, hidden)
        except BaseException:
            self._remove()
            raise

    def sealed_bytes(self) -> bytes:
        """Flush and close the finished file, and give its content (the temporary file is
        deleted): what a writer to a URL keeps until it publishes it with
        :func:`publish_once`.

        Example:
            >>> from nanostream.connectors._publish import AtomicFile
            >>> f = AtomicFile("memory://sealed-demo/out.txt")
            >>> _ = f.file.write("sealed\\n")
            >>> f.sealed_bytes()
            b'sealed\\n'
        """
        self.done = True
        try:
            self._close()
            return self.tmp.read_bytes()
        finally:
            self._remove()
            self._remove_staging()

    def commit(self) -> str:
        """Flush, close and rename into place (upload, for a URL); returns the destination."""
        if self.done:
            return self.destination
        self.done = True
        try:
            self._close()
            if self._upload is not None:
                os.replace(self.tmp, self.target)
                self._put()
            elif self.replace:
                os.replace(self.tmp, self.target)
            else:
                self._publish_new()
        except BaseException:
            self._remove()
            raise
        finally:
            self._remove_staging()
        return self.destination

    def _put(self) -> None:
        """Upload the finished file under its final key, in one put (or one multipart
        upload, completed only at its end): the object appears whole or not at all."""
        assert self._upload is not None
        fs, inner = self._upload
        upload(
            fs,
            inner,
            str(self.target),
            replace=self.replace,
            node=self.node,
            destination=self.destination,
            can_append=self.can_append,
        )

    def _publish_new(self) -> None:
        """Rename the temporary file to ``target``, which must not exist."""
        try:
            os.link(self.tmp, self.target)  # atomic, and fails if the target exists
        except FileExistsError:
            raise refusal(self.node, self.target, can_append=self.can_append) from None
        except OSError:  # a file system without hard links
            if self.target.exists():
                raise refusal(self.node, self.target, can_append=self.can_append) from None
            os.replace(self.tmp, self.target)
            return
        os.unlink(self.tmp)

    def discard(self) -> None:
        """Close and delete the temporary file; ``target`` is left as it was."""
        if self.done:
            return
        self.done = True
        self._remove()
        self._remove_staging()

    def _remove(self) -> None:
        for file in (self.file, self._raw):
            try:
                file.close()
            except (OSError, ValueError, EOFError):
                pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass

    def _remove_staging(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)


def numbered_files(
    template: str,
    field: str,
    directory: str | None = None,
    storage_options: StorageOptions | None = None,
) -> list[int]:
    """The numbers that, put in ``template``'s ``field``, name files that exist now.

    ``template`` is a path with one or more ``{field}`` fields (with any format spec, e.g.
    ``{part:04d}``), relative to ``directory`` when one is given. Sorted, lowest first;
    hidden temporary files (``.name.<hex>.tmp``) are not counted. A URL (of ``template``,
    or of ``directory``) is listed through ``fsspec`` with ``storage_options``.

    Example:
        >>> import pathlib, tempfile
        >>> from nanostream.connectors._publish import numbered_files
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("003.txt", "010.txt", "7.txt", "notes.txt"):
        ...     _ = (folder / name).write_text("")
        >>> numbered_files("{n:03d}.txt", "n", str(folder))
        [3, 10]
    """
    if is_url(template) or (directory is not None and is_url(directory)):
        base = template if directory is None else directory.rstrip("/") + "/"
        fs, inner = filesystem(base, storage_options)
        if directory is not None:
            inner = inner.rstrip("/") + "/"
        fs.invalidate_cache()
        if directory is None:  # the template is the whole URL: match its path in the store
            return _numbers(fs.glob, inner, field, "")
        return _numbers(fs.glob, template, field, inner)
    prefix = os.path.join(directory, "") if directory else ""
    return _numbers(glob.glob, template, field, prefix)


def _numbers(
    find: Callable[[str], Iterable[str]], template: str, field: str, prefix: str
) -> list[int]:
    """The numbers in ``field`` of ``prefix + template`` of the names ``find`` finds."""
    pattern, regex = [], []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        pattern.append(glob.escape(literal))
        regex.append(re.escape(literal))
        if name is not None:
            pattern.append("*")
            regex.append(r"\s*(\d+)")
    match = re.compile("".join(regex)).fullmatch
    numbers = set()
    for candidate in find(glob.escape(prefix) + "".join(pattern)):
        relative = candidate[len(prefix) :]
        found = match(relative)
        if found is not None:
            number = int(found.group(1))
            if template.format(**{field: number}) == relative:
                numbers.add(number)
    return sorted(numbers)


def refusal(
    node: str,
    target: str | os.PathLike[str],
    *,
    can_append: bool = True,
    what_to_do: str | None = None,
    raced: bool = False,
) -> OutputExistsError:
    """The error of writer ``node`` that will not replace ``target``, saying what to pass.

    ``what_to_do`` replaces the usual advice (append or overwrite) when the writer has
    better to offer. ``raced``: ``target`` was free when the writer started, and another
    writer published it first (a conditional put refused).
    """
    options = what_to_do or (
        "pass append=True to add to it, or overwrite=True to replace it"
        if can_append
        else "pass overwrite=True to replace it, or a filename that differs from run to run"
    )
    why = (
        "another writer published it while this one was writing"
        if raced
        else "the output of an earlier run?"
    )
    return OutputExistsError(
        f"node {node!r} would replace {os.fspath(target)!r}, which exists ({why}); {options}"
    )


def upload(
    fs: Any,
    inner: str,
    local: str,
    *,
    replace: bool,
    node: str,
    destination: str,
    can_append: bool = True,
) -> None:
    """Put the local file ``local`` under ``inner`` in ``fs``, whole: with ``replace``
    False, never over an object that is there (:class:`OutputExistsError` instead; on a
    store with :data:`CONDITIONAL_PUTS` the put itself is the check)."""
    protocols = [fs.protocol] if isinstance(fs.protocol, str) else list(fs.protocol)
    condition = next((CONDITIONAL_PUTS[p] for p in protocols if p in CONDITIONAL_PUTS), None)
    if not replace and condition is not None:
        # The put is the check: two writers racing to publish the key, one wins.
        try:
            fs.put_file(local, inner, **condition)
        except FileExistsError:
            raise refusal(node, destination, can_append=can_append, raced=True) from None
        fs.invalidate_cache(inner)
        return
    if not replace:
        fs.invalidate_cache(inner)
        if fs.isfile(inner):
            raise refusal(node, destination, can_append=can_append)
    if _puts_whole(fs):
        fs.put_file(local, inner)
    else:  # a put that writes in place: under a hidden name, then renamed
        hidden = posixpath.join(
            posixpath.dirname(inner),
            f".{posixpath.basename(inner)}.{secrets.token_hex(4)}.tmp",
        )
        fs.put_file(local, hidden)
        fs.mv(hidden, inner)
    fs.invalidate_cache(inner)


def publish_once(
    destination: str,
    data: bytes,
    storage_options: StorageOptions | None,
    *,
    replace: bool,
    node: str,
) -> None:
    """Publish ``data`` as the object ``destination`` (a URL), once: an object with these
    very bytes there already (published before a crash, the checkpoint then replayed) is
    left as it is; another object there is refused (:class:`OutputExistsError`) unless
    ``replace``. How an exactly-once writer publishes a part at a URL.

    Example:
        >>> from nanostream.connectors._publish import publish_once
        >>> publish_once("memory://once-demo/p.txt", b"a\\n", None, replace=False, node="w")
        >>> publish_once("memory://once-demo/p.txt", b"a\\n", None, replace=False, node="w")
        >>> try:
        ...     publish_once("memory://once-demo/p.txt", b"b\\n", None, replace=False, node="w")
        ... except OutputExistsError as exc:
        ...     print(str(exc).split(",")[0])
        node 'w' would replace 'memory://once-demo/p.txt'
    """
    fs, inner = filesystem(destination, storage_options)
    staging = tempfile.mkdtemp(prefix=_staging_prefix())
    try:
        local = os.path.join(staging, "part")
        with open(local, "wb") as file:
            file.write(data)
        try:
            upload(
                fs,
                inner,
                local,
                replace=replace,
                node=node,
                destination=destination,
                can_append=False,
            )
        except OutputExistsError:
            fs.invalidate_cache(inner)
            if fs.size(inner) != len(data) or bytes(fs.cat_file(inner)) != data:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _puts_whole(fs: Any) -> bool:
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return bool(protocols & WHOLE_PUTS)


def store_leftovers(target: str, storage_options: StorageOptions | None) -> list[str]:
    """The hidden objects (``.name.<hex>.tmp``) of ``target``, a URL (wildcards allowed),
    that are in its store now: what a writer killed between its put and its rename left.

    An object store (S3, GCS, Azure) has none: its put shows an object only once it is
    complete.

    Example:
        >>> import fsspec
        >>> from nanostream.connectors._publish import store_leftovers
        >>> fsspec.filesystem("memory").pipe_file("/left/.out.txt.0123abcd.tmp", b"half")
        >>> store_leftovers("memory://left/out.txt", None)
        ['memory:///left/.out.txt.0123abcd.tmp']
    """
    fs, inner = filesystem(target, storage_options)
    if _puts_whole(fs):
        return []
    folder, name = posixpath.split(inner)
    fs.invalidate_cache(folder)
    found = fs.glob(posixpath.join(folder, f".{name}.*.tmp"))
    return sorted(fs.unstrip_protocol(p) for p in found if _TMP_SUFFIX.search(p))


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on a system that cannot tell, it is taken to)."""
    if os.name != "posix":  # pragma: no cover - os.kill(pid, 0) would end it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it runs, as another user
        return True
    return True


def stale_staging_folders() -> list[Path]:
    """The local folders in which writers that are no longer running (killed, e.g.) built
    files for a URL: ``nanostream-upload-<host>-<process id>-...`` in the temporary
    directory, of this host, whose process is gone.

    Example:
        >>> import tempfile
        >>> from nanostream.connectors._publish import _staging_prefix, stale_staging_folders
        >>> mine = tempfile.mkdtemp(prefix=_staging_prefix())
        >>> any(str(p) == mine for p in stale_staging_folders())  # this process runs
        False
        >>> import os; os.rmdir(mine)
    """
    host = _staging_prefix()[len(_STAGING) :].rsplit("-", 2)[0]
    found = []
    base = tempfile.gettempdir()
    for path in glob.glob(os.path.join(glob.escape(base), f"{_STAGING}*")):
        match = _STAGING_NAME.match(os.path.basename(path))
        if match is None or match["host"] != host or not os.path.isdir(path):
            continue  # not named by a writer of this host: it may be in use
        pid = int(match["pid"])
        if pid != os.getpid() and not _alive(pid):
            found.append(Path(path))
    return sorted(found)


def remove_leftovers(
    target: str | os.PathLike[str], node: str, storage_options: StorageOptions | None = None
) -> None:
    """Delete the temporary files of ``target`` (wildcards allowed) an earlier run left.

    For a URL: the hidden objects beside it in a store whose put writes in place, and the
    local folders of writers killed while they built a file to upload.
    """
    removed = []
    if is_url(os.fspath(target)):
        for folder in stale_staging_folders():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
        for url in store_leftovers(os.fspath(target), storage_options):
            fs, inner = filesystem(url, storage_options)
            try:
                fs.rm_file(inner)
            except FileNotFoundError:  # pragma: no cover - removed by someone else meanwhile
                continue
            removed.append(url)
    for tmp in AtomicFile.leftovers(target):
        try:
            tmp.unlink()
        except FileNotFoundError:  # pragma: no cover - removed by someone else meanwhile
            continue
        removed.append(tmp.name)
    if removed:
        path = os.fspath(target)
        where = posixpath.dirname(path) if is_url(path) else os.path.dirname(os.path.abspath(path))
        log.warning(
            "node %r removed %d temporary file(s) left in %s by an earlier run that did not "
            "finish (their items were not acknowledged, so a source that commits its "
            "progress delivers them again): %s",
            node,
            len(removed),
            where,
            ", ".join(removed),
        )
