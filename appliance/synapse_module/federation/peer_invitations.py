# SPDX-License-Identifier: AGPL-3.0-or-later
"""Invitations by email of peers' addresses, completed once the account exists on the peer.

An address of a peer's domain without an account is mailed the server to register on
(:mod:`appliance.synapse_module.externals.invitations`); that server does not know of this
room.  So every ``domains_refresh_seconds`` the process that runs background tasks asks the
owner of each pending invitation's address (:mod:`.peer_accounts`) and, once the account
exists, invites it into the room over federation, in the inviter's name: the person finds the
invitation on their own server.
"""

from __future__ import annotations

from synapse.module_api import ModuleApi

from appliance.synapse_module.externals.invitations import Invitations
from appliance.synapse_module.federation.peers import Network


class PeerInvitations:
    def __init__(
        self, api: ModuleApi, invitations: Invitations, network: Network, refresh_seconds: int
    ) -> None:
        self._api = api
        self._invitations = invitations
        self._network = network
        self._refresh_seconds = refresh_seconds

    def register(self) -> None:
        # Every agents peer: one whose domains only the settings pin publishes nothing.
        if not self._network.agents_peers:
            return
        # One process asks (the one that runs background tasks): two would invite twice.
        self._api.looping_background_call(
            self._invitations.complete_on_peers,
            self._refresh_seconds * 1000,
            desc="appliance_peer_invitations",
        )
