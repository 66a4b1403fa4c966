# SPDX-License-Identifier: AGPL-3.0-or-later
"""Helpers shared by the console's tests (both tiers): log in through the real login form with
its CSRF token, an operator's session on the console, Synapse's Admin API for setting up and
checking, a clock the tests move, a self-signed certificate. Fixtures live in conftest.py.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from matrix_helpers import Person, client_for

from appliance.synapse_module.rooms.kinds import ACCESS_RULES

PASSWORD = "Console-Test-Passw0rd"


def first_operator(app) -> dict:
    return json.loads(Path(app.config["FIRST_OPERATOR_FILE"]).read_text())


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def login(client, username: str, password: str):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )


class Clock:
    """Starts at the real time, so that logins made before it was set still make sense."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float = 0, hours: float = 0) -> None:
        self.now += minutes * 60 + hours * 3600


class Console:
    """An operator's browser session on the console (Flask's test client, real CSRF); the first
    operator's unless credentials are given."""

    def __init__(self, app, username: str | None = None, password: str | None = None):
        self.client = app.test_client()
        if username is None:
            credentials = first_operator(app)
            username, password = credentials["username"], credentials["password"]
        response = login(self.client, username, password)
        assert response.status_code == 302, response.get_data(as_text=True)
        self.token = csrf_token(self.client.get("/audit/").get_data(as_text=True))

    def get(self, path: str, status: int = 200) -> str:
        response = self.client.get(path)
        assert response.status_code == status, (path, response.status_code)
        return response.get_data(as_text=True)

    def post(self, path: str, **data):
        return self.client.post(path, data={"csrf_token": self.token, **data})

    def confirm(self, path: str, **data):
        """A destructive action: the first POST must only ask, the second one acts."""
        asked = self.post(path, **data)
        assert asked.status_code == 200 and 'name="confirmed" value="yes"' in asked.get_data(
            as_text=True
        ), path
        return self.post(path, confirmed="yes", **data)


@dataclass
class Synapse:
    """The Admin API as the tests use it to set up and check, with the server-admin token."""

    url: str
    token: str
    server_name: str

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = requests.request(
            method,
            self.url + path,
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.ok, (path, response.status_code, response.text)
        return response.json()

    def create_user(self, localpart: str, displayname: str, email: str | None = None) -> str:
        user_id = f"@{localpart}:{self.server_name}"
        body: dict = {"password": PASSWORD, "displayname": displayname}
        if email:
            body["threepids"] = [{"medium": "email", "address": email}]
        self.call("PUT", f"/_synapse/admin/v2/users/{quote(user_id)}", body)
        return user_id

    def wait_for_background_updates(self, timeout: float = 120) -> None:
        # On a fresh database Synapse builds some indexes in the background; reactivating a
        # user fails with a 500 until the profiles index exists.
        deadline = time.monotonic() + timeout
        while self.call("GET", "/_synapse/admin/v1/background_updates/status")["current_updates"]:
            assert time.monotonic() < deadline, "Synapse's background updates did not finish"
            time.sleep(0.5)

    def user(self, user_id: str) -> dict:
        return self.call("GET", f"/_synapse/admin/v2/users/{quote(user_id)}")

    def login(self, user_id: str, password: str = PASSWORD) -> str:
        response = requests.post(
            self.url + "/_matrix/client/v3/login",
            timeout=30,
            json={
                "type": "m.login.password",
                "password": password,
                "identifier": {"type": "m.id.user", "user": user_id},
            },
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def user_path(user_id: str) -> str:
    return f"/users/{quote(user_id)}"


def register_external(appliance, tag: str) -> str:
    """An external as the module knows one: invited by email into a room open to externals,
    then registered with that address."""
    client = client_for(appliance)
    host = Person.register(client, f"{tag}-host@ac-paris.fr")
    open_to_externals = {"type": ACCESS_RULES, "state_key": "", "content": {"rule": "unrestricted"}}
    room = host.new_room(preset="private_chat", initial_state=[open_to_externals])
    assert host.invite_by_email(room, f"{tag}-guest@example.com").status_code == 200
    return Person.register(client, f"{tag}-guest@example.com").user_id


def self_signed_certificate(
    tmp_path: Path, days: int, names: list[x509.GeneralName]
) -> tuple[Path, Path]:
    """A CA-flagged certificate for names, expiring in `days`; returns (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "appliance test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    tag = secrets.token_hex(4)
    cert_file, key_file = tmp_path / f"cert-{tag}.pem", tmp_path / f"key-{tag}.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


# --- every route of the console (tests/fast/console walks them) --------------------------------

# What an anonymous visitor may reach, and why. Nothing else.
PUBLIC = {
    ("static", "GET"): "stylesheets and images of the login page",
    ("auth.login", "GET"): "the login page",
    ("auth.login", "POST"): "logging in",
    ("i18n.choose", "POST"): "choosing the language on the login page (CSRF token required)",
}
# A value for each kind of URL argument.
SAMPLE_VALUES = {
    "PathConverter": "@someone:fast.test",
    "UnicodeConverter": "some-id",
    "IntegerConverter": 1,
}
MAX_REDIRECTS = 3


def routes(app) -> Iterator[tuple[str, str, str]]:
    """(endpoint, method, path) of every rule and method of the app, with sample arguments."""
    for rule in app.url_map.iter_rules():
        # Werkzeug lists a rule's converters only in this attribute.
        values = {
            name: sorted(converter.items)[0]
            if type(converter).__name__ == "AnyConverter"
            else SAMPLE_VALUES[type(converter).__name__]
            for name, converter in rule._converters.items()
        }
        path = rule.build(values)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path


def final_response(client, method: str, path: str, data: dict):
    """The response once the console's own redirects (e.g. / to /health/) are followed."""
    response = client.open(path, method=method, data=data)
    for _ in range(MAX_REDIRECTS):
        location = response.headers.get("Location", "")
        if response.status_code != 302 or location.startswith("/login"):
            break
        response = client.get(location)
    return response
