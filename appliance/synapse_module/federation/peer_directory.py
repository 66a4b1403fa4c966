# SPDX-License-Identifier: AGPL-3.0-or-later
"""The agents' directory across the network: an agent finds an agent of a peer by name or
address, from ``/user_directory/search`` as any client searches.

Synapse searches only the users it knows.  So an agent's search also asks each agents peer,
with a federation query of the module's own (``fr.appliance.directory_search``, through
:mod:`appliance.synapse_module.synapse_internals`, reaches 11 and 12), and the peers' results
come after this server's, up to the client's limit.  A peer answers only an agents peer (not
the externals' server, whose users are externals there), with its own agents only (never its
externals, never users of other servers), from Synapse's own ranked search; IDs hold the
address (``marie.curie-ac-lyon.fr``), so an address finds its person.

Externals ask no peer: they find only the people they share a room with (the directory filter,
:mod:`appliance.synapse_module.directory.user_search`).

The peers are asked in parallel, so a search waits at most :data:`PEER_SEARCH_SECONDS` for
them all; each user's searches may cause at most :data:`USER_SEARCHES_PER_MINUTE` peer queries
(:mod:`.peer_query_limit`), past which a search answers from this server alone.

Failing closed: a peer that cannot answer within :data:`PEER_SEARCH_SECONDS`, or that answers
something that is not its own users, adds nothing (the search still answers, from this server
and the other peers); what each peer says is checked, field by field.
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi, make_deferred_yieldable, run_in_background
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet import defer, reactor

from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.federation.peer_query_limit import PeerQueryLimit, ReactorClock
from appliance.synapse_module.federation.peers import Network, Peer, server_of
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

QUERY_TYPE = "fr.appliance.directory_search"
MAX_RESULTS = 20  # per peer and search
MAX_TERM = 100
# A peer's display names are cut to this length (Synapse's own limit on a display name).
MAX_DISPLAY_NAME = 256
# A peer slower than this adds nothing to the search (the client is waiting).
PEER_SEARCH_SECONDS = 5.0
# Peer queries one user's searches may cause in a minute (a search asks every agents peer;
# clients search as the user types).  Past it, a search answers from this server alone.
USER_SEARCHES_PER_MINUTE = 120
NOT_AN_AGENTS_PEER = "This server's directory answers only the agents' servers of its network"


class PeerDirectory:
    def __init__(
        self,
        api: ModuleApi,
        network: Network,
        directory: ExternalDirectory,
        internals: SynapseInternals,
        *,
        clock: ReactorClock = reactor,
    ) -> None:
        self._api = api
        self._network = network
        self._directory = directory
        self._internals = internals
        self._clock = clock
        self._limit = PeerQueryLimit(USER_SEARCHES_PER_MINUTE, 60.0, clock)

    def register(self) -> None:
        self._internals.serve_federation_query(QUERY_TYPE, self.on_query)
        if self._network.agents_peers:
            self._internals.extend_user_search_with(self.peer_results)

    # --- a peer asks -----------------------------------------------------------------------

    async def on_query(self, args: dict) -> dict:
        """The federation query handler: ``args`` holds ``term``, ``limit`` and Synapse's
        authenticated ``origin``.

        Returns:
            ``{"results": [{"user_id", "display_name", "avatar_url"}]}``: this server's agents
            that match, best first.

        Raises:
            SynapseError: 403 ``M_FORBIDDEN`` to a server that is not an agents peer; 400
                ``M_INVALID_PARAM`` for a term that is missing or too long.
        """
        origin = args.get("origin")
        if not isinstance(origin, str) or self._network.role_of(origin) != "agents":
            logger.info("refused a directory search from %s: not an agents peer", origin)
            raise SynapseError(403, NOT_AN_AGENTS_PEER, Codes.FORBIDDEN)
        term = args.get("term")
        if not isinstance(term, str) or not 0 < len(term.strip()) <= MAX_TERM:
            raise SynapseError(400, f"term: 1 to {MAX_TERM} characters", Codes.INVALID_PARAM)
        try:
            limit = max(1, min(int(args.get("limit", MAX_RESULTS)), MAX_RESULTS))
        except ValueError:
            raise SynapseError(400, "limit: a number", Codes.INVALID_PARAM) from None
        found = []
        # More than asked: users of other servers and externals are left out afterwards.
        for user in await self._internals.search_directory(origin, term, limit * 3):
            user_id = user["user_id"]
            if self._api.is_mine(user_id) and not await self._directory.is_external(user_id):
                found.append(
                    {
                        "user_id": user_id,
                        "display_name": user.get("display_name"),
                        "avatar_url": user.get("avatar_url"),
                    }
                )
            if len(found) == limit:
                break
        return {"results": found}

    # --- this server's agent searches -------------------------------------------------------

    async def peer_results(self, searcher: str, term: str, limit: int) -> list[dict]:
        """What the agents peers answer to a search of this server's agent (nothing for an
        external, or a term a peer would refuse)."""
        if not self._api.is_mine(searcher) or await self._directory.is_external(searcher):
            return []
        if not 0 < len(term.strip()) <= MAX_TERM:
            return []
        peers = self._network.agents_peers
        if not peers:
            return []
        if (self._limit.take(searcher, len(peers))) is not None:
            logger.info("%s searched the peers too often: this search asks none", searcher)
            return []
        # Every peer at once, each within PEER_SEARCH_SECONDS: the search waits for the slowest
        # at most that long, however many peers there are.
        asking = [
            run_in_background(self._ask, peer, term, min(limit, MAX_RESULTS)) for peer in peers
        ]
        answers = await make_deferred_yieldable(defer.gatherResults(asking, consumeErrors=True))
        results: list[dict] = []
        for answer in answers:  # in the settings' order
            results += answer[: limit - len(results)]
        return results

    async def _ask(self, peer: Peer, term: str, limit: int) -> list[dict]:
        asking = run_in_background(
            self._internals.federation_query,
            peer.server_name,
            QUERY_TYPE,
            {"term": term, "limit": str(limit)},
        )
        asking.addTimeout(PEER_SEARCH_SECONDS, self._clock)  # type: ignore[arg-type]
        try:
            answer = await make_deferred_yieldable(asking)
        except Exception as error:  # unreachable, slow, refused: this peer adds nothing
            logger.warning("no directory results from %s: %s", peer.server_name, error)
            return []
        return own_users(peer, answer)[:limit]


def own_users(peer: Peer, answer: object) -> list[dict]:
    """The results of a peer's answer that are its own users, in the shape Synapse returns;
    anything else in the answer is dropped."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        logger.warning("%s answered a directory search with no list of results", peer.server_name)
        return []
    kept = []
    for user in results[:MAX_RESULTS]:
        if not isinstance(user, dict):
            continue
        user_id, name, avatar = (
            user.get("user_id"),
            user.get("display_name"),
            user.get("avatar_url"),
        )
        # server_of is None for an ID that is not valid: only the peer's own valid users stay.
        if not isinstance(user_id, str) or server_of(user_id) != peer.server_name:
            continue
        kept.append(
            {
                "user_id": user_id,
                "display_name": name[:MAX_DISPLAY_NAME] if isinstance(name, str) else None,
                "avatar_url": avatar
                if isinstance(avatar, str) and avatar.startswith("mxc://")
                else None,
            }
        )
    return kept
