# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forums of other servers (``/publicRooms?server=...``, Element's "Show: rooms" server
selector): an agent lists and searches a peer's forums; a server that is not a peer, and any
request of an external, are refused here before Synapse asks the other server (through
:mod:`appliance.synapse_module.synapse_internals`, reach 13).

Externals cannot join forums, here or on a peer (the room rules and the federation rules), so
they do not browse them either.  Joining a listed forum (by its ID or its address) is judged by
the federation rules like any join.
"""

from __future__ import annotations

import logging

from synapse.module_api.errors import Codes, SynapseError

from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.federation.peers import Network
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

NOT_A_PEER_DIRECTORY = (
    "This server federates only with its peers: directories of other servers are refused"
)
EXTERNALS_NO_REMOTE_FORUMS = "Externals cannot browse the forums of other servers"


class RemoteRoomLists:
    def __init__(
        self, network: Network, directory: ExternalDirectory, internals: SynapseInternals
    ) -> None:
        self._network = network
        self._directory = directory
        self._internals = internals

    def register(self) -> None:
        self._internals.check_remote_room_lists_with(self.check)

    async def check(self, requester: str | None, server_name: str) -> None:
        """Raise 403 ``M_FORBIDDEN`` unless an agent asks for a peer's forums (an
        unauthenticated request never reaches here: Synapse asks for a token first)."""
        problem = None
        if not self._network.accepts_server(server_name):
            problem = NOT_A_PEER_DIRECTORY
        elif requester is None or await self._directory.is_external(requester):
            problem = EXTERNALS_NO_REMOTE_FORUMS
        if problem is not None:
            logger.info("refused %s the forums of %s: %s", requester, server_name, problem)
            raise SynapseError(403, problem, Codes.FORBIDDEN)
