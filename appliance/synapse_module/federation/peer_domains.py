# SPDX-License-Identifier: AGPL-3.0-or-later
"""How the network learns which server owns which email domain, live.

Each appliance publishes its allowlist at ``GET /_synapse/client/appliance/v1/network/domains``
(no token: ``/_matrix/identity/api/v1/info`` tells the same address by address), as
``{"server_name": ..., "domains": [...]}``.  Every process fetches the list of each agents
peer from its ``base_url`` every ``domains_refresh_seconds`` (30 s by default), so a domain
added live on one appliance reaches the others' ``/info`` answers within a minute.

Failing closed: an answer naming another server, or not a list, is ignored; a peer that
cannot be fetched keeps its last list for three periods, then is forgotten, and only the
domains the settings give it remain.  The settings' lists and this server's own allowlist
always win over what a peer publishes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from synapse.module_api import DirectServeJsonResource, ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from appliance.addresses.domain_allowlist import (
    DomainAllowlist,
    InvalidDomainEntry,
    normalise_domain_entry,
)
from appliance.synapse_module.federation.peers import Network, Peer

logger = logging.getLogger(__name__)

DOMAINS_PATH = "/_synapse/client/appliance/v1/network/domains"
KEPT_PERIODS = 3  # a peer that cannot be fetched keeps its list this many periods
MAX_ENTRIES = 100_000


class NetworkDomainsResource(DirectServeJsonResource):
    """This server's allowlist, for its peers."""

    def __init__(self, api: ModuleApi, allowlist: Callable[[], DomainAllowlist | None]) -> None:
        super().__init__()
        self._api = api
        self._allowlist = allowlist

    def register(self) -> None:
        self._api.register_web_resource(DOMAINS_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict]:
        allowlist = self._allowlist()
        if allowlist is None:
            raise SynapseError(503, "The list of allowed domains cannot be read", Codes.UNKNOWN)
        return 200, {"server_name": self._api.server_name, "domains": list(allowlist.entries)}


def published_entries(peer: Peer, body: object) -> tuple[str, ...]:
    """The entries a peer's answer publishes; ValueError when the answer cannot be used."""
    if not isinstance(body, dict) or body.get("server_name") != peer.server_name:
        raise ValueError("the answer does not come from this peer")
    domains = body.get("domains")
    if not isinstance(domains, list) or len(domains) > MAX_ENTRIES:
        raise ValueError("domains is not a list of entries")
    entries = []
    for domain in domains:
        try:
            entries.append(normalise_domain_entry(str(domain)))
        except InvalidDomainEntry:
            continue  # one bad entry does not discard the others
    return tuple(entries)


class PeerDomains:
    """Fetches the agents peers' domain lists into the network, on every process."""

    def __init__(
        self,
        api: ModuleApi,
        network: Network,
        refresh_seconds: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._network = network
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._fetched_at: dict[str, float] = {}

    def register(self) -> None:
        if not self._network.publishing_peers:
            return
        self._api.run_as_background_process("appliance_peer_domains_start", self.refresh)
        self._api.looping_background_call(
            self.refresh,
            self._refresh_seconds * 1000,
            desc="appliance_peer_domains_refresh",
            run_on_all_instances=True,
        )

    async def refresh(self) -> None:
        for peer in self._network.publishing_peers:
            await self._fetch(peer)

    async def _fetch(self, peer: Peer) -> None:
        url = peer.base_url.rstrip("/") + DOMAINS_PATH
        try:
            entries = published_entries(peer, await self._api.http_client.get_json(url))
        except Exception as error:  # unreachable, refused, or an answer that cannot be used
            fetched_at = self._fetched_at.get(peer.server_name)
            if fetched_at is not None and (
                self._clock() - fetched_at > KEPT_PERIODS * self._refresh_seconds
            ):
                logger.warning("forgetting the domains of %s: %s", peer.server_name, error)
                self._network.learn(peer.server_name, ())
                del self._fetched_at[peer.server_name]
            return
        self._network.learn(peer.server_name, entries)
        self._fetched_at[peer.server_name] = self._clock()
