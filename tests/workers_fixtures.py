# SPDX-License-Identifier: AGPL-3.0-or-later
"""Session fixtures for Synapse workers: a throwaway PostgreSQL 15 cluster and a private Redis.

PostgreSQL runs as Debian's `postgres` user (initdb refuses root) from a directory of its own
under /tmp, listening on 127.0.0.1 and a free port only, with trust authentication (loopback,
the test's own cluster). Redis listens on a unix socket in the test's directory and never on a
TCP port (Debian's service on 6379 is never used). Both stop at the end of the session.
Registered through `pytest_plugins` in conftest.py.
"""

from __future__ import annotations

import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import evaluation_settings, free_port

from appliance.config.layout import Layout
from appliance.config.secrets_store import read_secret, write_private_file
from appliance.config.settings import Settings
from appliance.evaluation import redis_acl, services
from appliance.evaluation.supervisor import start, stop, tail, wait_until_ready

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES_USER = "postgres"


@dataclass(frozen=True)
class PostgresCluster:
    directory: Path
    port: int

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = _as_postgres(
            [str(POSTGRES_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port)]
            + ["-U", POSTGRES_USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql]
        )
        return result.stdout.strip()

    def create_database(self, name: str, owner: str = "synapse") -> None:
        """A database as Synapse requires it (C collation), owned by `owner`."""
        if not self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{owner}'"):
            self.psql(f"CREATE ROLE {owner} LOGIN")
        self.psql(
            f"CREATE DATABASE {name} OWNER {owner} ENCODING 'UTF8' "
            "LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0"
        )

    def connections(self, database: str) -> int:
        return int(self.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"))


def _as_postgres(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", POSTGRES_USER, "--", *argv],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )


@contextmanager
def running_postgres_cluster(max_connections: int = 100) -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1 and a free port (tests and bench)."""
    if not (POSTGRES_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL 15 is not installed: run `apt-get install -y postgresql`")
    directory = Path(tempfile.mkdtemp(prefix="appliance-pg-"))
    entry = pwd.getpwnam(POSTGRES_USER)
    shutil.chown(directory, entry.pw_uid, entry.pw_gid)
    data, port = directory / "data", free_port()
    _as_postgres(
        [str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", POSTGRES_USER]
        + ["--auth=trust", "--encoding=UTF8", "--locale=C"]
    )
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {directory} "
        f"-c max_connections={max_connections} -c fsync=off -c synchronous_commit=off"
    )
    _as_postgres(
        [str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-o", options]
        + ["-l", str(directory / "postgres.log"), "-w", "-t", "60", "start"]
    )
    try:
        yield PostgresCluster(directory, port)
    finally:
        _as_postgres([str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"])
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    try:
        with running_postgres_cluster() as cluster:
            yield cluster
    except RuntimeError as missing:
        pytest.fail(str(missing))


@dataclass(frozen=True)
class PrivateRedis:
    """A Redis of the tests' own, with a password of its own (as `make up` runs one)."""

    socket: Path
    password_file: Path

    def share_with(self, layout: Layout) -> None:
        """Give an appliance this Redis's password, where its secrets store would put one
        (it keeps an existing secret), so the rendered redis.password_path holds it."""
        write_private_file(layout.secret("redis_password"), read_secret(self.password_file))


def _private_redis(directory: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.fail("Redis is not installed: run `apt-get install -y redis-server`")
    password_file, acl_file = directory / "redis_password", directory / "redis-users.acl"
    write_private_file(password_file, secrets.token_urlsafe(32))
    redis_acl.write_acl(password_file, acl_file)
    socket_path = directory / "redis.sock"
    spec = services.redis(socket_path, directory, acl_file=acl_file, password_file=password_file)
    reason = wait_until_ready(spec, start(spec))
    if reason is not None:
        stop(spec)
        pytest.fail(f"redis {reason}\n{tail(spec.logfile)}")
    try:
        yield PrivateRedis(socket_path, password_file)
    finally:
        stop(spec)


@pytest.fixture(scope="session")
def redis_socket(tmp_path_factory) -> Iterator[PrivateRedis]:
    """A Redis for one set of Synapse processes. Synapse's replication channel is named after
    the server name, which the test deployments share: each set needs a Redis of its own."""
    yield from _private_redis(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def own_redis(tmp_path_factory) -> Iterator[PrivateRedis]:
    """A Redis for a test's own set of Synapse processes (see redis_socket)."""
    yield from _private_redis(tmp_path_factory.mktemp("redis"))


def _free_port_run(count: int) -> int:
    """The first of `count` consecutive free loopback ports (worker i uses base + 2i, + 1)."""
    for _ in range(200):
        base = free_port()
        if base + count > 65535:
            continue
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def workers_settings(
    state_dir: Path,
    *,
    database: str,
    pg_port: int,
    redis: Path,
    clamd_port: int,
    preset: str = "small",
    pool_max: int = 5,
    extra: dict | None = None,
    **workers: int,
) -> Settings:
    """Evaluation settings for a preset on the test cluster (free loopback ports); `workers`
    adds keys of synapse.workers (sync_workers, client_workers for standard), `extra` other
    top-level sections (e.g. notifications)."""
    synapse_port = free_port()
    return evaluation_settings(
        state_dir,
        public_baseurl=f"http://127.0.0.1:{synapse_port}/",
        synapse={
            "listen": {"port": synapse_port},
            "database": {
                "engine": "postgresql",
                "host": "127.0.0.1",
                "port": pg_port,
                "name": database,
                "user": "synapse",
                "pool_max": pool_max,
            },
            "workers": {
                "preset": preset,
                "base_port": _free_port_run(4 if preset == "small" else 24),
                "replication_port": free_port(),
                "main_port": free_port(),
                **workers,
            },
            "redis": {"path": str(redis)},
        },
        clamav={"listen": {"port": clamd_port}},
        **(extra or {}),
    )
