# SPDX-License-Identifier: AGPL-3.0-or-later
"""The fast tier of the display-name rules: the module's callbacks called directly, on a
``Mock(spec=ModuleApi)`` that answers as Synapse would, with real Synapse events.

The real-Synapse tier (tests/test_names.py) shows the same rules over HTTP; here each branch of
the callbacks runs in milliseconds.
"""

from __future__ import annotations

import asyncio
from unittest.mock import AsyncMock, Mock

import pytest
from synapse.api.room_versions import RoomVersions
from synapse.events import make_event_from_dict
from synapse.module_api import ModuleApi, ProfileInfo
from synapse.module_api.errors import SynapseError

from appliance.addresses.identity import NAME_PART_CHARACTERS, NAME_SUFFIX_REQUIRED
from appliance.synapse_module.accounts.display_names import NAME_NOT_TEXT, DisplayNames

AGENT = "@pierre.dupont-ac-paris.fr:test"
GUEST = "@sam-guest.example:test"
ADMIN = "@admin:test"
ADDRESSES = {AGENT: "pierre.dupont@ac-paris.fr", GUEST: "sam@guest.example"}
NAMES = {AGENT: "Pierre Dupont [ac-paris.fr]", GUEST: "Sam [guest.example] (external)"}


class Directory:
    async def is_external(self, user_id: str) -> bool:
        return user_id == GUEST


def fake_api() -> Mock:
    api = Mock(spec=ModuleApi)
    api.is_mine.side_effect = lambda user_id: user_id.endswith(":test")
    api.is_user_admin = AsyncMock(side_effect=lambda user_id: user_id == ADMIN)
    api.get_threepids_for_user = AsyncMock(
        side_effect=lambda user_id: (
            [{"medium": "email", "address": ADDRESSES[user_id]}] if user_id in ADDRESSES else []
        )
    )
    api.get_profile_for_user = AsyncMock(
        side_effect=lambda localpart: ProfileInfo(
            display_name=NAMES.get(f"@{localpart}:test"), avatar_url=None
        )
    )
    api.set_displayname = AsyncMock()
    return api


def member_event(sender: str, target: str, content: dict):
    return make_event_from_dict(
        {
            "type": "m.room.member",
            "state_key": target,
            "sender": sender,
            "room_id": "!room:test",
            "content": content,
            "auth_events": [],
            "prev_events": [],
            "depth": 1,
            "origin_server_ts": 1,
            "hashes": {"sha256": "x"},
            "signatures": {},
        },
        RoomVersions.V10,
    )


def check(sender: str, target: str, content: dict):
    names = DisplayNames(fake_api(), Directory())
    return asyncio.run(names.check_event_allowed(member_event(sender, target, content), {}))


@pytest.mark.parametrize(
    ("sender", "target", "content"),
    [
        (AGENT, AGENT, {"membership": "join"}),  # Synapse adds the current name itself
        (AGENT, AGENT, {"membership": "join", "displayname": NAMES[AGENT]}),
        (AGENT, AGENT, {"membership": "join", "displayname": "Pierre DSI [ac-paris.fr]"}),
        (GUEST, GUEST, {"membership": "join", "displayname": "Samuel [guest.example] (external)"}),
        (ADMIN, AGENT, {"membership": "invite", "displayname": "Anything [elsewhere.fr]"}),
        (AGENT, "@bob:remote.example", {"membership": "invite", "displayname": "Bob [x.fr]"}),
    ],
)
def test_names_the_rule_allows_go_through(sender, target, content):
    assert check(sender, target, content) == (True, None)


@pytest.mark.parametrize(
    ("sender", "target", "content", "message"),
    [
        (
            AGENT,
            AGENT,
            {"membership": "join", "displayname": "Pierre [interieur.gouv.fr]"},
            NAME_SUFFIX_REQUIRED.format(suffix="[ac-paris.fr]"),
        ),
        (
            AGENT,
            GUEST,
            {"membership": "invite", "displayname": "Sam [guest.example]"},
            NAME_SUFFIX_REQUIRED.format(suffix="[guest.example] (external)"),
        ),
        (
            AGENT,
            AGENT,
            {"membership": "leave", "displayname": "Pierre\u200b [ac-paris.fr]"},
            NAME_PART_CHARACTERS,
        ),
        (AGENT, AGENT, {"membership": "join", "displayname": ["Pierre"]}, NAME_NOT_TEXT),
    ],
)
def test_names_that_lie_are_refused_with_the_reason(sender, target, content, message):
    with pytest.raises(SynapseError) as refused:
        check(sender, target, content)

    assert refused.value.msg == message


def test_a_lying_name_set_without_an_admin_is_replaced_by_the_derived_one():
    api = fake_api()
    names = DisplayNames(api, Directory())
    lie = ProfileInfo(display_name="Pierre [interieur.gouv.fr]", avatar_url=None)

    asyncio.run(names.on_profile_update(AGENT, lie, False, False))
    asyncio.run(names.on_profile_update(AGENT, lie, True, False))  # an admin's: kept

    assert [c.args[1] for c in api.set_displayname.await_args_list] == [NAMES[AGENT]]
