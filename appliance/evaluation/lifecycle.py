# SPDX-License-Identifier: AGPL-3.0-or-later
"""The all-in-one evaluation appliance: render, start, check and stop every service locally.

`make up`, `make down` and `make status` call this through the `appliance` CLI, and the test
harness uses it too, so the tests run the very thing a sysadmin tries.

The state directory is private to the user who runs `make up` (it holds Synapse's database with
everyone's access tokens, the mails with their links, the secrets): `up` makes it and everything
in it 0700/0600, renders every file 0600, and starts the services with umask 077 (supervisor).
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from appliance.config import preflight
from appliance.config.layout import Layout
from appliance.config.render import RenderedFile, render_all, write_all
from appliance.config.secrets_store import ensure_secrets
from appliance.config.settings import Settings, SettingsError
from appliance.evaluation import redis_acl, services
from appliance.evaluation.supervisor import (
    ServiceSpec,
    running_process,
    start,
    stop,
    tail,
    wait_until_ready,
)
from appliance.operations import health
from appliance.operations.service_account import ServiceAccountError, ensure_console_token

CLAMAV_INSTALL_HINT = "apt-get install -y clamav-daemon  (as root)"


class StartError(Exception):
    """A service could not be started; what this run started has been stopped again."""


@dataclass
class UpReport:
    already_running: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)  # running, but their config changed
    started: dict[str, float] = field(default_factory=dict)  # name -> seconds to ready
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why
    total_seconds: float = 0.0


class EvaluationAppliance:
    def __init__(self, settings: Settings, layout: Layout):
        self.settings = settings
        self.layout = layout
        self.clamd_binary = services.find_clamd()

    def specs(self) -> list[ServiceSpec]:
        """Every service this appliance runs, in start order (clamd before Synapse scans)."""
        specs = []
        if self.settings.mail.run_local_sink:
            specs.append(services.mail_sink(self.settings, self.layout))
        if self.clamd_binary:
            specs.append(services.clamd(self.settings, self.layout, self.clamd_binary))
        redis = services.evaluation_redis(self.settings, self.layout)
        if redis is not None:
            specs.append(redis)
        if self.settings.turn.enabled:
            specs.append(services.turn(self.settings, self.layout))
        specs.append(services.synapse(self.settings, self.layout))
        # Synapse's workers and the router in front of them (synapse.workers.preset).
        specs += services.synapse_workers(self.settings, self.layout)
        if self.settings.routes_locally:
            specs.append(services.router(self.settings, self.layout))
        specs.append(services.content_scanner(self.settings, self.layout))
        specs.append(services.console(self.settings, self.layout))
        return specs

    def missing_system_packages(self) -> dict[str, str]:
        return {} if self.clamd_binary else {"clamd": CLAMAV_INSTALL_HINT}

    # up --------------------------------------------------------------------------------------
    def up(self) -> UpReport:
        began = time.monotonic()
        report = UpReport(skipped=self.missing_system_packages())
        specs = self.specs()
        to_start = [spec for spec in specs if running_process(spec) is None]
        report.already_running = [spec.name for spec in specs if spec not in to_start]
        self._preflight({spec.name for spec in to_start})
        make_private(self.layout.state_dir)
        ensure_secrets(self.layout)
        services.prepare_maildir(self.layout.mail_dir)
        changed = write_all(private_files(render_all(self.settings, self.layout)))
        if services.evaluation_redis(self.settings, self.layout) is not None:
            if redis_acl.write_acl(self.layout.secret("redis_password"), self.layout.redis_acl):
                changed.append(self.layout.redis_acl)
        for spec in specs:
            if spec.name in report.already_running and spec.reads_any_of(changed):
                stop(spec)
                report.already_running.remove(spec.name)
                report.restarted.append(spec.name)
                to_start.append(spec)
        to_start.sort(key=specs.index)
        self._start_all(to_start, report)
        report.total_seconds = time.monotonic() - began
        return report

    def _start_all(self, to_start: list[ServiceSpec], report: UpReport) -> None:
        """Start every service at once, then wait for each; Synapse's workers and the router
        in a second wave, once the main process is ready."""
        started: list[tuple[ServiceSpec, psutil.Process, float]] = []
        waves = [
            [spec for spec in to_start if not spec.waits_for_synapse],
            [spec for spec in to_start if spec.waits_for_synapse],
        ]
        try:
            for wave in waves:
                in_wave = []
                for spec in wave:
                    in_wave.append((spec, start(spec), time.monotonic()))
                started += in_wave
                for spec, process, began in in_wave:
                    reason = wait_until_ready(spec, process)
                    if reason is not None:
                        raise StartError(f"{spec.name} {reason}\n{tail(spec.logfile)}")
                    report.started[spec.name] = time.monotonic() - began
            ensure_console_token(self.settings, self.layout)
        except (StartError, ServiceAccountError) as error:
            for spec, _, _ in reversed(started):
                stop(spec)
            raise StartError(str(error)) from None

    def _preflight(self, services_to_start: set[str]) -> None:
        problems = preflight.check_paths(self.layout)
        problems += preflight.check_ports(self.settings, services_to_start)
        problems += preflight.check_secret_files(self.settings)
        problems += preflight.check_programs(self.settings)
        if "synapse" in services_to_start:
            # Evaluation does not run PostgreSQL: the one synapse.database names must answer.
            problems += preflight.check_postgres(self.settings)
        if problems:
            raise SettingsError("the settings", problems)

    # down and status -------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop what `up` started, newest first; return the names stopped."""
        return [spec.name for spec in reversed(self.specs()) if stop(spec)]

    def status(self) -> list[tuple[str, int | None, health.Check]]:
        """(service, pid or None, health check) for every service."""
        checks = self.health_checks()
        rows = []
        for spec in self.specs():
            process = running_process(spec)
            check = checks.get(spec.name) or _probe_check(spec)
            rows.append((spec.name, process.pid if process else None, check))
        return rows

    def health_checks(self) -> dict[str, health.Check]:
        settings, listen = self.settings, self.settings.clamav.listen
        token = _read_optional(self.layout.service_token)
        return {
            "mail-sink": health.check_smtp(settings.mail.smtp_host, settings.mail.smtp_port),
            "clamd": health.check_clamd(
                listen.connect_host,
                listen.port,
                settings.clamav.signatures,
                self.layout.clamav_database_dir,
            ),
            "synapse": health.check_synapse(settings.synapse.listen.url, token),
            "console": health.check_http("console", f"{settings.console.listen.url}/login"),
            "content-scanner": health.check_content_scanner(settings.content_scanner.listen.url),
        }


def _probe_check(spec: ServiceSpec) -> health.Check:
    """A service without a check of its own (a Synapse worker, Redis, the router): its probe."""
    reason = spec.probe()
    return health.Check(spec.name, reason is None, reason or "answers")


def make_private(state_dir: Path) -> None:
    """The state directory and everything already in it: no access for the group or others.

    A state directory made by an older release (0755 directories, 0644 database) is closed too.
    Symbolic links are left alone (their mode means nothing; their targets are not ours).
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for directory, subdirectories, files in os.walk(state_dir):
        for path in [
            directory,
            *(os.path.join(directory, name) for name in subdirectories + files),
        ]:
            status = os.lstat(path)
            if not stat.S_ISLNK(status.st_mode) and status.st_mode & 0o077:
                os.chmod(path, stat.S_IMODE(status.st_mode) & 0o700)


def private_files(files: list[RenderedFile]) -> list[RenderedFile]:
    """Evaluation: one user runs every service, so no rendered file needs group or other bits."""
    return [replace(file, mode=file.mode & 0o700) for file in files]


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def is_root() -> bool:
    return os.geteuid() == 0
