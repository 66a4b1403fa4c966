# SPDX-License-Identifier: AGPL-3.0-or-later
"""Names cannot lie: every path to a display name, tried as a hostile client, over real HTTP.

An agent keeps its ``[domain]`` tag, an external its ``[domain] (external)``, whatever it sends:
to Synapse's profile endpoint (turned off), to the module's checked one, in a member event of a
room (its own per-room name, or the name an inviter writes for someone else), at registration.
Each refusal is checked in its message, then in the state: the profile, the room's member
events, the directory.  Server admins may set any name.
"""

from __future__ import annotations

import time

import pytest
from matrix_helpers import OPEN_TO_EXTERNALS, Person, refusal

from admin_console.externals import is_external
from admin_console.synapse_admin.client import SynapseClient
from appliance.addresses.identity import (
    NAME_ONLY_EXTERNALS_MARKED,
    NAME_PART_CHARACTERS,
    NAME_PART_LENGTH,
    NAME_SUFFIX_REQUIRED,
)
from appliance.synapse_module.accounts.display_names import DISPLAYNAME_PATH, NAME_NOT_TEXT
from appliance.synapse_module.rooms.kinds import INITIAL_MEMBERS

SET_NAME_OFF = "Changing display name is disabled on this server"  # Synapse's message
AGENT_SUFFIX = NAME_SUFFIX_REQUIRED.format(suffix="[ac-paris.fr]")
GUEST_SUFFIX = NAME_SUFFIX_REQUIRED.format(suffix="[guest.example] (external)")

PIERRE = "Pierre Dupuis [ac-paris.fr]"  # the name his address gives
SAM = "Sam Weller [guest.example] (external)"


@pytest.fixture(scope="module")
def pierre(client) -> Person:
    return Person.register(client, "pierre.dupuis@ac-paris.fr")


@pytest.fixture(scope="module")
def colleague(client) -> Person:
    return Person.register(client, "claire.fontaine@ac-paris.fr")


@pytest.fixture(scope="module")
def room(pierre, colleague) -> str:
    """A room open to externals with Pierre and his colleague."""
    room_id = pierre.new_room(name="Noms", preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    assert pierre.invite(room_id, colleague.user_id).status_code == 200
    assert colleague.join(room_id).status_code == 200
    return room_id


@pytest.fixture(scope="module")
def sam(client, pierre, room) -> Person:
    """An external, invited by email into the room and registered (the invitation joins him)."""
    assert pierre.invite_by_email(room, "sam.weller@guest.example").status_code == 200
    return Person.register(client, "sam.weller@guest.example")


def profile_name(person: Person) -> str | None:
    return person.client.display_name(person.user_id, token=person.token)


def member_name(viewer: Person, room_id: str, user_id: str) -> str | None:
    return viewer.state(room_id).get(("m.room.member", user_id), {}).get("displayname")


def rename(person: Person, name: object):
    return person.call("PUT", DISPLAYNAME_PATH, {"displayname": name})


def wait_for(read, expected, timeout: float = 20.0):
    """Poll ``read()`` until it returns ``expected`` (Synapse propagates names to rooms and the
    directory in the background); return the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# --- Synapse's own endpoint is off -----------------------------------------------------------


def test_synapse_profile_endpoint_refuses_every_name_change(pierre, room):
    path = f"/_matrix/client/v3/profile/{pierre.user_id}/displayname"
    for name in ("Pierre Dupont [interieur.gouv.fr]", "Pierre-Louis Dupont [ac-paris.fr]", ""):
        assert refusal(pierre.call("PUT", path, {"displayname": name})) == SET_NAME_OFF
    assert refusal(pierre.call("DELETE", path)) == SET_NAME_OFF

    capabilities = pierre.call("GET", "/_matrix/client/v3/capabilities").json()["capabilities"]
    assert capabilities["m.set_displayname"] == {"enabled": False}  # clients hide the field
    assert profile_name(pierre) == PIERRE
    assert member_name(pierre, room, pierre.user_id) == PIERRE


# --- the module's checked endpoint -------------------------------------------------------------

HOSTILE_AGENT_NAMES = {
    "another domain": ("Pierre Dupont [interieur.gouv.fr]", AGENT_SUFFIX),
    "forged tag before the real one": (
        "Pierre [interieur.gouv.fr] [ac-paris.fr]",
        NAME_PART_CHARACTERS,
    ),
    "the external marker": ("Pierre Dupont [ac-paris.fr] (external)", NAME_ONLY_EXTERNALS_MARKED),
    "zero-width space": ("Pierre\u200bDupont [ac-paris.fr]", NAME_PART_CHARACTERS),
    "right-to-left override": (
        "Pierre \u202e]rf.vuog.rueiretni[ [ac-paris.fr]",
        NAME_PART_CHARACTERS,
    ),
    "Cyrillic look-alikes": ("\u0420i\u0435rr\u0435 [ac-paris.fr]", NAME_PART_CHARACTERS),
    "10,000 characters": ("P" * 10_000 + " [ac-paris.fr]", NAME_PART_LENGTH),
    "no tag": ("Pierre Dupont", AGENT_SUFFIX),
}


@pytest.mark.parametrize(
    ("name", "message"), HOSTILE_AGENT_NAMES.values(), ids=HOSTILE_AGENT_NAMES.keys()
)
def test_an_agent_cannot_lie_through_the_module_endpoint(pierre, colleague, room, name, message):
    assert refusal(rename(pierre, name)) == message

    assert profile_name(pierre) == PIERRE
    assert member_name(colleague, room, pierre.user_id) == PIERRE


def test_a_name_that_is_not_text_is_refused(pierre):
    response = rename(pierre, ["Pierre", "[ac-paris.fr]"])

    assert (response.status_code, response.json()) == (
        400,
        {"errcode": "M_INVALID_PARAM", "error": NAME_NOT_TEXT},
    )


def test_an_agent_renames_the_name_part_everywhere(client):
    lucie = Person.register(client, "lucie.barbier@ac-paris.fr")
    friend = Person.register(client, "marius.roche@ac-paris.fr")
    room_id = lucie.new_room(name="Renommage", preset="private_chat")
    assert lucie.invite(room_id, friend.user_id).status_code == 200
    assert friend.join(room_id).status_code == 200
    new_name = "Lucie-H\u00e9l\u00e8ne d\u2019Arc [ac-paris.fr]"

    assert rename(lucie, new_name).status_code == 200

    assert profile_name(lucie) == new_name
    assert wait_for(lambda: member_name(friend, room_id, lucie.user_id), new_name) == new_name
    found = wait_for(lambda: lucie.user_id in friend.search_users("Lucie-H\u00e9l\u00e8ne"), True)
    assert found


def test_an_external_cannot_drop_or_fake_its_marker(sam, pierre, room):
    assert sam.user_id in pierre.joined_members(room)
    assert profile_name(sam) == SAM
    for name, message in {
        "Sam Weller [guest.example]": GUEST_SUFFIX,
        "Sam Weller [ac-paris.fr]": GUEST_SUFFIX,
        "Sam Weller [guest.example] (\u0435xternal)": GUEST_SUFFIX,  # Cyrillic e
        "Sam Weller [guest.example] (ext\u200bernal)": GUEST_SUFFIX,
        "Sam (external) [guest.example] (external)": NAME_PART_CHARACTERS,
    }.items():
        assert refusal(rename(sam, name)) == message, name

    assert rename(sam, "Samuel Weller [guest.example] (external)").status_code == 200
    assert profile_name(sam) == "Samuel Weller [guest.example] (external)"


# --- member events -----------------------------------------------------------------------------


def test_a_per_room_name_keeps_the_tag(pierre, colleague, room):
    forged = {"membership": "join", "displayname": "Pierre Dupont [interieur.gouv.fr]"}
    assert refusal(pierre.put_state(room, "m.room.member", forged, pierre.user_id)) == AGENT_SUFFIX
    hidden = {"membership": "join", "displayname": "Pierre \u202eDupont [ac-paris.fr]"}
    assert refusal(pierre.put_state(room, "m.room.member", hidden, pierre.user_id)) == (
        NAME_PART_CHARACTERS
    )
    farewell = {"membership": "leave", "displayname": "Le Ministre [interieur.gouv.fr]"}
    assert refusal(pierre.put_state(room, "m.room.member", farewell, pierre.user_id)) == (
        AGENT_SUFFIX
    )
    assert member_name(colleague, room, pierre.user_id) == PIERRE
    assert pierre.user_id in colleague.joined_members(room)

    # Element's /myroomnick: a per-room name that keeps the tag is fine.
    nick = {"membership": "join", "displayname": "Pierre DSI [ac-paris.fr]"}
    assert pierre.put_state(room, "m.room.member", nick, pierre.user_id).status_code == 200
    assert member_name(colleague, room, pierre.user_id) == "Pierre DSI [ac-paris.fr]"
    assert profile_name(pierre) == PIERRE


def test_an_inviter_cannot_write_a_false_name_for_the_invitee(client, pierre, room):
    victim = Person.register(client, "victor.hamel@ac-paris.fr")
    forged = {"membership": "invite", "displayname": "Victor Hamel [interieur.gouv.fr]"}

    assert refusal(pierre.put_state(room, "m.room.member", forged, victim.user_id)) == AGENT_SUFFIX

    assert ("m.room.member", victim.user_id) not in pierre.state(room)
    assert pierre.invite(room, victim.user_id).status_code == 200  # the polite invite works
    assert member_name(pierre, room, victim.user_id) == "Victor Hamel [ac-paris.fr]"


def test_a_new_room_cannot_start_with_a_false_name_and_nothing_is_created(pierre):
    rooms_before = set(pierre.joined_rooms())
    forged = {"membership": "join", "displayname": "Pierre Dupuis [interieur.gouv.fr]"}
    initial_state = [{"type": "m.room.member", "state_key": pierre.user_id, "content": forged}]

    response = pierre.create_room(name="Faux", preset="private_chat", initial_state=initial_state)

    # The room rules answer first (a member event there may only invite), the name rule behind
    # them; either way nothing is created.
    assert refusal(response) in (INITIAL_MEMBERS, AGENT_SUFFIX)
    assert set(pierre.joined_rooms()) == rooms_before


def test_an_external_per_room_name_keeps_tag_and_marker(sam, pierre, room):
    for name, message in {
        "Sam Weller [ac-paris.fr] (external)": GUEST_SUFFIX,
        "Sam (external) [guest.example] (external)": NAME_PART_CHARACTERS,
    }.items():
        member = {"membership": "join", "displayname": name}
        assert refusal(sam.put_state(room, "m.room.member", member, sam.user_id)) == message

    assert member_name(pierre, room, sam.user_id).endswith("[guest.example] (external)")


# --- registration and administrators -----------------------------------------------------------


def test_registration_ignores_a_name_the_client_proposes(client, server_name):
    session = client.verify("register", "berthe.lemoine@ac-paris.fr")
    response = client.register(
        session,
        username="berthe.lemoine-interieur.gouv.fr",
        displayname="Berthe Lemoine [interieur.gouv.fr]",
        initial_device_display_name="Berthe Lemoine [interieur.gouv.fr]",
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == f"@berthe.lemoine-ac-paris.fr:{server_name}"
    name = client.display_name(body["user_id"], token=body["access_token"])
    assert name == "Berthe Lemoine [ac-paris.fr]"


def test_a_server_admin_may_set_any_name(client, admin_token):
    agent = Person.register(client, "odette.payet@ac-paris.fr")
    path = f"/_synapse/admin/v2/users/{agent.user_id}"

    changed = client.request("PUT", path, token=admin_token, json={"displayname": "Odette (DSI)"})

    assert changed.status_code == 200, changed.text
    assert profile_name(agent) == "Odette (DSI)"


def test_a_first_name_set_through_synapse_that_lies_is_replaced_at_once(client, admin_token):
    # Synapse still lets an account without a display name set one (enable_set_displayname
    # only stops changes): the module's backstop puts the derived name in its place.
    agent = Person.register(client, "armand.leduc@ac-paris.fr")
    admin_path = f"/_synapse/admin/v2/users/{agent.user_id}"
    cleared = client.request("PUT", admin_path, token=admin_token, json={"displayname": ""})
    assert cleared.status_code == 200 and profile_name(agent) is None
    room_id = agent.new_room(name="Premier nom", preset="private_chat")

    path = f"/_matrix/client/v3/profile/{agent.user_id}/displayname"
    agent.call("PUT", path, {"displayname": "Armand Leduc [interieur.gouv.fr]"})

    assert profile_name(agent) == "Armand Leduc [ac-paris.fr]"
    names = [
        e["content"].get("displayname")
        for e in agent.call(
            "GET", f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"
        ).json()["chunk"]
        if e["type"] == "m.room.member"
    ]
    assert "Armand Leduc [interieur.gouv.fr]" not in names


def test_the_console_decides_who_is_external_from_the_module_record(
    appliance, client, admin_token, sam
):
    pretender = Person.register(client, "paul.masque@ac-paris.fr")
    path = f"/_synapse/admin/v2/users/{pretender.user_id}"
    fake = {"displayname": "Paul Masque [ac-paris.fr] (external)"}
    assert client.request("PUT", path, token=admin_token, json=fake).status_code == 200
    synapse = SynapseClient(appliance.settings.synapse.listen.url, appliance.layout.service_token)

    assert is_external(synapse, sam.user_id)
    assert not is_external(synapse, pretender.user_id)


@pytest.fixture
def server_name(appliance) -> str:
    return appliance.settings.server_name
