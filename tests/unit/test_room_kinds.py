"""The room kinds' pure rules: creation plans and state changes, without Synapse."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS

from appliance.synapse_module.rooms.kinds import (
    ACCESS_RULES,
    DIRECT_FULL,
    FORUM_NOT_OPEN,
    FORUM_STAYS_PUBLIC,
    FORUM_UNENCRYPTED,
    INVITE_ONLY,
    ONE_WAY,
    ONLY_FORUMS_LISTED,
    RULES,
    USERS_DEFAULT,
    RoomKind,
    RoomRuleError,
    RoomState,
    access_rule_problem,
    direct_chat_full,
    email_invite_problem,
    encryption_problem,
    join_rule_problem,
    kind_of,
    plan_creation,
    raised_users,
)

V12 = KNOWN_ROOM_VERSIONS["12"]  # creators have unlimited power (MSC4289)
V10 = KNOWN_ROOM_VERSIONS["10"]


def state(*events: tuple[str, str, dict], creator: str = "@a:s", version=V12) -> RoomState:
    """A room's state from (type, state_key, content) triples (plus its create event)."""
    mapping = {
        ("m.room.create", ""): SimpleNamespace(content={}, sender=creator, room_version=version)
    }
    for event_type, key, content in events:
        mapping[(event_type, key)] = SimpleNamespace(content=content, sender=creator)
    return RoomState(mapping)


def rule(name: str, visibility: str = "private") -> tuple[str, str, dict]:
    return (ACCESS_RULES, "", {"rule": name, "visibility": visibility})


def member(user: str, membership: str = "join") -> tuple[str, str, dict]:
    return ("m.room.member", user, {"membership": membership})


FORUM = (rule("restricted", "public"), ("m.room.join_rules", "", {"join_rule": "public"}))
PRIVATE = (rule("restricted"), ("m.room.join_rules", "", {"join_rule": "invite"}))
DIRECT = (rule("direct"), ("m.room.join_rules", "", {"join_rule": "invite"}))


# --- kinds --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, join_rule, kind",
    [
        ({"rule": "direct"}, "invite", RoomKind.DIRECT),
        ({"rule": "unrestricted"}, "invite", RoomKind.OPEN),
        ({"rule": "restricted", "visibility": "public"}, "public", RoomKind.FORUM),
        ({"rule": "restricted", "visibility": "private"}, "invite", RoomKind.PRIVATE),
        ({"rule": "restricted"}, "public", RoomKind.FORUM),  # older Tchap rooms: no visibility
        (None, "public", RoomKind.FORUM),  # rooms made before the rules
        (None, "invite", RoomKind.PRIVATE),
        (None, None, RoomKind.PRIVATE),
    ],
)
def test_kind_of(content, join_rule, kind):
    assert kind_of(content, join_rule) is kind


# --- creation plans -------------------------------------------------------------------------------


def initial(plan) -> dict:
    return {(e["type"], e["state_key"]): e["content"] for e in plan.initial_state}


@pytest.mark.parametrize(
    "config, kind, preset",
    [
        ({}, RoomKind.PRIVATE, "private_chat"),
        ({"preset": "trusted_private_chat"}, RoomKind.PRIVATE, "private_chat"),
        ({"visibility": "public"}, RoomKind.FORUM, "public_chat"),
        ({"preset": "public_chat"}, RoomKind.FORUM, "public_chat"),
        (
            {"is_direct": True, "preset": "trusted_private_chat"},
            RoomKind.DIRECT,
            "trusted_private_chat",
        ),
        (
            {"initial_state": [{"type": ACCESS_RULES, "content": {"rule": "unrestricted"}}]},
            RoomKind.OPEN,
            "private_chat",
        ),
    ],
)
def test_the_kind_and_preset_a_request_gets(config, kind, preset):
    plan = plan_creation(config)

    assert (plan.kind, plan.preset) == (kind, preset)
    assert plan.visibility == ("public" if kind is RoomKind.FORUM else "private")


def test_a_private_plan_puts_the_rule_first_and_encryption_last():
    plan = plan_creation({"initial_state": [{"type": "m.room.encryption", "content": {}}]})

    assert plan.initial_state[0]["type"] == ACCESS_RULES
    assert plan.initial_state[-1] == {
        "type": "m.room.encryption",
        "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
    }
    assert initial(plan)[("m.room.history_visibility", "")] == {"history_visibility": "invited"}


def test_a_forum_plan_has_no_encryption_and_keeps_a_chosen_history_visibility():
    chosen = {
        "type": "m.room.history_visibility",
        "content": {"history_visibility": "world_readable"},
    }

    state_events = initial(plan_creation({"preset": "public_chat", "initial_state": [chosen]}))

    assert ("m.room.encryption", "") not in state_events
    assert state_events[("m.room.join_rules", "")] == {"join_rule": "public"}
    assert state_events[("m.room.history_visibility", "")] == {
        "history_visibility": "world_readable"
    }


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"preset": "private_chat", "visibility": "public"}, ONLY_FORUMS_LISTED),
        (
            {
                "preset": "public_chat",
                "initial_state": [{"type": "m.room.encryption", "content": {}}],
            },
            FORUM_UNENCRYPTED,
        ),
        (
            {"initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]},
            INVITE_ONLY,
        ),
        (
            {
                "preset": "public_chat",
                "initial_state": [
                    {"type": "m.room.join_rules", "content": {"join_rule": "invite"}}
                ],
            },
            FORUM_STAYS_PUBLIC,
        ),
        ({"is_direct": True, "invite": ["@b:s", "@c:s"]}, DIRECT_FULL),
        ({"power_level_content_override": {"users_default": 10}}, USERS_DEFAULT),
        (
            {"invite_3pid": [{"medium": "msisdn", "address": "33600000000"}]},
            "Only email addresses can be invited",
        ),
    ],
)
def test_requests_the_rules_refuse(config, reason):
    with pytest.raises(RoomRuleError) as refused:
        plan_creation(config)
    assert refused.value.message == reason and not refused.value.malformed


@pytest.mark.parametrize(
    "config",
    [
        {"initial_state": "nope"},
        {"initial_state": [{"type": ACCESS_RULES, "content": {"rule": "open"}}]},
        {
            "is_direct": True,
            "initial_state": [{"type": ACCESS_RULES, "content": {"rule": "restricted"}}],
        },
        {"initial_state": [{"type": ACCESS_RULES, "content": {"rule": "direct"}}]},
        {"preset": "everything"},
        {"invite": "@b:s"},
        {"creation_content": []},
    ],
)
def test_malformed_requests(config):
    with pytest.raises(RoomRuleError) as refused:
        plan_creation(config)
    assert refused.value.malformed


def test_a_public_direct_chat_or_open_room_is_refused():
    with pytest.raises(RoomRuleError, match="direct chat cannot be public"):
        plan_creation({"is_direct": True, "preset": "public_chat"})
    unrestricted = [{"type": ACCESS_RULES, "content": {"rule": "unrestricted"}}]
    with pytest.raises(RoomRuleError, match="never open to externals"):
        plan_creation({"preset": "public_chat", "initial_state": unrestricted})


# --- changes of state -----------------------------------------------------------------------------


@given(old=st.sampled_from(RULES), new=st.sampled_from(RULES))
def test_only_restricted_to_unrestricted_changes_a_private_rule(old, new):
    private = state(rule(old), ("m.room.join_rules", "", {"join_rule": "invite"}))

    problem = access_rule_problem(private, {"rule": new, "visibility": "private"})

    assert (problem is None) == (old == new or (old, new) == ("restricted", "unrestricted"))
    if problem is not None:
        assert problem == ONE_WAY


def test_a_forum_or_a_listed_room_is_never_opened_to_externals():
    opened = {"rule": "unrestricted", "visibility": "public"}
    assert access_rule_problem(state(*FORUM), opened) == FORUM_NOT_OPEN
    assert (
        access_rule_problem(state(*PRIVATE), {"rule": "unrestricted"}, listed=True)
        == FORUM_NOT_OPEN
    )


def test_join_rules_and_encryption_by_kind():
    assert join_rule_problem(state(*FORUM), {"join_rule": "invite"}) == FORUM_STAYS_PUBLIC
    assert join_rule_problem(state(*FORUM), {"join_rule": "public"}) is None
    assert join_rule_problem(state(*PRIVATE), {"join_rule": "public"}) == INVITE_ONLY
    assert (
        encryption_problem(state(*FORUM), {"algorithm": "m.megolm.v1.aes-sha2"})
        == FORUM_UNENCRYPTED
    )
    assert encryption_problem(state(*PRIVATE), {"algorithm": "m.megolm.v1.aes-sha2"}) is None


def test_a_direct_chat_counts_people_and_pending_email_invitations():
    two = state(*DIRECT, member("@a:s"), member("@b:s", "invite"))
    one_and_email = state(
        *DIRECT, member("@a:s"), ("m.room.third_party_invite", "tok", {"display_name": "x"})
    )
    one_and_revoked = state(*DIRECT, member("@a:s"), ("m.room.third_party_invite", "tok", {}))

    assert direct_chat_full(two, "@c:s") and not direct_chat_full(two, "@b:s")
    assert direct_chat_full(one_and_email, "@c:s")
    assert not direct_chat_full(one_and_revoked, "@c:s")
    assert not direct_chat_full(state(*PRIVATE, member("@a:s"), member("@b:s")), "@c:s")


def test_email_invitations_must_carry_the_servers_own_key():
    content = {
        "display_name": "j...@x.org",
        "public_key": "ours",
        "public_keys": [{"public_key": "ours"}],
    }
    foreign = {**content, "public_keys": [{"public_key": "ours"}, {"public_key": "theirs"}]}

    assert email_invite_problem(state(*PRIVATE), "t", content, "ours") is None
    assert "identity service" in email_invite_problem(state(*PRIVATE), "t", foreign, "ours")
    assert "identity service" in email_invite_problem(state(*PRIVATE), "t", content, None)
    assert email_invite_problem(state(*PRIVATE), "t", {}, None) is None  # a revocation


def test_raised_users_are_only_those_whose_level_rises_above_zero():
    old = {"users": {"@mod:s": 50, "@x:s": 0}}
    new = {"users": {"@mod:s": 50, "@x:s": 10, "@y:s": 100, "@z:s": -1}}

    assert sorted(raised_users(old, new)) == ["@x:s", "@y:s"]


def test_power_follows_the_auth_rules():
    levels = ("m.room.power_levels", "", {"users": {"@b:s": 50}, "users_default": 0, "invite": 50})
    v12 = state(levels)
    v10 = state(levels, version=V10)

    assert v12.power_of("@a:s") == math.inf  # the creator of a version 12 room
    assert v10.power_of("@a:s") == 0  # earlier versions: only what the power levels say
    assert v12.power_of("@b:s") == 50 and v12.invite_level() == 50
    assert state().power_of("@a:s") == math.inf
