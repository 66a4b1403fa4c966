# SPDX-License-Identifier: AGPL-3.0-or-later
"""The four kinds of rooms, created by agents over real HTTP and checked event by event.

The shared appliance (real Synapse with the module) is driven as Element or Tchap drive it:
``createRoom`` with a preset and sometimes Tchap's own access-rules event, then state changes
with ``PUT /rooms/{id}/state``.  Each refusal must be a 403 ``M_FORBIDDEN`` whose message says
why, and a refused creation must leave no room behind.
"""

from __future__ import annotations

import pytest
from matrix_helpers import OPEN_TO_EXTERNALS, Person, refusal

from appliance.synapse_module.rooms.kinds import (
    ACCESS_RULES,
    DIRECT_FULL,
    FORUM_NOT_OPEN,
    FORUM_STAYS_PUBLIC,
    FORUM_UNENCRYPTED,
    INVITE_ONLY,
    ONE_WAY,
    UPGRADES_REFUSED,
    USERS_DEFAULT,
)

MEGOLM = {"algorithm": "m.megolm.v1.aes-sha2"}


@pytest.fixture(scope="module")
def alice(client) -> Person:
    return Person.register(client, "alice.rooms@ac-paris.fr")


@pytest.fixture(scope="module")
def bob(client) -> Person:
    return Person.register(client, "bob.rooms@ac-paris.fr")


@pytest.fixture(scope="module")
def carol(client) -> Person:
    return Person.register(client, "carol.rooms@dgfip.gouv.fr")


def creators(person: Person, room_id: str) -> set[str]:
    """Who holds unlimited power in a room of version 12: its creator and additional ones."""
    create = next(e for e in person.state_events(room_id) if e["type"] == "m.room.create")
    return {create["sender"], *create["content"].get("additional_creators", [])}


def directory_visibility(person: Person, room_id: str) -> str:
    response = person.call("GET", f"/_matrix/client/v3/directory/list/room/{room_id}")
    assert response.status_code == 200, response.text
    return response.json()["visibility"]


# --- each kind, as created ------------------------------------------------------------------------


def test_a_private_room_is_restricted_invite_only_encrypted_and_never_listed(alice, bob):
    room = alice.new_room(name="Budget 2027", preset="private_chat", invite=[bob.user_id])

    state = alice.state(room)
    assert state[(ACCESS_RULES, "")] == {"rule": "restricted", "visibility": "private"}
    assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
    assert state[("m.room.encryption", "")] == MEGOLM
    assert state[("m.room.history_visibility", "")] == {"history_visibility": "invited"}
    levels = state[("m.room.power_levels", "")]
    assert levels["users_default"] == 0 and bob.user_id not in levels["users"]
    assert state[("m.room.member", bob.user_id)]["membership"] == "invite"
    assert directory_visibility(alice, room) == "private"


def test_a_client_that_sends_nothing_gets_a_private_room(alice):
    state = alice.state(alice.new_room())

    assert state[(ACCESS_RULES, "")] == {"rule": "restricted", "visibility": "private"}
    assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
    assert state[("m.room.encryption", "")] == MEGOLM


def test_trusted_private_chat_outside_direct_chats_makes_no_extra_creator(alice, bob):
    # Element uses this preset for direct chats; elsewhere its invitees would get unlimited
    # power (room version 12 makes them creators).
    room = alice.new_room(preset="trusted_private_chat", invite=[bob.user_id])

    state = alice.state(room)
    assert state[(ACCESS_RULES, "")]["rule"] == "restricted"
    assert bob.user_id not in state[("m.room.create", "")].get("additional_creators", [])


def test_a_room_open_to_externals_is_unrestricted_invite_only_and_encrypted(alice):
    room = alice.new_room(name="Partners", preset="private_chat", initial_state=OPEN_TO_EXTERNALS)

    state = alice.state(room)
    assert state[(ACCESS_RULES, "")] == {"rule": "unrestricted", "visibility": "private"}
    assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
    assert state[("m.room.encryption", "")] == MEGOLM
    assert state[("m.room.history_visibility", "")] == {"history_visibility": "invited"}
    assert state[("m.room.power_levels", "")]["users_default"] == 0


def test_a_forum_is_public_listed_and_unencrypted(alice, bob):
    room = alice.new_room(name="Forum des achats", topic="Marchés publics", preset="public_chat")

    state = alice.state(room)
    assert state[(ACCESS_RULES, "")] == {"rule": "restricted", "visibility": "public"}
    assert state[("m.room.join_rules", "")] == {"join_rule": "public"}
    assert ("m.room.encryption", "") not in state
    assert state[("m.room.history_visibility", "")] == {"history_visibility": "shared"}
    assert directory_visibility(alice, room) == "public"
    assert bob.join(room).status_code == 200


def test_a_direct_chat_is_encrypted_and_holds_two_people(alice, bob, carol):
    room = alice.new_room(is_direct=True, preset="trusted_private_chat", invite=[bob.user_id])

    state = alice.state(room)
    assert state[(ACCESS_RULES, "")] == {"rule": "direct", "visibility": "private"}
    assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
    assert state[("m.room.encryption", "")] == MEGOLM
    assert creators(alice, room) == {alice.user_id, bob.user_id}  # two agents: both own the chat
    assert bob.join(room).status_code == 200
    assert refusal(alice.invite(room, carol.user_id)) == DIRECT_FULL
    assert bob.send_text(room, "Bonjour").status_code == 200


def test_a_direct_chat_for_three_is_refused_and_nothing_is_created(alice, bob, carol):
    before = alice.joined_rooms()

    response = alice.create_room(is_direct=True, invite=[bob.user_id, carol.user_id])

    assert refusal(response) == DIRECT_FULL
    assert alice.joined_rooms() == before


# --- what may change afterwards ---------------------------------------------------------------


def test_only_a_private_room_opens_to_externals_and_never_closes_again(alice):
    room = alice.new_room(preset="private_chat")
    opened = {"rule": "unrestricted", "visibility": "private"}

    assert alice.put_state(room, ACCESS_RULES, opened).status_code == 200
    assert alice.state(room)[(ACCESS_RULES, "")] == opened
    closed = {"rule": "restricted", "visibility": "private"}
    assert refusal(alice.put_state(room, ACCESS_RULES, closed)) == ONE_WAY
    assert alice.state(room)[(ACCESS_RULES, "")] == opened


@pytest.mark.parametrize(
    "create, new_rule, reason",
    [
        (
            {"preset": "public_chat"},
            {"rule": "unrestricted", "visibility": "public"},
            FORUM_NOT_OPEN,
        ),
        ({"preset": "private_chat"}, {"rule": "direct", "visibility": "private"}, ONE_WAY),
        ({"is_direct": True}, {"rule": "restricted", "visibility": "private"}, ONE_WAY),
    ],
    ids=["forum to open", "private to direct", "direct to private"],
)
def test_other_access_rule_changes_are_refused(alice, create, new_rule, reason):
    room = alice.new_room(**create)
    before = alice.state(room)[(ACCESS_RULES, "")]

    assert refusal(alice.put_state(room, ACCESS_RULES, new_rule)) == reason
    assert alice.state(room)[(ACCESS_RULES, "")] == before


def test_a_forum_cannot_become_a_private_room_by_its_visibility(alice):
    room = alice.new_room(preset="public_chat")

    response = alice.put_state(room, ACCESS_RULES, {"rule": "restricted", "visibility": "private"})

    assert "forum" in refusal(response)


@pytest.mark.parametrize("join_rule", ["public", "knock", "restricted"])
def test_rooms_other_than_forums_stay_invite_only(alice, join_rule):
    room = alice.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)

    assert (
        refusal(alice.put_state(room, "m.room.join_rules", {"join_rule": join_rule})) == INVITE_ONLY
    )
    assert alice.state(room)[("m.room.join_rules", "")] == {"join_rule": "invite"}


def test_a_forum_stays_public(alice):
    room = alice.new_room(preset="public_chat")

    response = alice.put_state(room, "m.room.join_rules", {"join_rule": "invite"})

    assert refusal(response) == FORUM_STAYS_PUBLIC


def test_a_forum_cannot_be_encrypted_later(alice):
    room = alice.new_room(preset="public_chat")

    assert refusal(alice.put_state(room, "m.room.encryption", MEGOLM)) == FORUM_UNENCRYPTED
    assert ("m.room.encryption", "") not in alice.state(room)


def test_a_forum_asked_for_encrypted_is_refused_and_nothing_is_created(alice):
    before = alice.joined_rooms()
    encryption = [{"type": "m.room.encryption", "state_key": "", "content": MEGOLM}]

    response = alice.create_room(preset="public_chat", initial_state=encryption)

    assert refusal(response) == FORUM_UNENCRYPTED
    assert alice.joined_rooms() == before


def test_encryption_stays_megolm(alice):
    room = alice.new_room(preset="private_chat")

    response = alice.put_state(
        room, "m.room.encryption", {"algorithm": "m.olm.v1.curve25519-aes-sha2"}
    )

    assert "m.megolm.v1.aes-sha2" in refusal(response)
    assert alice.state(room)[("m.room.encryption", "")] == MEGOLM


def test_everyone_starts_at_power_level_zero(alice):
    room = alice.new_room(preset="private_chat")
    levels = alice.state(room)[("m.room.power_levels", "")]

    response = alice.put_state(room, "m.room.power_levels", {**levels, "users_default": 50})

    assert refusal(response) == USERS_DEFAULT
    before = alice.joined_rooms()
    assert (
        refusal(alice.create_room(power_level_content_override={"users_default": 50}))
        == USERS_DEFAULT
    )
    assert alice.joined_rooms() == before


def test_an_agent_may_make_another_agent_moderator(alice, bob):
    room = alice.new_room(preset="private_chat", invite=[bob.user_id])
    levels = alice.state(room)[("m.room.power_levels", "")]

    response = alice.put_state(
        room, "m.room.power_levels", {**levels, "users": {**levels["users"], bob.user_id: 50}}
    )

    assert response.status_code == 200, response.text


def test_rooms_cannot_be_upgraded(alice):
    room = alice.new_room(preset="private_chat")

    response = alice.call("POST", f"/_matrix/client/v3/rooms/{room}/upgrade", {"new_version": "12"})

    assert refusal(response) == UPGRADES_REFUSED
    assert ("m.room.tombstone", "") not in alice.state(room)


def test_an_unknown_access_rule_is_a_bad_request(alice):
    rule = [{"type": ACCESS_RULES, "state_key": "", "content": {"rule": "everyone"}}]

    response = alice.create_room(initial_state=rule)

    assert response.status_code == 400
    assert response.json()["errcode"] == "M_INVALID_PARAM"
    assert "restricted, unrestricted or direct" in response.json()["error"]


def test_a_server_admin_bypasses_the_rules(client, alice, admin_token):
    admin_id = client.whoami(admin_token).json()["user_id"]
    admin = Person(client, admin_id, admin_token)
    room = admin.new_room(preset="private_chat")

    # Refused to an agent (test_other_access_rule_changes_are_refused), allowed to an admin.
    direct = {"rule": "direct", "visibility": "private"}
    assert admin.put_state(room, ACCESS_RULES, direct).status_code == 200
    assert admin.state(room)[(ACCESS_RULES, "")] == direct
