# SPDX-License-Identifier: AGPL-3.0-or-later
"""A room never loses its last administrator, on the shared appliance's real Synapse.

Each test builds a room as Element or Tchap would (createRoom with a preset, invitations,
joins, a power levels change), has its last administrator leave through the client-server
API, then reads the room's state and timeline from a member who stayed: who has power 100
now, and which events were sent, in which order and by whom.
"""

from __future__ import annotations

import itertools
import secrets

import pytest
from matrix_helpers import OPEN_TO_EXTERNALS, Person, _path_part

POWER_LEVELS = "m.room.power_levels"
_numbers = itertools.count(1)


def agent(client, name: str) -> Person:
    return Person.register(client, f"{name}.{secrets.token_hex(3)}@ac-paris.fr")


def leave(person: Person, room_id: str) -> None:
    response = person.call("POST", f"/_matrix/client/v3/rooms/{_path_part(room_id)}/leave", {})
    assert response.status_code == 200, response.text


def joined(person: Person, room_id: str) -> None:
    response = person.join(room_id)
    assert response.status_code == 200, response.text


def levels(person: Person, room_id: str) -> dict:
    return person.state(room_id)[(POWER_LEVELS, "")]


def set_levels(admin: Person, room_id: str, users: dict[str, int]) -> None:
    content = levels(admin, room_id)
    content["users"] = {**content.get("users", {}), **users}
    response = admin.put_state(room_id, POWER_LEVELS, content)
    assert response.status_code == 200, response.text


def recent_events(person: Person, room_id: str, limit: int = 5) -> list[dict]:
    """The room's last events, oldest first."""
    response = person.call(
        "GET",
        f"/_matrix/client/v3/rooms/{_path_part(room_id)}/messages",
        params={"dir": "b", "limit": limit},
    )
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["chunk"]))


def power_levels_events(person: Person, room_id: str) -> list[str]:
    return [e["event_id"] for e in recent_events(person, room_id, 50) if e["type"] == POWER_LEVELS]


def private_room_with(admin: Person, *members: Person) -> str:
    room_id = admin.new_room(name=f"Équipe {next(_numbers)}", preset="private_chat")
    for member in members:
        assert admin.invite(room_id, member.user_id).status_code == 200
        joined(member, room_id)
    return room_id


@pytest.fixture(scope="module")
def host(client) -> Person:
    return agent(client, "la.hote")


def test_when_the_last_admin_leaves_the_moderators_become_admins(client, host):
    moderator, other_moderator, member = (agent(client, n) for n in ("la.mod1", "la.mod2", "la.m"))
    room_id = private_room_with(host, moderator, other_moderator, member)
    set_levels(host, room_id, {moderator.user_id: 50, other_moderator.user_id: 50})

    leave(host, room_id)

    users = levels(member, room_id)["users"]
    assert users[moderator.user_id] == 100
    assert users[other_moderator.user_id] == 100
    assert users.get(member.user_id, 0) == 0
    # Event by event: the power levels, in the leaver's name while still a member, then the leave.
    last_two = recent_events(member, room_id)[-2:]
    assert [(e["type"], e["sender"]) for e in last_two] == [
        (POWER_LEVELS, host.user_id),
        ("m.room.member", host.user_id),
    ]
    assert last_two[1]["content"]["membership"] == "leave"
    # The new administrators can run the room: change its name, raise someone.
    rename = moderator.put_state(room_id, "m.room.name", {"name": "Reprise"})
    assert rename.status_code == 200, rename.text
    set_levels(moderator, room_id, {member.user_id: 50})


def test_without_moderators_every_remaining_agent_becomes_admin_never_an_external(client, host):
    first, second = agent(client, "la.a1"), agent(client, "la.a2")
    room_id = host.new_room(
        name="Partenaires", preset="private_chat", initial_state=OPEN_TO_EXTERNALS
    )
    for member in (first, second):
        assert host.invite(room_id, member.user_id).status_code == 200
        joined(member, room_id)
    address = f"la.partner.{secrets.token_hex(3)}@partner.example"
    assert host.invite_by_email(room_id, address).status_code == 200
    external = Person.register(client, address)  # registration joins the invited room
    assert external.user_id in first.joined_members(room_id)

    leave(host, room_id)

    users = levels(first, room_id)["users"]
    assert users[first.user_id] == users[second.user_id] == 100
    assert users.get(external.user_id, 0) == 0


def test_an_external_left_alone_is_never_raised(client, host):
    room_id = host.new_room(name="Seul", preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    address = f"la.alone.{secrets.token_hex(3)}@partner.example"
    assert host.invite_by_email(room_id, address).status_code == 200
    external = Person.register(client, address)
    before = power_levels_events(external, room_id)

    leave(host, room_id)

    assert power_levels_events(external, room_id) == before
    assert levels(external, room_id)["users"].get(external.user_id, 0) == 0


def test_a_leave_while_another_admin_stays_changes_nothing(client, host):
    co_admin, member = agent(client, "la.co"), agent(client, "la.m2")
    room_id = private_room_with(host, co_admin, member)
    set_levels(host, room_id, {co_admin.user_id: 100, member.user_id: 50})
    before = power_levels_events(member, room_id)

    leave(host, room_id)

    assert power_levels_events(member, room_id) == before
    assert levels(member, room_id)["users"][member.user_id] == 50


def test_a_moderator_leaving_raises_nobody(client, host):
    moderator, member = agent(client, "la.mod3"), agent(client, "la.m3")
    room_id = private_room_with(host, moderator, member)
    set_levels(host, room_id, {moderator.user_id: 50})
    before = power_levels_events(member, room_id)

    leave(moderator, room_id)

    assert power_levels_events(member, room_id) == before
    assert levels(member, room_id)["users"].get(member.user_id, 0) == 0


def test_in_a_direct_chat_the_one_who_stays_remains_admin(client, host):
    other = agent(client, "la.direct")
    room_id = host.new_room(preset="trusted_private_chat", is_direct=True, invite=[other.user_id])
    joined(other, room_id)
    # Both people are administrators from the start: creators of a room version 12 room.
    create = other.state(room_id)[("m.room.create", "")]
    assert create["room_version"] == "12"
    assert create["additional_creators"] == [other.user_id]
    before = power_levels_events(other, room_id)

    leave(host, room_id)

    assert power_levels_events(other, room_id) == before
    set_levels(other, room_id, {})  # still allowed to send power levels (needs 100)
