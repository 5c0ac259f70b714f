"""Real servers for the connector tests, started on 127.0.0.1 and stopped afterwards.

* ``postgres_url``: a PostgreSQL server (Debian's packages, ``/usr/lib/postgresql/*/bin``)
  on a temporary data directory and a free port, run as a non-root user; skipped with a
  clear reason only when PostgreSQL is not installed.
* ``redis_url``: a ``redis-server`` with a password, on a free port.
* ``s3_endpoint``, ``gcs_endpoint``, ``azurite_endpoint``: object stores: moto's S3
  server, the GCS emulator of ``gcp-storage-emulator``, and Azurite's blob service.
* ``local_runner``: the runners whose nodes share the test's process (threads, cooperative),
  for tests that read the node objects or an in-process store afterwards.
* ``acks``: whether the ``runner`` under test calls sources' acknowledgements, so that a
  test of a source that commits its progress on acknowledgement knows what to expect.
"""

from __future__ import annotations

import glob
import importlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
from support import missing


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that nothing listens on."""
    return _free_port


@pytest.fixture
def api() -> Iterator[Any]:
    """The HTTP tests' API server (``http_api.ApiServer``) on a free port of 127.0.0.1."""
    from http_api import serve

    yield from serve()


@pytest.fixture
def other_api() -> Iterator[Any]:
    """A second API server: another origin (another port on 127.0.0.1)."""
    from http_api import serve

    yield from serve()


@pytest.fixture(params=["threads", "cooperative"])
def local_runner(request: pytest.FixtureRequest) -> str:
    """The runners whose nodes share this process (the objects of the test)."""
    return str(request.param)


# ----------------------------------------------------------------------------- acks
class _AckProbe(nanostream.NanoNode):
    """A source of one item whose acknowledgement creates a file (seen from any process)."""

    def __init__(self, flag: str) -> None:
        super().__init__()
        self.flag = flag

    def generator(self) -> Iterator[Any]:
        yield nanostream.Acked(1, lambda: Path(self.flag).touch())


_ACKS_CALLED: dict[str, bool] = {}


@pytest.fixture
def acks(runner: str) -> bool:
    """Whether ``runner`` calls sources' acknowledgements (probed once per runner).

    On a runner that does not, a source that commits on acknowledgement commits nothing:
    a restart delivers everything again (at-least-once, never too early).
    """
    if runner not in _ACKS_CALLED:
        if runner == "ray":  # the probe's class must reach the Ray workers
            ray: Any = importlib.import_module("ray")
            ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        with tempfile.TemporaryDirectory() as tmp:
            flag = os.path.join(tmp, "acked")
            sink = nanostream.testing.Collect()
            _AckProbe(flag) > sink
            sink.global_start(runner=runner)
            assert sink.items == [1]
            _ACKS_CALLED[runner] = os.path.exists(flag)
    return _ACKS_CALLED[runner]


# ----------------------------------------------------------------------------- PostgreSQL
def _postgres_bindir() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/", path)
        return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")  # a PostgreSQL installed elsewhere, on the PATH
    return Path(initdb).parent if initdb else None


def _unprivileged_user() -> pwd.struct_passwd:
    """The user to run PostgreSQL as when the tests run as root (it refuses root)."""
    for name in ("postgres", "nanostream-pg"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "nanostream-pg",
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("nanostream-pg")


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        extra = log.read_text(errors="replace") if log is not None and log.exists() else ""
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}{extra}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, str]]:
    """A PostgreSQL server for this test session: host, port, user, password, admin URL."""
    bindir = _postgres_bindir()
    if bindir is None:
        missing(
            "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on the "
            "PATH); install it with: apt-get install postgresql"
        )
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'psycopg[binary]'")
    base = Path(tempfile.mkdtemp(prefix="nanostream-pg-"))
    data, log, pwfile = base / "data", base / "server.log", base / "password"
    password = "pw-" + secrets.token_hex(8)
    pwfile.write_text(password)
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = _unprivileged_user()
        for path in (base, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", user.pw_name, "--"]
    port = _free_port()
    try:
        _run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "nanostream",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
            "initdb",
        )
        options = (
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        cmd = [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w"]
        _run([*cmd, "-t", "60", "-o", options, "start"], "pg_ctl start", log)
        yield {
            "host": "127.0.0.1",
            "port": str(port),
            "user": "nanostream",
            "password": password,
            "url": f"postgresql+psycopg://nanostream:{password}@127.0.0.1:{port}/postgres",
        }
    finally:
        if data.exists():
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: dict[str, str]) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    import sqlalchemy as sa

    name = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(postgres_server["url"], isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        yield postgres_server["url"].rsplit("/", 1)[0] + "/" + name
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.dispose()


# ----------------------------------------------------------------------------- Redis
@pytest.fixture(scope="session")
def redis_server() -> Iterator[dict[str, str]]:
    """A ``redis-server`` for this test session, with a password, on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed; install it with: apt-get install redis-server")
    redis = pytest.importorskip("redis", reason="the Redis client: pip install 'nanostream[redis]'")
    base = Path(tempfile.mkdtemp(prefix="nanostream-redis-"))
    password = "pw-" + secrets.token_hex(8)
    port = _free_port()
    cmd = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--requirepass",
        password,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(base),
        "--logfile",
        str(base / "redis.log"),
    ]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:  # a server process gives no event to wait on: poll until it answers
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (base / "redis.log").read_text(errors="replace")
                    pytest.fail(f"redis-server did not start:\n{log}")
                time.sleep(0.02)
        client.close()
        yield {"url": url, "password": password, "port": str(port)}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: dict[str, str]) -> str:
    """The session's Redis server, emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_server["url"])
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server["url"]


# ----------------------------------------------------------------------------- Kafka
@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[str]:
    """librdkafka's mock Kafka cluster (``test.mock.num.brokers``) on 127.0.0.1, for the
    session: its bootstrap servers. It lives as long as the client that made it."""
    try:
        import confluent_kafka
    except ImportError:
        missing("confluent-kafka is not installed: pip install 'nanostream[kafka]'")
    holder = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 0})
    try:
        brokers = holder.list_topics(timeout=10).brokers.values()
        yield ",".join(f"{b.host}:{b.port}" for b in brokers)
    finally:
        holder.flush(1)
        del holder


# ----------------------------------------------------------------------------- object stores
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and a free port, for this module's tests."""
    try:
        server_module: Any = importlib.import_module("moto.server")
    except ImportError:
        missing("moto is not installed: pip install 'nanostream[dev]'")
    try:
        importlib.import_module("s3fs")
    except ImportError:
        missing("s3fs is not installed: pip install 'nanostream[s3]'")
    server = server_module.ThreadedMotoServer(
        ip_address="127.0.0.1", port=_free_port(), verbose=False
    )
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


AZURITE_KEY = (  # Azurite's documented well-known account key (devstoreaccount1)
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """The Google Cloud Storage emulator of ``gcp-storage-emulator`` on 127.0.0.1."""
    # gcsfs otherwise asks each bucket's type over gRPC, which an emulator does not answer
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    try:
        server_module: Any = importlib.import_module("gcp_storage_emulator.server")
        importlib.import_module("gcsfs")
    except ImportError:
        missing("gs:// needs gcsfs and the emulator: pip install gcsfs gcp-storage-emulator")
    port = _free_port()
    server = server_module.create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service (``npm install -g azurite``) on 127.0.0.1: its connection
    string."""
    binary = shutil.which("azurite-blob")
    if binary is None:
        missing("az:// needs Azurite: npm install -g azurite")
    try:
        importlib.import_module("adlfs")
    except ImportError:
        missing("az:// needs adlfs: pip install adlfs")
    port = _free_port()
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    cmd = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence"]
    cmd += ["--skipApiVersionCheck", "--disableTelemetry", "--loose"]
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:  # a server process gives no event to wait on: poll until it answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Azurite did not start:\n{log.read_text(errors='replace')}")
                time.sleep(0.02)
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
