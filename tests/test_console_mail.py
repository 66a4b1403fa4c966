# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's mail against real SMTP relays (aiosmtpd): STARTTLS verifies the certificate,
and the relay's password never crosses a network in clear (admin_console/mailer.py)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass, field

import psutil
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from console_helpers import self_signed_certificate
from cryptography import x509
from harness import free_port

from admin_console import create_app, mailer

USER, PASSWORD = "relay-user", "relay-Passw0rd"


@dataclass
class Relay:
    """What a relay saw: logins (user, password, over TLS?) and mails (recipients, over TLS?)."""

    host: str
    port: int
    logins: list[tuple[str, str, bool]] = field(default_factory=list)
    mails: list[tuple[list[str], bool]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.mails.append((list(envelope.rcpt_tos), session.ssl is not None))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.logins.append(
            (auth_data.login.decode(), auth_data.password.decode(), session.ssl is not None)
        )
        return AuthResult(success=True)


def this_hosts_other_address() -> str:
    """An IPv4 address of this machine that is not loopback: a relay 'off this host' to the
    console, while the traffic stays on the machine."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if (
                address.family == socket.AF_INET
                and not ipaddress.ip_address(address.address).is_loopback
            ):
                return address.address
    pytest.skip("this machine has no non-loopback IPv4 address to put a relay on")


@pytest.fixture
def start_relay(tmp_path):
    """start_relay(host, tls=...): a relay on host; with tls, it offers STARTTLS with a
    certificate for `tls` (a host name or address) and requires it. Returns (Relay, CA file)."""
    controllers = []

    def start(host: str, tls: str | None = None) -> tuple[Relay, str | None]:
        relay = Relay(host, free_port())
        options: dict = {"auth_require_tls": False}  # so that a password sent in clear is seen
        ca_file = None
        if tls:
            name = (
                x509.IPAddress(ipaddress.ip_address(tls)) if tls[0].isdigit() else x509.DNSName(tls)
            )
            cert_file, key_file = self_signed_certificate(tmp_path, 30, [name])
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_file, key_file)
            options.update(tls_context=context, require_starttls=True)
            ca_file = str(cert_file)
        controller = Controller(
            relay,
            hostname=host,
            port=relay.port,
            server_hostname="relay.test",
            authenticator=relay.authenticate,
            **options,
        )
        controller.start()
        controllers.append(controller)
        return relay, ca_file

    yield start
    for controller in controllers:
        controller.stop()


def send(tmp_path, relay: Relay, **config) -> None:
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "DATABASE": str(tmp_path / "console.sqlite3"),
            "FIRST_OPERATOR_FILE": str(tmp_path / "operator.json"),
            "SESSION_TIMEOUT_MINUTES": 30,
            "SERVER_NAME_MATRIX": "test.appliance.localhost",
            "MAIL_FROM": "Console <noreply@test.appliance.localhost>",
            "SMTP_HOST": relay.host,
            "SMTP_PORT": relay.port,
            **config,
        }
    )
    with app.app_context():
        mailer.send("agent@ac-paris.fr", "Invitation", "Hello")


def test_starttls_checks_the_certificate_then_logs_in_and_sends(tmp_path, start_relay):
    relay, ca_file = start_relay("127.0.0.1", tls="127.0.0.1")
    send(
        tmp_path,
        relay,
        SMTP_STARTTLS=True,
        SMTP_CA_FILE=ca_file,
        SMTP_USER=USER,
        SMTP_PASSWORD=PASSWORD,
    )
    assert relay.logins == [(USER, PASSWORD, True)]
    assert relay.mails == [(["agent@ac-paris.fr"], True)]


@pytest.mark.parametrize("certified, trusted", [("127.0.0.1", False), ("mail.example", True)])
def test_a_relay_whose_certificate_fails_gets_neither_password_nor_mail(
    tmp_path, start_relay, certified, trusted
):
    """Not signed by a trusted CA, or for another name than the relay's: refused alike."""
    relay, ca_file = start_relay("127.0.0.1", tls=certified)
    with pytest.raises(mailer.MailNotSent, match="CERTIFICATE_VERIFY_FAILED"):
        send(
            tmp_path,
            relay,
            SMTP_STARTTLS=True,
            SMTP_USER=USER,
            SMTP_PASSWORD=PASSWORD,
            SMTP_CA_FILE=ca_file if trusted else None,
        )
    assert relay.logins == [] and relay.mails == []


def test_a_password_for_a_relay_off_this_host_goes_over_tls_even_if_not_required(
    tmp_path, start_relay
):
    address = this_hosts_other_address()
    relay, ca_file = start_relay(address, tls=address)
    send(
        tmp_path,
        relay,
        SMTP_STARTTLS=False,
        SMTP_CA_FILE=ca_file,
        SMTP_USER=USER,
        SMTP_PASSWORD=PASSWORD,
    )
    assert relay.logins == [(USER, PASSWORD, True)]
    assert relay.mails == [(["agent@ac-paris.fr"], True)]


def test_a_relay_off_this_host_without_starttls_never_gets_the_password(tmp_path, start_relay):
    relay, _ = start_relay(this_hosts_other_address())
    with pytest.raises(mailer.MailNotSent, match="offers no STARTTLS"):
        send(tmp_path, relay, SMTP_STARTTLS=False, SMTP_USER=USER, SMTP_PASSWORD=PASSWORD)
    assert relay.logins == [] and relay.mails == []


def test_a_relay_on_this_host_may_take_the_password_without_tls(tmp_path, start_relay):
    """The documented exception: on loopback the password never leaves the machine."""
    relay, _ = start_relay("127.0.0.1")
    send(tmp_path, relay, SMTP_STARTTLS=False, SMTP_USER=USER, SMTP_PASSWORD=PASSWORD)
    assert relay.logins == [(USER, PASSWORD, False)]
    assert relay.mails == [(["agent@ac-paris.fr"], False)]


def test_required_starttls_refuses_a_relay_without_it(tmp_path, start_relay):
    relay, _ = start_relay("127.0.0.1")
    with pytest.raises(mailer.MailNotSent, match="offers no STARTTLS"):
        send(tmp_path, relay, SMTP_STARTTLS=True)
    assert relay.mails == []
