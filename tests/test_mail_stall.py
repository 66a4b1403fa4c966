# SPDX-License-Identifier: AGPL-3.0-or-later
"""A mail relay that accepts the connection and never answers: the appliance's own senders give
the client an answer anyway, and keep nothing half-done.

- The module's invitation mail (an agent inviting an external by email): 502 M_UNKNOWN with
  MAIL_NOT_SENT once SEND_TIMEOUT_SECONDS have passed, no invitation kept, and the room's
  third-party invite withdrawn.
- The console's mail (an operator inviting agents): each address is answered with
  RELAY_TIMED_OUT; the relay is waited for once per request, not once per address.

Synapse's own mails (verification links) have only a connect timeout: see the README.
"""

from __future__ import annotations

import socket
import threading

import pytest
import requests
from console_helpers import Console
from harness import evaluation_settings
from matrix_helpers import OPEN_TO_EXTERNALS, Person, SideSynapse, wait_for_allowlist

from admin_console.mailer import RELAY_TIMED_OUT
from appliance.config.layout import Layout
from appliance.synapse_module.admin_api.invitations import INVITATIONS_PATH
from appliance.synapse_module.externals.invitation_mail import SEND_TIMEOUT_SECONDS
from appliance.synapse_module.externals.invitations import MAIL_NOT_SENT


class StalledRelay:
    """Accepts SMTP connections on 127.0.0.1:port and never says a word."""

    def __init__(self, port: int = 0):
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            self.accepted.append(connection)

    def __enter__(self) -> StalledRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._listener.close()
        for connection in self.accepted:
            connection.close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def side(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("stalled-relay")
    settings = evaluation_settings(state_dir)
    with SideSynapse(settings, Layout.from_settings(settings, state_dir)) as running:
        wait_for_allowlist(running.client())
        yield running


def test_an_invitation_mail_to_a_stalled_relay_is_refused_and_nothing_is_kept(side):
    client = side.client()
    agent = Person.register(client, "claire.petit@ac-paris.fr")  # the sink still answers here
    room = agent.new_room(
        name="Partenaires", preset="private_chat", initial_state=OPEN_TO_EXTERNALS
    )
    side.stop_mail_sink()
    try:
        with StalledRelay(side.settings.mail.smtp_port) as relay:
            response = requests.post(
                f"{side.url}/_synapse/client/appliance/v1/invite_external",
                json={"room_id": room, "email": "jane.doe@partner.example"},
                headers={"Authorization": f"Bearer {agent.token}"},
                timeout=SEND_TIMEOUT_SECONDS + 60,  # the client's own patience, well above
            )
            assert relay.accepted, "the mail never reached the relay"
    finally:
        side.start_mail_sink()

    assert response.status_code == 502, response.text
    assert response.json() == {"errcode": "M_UNKNOWN", "error": MAIL_NOT_SENT}
    # The room event went first (the room's auth rules decide there) and was withdrawn: its
    # current content is empty, so the invitation is in effect nowhere.
    invites = [e for e in agent.state_events(room) if e["type"] == "m.room.third_party_invite"]
    assert [e["content"] for e in invites] == [{}]
    token = side.admin_token()
    listed = requests.get(
        f"{side.url}{INVITATIONS_PATH}?status=all",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert listed.status_code == 200, listed.text
    assert [i for i in listed.json()["invitations"] if i["room_id"] == room] == []
    # The relay back: the same invitation goes through (nothing left over blocks it).
    again = agent.invite_by_email(room, "jane.doe@partner.example")
    assert again.status_code == 200, again.text
    invites = [e for e in agent.state_events(room) if e["type"] == "m.room.third_party_invite"]
    assert sorted(bool(e["content"]) for e in invites) == [False, True]


def test_the_console_answers_every_address_when_the_relay_stalls(console_app):
    with StalledRelay() as relay:
        console_app.config.update(SMTP_PORT=relay.port, SMTP_TIMEOUT_SECONDS=2)
        console = Console(console_app)
        addresses = ["louise.blanc@ac-paris.fr", "marc.noir@ac-paris.fr"]
        response = console.post("/users/invite", emails="\n".join(addresses))
        page = response.get_data(as_text=True)
        accepted = len(relay.accepted)

    assert response.status_code == 200
    expected = RELAY_TIMED_OUT.format(relay=f"127.0.0.1:{relay.port}", seconds=2)
    assert page.count(expected) == len(addresses), page
    assert accepted == 1  # waited for once, not once per address
    audit = console.get("/audit/")
    for address in addresses:
        assert address in audit
