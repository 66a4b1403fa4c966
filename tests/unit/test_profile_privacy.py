# SPDX-License-Identifier: AGPL-3.0-or-later
"""The fast tier of who may read whose profile: the module's check called directly, with the
rooms each user is in as Synapse would give them (tests/test_profiles.py does it over HTTP)."""

from __future__ import annotations

import asyncio
from unittest.mock import Mock

import pytest
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from appliance.synapse_module.accounts.profile_privacy import PROFILE_NOT_SHARED, ProfilePrivacy

GUEST, MATE, STRANGER, AGENT = "@guest:test", "@mate:test", "@stranger:test", "@agent:test"
ROOMS = {GUEST: {"!shared"}, MATE: {"!shared", "!other"}, STRANGER: {"!other"}, AGENT: set()}


class Directory:
    async def is_external(self, user_id: str) -> bool:
        return user_id == GUEST


class Internals:
    async def rooms_of(self, user_id: str) -> frozenset[str]:
        return frozenset(ROOMS.get(user_id, ()))


def query(requester: str, target: str) -> None:
    privacy = ProfilePrivacy(Mock(spec=ModuleApi), Directory(), Internals())
    asyncio.run(privacy.check_profile_query(requester, target))


@pytest.mark.parametrize(
    ("requester", "target"),
    [(GUEST, GUEST), (GUEST, MATE), (AGENT, STRANGER), (AGENT, "@nobody:test"), (AGENT, GUEST)],
)
def test_allowed_lookups(requester, target):
    query(requester, target)


@pytest.mark.parametrize("target", [STRANGER, "@nobody:test", "@someone:remote.example"])
def test_an_external_gets_one_refusal_for_strangers_and_nobody(target):
    with pytest.raises(SynapseError) as refused:
        query(GUEST, target)

    assert (refused.value.code, refused.value.errcode, refused.value.msg) == (
        403,
        "M_FORBIDDEN",
        PROFILE_NOT_SHARED,
    )
