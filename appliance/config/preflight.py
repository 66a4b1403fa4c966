# SPDX-License-Identifier: AGPL-3.0-or-later
"""Checks run before anything starts, so a bad setup stops `make up` with nothing half-started.

They only look: nothing is created or written before every check has passed, so "Nothing was
started or changed" is true when they refuse.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from pathlib import Path

import psycopg2  # type: ignore[import-untyped]  # (no stubs; Synapse's own driver)

from appliance.config.layout import Layout
from appliance.config.settings import Listener, PostgresDatabase, Settings


def port_problem(key: str, host: str, port: int) -> str | None:
    """Why (host, port) cannot be bound, or None when it is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Same option the servers use, so a port in TIME_WAIT is not reported as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"{key}: port {port} on {host} is already in use by another program"
            return f"{key}: cannot listen on {host}:{port}: {error.strerror}"
    return None


def bound_ports(settings: Settings) -> list[tuple[str, str, str, int]]:
    """(service, settings key, host, port) for every port a local service listens on."""
    # With the local router (workers in evaluation), synapse.listen is the router's.
    listener = "router" if settings.routes_locally else "synapse"
    ports = [
        (listener, "synapse.listen.port", *_address(settings.synapse.listen)),
        ("console", "console.listen.port", *_address(settings.console.listen)),
        ("clamd", "clamav.listen.port", *_address(settings.clamav.listen)),
        (
            "content-scanner",
            "content_scanner.listen.port",
            *_address(settings.content_scanner.listen),
        ),
    ]
    if settings.mode == "evaluation" and settings.federation.mode != "off":
        # Synapse's own TLS listener for other servers (production: nginx's federation port).
        ports.append(("synapse", "federation.listen.port", *_address(settings.federation.listen)))
    if settings.turn.enabled:
        ports.append(("turn", "turn.listen.port", *_address(settings.turn.listen)))
    if settings.metrics.enabled:
        ports.append(("synapse", "metrics.listen.port", *_address(settings.metrics.listen)))
    if settings.mail.run_local_sink:
        ports.append(
            ("mail-sink", "mail.smtp_port", settings.mail.smtp_host, settings.mail.smtp_port)
        )
    return ports + _worker_ports(settings)


def _worker_ports(settings: Settings) -> list[tuple[str, str, str, int]]:
    """Synapse's workers, the main process's replication listener and the local router."""
    if not settings.routes_locally:
        return []
    host, plan = settings.synapse.listen.bind_address, settings.worker_plan()
    ports = [
        ("router", "synapse.listen.port", host, settings.synapse.listen.port),
        ("synapse", "synapse.workers.main_port", host, settings.synapse_main_port),
        ("synapse", "synapse.workers.replication_port", host, plan.main_replication_port),
    ]
    for worker in plan.workers:
        for port in (worker.http_port, worker.replication_port):
            ports.append((f"synapse-{worker.name}", "synapse.workers.base_port", host, port))
    return ports


def _address(listener: Listener) -> tuple[str, int]:
    return listener.bind_address, listener.port


def path_problem(key: str, path: Path) -> str | None:
    """Why the directory cannot be created or written, or None; creates and writes nothing
    (preflight must leave no trace when it refuses): the nearest existing directory must be
    writable by us, on a file system mounted read-write."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{key}: {path} is not writable: {existing} is not a directory"
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{key}: {path} is not writable: {existing} is on a read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}: {path} is not writable"
    return None


def check_ports(settings: Settings, services_to_start: set[str]) -> list[str]:
    """Ports of the services about to start must be free (those already running hold theirs)."""
    problems = []
    for service, key, host, port in bound_ports(settings):
        if service in services_to_start:
            problem = port_problem(key, host, port)
            if problem:
                problems.append(problem)
    return problems


def check_paths(layout: Layout) -> list[str]:
    problem = path_problem("paths.state_dir", layout.state_dir)
    if problem:
        return [problem]  # nothing below it can work either
    problems = []
    for name, path in layout.writable_dirs().items():
        problem = path_problem(f"paths.state_dir ({name})", path)
        if problem:
            problems.append(problem)
    return problems


def check_secret_files(settings: Settings) -> list[str]:
    """Secrets the settings name by path must be readable and not empty (Synapse reads the OpenID
    client secret at start-up, and an empty one only fails at the first sign-in)."""
    if settings.auth.oidc is None:
        return []
    path = settings.auth.oidc.client_secret_file
    key = "auth.oidc.client_secret_file"
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        return [f"{key}: {path} cannot be read: {getattr(error, 'strerror', None) or error}"]
    return [] if secret else [f"{key}: {path} is empty"]


def check_programs(settings: Settings) -> list[str]:
    """Programs the settings ask for that Debian packages and this machine lacks."""
    if settings.turn.enabled and not shutil.which("turnserver"):
        return [
            "turn.enabled: coturn is not installed (scripts/install-system-packages installs "
            "it; or apt-get install coturn)"
        ]
    return []


POSTGRES_CONNECT_SECONDS = 5


def check_postgres(settings: Settings) -> list[str]:
    """The PostgreSQL that synapse.database names must accept Synapse's login and hold a
    database Synapse can use (C collation). Evaluation never runs PostgreSQL itself: the
    operator's (Debian's `postgresql` package, say) is checked here, before anything starts."""
    database = settings.synapse.database
    if not isinstance(database, PostgresDatabase):
        return []
    where = f"database {database.name} as {database.user} on {database.host}" + (
        "" if database.host.startswith("/") else f":{database.port}"
    )
    try:
        connection = psycopg2.connect(
            host=database.host,
            port=database.port,
            dbname=database.name,
            user=database.user,
            password=database.password.get_secret_value() if database.password else None,
            connect_timeout=POSTGRES_CONNECT_SECONDS,
        )
    except psycopg2.Error as error:
        # libpq's reason (refused, no such role or database, password failed); no secret in it.
        reason = " ".join(str(error).split())
        return [f"synapse.database: cannot connect to PostgreSQL ({where}): {reason}"]
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()"
            )
            collate, ctype = cursor.fetchone()
    finally:
        connection.close()
    if (collate, ctype) != ("C", "C"):
        return [
            f"synapse.database: {where} has collation {collate}/{ctype}; Synapse needs C "
            "(CREATE DATABASE ... LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0)"
        ]
    return []
