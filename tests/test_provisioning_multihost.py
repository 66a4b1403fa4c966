# SPDX-License-Identifier: AGPL-3.0-or-later
"""The production playbook on three hosts: Synapse's `small` preset placed by the inventory.

Three Debian 12 containers booted with systemd-nspawn (tests/nspawn_hosts.py), converged by one
`ansible-playbook site.yml` run: the main host (the main process, nginx, the console, the
content scanner), a worker host (the generic worker), and a data host (the media repository,
PostgreSQL and Redis). The containers share the machine's network namespace, each host on its
own loopback address (the main host 127.0.0.1, the others 127.0.N.2-3, N random per run): what
the hosts serve one another (replication, the workers' listeners, PostgreSQL, Redis) listens on
that address, everything else on 127.0.0.1 with free ports. In one namespace every connection
to a 127.x address leaves from 127.0.0.1 (the main host's), so pg_hba's refusal is shown from
an address that is no Synapse host's, bound explicitly. The firewall stays off (loading it
here would replace the machine's own rules); the fast tier checks its rules. Every client here
talks to loopback only.

Then, as a client would: registration and login through nginx land on the worker, a message is
sent and synced there, EICAR is refused on the media worker, and each worker's journal shows it
served those requests; PostgreSQL refuses an address that is not a Synapse host, Redis refuses
a client without the password; the worker hosts hold the main host's secrets but never its
registration secret; a second converge changes nothing.

Needs root, systemd-nspawn (systemd-container) and debootstrap. Select with `-m provisioning`.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from harness import TEST_DOMAINS, free_port
from matrix_helpers import MatrixClient
from matrix_media_helpers import EICAR, User, unique_bytes, upload
from nspawn_hosts import Container, Converge, boot, converge, prepare_rootfs, require_tools

from appliance.config.layout import SOURCE_ROOT
from appliance.synapse_module.media.scan import INFECTED_MESSAGE

pytestmark = [pytest.mark.provisioning, pytest.mark.slow]

RUN = os.getpid()
STATE = "/var/lib/appliance"
# The groups of site.yml, and which of this test's hosts is in each.
MAIN, WORKER, DATA = "main", "worker", "data"
GROUPS = {
    "synapse_main": [MAIN],
    "synapse_workers": [WORKER],
    "synapse_media": [DATA],
    "postgresql": [DATA],
    "redis": [DATA],
}
POSTGRESQL_PASSWORD = "multihost-test-database-password"
BACKUP_PASSPHRASE = "multihost-test-backup-passphrase"
SYNAPSE_SECRETS_SHARED = ("synapse.signing.key", "worker_replication_secret", "redis_password")


def loopback_prefix() -> str:
    """127.0.N.: a loopback network no other run of this test uses now (N random)."""
    for _ in range(50):
        prefix = f"127.0.{random.randint(2, 254)}."
        try:
            with socket.socket() as probe:
                probe.bind((prefix + "1", 0))
        except OSError:
            continue
        return prefix
    raise RuntimeError("no free 127.0.N.0/24 found")


@dataclass
class Hosts:
    """The three hosts: their containers, private addresses and the ports the test chose."""

    work: Path
    prefix: str
    containers: dict[str, Container] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    converges: dict[str, Converge] = field(default_factory=dict)

    def address(self, host: str) -> str:
        # In one network namespace a connection to any 127.x address leaves from 127.0.0.1
        # (the loopback route's source), whatever host opens it: the main host is 127.0.0.1,
        # so that the Synapse hosts' connections come from a Synapse host's address, as they
        # do on a real network; the tests bind other sources explicitly.
        return (
            "127.0.0.1" if host == MAIN else self.prefix + str((MAIN, WORKER, DATA).index(host) + 1)
        )

    def name(self, host: str) -> str:
        return f"appliance-mh-{host}-{RUN}"

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['https']}"

    def https(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.containers[MAIN].rootfs / "etc/appliance/tls/fullchain.pem")
        session.trust_env = False  # no proxy, no other CA bundle: loopback only
        return session

    def journal(self, host: str, unit: str) -> str:
        return self.containers[host].run("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout

    def secret(self, host: str, name: str) -> Path:
        return self.containers[host].rootfs / STATE.lstrip("/") / "secrets" / name


def inventory(hosts: Hosts, source: Path) -> dict:
    ports = hosts.ports
    extra_cas = sorted(str(path) for path in Path("/usr/local/share/ca-certificates").glob("*.crt"))
    # What each host listens on besides its private address: free loopback ports, its own.
    own = {
        MAIN: {"clamav_listen_port": ports["clamd_main"], "mail_local_mta_port": ports["mta_main"]},
        WORKER: {"mail_local_mta_port": ports["mta_worker"]},
        DATA: {"clamav_listen_port": ports["clamd_data"], "mail_local_mta_port": ports["mta_data"]},
    }
    children = {
        group: {
            "hosts": {
                hosts.name(host): {
                    **hosts.containers[host].ansible_host(),
                    "appliance_private_address": hosts.address(host),
                    **own[host],
                }
                for host in members
            }
        }
        for group, members in GROUPS.items()
    }
    return {
        "all": {
            "children": children,
            "vars": {
                "appliance_source_dir": str(source),
                "appliance_server_name": "appliance.test",
                "appliance_public_baseurl": f"{hosts.public_url}/",
                "appliance_allowed_domains": TEST_DOMAINS,
                "common_firewall_enabled": False,
                "common_ca_certificates": extra_cas,
                "synapse_workers_preset": "small",
                "synapse_workers_base_port": ports["workers"],
                "synapse_workers_replication_port": ports["replication"],
                "synapse_listen_port": ports["synapse"],
                "admin_console_listen_port": ports["console"],
                "content_scanner_listen_port": ports["scanner"],
                "clamav_freshclam_enabled": False,
                "clamav_evaluation_fallback": True,
                "postgresql_port": ports["postgresql"],
                "postgresql_password": POSTGRESQL_PASSWORD,
                "redis_port": ports["redis"],
                "mail_smtp_host": "127.0.0.1",
                "mail_smtp_port": ports["smtp"],
                "mail_require_transport_security": False,
                "backup_passphrase": BACKUP_PASSPHRASE,
                "nginx_tls_mode": "self-signed",
                "nginx_bind_addresses": ["127.0.0.1"],
                "nginx_https_port": ports["https"],
                "nginx_http_port": ports["http"],
                "nginx_federation_port": ports["federation"],
            },
        }
    }


def release(directory: Path) -> Path:
    """A snapshot of this source tree: the release every converge of the test installs."""
    for name in ("appliance", "admin_console", "templates"):
        shutil.copytree(
            SOURCE_ROOT / name, directory / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy(SOURCE_ROOT / name, directory / name)
    return directory


def boot_hosts(work: Path) -> Hosts:
    hosts = Hosts(work, loopback_prefix())
    names = ("synapse", "console", "scanner", "https", "http", "federation", "smtp")
    names += ("clamd_main", "clamd_data", "mta_main", "mta_worker", "mta_data", "replication")
    hosts.ports = {name: free_port() for name in names}
    # Ports on the private addresses (nothing else binds 127.0.N.x): the workers take 4 in a row.
    hosts.ports |= {"postgresql": free_port(), "redis": free_port()}
    hosts.ports["workers"] = random.randint(20000, 29000)
    for host in (MAIN, WORKER, DATA):
        rootfs = work / f"rootfs-{host}"
        prepare_rootfs(rootfs, hosts.name(host))
        hosts.containers[host] = boot(rootfs, work / f"nspawn-{host}.log", hosts.name(host))
    return hosts


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> Iterator[Hosts]:
    require_tools()
    work = tmp_path_factory.mktemp("multihost")
    hosts: Hosts | None = None
    sink: Controller | None = None
    try:
        hosts = boot_hosts(work)
        sink = Controller(Mailbox(work / "mail"), hostname="127.0.0.1", port=hosts.ports["smtp"])
        sink.start()
        data = inventory(hosts, release(work / "release"))
        hosts.converges["full"] = converge(data, work / "1-full-converge.log")
        hosts.converges["again"] = converge(data, work / "2-idempotent-converge.log")
        yield hosts
    finally:
        if sink is not None:
            sink.stop()
        for container in hosts.containers.values() if hosts else ():
            container.stop()
            shutil.rmtree(container.rootfs, ignore_errors=True)


def client(hosts: Hosts) -> MatrixClient:
    return MatrixClient(hosts.public_url, hosts.work / "mail", hosts.https())


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.5)


# --- the tests ---------------------------------------------------------------------------------
def test_one_converge_places_each_process_on_its_host_and_a_second_changes_nothing(hosts):
    full, again = hosts.converges["full"], hosts.converges["again"]
    print(
        f"\nfull converge of three hosts: {full.seconds:.0f} s; idempotent re-run: "
        f"{again.seconds:.0f} s ({100 * again.seconds / full.seconds:.0f} %)"
    )
    print("slowest tasks of the re-run:\n  " + "\n  ".join(again.slowest_tasks()))
    assert set(full.recaps) == {hosts.name(host) for host in (MAIN, WORKER, DATA)}
    assert again.changed == 0, again.recap
    expected = {
        MAIN: {"appliance-synapse.service": "active", "appliance-redis.service": "inactive"},
        WORKER: {
            "appliance-synapse-worker@generic1.service": "active",
            "appliance-synapse.service": "inactive",
        },
        DATA: {
            "appliance-synapse-worker@media1.service": "active",
            "appliance-redis.service": "active",
            "postgresql.service": "active",
            "appliance-synapse.service": "inactive",
        },
    }
    for host, units in expected.items():
        for unit, state in units.items():
            shown = hosts.containers[host].run("systemctl", "is-active", unit, check=False)
            assert shown.stdout.strip() == state, (host, unit)


def test_registration_login_and_messages_go_through_nginx_to_the_worker(hosts):
    matrix = client(hosts)
    http = hosts.https()
    account = matrix.register_account("marie.curie@ac-paris.fr")
    login = http.post(
        f"{hosts.public_url}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": account.user_id},
            "password": account.password,
        },
        timeout=30,
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    room = http.post(
        f"{hosts.public_url}/_matrix/client/v3/createRoom", json={}, headers=auth, timeout=30
    )
    assert room.status_code == 200, room.text
    room_id = room.json()["room_id"]
    body = f"bonjour from run {RUN}"
    sent = http.put(
        f"{hosts.public_url}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{RUN}",
        json={"msgtype": "m.text", "body": body},
        headers=auth,
        timeout=30,
    )
    assert sent.status_code == 200, sent.text

    def synced() -> bool:
        response = http.get(
            f"{hosts.public_url}/_matrix/client/v3/sync",
            headers=auth,
            timeout=30,
            params={"timeout": "1000"},
        )
        events = response.json().get("rooms", {}).get("join", {}).get(room_id, {})
        timeline = events.get("timeline", {}).get("events", [])
        return any(event.get("content", {}).get("body") == body for event in timeline)

    wait_for(synced, "the message in /sync")
    # The generic worker on the worker host served them (Synapse's access log, in its journal),
    # but the message: the small preset makes events on main, their one persister.
    journal = hosts.journal(WORKER, "appliance-synapse-worker@generic1")
    for request in (
        "POST /_matrix/client/v3/register",
        "POST /_matrix/client/v3/login",
        "POST /_matrix/client/v3/createRoom",
        "GET /_matrix/client/v3/sync",
    ):
        assert request in journal, request
    assert f"/rooms/{room_id}/send/" not in journal
    assert f"/rooms/{room_id}/send/" in hosts.journal(MAIN, "appliance-synapse")


def uploader(hosts: Hosts, address: str):
    """A new agent's upload through nginx: the function sends the bytes, returns the answer."""
    account = client(hosts).register_account(address)
    user = User(account.user_id, account.access_token)
    return lambda data: upload(hosts.public_url, user, data, http=hosts.https())


def test_eicar_is_refused_on_the_media_worker_and_a_clean_file_stored(hosts):
    upload = uploader(hosts, "louis.pasteur@ac-paris.fr")
    clean = upload(unique_bytes())
    assert clean.status_code == 200, clean.text
    refused = upload(EICAR)
    before, after = INFECTED_MESSAGE.split("{signature}")
    body = refused.json()
    assert (refused.status_code, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert body["error"].startswith(before) and body["error"].endswith(after), body
    # The media repository on the data host took both; the file is in its media store.
    journal = hosts.journal(DATA, "appliance-synapse-worker@media1")
    assert journal.count("POST /_matrix/media/v3/upload") >= 2
    media_id = clean.json()["content_uri"].rsplit("/", 1)[1]
    store = hosts.containers[DATA].rootfs / STATE.lstrip("/") / "synapse/media_store"
    assert any(path.name == media_id[4:] for path in store.rglob("*")), media_id


def exchange(server: tuple[str, int], request: bytes, done, source: str | None = None) -> bytes:
    """Send `request`, read until `done(answer)` or the server closes (from `source` if given)."""
    source_address = (source, 0) if source else None
    with socket.create_connection(server, timeout=10, source_address=source_address) as connection:
        connection.sendall(request)
        answer = b""
        while not done(answer):
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


def postgresql_answer(server: tuple[str, int], source: str) -> bytes:
    """PostgreSQL's first answer to a startup message for Synapse's user and database, sent from
    `source`: 'R' (it asks for the password) or 'E' (refused, with its message)."""
    parameters = b"user\0appliance\0database\0synapse\0\0"
    startup = struct.pack("!ii", 8 + len(parameters), 196608) + parameters  # protocol 3.0

    def whole_message(answer: bytes) -> bool:
        return len(answer) >= 5 and len(answer) >= 1 + struct.unpack("!i", answer[1:5])[0]

    return exchange(server, startup, whole_message, source)


def test_postgresql_lets_in_the_synapse_hosts_only_and_asks_them_for_the_password(hosts):
    server = (hosts.address(DATA), hosts.ports["postgresql"])
    # From the worker host's address: PostgreSQL asks for the password (SASL, SCRAM-SHA-256).
    allowed = postgresql_answer(server, hosts.address(WORKER))
    assert allowed[:1] == b"R" and b"SCRAM-SHA-256" in allowed, allowed
    # From an address that is no Synapse host: refused before any password.
    refused = postgresql_answer(server, hosts.prefix + "9")
    assert refused[:1] == b"E" and b"no pg_hba.conf entry" in refused, refused


def redis_reply(hosts: Hosts, command: bytes) -> bytes:
    """Redis's replies to `command` (one line per command sent)."""
    server = (hosts.address(DATA), hosts.ports["redis"])
    replies = command.count(b"\r\n*") + 1
    return exchange(server, command, lambda answer: answer.count(b"\r\n") >= replies)


def test_redis_answers_with_the_password_only(hosts):
    assert redis_reply(hosts, b"PING\r\n").startswith(b"-NOAUTH")
    password = hosts.secret(MAIN, "redis_password").read_bytes().strip()
    auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password)
    assert redis_reply(hosts, auth + b"*1\r\n$4\r\nPING\r\n") == b"+OK\r\n+PONG\r\n"


def test_the_other_hosts_hold_the_main_hosts_secrets_but_never_its_registration_secret(hosts):
    for host in (WORKER, DATA):
        for name in SYNAPSE_SECRETS_SHARED:
            copy = hosts.secret(host, name)
            assert copy.read_bytes() == hosts.secret(MAIN, name).read_bytes(), (host, name)
            assert copy.stat().st_mode & 0o777 == 0o600, (host, name)
        registration = hosts.secret(host, "registration_shared_secret")
        main_registration = hosts.secret(MAIN, "registration_shared_secret").read_bytes()
        assert not registration.exists() or registration.read_bytes() != main_registration


REPOSITORY = "/var/backups/appliance/restic"


def backed_up(hosts: Hosts, host: str) -> set[str]:
    """What the latest backup of `host` holds, after its timer's unit ran once."""
    container = hosts.containers[host]
    container.run("systemctl", "start", "appliance-backup.service", timeout=600)
    listed = container.run(
        "restic",
        "-r",
        REPOSITORY,
        "--password-file",
        "/etc/appliance/backup-passphrase",
        "ls",
        "latest",
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    return {line.split("/backup-staging", 1)[-1] for line in listed.stdout.split()}


def test_the_backup_spans_the_database_and_the_media_hosts(hosts):
    # An upload first, so that the media host's store has a file to keep.
    stored = uploader(hosts, "irene.joliot@ac-paris.fr")(unique_bytes())
    assert stored.status_code == 200, stored.text
    data = backed_up(hosts, DATA)
    main = backed_up(hosts, MAIN)
    # The database, dumped over the network from each, the media where the media are.
    assert "/synapse/synapse.pgdump" in data and "/synapse/synapse.pgdump" in main
    assert any(path.startswith("/synapse/media_store/local_content/") for path in data)
    assert {"/console/console.sqlite3", "/backup-settings/appliance.yaml"} <= main
