# SPDX-License-Identifier: AGPL-3.0-or-later
"""Evaluation-mode process supervision: start, find and stop exactly the processes we started.

Each service gets a pidfile holding its pid and the process's start time, so a recycled pid
is never mistaken for ours (and never killed). Production uses systemd units instead.

Services start with umask 077, and their logs and pidfiles are 0600: what they create later
(Synapse's database and its -wal, which hold access tokens, each mail in the Maildir, media,
the console's database) is readable by the user who runs `make up` only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

STOP_GRACE_SECONDS = 15.0
# Nothing a service creates is for the group or other users (see the module's docstring).
SERVICE_UMASK = 0o077
PRIVATE_FILE = 0o600


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: list[str]
    pidfile: Path
    logfile: Path
    # Returns None when the service answers, else the reason it does not.
    probe: Callable[[], str | None]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    start_timeout: float = 60.0
    # Rendered files (or directories of them) the service reads at start: when one changes,
    # `up` restarts the service so the new settings apply.
    config_files: tuple[Path, ...] = ()
    # Started once the others are ready (Synapse's workers need the main process's schema).
    waits_for_synapse: bool = False

    def reads_any_of(self, paths: list[Path]) -> bool:
        return any(
            path == config or config in path.parents
            for path in paths
            for config in self.config_files
        )


def running_process(spec: ServiceSpec) -> psutil.Process | None:
    """The live process recorded in the pidfile, if it is still the one we started."""
    try:
        record = json.loads(spec.pidfile.read_text())
        process = psutil.Process(record["pid"])
        if abs(process.create_time() - record["create_time"]) > 0.01:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except (OSError, ValueError, KeyError, psutil.Error):
        return None


def _open_private(path: Path, flags: int) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, flags | os.O_CREAT, PRIVATE_FILE)


def start(spec: ServiceSpec) -> psutil.Process:
    with os.fdopen(_open_private(spec.logfile, os.O_WRONLY | os.O_APPEND), "ab") as log:
        popen = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=spec.cwd,
            env={**os.environ, **spec.env},
            umask=SERVICE_UMASK,
            # Its own session: `make up` returning, or a Ctrl-C in that terminal, leaves it be.
            start_new_session=True,
        )
    process = psutil.Process(popen.pid)
    record = json.dumps({"pid": popen.pid, "create_time": process.create_time()})
    with os.fdopen(_open_private(spec.pidfile, os.O_WRONLY | os.O_TRUNC), "w") as pidfile:
        pidfile.write(record)
    return process


def wait_until_ready(spec: ServiceSpec, process: psutil.Process) -> str | None:
    """Wait for the probe to pass; return None when ready, else why it is not."""
    deadline = time.monotonic() + spec.start_timeout
    reason: str | None = "not probed yet"
    while time.monotonic() < deadline:
        if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
            return f"exited during start-up (see {spec.logfile})"
        reason = spec.probe()
        if reason is None:
            return None
        time.sleep(0.1)
    return f"not ready after {spec.start_timeout:.0f} s: {reason} (see {spec.logfile})"


def stop(spec: ServiceSpec) -> bool:
    """Stop the service's process group if it is ours; return whether something was stopped."""
    process = running_process(spec)
    if process is None:
        spec.pidfile.unlink(missing_ok=True)
        return False
    # The group holds what the service itself spawned (it was started as a session leader).
    group = [process, *process.children(recursive=True)]
    _signal_group(process.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(group, timeout=STOP_GRACE_SECONDS)
    if alive:
        _signal_group(process.pid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
    spec.pidfile.unlink(missing_ok=True)
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
