# SPDX-License-Identifier: AGPL-3.0-or-later
"""Mail about missed messages: Synapse's own email notifications, opt-in per agent.

A Synapse rendered with ``notifications.delay_before_mail: 3s`` (and its own SMTP sink): one
agent opts in as Element's "Enable email notifications" does (``POST /pushers/set`` with
``kind: email``), another does not. A third agent writes in a room nobody syncs; the one who
opted in gets a mail in the appliance's bilingual look naming who wrote where, and never what
(neither an encrypted event's ciphertext nor an unencrypted message's text); the other gets none.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from harness import evaluation_settings, free_port
from matrix_helpers import (
    MatrixClient,
    Person,
    SideSynapse,
    _path_part,
    bodies,
    notification_mails,
    plain_text,
    wait_for_allowlist,
    wait_for_notification,
)

from appliance.config.layout import Layout
from appliance.config.settings import SettingsError, parse_settings


@pytest.fixture(scope="module")
def notifying(tmp_path_factory) -> Iterator[SideSynapse]:
    state_dir = tmp_path_factory.mktemp("notifications")
    port = free_port()
    settings = evaluation_settings(
        state_dir,
        public_baseurl=f"http://127.0.0.1:{port}/",
        synapse={"listen": {"port": port}},
        notifications={"delay_before_mail": "3s"},
    )
    with SideSynapse(settings, Layout.from_settings(settings, state_dir)) as synapse:
        wait_for_allowlist(synapse.client())
        yield synapse


def agent(client: MatrixClient, name: str) -> tuple[Person, str]:
    address = f"{name}.{secrets.token_hex(3)}@ac-paris.fr"
    return Person.register(client, address), address


def enable_email_notifications(person: Person, address: str) -> None:
    """What Element sends for "Enable email notifications" in its settings."""
    response = person.add_email_pusher(address)
    assert response.status_code == 200, response.text


def send(person: Person, room_id: str, event_type: str, content: dict) -> None:
    path = (
        f"/_matrix/client/v3/rooms/{_path_part(room_id)}/send/{event_type}/{secrets.token_hex(6)}"
    )
    response = person.call("PUT", path, content)
    assert response.status_code == 200, response.text


def test_an_agent_who_opted_in_is_mailed_who_wrote_where_but_never_what(notifying):
    client = notifying.client()
    writer, _ = agent(client, "ecrivain")
    reader, reader_address = agent(client, "lectrice")
    silent, silent_address = agent(client, "discret")
    # A private room: end-to-end encrypted (the module adds m.room.encryption).
    room = writer.new_room(preset="private_chat", name="Cellule de crise")
    for person in (reader, silent):
        assert writer.invite(room, person.user_id).status_code == 200
        assert person.join(room).status_code == 200
    assert ("m.room.encryption", "") in writer.state(room)
    # Opting in after the invitation (itself worth a mail, which would hold back the next
    # one for the same room by Synapse's throttle).
    enable_email_notifications(reader, reader_address)
    assert [p["kind"] for p in reader.pushers()] == ["email"]
    assert silent.pushers() == []

    ciphertext = "CIPHER" + secrets.token_hex(16)
    send(
        writer,
        room,
        "m.room.encrypted",
        {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": ciphertext,
            "sender_key": "c2VuZGVyLWtleQ",
            "session_id": "c2Vzc2lvbg",
            "device_id": "WRITERDEVICE",
        },
    )
    # A client that sends plain text into the room anyway: Synapse hands its text to the
    # template, which must not show it either.
    plain = "PLAIN" + secrets.token_hex(16)
    send(writer, room, "m.room.message", {"msgtype": "m.text", "body": plain})

    mails = wait_for_notification(client, reader_address)
    text = "\n".join(bodies(mail) for mail in mails)
    subjects = " ".join(mail["Subject"] for mail in mails)
    assert ciphertext not in text and ciphertext not in subjects
    assert plain not in text and plain not in subjects
    # Who and where, in French and in English, with the appliance's look (no remote image).
    assert "Cellule de crise" in text
    # Both events are listed (a line each in the text part), one marked as encrypted.
    text_part = plain_text(mails[0])
    assert len([line for line in text_part.splitlines() if "Ecrivain" in line]) == 2, text_part
    assert "Des messages vous attendent" in text and "Messages are waiting for you" in text
    assert "(chiffré / encrypted)" in text
    assert "<img" not in text
    assert "unsubscribe" in text or "pushers/remove" in text

    # The reader's mail came after both events were judged: the agent who did not opt in has
    # no pusher, so nothing was sent to the address.
    assert notification_mails(client, silent_address) == []


def test_by_default_a_new_account_gets_no_mail_until_it_asks(notifying):
    person, _ = agent(notifying.client(), "prudent")
    assert person.pushers() == []


def test_a_bad_delay_names_its_key():
    with pytest.raises(SettingsError) as refused:
        parse_settings({"notifications": {"delay_before_mail": "soon"}}, "test")
    assert refused.value.problems == [
        "notifications.delay_before_mail: 'soon' is not a duration such as 30s, 10m or 1h"
    ]
