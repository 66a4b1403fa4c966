# SPDX-License-Identifier: AGPL-3.0-or-later
"""A room never loses its last administrator (as Tchap's manage-last-admin).

When a local member with power 100 (or a room version 12 creator, whose power is unlimited)
leaves a room where no other *joined* member has that power, the module raises, in the same
moment, the remaining members to 100: the moderators (the remaining agents with the highest
level above the room's default), else every remaining agent.  Externals are never raised
(they keep power 0, as the room rules require).  In a direct chat both people are
administrators from the start (``trusted_private_chat``), so the one who stays already is; an
external left alone in a direct chat stays at 0.

Why ``check_event_allowed`` and not ``on_new_event``: once the leave is in the room, nobody
left has the power to change the power levels (that is the whole problem), and the one who left
can no longer send anything.  So, as Tchap's module does, the new power levels are sent *in the
leaving member's name* while Synapse checks their leave, when they still hold the power; the
leave follows.  The callback never refuses the leave.  Only leaves of this server's own users
are acted on: a leave arriving over federation is its own server's business.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from synapse.module_api import EventBase, ModuleApi

from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.rooms.kinds import MEMBER, POWER_LEVELS, RoomState

logger = logging.getLogger(__name__)

ADMIN_LEVEL = 100


def joined_members(state: RoomState, events: Iterable[tuple[str, str]]) -> list[str]:
    return [
        key
        for (event_type, key) in events
        if event_type == MEMBER and state.membership(key) == "join"
    ]


def successors(state: RoomState, remaining: list[str], externals: set[str]) -> list[str]:
    """Who becomes administrator when the last one leaves ``remaining`` behind (joined
    members, the leaver excluded): nobody if an administrator remains; else the agents with
    the highest level above the room's default (the moderators); else every agent."""
    if any(state.power_of(user) >= ADMIN_LEVEL for user in remaining):
        return []
    agents = [user for user in remaining if user not in externals]
    if not agents:
        return []
    levels = state.content(POWER_LEVELS) or {}
    default = levels.get("users_default", 0)
    highest = max(state.power_of(user) for user in agents)
    if isinstance(default, int) and highest > default:
        return sorted(user for user in agents if state.power_of(user) == highest)
    return sorted(agents)


class LastAdmin:
    def __init__(self, api: ModuleApi, directory: ExternalDirectory) -> None:
        self._api = api
        self._directory = directory

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(check_event_allowed=self.check_event_allowed)

    async def check_event_allowed(
        self, event: EventBase, state_events: Mapping[tuple[str, str], EventBase]
    ) -> tuple[bool, dict | None]:
        """Synapse's ``check_event_allowed`` (third-party rules callback).

        Args:
            event: the event about to be sent; only a local member's own leave matters.
            state_events: the room's state before it, ``(type, state_key)`` to events.

        Returns:
            ``(True, None)``, always: a leave is never refused.  Before returning, for the
            last administrator's leave, sends the power levels that raise their successors.
        """
        if not self._is_own_leave(event):
            return True, None
        state = RoomState(state_events)
        leaver = event.state_key
        if state.membership(leaver) != "join" or state.power_of(leaver) < ADMIN_LEVEL:
            return True, None
        # Local members only: another server's users never hold power here (rooms/rules.py).
        remaining = [
            user
            for user in joined_members(state, state_events)
            if user != leaver and self._api.is_mine(user)
        ]
        externals = await self._directory.externals_among(remaining)
        promoted = successors(state, remaining, set(externals))
        levels = state.content(POWER_LEVELS)
        if promoted and levels is not None:
            await self._promote(event.room_id, leaver, levels, promoted)
        return True, None

    def _is_own_leave(self, event: EventBase) -> bool:
        return (
            event.type == MEMBER
            and event.is_state()
            and event.content.get("membership") == "leave"
            and event.sender == event.state_key
            and self._api.is_mine(event.sender)
        )

    async def _promote(self, room_id: str, leaver: str, levels: dict, promoted: list[str]) -> None:
        content = _thawed(levels)
        content["users"] = {**content.get("users", {}), **dict.fromkeys(promoted, ADMIN_LEVEL)}
        logger.info("last administrator %s leaves %s: raising %s to 100", leaver, room_id, promoted)
        try:
            await self._api.create_and_send_event_into_room(
                {
                    "room_id": room_id,
                    "sender": leaver,
                    "type": POWER_LEVELS,
                    "state_key": "",
                    "content": content,
                }
            )
        except Exception:
            # The leave must still happen; the room then needs a server administrator
            # (Synapse's make_room_admin).
            logger.exception("could not raise the successors of %s in %s", leaver, room_id)


def _thawed(value: Any) -> Any:
    """A plain, mutable copy of an event's (frozen) content."""
    if isinstance(value, Mapping):
        return {key: _thawed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thawed(item) for item in value]
    return value
