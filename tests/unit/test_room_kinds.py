# SPDX-License-Identifier: AGPL-3.0-or-later
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
    ALGORITHM,
    CALL_AND_LOCATION,
    CREATE_ONCE,
    CREATORS_DIRECT_ONLY,
    DIRECT_FULL,
    FORUM_NOT_OPEN,
    FORUM_STAYS_PUBLIC,
    FORUM_UNENCRYPTED,
    HISTORY_STAYS_WITH_MEMBERS,
    INITIAL_EMAIL_INVITES,
    INITIAL_MEMBERS,
    INVITE_ONLY,
    LEVELS_FLOOR,
    NAMES_NOT_REDACTED,
    ONE_WAY,
    ONLY_FORUMS_LISTED,
    OTHERS_STATE,
    OWN_ALIAS,
    OWN_INVITE,
    ROOM_TYPES,
    ROOM_VERSION,
    RULE_EVENTS,
    RULES,
    RULES_NOT_REDACTED,
    SET_LATER,
    TOO_LARGE,
    UPGRADES_REFUSED,
    USERS_DEFAULT,
    RoomKind,
    RoomRuleError,
    RoomState,
    access_rule_problem,
    direct_chat_full,
    email_invitation_token,
    email_invite_problem,
    encryption_problem,
    event_floor,
    join_rule_problem,
    kind_of,
    level_floors,
    levels_problem,
    plan_creation,
    raised_users,
    redaction_problem,
)

PRESETS_ASKED = ["private_chat", "trusted_private_chat", "public_chat"]
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
        (None, "public", RoomKind.PRIVATE),  # no rule: the strictest kind, never a forum
        ({}, "public", RoomKind.PRIVATE),  # a redacted rule
        ({"rule": "everyone", "visibility": "public"}, "public", RoomKind.PRIVATE),
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
    megolm = {"algorithm": "m.megolm.v1.aes-sha2"}
    plan = plan_creation({"initial_state": [{"type": "m.room.encryption", "content": megolm}]})

    assert plan.initial_state[1]["type"] == ACCESS_RULES
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


def test_the_invite_made_from_a_direct_chats_email_invitation_takes_its_place():
    # Synapse's exchange after 3pid/onbind: an invite that carries the invitation's token.
    email = ("m.room.third_party_invite", "tok", {"display_name": "x"})
    exchanged = {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}}
    waiting = state(*DIRECT, member("@a:s"), email)
    invited = state(*DIRECT, member("@a:s"), email, ("m.room.member", "@p:e", exchanged))

    assert email_invitation_token(exchanged) == "tok"
    assert email_invitation_token({"membership": "invite"}) is None
    assert not direct_chat_full(waiting, "@p:e", "tok")
    assert direct_chat_full(waiting, "@p:e", "other") and direct_chat_full(waiting, "@p:e")
    assert waiting.pending_email_invites() == ["tok"]
    assert invited.pending_email_invites() == []  # used: @p:e is counted instead
    assert direct_chat_full(invited, "@c:s")


def test_email_invitations_must_carry_the_servers_own_key():
    content = {
        "display_name": "j...@x.org",
        "public_key": "ours",
        "public_keys": [{"public_key": "ours"}],
    }
    foreign = {**content, "public_keys": [{"public_key": "ours"}, {"public_key": "theirs"}]}

    assert email_invite_problem(state(*PRIVATE), "t", content, {"ours"}) is None
    assert email_invite_problem(state(*PRIVATE), "t", content, {"theirs", "ours"}) is None
    assert "identity service" in email_invite_problem(state(*PRIVATE), "t", foreign, {"ours"})
    assert "identity service" in email_invite_problem(state(*PRIVATE), "t", content, ())
    assert email_invite_problem(state(*PRIVATE), "t", {}, ()) is None  # a revocation


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


# --- nothing smuggled through a creation --------------------------------------------------------


def event(event_type: str, content: dict, state_key: str = "") -> dict:
    return {"type": event_type, "state_key": state_key, "content": content}


def refused(config: dict, **kwargs) -> str:
    with pytest.raises(RoomRuleError) as refusal:
        plan_creation(config, **kwargs)
    return refusal.value.message


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


def test_member_events_of_initial_state_are_invitations():
    config = {"initial_state": [event("m.room.member", {"membership": "invite"}, "@b:s")]}

    plan = plan_creation(config, creator="@a:s")

    assert plan.invitees == ("@b:s",)
    assert not any(e["type"] == "m.room.member" for e in plan.initial_state)


def test_a_direct_chat_for_three_through_initial_state_is_refused():
    members = [event("m.room.member", {"membership": "invite"}, u) for u in ("@c:s", "@d:s")]
    config = {"is_direct": True, "invite": ["@b:s"], "initial_state": members}

    assert refused(config, creator="@a:s") == DIRECT_FULL
    assert refused({**config, "invite": []}, creator="@a:s") == DIRECT_FULL


@pytest.mark.parametrize(
    "initial, reason",
    [
        (event("m.room.member", {"membership": "join"}, "@b:s"), INITIAL_MEMBERS),
        (event("m.room.member", {"membership": "ban"}, "@b:s"), INITIAL_MEMBERS),
        (event("m.room.member", {"membership": "invite"}, "@a:s"), INITIAL_MEMBERS),
        (event("m.room.tombstone", {"replacement_room": "!x:s"}), UPGRADES_REFUSED),
        (event("m.room.create", {"room_version": "1"}), CREATE_ONCE),
        (event("m.room.third_party_invite", {"display_name": "x"}, "tok"), INITIAL_EMAIL_INVITES),
        (
            event("m.room.history_visibility", {"history_visibility": "world_readable"}),
            HISTORY_STAYS_WITH_MEMBERS,
        ),
        (event("m.room.encryption", {"algorithm": "m.olm.v1.curve25519-aes-sha2"}), ALGORITHM),
        (event("m.room.join_rules", {"join_rule": "public"}), INVITE_ONLY),
        (event("m.room.join_rules", {"join_rule": "knock"}), INVITE_ONLY),
    ],
    ids=lambda value: value["type"] if isinstance(value, dict) else None,
)
def test_initial_state_is_judged_as_the_same_event_later(initial, reason):
    config = {"preset": "private_chat", "initial_state": [initial]}

    assert refused(config, creator="@a:s") == reason


def test_an_invitation_of_oneself_is_refused_before_anything_is_written():
    assert refused({"invite": ["@a:s"]}, creator="@a:s") == OWN_INVITE


@pytest.mark.parametrize("kind_config", [{}, {"is_direct": True}, {"initial_state": []}])
def test_world_readable_history_only_in_forums(kind_config):
    readable = event("m.room.history_visibility", {"history_visibility": "world_readable"})
    config = {**kind_config, "initial_state": [readable]}

    assert refused(config) == HISTORY_STAYS_WITH_MEMBERS
    forum = initial(plan_creation({"preset": "public_chat", "initial_state": [readable]}))
    assert forum[("m.room.history_visibility", "")] == {"history_visibility": "world_readable"}


@pytest.mark.parametrize("preset", ["private_chat", "trusted_private_chat", "public_chat"])
def test_every_room_is_born_with_guest_access_forbidden(preset):
    # Element asks `can_join` for every room it creates: the request goes through, closed.
    for asked in ("forbidden", "can_join"):
        elements = [event("m.room.guest_access", {"guest_access": asked})]
        for config in ({"preset": preset}, {"preset": preset, "initial_state": elements}):
            assert initial(plan_creation(config))[("m.room.guest_access", "")] == {
                "guest_access": "forbidden"
            }


@pytest.mark.parametrize(
    "creation_content, reason",
    [
        ({"predecessor": {"room_id": "!old:s", "event_id": "$e"}}, UPGRADES_REFUSED),
        ({"type": "m.custom.kind"}, ROOM_TYPES),
        ({"additional_creators": ["@b:s"]}, CREATORS_DIRECT_ONLY),
    ],
)
def test_creation_content_cannot_make_an_upgrade_a_strange_room_or_extra_creators(
    creation_content, reason
):
    assert refused({"invite": ["@b:s"], "creation_content": creation_content}) == reason


def test_only_room_version_12_is_created():
    assert refused({"room_version": "10"}) == ROOM_VERSION
    assert plan_creation({"room_version": "12"}).kind is RoomKind.PRIVATE


# --- power levels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, kind",
    [
        ({}, RoomKind.PRIVATE),
        ({"initial_state": [event(ACCESS_RULES, {"rule": "unrestricted"})]}, RoomKind.OPEN),
        ({"is_direct": True}, RoomKind.DIRECT),
    ],
)
def test_the_power_levels_a_closed_room_is_born_with(config, kind):
    plan = plan_creation(config, creator="@a:s")
    levels = plan.power_levels

    assert plan.kind is kind
    assert (levels["invite"], levels["users_default"], levels["state_default"]) == (50, 0, 100)
    assert levels["events"]["m.room.name"] == 50
    assert levels["events"]["m.room.avatar"] == 50
    assert levels["events"]["m.room.canonical_alias"] == 50
    assert levels["events"]["m.room.topic"] == 100
    assert levels["events"][ACCESS_RULES] == 100
    for event_type in CALL_AND_LOCATION:
        assert levels["events"][event_type] == 0
    assert levels["users"] == {}  # the creators of a room version 12 room are not listed
    assert plan.initial_state[0] == {
        "type": "m.room.power_levels",
        "state_key": "",
        "content": levels,
    }


def test_elements_group_call_override_is_kept():
    plan = plan_creation({"power_level_content_override": ELEMENT_GROUP_CALLS}, creator="@a:s")

    assert plan.power_levels["events"]["org.matrix.msc3401.call.member"] == 0
    assert plan.power_levels["events"]["org.matrix.msc3401.call"] == 100
    assert plan.power_levels["invite"] == 50


@given(
    key=st.sampled_from(["invite", "state_default", "ban", "kick", "redact", "events_default"]),
    value=st.integers(min_value=-1000, max_value=1000),
    forum=st.booleans(),
)
def test_an_override_may_raise_a_level_never_lower_it(key, value, forum):
    kind = RoomKind.FORUM if forum else RoomKind.PRIVATE
    config = {"power_level_content_override": {key: value}}
    config |= {"preset": "public_chat"} if forum else {}
    floor = level_floors(kind)[key]

    if value < floor:
        assert refused(config).startswith(LEVELS_FLOOR)
    else:
        assert plan_creation(config).power_levels[key] == value


@given(
    event_type=st.sampled_from(["m.room.name", "m.room.topic", ACCESS_RULES, "com.example.x"]),
    value=st.integers(min_value=-100, max_value=200),
)
def test_an_event_level_may_be_raised_never_lowered(event_type, value):
    config = {"initial_state": [event("m.room.power_levels", {"events": {event_type: value}})]}

    if value < event_floor(event_type):
        assert refused(config).startswith(LEVELS_FLOOR)
    else:
        assert plan_creation(config).power_levels["events"][event_type] == value


@pytest.mark.parametrize(
    "levels",
    [
        {"invite": "0"},
        {"invite": True},
        {"events": {"m.room.name": 50.5}},
        {"users": []},
        {"users": {"nobody": 50}},
        {"users": {"@nobody": 50}},
        [],
    ],
)
def test_power_levels_synapse_would_refuse_halfway_are_refused_first(levels):
    with pytest.raises(RoomRuleError) as refusal:
        plan_creation({"power_level_content_override": levels})
    assert refusal.value.malformed


def test_later_power_levels_never_go_below_the_minimums():
    old = plan_creation({}, creator="@a:s").power_levels

    for lowered in (
        {**old, "invite": 0},
        {**old, "state_default": 50},
        {**old, "events": {**old["events"], "m.room.name": 0}},
        {**old, "events": {**old["events"], "m.room.topic": 50}},
        {**old, "users_default": 100},
    ):
        assert levels_problem(RoomKind.PRIVATE, old, lowered) is not None
    raised = {**old, "invite": 100, "users": {"@b:s": 50}}
    assert levels_problem(RoomKind.PRIVATE, old, raised) is None
    assert levels_problem(RoomKind.FORUM, old, {**old, "invite": 0}) is None


def test_a_room_made_before_the_minimums_may_keep_but_not_lower_its_levels():
    legacy = {"invite": 0, "state_default": 50, "events": {"m.room.name": 50}}

    assert levels_problem(RoomKind.PRIVATE, legacy, {**legacy, "ban": 100}) is None
    assert levels_problem(RoomKind.PRIVATE, legacy, {**legacy, "invite": -1}) is not None


# --- redactions and missing rules ---------------------------------------------------------------


@pytest.mark.parametrize("event_type", RULE_EVENTS)
def test_the_rules_events_are_never_redacted(event_type):
    assert redaction_problem(event_type) == RULES_NOT_REDACTED


@pytest.mark.parametrize("event_type", [None, "m.room.name", "m.room.member", "m.room.topic"])
def test_other_events_may_be_redacted(event_type):
    assert redaction_problem(event_type) is None


def test_a_member_events_name_cannot_be_redacted_away():
    named = {"membership": "join", "displayname": "Jane Doe [example.com] (external)"}
    assert redaction_problem("m.room.member", named) == NAMES_NOT_REDACTED
    assert redaction_problem("m.room.member", {"membership": "leave"}) is None


def test_a_room_without_its_rule_is_a_private_room_that_may_only_open():
    no_rule = state(("m.room.join_rules", "", {"join_rule": "public"}), member("@a:s"))

    assert no_rule.kind is RoomKind.PRIVATE
    assert access_rule_problem(no_rule, {"rule": "direct", "visibility": "private"}) == ONE_WAY
    assert access_rule_problem(no_rule, {"rule": "restricted", "visibility": "public"}) is not None
    assert access_rule_problem(no_rule, {"rule": "unrestricted", "visibility": "private"}) is None
    assert join_rule_problem(no_rule, {"join_rule": "public"}) == INVITE_ONLY


@pytest.mark.parametrize(
    "config, reason",
    [
        (
            {"initial_state": [event("m.call.member", {}, "@b:s")]},
            OTHERS_STATE,
        ),
        ({"initial_state": [event("m.room.server_acl", {"allow": ["*"]})]}, SET_LATER),
        (
            {"initial_state": [event("m.room.canonical_alias", {"alias": "#other:s"})]},
            OWN_ALIAS,
        ),
        (
            {
                "room_alias_name": "mine",
                "initial_state": [
                    event("m.room.canonical_alias", {"alias": "#mine:s", "alt_aliases": ["#x:s"]})
                ],
            },
            OWN_ALIAS,
        ),
    ],
    ids=["another's state", "server acl", "foreign alias", "foreign alt alias"],
)
def test_what_synapse_would_refuse_halfway_is_refused_first(config, reason):
    assert refused(config, creator="@a:s") == reason


def test_the_rooms_own_alias_and_own_state_are_accepted():
    own = [
        event("m.room.canonical_alias", {"alias": "#mine:s"}),
        event("m.call.member", {}, "@a:s"),
    ]

    plan = plan_creation({"room_alias_name": "mine", "initial_state": own}, creator="@a:s")

    assert initial(plan)[("m.room.canonical_alias", "")] == {"alias": "#mine:s"}


@given(
    content=st.recursive(
        st.none() | st.booleans() | st.text(max_size=3) | st.integers() | st.floats(),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=3), children, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_only_canonical_json_contents_are_written(content):
    config = {"initial_state": [event("org.example.x", {"value": content})]}

    def canonical(value) -> bool:
        if isinstance(value, float):
            return False
        if isinstance(value, int) and not isinstance(value, bool):
            return -(2**53) < value < 2**53
        if isinstance(value, list):
            return all(canonical(item) for item in value)
        if isinstance(value, dict):
            return all(canonical(item) for item in value.values())
        return True

    if canonical(content):
        assert initial(plan_creation(config))[("org.example.x", "")] == {"value": content}
    else:
        with pytest.raises(RoomRuleError) as refusal:
            plan_creation(config)
        assert refusal.value.malformed


# --- whatever a hostile client sends ------------------------------------------------------------

HOSTILE_EVENTS = st.sampled_from(
    [
        event("m.room.member", {"membership": "invite"}, "@c:s"),
        event("m.room.member", {"membership": "invite"}, "@d:s"),
        event("m.room.member", {"membership": "join"}, "@c:s"),
        event("m.room.tombstone", {"replacement_room": "!x:s"}),
        event("m.room.create", {}),
        event("m.room.join_rules", {"join_rule": "public"}),
        event("m.room.join_rules", {"join_rule": "invite"}),
        event("m.room.history_visibility", {"history_visibility": "world_readable"}),
        event("m.room.history_visibility", {"history_visibility": "joined"}),
        event("m.room.guest_access", {"guest_access": "can_join"}),
        event("m.room.guest_access", {"guest_access": "forbidden"}),
        event("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"}),
        event("m.room.encryption", {}),
        event(ACCESS_RULES, {"rule": "direct"}),
        event(ACCESS_RULES, {"rule": "unrestricted"}),
        event(ACCESS_RULES, {"rule": "restricted", "visibility": "public"}),
        event("m.room.power_levels", {"invite": 0}),
        event("m.room.power_levels", {"users_default": 100}),
        event("m.room.power_levels", {"events": {"m.room.topic": 0}}),
        event("m.room.power_levels", {"users": {"@b:s": 100}}),
        event("m.room.server_acl", {"allow": ["*"]}),
        event("m.room.topic", {"topic": "t"}),
    ]
)
HOSTILE_CONFIGS = st.fixed_dictionaries(
    {},
    optional={
        "preset": st.sampled_from(PRESETS_ASKED),
        "visibility": st.sampled_from(["public", "private"]),
        "is_direct": st.booleans(),
        "invite": st.lists(st.sampled_from(["@b:s", "@c:s", "@a:s"]), max_size=3),
        "initial_state": st.lists(HOSTILE_EVENTS, max_size=6),
        "power_level_content_override": st.sampled_from(
            [{"invite": 0}, {"invite": 100}, {"state_default": 0}, ELEMENT_GROUP_CALLS]
        ),
        "creation_content": st.sampled_from(
            [{"predecessor": {}}, {"type": "m.space"}, {"additional_creators": ["@b:s"]}]
        ),
    },
)


@given(config=HOSTILE_CONFIGS)
def test_a_plan_either_refuses_or_keeps_every_promise(config):
    try:
        plan = plan_creation(config, creator="@a:s")
    except RoomRuleError:
        return
    written = initial(plan)
    forum = plan.kind is RoomKind.FORUM

    assert plan.initial_state[0]["type"] == "m.room.power_levels"
    assert levels_problem(plan.kind, None, written[("m.room.power_levels", "")]) is None
    assert not {t for t, _ in written} & {
        "m.room.member",
        "m.room.tombstone",
        "m.room.create",
        "m.room.server_acl",
    }
    assert written[("m.room.join_rules", "")] == {"join_rule": "public" if forum else "invite"}
    assert kind_of(
        written[(ACCESS_RULES, "")], written[("m.room.join_rules", "")]["join_rule"]
    ) is (plan.kind)
    assert written[("m.room.guest_access", "")] == {"guest_access": "forbidden"}
    history = written[("m.room.history_visibility", "")]["history_visibility"]
    assert history != "world_readable" or forum
    encryption = written.get(("m.room.encryption", ""))
    assert encryption == (None if forum else {"algorithm": "m.megolm.v1.aes-sha2"})
    assert "@a:s" not in plan.invitees
    if plan.kind is RoomKind.DIRECT:
        assert len(plan.invitees) + len(plan.email_invitees) <= 1
        assert plan.preset == "trusted_private_chat"
    else:
        assert plan.preset != "trusted_private_chat" and not plan.additional_creators


@pytest.mark.parametrize(
    "config",
    [
        {"initial_state": [event("org.example.big", {"text": "x" * 70_000})]},
        {"initial_state": [event("org.example." + "t" * 300, {})]},
        {"initial_state": [event("org.example.k", {}, "k" * 300)]},
        {"topic": "é" * 40_000},
    ],
    ids=["content", "type", "state key", "topic"],
)
def test_events_larger_than_synapse_writes_are_refused_first(config):
    with pytest.raises(RoomRuleError) as refusal:
        plan_creation(config)
    assert refusal.value.message == TOO_LARGE and refusal.value.malformed
