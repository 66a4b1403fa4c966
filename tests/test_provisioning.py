# SPDX-License-Identifier: AGPL-3.0-or-later
"""The production playbook on a real systemd host: a Debian 12 rootfs booted with systemd-nspawn.

`ansible/site.yml` converges the booted container through `community.docker.nsenter`, first
from a release pinning the previous Synapse, then from this tree (an upgrade in place); then the
appliance is used as a client would use it, through nginx with TLS: /health, the client API,
registration through the mail flow, the EICAR refusal, the console, the content scanner; a
stalled relay holds no request (postfix queues the mail, delivers it once the relay is back); the
backup timer's `appliance backup` fills an encrypted restic repository, one taken while clients
write is put back with restore.yml and everything acknowledged before it is found again;
`--tags self-check` passes; the host is put back as a
release with one user for every service left it, and converging moves its secrets; and a last
converge must change nothing. The container shares the machine's network namespace, so
every service gets a free loopback port from the inventory and the firewall stays off (loading
it there would replace the machine's own rules).

Needs root, systemd-nspawn (systemd-container) and debootstrap; the rootfs is made once and kept
in ROOTFS_CACHE, keyed by what it holds. Select or deselect with `-m provisioning`.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pyotp
import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from harness import TEST_DOMAINS, free_port
from matrix_helpers import MatrixClient, Person
from matrix_media_helpers import EICAR, unique_bytes
from nspawn_hosts import (
    Container,
    Converge,
    boot,
    converge,
    prepare_rootfs,
    require_tools,
)

from appliance.config.layout import SOURCE_ROOT
from appliance.synapse_module.media.scan import INFECTED_MESSAGE

pytestmark = [pytest.mark.provisioning, pytest.mark.slow]

# The Synapse release before the one constraints.txt pins: the upgrade starts there.
PREVIOUS_SYNAPSE = "1.163.1"
SYNAPSE_PIN = re.compile(r"(matrix-synapse(?:\[[a-z,]+\])?)==([0-9][0-9a-z.]*)")
# Its own name per test run: another provisioning test may boot its containers at the same time.
HOST = f"appliance-test-{os.getpid()}"
BACKUP_PASSPHRASE = "provisioning-test-backup-passphrase"


# --- the appliance's releases ------------------------------------------------------------------
def synapse_pin(source: Path) -> str:
    return SYNAPSE_PIN.search((source / "constraints.txt").read_text()).group(2)


def release_with_synapse(version: str, directory: Path) -> Path:
    """A copy of this source tree with Synapse pinned to `version` (an older release's pin)."""
    for name in ("appliance", "admin_console", "templates"):
        shutil.copytree(
            SOURCE_ROOT / name, directory / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        if (SOURCE_ROOT / name).exists():
            text = (SOURCE_ROOT / name).read_text()
            (directory / name).write_text(SYNAPSE_PIN.sub(rf"\g<1>=={version}", text))
    return directory


# --- Ansible -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ports:
    synapse: int
    console: int
    scanner: int
    clamd: int
    https: int
    http: int
    federation: int
    postgresql: int
    smtp: int
    local_mta: int

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(10)))


def inventory(container: Container, ports: Ports, source: Path) -> dict:
    # What this machine trusts beyond Debian's store (an egress proxy may re-sign TLS): the
    # host must trust it too to reach PyPI; common_ca_certificates is the production knob.
    extra_cas = sorted(str(path) for path in Path("/usr/local/share/ca-certificates").glob("*.crt"))
    return {
        "appliance": {
            "hosts": {HOST: container.ansible_host()},
            "vars": {
                "appliance_source_dir": str(source),
                "appliance_server_name": "appliance.test",
                "appliance_public_baseurl": f"https://127.0.0.1:{ports.https}/",
                "appliance_allowed_domains": TEST_DOMAINS,
                "common_firewall_enabled": False,
                "common_ca_certificates": extra_cas,
                "synapse_listen_port": ports.synapse,
                "admin_console_listen_port": ports.console,
                "content_scanner_listen_port": ports.scanner,
                "clamav_listen_port": ports.clamd,
                # Offline: no freshclam (it would call ClamAV's mirrors), EICAR signatures only.
                "clamav_freshclam_enabled": False,
                "clamav_evaluation_fallback": True,
                "postgresql_port": ports.postgresql,
                "mail_smtp_host": "127.0.0.1",
                "mail_smtp_port": ports.smtp,
                "mail_require_transport_security": False,
                # postfix, the local MTA, relays to the test's SMTP sink on ports.smtp.
                "mail_local_mta_port": ports.local_mta,
                "backup_passphrase": BACKUP_PASSPHRASE,
                "nginx_tls_mode": "self-signed",
                "nginx_bind_addresses": ["127.0.0.1"],
                "nginx_https_port": ports.https,
                "nginx_http_port": ports.http,
                "nginx_federation_port": ports.federation,
            },
        }
    }


# --- fixtures ----------------------------------------------------------------------------------
@dataclass
class Provisioned:
    container: Container
    ports: Ports
    inventory: dict
    mail_dir: Path
    logs: Path
    converges: dict[str, Converge]
    sink: Controller  # the relay postfix relays to: the test stops and starts it

    def start_sink(self) -> None:
        self.sink = Controller(Mailbox(self.mail_dir), hostname="127.0.0.1", port=self.ports.smtp)
        self.sink.start()

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.https}"

    @property
    def certificate(self) -> str:
        return str(self.container.rootfs / "etc/appliance/tls/fullchain.pem")

    def https(self) -> requests.Session:
        session = requests.Session()
        session.verify = self.certificate  # the self-signed certificate nginx serves
        # Else $REQUESTS_CA_BUNDLE, when set, would replace it (and proxies are no use here).
        session.trust_env = False
        return session

    def synapse_version(self) -> str:
        url = f"http://127.0.0.1:{self.ports.synapse}/_synapse/admin/v1/server_version"
        return requests.get(url, timeout=10).json()["server_version"]


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory) -> Iterator[Provisioned]:
    require_tools()
    work = tmp_path_factory.mktemp("provisioning")
    ports = Ports.free()
    mail_dir = work / "mail"
    sink = Controller(Mailbox(mail_dir), hostname="127.0.0.1", port=ports.smtp)
    sink.start()
    rootfs = work / "rootfs"
    prepare_rootfs(rootfs, HOST)
    container = boot(rootfs, work / "nspawn.log", HOST)
    state: Provisioned | None = None
    try:
        # Two snapshots of this tree, taken together: they differ by the Synapse pin only, and
        # the converges after the upgrade see the very release it installed.
        previous = release_with_synapse(PREVIOUS_SYNAPSE, work / "previous-release")
        current = release_with_synapse(synapse_pin(SOURCE_ROOT), work / "current-release")
        previous_inventory = inventory(container, ports, previous)
        first = converge(previous_inventory, work / "1-full-converge-previous-synapse.log")
        state = Provisioned(
            container, ports, previous_inventory, mail_dir, work, {"full": first}, sink
        )
        state.converges["previous_version"] = state.synapse_version()
        state.inventory = inventory(container, ports, current)
        state.converges["upgrade"] = converge(state.inventory, work / "2-upgrade.log")
        yield state
    finally:
        container.stop()
        (state.sink if state is not None else sink).stop()
        shutil.rmtree(rootfs, ignore_errors=True)


# --- the tests, in the order a sysadmin lives them ---------------------------------------------
def test_upgrade_from_the_previous_synapse_pin_happens_in_place(provisioned):
    current = synapse_pin(SOURCE_ROOT)
    assert provisioned.converges["previous_version"] == PREVIOUS_SYNAPSE != current
    assert provisioned.synapse_version() == current
    # The first converge installed everything from nothing, the upgrade changed something.
    assert provisioned.converges["upgrade"].changed > 0


def test_synapse_is_healthy_and_serves_clients_through_nginx(provisioned):
    health = requests.get(f"http://127.0.0.1:{provisioned.ports.synapse}/health", timeout=10)
    assert (health.status_code, health.text) == (200, "OK")
    versions = provisioned.https().get(
        f"{provisioned.public_url}/_matrix/client/versions", timeout=10
    )
    assert versions.status_code == 200 and "v1.11" in versions.json()["versions"]


def test_well_known_files_name_this_server(provisioned):
    http = provisioned.https()
    client = http.get(f"{provisioned.public_url}/.well-known/matrix/client", timeout=10).json()
    server = http.get(f"{provisioned.public_url}/.well-known/matrix/server", timeout=10).json()
    # The identity service (email invitations) is the module's, on the same public URL.
    assert client == {
        "m.homeserver": {"base_url": f"{provisioned.public_url}/"},
        "m.identity_server": {"base_url": f"{provisioned.public_url}/"},
    }
    assert server == {"m.server": f"127.0.0.1:{provisioned.ports.federation}"}


def test_plain_http_redirects_to_https(provisioned):
    response = requests.get(
        f"http://127.0.0.1:{provisioned.ports.http}/_matrix/client/versions",
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 301
    assert response.headers["Location"].startswith(f"https://127.0.0.1:{provisioned.ports.https}/")


def test_an_allowed_address_registers_through_the_mail_flow(provisioned):
    client = MatrixClient(provisioned.public_url, provisioned.mail_dir, provisioned.https())
    account = client.register_account("marie.curie@ac-paris.fr")
    assert account.user_id == "@marie.curie-ac-paris.fr:appliance.test"


def test_an_address_outside_the_allowlist_is_refused(provisioned):
    client = MatrixClient(provisioned.public_url, provisioned.mail_dir, provisioned.https())
    response = client.request_token("register", "someone@example.com")
    assert response.status_code >= 400 and response.json()["errcode"].startswith("M_")


def test_eicar_upload_is_refused_and_a_clean_file_accepted(provisioned):
    client = MatrixClient(provisioned.public_url, provisioned.mail_dir, provisioned.https())
    account = client.register_account("louis.pasteur@ac-paris.fr")

    def upload(data: bytes) -> requests.Response:
        return provisioned.https().post(
            f"{provisioned.public_url}/_matrix/media/v3/upload",
            data=data,
            headers={
                "Authorization": f"Bearer {account.access_token}",
                "Content-Type": "application/octet-stream",
            },
            timeout=30,
        )

    assert upload(unique_bytes()).status_code == 200
    refused = upload(EICAR)
    # The module's own refusal reaches the client through nginx: 403 and what was found.
    before, after = INFECTED_MESSAGE.split("{signature}")
    body = refused.json()
    assert (refused.status_code, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert body["error"].startswith(before) and body["error"].endswith(after), body


def test_console_login_page_is_served_under_console(provisioned):
    page = provisioned.https().get(f"{provisioned.public_url}/console/login", timeout=10)
    assert page.status_code == 200
    assert 'name="password"' in page.text and "/console/" in page.text


def test_content_scanner_is_served_and_reaches_clamd(provisioned):
    http = provisioned.https()
    key = http.get(f"{provisioned.public_url}/_matrix/media_proxy/unstable/public_key", timeout=10)
    assert key.status_code == 200 and key.json()["public_key"]
    health = requests.get(f"http://127.0.0.1:{provisioned.ports.scanner}/health", timeout=10)
    assert health.status_code == 200, health.text


# Each service's user (the common role's defaults), and the secrets only it may read.
SYNAPSE_USER, CONSOLE_USER, SCANNER_USER = "appliance", "appliance-console", "appliance-scanner"
UNIT_USERS = {
    "appliance-synapse": SYNAPSE_USER,
    "appliance-console": CONSOLE_USER,
    "appliance-content-scanner": SCANNER_USER,
    "appliance-clamd": "clamav",
}
STATE = "/var/lib/appliance"
SYNAPSE_SECRETS = (
    f"{STATE}/secrets/macaroon_secret_key",
    f"{STATE}/secrets/registration_shared_secret",
    f"{STATE}/secrets/synapse.signing.key",
    f"{STATE}/secrets/synapse-service-password",
    f"{STATE}/synapse/homeserver.yaml",  # the database and SMTP passwords
)
TOKEN = f"{STATE}/service-token/synapse-service-token"
CONSOLE_FILES = (f"{STATE}/console/secret-key", f"{STATE}/console/console.json")
FIRST_OPERATOR = f"{STATE}/console/console-admin.json"
CONSOLE_DATABASE = f"{STATE}/console/console.sqlite3"
SCANNER_KEY = f"{STATE}/content-scanner/body-key"


def test_each_service_runs_as_its_own_user_under_systemd(provisioned):
    for unit, user in UNIT_USERS.items():
        shown = provisioned.container.run(
            "systemctl", "show", unit, "--property=User,ActiveState,MainPID"
        )
        properties = dict(line.split("=", 1) for line in shown.stdout.split())
        assert (properties["User"], properties["ActiveState"]) == (user, "active"), unit
        # The process itself, not only the unit's word for it.
        owner = provisioned.container.run("stat", "--format=%U", f"/proc/{properties['MainPID']}")
        assert owner.stdout.strip() == user, unit


def test_secret_files_belong_to_the_service_that_reads_them(provisioned):
    expected = {
        f"{STATE}/secrets": f"{SYNAPSE_USER} {SYNAPSE_USER} 700",
        f"{STATE}/secrets/macaroon_secret_key": f"{SYNAPSE_USER} {SYNAPSE_USER} 600",
        f"{STATE}/secrets/synapse-service-password": f"{SYNAPSE_USER} {SYNAPSE_USER} 600",
        f"{STATE}/service-token": f"root {CONSOLE_USER} 750",
        TOKEN: f"root {CONSOLE_USER} 640",
        f"{STATE}/console": f"{CONSOLE_USER} {CONSOLE_USER} 750",
        f"{STATE}/console/secret-key": f"{CONSOLE_USER} {CONSOLE_USER} 600",
        f"{STATE}/content-scanner": f"{SCANNER_USER} {SCANNER_USER} 750",
        SCANNER_KEY: f"{SCANNER_USER} {SCANNER_USER} 600",
    }
    shown = provisioned.container.run("stat", "--format=%U %G %a", *expected)
    assert dict(zip(expected, shown.stdout.splitlines(), strict=True)) == expected


def can_read(provisioned: Provisioned, user: str, path: str) -> bool:
    read = provisioned.container.run("runuser", "-u", user, "--", "cat", path, check=False)
    return read.returncode == 0


def test_the_scanner_user_reads_its_key_and_no_other_secret(provisioned):
    assert can_read(provisioned, SCANNER_USER, SCANNER_KEY)
    for secret in (*SYNAPSE_SECRETS, TOKEN, *CONSOLE_FILES):
        assert not can_read(provisioned, SCANNER_USER, secret), secret


def test_the_console_user_reads_the_token_only_and_cannot_change_it(provisioned):
    assert can_read(provisioned, CONSOLE_USER, TOKEN)
    for own in CONSOLE_FILES:
        assert can_read(provisioned, CONSOLE_USER, own), own
    for secret in (*SYNAPSE_SECRETS, SCANNER_KEY):
        assert not can_read(provisioned, CONSOLE_USER, secret), secret
    append = provisioned.container.run(
        "runuser", "-u", CONSOLE_USER, "--", "sh", "-c", f"echo x >> {TOKEN}", check=False
    )
    assert append.returncode != 0
    assert can_read(provisioned, SYNAPSE_USER, f"{STATE}/secrets/macaroon_secret_key")


def test_running_console_and_scanner_do_not_even_see_synapses_secrets(provisioned):
    """Beyond file modes: each unit's own mount namespace hides the others' directories."""

    def listing(unit: str, directory: str) -> str:
        pid = provisioned.container.run("systemctl", "show", unit, "--property=MainPID", "--value")
        seen = provisioned.container.run(
            "nsenter",
            f"--target={pid.stdout.strip()}",
            "--mount",
            "ls",
            "-A",
            directory,
            check=False,
        )
        return seen.stdout

    assert "macaroon_secret_key" in listing("appliance-synapse", f"{STATE}/secrets")
    for unit in ("appliance-console", "appliance-content-scanner"):
        assert listing(unit, f"{STATE}/secrets") == "", unit
    assert listing("appliance-content-scanner", f"{STATE}/service-token") == ""
    assert listing("appliance-console", f"{STATE}/content-scanner") == ""
    assert "synapse-service-token" in listing("appliance-console", f"{STATE}/service-token")


def console_login(provisioned: Provisioned) -> requests.Session:
    """A session of the first operator, logged in through nginx with the generated password."""
    credentials = json.loads(provisioned.container.run("cat", FIRST_OPERATOR).stdout)
    http = provisioned.https()
    console = f"{provisioned.public_url}/console"
    form = http.get(f"{console}/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    login = http.post(
        f"{console}/login",
        data={"csrf_token": csrf, **credentials},
        # Over HTTPS Flask-WTF also wants the page the form came from, as a browser sends it.
        headers={"Referer": f"{console}/login"},
        timeout=30,
    )
    # The password was right: the console, or the second factor it asks for.
    assert login.status_code == 200 and not login.url.endswith("/console/login"), login.text[:500]
    if "/account/second-factor" in login.url:  # production requires one: set it up first
        _OPERATOR_TOTP[provisioned.public_url] = enrol_second_factor(http, console, login.text)
    elif "/login/second-factor" in login.url:
        done = http.post(
            login.url,
            data={"csrf_token": csrf_of(login.text), "code": fresh_code(provisioned.public_url)},
            headers={"Referer": login.url},
            timeout=30,
        )
        assert done.status_code == 200 and "second-factor" not in done.url, done.text[:500]
    return http


# The first operator's authenticator, as the app on their phone would hold it; and the last time
# step used (a code works once).
_OPERATOR_TOTP: dict[str, pyotp.TOTP] = {}
_LAST_STEP: dict[str, int] = {}


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def enrol_second_factor(http: requests.Session, console: str, page: str) -> pyotp.TOTP:
    """What the operator does on the page the console sends them to: scan, type a first code."""
    headers = {"Referer": f"{console}/account/second-factor"}
    started = http.post(
        f"{console}/account/second-factor/enrol",
        data={"csrf_token": csrf_of(page)},
        headers=headers,
        timeout=30,
    )
    totp = pyotp.TOTP(
        re.search(r"data-secret>([A-Z2-7 ]+)<", started.text).group(1).replace(" ", "")
    )
    step = totp.timecode(datetime.datetime.now())
    confirmed = http.post(
        f"{console}/account/second-factor/confirm",
        data={"csrf_token": csrf_of(started.text), "code": totp.generate_otp(step)},
        headers=headers,
        timeout=30,
    )
    assert "data-recovery-codes" in confirmed.text, confirmed.text[:500]
    _LAST_STEP[console.rsplit("/console", 1)[0]] = step
    return totp


def fresh_code(public_url: str) -> str:
    """The code of a time step not used yet (within the console's one-step clock drift)."""
    totp = _OPERATOR_TOTP[public_url]
    deadline = time.monotonic() + 2 * totp.interval
    while True:
        now = totp.timecode(datetime.datetime.now())
        step = max(_LAST_STEP.get(public_url, 0) + 1, now - 1)
        if step <= now + 1:
            _LAST_STEP[public_url] = step
            return totp.generate_otp(step)
        assert time.monotonic() < deadline, "no fresh time step"
        time.sleep(1)  # bounded: the next 30-second step


def assert_console_shows_the_service_account(provisioned: Provisioned, http: requests.Session):
    """The page of a user the console fetched from Synapse with the service token."""
    service_account = "@appliance-console:appliance.test"
    page = http.get(f"{provisioned.public_url}/console/users/{service_account}", timeout=30)
    assert page.status_code == 200 and "/console/login" not in page.url, page.text[:500]
    assert service_account in page.text and "service account" in page.text


def test_the_console_calls_synapse_with_the_token_it_may_read(provisioned):
    """Logged in through nginx, the console shows a user it fetched with the service token."""
    assert_console_shows_the_service_account(provisioned, console_login(provisioned))


def test_database_has_c_collation(provisioned):
    query = "SELECT datcollate || ' ' || datctype FROM pg_database WHERE datname = 'synapse'"
    result = provisioned.container.run(
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "--port",
        str(provisioned.ports.postgresql),
        "--tuples-only",
        "--no-align",
        "--command",
        query,
    )
    assert result.stdout.strip() == "C C"


# --- mail through the local MTA (postfix, a null client on loopback) -------------------------
APPLIANCE_CLI = ("/opt/appliance/venv/bin/appliance", "--config", "/etc/appliance/appliance.yaml")
QUEUE_TIMEOUT = 120  # a stalled relay holds postfix's try up to smtp_helo_timeout (60 s)


class StalledRelay:
    """An SMTP relay that accepts connections and never says a word (a hung relay)."""

    def __init__(self, port: int):
        self.listener = socket.create_server(("127.0.0.1", port))
        # accept() in a thread is woken by no close(): it polls, so close() can stop it.
        self.listener.settimeout(0.5)
        self.closing = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.held.append(connection)

    def close(self) -> None:
        self.closing.set()
        self.thread.join(timeout=10)
        self.listener.close()
        for connection in self.held:
            connection.close()


def mail_queue(provisioned: Provisioned) -> subprocess.CompletedProcess:
    """The health check the self-check and the console run: exit 1 when a mail waits."""
    return provisioned.container.run(*APPLIANCE_CLI, "probe", "check_mail_queue", "0", check=False)


def console_mail_queue(provisioned: Provisioned) -> dict:
    checks = console_login(provisioned).get(
        f"{provisioned.public_url}/console/health/checks.json", timeout=60
    )
    assert checks.status_code == 200, checks.text[:500]
    (queue,) = [check for check in checks.json()["checks"] if check["name"] == "mail-queue"]
    return queue


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(1)


def test_a_stalled_relay_holds_no_request_and_the_mail_leaves_the_queue_once_it_answers(
    provisioned,
):
    client = MatrixClient(provisioned.public_url, provisioned.mail_dir, provisioned.https())
    assert mail_queue(provisioned).returncode == 0
    provisioned.sink.stop()
    stalled = StalledRelay(provisioned.ports.smtp)
    try:
        # Synapse hands the mail to postfix and answers (the client's own timeout, 30 s, would
        # fail the request if Synapse waited for the relay, which never answers).
        session = client.open_session("register", "irene.joliot-curie@ac-paris.fr")
        wait_until(
            lambda: "1 mail(s) waiting" in mail_queue(provisioned).stdout,
            QUEUE_TIMEOUT,
            "the verification mail in postfix's queue",
        )
        assert mail_queue(provisioned).returncode == 1  # red: the self-check says so
        assert client.mails_to(session.address) == []
        # The console's health page reads the same queue (its unit has the postdrop group).
        assert "1 mail(s) waiting" in console_mail_queue(provisioned)["summary"]
    finally:
        stalled.close()
        provisioned.start_sink()

    # The relay is back: postfix's next try delivers it (forced here rather than waiting for
    # its retry schedule, minutes away).
    def delivered() -> bool:
        provisioned.container.run("postqueue", "-f")
        return bool(client.mails_to(session.address))

    wait_until(delivered, QUEUE_TIMEOUT, "the queued mail at the relay")
    assert client.follow(client.link_for(session)).status_code == 200
    wait_until(lambda: mail_queue(provisioned).returncode == 0, 60, "an empty queue")


# --- backup and restore: the timer's `appliance backup`, restore.yml's `appliance restore` -----
REPOSITORY = "/var/backups/appliance/restic"
WRITERS = 3
WRITES_PER_WRITER = 400  # each: a message, and every third time a file too; until told to stop
WRITE_TIMEOUT = 600


def restic(provisioned: Provisioned, *arguments: str, password: bool = True):
    secret = ["--password-file", "/etc/appliance/backup-passphrase"] if password else []
    return provisioned.container.run(
        "env", "RESTIC_PASSWORD=", "restic", "-r", REPOSITORY, *secret, *arguments, check=False
    )


def test_the_backup_timer_runs_appliance_backup_into_an_encrypted_repository(provisioned):
    provisioned.container.run("systemctl", "start", "appliance-backup.service", timeout=600)
    listed = restic(provisioned, "ls", "latest")
    assert listed.returncode == 0, listed.stderr
    paths = {
        line.split("/var/lib/appliance/backup-staging", 1)[-1] for line in listed.stdout.split()
    }
    assert {
        "/synapse/synapse.pgdump",
        "/secrets/synapse.signing.key",
        "/console/console.sqlite3",
        "/content-scanner/body-key",
        "/service-token/synapse-service-token",
        "/backup-settings/appliance.yaml",
    } <= paths
    assert not [path for path in paths if path.endswith(("-wal", "-shm"))]
    # Without the passphrase the repository says nothing; nothing in it is readable as is.
    assert restic(provisioned, "snapshots", password=False).returncode != 0
    found = provisioned.container.run("grep", "-rlF", "appliance.test", REPOSITORY, check=False)
    assert found.stdout == ""
    # The old tar scripts are gone.
    assert not (provisioned.container.rootfs / "usr/local/sbin/appliance-backup").exists()


def test_restore_refuses_to_run_over_the_running_appliance(provisioned):
    refused = provisioned.container.run(*APPLIANCE_CLI, "restore", "latest", check=False)
    assert refused.returncode == 5
    assert "restore refused: the appliance is running (" in refused.stderr


@dataclass
class Written:
    """What one client was told was stored, and when (time.time() of the acknowledgement)."""

    messages: list[tuple[float, str, str, str]]  # (acknowledged, room, event id, text)
    files: list[tuple[float, str, bytes]]  # (acknowledged, mxc URI, content)


def write_until(person: Person, room: str, stop: threading.Event, written: Written) -> None:
    """Bounded in count and time; a request that fails or times out is simply not recorded."""
    deadline = time.monotonic() + WRITE_TIMEOUT
    for number in range(WRITES_PER_WRITER):
        if stop.is_set() or time.monotonic() > deadline:
            return
        text = f"{person.user_id} message {number}"
        try:
            sent = person.send_text(room, text)
            if sent.status_code == 200:
                written.messages.append((time.time(), room, sent.json()["event_id"], text))
            if number % 3 == 0:
                content = unique_bytes(64 * 1024)
                uploaded = person.client.http.post(
                    f"{person.client.base_url}/_matrix/media/v3/upload",
                    data=content,
                    headers={
                        "Authorization": f"Bearer {person.token}",
                        "Content-Type": "application/octet-stream",
                    },
                    timeout=60,
                )
                if uploaded.status_code == 200:
                    written.files.append((time.time(), uploaded.json()["content_uri"], content))
        except requests.RequestException:
            continue


def test_a_backup_taken_while_clients_write_restores_everything_acknowledged_before_it(
    provisioned,
):
    container = provisioned.container
    # Only the backup this test starts: a timer run would be taken at another moment.
    container.run("systemctl", "stop", "appliance-backup.timer")
    container.run("systemctl", "stop", "appliance-backup.service")
    people = [
        Person.register(
            MatrixClient(provisioned.public_url, provisioned.mail_dir, provisioned.https()),
            f"drill.writer{number}@ac-paris.fr",
        )
        for number in range(WRITERS)
    ]
    rooms = [person.new_room(name=f"drill {number}") for number, person in enumerate(people)]
    stop = threading.Event()
    written = [Written([], []) for _ in people]
    writers = [
        threading.Thread(target=write_until, args=(person, room, stop, record), daemon=True)
        for person, room, record in zip(people, rooms, written, strict=True)
    ]
    for writer in writers:
        writer.start()
    try:
        wait_until(
            lambda: all(len(record.messages) >= 3 and record.files for record in written),
            WRITE_TIMEOUT,
            "every client writing",
        )
        backup_began = time.time()
        backup = container.run(
            "systemctl", "start", "appliance-backup.service", check=False, timeout=600
        )
        backup_ended = time.time()
        assert backup.returncode == 0, container.run(
            "journalctl", "-u", "appliance-backup", "-n", "30", check=False
        ).stdout
        # Taken while messages and files flowed: some were acknowledged during it.
        during = [
            acknowledged
            for record in written
            for acknowledged, *_ in [*record.messages, *record.files]
            if backup_began < acknowledged < backup_ended
        ]
        assert during, "no write was acknowledged while the backup ran"
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=120)
    client = MatrixClient(provisioned.public_url, provisioned.mail_dir, provisioned.https())
    after = client.register_account("alan.turing@ac-paris.fr")  # not in the backup

    restored = converge(
        provisioned.inventory,
        provisioned.logs / "3-restore.log",
        "-e",
        "backup_restore_snapshot=latest",
        playbook="restore.yml",
    )
    print(
        f"backup taken in {backup_ended - backup_began:.1f} s while "
        f"{sum(len(r.messages) for r in written)} messages and "
        f"{sum(len(r.files) for r in written)} files were written; restore.yml "
        f"{restored.seconds:.0f} s"
    )

    for person, record in zip(people, written, strict=True):
        assert (
            client.login_with_email(f"drill.writer{people.index(person)}@ac-paris.fr").status_code
            == 200
        )
        for acknowledged, room, event_id, text in record.messages:
            path = f"/_matrix/client/v3/rooms/{quote(room)}/event/{quote(event_id)}"
            event = person.call("GET", path)
            if acknowledged < backup_began:
                assert event.status_code == 200, (event_id, event.text)
            if event.status_code == 200:  # during the backup: in it or not, never torn
                assert event.json()["content"]["body"] == text
        for acknowledged, uri, content in record.files:
            server, media_id = uri.removeprefix("mxc://").split("/")
            path = f"/_matrix/client/v1/media/download/{server}/{media_id}"
            download = person.call("GET", path)
            if acknowledged < backup_began:
                assert download.status_code == 200, (uri, download.text[:200])
            if download.status_code == 200:
                assert download.content == content, uri
    assert client.login_with_email(after.address).status_code == 403
    # Each service got its own files back (the converge after the restore did not need to).
    strays = container.run(
        "find", f"{STATE}/synapse/media_store", "!", "-user", SYNAPSE_USER, check=False
    )
    assert strays.stdout == ""
    aside = container.run("sh", "-c", f"ls -d {STATE}.before_restore_*").stdout.split()
    assert len(aside) == 1


def test_self_check_passes(provisioned):
    checked = converge(
        provisioned.inventory, provisioned.logs / "4-self-check.log", "--tags", "self-check"
    )
    assert checked.changed == 0


# --- a host converged when one user ran every service, upgraded by converging again -------------
# Where that layout kept the console's and the scanner's files: in Synapse's secrets/.
ONE_USER_LAYOUT = {
    FIRST_OPERATOR: f"{STATE}/secrets/console-admin.json",
    TOKEN: f"{STATE}/secrets/synapse-service-token",
    f"{STATE}/console/secret-key": f"{STATE}/secrets/console_secret_key",
    SCANNER_KEY: f"{STATE}/secrets/content_scanner_body_key",
}


def plant_one_user_layout(provisioned: Provisioned) -> None:
    """Put the host back as the one-user layout left it, its services running: the console's and
    the scanner's secrets in secrets/, theirs and their databases Synapse's user's, that user's
    home the state directory, no service-token/ directory."""
    moves = "".join(
        f"mv {new} {old} && chown {SYNAPSE_USER}: {old} && chmod 0600 {old}\n"
        for new, old in ONE_USER_LAYOUT.items()
    )
    provisioned.container.run(
        "sh",
        "-ec",
        f"{moves}rmdir {STATE}/service-token\n"
        f"chown -R {SYNAPSE_USER}: {STATE}/console {STATE}/content-scanner\n"
        # usermod refuses while Synapse runs as that user, which is the very case to converge.
        f"sed -i '/^{SYNAPSE_USER}:/ s#:/nonexistent:#:{STATE}:#' /etc/passwd\n",
    )


def scanner_public_key(provisioned: Provisioned) -> str:
    url = f"{provisioned.public_url}/_matrix/media_proxy/unstable/public_key"
    return provisioned.https().get(url, timeout=10).json()["public_key"]


def test_converging_a_host_of_the_one_user_layout_moves_its_secrets_out_of_synapses(provisioned):
    operator = console_login(provisioned)
    public_key = scanner_public_key(provisioned)
    old_token = provisioned.container.run("cat", TOKEN).stdout.strip()
    plant_one_user_layout(provisioned)

    converge(provisioned.inventory, provisioned.logs / "5-one-user-layout-upgrade.log")

    secrets = provisioned.container.run("ls", "-A", f"{STATE}/secrets").stdout.split()
    assert not {Path(old).name for old in ONE_USER_LAYOUT.values()} & set(secrets)
    owners = provisioned.container.run(
        "stat", "--format=%n %U %G %a", FIRST_OPERATOR, CONSOLE_DATABASE
    ).stdout.splitlines()
    assert owners[0] == f"{FIRST_OPERATOR} {CONSOLE_USER} {CONSOLE_USER} 600"
    assert owners[1].startswith(f"{CONSOLE_DATABASE} {CONSOLE_USER} {CONSOLE_USER} ")
    # Nothing else either: the database's journal, the scanner's verdicts.
    strays = provisioned.container.run(
        "sh",
        "-c",
        f"find {STATE}/console ! -user {CONSOLE_USER}; "
        f"find {STATE}/content-scanner ! -user {SCANNER_USER}",
    )
    assert strays.stdout == ""
    # The keys moved, not made anew: the operator's session and the clients' cached key hold.
    assert_console_shows_the_service_account(provisioned, operator)
    assert scanner_public_key(provisioned) == public_key
    # The moved password logs in; the console's new token works, the old one opens nothing.
    assert_console_shows_the_service_account(provisioned, console_login(provisioned))
    whoami = requests.get(
        f"http://127.0.0.1:{provisioned.ports.synapse}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {old_token}"},
        timeout=10,
    )
    assert (whoami.status_code, whoami.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    home = provisioned.container.run("getent", "passwd", SYNAPSE_USER).stdout.split(":")[5]
    assert home == STATE  # left alone: usermod cannot change it while Synapse runs


def test_second_converge_changes_nothing(provisioned):
    again = converge(provisioned.inventory, provisioned.logs / "6-idempotent-converge.log")
    full = provisioned.converges["full"].seconds
    # Printed, not asserted (timings on a shared machine): the goal is a re-run <= 25 % of a
    # full converge.
    print(
        f"full converge {full:.0f} s, idempotent converge {again.seconds:.0f} s: "
        f"{again.seconds / full:.0%} of a full converge (goal <= 25 %); {again.recap}\n"
        "slowest tasks of the re-run:\n  " + "\n  ".join(again.slowest_tasks())
    )
    assert again.changed == 0, again.log.read_text()[-6000:]
