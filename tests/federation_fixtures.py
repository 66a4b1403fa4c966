# SPDX-License-Identifier: AGPL-3.0-or-later
"""A network of appliances on one machine, for the federation tests (a pytest plugin, loaded
from conftest.py's ``pytest_plugins``).

The session fixture ``network`` starts Synapse servers with the appliance module, each rendered
by the same code as ``make up`` (`SideSynapse`) with ``federation.mode: closed``:

* ``agents_a`` on 127.0.0.2 and ``agents_b`` on 127.0.0.3, two public bodies (their own
  allowed domains), peers of each other with the role ``agents``;
* ``externals`` on 127.0.0.4, the network's externals' server (role ``externals``), whose
  users are externals invited by email by its staff (the only agents it registers);
* ``outsider`` on 127.0.0.5, a server that lists the others as peers but that none of them
  lists: what any Matrix server on the Internet is to the network;
* ``down``, a peer on 127.0.0.6 that every member lists and that never starts.

Server names are IP literals with a port (no DNS, no .well-known); each server serves
federation over TLS with a certificate from a certificate authority made here, which every
server trusts through ``federation.ca_certificates``.  Each Synapse uses the shared
appliance's clamd.  Only the test configs loosen what tests need: loopback is reachable for
federation, back-off is short, rate limits are wide.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import evaluation_settings, free_port
from matrix_helpers import (
    PASSWORD,
    MatrixClient,
    Person,
    SideSynapse,
    _path_part,
    wait_for_allowlist,
)

from appliance.addresses.email_address import parse_email
from appliance.addresses.identity import localpart_for
from appliance.config.layout import Layout

# Synapse's default ip_range_blacklist without 127.0.0.0/8: the servers talk over loopback.
LOOPBACK_FEDERATION_BLOCKLIST = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
]

# --- helpers of the federation tests: waiting on another server -----------------------------

WAIT = 60.0  # seconds; federation on a loaded machine


def wait_for(what: str, probe: Callable[[], object], timeout: float = WAIT):
    """Poll until probe() returns something true; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def unique(prefix: str) -> str:
    return f"{prefix}.{secrets.token_hex(3)}"


def texts(person: Person, room_id: str) -> list[tuple[str, str]]:
    """(sender, body) of the room's messages as this person's server has them, oldest first."""
    path = f"/_matrix/client/v3/rooms/{_path_part(room_id)}/messages"
    response = person.call("GET", path, params={"dir": "b", "limit": 100})
    assert response.status_code == 200, response.text
    events = [e for e in response.json()["chunk"] if e["type"] == "m.room.message"]
    return [(e["sender"], e["content"].get("body")) for e in reversed(events)]


_SYNC_FILTERS = itertools.count(1)


def invites_of(person: Person) -> set[str]:
    """The rooms this person is invited to, as their own server knows them now."""
    # Synapse answers a repeated identical /sync from a cache for a while: each call asks
    # with its own filter.
    fresh = {"room": {"timeline": {"limit": 1}}, "account_data": {"limit": next(_SYNC_FILTERS)}}
    response = person.call(
        "GET", "/_matrix/client/v3/sync", params={"timeout": 0, "filter": json.dumps(fresh)}
    )
    assert response.status_code == 200, response.text
    return set(response.json().get("rooms", {}).get("invite", {}))


def membership(person: Person, room_id: str, user_id: str) -> str | None:
    return person.state(room_id).get(("m.room.member", user_id), {}).get("membership")


def identity_token(server, person: Person) -> str:
    """What a client does before an email invite: an OpenID token of its homeserver buys a
    token of the identity service (this server's own)."""
    path = f"/_matrix/client/v3/user/{person.user_id}/openid/request_token"
    openid = person.call("POST", path, {})
    assert openid.status_code == 200, openid.text
    registered = server.client.post("/_matrix/identity/v2/account/register", openid.json())
    assert registered.status_code == 200, registered.text
    return registered.json()["token"]


# Synapse's answer to a make_join for a user the room's server does not hold as invited.
NOT_INVITED = "You are not invited to this room."


def join_when_invited(person: Person, room_id: str):
    """Join a room of another server once the invite has reached this person's server.

    The inviting server sends the invite to the invitee's server before it stores the invite
    itself (Synapse's order), so a join that quick may be told "not invited" by the room's
    server for a moment: that answer, and only that one, is asked again (bounded)."""
    wait_for(
        f"the invite to {room_id} reaching {person.user_id}", lambda: room_id in invites_of(person)
    )

    def answered():
        response = person.join(room_id)
        if response.status_code == 403 and NOT_INVITED in response.text:
            return None
        return (response,)  # (a response is false when refused: that too is an answer)

    (response,) = wait_for(f"{person.user_id} joining {room_id}", answered)
    return response


# --- the network ---------------------------------------------------------------------------

RATE = {"per_second": 100, "burst_count": 1000}


def loosen_for_tests(config: dict) -> None:
    """What only tests need: loopback federation, a short back-off, wide rate limits."""
    config["ip_range_blacklist"] = LOOPBACK_FEDERATION_BLOCKLIST
    # Plain integers are milliseconds; a peer that was down is retried within seconds.
    config["federation"] = {
        "max_long_retry_delay": 1000,
        "max_short_retry_delay": 500,
        "destination_min_retry_interval": 1000,
        "destination_max_retry_interval": 5000,
    }
    config["rc_federation"] = {"window_size": 1000, "sleep_limit": 1000, "reject_limit": 1000}
    config["rc_joins"] = {"local": RATE, "remote": RATE}
    config["rc_joins_per_room"] = RATE
    config["rc_invites"] = {"per_room": RATE, "per_user": RATE, "per_issuer": RATE}
    config["rc_message"] = RATE
    # Synapse calls identity services over HTTPS with the system's trust, which lacks the test
    # CA: a standard client's email invite names this server's TLS listener as id_server
    # (tests/test_federation_externals_invites.py). Federation keeps checking certificates.
    config["use_insecure_ssl_client_just_for_testing_do_not_use"] = True


@dataclass(frozen=True)
class CertificateAuthority:
    """A throwaway certificate authority, made by the test."""

    certificate_file: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, directory: Path, days: int = 2) -> CertificateAuthority:
        """Valid `days` days (nginx's self-check wants two weeks left on a host's chain)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Appliance federation test CA")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        file = directory / "ca.pem"
        file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(file, key, certificate)

    def issue(self, address: str, directory: Path, days: int = 2) -> tuple[Path, Path]:
        """A server certificate for an IP address or a host name (what Synapse and clients
        check): (chain, key) files."""
        try:
            subject: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(address))
        except ValueError:
            subject = x509.DNSName(address)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(
                x509.SubjectAlternativeName([subject]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        chain, key_file = directory / "tls.crt", directory / "tls.key"
        chain.write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
            + self.certificate.public_bytes(serialization.Encoding.PEM)
        )
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        return chain, key_file


def free_port_on(address: str) -> int:
    return free_port(address)


@dataclass(frozen=True)
class Plan:
    """One server of the test network, before it starts."""

    key: str
    address: str
    role: str
    allowed_domains: tuple[str, ...]
    port: int
    client_port: int

    @property
    def server_name(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}/"


@dataclass
class Server:
    """A running server of the network, with its client and its admin token."""

    plan: Plan
    side: SideSynapse
    client: MatrixClient
    admin_token: str

    @property
    def server_name(self) -> str:
        return self.plan.server_name

    def person(self, address: str) -> Person:
        return Person.register(self.client, address)

    def legacy_external(self, address: str) -> Person:
        """An external account of this server, made by its administrator with the address
        bound (the module records it external and marks its name): what an agents' server
        keeps of the externals it made before its network had an externals' server. Invited
        by email now, such an address gets its account there
        (tests/test_federation_externals_invites.py)."""
        user_id = f"@{localpart_for(parse_email(address))}:{self.server_name}"
        made = self.admin(
            "PUT",
            f"/_synapse/admin/v2/users/{_path_part(user_id)}",
            {"password": PASSWORD, "threepids": [{"medium": "email", "address": address}]},
        )
        assert made.status_code == 201, made.text
        login = self.client.login_with_email(address)
        assert login.status_code == 200, login.text
        return Person(self.client, user_id, login.json()["access_token"])

    def admin(self, method: str, path: str, body: dict | None = None):
        return self.client.request(method, path, token=self.admin_token, json=body)


@dataclass
class Network:
    agents_a: Server
    agents_b: Server
    externals: Server
    outsider: Server
    # A peer every member lists but that never runs: a peer that is down.
    down: Plan


def _plans() -> list[Plan]:
    specs = [
        ("agents_a", "127.0.0.2", "agents", ("ac-paris.fr",)),
        ("agents_b", "127.0.0.3", "agents", ("ac-lyon.fr",)),
        # Its only agents are its staff: everyone else gets an account by invitation.
        ("externals", "127.0.0.4", "externals", ("staff.example",)),
        ("outsider", "127.0.0.5", "agents", ("outside.example",)),
        ("down", "127.0.0.6", "agents", ("down.example",)),
    ]
    return [
        Plan(key, address, role, domains, free_port_on(address), free_port())
        for key, address, role, domains in specs
    ]


def _peer(plan: Plan) -> dict:
    return {
        "server_name": plan.server_name,
        "base_url": plan.base_url,
        "role": plan.role,
        # The domains whose agents it holds, pinned in the others' settings (then it owns
        # nothing else). agents_a is left unpinned: what it publishes is its own unless another
        # server claims it too, which is how a domain added live reaches the others' /info.
        "domains": list(plan.allowed_domains)
        if plan.role == "agents" and plan.key != "agents_a"
        else [],
    }


def member_settings(
    plan: Plan, peers: list[Plan], state_dir: Path, ca: CertificateAuthority, clamd_port: int
):
    certificate, private_key = ca.issue(plan.address, state_dir)
    return evaluation_settings(
        state_dir,
        server_name=plan.server_name,
        public_baseurl=plan.base_url,
        synapse={"listen": {"port": plan.client_port}},
        clamav={"listen": {"port": clamd_port}},
        registration={"allowed_domains": list(plan.allowed_domains)},
        federation={
            "mode": "closed",
            "peers": [_peer(peer) for peer in peers],
            "ca_certificates": [str(ca.certificate_file)],
            "domains_refresh_seconds": 2,
            "listen": {"bind_address": plan.address, "port": plan.port},
            "certificate": str(certificate),
            "private_key": str(private_key),
        },
    )


@pytest.fixture(scope="session")
def network(appliance, tmp_path_factory):
    """Four servers federating over TLS on loopback, and a listed peer that is down (see the
    module docstring)."""
    ca = CertificateAuthority.create(tmp_path_factory.mktemp("federation-ca"))
    clamd_port = appliance.settings.clamav.listen.port
    *plans, down = _plans()
    members = [plan for plan in plans if plan.key != "outsider"] + [down]
    started: dict[str, Server] = {}
    sides: list[SideSynapse] = []
    try:
        for plan in plans:
            # Members list each other; the outsider lists them all, and none lists it.
            peers = [peer for peer in members if peer is not plan]
            state_dir = tmp_path_factory.mktemp(plan.key)
            settings = member_settings(plan, peers, state_dir, ca, clamd_port)
            side = SideSynapse(
                settings, Layout.from_settings(settings, state_dir), edit_config=loosen_for_tests
            )
            side.__enter__()
            sides.append(side)
            client = side.client()
            wait_for_allowlist(client)
            started[plan.key] = Server(plan, side, client, side.admin_token())
        yield Network(**started, down=down)
    finally:
        for side in reversed(sides):
            side.__exit__(None, None, None)
