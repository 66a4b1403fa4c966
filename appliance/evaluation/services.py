"""The services of the evaluation appliance, in start order, each with its readiness probe."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from appliance.config.layout import SOURCE_ROOT, Layout
from appliance.config.settings import Settings
from appliance.evaluation.supervisor import ServiceSpec
from appliance.operations import health

CLAMD_CANDIDATES = ("/usr/sbin/clamd", "/usr/bin/clamd")


def find_clamd() -> Path | None:
    for candidate in CLAMD_CANDIDATES:
        if Path(candidate).exists():
            return Path(candidate)
    found = shutil.which("clamd")
    return Path(found) if found else None


def _probe(check) -> str | None:
    result = check()
    return None if result.ok else result.summary


def prepare_maildir(directory: Path) -> None:
    """aiosmtpd's Maildir handler only creates tmp/new/cur when it creates the directory itself."""
    for sub in ("tmp", "new", "cur"):
        (directory / sub).mkdir(parents=True, exist_ok=True)


def mail_sink(settings: Settings, layout: Layout) -> ServiceSpec:
    mail = settings.mail
    return ServiceSpec(
        name="mail-sink",
        # aiosmtpd's own server with its Maildir handler: every message lands in mail_dir.
        argv=[
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"{mail.smtp_host}:{mail.smtp_port}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            str(layout.mail_dir),
        ],
        pidfile=layout.pidfile("mail-sink"),
        logfile=layout.logfile("mail-sink"),
        probe=lambda: _probe(lambda: health.check_smtp(mail.smtp_host, mail.smtp_port)),
        start_timeout=20,
    )


def clamd(settings: Settings, layout: Layout, clamd_binary: Path) -> ServiceSpec:
    listen = settings.clamav.listen
    return ServiceSpec(
        name="clamd",
        argv=[str(clamd_binary), f"--config-file={layout.clamd_config}"],
        pidfile=layout.pidfile("clamd"),
        logfile=layout.logfile("clamd"),
        probe=lambda: _probe(
            lambda: health.check_clamd(listen.connect_host, listen.port, settings.clamav.signatures)
        ),
        start_timeout=120,  # loading freshclam's full databases takes a while
        config_files=(layout.clamd_config,),
    )


def synapse(settings: Settings, layout: Layout) -> ServiceSpec:
    url = settings.synapse.listen.url
    return ServiceSpec(
        name="synapse",
        argv=[sys.executable, "-m", "synapse.app.homeserver", "-c", str(layout.homeserver_config)],
        pidfile=layout.pidfile("synapse"),
        logfile=layout.logfile("synapse"),
        probe=lambda: _probe(lambda: health.check_synapse(url)),
        # The module must be importable whether or not the project is installed.
        env={"PYTHONPATH": str(SOURCE_ROOT)},
        cwd=layout.synapse_dir,
        start_timeout=90,
        config_files=(
            layout.homeserver_config,
            layout.synapse_log_config,
            layout.synapse_templates_dir,
        ),
    )


def console(settings: Settings, layout: Layout) -> ServiceSpec:
    listen = settings.console.listen
    return ServiceSpec(
        name="console",
        argv=[
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{listen.bind_address}:{listen.port}",
            "--workers",
            "2",
            "--threads",
            "4",
            # gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl):
            # two appliances on one machine would share it, one able to stop the other's.
            "--no-control-socket",
            "--access-logfile",
            "-",
            "admin_console:create_app()",
        ],
        pidfile=layout.pidfile("console"),
        logfile=layout.logfile("console"),
        probe=lambda: _probe(lambda: health.check_http("console", f"{listen.url}/login")),
        env={
            "APPLIANCE_CONSOLE_CONFIG": str(layout.console_config),
            "PYTHONPATH": str(SOURCE_ROOT),
        },
        cwd=SOURCE_ROOT,
        start_timeout=30,
        config_files=(layout.console_config,),
    )


def content_scanner(settings: Settings, layout: Layout) -> ServiceSpec:
    base_url = settings.content_scanner.listen.url
    public_key_url = f"{base_url}/_matrix/media_proxy/unstable/public_key"
    return ServiceSpec(
        name="content-scanner",
        argv=[
            sys.executable,
            "-m",
            "appliance.content_scanner",
            "--config",
            str(layout.content_scanner_config),
        ],
        pidfile=layout.pidfile("content-scanner"),
        logfile=layout.logfile("content-scanner"),
        # Ready when it answers; whether clamd answers it is the health check's business.
        probe=lambda: _probe(lambda: health.check_http("content-scanner", public_key_url)),
        env={"PYTHONPATH": str(SOURCE_ROOT)},
        cwd=SOURCE_ROOT,
        start_timeout=30,
        config_files=(layout.content_scanner_config,),
    )
