# SPDX-License-Identifier: AGPL-3.0-or-later
"""``notifications.enabled_for_new_users``: every new account with an address gets the mail
about missed messages, whatever made it, once.

Two Synapses, each signed into through a real LemonLDAP::NG in Debian's Chromium
(``oidc_fixtures``), with their own SMTP sink: one with the setting on (and a 3-second delay
before a mail), one with it off.  Accounts are made as people and the console make them: the
email flow (an agent, an invited external), a first single sign-on, the Admin API (with the
address in the creating request, or given afterwards as the console's reactivation and
address change do).  Each account's pushers are read as its client reads them
(``GET /_matrix/client/v3/pushers``), and a message it missed must reach the mail sink.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests
from matrix_helpers import (
    OPEN_TO_EXTERNALS,
    PASSWORD,
    MatrixClient,
    Person,
    bodies,
    wait_for_notification,
)
from oidc_fixtures import IdpPerson, SsoServer, running_sso_server, signed_in, sso_sign_in

pytest_plugins = ["oidc_fixtures"]

TIMEOUT = 30
EMAIL_PUSHER = ("email", "m.email", "Email Notifications")


@pytest.fixture(scope="module")
def mail_on(tmp_path_factory) -> Iterator[SsoServer]:
    with running_sso_server(
        tmp_path_factory.mktemp("mail-on"),
        extra={"notifications": {"enabled_for_new_users": True, "delay_before_mail": "3s"}},
    ) as server:
        yield server


# --- helpers -----------------------------------------------------------------------------------


def client_of(server: SsoServer) -> MatrixClient:
    return MatrixClient(server.url, server.synapse.layout.mail_dir)


def email_pushers(person: Person) -> list[tuple[str, str, str, str]]:
    """(kind, app, app name, address) of each pusher, as the person's client lists them."""
    return [(p["kind"], p["app_id"], p["app_display_name"], p["pushkey"]) for p in person.pushers()]


def admin(server: SsoServer, method: str, path: str, body: dict | None = None) -> dict:
    response = requests.request(
        method,
        server.url + path,
        json=body,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=TIMEOUT,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def admin_pushers(server: SsoServer, user_id: str) -> list[tuple[str, str]]:
    body = admin(server, "GET", f"/_synapse/admin/v1/users/{quote(user_id)}/pushers")
    return [(p["kind"], p["pushkey"]) for p in body["pushers"]]


def waiting_for_pusher(server: SsoServer) -> set[str]:
    """The accounts the module still records as waiting for their email pusher, read in the
    Synapse's own database."""
    path = server.synapse.layout.synapse_dir / "homeserver.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT) as db:
        return {row[0] for row in db.execute("SELECT user_id FROM appliance_new_account_mail")}


def unique(name: str) -> str:
    return f"{name}.{secrets.token_hex(3)}"


def first_sign_in(server: SsoServer, chromium, name: str) -> tuple[Person, IdpPerson, float]:
    """A person's first single sign-on (it makes the account): the person, as the provider
    knows them, and how long the browser's part took (s)."""
    login = unique(name)
    known = server.idp.add_person(
        login, f"{login}@ac-paris.fr", given=name.capitalize(), family="Agent"
    )
    started = time.monotonic()
    sign_in = sso_sign_in(chromium, server, known.login, known.password)
    browser_s = time.monotonic() - started
    login_response = signed_in(server, sign_in)
    person = Person(client_of(server), login_response["user_id"], login_response["access_token"])
    return person, known, browser_s


def missed_message_reaches(server: SsoServer, reader: Person, address: str) -> str:
    """A colleague writes in a room the reader made and nobody reads: the mail's text.

    The reader makes the room and invites the writer, so the first event that notifies the
    reader is the message itself (an invitation would be a notification of its own)."""
    client = client_of(server)
    writer = Person.register(client, f"{unique('ecrivain')}@ac-paris.fr")
    room_name = f"Permanence {secrets.token_hex(2)}"
    room = reader.new_room(preset="private_chat", name=room_name)
    assert reader.invite(room, writer.user_id).status_code == 200
    assert writer.join(room).status_code == 200
    assert writer.send_text(room, "Point de situation à 14 h").status_code == 200
    text = "\n".join(bodies(mail) for mail in wait_for_notification(client, address))
    assert room_name in text
    return text


# --- with the setting on -------------------------------------------------------------------------


def test_a_first_single_sign_on_gets_the_email_pusher_and_then_the_mails(mail_on, chromium):
    person, known, browser_s = first_sign_in(mail_on, chromium, "soline")

    # Read at once: the pusher was added while Synapse bound the provider's address, before
    # the loginToken was issued.
    started = time.monotonic()
    listed = email_pushers(person)
    listed_s = time.monotonic() - started
    print(f"\nfirst sign-on {browser_s:.2f} s in the browser; pusher listed in {listed_s:.3f} s")
    assert listed == [(*EMAIL_PUSHER, known.email)]
    assert person.user_id not in waiting_for_pusher(mail_on)

    missed_message_reaches(mail_on, person, known.email)


def test_a_person_who_turns_the_mails_off_keeps_them_off_at_the_next_sign_in(mail_on, chromium):
    person, known, _ = first_sign_in(mail_on, chromium, "roland")
    assert email_pushers(person) == [(*EMAIL_PUSHER, known.email)]

    assert person.remove_pusher("m.email", known.email).status_code == 200
    assert person.pushers() == []
    again = signed_in(mail_on, sso_sign_in(chromium, mail_on, known.login, known.password))

    assert again["user_id"] == person.user_id
    assert Person(person.client, person.user_id, again["access_token"]).pushers() == []
    # Nothing left for the module's pass either: the account is no longer waiting.
    assert person.user_id not in waiting_for_pusher(mail_on)


def test_an_account_the_admin_api_makes_then_gives_an_address_gets_the_pusher_then(mail_on):
    # As the console does: the account first (here with a password), its address afterwards
    # (reactivation, address change): Synapse adds no pusher on that second request.
    localpart = unique("admin-made").replace(".", "-")
    user_id = f"@{localpart}:{mail_on.settings.server_name}"
    admin(mail_on, "PUT", f"/_synapse/admin/v2/users/{quote(user_id)}", {"password": PASSWORD})
    assert admin_pushers(mail_on, user_id) == []
    assert user_id in waiting_for_pusher(mail_on)  # no address: it waits, with no pusher

    address = f"{localpart}@ac-paris.fr"
    threepids = {"threepids": [{"medium": "email", "address": address}]}
    admin(mail_on, "PUT", f"/_synapse/admin/v2/users/{quote(user_id)}", threepids)

    assert admin_pushers(mail_on, user_id) == [("email", address)]
    login = client_of(mail_on).login_with_email(address)
    assert login.status_code == 200, login.text
    person = Person(client_of(mail_on), user_id, login.json()["access_token"])
    assert email_pushers(person) == [(*EMAIL_PUSHER, address)]
    missed_message_reaches(mail_on, person, address)


def test_an_account_the_admin_api_makes_with_its_address_has_one_pusher(mail_on):
    # Synapse adds this one itself; the module's addition is the same pusher, not a second.
    localpart = unique("admin-once").replace(".", "-")
    user_id = f"@{localpart}:{mail_on.settings.server_name}"
    address = f"{localpart}@ac-paris.fr"
    body = {"password": PASSWORD, "threepids": [{"medium": "email", "address": address}]}
    admin(mail_on, "PUT", f"/_synapse/admin/v2/users/{quote(user_id)}", body)

    assert admin_pushers(mail_on, user_id) == [("email", address)]
    assert user_id not in waiting_for_pusher(mail_on)


def test_agents_and_invited_externals_registering_by_email_get_the_pusher(mail_on):
    client = client_of(mail_on)
    address = f"{unique('nouvelle')}@ac-paris.fr"
    agent = Person.register(client, address)
    assert email_pushers(agent) == [(*EMAIL_PUSHER, address)]

    # An external registers the same way, once an agent invited the address.
    partners = agent.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    external_address = f"{unique('jane')}@example.com"
    assert agent.invite_by_email(partners, external_address).status_code == 200
    external = Person.register(client, external_address)

    assert email_pushers(external) == [(*EMAIL_PUSHER, external_address)]
    assert {agent.user_id, external.user_id}.isdisjoint(waiting_for_pusher(mail_on))


def test_signing_out_of_the_device_one_registered_on_keeps_the_mails(mail_on):
    # Synapse ties the pusher it adds at registration to the new device (signing out of it
    # removed it); the module's, added first, belongs to the account.
    address = f"{unique('mobile')}@ac-paris.fr"
    agent = Person.register(client_of(mail_on), address)
    assert agent.call("POST", "/_matrix/client/v3/logout", {}).status_code == 200

    assert admin_pushers(mail_on, agent.user_id) == [("email", address)]


# --- with the setting off (the default) --------------------------------------------------------


def test_with_the_setting_off_no_new_account_gets_a_pusher(sso_server, chromium):
    person, _, _ = first_sign_in(sso_server, chromium, "prudence")
    assert person.pushers() == []

    localpart = unique("admin-off").replace(".", "-")
    user_id = f"@{localpart}:{sso_server.settings.server_name}"
    body = {
        "password": PASSWORD,
        "threepids": [{"medium": "email", "address": f"{localpart}@ac-paris.fr"}],
    }
    admin(sso_server, "PUT", f"/_synapse/admin/v2/users/{quote(user_id)}", body)
    assert admin_pushers(sso_server, user_id) == []

    agent = Person.register(client_of(sso_server), f"{unique('reserve')}@ac-paris.fr")
    assert agent.pushers() == []
