# SPDX-License-Identifier: AGPL-3.0-or-later
"""The room rules' callbacks (rooms/rules.py), called as Synapse calls them: createRoom bodies
as clients send them, and real Synapse events against real room-state maps.

Attacks are the exact request or event a hostile member would get Synapse to hand the module;
each refusal must be Synapse's error with the rule's own message, and the polite requests of
Element and Tchap (guest access in initial_state, power levels for group calls) must pass."""

from __future__ import annotations

import pytest
from synapse.api.errors import SynapseError
from synapse.module_api import NOT_SPAM, create_requester

from appliance.synapse_module.rooms.kinds import (
    ACCESS_RULES,
    CREATORS_DIRECT_ONLY,
    DIRECT_FULL,
    ENCRYPTION,
    FORUM_STAYS_PUBLIC,
    FORUM_UNENCRYPTED,
    INVITE_ONLY,
    JOIN_RULES,
    MEGOLM,
    MEMBER,
    ONLY_FORUMS_LISTED,
    POWER_LEVELS,
    TOMBSTONE,
    UPGRADES_REFUSED,
    USERS_DEFAULT,
)
from appliance.synapse_module.rooms.rules import (
    EXTERNAL_NAME,
    EXTERNALS_BY_INVITATION,
    EXTERNALS_CANNOT_CREATE,
    EXTERNALS_CANNOT_PUBLISH,
    EXTERNALS_LEVEL,
    EXTERNALS_NO_ALIASES,
    EXTERNALS_NO_FORUMS,
    EXTERNALS_NOT_IN_PRIVATE,
    RoomRules,
)

SERVER = "appliance.test"
AGENT = f"@pierre.dupont-ac-paris.fr:{SERVER}"
OTHER_AGENT = f"@anne.roux-ac-paris.fr:{SERVER}"
EXTERNAL = f"@jean.martin-gmail.com:{SERVER}"
ADMIN = f"@admin:{SERVER}"
# Element Call's group calls: members may send call membership state (Element's request).
GROUP_CALL_LEVELS = {"events": {"org.matrix.msc3401.call.member": 0, "m.call.member": 0}}


@pytest.fixture
def rules(api, directory, invitations, key, run) -> RoomRules:
    api.users.update({AGENT, OTHER_AGENT, EXTERNAL, ADMIN})
    api.admins.add(ADMIN)
    run(directory.record(EXTERNAL, "jean.martin@gmail.com"))
    room_rules = RoomRules(api, directory, invitations, key)
    room_rules.register()
    return room_rules


def refusal(call) -> SynapseError:
    with pytest.raises(SynapseError) as refused:
        call()
    return refused.value


def forbidden(call, message: str) -> None:
    error = refusal(call)
    assert (error.code, error.errcode, error.msg) == (403, "M_FORBIDDEN", message)


def state_of(config: dict) -> dict:
    return {(e["type"], e["state_key"]): e["content"] for e in config["initial_state"]}


# --- createRoom ----------------------------------------------------------------------------------


def test_the_rules_register_the_callbacks_synapse_calls(api, rules):
    api.register_third_party_rules_callbacks.assert_called_once_with(
        check_event_allowed=rules.check_event_allowed, on_create_room=rules.on_create_room
    )
    api.register_spam_checker_callbacks.assert_any_call(
        user_may_publish_room=rules.user_may_publish_room,
        user_may_create_room_alias=rules.user_may_create_room_alias,
    )


def test_elements_private_room_request_passes_and_gets_the_private_rules(rules, run):
    # As Element sends it, guest access and power levels for group calls included.
    config = {
        "preset": "private_chat",
        "name": "Projet",
        "initial_state": [
            {
                "type": "m.room.guest_access",
                "state_key": "",
                "content": {"guest_access": "can_join"},
            }
        ],
        "power_level_content_override": GROUP_CALL_LEVELS,
        "invite": [OTHER_AGENT],
    }
    run(rules.on_create_room(create_requester(AGENT), config, False))

    state = state_of(config)
    assert state[(ACCESS_RULES, "")] == {"rule": "restricted", "visibility": "private"}
    assert state[(JOIN_RULES, "")] == {"join_rule": "invite"}
    assert state[(ENCRYPTION, "")] == {"algorithm": MEGOLM}
    # Element asks every room open to guests; the server registers none and says so.
    assert state[("m.room.guest_access", "")] == {"guest_access": "forbidden"}
    # Every member may join a group call, as Element asked.
    for event_type, level in GROUP_CALL_LEVELS["events"].items():
        assert state[(POWER_LEVELS, "")]["events"][event_type] == level


def test_an_external_cannot_create_a_room_and_nothing_is_changed(rules, run):
    config = {"preset": "private_chat", "invite": [AGENT]}
    forbidden(
        lambda: run(rules.on_create_room(create_requester(EXTERNAL), dict(config), False)),
        EXTERNALS_CANNOT_CREATE,
    )


@pytest.mark.parametrize(
    "config, message",
    [
        ({"preset": "private_chat", "invite": [EXTERNAL]}, EXTERNALS_NOT_IN_PRIVATE),
        ({"preset": "public_chat", "invite": [EXTERNAL]}, EXTERNALS_NO_FORUMS),
        (
            {"preset": "private_chat", "power_level_content_override": {"users": {EXTERNAL: 50}}},
            EXTERNALS_LEVEL,
        ),
        (
            {
                "initial_state": [
                    {"type": ACCESS_RULES, "state_key": "", "content": {"rule": "unrestricted"}}
                ],
                "creation_content": {"additional_creators": [EXTERNAL]},
            },
            CREATORS_DIRECT_ONLY,
        ),
        (
            {"preset": "private_chat", "power_level_content_override": {"users_default": 100}},
            USERS_DEFAULT,
        ),
        ({"is_direct": True, "invite": [OTHER_AGENT, f"@third:{SERVER}"]}, DIRECT_FULL),
    ],
)
def test_a_creation_request_the_rules_refuse(rules, run, config, message):
    forbidden(lambda: run(rules.on_create_room(create_requester(AGENT), config, False)), message)


def test_a_room_open_to_externals_may_invite_one(rules, run):
    config = {
        "initial_state": [
            {"type": ACCESS_RULES, "state_key": "", "content": {"rule": "unrestricted"}}
        ],
        "invite": [EXTERNAL],
    }
    run(rules.on_create_room(create_requester(AGENT), config, False))
    assert state_of(config)[(ACCESS_RULES, "")]["rule"] == "unrestricted"


def test_a_direct_chat_with_an_external_does_not_make_them_a_creator(rules, run):
    config = {"preset": "trusted_private_chat", "is_direct": True, "invite": [EXTERNAL]}
    run(rules.on_create_room(create_requester(AGENT), config, False))
    assert config["preset"] == "private_chat"
    assert state_of(config)[(ACCESS_RULES, "")]["rule"] == "direct"


def test_an_admin_bypasses_a_rule_but_not_a_malformed_request(rules, run):
    run(rules.on_create_room(create_requester(ADMIN), {"invite": [EXTERNAL]}, True))
    error = refusal(
        lambda: run(rules.on_create_room(create_requester(ADMIN), {"visibility": "x"}, True))
    )
    assert (error.code, error.errcode) == (400, "M_INVALID_PARAM")


# --- events on an existing room --------------------------------------------------------------


def private(room, *members: str, version: str = "12"):
    builder = room(version=version, creator=AGENT)
    builder.add(MEMBER, AGENT, {"membership": "join"}, sender=AGENT)
    builder.add(ACCESS_RULES, "", {"rule": "restricted", "visibility": "private"})
    builder.add(JOIN_RULES, "", {"join_rule": "invite"})
    builder.add(POWER_LEVELS, "", {"users": {}, "users_default": 0, "invite": 0})
    builder.add(ENCRYPTION, "", {"algorithm": MEGOLM})
    for member in members:
        builder.add(MEMBER, member, {"membership": "join"}, sender=member)
    return builder


def forum(room):
    builder = room(creator=AGENT)
    builder.add(MEMBER, AGENT, {"membership": "join"}, sender=AGENT)
    builder.add(ACCESS_RULES, "", {"rule": "restricted", "visibility": "public"})
    builder.add(JOIN_RULES, "", {"join_rule": "public"})
    builder.add(POWER_LEVELS, "", {"users": {}, "users_default": 0})
    return builder


def open_room(room):
    builder = private(room)
    builder.add(ACCESS_RULES, "", {"rule": "unrestricted", "visibility": "private"})
    return builder


def direct(room, other: str):
    builder = private(room, other)
    builder.add(ACCESS_RULES, "", {"rule": "direct", "visibility": "private"})
    return builder


def check(rules, run, builder, event_type, state_key, content, sender=AGENT):
    event = builder.event(event_type, state_key, content, sender=sender)
    return run(rules.check_event_allowed(event, builder.state))


@pytest.mark.parametrize("version", ["10", "12"])
def test_a_private_room_cannot_be_made_public(rules, room, run, version):
    builder = private(room, version=version)
    forbidden(
        lambda: check(rules, run, builder, JOIN_RULES, "", {"join_rule": "public"}), INVITE_ONLY
    )
    assert check(rules, run, builder, JOIN_RULES, "", {"join_rule": "invite"}) == (True, None)


def test_a_forum_stays_public_and_unencrypted(rules, room, run):
    builder = forum(room)
    forbidden(
        lambda: check(rules, run, builder, JOIN_RULES, "", {"join_rule": "invite"}),
        FORUM_STAYS_PUBLIC,
    )
    forbidden(
        lambda: check(rules, run, builder, ENCRYPTION, "", {"algorithm": MEGOLM}),
        FORUM_UNENCRYPTED,
    )


def test_externals_stay_out_of_forums_and_private_rooms(rules, room, run):
    for builder, message in ((forum(room), EXTERNALS_NO_FORUMS), (private(room), None)):
        message = message or EXTERNALS_NOT_IN_PRIVATE
        forbidden(
            lambda b=builder: check(rules, run, b, MEMBER, EXTERNAL, {"membership": "invite"}),
            message,
        )
        forbidden(
            lambda b=builder: check(
                rules, run, b, MEMBER, EXTERNAL, {"membership": "join"}, sender=EXTERNAL
            ),
            message,
        )


def test_an_external_enters_a_room_open_to_externals_only_by_invitation(rules, room, run):
    builder = open_room(room)
    joining = {"membership": "join", "displayname": "Jean Martin [gmail.com] (external)"}
    forbidden(
        lambda: check(rules, run, builder, MEMBER, EXTERNAL, joining, sender=EXTERNAL),
        EXTERNALS_BY_INVITATION,
    )
    assert check(rules, run, builder, MEMBER, EXTERNAL, {"membership": "invite"}) == (True, None)
    builder.add(MEMBER, EXTERNAL, {"membership": "invite"})
    assert check(rules, run, builder, MEMBER, EXTERNAL, joining, sender=EXTERNAL) == (True, None)


def test_an_external_cannot_hide_the_marker_in_a_room(rules, room, run):
    builder = open_room(room)
    builder.add(MEMBER, EXTERNAL, {"membership": "join"}, sender=EXTERNAL)
    forbidden(
        lambda: check(
            rules,
            run,
            builder,
            MEMBER,
            EXTERNAL,
            {"membership": "join", "displayname": "Pierre Dupont [ac-paris.fr]"},
            sender=EXTERNAL,
        ),
        EXTERNAL_NAME,
    )


def test_a_direct_chat_holds_two_people(rules, room, run):
    builder = direct(room, OTHER_AGENT)
    forbidden(
        lambda: check(rules, run, builder, MEMBER, f"@third:{SERVER}", {"membership": "invite"}),
        DIRECT_FULL,
    )


def test_externals_are_never_given_power(rules, room, run):
    builder = open_room(room)
    builder.add(MEMBER, EXTERNAL, {"membership": "join"}, sender=EXTERNAL)
    raised = {"users": {EXTERNAL: 50}, "users_default": 0}
    forbidden(lambda: check(rules, run, builder, POWER_LEVELS, "", raised), EXTERNALS_LEVEL)
    everyone = {"users": {}, "users_default": 50}
    forbidden(lambda: check(rules, run, builder, POWER_LEVELS, "", everyone), USERS_DEFAULT)
    # the polite path: group call levels for everyone
    calls = {"users": {}, "users_default": 0, **GROUP_CALL_LEVELS}
    assert check(rules, run, builder, POWER_LEVELS, "", calls) == (True, None)


def test_rooms_cannot_be_upgraded(rules, room, run):
    builder = private(room)
    forbidden(
        lambda: check(rules, run, builder, TOMBSTONE, "", {"replacement_room": "!x:y"}),
        UPGRADES_REFUSED,
    )


def test_an_admin_may_change_what_a_member_may_not(rules, room, run):
    builder = private(room, ADMIN)
    event = {"join_rule": "public"}
    assert check(rules, run, builder, JOIN_RULES, "", event, sender=ADMIN) == (True, None)


def test_messages_pass_without_reading_anything(rules, room, run, database):
    builder = private(room, EXTERNAL)
    database.calls.clear()
    body = {"msgtype": "m.text", "body": "bonjour"}
    assert check(rules, run, builder, "m.room.message", None, body) == (True, None)
    assert database.calls == []


# --- the room directory ----------------------------------------------------------------------


def test_only_forums_are_published_and_never_by_externals(api, rules, room, run):
    private_room, forum_room = private(room), forum(room)
    assert run(rules.user_may_publish_room(AGENT, forum_room.room_id)) == NOT_SPAM
    assert run(rules.user_may_publish_room(AGENT, private_room.room_id)) == (
        "M_FORBIDDEN",
        {"error": ONLY_FORUMS_LISTED},
    )
    assert run(rules.user_may_publish_room(EXTERNAL, forum_room.room_id)) == (
        "M_FORBIDDEN",
        {"error": EXTERNALS_CANNOT_PUBLISH},
    )
    assert run(rules.user_may_publish_room(ADMIN, private_room.room_id)) == NOT_SPAM


def test_externals_cannot_create_room_addresses(rules, run):
    assert run(rules.user_may_create_room_alias(EXTERNAL, None)) == (
        "M_FORBIDDEN",
        {"error": EXTERNALS_NO_ALIASES},
    )
    assert run(rules.user_may_create_room_alias(AGENT, None)) == NOT_SPAM


def test_a_room_another_server_made_without_power_levels_is_judged_like_any_other(rules, room, run):
    # The auth rules allow a room with no power levels (every member may then send state): it
    # is not "being created" for a local member's events, which the rules still judge.
    outsider = "@oscar:elsewhere.example"
    builder = room(creator=outsider)
    builder.add(MEMBER, outsider, {"membership": "join"}, sender=outsider)
    builder.add(ACCESS_RULES, "", {"rule": "restricted", "visibility": "private"})
    builder.add(JOIN_RULES, "", {"join_rule": "invite"})
    builder.add(MEMBER, AGENT, {"membership": "join"}, sender=AGENT)
    forbidden(
        lambda: check(rules, run, builder, JOIN_RULES, "", {"join_rule": "public"}), INVITE_ONLY
    )
