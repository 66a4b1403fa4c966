# SPDX-License-Identifier: AGPL-3.0-or-later
"""Invitations into another server's room, stored here: this server as the network's
externals' server (issue 13, point 4).

An agents peer relays the invitation of an address of no domain of the network
(:mod:`appliance.synapse_module.federation.externals_relay`): its agent, whose OpenID token this
server checked with the peer at ``account/register`` (:mod:`.identity_server`), calls
``store-invite`` for a room of the peer.  The invitation is then kept, limited, mailed with this
server's registration link, and lets its address register here, as for a room of this server
(:mod:`.invitations`); what differs:

* who may: an agent of an ``agents`` peer only (its role checked here).  That peer's module has
  judged the room (its kind, the inviter's membership and power) before it relayed; this server
  is not in the room and cannot;
* where: only on a server whose network has no other externals' server (a server that lists an
  ``externals`` peer sends its own unknown addresses there, and stores none for others);
* which address: not one of a domain an agents peer holds (that person registers on the peer);
  an address that has an account here already is answered with it (``M_THREEPID_IN_USE`` and
  ``mxid``, as an identity server answers), so that the peer invites that account;
* completion: once the address is bound here, the inviting server is told
  (:mod:`appliance.synapse_module.federation.onbind`), and its Synapse sends the invite.
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from appliance.addresses.email_address import EmailAddress
from appliance.synapse_module.externals.invitation_mail import quoted_text
from appliance.synapse_module.externals.invitations import (
    CONTESTED_DOMAIN,
    Invitations,
    new_token,
)
from appliance.synapse_module.externals.store import Invitation
from appliance.synapse_module.federation.peers import Network, server_of

logger = logging.getLogger(__name__)

ONLY_AGENTS_OF_PEERS = (
    "This server stores invitations into other servers' rooms only for agents of the "
    "agents' servers of its network"
)
NOT_THE_EXTERNALS_SERVER = (
    "This server is not its network's externals' server: invitations of unknown addresses are "
    "stored on {server}"
)
ADDRESS_OF_A_PEER = (
    "{address} belongs to {server}, which holds the accounts of its domain: invite it there"
)


class RelayedInvitations:
    def __init__(self, api: ModuleApi, invitations: Invitations, network: Network) -> None:
        self._api = api
        self._invitations = invitations
        self._network = network

    def check_sender(self, sender: str) -> None:
        """403 unless sender is an agent of an agents peer (and this server the network's
        externals' server)."""
        if (externals := self._network.externals_server) is not None:
            message = NOT_THE_EXTERNALS_SERVER.format(server=externals.server_name)
            raise SynapseError(403, message, Codes.FORBIDDEN)
        server = server_of(sender)
        if server is None or self._network.role_of(server) != "agents":
            logger.info("refused a relayed invitation from %s: not an agents peer's", sender)
            raise SynapseError(403, ONLY_AGENTS_OF_PEERS, Codes.FORBIDDEN)

    async def store(self, sender: str, email: EmailAddress, room_id: str, body: dict) -> Invitation:
        """Store and mail the invitation of a peer's agent into the peer's room.

        Args:
            body: the store-invite request (``room_name``, ``sender_display_name`` for the mail).

        Raises:
            SynapseError: 403 ``M_FORBIDDEN`` (not an agents peer's agent, a peer's address),
                429 past a limit, 502 if the mail cannot be sent (nothing kept).
        """
        self.check_sender(sender)
        owner = self._invitations.owner_of(email)
        if owner is not None:
            raise SynapseError(
                403,
                ADDRESS_OF_A_PEER.format(address=email.address, server=owner.server_name),
                Codes.FORBIDDEN,
            )
        if claimants := self._invitations.contested(email):
            raise SynapseError(
                403,
                CONTESTED_DOMAIN.format(domain=email.domain, servers=", ".join(claimants)),
                Codes.FORBIDDEN,
            )
        names = (
            _text(body.get("room_name")) or room_id,
            _text(body.get("sender_display_name")) or sender,
        )
        invitation = await self._invitations.create(
            sender, email, room_id, new_token(), names=names
        )
        logger.info("stored %s's invitation into %s (a room of its server)", sender, room_id)
        return invitation


def _text(value: object) -> str:
    # The mail quotes it again (invitation_mail.quoted_text): here only its type is checked.
    return quoted_text(value) if isinstance(value, str) else ""
