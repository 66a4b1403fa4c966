# SPDX-License-Identifier: AGPL-3.0-or-later
"""The services of the evaluation appliance, in start order, each with its readiness probe."""

from __future__ import annotations

import shutil
import socket
import sys
from dataclasses import replace
from pathlib import Path

from appliance.config.layout import SOURCE_ROOT, Layout
from appliance.config.secrets_store import read_secret
from appliance.config.settings import Settings
from appliance.config.worker_routes import Worker
from appliance.evaluation import redis_acl
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


def turn(settings: Settings, layout: Layout) -> ServiceSpec:
    """coturn with the rendered config (turn.enabled): relays the media of calls."""
    listen = settings.turn.listen
    return ServiceSpec(
        name="turn",
        argv=[shutil.which("turnserver") or "/usr/bin/turnserver", "-c", str(layout.turn_config)],
        pidfile=layout.pidfile("turn"),
        logfile=layout.logfile("turn"),
        probe=lambda: _probe(lambda: health.check_turn(listen.connect_host, listen.port)),
        start_timeout=20,
        config_files=(layout.turn_config,),
    )


def synapse(settings: Settings, layout: Layout) -> ServiceSpec:
    url = settings.synapse_main_url
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


def synapse_worker(settings: Settings, layout: Layout, worker: Worker) -> ServiceSpec:
    """One Synapse worker: the shared homeserver.yaml, then its own rendered file."""
    host = settings.synapse.listen.connect_host
    url = f"http://{host}:{worker.http_port}"
    return ServiceSpec(
        name=f"synapse-{worker.name}",
        argv=[
            sys.executable,
            "-m",
            worker.app,
            "-c",
            str(layout.homeserver_config),
            "-c",
            str(layout.worker_config(worker.name)),
        ],
        pidfile=layout.pidfile(f"synapse-{worker.name}"),
        logfile=layout.logfile(f"synapse-{worker.name}"),
        # Every listener answers /health, the media worker's too.
        probe=lambda: _probe(lambda: health.check_synapse(url)),
        env={"PYTHONPATH": str(SOURCE_ROOT)},
        cwd=layout.synapse_dir,
        start_timeout=90,
        # Workers refuse to start on a database the main process has not prepared yet.
        waits_for_synapse=True,
        config_files=(
            layout.homeserver_config,
            layout.worker_config(worker.name),
            layout.synapse_log_config,
            layout.synapse_templates_dir,
        ),
    )


def synapse_workers(settings: Settings, layout: Layout) -> list[ServiceSpec]:
    """Every worker of synapse.workers.preset, in the plan's order (none: no worker)."""
    return [synapse_worker(settings, layout, w) for w in settings.worker_plan().workers]


def redis_answers(socket_path: Path, password_file: Path) -> str | None:
    """None when Redis accepts our password and answers PING on its unix socket, else why not."""
    try:
        command = redis_acl.auth_command(read_secret(password_file)) + b"PING\r\n"
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(2)
            connection.connect(str(socket_path))
            connection.sendall(command)
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = connection.recv(256)
                if not chunk:
                    break
                reply += chunk
    except OSError as error:
        return f"Redis does not answer on {socket_path}: {error}"
    if reply == b"+OK\r\n+PONG\r\n":
        return None
    # Redis's own error (e.g. WRONGPASS); it never repeats the password.
    return f"Redis refused us on {socket_path}: {reply.splitlines()[0].decode(errors='replace')}"


def redis(
    socket_path: Path, directory: Path, *, acl_file: Path, password_file: Path, name: str = "redis"
) -> ServiceSpec:
    """A private Redis on a unix socket only (never Debian's service on port 6379): no TCP
    listener, no persistence (Synapse uses it for replication messages and a cache only), one
    user with the generated password (acl_file, written by redis_acl.write_acl)."""
    return ServiceSpec(
        name=name,
        argv=[
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--aclfile",
            str(acl_file),
        ],
        pidfile=directory / f"{name}.pid",
        logfile=directory / f"{name}.log",
        probe=lambda: redis_answers(socket_path, password_file),
        start_timeout=20,
        # A new password (the secret replaced) means a new ACL file: Redis restarts with it.
        config_files=(acl_file,),
    )


def router(settings: Settings, layout: Layout) -> ServiceSpec:
    """Evaluation with workers: the local router on synapse.listen (see router.py)."""
    listen = settings.synapse.listen
    return ServiceSpec(
        name="router",
        argv=[
            sys.executable,
            "-m",
            "appliance.evaluation.router",
            str(layout.router_config),
            listen.bind_address,
            str(listen.port),
        ],
        pidfile=layout.pidfile("router"),
        logfile=layout.logfile("router"),
        # Through the router to the main process (/health is on no worker route).
        probe=lambda: _probe(lambda: health.check_synapse(listen.url)),
        env={"PYTHONPATH": str(SOURCE_ROOT)},
        start_timeout=30,
        config_files=(layout.router_config,),
        waits_for_synapse=True,
    )


def evaluation_redis(settings: Settings, layout: Layout) -> ServiceSpec | None:
    """Evaluation with workers and a Redis socket: our own Redis there, else none (a Redis
    given by host and port is someone else's to run)."""
    redis_settings = settings.synapse.redis
    if settings.synapse.workers.preset == "none" or redis_settings is None:
        return None
    if redis_settings.path is None:
        return None
    # Redis writes nothing (no persistence): the run directory is its working directory.
    spec = redis(
        redis_settings.path,
        layout.run_dir,
        acl_file=layout.redis_acl,
        password_file=layout.secret("redis_password"),
    )
    return replace(spec, pidfile=layout.pidfile("redis"), logfile=layout.logfile("redis"))
