# SPDX-License-Identifier: AGPL-3.0-or-later
"""The test harness: one real evaluation appliance per test session.

Synapse (SQLite, with the appliance module), clamd with the project's EICAR signatures, the SMTP
sink and the console are started by the same code as `make up`, on free loopback ports in a
temporary directory, and stopped at the end of the session.
"""

from __future__ import annotations

import pytest
import requests
from console_helpers import Console, Synapse
from harness import TEST_DOMAINS, MailSink, evaluation_settings, free_port  # noqa: F401
from matrix_helpers import MatrixClient, SideSynapse, client_for

from appliance.antivirus.clamd import ClamdClient
from appliance.config.layout import Layout
from appliance.evaluation.lifecycle import EvaluationAppliance

# Session fixtures of the worker tests (a PostgreSQL cluster and a private Redis) and the
# network of appliances for the federation tests (started only by tests that use them).
pytest_plugins = ["workers_fixtures", "federation_fixtures"]


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
            "SERVER_NAME_MATRIX": config.server_name,
            "PUBLIC_BASEURL": config.public_baseurl,
            "MAIL_FROM": config.mail.notif_from,
            "SYNAPSE_URL": config.synapse.listen.url,
            "SERVICE_TOKEN_FILE": str(appliance.layout.service_token),
            "SECRET_KEY": "test-secret-key",
            "DATABASE": str(tmp_path / "console.sqlite3"),
            "FIRST_OPERATOR_FILE": str(tmp_path / "console-admin.json"),
            "STATE_DIR": str(appliance.layout.state_dir),
            "CLAMD_HOST": config.clamav.listen.connect_host,
            "CLAMD_PORT": config.clamav.listen.port,
            "CLAMAV_SIGNATURES": config.clamav.signatures,
            "CLAMAV_DATABASE_DIR": str(appliance.layout.clamav_database_dir),
            "CONTENT_SCANNER_URL": config.content_scanner.listen.url,
            "SMTP_HOST": config.mail.smtp_host,
            "SMTP_PORT": config.mail.smtp_port,
            "SESSION_COOKIE_SECURE": False,
            "SESSION_TIMEOUT_MINUTES": 30,
        }
    )
    return app


@pytest.fixture
def app(console_app):
    """The console app with real CSRF protection, as a browser meets it."""
    console_app.config.update(WTF_CSRF_ENABLED=True)
    return console_app


@pytest.fixture
def console(app) -> Console:
    """The first operator, logged in to the console."""
    return Console(app)


@pytest.fixture
def synapse(appliance, admin_token) -> Synapse:
    """The shared appliance's Admin API, for setting up and checking what the console did."""
    settings = appliance.settings
    return Synapse(settings.synapse.listen.url, admin_token, settings.server_name)


@pytest.fixture
def http() -> requests.Session:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="session")
def synapse_without_tables(tmp_path_factory):
    """A Synapse whose background tasks (which create the module's tables) run elsewhere, as on
    a worker that starts before the main process has created them."""
    state_dir = tmp_path_factory.mktemp("no-tables")
    settings = evaluation_settings(state_dir)
    layout = Layout.from_settings(settings, state_dir)

    def background_tasks_elsewhere(config: dict) -> None:
        config["run_background_tasks_on"] = "background_worker"

    with SideSynapse(settings, layout, edit_config=background_tasks_elsewhere) as side:
        yield side


@pytest.fixture(scope="module")
def client(appliance) -> MatrixClient:
    """A Matrix client of the shared appliance, over plain HTTP, reading its mail sink."""
    return client_for(appliance)
