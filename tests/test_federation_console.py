# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's federation page against a real server of the test network
(tests/federation_fixtures.py): its peers with Synapse's own record of each, and the permanent
warning of open federation."""

from __future__ import annotations

import re
import time

import pytest
from console_helpers import Console
from harness import free_port

from admin_console import create_app

NOT_A_SERVER = f"127.0.0.9:{free_port()}"  # listed here only: Synapse never dealt with it


def console_of(server, tmp_path, mode: str, peers: list[dict]):
    settings = server.side.settings
    app = create_app(
        {
            "TESTING": True,
            "MODE": "evaluation",
            "SERVER_NAME_MATRIX": settings.server_name,
            "PUBLIC_BASEURL": settings.public_baseurl,
            "SYNAPSE_URL": settings.synapse.listen.url,
            "SERVICE_TOKEN_FILE": str(server.side.layout.service_token),
            "SECRET_KEY": "test-secret-key",
            "DATABASE": str(tmp_path / "console.sqlite3"),
            "FIRST_OPERATOR_FILE": str(tmp_path / "console-admin.json"),
            "STATE_DIR": str(server.side.layout.state_dir),
            "CLAMD_HOST": settings.clamav.listen.connect_host,
            "CLAMD_PORT": settings.clamav.listen.port,
            "CLAMAV_SIGNATURES": settings.clamav.signatures,
            "CONTENT_SCANNER_URL": settings.content_scanner.listen.url,
            "SMTP_HOST": settings.mail.smtp_host,
            "SMTP_PORT": settings.mail.smtp_port,
            "SESSION_COOKIE_SECURE": False,
            "SESSION_TIMEOUT_MINUTES": 30,
            "FEDERATION_MODE": mode,
            "FEDERATION_PEERS": peers,
        }
    )
    return Console(app)


def wait_for(what: str, probe, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def rendered_peers(network) -> list[dict]:
    """agents_a's peers as its rendered console config lists them."""
    return network.agents_a.side.settings.federation.model_dump(mode="json")["peers"]


def health_of(page: str, server_name: str) -> str:
    match = re.search(rf'data-peer="{re.escape(server_name)}" data-health="(\w+)"', page)
    assert match, f"{server_name} is not listed"
    return match.group(1)


def test_the_page_lists_each_peer_with_synapses_record_of_it(network, tmp_path):
    a, b = network.agents_a, network.agents_b
    alice = a.person("fed-console-alice@ac-paris.fr")
    bob = b.person("fed-console-bob@ac-lyon.fr")
    room = alice.new_room(preset="private_chat")
    assert alice.invite(room, bob.user_id).status_code == 200
    wait_for("the invite on B", lambda: bob.join(room).status_code == 200)
    assert alice.send_text(room, "a transaction to B").status_code == 200
    # Synapse records a destination once a transaction went through.
    path = f"/_synapse/admin/v1/federation/destinations/{b.server_name}"
    wait_for(
        "Synapse's record of B",
        lambda: (a.admin("GET", path).json().get("last_successful_stream_ordering") or 0) > 0,
    )

    peers = [*rendered_peers(network), {"server_name": NOT_A_SERVER, "role": "agents"}]
    console = console_of(a, tmp_path, "closed", peers)
    page = console.get("/federation/")
    assert 'data-mode="closed"' in page
    assert health_of(page, b.server_name) == "ok"
    assert health_of(page, NOT_A_SERVER) == "never"
    assert network.outsider.server_name not in page
    assert 'data-warning="open-federation"' not in page


def test_open_federation_shows_a_permanent_warning(network, tmp_path):
    console = console_of(network.agents_a, tmp_path, "open", rendered_peers(network))
    assert 'data-warning="open-federation"' in console.get("/federation/")
    assert "Federation is open" in console.get("/health/")


@pytest.mark.parametrize("target", ["127.0.0.9:1", "matrix.org"])
def test_only_a_listed_peer_can_have_its_back_off_reset(network, tmp_path, target):
    console = console_of(network.agents_a, tmp_path, "closed", rendered_peers(network))
    assert console.post(f"/federation/{target}/reset").status_code == 404


def test_a_peer_that_is_down_shows_failing_and_its_back_off_can_be_reset(network, tmp_path):
    a, down = network.agents_a, network.down
    alice = a.person("fed-console-alice2@ac-paris.fr")
    # A to-device message travels in a federation transaction, which backs off on failure
    # (invites and profile queries ignore the back-off).
    message = {"messages": {f"@nobody:{down.server_name}": {"*": {"body": "ping"}}}}
    response = alice.call("PUT", "/_matrix/client/v3/sendToDevice/m.test/fed-console-1", message)
    assert response.status_code == 200, response.text
    path = f"/_synapse/admin/v1/federation/destinations/{down.server_name}"
    wait_for(
        "Synapse's back-off towards the peer",
        lambda: a.admin("GET", path).json().get("retry_interval", 0) > 0,
    )

    console = console_of(a, tmp_path, "closed", rendered_peers(network))
    page = console.get("/federation/")
    assert health_of(page, down.server_name) == "failing"
    reset_form = f'action="/federation/{down.server_name}/reset"'
    assert reset_form in page
    before = a.admin("GET", path).json()["retry_last_ts"]
    response = console.post(f"/federation/{down.server_name}/reset")
    assert response.status_code == 302
    # Synapse forgot its back-off and tried at once (the peer is still down: it may already
    # have failed again, later than before).
    after = a.admin("GET", path).json()["retry_last_ts"]
    assert after == 0 or after > before
    page = console.get("/federation/")
    assert f"Synapse will try {down.server_name} again at once." in page
    assert "federation.reset" in console.get("/audit/")
