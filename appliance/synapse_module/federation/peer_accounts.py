# SPDX-License-Identifier: AGPL-3.0-or-later
"""Which account of the network holds an email address: asked of the server that owns its
domain, over federation.

An address of a peer's domain (:meth:`.peers.Network.owner_of`) has its account on that peer,
never here.  To invite it by email, this server asks the owner with a federation query of the
module's own, ``GET /_matrix/federation/v1/query/fr.appliance.account_of_email?address=...``
(through :mod:`appliance.synapse_module.synapse_internals`, reach 11): signed by the asking
server, it passes Synapse's federation allowlist, and the owner answers only an agents peer
(never the externals' server), and only for an address of its own allowlist,
``{"user_id": "@...:owner"}`` or ``{"user_id": null}``.

Failing closed: a peer that cannot be reached, or that names an account of another server, is
an error (502 ``M_UNKNOWN``, saying which server), never "no account": no invitation mail tells
a person to create an account that may already exist.
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from appliance.addresses.email_address import InvalidEmailAddress, parse_email
from appliance.synapse_module.accounts.registration import AllowlistSource, decide
from appliance.synapse_module.federation.peers import Network, Peer, server_of
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

QUERY_TYPE = "fr.appliance.account_of_email"
PEER_UNREACHABLE = (
    "{server} holds the accounts of this address's domain and cannot be asked right now: "
    "try again later"
)
NOT_A_PEER_QUERY = (
    "This server answers the accounts of its addresses only to the agents' servers of its network"
)


class PeerAccounts:
    def __init__(
        self,
        api: ModuleApi,
        network: Network,
        allowlist: AllowlistSource,
        internals: SynapseInternals,
    ) -> None:
        self._api = api
        self._network = network
        self._allowlist = allowlist
        self._internals = internals

    def register(self) -> None:
        """Answer the query on every process (the federation reader receives it)."""
        self._internals.serve_federation_query(QUERY_TYPE, self.on_query)

    async def on_query(self, args: dict) -> dict:
        """The federation query handler: ``args`` holds ``address`` and Synapse's
        authenticated ``origin``.

        Returns:
            ``{"user_id": ...}``: the local account bound to the address, or None (also for an
            address of a domain this server does not hold: not its to answer).

        Raises:
            SynapseError: 403 ``M_FORBIDDEN`` to a server that is not a peer (in ``open``
                mode Synapse lets every server ask).
        """
        origin = args.get("origin")
        # Only an agents peer invites by email: the externals' server has no reason to learn
        # which addresses hold accounts here (it would map the agents of the network).
        if not isinstance(origin, str) or self._network.role_of(origin) != "agents":
            logger.info("refused an account query from %s: not an agents peer", origin)
            raise SynapseError(403, NOT_A_PEER_QUERY, Codes.FORBIDDEN)
        try:
            email = parse_email(str(args.get("address", "")))
        except InvalidEmailAddress:
            return {"user_id": None}
        if not decide(email.address, self._allowlist()).allowed:
            return {"user_id": None}
        return {"user_id": await self._internals.user_of_email(email.address)}

    async def account_at(self, peer: Peer, address: str) -> str | None:
        """The account the peer holds for this (canonical) address, or None.

        Raises:
            SynapseError: 502 ``M_UNKNOWN`` when the peer cannot tell (fail closed).
        """
        try:
            answer = await self._internals.federation_query(
                peer.server_name, QUERY_TYPE, {"address": address}
            )
        except Exception as error:  # unreachable, backing off, refused, not an appliance
            logger.warning("cannot ask %s for an account: %s", peer.server_name, error)
            raise SynapseError(
                502, PEER_UNREACHABLE.format(server=peer.server_name), Codes.UNKNOWN
            ) from None
        user_id = answer.get("user_id") if isinstance(answer, dict) else "not an answer"
        if user_id is None:
            return None
        if not isinstance(user_id, str) or server_of(user_id) != peer.server_name:
            logger.warning("%s answered an account query with %r", peer.server_name, user_id)
            raise SynapseError(502, PEER_UNREACHABLE.format(server=peer.server_name), Codes.UNKNOWN)
        return user_id
