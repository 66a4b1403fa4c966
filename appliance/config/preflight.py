"""Checks run before anything starts, so a bad setup stops `make up` with nothing half-started."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from appliance.config.layout import Layout
from appliance.config.settings import Listener, Settings


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


def _bound_ports(settings: Settings) -> list[tuple[str, str, str, int]]:
    """(service, settings key, host, port) for every port a local service listens on."""
    ports = [
        ("synapse", "synapse.listen.port", *_address(settings.synapse.listen)),
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
    if settings.mail.run_local_sink:
        ports.append(
            ("mail-sink", "mail.smtp_port", settings.mail.smtp_host, settings.mail.smtp_port)
        )
    return ports


def _address(listener: Listener) -> tuple[str, int]:
    return listener.bind_address, listener.port


def path_problem(key: str, path: Path) -> str | None:
    """Why the directory cannot be created or written, or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        return f"{key}: {path} is not writable: {error.strerror or error}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{key}: {path} is not writable"
    return None


def check_ports(settings: Settings, services_to_start: set[str]) -> list[str]:
    """Ports of the services about to start must be free (those already running hold theirs)."""
    problems = []
    for service, key, host, port in _bound_ports(settings):
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
