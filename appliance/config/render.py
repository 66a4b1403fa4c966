# SPDX-License-Identifier: AGPL-3.0-or-later
"""The one config renderer: every file on the box comes from `templates/` through `render_all`.

The `appliance` CLI calls it in evaluation and the Ansible roles call it (through
`appliance render`) in production, so the two cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from appliance import __version__
from appliance.backup import restic
from appliance.config.layout import TEMPLATES_DIR, Layout
from appliance.config.secrets_store import (
    CONSOLE_SECRET_KEY,
    SHARED_WITH_OTHER_HOSTS,
    SYNAPSE_SECRETS,
    read_secret,
    write_private_file,
)
from appliance.config.settings import PostgresDatabase, Settings
from appliance.config.terms_document import read_terms_document
from appliance.config.worker_routes import WorkerPlan, nginx_routes, router_table, upstreams


@dataclass(frozen=True)
class RenderedFile:
    template: str
    path: Path
    content: str
    # Files that may hold a secret (a database or SMTP password) are private.
    mode: int = 0o644
    # Production: each service's user owns its files (and new directories); see `_owner`.
    owner: str | None = None


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # config files, not HTML
    )


def _targets(settings: Settings, layout: Layout) -> list[tuple[str, Path, int]]:
    targets = [
        ("synapse/homeserver.yaml.j2", layout.homeserver_config, 0o600),
        ("synapse/log_config.yaml.j2", layout.synapse_log_config, 0o644),
        ("clamav/clamd.conf.j2", layout.clamd_config, 0o644),
        ("console/console.json.j2", layout.console_config, 0o600),
        ("content_scanner/content-scanner.json.j2", layout.content_scanner_config, 0o644),
    ]
    # Synapse's mails and confirmation pages, in French and English (Synapse fills them in).
    targets += [
        (f"synapse/email/{template.name}", layout.synapse_templates_dir / template.stem, 0o644)
        for template in sorted((TEMPLATES_DIR / "synapse" / "email").glob("*.j2"))
    ]
    if settings.turn.enabled:
        # Holds coturn's copy of the TURN secret.
        targets.append(("turn/turnserver.conf.j2", layout.turn_config, 0o600))
    if settings.terms is not None:
        # Synapse's consent templates: the terms of use under their version, and the thanks.
        consent = layout.synapse_consent_dir / "en"
        targets += [
            ("synapse/consent/policy.html.j2", consent / f"{settings.terms.version}.html", 0o644),
            ("synapse/consent/success.html.j2", consent / "success.html", 0o644),
        ]
    if settings.routes_locally:
        targets.append(("synapse/router.json.j2", layout.router_config, 0o644))
    # One file per Synapse worker (render_all hands each its worker).
    targets += [
        ("synapse/worker.yaml.j2", layout.worker_config(worker.name), 0o644)
        for worker in settings.worker_plan().workers
    ]
    if settings.clamav.signatures == "evaluation" or settings.clamav.evaluation_fallback:
        targets.append(
            (
                "clamav/evaluation-eicar.ndb.j2",
                layout.clamav_database_dir / "appliance-evaluation-eicar.ndb",
                0o644,
            )
        )
    if settings.host.system_root is not None:
        targets += _system_targets(settings, layout, settings.host.system_root)
    return targets


def _system_targets(settings: Settings, layout: Layout, root: Path) -> list[tuple[str, Path, int]]:
    """The production host's own files: units, nginx site, PostgreSQL and firewall settings."""
    units = root / "etc/systemd/system"
    targets = [
        ("systemd/appliance-synapse.service.j2", units / "appliance-synapse.service", 0o644),
        ("systemd/appliance-console.service.j2", units / "appliance-console.service", 0o644),
        (
            "systemd/appliance-content-scanner.service.j2",
            units / "appliance-content-scanner.service",
            0o644,
        ),
        ("systemd/appliance-clamd.service.j2", units / "appliance-clamd.service", 0o644),
        ("systemd/appliance-freshclam.service.j2", units / "appliance-freshclam.service", 0o644),
        ("clamav/freshclam.conf.j2", layout.clamav_dir / "freshclam.conf", 0o644),
        ("nginx/appliance.conf.j2", root / "etc/nginx/conf.d/appliance.conf", 0o644),
        ("nftables/nftables.conf.j2", root / "etc/nftables.conf", 0o644),
        # The timer runs `appliance backup`, the code `make backup` runs in evaluation.
        ("backup/appliance-backup.service.j2", units / "appliance-backup.service", 0o644),
        ("backup/appliance-backup.timer.j2", units / "appliance-backup.timer", 0o644),
    ]
    if settings.turn.enabled:
        targets.append(
            ("systemd/appliance-turn.service.j2", units / "appliance-turn.service", 0o644)
        )
    if settings.mail.local_mta.enabled:
        # Debian's postfix as a null client on loopback (templates/mail/).
        postfix = root / "etc/postfix"
        targets += [
            ("mail/postfix-main.cf.j2", postfix / "main.cf", 0o644),
            ("mail/postfix-master.cf.j2", postfix / "master.cf", 0o644),
        ]
        if settings.mail.smtp_user:
            targets.append(("mail/postfix-sasl_passwd.j2", postfix / "sasl_passwd", 0o600))
    if settings.worker_plan().enabled:
        # Synapse's workers: one templated unit, and a target that starts main then workers.
        worker_unit = "appliance-synapse-worker@.service"
        targets += [
            (f"systemd/{worker_unit}.j2", units / worker_unit, 0o644),
            ("systemd/appliance-synapse.target.j2", units / "appliance-synapse.target", 0o644),
        ]
    if settings.synapse.database.engine == "postgresql":
        # Debian 12's PostgreSQL; the file may exist before the package: the cluster it creates
        # then starts with these settings (socket only, the port) from its first start.
        conf_d = root / "etc/postgresql/15/main/conf.d"
        targets.append(("postgresql/appliance.conf.j2", conf_d / "appliance.conf", 0o644))
        if settings.several_hosts and settings.runs_postgresql:
            targets.append(("postgresql/pg_hba.conf.j2", _postgresql_hba_file(root), 0o644))
    if settings.runs_redis:
        # Redis for Synapse's processes (templates/redis/): its settings and its own unit;
        # Debian's redis-server service stays off (its /etc/redis is its own user's). The ACL
        # file is written beside the secrets (`appliance render`); systemd hands it over.
        targets += [
            ("redis/redis.conf.j2", root / "etc/appliance/redis.conf", 0o644),
            ("systemd/appliance-redis.service.j2", units / "appliance-redis.service", 0o644),
        ]
    return targets


def _postgresql_hba_file(root: Path) -> Path:
    return root / "etc/postgresql/15/main/appliance_hba.conf"


def _turn_secret(settings: Settings, layout: Layout) -> str | None:
    if not settings.turn.enabled:
        return None
    path = layout.secret("turn_shared_secret")
    try:
        return read_secret(path)
    except FileNotFoundError:
        raise RuntimeError(
            f"{path}: the TURN secret is missing (ensure_secrets makes it)"
        ) from None


def _turn_own_addresses(settings: Settings) -> list[str]:
    turn, wildcards = settings.turn, ("0.0.0.0", "::")
    candidates = [turn.listen.bind_address, turn.external_address]
    candidates += settings.nginx.bind_addresses + settings.synapse.own_addresses
    return sorted({a for a in candidates if a and a not in wildcards and "/" not in a})


def _mail_hostname(settings: Settings) -> str:
    """The name postfix gives itself (its HELO and the Message-IDs it adds): a DNS name, which
    an IP address is not; the public host's, else the server name's, else localhost."""
    for candidate in (urlsplit(settings.public_baseurl).hostname, settings.server_name):
        host = (candidate or "").rsplit(":", 1)[0] if candidate and "]" not in candidate else ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if "." in host:
                return host
    return "localhost.localdomain"


def _media_url(settings: Settings, workers: WorkerPlan) -> str:
    media = workers.media_worker
    if media is None or settings.routes_locally:
        return settings.synapse.listen.url
    return f"http://{settings.process_address(media.name)}:{media.http_port}"


def _peer_ports(settings: Settings, workers: WorkerPlan) -> list[int]:
    """Several hosts: the ports this host serves to the other Synapse hosts only (the firewall's
    peer rule): its processes' replication (and a worker's HTTP, for nginx and the content
    scanner on the main host), Redis and PostgreSQL when they run here."""
    if not settings.several_hosts:
        return []
    ports = []
    for name in settings.local_processes:
        if name == "main":
            ports.append(workers.main_replication_port)
        else:
            worker = next(w for w in workers.workers if w.name == name)
            ports += [worker.http_port, worker.replication_port]
    redis = settings.synapse.redis
    if settings.runs_redis and redis is not None:
        ports.append(redis.port)
    database = settings.synapse.database
    if settings.runs_postgresql and isinstance(database, PostgresDatabase):
        ports.append(database.port)
    return sorted(set(ports))


def _peers(settings: Settings, version: int) -> list[str]:
    """The other Synapse hosts' addresses of one IP version (nftables splits ip and ip6)."""
    own = settings.host.private_address
    return [
        address
        for address in settings.postgresql_clients
        if address != own and ipaddress.ip_address(address).version == version
    ]


def _owner(settings: Settings, layout: Layout, path: Path) -> str | None:
    """The user who owns `path` in production: the service whose directory holds it.

    The services read their own (private) configs and write beside them; clamd and freshclam
    run as Debian's clamav user and only read theirs, and the service token is handed over by
    `appliance service-token`, so those stay root's.
    """
    host = settings.host
    if host.service_user is None or not path.is_relative_to(layout.state_dir):
        return None
    if path.is_relative_to(layout.clamav_dir) or path.is_relative_to(layout.service_token_dir):
        return None
    if path.is_relative_to(layout.console_dir):
        return host.console_user
    if path.is_relative_to(layout.content_scanner_dir):
        return host.content_scanner_user
    if path.is_relative_to(layout.turn_dir):
        return host.turn_user
    return host.service_user


def give_secrets_to_owners(settings: Settings, layout: Layout) -> list[Path]:
    """Production: hand the secrets `ensure_secrets` made (as root) to the user who reads each;
    return those whose owner changed."""
    paths = [layout.secret(name) for name in (*SYNAPSE_SECRETS, CONSOLE_SECRET_KEY)]
    paths += [layout.synapse_signing_key, layout.service_account_password]
    return [
        path
        for path in paths
        if path.exists() and _give_to_owner(path, _owner(settings, layout, path))
    ]


def placement(settings: Settings, layout: Layout) -> dict:
    """What this host runs and holds, for the Ansible roles (`appliance placement`): its
    Synapse processes (each worker's unit and health URL), whether Redis and PostgreSQL run
    here, the secrets the main host hands the other hosts, and those this host needs."""
    workers = settings.worker_plan()
    local = settings.local_processes
    shared = [str(layout.secret(name)) for name in SHARED_WITH_OTHER_HOSTS]
    shared.append(str(layout.synapse_signing_key))
    # What this host takes of them: a Synapse process needs them all; a host that runs only
    # Redis needs its password alone (never the signing key nor the login secrets); the main
    # host makes them.
    if "main" in local:
        needed: list[str] = []
    elif local:
        needed = shared
    elif settings.runs_redis:
        needed = [str(layout.secret("redis_password"))]
    else:
        needed = []
    return {
        "main": "main" in local,
        "workers": [
            {
                "name": worker.name,
                "unit": f"appliance-synapse-worker@{worker.name}.service",
                "health_url": f"http://{settings.process_address(worker.name)}:{worker.http_port}/health",
            }
            for worker in workers.workers
            if worker.name in local
        ],
        "redis": settings.runs_redis,
        "postgresql": settings.runs_postgresql,
        "shared_secrets": shared,
        "secrets_needed": needed,
    }


def render_all(
    settings: Settings,
    layout: Layout,
    *,
    clamav_user: str | None = None,
    settings_file: Path | None = None,
) -> list[RenderedFile]:
    """Render every config file for these settings; nothing is written.

    `settings_file` is the file the settings came from (the backup unit runs `appliance
    --config` on it); by default the production host's /etc/appliance/appliance.yaml."""
    environment = _environment()
    workers = settings.worker_plan()
    if settings_file is None:
        settings_file = (settings.host.system_root or Path("/")) / "etc/appliance/appliance.yaml"
    repository = restic.location(
        settings.backup.repository,
        settings_file.parent,
        production_directory=settings.backup.directory,
    )
    context = {
        "settings": settings,
        "settings_file": settings_file,
        # Production's backup unit may write only there when the repository is a local one.
        "backup_repository": repository,
        "backup_repository_is_local": not restic.is_url(repository),
        "backup_repository_parent": Path(repository).parent,
        "layout": layout,
        "version": __version__,
        # The operator's terms of use (terms.document), made safe for Synapse's templates.
        "terms_document": read_terms_document(settings),
        "clamav_database_dir": layout.clamav_database_dir,
        # Production runs clamd as Debian's clamav user; evaluation as whoever runs `make up`.
        "clamav_user": clamav_user,
        # The host name nginx serves and the self-signed certificate names.
        "public_host": urlsplit(settings.public_baseurl).hostname,
        "mail_hostname": _mail_hostname(settings),
        # Synapse's processes: an empty plan (preset none) renders no worker part at all.
        "workers": workers,
        "worker_routes": nginx_routes(workers),
        "worker_upstreams": upstreams(workers),
        # Where media is fetched (the content scanner): the media worker when there is one and
        # no local router in front of it (production, where nginx only serves the outside).
        "media_url": _media_url(settings, workers),
        # Several hosts: what this host serves to the other Synapse hosts, and who they are.
        "peer_ports": _peer_ports(settings, workers),
        "postgresql_hba_file": _postgresql_hba_file(Path("/")),
        "peers_ipv4": _peers(settings, 4),
        "peers_ipv6": _peers(settings, 6),
        # The console's health page checks each worker on its own listener.
        "worker_health_urls": {
            worker.name: f"http://{settings.process_address(worker.name)}:{worker.http_port}"
            for worker in workers.workers
        },
        # coturn's copy of the TURN secret (ensure_secrets made it before any render).
        "turn_secret": _turn_secret(settings, layout),
        # The host's own public addresses coturn must never relay to (production).
        "turn_own_addresses": _turn_own_addresses(settings),
        "router": router_table(
            workers,
            host=settings.synapse.listen.connect_host,
            main_url=settings.synapse_main_url,
        ),
    }
    by_config = {layout.worker_config(worker.name): worker for worker in workers.workers}
    return [
        RenderedFile(
            name,
            path,
            environment.get_template(name).render(context, worker=by_config.get(path)),
            mode,
            _owner(settings, layout, path),
        )
        for name, path, mode in _targets(settings, layout)
    ]


def write_all(files: list[RenderedFile]) -> list[Path]:
    """Write the rendered files; return those changed in content, mode or owner.

    A file whose content and mode are already right is not touched at all (not even chmod,
    which changes its ctime): services watching their files (clamd's SelfCheck on its
    signatures) see nothing, and `up` restarts only what a change concerns.
    """
    changed = []
    for file in files:
        if _same_content(file):
            mode_changed = stat.S_IMODE(file.path.stat().st_mode) != file.mode
            if mode_changed:
                os.chmod(file.path, file.mode)
            if _give_to_owner(file.path, file.owner) or mode_changed:
                changed.append(file.path)
            continue
        if file.owner:
            _make_parents(file.path.parent, file.owner)
        if file.mode == 0o600:
            write_private_file(file.path, file.content)
        else:
            file.path.parent.mkdir(parents=True, exist_ok=True)
            file.path.write_text(file.content, encoding="utf-8")
            os.chmod(file.path, file.mode)
        _give_to_owner(file.path, file.owner)
        changed.append(file.path)
    return changed


def _same_content(file: RenderedFile) -> bool:
    try:
        return file.path.read_text(encoding="utf-8") == file.content
    except (FileNotFoundError, UnicodeDecodeError):
        return False


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _give_to_owner(path: Path, owner: str | None) -> bool:
    """chown the file to its owner (user and primary group); True if it was someone else's."""
    if owner is None:
        return False
    uid, gid = _ids(owner)
    current = path.stat()
    if (current.st_uid, current.st_gid) == (uid, gid):
        return False
    os.chown(path, uid, gid)
    return True


def _make_parents(directory: Path, owner: str) -> None:
    """Create the missing directories up to `directory`, owned by `owner`."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    uid, gid = _ids(owner)
    for path in reversed(missing):
        path.mkdir(mode=0o750)
        os.chown(path, uid, gid)
