"""The test harness: one real evaluation appliance per test session.

Synapse (SQLite, with the appliance module), clamd with the project's EICAR signatures, the SMTP
sink and the console are started by the same code as `make up`, on free loopback ports in a
temporary directory, and stopped at the end of the session.
"""

from __future__ import annotations

import mailbox
import socket
import time
from pathlib import Path

import pytest
import requests

from appliance.clamd import ClamdClient
from appliance.evaluation import EvaluationAppliance
from appliance.layout import Layout
from appliance.settings import Settings, parse_settings

TEST_DOMAINS = ["ac-paris.fr", "*.gouv.fr"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def evaluation_settings(state_dir: Path, **overrides) -> Settings:
    """Settings for an evaluation appliance on free loopback ports under state_dir."""
    synapse_port = free_port()
    data = {
        "server_name": "test.appliance.localhost",
        "public_baseurl": f"http://127.0.0.1:{synapse_port}/",
        "synapse": {"listen": {"port": synapse_port}},
        "console": {"listen": {"port": free_port()}},
        "content_scanner": {"listen": {"port": free_port()}},
        "clamav": {"listen": {"port": free_port()}},
        "mail": {"smtp_port": free_port(), "notif_from": "Test <noreply@test.appliance.localhost>"},
        "registration": {"allowed_domains": TEST_DOMAINS},
        "paths": {"state_dir": str(state_dir)},
        **overrides,
    }
    return parse_settings(data, "test settings")


@pytest.fixture(scope="session")
def appliance(tmp_path_factory) -> EvaluationAppliance:
    state_dir = tmp_path_factory.mktemp("appliance")
    settings = evaluation_settings(state_dir)
    running = EvaluationAppliance(settings, Layout.from_settings(settings, state_dir))
    if running.clamd_binary is None:
        pytest.fail("clamd is not installed: run `apt-get install -y clamav-daemon` as root")
    running.up()
    yield running
    running.down()


@pytest.fixture(scope="session")
def synapse_url(appliance) -> str:
    return appliance.settings.synapse.listen.url


@pytest.fixture(scope="session")
def admin_token(appliance) -> str:
    return appliance.layout.service_token.read_text().strip()


@pytest.fixture(scope="session")
def clamd(appliance) -> ClamdClient:
    listen = appliance.settings.clamav.listen
    return ClamdClient(listen.connect_host, listen.port, timeout=10)


class MailSink:
    """Reads what the SMTP sink stored in its Maildir."""

    def __init__(self, directory: Path):
        self.directory = directory

    def messages(self) -> list:
        return list(mailbox.Maildir(self.directory, create=False))

    def wait_for(self, recipient: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages():
                if recipient in (message["To"] or ""):
                    return message
            time.sleep(0.1)
        raise AssertionError(f"no mail to {recipient} reached the sink in {timeout} s")


@pytest.fixture(scope="session")
def mail_sink(appliance) -> MailSink:
    return MailSink(appliance.layout.mail_dir)


@pytest.fixture
def console_app(appliance, tmp_path):
    """The console app wired to the running services, with its own fresh database."""
    from admin_console import create_app

    config = appliance.settings
    app = create_app(
        {
            "TESTING": True,
            "MODE": config.mode,
            "SYNAPSE_URL": config.synapse.listen.url,
            "SERVICE_TOKEN_FILE": str(appliance.layout.service_token),
            "SECRET_KEY": "test-secret-key",
            "DATABASE": str(tmp_path / "console.sqlite3"),
            "FIRST_OPERATOR_FILE": str(tmp_path / "console-admin.json"),
            "STATE_DIR": str(appliance.layout.state_dir),
            "CLAMD_HOST": config.clamav.listen.connect_host,
            "CLAMD_PORT": config.clamav.listen.port,
            "CLAMAV_SIGNATURES": config.clamav.signatures,
            "SMTP_HOST": config.mail.smtp_host,
            "SMTP_PORT": config.mail.smtp_port,
            "SESSION_COOKIE_SECURE": False,
            "SESSION_TIMEOUT_MINUTES": 30,
        }
    )
    return app


@pytest.fixture
def http() -> requests.Session:
    with requests.Session() as session:
        yield session
