# SPDX-License-Identifier: AGPL-3.0-or-later
"""An invitation into another server's room, completed the Matrix way: ``3pid/onbind``.

On the network's externals' server, an invitation relayed by an agents peer
(:mod:`appliance.synapse_module.externals.relayed_invitations`) is for a room of that peer,
whose ``m.room.third_party_invite`` carries this server's identity key and the invitation's
token.  Once the invited address is bound to its new account here, this server does what an
identity server does when an address is bound (Sydent's ``onbind``): it signs ``{mxid, token,
sender}`` with its identity key and posts it to ``/_matrix/federation/v1/3pid/onbind`` on the
inviter's server.  That server's Synapse checks the signature against the key of the room's
third-party invite (and the key's validity with this server), then sends the invite of the new
account, in the inviter's name, over federation: the person finds it on their own server.

It runs inside ``/register`` (when the address is bound), so it is bounded
(:data:`ONBIND_SECONDS`); a failure is the invitation's outcome, shown on the console.
"""

from __future__ import annotations

import logging

from appliance.synapse_module.externals.identity_key import IdentityKey
from appliance.synapse_module.externals.invitations import INVITED_BY_ROOM_SERVER
from appliance.synapse_module.externals.store import Invitation
from appliance.synapse_module.federation.peers import server_of
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

ONBIND_SECONDS = 15
NOT_TOLD = "failed: {server} could not be told of the account ({reason})"


class OnBind:
    def __init__(self, key: IdentityKey, internals: SynapseInternals) -> None:
        self._key = key
        self._internals = internals

    def body(self, invitation: Invitation, user_id: str) -> dict:
        """The ``3pid/onbind`` request of the specification, for one invitation."""
        signed = self._key.sign(
            {"mxid": user_id, "token": invitation.token, "sender": invitation.inviter}
        )
        return {
            "medium": "email",
            "address": invitation.address,
            "mxid": user_id,
            "invites": [
                {
                    "medium": "email",
                    "address": invitation.address,
                    "mxid": user_id,
                    "room_id": invitation.room_id,
                    "sender": invitation.inviter,
                    "signed": signed,
                }
            ],
        }

    async def exchange(self, invitation: Invitation, user_id: str) -> str:
        """Tell the inviter's server that the address now has this account; the outcome."""
        server = server_of(invitation.inviter)
        if server is None:
            return NOT_TOLD.format(server=invitation.inviter, reason="no server")
        try:
            await self._internals.post_onbind(
                server, self.body(invitation, user_id), ONBIND_SECONDS * 1000
            )
        except Exception as error:  # the console shows it; /register must succeed anyway
            logger.warning("3pid/onbind on %s for %s failed: %r", server, invitation.room_id, error)
            return NOT_TOLD.format(server=server, reason=type(error).__name__)
        logger.info(
            "told %s that an invitation into %s has its account", server, invitation.room_id
        )
        return INVITED_BY_ROOM_SERVER
