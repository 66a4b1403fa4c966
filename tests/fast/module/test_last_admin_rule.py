# SPDX-License-Identifier: AGPL-3.0-or-later
"""The last-administrator rule (rooms/last_admin.py) on real Synapse events of real room
versions, without a server: who is raised, and what the callback sends in whose name.

The real-Synapse tests (tests/test_last_admin.py) prove the whole path; these cover the
cases one by one, and a property over random rooms: whoever is raised is a joined agent who
stays, and after a last administrator's leave some agent is administrator whenever one stays.
"""

from __future__ import annotations

from unittest.mock import AsyncMock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.synapse_module.rooms.kinds import MEMBER, POWER_LEVELS, RoomState
from appliance.synapse_module.rooms.last_admin import LastAdmin, joined_members, successors

SERVER = "appliance.test"  # the fast tier's module API serves this server name
ADMIN, MOD1, MOD2, AGENT, EXTERNAL = (
    f"@{name}:{SERVER}" for name in ("admin", "mod1", "mod2", "agent", "external")
)


def room_with(make, levels: dict[str, int], version: str = "10", users_default: int = 0):
    """A room made by the ``room`` fixture: ADMIN created it, everyone has joined."""
    room = make(version=version, creator=ADMIN)
    for user in [ADMIN, *levels]:
        room.add(MEMBER, user, {"membership": "join"}, sender=user)
    users = dict(levels) if version == "12" else {ADMIN: 100, **levels}
    room.add(POWER_LEVELS, "", {"users": users, "users_default": users_default})
    return room


def remaining(room, leaver: str = ADMIN) -> tuple[RoomState, list[str]]:
    state = RoomState(room.state)
    return state, [u for u in joined_members(state, room.state) if u != leaver]


@pytest.mark.parametrize("version", ["10", "12"])
def test_the_moderators_are_raised_when_there_are_some(room, version):
    state, stay = remaining(room_with(room, {MOD1: 50, MOD2: 50, AGENT: 0}, version))
    assert successors(state, stay, externals=set()) == sorted([MOD1, MOD2])


def test_the_highest_level_above_the_default_wins(room):
    state, stay = remaining(room_with(room, {MOD1: 50, MOD2: 20, AGENT: 0}))
    assert successors(state, stay, externals=set()) == [MOD1]


def test_without_moderators_every_agent_is_raised_never_an_external(room):
    state, stay = remaining(room_with(room, {AGENT: 0, EXTERNAL: 0, MOD1: 0}))
    assert successors(state, stay, externals={EXTERNAL}) == sorted([AGENT, MOD1])


def test_a_default_level_as_high_as_anyones_means_no_moderators(room):
    state, stay = remaining(room_with(room, {AGENT: 10, MOD1: 10}, users_default=10))
    assert successors(state, stay, externals=set()) == sorted([AGENT, MOD1])


def test_nobody_is_raised_while_an_administrator_stays(room):
    state, stay = remaining(room_with(room, {MOD1: 100, AGENT: 50}))
    assert successors(state, stay, externals=set()) == []


def test_an_external_alone_is_not_raised(room):
    state, stay = remaining(room_with(room, {EXTERNAL: 0}))
    assert successors(state, stay, externals={EXTERNAL}) == []


def leave(room, user: str, *, sender: str | None = None):
    return room.event(MEMBER, user, {"membership": "leave"}, sender=sender or user)


@pytest.fixture
def rule(api, directory) -> tuple[LastAdmin, AsyncMock]:
    api.create_and_send_event_into_room = AsyncMock()
    return LastAdmin(api, directory), api.create_and_send_event_into_room


def test_the_last_admins_leave_sends_the_new_levels_in_their_name_and_is_allowed(rule, room, run):
    last_admin, send = rule
    built = room_with(room, {MOD1: 50, AGENT: 0})

    assert run(last_admin.check_event_allowed(leave(built, ADMIN), built.state)) == (True, None)

    (sent,) = send.await_args.args
    assert sent["sender"] == ADMIN and sent["type"] == POWER_LEVELS and sent["state_key"] == ""
    assert sent["content"]["users"] == {ADMIN: 100, MOD1: 100, AGENT: 0}
    assert sent["content"]["users_default"] == 0


@pytest.mark.parametrize(
    "who, sender",
    [
        (MOD1, MOD1),  # not an administrator
        (MOD1, ADMIN),  # a kick: whoever kicks keeps their power
        ("@admin:elsewhere.example", "@admin:elsewhere.example"),  # another server's user
    ],
)
def test_other_leaves_send_nothing(rule, room, run, who, sender):
    last_admin, send = rule
    built = room_with(room, {MOD1: 50})
    event = leave(built, who, sender=sender)
    assert run(last_admin.check_event_allowed(event, built.state)) == (True, None)
    send.assert_not_awaited()


def test_a_failed_promotion_never_blocks_the_leave(rule, room, run):
    last_admin, send = rule
    send.side_effect = RuntimeError("refused")
    built = room_with(room, {MOD1: 50})
    assert run(last_admin.check_event_allowed(leave(built, ADMIN), built.state)) == (True, None)
    send.assert_awaited_once()


_people = st.dictionaries(
    st.sampled_from([f"@p{i}:{SERVER}" for i in range(6)]),
    st.tuples(st.sampled_from([0, 10, 50, 99, 100]), st.booleans()),  # (level, external)
    max_size=6,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=_people, default=st.sampled_from([0, 10, 50]))
def test_whoever_is_raised_is_an_agent_who_stays_and_an_agent_always_ends_admin(
    room, people, default
):
    levels = {user: level for user, (level, _) in people.items()}
    externals = {user for user, (_, external) in people.items() if external}
    state, stay = remaining(room_with(room, levels, users_default=default))

    raised = successors(state, stay, externals)

    assert set(raised) <= set(stay) - externals
    agents_stay = set(stay) - externals
    admin_stays = any(state.power_of(u) >= 100 for u in stay)
    if agents_stay and not admin_stays:
        assert raised
    if admin_stays:
        assert raised == []
