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

Failing closed: a peer that cannot be reached, or does not answer by the request's deadline
(:data:`QUERY_SECONDS` for all the peer queries of one request, asked in parallel), or that
names an account of another server, is an error (502 ``M_UNKNOWN``, saying which server), never
"no account": no invitation mail tells a person to create an account that may already exist.

The network's externals' server is asked the same way about an address of no domain of the
network (``externals_relay.py``): it answers with the external account bound to it there, if
any (never an agent's: :meth:`PeerAccounts.on_query` answers an address outside its allowlist
only with an external), so that an external already registered there is invited by its Matrix
ID, through either door, instead of being mailed again.

Bounded: a peer's answers are kept :data:`CACHE_SECONDS` (a client's look-up, then Synapse's
``user_may_send_3pid_invite``, ask the same thing; the externals' server's "no account" is not
kept), and each user's requests may cause at most
:data:`USER_QUERIES_PER_MINUTE` queries to peers (:mod:`.peer_query_limit`; past it, 429
``M_LIMIT_EXCEEDED``).  The rounds that complete peers' invitations ask afresh.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from synapse.module_api import ModuleApi, make_deferred_yieldable, run_in_background
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet import reactor

from appliance.addresses.email_address import InvalidEmailAddress, parse_email
from appliance.synapse_module.accounts.registration import AllowlistSource, decide
from appliance.synapse_module.federation.peer_query_limit import PeerQueryLimit, ReactorClock
from appliance.synapse_module.federation.peers import Network, Peer, server_of
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

QUERY_TYPE = "fr.appliance.account_of_email"
PEER_UNREACHABLE = (
    "{server} holds the accounts of this address's domain and cannot be asked right now: "
    "try again later"
)
# One request's peer queries all end by then (Synapse's own retries could take ~40 s).
QUERY_SECONDS = 5.0
CACHE_SECONDS = 60.0  # a peer's answer is reused this long
CACHE_ENTRIES = 10_000
USER_QUERIES_PER_MINUTE = 120  # peer queries one user's requests may cause (cached: free)
TOO_MANY_QUERIES = (
    "You have looked up too many addresses of other servers in the last minute: "
    "wait a moment, then try again"
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
        *,
        clock: ReactorClock = reactor,
        is_external: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._api = api
        self._network = network
        self._allowlist = allowlist
        self._internals = internals
        self._clock = clock
        # Which local accounts are externals: those answered for addresses outside the allowlist.
        self._is_external = is_external
        self._limit = PeerQueryLimit(USER_QUERIES_PER_MINUTE, 60.0, clock)
        # (server, address) -> (when asked, the account or None), oldest first.
        self._cache: OrderedDict[tuple[str, str], tuple[float, str | None]] = OrderedDict()

    def deadline(self) -> float:
        """The deadline of a request that starts now, for :meth:`account_at`."""
        return self._clock.seconds() + QUERY_SECONDS

    def register(self) -> None:
        """Answer the query on every process (the federation reader receives it)."""
        self._internals.serve_federation_query(QUERY_TYPE, self.on_query)

    async def on_query(self, args: dict) -> dict:
        """The federation query handler: ``args`` holds ``address`` and Synapse's
        authenticated ``origin``.

        Returns:
            ``{"user_id": ...}``: the local account bound to the address, or None (also for an
            address of a domain this server does not hold: not its to answer, unless its
            account here is an external's, as on the network's externals' server).

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
        account = await self._internals.user_of_email(email.address)
        if account is None or decide(email.address, self._allowlist()).allowed:
            return {"user_id": account}
        external = self._is_external is not None and await self._is_external(account)
        return {"user_id": account if external else None}

    async def account_at(
        self,
        peer: Peer,
        address: str,
        *,
        asker: str | None = None,
        deadline: float | None = None,
        fresh: bool = False,
    ) -> str | None:
        """The account the peer holds for this (canonical) address, or None.

        Args:
            asker: the user whose request asks, counted against the per-user limit (None for
                the server's own background rounds).
            deadline: when the request's peer queries must be over (:meth:`deadline`); by
                default :data:`QUERY_SECONDS` from now.
            fresh: ask the peer even if an answer is cached.

        Raises:
            SynapseError: 502 ``M_UNKNOWN`` when the peer cannot tell in time (fail closed);
                429 ``M_LIMIT_EXCEEDED`` past the asker's limit.
        """
        key = (peer.server_name, address)
        if not fresh and (cached := self._cached(key)) is not None:
            return cached[1]
        if asker is not None and (retry_after := self._limit.take(asker)) is not None:
            logger.warning("refused %s a peer account query: limit reached", asker)
            retry_after_ms = math.ceil(retry_after * 1000)
            raise SynapseError(
                429,
                TOO_MANY_QUERIES,
                Codes.LIMIT_EXCEEDED,
                additional_fields={"retry_after_ms": retry_after_ms},
                headers={"Retry-After": str(math.ceil(retry_after))},
            )
        if deadline is None:
            deadline = self.deadline()
        asking = run_in_background(
            self._internals.federation_query, peer.server_name, QUERY_TYPE, {"address": address}
        )
        asking.addTimeout(max(deadline - self._clock.seconds(), 0.0), self._clock)  # type: ignore[arg-type]
        try:
            answer = await make_deferred_yieldable(asking)
        except Exception as error:  # unreachable, too slow, refused, not an appliance
            logger.warning("cannot ask %s for an account: %r", peer.server_name, error)
            raise SynapseError(
                502, PEER_UNREACHABLE.format(server=peer.server_name), Codes.UNKNOWN
            ) from None
        user_id = answer.get("user_id") if isinstance(answer, dict) else "not an answer"
        if user_id is not None and (
            not isinstance(user_id, str) or server_of(user_id) != peer.server_name
        ):
            logger.warning("%s answered an account query with %r", peer.server_name, user_id)
            raise SynapseError(502, PEER_UNREACHABLE.format(server=peer.server_name), Codes.UNKNOWN)
        # The externals' server's "none" is not kept: its account appears when the invitation
        # this server relayed there is used, and a stale "none" would then send the standard
        # door's next invite to store-invite (which answers "in use") instead of inviting it.
        if user_id is not None or peer.role != "externals":
            self._remember(key, user_id)
        return user_id

    def _cached(self, key: tuple[str, str]) -> tuple[float, str | None] | None:
        entry = self._cache.get(key)
        if entry is not None and entry[0] > self._clock.seconds() - CACHE_SECONDS:
            return entry
        return None

    def _remember(self, key: tuple[str, str], user_id: str | None) -> None:
        self._cache.pop(key, None)
        self._cache[key] = (self._clock.seconds(), user_id)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
