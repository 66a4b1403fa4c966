# SPDX-License-Identifier: AGPL-3.0-or-later
"""The lifetime each kind of room is created with (settings: retention.rooms): the module's
config, and the m.room.retention the creation plan writes."""

from __future__ import annotations

import pytest
from synapse.module_api.errors import ConfigError

from appliance.synapse_module.config import DAY_MS, parse_module_config
from appliance.synapse_module.rooms.kinds import RETENTION, RoomKind, plan_creation


def retention_of(plan) -> dict | None:
    found = [e["content"] for e in plan.initial_state if e["type"] == RETENTION]
    return found[0] if found else None


def test_a_kind_with_a_lifetime_is_created_with_it_and_others_without():
    lifetimes = {RoomKind.FORUM: 30 * DAY_MS}
    forum = plan_creation({"preset": "public_chat"}, creator="@a:x", lifetimes_ms=lifetimes)
    private = plan_creation({"preset": "private_chat"}, creator="@a:x", lifetimes_ms=lifetimes)
    assert retention_of(forum) == {"max_lifetime": 30 * DAY_MS}
    assert retention_of(private) is None


def test_the_config_gives_milliseconds_per_kind():
    config = parse_module_config({"room_lifetimes_days": {"forum": 30, "direct": 7}})
    assert dict(config.room_lifetimes_ms) == {"forum": 30 * DAY_MS, "direct": 7 * DAY_MS}


@pytest.mark.parametrize(
    "lifetimes, path",
    [
        ({"salon": 3}, ("room_lifetimes_days", "salon")),
        ({"forum": 0}, ("room_lifetimes_days", "forum")),
    ],
)
def test_a_bad_lifetime_is_refused_with_its_key(lifetimes, path):
    with pytest.raises(ConfigError) as error:
        parse_module_config({"room_lifetimes_days": lifetimes})
    assert tuple(error.value.path) == path
