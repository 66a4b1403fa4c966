# SPDX-License-Identifier: AGPL-3.0-or-later
"""The reports page against a real Synapse: agents report messages with the client API, the
operator sees each report and redacts, suspends, deactivates or dismisses, all audited."""

from __future__ import annotations

import re
import secrets
from urllib.parse import quote

import pytest
from console_helpers import unique
from matrix_helpers import Person

MEGOLM = "m.megolm.v1.aes-sha2"


@pytest.fixture
def people(synapse, client):
    """An agent who posts, and one who reports."""

    def person(tag: str, name: str) -> Person:
        user_id = synapse.create_user(unique(tag), f"{name} [ac-paris.fr]")
        return Person(client, user_id, synapse.login(user_id))

    return person("sender", "Sender"), person("reporter", "Reporter")


def shared_room(sender: Person, reporter: Person, **body) -> str:
    room_id = sender.new_room(**body)
    assert sender.invite(room_id, reporter.user_id).status_code == 200
    assert reporter.join(room_id).status_code == 200
    return room_id


def send(person: Person, room_id: str, event_type: str, content: dict) -> str:
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{event_type}/{secrets.token_hex(8)}"
    response = person.call("PUT", path, content)
    assert response.status_code == 200, response.text
    return response.json()["event_id"]


def report(reporter: Person, room_id: str, event_id: str, reason: str) -> None:
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/report/{quote(event_id)}"
    response = reporter.call("POST", path, {"reason": reason})
    assert response.status_code == 200, response.text


def report_id(synapse, room_id: str) -> int:
    reports = synapse.call("GET", f"/_synapse/admin/v1/event_reports?room_id={quote(room_id)}")
    (only,) = reports["event_reports"]
    return only["id"]


def row_of(page: str, event_id: str) -> str:
    row = page[page.index(f'data-event="{event_id}"') :]
    return row[: row.index("</tr>")]


def test_operator_sees_a_report_and_redacts_the_message(console, synapse, people):
    sender, reporter = people
    room_id = shared_room(sender, reporter, preset="public_chat", name=unique("forum"))
    text = f"abusive words {unique('x')}"
    event_id = send(sender, room_id, "m.room.message", {"msgtype": "m.text", "body": text})
    report(reporter, room_id, event_id, "insulting the team")

    row = row_of(console.get("/reports/"), event_id)
    for shown in (reporter.user_id, sender.user_id, "insulting the team", text):
        assert shown in row

    console.confirm(f"/reports/{report_id(synapse, room_id)}/redact")
    seen = reporter.call("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{event_id}")
    assert seen.status_code == 200 and seen.json()["content"] == {}
    assert "redacted_because" in seen.json()["unsigned"]
    row = row_of(console.get("/reports/"), event_id)
    assert text not in row and 'data-content="redacted"' in row
    assert "report.redact" in console.get(f"/audit/?q={quote(event_id)}")


def test_encrypted_message_content_is_never_shown(console, synapse, people):
    sender, reporter = people
    room_id = shared_room(sender, reporter, preset="private_chat", name=unique("private"))
    ciphertext = secrets.token_urlsafe(48)
    encrypted = {"algorithm": MEGOLM, "ciphertext": ciphertext, "session_id": "s", "device_id": "D"}
    event_id = send(sender, room_id, "m.room.encrypted", encrypted)
    report(reporter, room_id, event_id, "spam")

    page = console.get("/reports/")
    row = row_of(page, event_id)
    assert 'data-content="encrypted"' in row and sender.user_id in row
    assert ciphertext not in page


def test_suspend_and_deactivate_the_sender_then_dismiss(console, synapse, people):
    sender, reporter = people
    room_id = shared_room(sender, reporter, preset="public_chat", name=unique("forum"))
    event_id = send(sender, room_id, "m.room.message", {"msgtype": "m.text", "body": "spam"})
    report(reporter, room_id, event_id, "spam")
    number = report_id(synapse, room_id)

    console.confirm(f"/reports/{number}/suspend")
    assert synapse.user(sender.user_id)["suspended"] is True
    console.confirm(f"/reports/{number}/deactivate")
    assert synapse.user(sender.user_id)["deactivated"] is True
    console.confirm(f"/reports/{number}/dismiss")
    assert f'data-event="{event_id}"' not in console.get("/reports/")
    assert (
        synapse.call("GET", f"/_synapse/admin/v1/event_reports?room_id={quote(room_id)}")["total"]
        == 0
    )
    audit = console.get(f"/audit/?q=report+{number}")
    for action in ("report.suspend", "report.deactivate", "report.dismiss"):
        assert action in audit


def test_health_page_counts_open_reports(console, synapse, people):
    sender, reporter = people
    room_id = shared_room(sender, reporter, preset="public_chat", name=unique("forum"))
    event_id = send(sender, room_id, "m.room.message", {"msgtype": "m.text", "body": "rude"})
    before = synapse.call("GET", "/_synapse/admin/v1/event_reports?limit=0")["total"]
    report(reporter, room_id, event_id, "rude")
    # Other tests of the session may report at the same time: at least one more than before.
    found = re.search(
        r'<a href="/reports/">Reports waiting for an answer: (\d+)', console.get("/health/")
    )
    assert found and int(found.group(1)) >= before + 1
