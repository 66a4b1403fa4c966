# SPDX-License-Identifier: AGPL-3.0-or-later
"""Calls: coturn (Debian's TURN server) beside Synapse, as `turn.enabled` renders them.

A signed-in client asks Synapse for TURN credentials (``GET /voip/turnServer``) as Element does
before a call; coturn's own test client (``turnutils_uclient``, from the coturn package) then
makes real allocations with them and relays messages through them. Forged, altered and expired
credentials are refused by coturn; the production render keeps the relay out of the host's own
networks and serves TURN over TLS with nginx's certificate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import evaluation_settings, free_port
from matrix_helpers import Person, SideSynapse, wait_for_allowlist

from appliance.config.layout import Layout
from appliance.config.render import render_all
from appliance.config.secrets_store import ensure_secrets, read_secret
from appliance.config.settings import SettingsError, parse_settings
from appliance.evaluation import services
from appliance.evaluation.supervisor import start, stop, wait_until_ready
from appliance.operations import health

UCLIENT_TIMEOUT = 60
MESSAGES = 5


@dataclass
class TurnAppliance:
    synapse: SideSynapse
    layout: Layout
    port: int
    turn_spec: services.ServiceSpec


@pytest.fixture(scope="module")
def appliance(tmp_path_factory) -> Iterator[TurnAppliance]:
    state = tmp_path_factory.mktemp("turn")
    port = free_port()
    settings = evaluation_settings(
        state, turn={"enabled": True, "listen": {"port": port}, "credential_lifetime_minutes": 10}
    )
    layout = Layout.from_settings(settings, state)
    turn_spec = services.turn(settings, layout)
    with SideSynapse(settings, layout, before=[turn_spec]) as synapse:
        wait_for_allowlist(synapse.client())
        yield TurnAppliance(synapse, layout, port, turn_spec)


def turn_credentials(appliance: TurnAppliance, person: Person) -> dict:
    response = person.call("GET", "/_matrix/client/v3/voip/turnServer")
    assert response.status_code == 200, response.text
    return response.json()


def allocate(port: int, username: str, password: str) -> subprocess.CompletedProcess:
    """coturn's client: two clients allocate relays and send MESSAGES to each other through
    them (-y), over UDP on loopback."""
    return subprocess.run(
        ["turnutils_uclient", "-p", str(port), "-u", username, "-w", password, "-y"]
        + ["-n", str(MESSAGES), "-m", "1", "-l", "100", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=UCLIENT_TIMEOUT,
        check=False,
    )


def message_counts(result: subprocess.CompletedProcess) -> tuple[int, int]:
    """(sent, received) through the relays, as the client's last summary line says."""
    output = result.stdout + result.stderr
    sent = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", output)
    return (int(sent[-1][0]), int(sent[-1][1])) if sent else (0, 0)


def signed(secret: str, username: str) -> str:
    """The TURN REST API password (what Synapse computes): base64(HMAC-SHA1(secret, name))."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# --- the polite path ---------------------------------------------------------------------------


def test_a_signed_in_agent_gets_credentials_that_coturn_relays_a_call_with(appliance):
    person = Person.register(appliance.synapse.client(), "camille.call@ac-paris.fr")

    credentials = turn_credentials(appliance, person)

    assert credentials["uris"] == [
        f"turn:127.0.0.1:{appliance.port}?transport=udp",
        f"turn:127.0.0.1:{appliance.port}?transport=tcp",
    ]
    assert 0 < credentials["ttl"] <= 600
    expiry, user = credentials["username"].split(":", 1)
    assert user == person.user_id
    assert time.time() < int(expiry) <= time.time() + 600 + 5
    result = allocate(appliance.port, credentials["username"], credentials["password"])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # Both clients' messages went through the relays and arrived.
    sent, received = message_counts(result)
    assert sent >= MESSAGES and received == sent, result.stdout[-2000:]


def test_the_health_check_asks_coturn_itself(appliance):
    check = health.check_turn("127.0.0.1", appliance.port)
    assert check.ok, check.summary

    closed = health.check_turn("127.0.0.1", free_port())
    assert not closed.ok
    assert "did not answer" in closed.summary or "not reachable" in closed.summary


# --- what an attacker tries --------------------------------------------------------------------


def test_credentials_need_a_signed_in_user(appliance):
    response = appliance.synapse.client().get("/_matrix/client/v3/voip/turnServer")
    assert response.status_code == 401
    assert response.json()["errcode"] == "M_MISSING_TOKEN"


def test_forged_altered_and_expired_credentials_are_refused_by_coturn(appliance):
    person = Person.register(appliance.synapse.client(), "fabien.forge@ac-paris.fr")
    real = turn_credentials(appliance, person)
    expiry, user = real["username"].split(":", 1)
    secret = read_secret(appliance.layout.secret("turn_shared_secret"))
    expired = f"{int(time.time()) - 60}:{user}"
    attempts = {
        "a guessed password": (real["username"], "not-the-password"),
        # A longer life, keeping the password Synapse signed for the real one.
        "an extended expiry": (f"{int(expiry) + 86400}:{user}", real["password"]),
        "another user's name": (f"{expiry}:@someone:{user.split(':', 1)[1]}", real["password"]),
        # Signed with the right secret (as Synapse would have), but already expired.
        "an expired name": (expired, signed(secret, expired)),
    }
    for what, (username, password) in attempts.items():
        result = allocate(appliance.port, username, password)
        assert result.returncode != 0, f"{what} was accepted"
        assert "Cannot complete Allocation" in result.stdout + result.stderr, what
        assert message_counts(result)[1] == 0, what


def test_the_real_credentials_still_work_after_the_refusals(appliance):
    person = Person.register(appliance.synapse.client(), "regis.retry@ac-paris.fr")
    credentials = turn_credentials(appliance, person)
    result = allocate(appliance.port, credentials["username"], credentials["password"])
    assert result.returncode == 0, result.stdout[-2000:]


def test_coturn_stopped_is_red_and_comes_back(appliance):
    stop(appliance.turn_spec)
    try:
        assert not health.check_turn("127.0.0.1", appliance.port).ok
    finally:
        process = start(appliance.turn_spec)
        # The service's own readiness probe is this health check: None once it answers.
        assert wait_until_ready(appliance.turn_spec, process) is None
    assert health.check_turn("127.0.0.1", appliance.port).ok


# --- rendering and settings --------------------------------------------------------------------

PRODUCTION = {
    "mode": "production",
    "server_name": "ac-paris.fr",
    "public_baseurl": "https://matrix.ac-paris.fr/",
    "clamav": {"signatures": "freshclam"},
    "synapse": {"database": {"engine": "postgresql", "password": "db-pass-123"}},
    "mail": {"smtp_host": "smtp.ac-paris.fr", "run_local_sink": False},
    "host": {"system_root": "ROOT", "service_user": "appliance"},
    "turn": {
        "enabled": True,
        "host": "turn.ac-paris.fr",
        "listen": {"bind_address": "0.0.0.0", "port": 3478},
        "tls_port": 5349,
        "external_address": "192.0.2.10",
    },
}


def production_files(tmp_path: Path) -> tuple[dict, Layout]:
    data = {**PRODUCTION, "host": {**PRODUCTION["host"], "system_root": str(tmp_path / "root")}}
    settings = parse_settings({**data, "paths": {"state_dir": str(tmp_path / "state")}}, "test")
    layout = Layout.from_settings(settings, tmp_path)
    ensure_secrets(layout)
    return {file.template: file for file in render_all(settings, layout)}, layout


def test_production_serves_turn_over_tls_and_keeps_the_relay_out_of_private_networks(tmp_path):
    files, layout = production_files(tmp_path)

    config = files["turn/turnserver.conf.j2"]
    assert config.mode == 0o600
    assert stat.S_IMODE(config.mode) & 0o077 == 0
    assert config.owner == "appliance-turn"
    assert (
        f"static-auth-secret={read_secret(layout.secret('turn_shared_secret'))}" in config.content
    )
    for line in (
        "listening-ip=0.0.0.0",
        "tls-listening-port=5349",
        "external-ip=192.0.2.10/0.0.0.0",
        "denied-peer-ip=10.0.0.0-10.255.255.255",
        "denied-peer-ip=127.0.0.0-127.255.255.255",
        "denied-peer-ip=192.168.0.0-192.168.255.255",
        "denied-peer-ip=::ffff:0.0.0.0-::ffff:255.255.255.255",
        # The host's own public address: relayed packets to it would arrive on lo.
        "denied-peer-ip=192.0.2.10",
        "no-tcp-relay",
        "total-quota=8136",  # three quarters of the relay range: the ports never run out
        "no-tlsv1_1",
        "no-cli",
    ):
        assert line in config.content.splitlines(), line
    assert "allow-loopback-peers" not in config.content

    homeserver = files["synapse/homeserver.yaml.j2"].content
    assert "turns:turn.ac-paris.fr:5349?transport=tcp" in homeserver
    assert "turn_allow_guests: false" in homeserver
    assert "static-auth-secret" not in homeserver
    unit = files["systemd/appliance-turn.service.j2"].content
    assert "LoadCredential=private-key:" in unit
    assert "User=appliance-turn" in unit
    nft = files["nftables/nftables.conf.j2"].content
    assert "udp dport { 3478, 49152-59999 } accept" in nft
    assert "tcp dport { 3478, 5349 } accept" in nft
    assert 'meta skuid "appliance-turn" fib daddr type local drop' in nft


def test_the_consoles_health_page_checks_coturn(tmp_path):
    files, _ = production_files(tmp_path)
    console = json.loads(files["console/console.json.j2"].content)
    assert console["TURN"] == {"host": "127.0.0.1", "port": 3478}


def test_without_turn_nothing_is_rendered_or_opened(tmp_path):
    data = {**PRODUCTION, "turn": {"enabled": False}}
    data["host"] = {**PRODUCTION["host"], "system_root": str(tmp_path / "root")}
    settings = parse_settings({**data, "paths": {"state_dir": str(tmp_path / "state")}}, "test")
    layout = Layout.from_settings(settings, tmp_path)
    ensure_secrets(layout)
    files = {file.template: file for file in render_all(settings, layout)}
    assert "turn/turnserver.conf.j2" not in files
    assert "systemd/appliance-turn.service.j2" not in files
    assert "turn_uris" not in files["synapse/homeserver.yaml.j2"].content
    assert "3478" not in files["nftables/nftables.conf.j2"].content


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        ({"enabled": True, "relay_min_port": 50000, "relay_max_port": 49000}, "relay_min_port"),
        ({"enabled": True, "listen": {"port": 478}}, "turn.listen"),
        ({"enabled": True, "tls_port": 443}, "turn.tls_port"),
        ({"enabled": True, "tls_port": 5349}, "turn.tls_port: evaluation mode"),
        ({"enabled": True, "external_address": "turn.example.fr"}, "turn.external_address"),
        ({"enabled": True, "credential_lifetime_minutes": 0}, "turn.credential_lifetime_minutes"),
    ],
)
def test_bad_turn_settings_name_their_key(turn, expected):
    with pytest.raises(SettingsError) as error:
        parse_settings({"turn": turn}, "appliance.yaml")
    assert expected in str(error.value)


def test_turn_on_the_port_of_another_service_is_refused():
    with pytest.raises(SettingsError) as error:
        parse_settings({"turn": {"enabled": True, "listen": {"port": 8008}}}, "appliance.yaml")
    assert "turn.listen.port" in str(error.value)
