# SPDX-License-Identifier: AGPL-3.0-or-later
"""Every room promise on every path Synapse offers, attacked over real HTTP.

Each test sends the request a hostile client would send (a ``createRoom`` smuggling state
through ``initial_state``, ``creation_content`` or ``power_level_content_override``; a later
power-levels change; a redaction of a rule event) to the shared appliance's real Synapse with
the module, then reads the room's state back event by event.  A refused creation must leave no
room at all: the creator's rooms are unchanged and the server knows no room of that name.
The polite requests Element and Tchap send keep working beside them.
"""

from __future__ import annotations

import secrets

import pytest
from matrix_helpers import OPEN_TO_EXTERNALS, Person, _path_part, refusal

from appliance.synapse_module.rooms.kinds import (
    ACCESS_RULES,
    CALL_AND_LOCATION,
    CREATE_ONCE,
    CREATORS_DIRECT_ONLY,
    DIRECT_FULL,
    FOREIGN_IDENTITY_SERVER,
    GUESTS_STAY_OUT,
    HISTORY_STAYS_WITH_MEMBERS,
    INITIAL_EMAIL_INVITES,
    INITIAL_MEMBERS,
    INVITE_ONLY,
    KIND_IS_FIXED,
    LEVELS_FLOOR,
    ONLY_FORUMS_LISTED,
    OTHERS_STATE,
    OWN_ALIAS,
    OWN_INVITE,
    ROOM_TYPES,
    ROOM_VERSION,
    RULES_NOT_REDACTED,
    SET_LATER,
    TOO_LARGE,
    UPGRADES_REFUSED,
    USERS_DEFAULT,
)
from appliance.synapse_module.rooms.rules import EXTERNALS_NO_FORUMS, EXTERNALS_NOT_IN_PRIVATE

MEGOLM = {"algorithm": "m.megolm.v1.aes-sha2"}
GUESTS_FORBIDDEN = {
    "type": "m.room.guest_access",
    "state_key": "",
    "content": {"guest_access": "forbidden"},
}
ENCRYPTED = {"type": "m.room.encryption", "state_key": "", "content": MEGOLM}
# What Element sends so that every member can join a group call (createRoom.ts).
ELEMENT_GROUP_CALLS = {
    "events": {
        "m.room.name": 50,
        "m.room.power_levels": 100,
        "m.room.history_visibility": 100,
        "m.room.canonical_alias": 50,
        "m.room.avatar": 50,
        "m.room.tombstone": 100,
        "m.room.server_acl": 100,
        "m.room.encryption": 100,
        "org.matrix.msc3401.call.member": 0,
        "org.matrix.msc3401.call": 100,
    }
}


@pytest.fixture(scope="module")
def ana(client) -> Person:
    return Person.register(client, "ana.durcie@ac-paris.fr")


@pytest.fixture(scope="module")
def ben(client) -> Person:
    return Person.register(client, "ben.durci@ac-paris.fr")


@pytest.fixture(scope="module")
def cleo(client) -> Person:
    return Person.register(client, "cleo.durcie@dgfip.gouv.fr")


@pytest.fixture(scope="module")
def dan(client) -> Person:
    return Person.register(client, "dan.durci@dgfip.gouv.fr")


@pytest.fixture(scope="module")
def admin(client, admin_token) -> Person:
    return Person(client, client.whoami(admin_token).json()["user_id"], admin_token)


@pytest.fixture(scope="module")
def outsider(client, ana) -> Person:
    """An external, invited by email into a room open to externals, then registered."""
    partners = ana.new_room(name="Partenaires durcis", initial_state=OPEN_TO_EXTERNALS)
    assert ana.invite_by_email(partners, "olga.dehors@example.com").status_code == 200
    return Person.register(client, "olga.dehors@example.com")


def member(user_id: str, membership: str = "invite") -> dict:
    return {"type": "m.room.member", "state_key": user_id, "content": {"membership": membership}}


def state_event(event_type: str, content: dict, state_key: str = "") -> dict:
    return {"type": event_type, "state_key": state_key, "content": content}


def rooms_named(admin: Person, name: str) -> list[dict]:
    """The rooms the server knows by that name (a room whose creation broke off before its
    name was written has none: the creator's joined rooms tell that)."""
    response = admin.call("GET", "/_synapse/admin/v1/rooms", params={"search_term": name})
    assert response.status_code == 200, response.text
    return response.json()["rooms"]


def refused_creation(person: Person, admin: Person, **body) -> str:
    """createRoom refused with M_FORBIDDEN; the reason, once it is sure no room exists."""
    name = f"Refusee {secrets.token_hex(4)}"
    before = sorted(person.joined_rooms())

    reason = refusal(person.create_room(name=name, **body))

    assert sorted(person.joined_rooms()) == before
    assert rooms_named(admin, name) == []
    return reason


def event_of(person: Person, room_id: str, event_type: str, state_key: str = "") -> dict:
    """The room's current event of that type and key (without its age, which moves)."""
    event = next(
        e
        for e in person.state_events(room_id)
        if (e["type"], e["state_key"]) == (event_type, state_key)
    )
    return {key: event[key] for key in ("event_id", "sender", "content")}


def redact(person: Person, room_id: str, event_id: str):
    path = (
        f"/_matrix/client/v3/rooms/{_path_part(room_id)}/redact/{_path_part(event_id)}/"
        f"{secrets.token_hex(8)}"
    )
    return person.call("PUT", path, {"reason": "tidying up"})


def invited(person: Person, room_id: str) -> set[str]:
    return {
        key
        for (event_type, key), content in person.state(room_id).items()
        if event_type == "m.room.member" and content["membership"] in ("invite", "join")
    }


# --- createRoom smuggles nothing ------------------------------------------------------------------


def test_initial_state_members_cannot_make_a_direct_chat_for_three(ana, ben, cleo, dan, admin):
    smuggled = [member(cleo.user_id), member(dan.user_id)]

    reason = refused_creation(
        ana, admin, is_direct=True, invite=[ben.user_id], initial_state=smuggled
    )

    assert reason == DIRECT_FULL
    assert refused_creation(ana, admin, is_direct=True, initial_state=smuggled) == DIRECT_FULL


def test_an_external_cannot_be_invited_through_initial_state(ana, outsider, admin):
    smuggled = [member(outsider.user_id)]

    assert (
        refused_creation(ana, admin, preset="private_chat", initial_state=smuggled)
        == EXTERNALS_NOT_IN_PRIVATE
    )
    assert (
        refused_creation(ana, admin, preset="public_chat", initial_state=smuggled)
        == EXTERNALS_NO_FORUMS
    )


def test_initial_state_members_are_plain_invitations(ana, ben):
    room = ana.new_room(preset="private_chat", initial_state=[member(ben.user_id)])

    state = ana.state(room)
    assert state[("m.room.member", ben.user_id)]["membership"] == "invite"
    assert invited(ana, room) == {ana.user_id, ben.user_id}
    assert ben.join(room).status_code == 200


@pytest.mark.parametrize("membership", ["join", "ban", "leave"])
def test_initial_state_cannot_write_other_memberships(ana, ben, admin, membership):
    smuggled = [member(ben.user_id, membership)]

    assert refused_creation(ana, admin, initial_state=smuggled) == INITIAL_MEMBERS


def test_a_room_cannot_be_born_tombstoned(ana, admin):
    old = ana.new_room(preset="private_chat")
    tombstone = state_event("m.room.tombstone", {"body": "moved", "replacement_room": old})

    assert refused_creation(ana, admin, initial_state=[tombstone]) == UPGRADES_REFUSED
    assert ("m.room.tombstone", "") not in ana.state(old)


@pytest.mark.parametrize(
    "creation_content, reason",
    [
        ({"predecessor": {"room_id": "!ancienne:test.appliance.localhost"}}, UPGRADES_REFUSED),
        ({"type": "org.example.not_a_room"}, ROOM_TYPES),
    ],
    ids=["predecessor", "room type"],
)
def test_creation_content_cannot_fake_an_upgrade_or_a_room_type(
    ana, admin, creation_content, reason
):
    assert refused_creation(ana, admin, creation_content=creation_content) == reason


def test_creation_content_cannot_make_extra_creators_of_a_private_room(ana, ben, admin):
    body = {"invite": [ben.user_id], "creation_content": {"additional_creators": [ben.user_id]}}

    assert refused_creation(ana, admin, preset="private_chat", **body) == CREATORS_DIRECT_ONLY


def test_initial_state_cannot_hold_a_second_create_event_or_email_invitations(ana, admin):
    create = state_event("m.room.create", {"room_version": "1"})
    email = state_event("m.room.third_party_invite", {"display_name": "x...@y.org"}, "jeton")

    assert refused_creation(ana, admin, initial_state=[create]) == CREATE_ONCE
    assert refused_creation(ana, admin, initial_state=[email]) == INITIAL_EMAIL_INVITES


@pytest.mark.parametrize("join_rule", ["public", "knock"])
def test_a_private_room_cannot_be_born_with_another_join_rule(ana, admin, join_rule):
    rules = [state_event("m.room.join_rules", {"join_rule": join_rule})]

    assert refused_creation(ana, admin, preset="private_chat", initial_state=rules) == INVITE_ONLY


@pytest.mark.parametrize(
    "kind",
    [{"preset": "private_chat"}, {"initial_state": OPEN_TO_EXTERNALS}, {"is_direct": True}],
    ids=["private", "open to externals", "direct"],
)
def test_no_room_but_a_forum_is_born_world_readable(ana, admin, kind):
    readable = state_event("m.room.history_visibility", {"history_visibility": "world_readable"})
    body = {**kind, "initial_state": [*kind.get("initial_state", []), readable]}

    assert refused_creation(ana, admin, **body) == HISTORY_STAYS_WITH_MEMBERS


def test_elements_guest_access_at_creation_gives_a_room_closed_to_guests(ana):
    # Element sends `can_join` in initial_state for every room it creates: the request goes
    # through, and the room is closed to guests all the same.
    guests = [state_event("m.room.guest_access", {"guest_access": "can_join"})]
    room = ana.new_room(preset="private_chat", initial_state=guests)

    assert ana.state(room)[("m.room.guest_access", "")] == {"guest_access": "forbidden"}


@pytest.mark.parametrize(
    "override",
    [
        {"invite": 0},
        {"state_default": 0},
        {"events": {"m.room.topic": 0}},
        {"events": {"m.room.name": 0}},
        {"events": {ACCESS_RULES: 50}},
    ],
    ids=["invite", "state_default", "topic", "name", "access rules"],
)
def test_an_override_cannot_lower_the_power_levels(ana, admin, override):
    assert refused_creation(ana, admin, power_level_content_override=override).startswith(
        LEVELS_FLOOR
    )
    levels = [state_event("m.room.power_levels", override)]
    assert refused_creation(ana, admin, initial_state=levels).startswith(LEVELS_FLOOR)


def test_an_override_cannot_raise_everyone(ana, admin):
    override = {"users_default": 100}

    assert refused_creation(ana, admin, power_level_content_override=override) == USERS_DEFAULT


@pytest.mark.parametrize(
    "override",
    [{"invite": "0"}, {"users": {"personne": 100}}, {"events": {"m.room.name": 50.5}}],
    ids=["string level", "not a user ID", "fraction"],
)
def test_malformed_power_levels_are_a_bad_request_and_create_nothing(ana, admin, override):
    name = f"Malformee {secrets.token_hex(4)}"
    before = sorted(ana.joined_rooms())

    response = ana.create_room(name=name, power_level_content_override=override)

    assert response.status_code == 400 and response.json()["errcode"] == "M_INVALID_PARAM"
    assert sorted(ana.joined_rooms()) == before
    assert rooms_named(admin, name) == []


def test_a_canonical_alias_of_another_room_creates_nothing(ana, admin):
    server = ana.user_id.split(":", 1)[1]
    alias_name = f"salle-{secrets.token_hex(3)}"
    taken = ana.new_room(preset="private_chat", room_alias_name=alias_name)
    stolen = state_event("m.room.canonical_alias", {"alias": f"#{alias_name}:{server}"})

    assert refused_creation(ana, admin, initial_state=[stolen]) == OWN_ALIAS
    assert ana.state(taken)[("m.room.canonical_alias", "")] == {"alias": f"#{alias_name}:{server}"}


def test_a_canonical_alias_of_the_room_itself_is_accepted(ana):
    alias = f"#propre-{secrets.token_hex(3)}:{ana.user_id.split(':', 1)[1]}"
    own = state_event("m.room.canonical_alias", {"alias": alias})

    room = ana.new_room(room_alias_name=alias[1:].split(":")[0], initial_state=[own])

    assert ana.state(room)[("m.room.canonical_alias", "")] == {"alias": alias}


def test_another_persons_state_or_a_server_acl_creates_nothing(ana, ben, admin):
    call = {"memberships": [], "application": "m.call", "call_id": ""}
    theirs = state_event("org.matrix.msc3401.call.member", call, ben.user_id)
    acl = state_event("m.room.server_acl", {"allow": ["elsewhere.example"], "deny": []})

    assert refused_creation(ana, admin, initial_state=[theirs]) == OTHERS_STATE
    assert refused_creation(ana, admin, initial_state=[acl]) == SET_LATER


def test_contents_synapse_would_refuse_halfway_create_nothing(ana, admin):
    name = f"Fraction {secrets.token_hex(4)}"
    fraction = state_event("org.example.settings", {"ratio": 0.5})
    before = sorted(ana.joined_rooms())

    response = ana.create_room(name=name, initial_state=[fraction])

    assert response.status_code == 400 and response.json()["errcode"] == "M_INVALID_PARAM"
    assert sorted(ana.joined_rooms()) == before
    assert rooms_named(admin, name) == []


def test_an_email_invitation_through_another_identity_server_creates_nothing(ana, admin):
    # A loopback address nobody serves: refused before Synapse would ever call it.
    invite = {
        "id_server": "127.0.0.9:8449",
        "id_access_token": "jeton",
        "medium": "email",
        "address": "eve.collegue@ac-paris.fr",
    }

    assert refused_creation(ana, admin, invite_3pid=[invite]) == FOREIGN_IDENTITY_SERVER


def test_an_event_too_large_for_synapse_creates_nothing(ana, admin):
    name = f"Trop grande {secrets.token_hex(4)}"
    big = state_event("org.example.notes", {"text": "x" * 66_000})
    before = sorted(ana.joined_rooms())

    response = ana.create_room(name=name, initial_state=[big])

    assert sorted(ana.joined_rooms()) == before
    assert response.status_code == 400 and response.json()["error"] == TOO_LARGE
    assert rooms_named(admin, name) == []


def test_inviting_oneself_creates_nothing(ana, admin):
    assert refused_creation(ana, admin, invite=[ana.user_id]) == OWN_INVITE


def test_an_older_room_version_is_refused(ana, admin):
    assert refused_creation(ana, admin, room_version="10") == ROOM_VERSION


# --- the polite paths -------------------------------------------------------------------------


def test_elements_private_room_with_group_calls(ana, ben):
    room = ana.new_room(
        name="Réunion hebdo",
        preset="private_chat",
        visibility="private",
        invite=[ben.user_id],
        initial_state=[GUESTS_FORBIDDEN, ENCRYPTED],
        power_level_content_override=ELEMENT_GROUP_CALLS,
    )

    state = ana.state(room)
    assert state[(ACCESS_RULES, "")] == {"rule": "restricted", "visibility": "private"}
    assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
    assert state[("m.room.guest_access", "")] == {"guest_access": "forbidden"}
    assert state[("m.room.encryption", "")] == MEGOLM
    assert state[("m.room.history_visibility", "")] == {"history_visibility": "invited"}
    levels = state[("m.room.power_levels", "")]
    assert (levels["invite"], levels["state_default"], levels["users_default"]) == (50, 100, 0)
    assert levels["events"]["m.room.name"] == 50 and levels["events"]["m.room.topic"] == 100
    assert levels["events"]["org.matrix.msc3401.call"] == 100  # Element's raise, kept
    untouched = set(CALL_AND_LOCATION) - set(ELEMENT_GROUP_CALLS["events"])
    assert all(levels["events"][event_type] == 0 for event_type in untouched)
    assert levels["events"]["org.matrix.msc3401.call.member"] == 0
    assert levels["users"] == {}  # the creator of a version 12 room holds unlimited power
    # Ben, a plain member, joins the call and shares his location, but invites nobody.
    assert ben.join(room).status_code == 200
    call = {"memberships": [], "application": "m.call", "call_id": ""}
    assert ben.put_state(room, "org.matrix.msc3401.call.member", call, ben.user_id).ok
    assert ben.put_state(room, "m.beacon_info", {"live": True}, ben.user_id).ok
    assert ben.invite(room, "@someone:test.appliance.localhost").status_code == 403
    assert ben.put_state(room, "m.room.topic", {"topic": "mine"}).status_code == 403


def test_elements_direct_chat_makes_both_people_administrators(ana, ben):
    room = ana.new_room(
        is_direct=True,
        preset="trusted_private_chat",
        invite=[ben.user_id],
        initial_state=[GUESTS_FORBIDDEN, ENCRYPTED],
    )

    create = event_of(ana, room, "m.room.create")
    assert {create["sender"], *create["content"]["additional_creators"]} == {
        ana.user_id,
        ben.user_id,
    }
    assert ana.state(room)[(ACCESS_RULES, "")] == {"rule": "direct", "visibility": "private"}
    assert ben.join(room).status_code == 200
    assert ben.put_state(room, "m.room.name", {"name": "Nous deux"}).ok  # an administrator


def test_a_direct_chat_asked_with_private_chat_still_makes_both_administrators(ana, ben):
    room = ana.new_room(is_direct=True, preset="private_chat", invite=[ben.user_id])

    create = event_of(ana, room, "m.room.create")
    assert create["content"]["additional_creators"] == [ben.user_id]


def test_a_forum_keeps_shared_history_and_may_be_world_readable(ana, ben):
    forum = ana.new_room(name="Forum durci", preset="public_chat", visibility="public")
    readable = state_event("m.room.history_visibility", {"history_visibility": "world_readable"})
    archive = ana.new_room(preset="public_chat", initial_state=[readable])

    state = ana.state(forum)
    assert state[("m.room.history_visibility", "")] == {"history_visibility": "shared"}
    assert state[("m.room.guest_access", "")] == {"guest_access": "forbidden"}
    assert state[("m.room.power_levels", "")]["invite"] == 0
    assert ana.state(archive)[("m.room.history_visibility", "")] == {
        "history_visibility": "world_readable"
    }
    assert ben.join(forum).status_code == 200


# --- later changes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"invite": 0},
        {"state_default": 50},
        {"events_default": -1},
        {"users_default": 50},
    ],
    ids=["invite", "state_default", "events_default", "users_default"],
)
def test_later_power_levels_cannot_lower_the_minimums(ana, change):
    room = ana.new_room(preset="private_chat")
    before = event_of(ana, room, "m.room.power_levels")

    response = ana.put_state(room, "m.room.power_levels", {**before["content"], **change})

    assert response.status_code == 403 and response.json()["errcode"] == "M_FORBIDDEN"
    assert event_of(ana, room, "m.room.power_levels")["event_id"] == before["event_id"]


def test_later_power_levels_cannot_lower_an_event_level(ana):
    room = ana.new_room(preset="private_chat")
    levels = ana.state(room)[("m.room.power_levels", "")]
    lowered = {**levels, "events": {**levels["events"], "m.room.avatar": 0}}
    raised = {**levels, "invite": 100, "events": {**levels["events"], "m.call.member": 50}}

    assert refusal(ana.put_state(room, "m.room.power_levels", lowered)).startswith(LEVELS_FLOOR)
    assert ana.put_state(room, "m.room.power_levels", raised).ok
    assert ana.state(room)[("m.room.power_levels", "")] == raised


def test_history_and_guest_access_stay_closed_later(ana):
    room = ana.new_room(preset="private_chat")
    forum = ana.new_room(preset="public_chat")
    readable = {"history_visibility": "world_readable"}

    assert (
        refusal(ana.put_state(room, "m.room.history_visibility", readable))
        == HISTORY_STAYS_WITH_MEMBERS
    )
    assert refusal(ana.put_state(room, "m.room.guest_access", {"guest_access": "can_join"})) == (
        GUESTS_STAY_OUT
    )
    state = ana.state(room)
    assert state[("m.room.history_visibility", "")] == {"history_visibility": "invited"}
    assert state[("m.room.guest_access", "")] == {"guest_access": "forbidden"}
    assert ana.put_state(forum, "m.room.history_visibility", readable).ok


# --- redactions -------------------------------------------------------------------------------


def test_a_redaction_cannot_turn_a_direct_chat_into_a_group(ana, ben, cleo):
    room = ana.new_room(is_direct=True, preset="trusted_private_chat", invite=[ben.user_id])
    rule = event_of(ana, room, ACCESS_RULES)

    assert refusal(redact(ana, room, rule["event_id"])) == RULES_NOT_REDACTED

    assert event_of(ana, room, ACCESS_RULES) == rule
    assert refusal(ana.invite(room, cleo.user_id)) == DIRECT_FULL
    assert invited(ana, room) == {ana.user_id, ben.user_id}


@pytest.mark.parametrize(
    "event_type",
    [
        ACCESS_RULES,
        "m.room.encryption",
        "m.room.join_rules",
        "m.room.power_levels",
        "m.room.history_visibility",
        "m.room.guest_access",
    ],
)
def test_the_rule_events_of_a_room_are_never_redacted(ana, event_type):
    room = ana.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    before = event_of(ana, room, event_type)

    assert refusal(redact(ana, room, before["event_id"])) == RULES_NOT_REDACTED
    assert event_of(ana, room, event_type) == before


def test_other_state_events_may_be_redacted(ana):
    room = ana.new_room(preset="private_chat", name="Nom à effacer")
    name = event_of(ana, room, "m.room.name")

    assert redact(ana, room, name["event_id"]).ok
    assert event_of(ana, room, "m.room.name")["content"] == {}


def test_a_room_whose_rule_an_admin_redacted_is_a_private_room(admin, ana):
    room = admin.new_room(name="Salle sans règle", preset="private_chat", invite=[ana.user_id])
    assert ana.join(room).status_code == 200
    levels = admin.state(room)[("m.room.power_levels", "")]
    raised = {**levels, "users": {**levels["users"], ana.user_id: 100}}
    assert admin.put_state(room, "m.room.power_levels", raised).ok

    assert redact(admin, room, event_of(admin, room, ACCESS_RULES)["event_id"]).ok

    assert event_of(ana, room, ACCESS_RULES)["content"] == {}
    forum_rule = {"rule": "restricted", "visibility": "public"}
    assert refusal(ana.put_state(room, ACCESS_RULES, forum_rule)) == KIND_IS_FIXED
    assert refusal(ana.put_state(room, "m.room.join_rules", {"join_rule": "public"})) == (
        INVITE_ONLY
    )
    assert ana.state(room)[("m.room.join_rules", "")] == {"join_rule": "invite"}


def test_a_public_room_whose_rule_was_redacted_is_no_forum(admin, ana):
    room = admin.new_room(name="Forum sans règle", preset="public_chat", invite=[ana.user_id])
    assert ana.join(room).status_code == 200
    levels = admin.state(room)[("m.room.power_levels", "")]
    raised = {**levels, "users": {**levels["users"], ana.user_id: 100}}
    assert admin.put_state(room, "m.room.power_levels", raised).ok
    assert admin.publish(room, "private").ok
    assert redact(admin, room, event_of(admin, room, ACCESS_RULES)["event_id"]).ok

    assert refusal(ana.publish(room)) == ONLY_FORUMS_LISTED
    assert refusal(ana.put_state(room, "m.room.join_rules", {"join_rule": "public"})) == (
        INVITE_ONLY
    )
    assert ana.put_state(room, "m.room.join_rules", {"join_rule": "invite"}).ok
    assert ana.state(room)[("m.room.join_rules", "")] == {"join_rule": "invite"}
    directory = ana.call("GET", f"/_matrix/client/v3/directory/list/room/{room}").json()
    assert directory["visibility"] == "private"
