# SPDX-License-Identifier: AGPL-3.0-or-later
"""Federation's rules on Synapse's spam-checker callbacks (who each remote user is:
:mod:`.peers`).

* ``federated_user_may_invite``: an invitation from another server reaches a local user only
  from a peer; an invitation sent by an external of an externals peer, or one inviting a
  local external, only into a room open to externals (or a direct chat), read from the
  stripped state the inviting server sends (appliances add the access rule to it).
* ``user_may_invite``: a local user invites users of peers only.
* ``user_may_join_room``: a local user joins rooms of this server or of peers only, and a
  local external joins a room of another server only when invited.

The room rules (:mod:`appliance.synapse_module.rooms.rules`) judge remote users too: the
externals directory answers "external" for users of an externals peer, and members of other
servers are never given power here.  Synapse keeps some federation paths from a module (events
arriving over ``/send``, the final ``send_join``): the federation allowlist and those power
levels close them (README, "A network of appliances").

Every refusal is ``(M_FORBIDDEN, {"error": message})``.  Server administrators are not
exempt here: the federation's limits are the operator's, not a room's.
"""

from __future__ import annotations

import logging
from typing import Literal

from synapse.module_api import NOT_SPAM, EventBase, ModuleApi
from synapse.module_api.errors import Codes

from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.federation.peers import (
    EXTERNAL_INVITED_INTO_PRIVATE,
    INVITE_INTO_PRIVATE,
    NOT_A_PEER_ROOM,
    NOT_A_PEER_USER,
    REMOTE_ROOM_BY_INVITATION,
    Network,
    Standing,
    server_of,
)
from appliance.synapse_module.rooms.kinds import (
    ACCESS_RULES,
    CREATE,
    JOIN_RULES,
    RoomKind,
    kind_of,
)

logger = logging.getLogger(__name__)

# The kinds of rooms an external may be in (as the room rules say for local rooms).
EXTERNALS_ADMITTED = (RoomKind.OPEN, RoomKind.DIRECT)
Verdict = Literal["NOT_SPAM"] | tuple[Codes, dict]


def _refused(message: str) -> tuple[Codes, dict]:
    return Codes.FORBIDDEN, {"error": message}


def stripped_kind(event: EventBase) -> RoomKind:
    """The kind of the room an invitation is into, from the stripped state in the invite.

    A room whose state says nothing (a server that is not an appliance) is a private room.
    """
    state = {
        (entry.get("type"), entry.get("state_key")): entry.get("content") or {}
        for entry in event.unsigned.get("invite_room_state", [])
        if isinstance(entry, dict)
    }
    join_rule = state.get((JOIN_RULES, ""), {}).get("join_rule")
    return kind_of(state.get((ACCESS_RULES, "")), join_rule)


class FederationRules:
    def __init__(self, api: ModuleApi, network: Network, directory: ExternalDirectory) -> None:
        self._api = api
        self._network = network
        self._directory = directory

    def register(self) -> None:
        self._api.register_spam_checker_callbacks(
            federated_user_may_invite=self.federated_user_may_invite,
            user_may_invite=self.user_may_invite,
            user_may_join_room=self.user_may_join_room,
        )

    async def federated_user_may_invite(self, event: EventBase) -> Verdict:
        """Synapse's ``federated_user_may_invite`` (spam checker callback), for an invite
        event another server sends to a local user.

        Returns:
            ``NOT_SPAM``, or ``(M_FORBIDDEN, {"error": message})``.
        """
        standing = self._network.standing(event.sender)
        problem = None
        if standing is Standing.REFUSED:
            problem = NOT_A_PEER_USER
        elif stripped_kind(event) not in EXTERNALS_ADMITTED:
            if standing is Standing.EXTERNAL:
                problem = INVITE_INTO_PRIVATE
            elif await self._directory.is_external(event.state_key):
                problem = EXTERNAL_INVITED_INTO_PRIVATE
        if problem is None:
            return NOT_SPAM
        logger.info("refused an invite from %s to %s: %s", event.sender, event.state_key, problem)
        return _refused(problem)

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Verdict:
        """Synapse's ``user_may_invite`` (spam checker callback), for a local inviter.

        Returns:
            ``NOT_SPAM``, or ``(M_FORBIDDEN, {"error": NOT_A_PEER_USER})`` for a user of a
            server that is not a peer (the room rules judge everyone else).
        """
        if self._network.standing(invitee) is Standing.REFUSED:
            logger.info("refused an invite of %s by %s: not a peer", invitee, inviter)
            return _refused(NOT_A_PEER_USER)
        return NOT_SPAM

    async def user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> Verdict:
        """Synapse's ``user_may_join_room`` (spam checker callback), for a local user.

        Returns:
            ``NOT_SPAM``, or ``(M_FORBIDDEN, {"error": message})`` for a room of a server
            that is not a peer, or a local external joining another server's room uninvited.
        """
        problem = None
        if not self._network.accepts_server(server_of(room_id)):
            # Version 12 room IDs name no server: the allowlist then stops the join itself.
            problem = NOT_A_PEER_ROOM
        elif not is_invited and await self._directory.is_external(user_id):
            if not await self._api.get_room_state(room_id, [(CREATE, "")]):
                problem = REMOTE_ROOM_BY_INVITATION  # this server is not in the room
        if problem is None:
            return NOT_SPAM
        logger.info("refused a join of %s to %s: %s", user_id, room_id, problem)
        return _refused(problem)
