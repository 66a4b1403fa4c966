# SPDX-License-Identifier: AGPL-3.0-or-later
"""Who a user of another server is, here: pure rules on the federation's config.

An appliance federates with the peers its settings list (``federation.peers``), each with a
role: a user of an ``agents`` peer is an agent of that public body, a user of an
``externals`` peer is an external everywhere on this server.  A user of any other server is
refused (``closed`` and ``off`` modes); in ``open`` mode, where an operator insisted on
federating with every server, such a user is judged as an external: never an agent, never
given power.

Nothing here talks to Synapse: :mod:`.rules` is the adapter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from synapse.module_api.errors import ConfigError
from synapse.types import UserID

from appliance.addresses.domain_allowlist import (
    DomainAllowlist,
    InvalidDomainEntry,
    normalise_domain_entry,
)

MODES = ("off", "closed", "open")
MAX_USER_ID = 255  # the Matrix spec's limit on a user ID, server name included
ROLES = ("agents", "externals")
_PEER_KEYS = {"server_name", "role", "base_url", "domains"}

# Refusals (403 M_FORBIDDEN), as Synapse hands them to the client or the other server.
NOT_A_PEER_USER = "This server federates only with its peers: users of other servers are refused"
NOT_A_PEER_ROOM = "This server federates only with its peers: rooms of other servers are refused"
INVITE_INTO_PRIVATE = (
    "Externals cannot invite into private rooms: only a room open to externals accepts them"
)
EXTERNAL_INVITED_INTO_PRIVATE = (
    "Externals cannot be invited into private rooms: open the room to externals first"
)
REMOTE_ROOM_BY_INVITATION = "Externals can join rooms of other servers only by invitation"
REMOTE_LEVEL = "Members of other servers keep power level 0 in this server's rooms"


class Standing(enum.Enum):
    """What a user is, on this server."""

    LOCAL = "local"  # judged by the local rules (agent or external, from the records)
    AGENT = "agent"  # a user of an agents peer
    EXTERNAL = "external"  # a user of an externals peer, or of any server in open mode
    REFUSED = "refused"  # a user of a server that is not a peer


@dataclass(frozen=True)
class Peer:
    server_name: str
    role: Literal["agents", "externals"]
    base_url: str = ""  # its public URL for clients
    domains: tuple[str, ...] = ()  # the email domains whose agents it holds (agents peers)


@dataclass(frozen=True)
class FederationConfig:
    mode: Literal["off", "closed", "open"] = "off"
    peers: tuple[Peer, ...] = ()
    # How often the domain lists agents peers publish are fetched.
    domains_refresh_seconds: int = 30


def server_of(matrix_id: str) -> str | None:
    """The server part of a user, room or alias ID (``@a:127.0.0.2:8448`` gives
    ``127.0.0.2:8448``); None for an ID without one (room IDs of version 12 rooms), and for a
    user ID that is not valid (Synapse's ``UserID.is_valid``, with a localpart): such a user
    belongs to no server, so to no peer."""
    if matrix_id.startswith(UserID.SIGIL) and not (
        UserID.is_valid(matrix_id) and len(matrix_id) <= MAX_USER_ID and matrix_id[1:2] != ":"
    ):
        return None
    _, sep, server = matrix_id.partition(":")
    return server if sep and server else None


class Network:
    """This server's view of the federation: its own name, its peers and their roles."""

    def __init__(self, config: FederationConfig, own_server_name: str) -> None:
        self.mode = config.mode
        self.own = own_server_name
        self._peers = config.peers
        self._roles = {peer.server_name: peer.role for peer in config.peers}
        # The domains the settings pin to each peer (those it alone may own, see owner_of).
        self._pinned = {
            peer.server_name: DomainAllowlist(peer.domains) for peer in config.peers if peer.domains
        }
        self._publishing = tuple(
            peer for peer in config.peers if peer.role == "agents" and peer.base_url
        )
        self._agents = tuple(peer for peer in config.peers if peer.role == "agents")
        self._externals = next((peer for peer in config.peers if peer.role == "externals"), None)
        # Domain lists each agents peer publishes (peer_domains.py), beside the settings' own.
        self._learned: dict[str, DomainAllowlist] = {}

    @property
    def externals_server(self) -> Peer | None:
        """The network's server for externals, if it has one (and federation is on)."""
        return self._externals if self.mode != "off" else None

    @property
    def publishing_peers(self) -> tuple[Peer, ...]:
        """The agents peers whose domain lists are fetched (those with a base_url)."""
        return self._publishing if self.mode != "off" else ()

    @property
    def agents_peers(self) -> tuple[Peer, ...]:
        """The peers whose users are agents (whose directories agents search)."""
        return self._agents if self.mode != "off" else ()

    def role_of(self, server_name: str) -> str | None:
        """The peer's role, or None for a server that is not a peer."""
        return self._roles.get(server_name) if self.mode != "off" else None

    def learn(self, server_name: str, entries: tuple[str, ...]) -> None:
        """Replace what the peer published (normalised entries; empty to forget it)."""
        self._learned[server_name] = DomainAllowlist.from_normalised(entries)

    def claimants_of(self, email_domain: str) -> tuple[Peer, ...]:
        """The peers that may own this (normalised) domain: those the settings pin it to; if
        none, the agents peers that publish it and whose settings pin no domain at all (a peer
        with a settings list owns nothing outside it, whatever it publishes)."""
        if self.mode == "off":
            return ()
        pinned = tuple(
            peer
            for peer in self._peers
            if peer.server_name in self._pinned
            and self._pinned[peer.server_name].matching_entry(email_domain) is not None
        )
        if pinned:
            return pinned
        return tuple(
            peer
            for peer in self._publishing
            if peer.server_name not in self._pinned
            and (learned := self._learned.get(peer.server_name)) is not None
            and learned.matching_entry(email_domain) is not None
        )

    def owner_of(self, email_domain: str) -> Peer | None:
        """The peer whose agents have addresses of this (normalised) domain, if exactly one
        claims it (:meth:`claimants_of`): a domain two servers claim belongs to neither, so
        that no peer can draw another's invitations to itself by publishing its domain.
        Callers check first that this server does not allow the domain itself."""
        claimants = self.claimants_of(email_domain)
        return claimants[0] if len(claimants) == 1 else None

    def contested(self, email_domain: str) -> tuple[str, ...]:
        """The servers that claim this domain when more than one does (else empty)."""
        claimants = self.claimants_of(email_domain)
        return tuple(peer.server_name for peer in claimants) if len(claimants) > 1 else ()

    def is_peer(self, server_name: str) -> bool:
        return self.mode != "off" and server_name in self._roles

    def accepts_server(self, server_name: str | None) -> bool:
        """Whether this server may deal with that one (itself, a peer, anyone when open)."""
        if server_name is None or server_name == self.own:
            return True
        return self.mode == "open" or self.is_peer(server_name)

    def standing(self, user_id: str) -> Standing:
        server = server_of(user_id)
        if server == self.own:
            return Standing.LOCAL
        if server is not None and self.is_peer(server):
            return Standing.AGENT if self._roles[server] == "agents" else Standing.EXTERNAL
        if self.mode == "open":
            return Standing.EXTERNAL
        return Standing.REFUSED

    def refuses(self, user_id: str) -> bool:
        return self.standing(user_id) is Standing.REFUSED

    def judged_external(self, user_id: str) -> bool:
        """For a user of another server: anyone but an agent of an agents peer is an external
        (a refused user too: what slips past the refusals gets the fewest rights)."""
        return self.standing(user_id) is not Standing.AGENT


def parse_federation(raw: object) -> FederationConfig:
    """The module config's ``federation`` block; ConfigError names the key."""
    if raw is None:
        return FederationConfig()
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", path=("federation",))
    known = {"mode", "peers", "domains_refresh_seconds"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown key (known: {', '.join(sorted(known))})", path=("federation", unknown[0])
        )
    refresh = raw.get("domains_refresh_seconds", FederationConfig.domains_refresh_seconds)
    if not isinstance(refresh, int) or isinstance(refresh, bool) or not 1 <= refresh <= 3600:
        raise ConfigError(
            "must be a number of seconds (1-3600)", path=("federation", "domains_refresh_seconds")
        )
    mode = raw.get("mode", "off")
    if mode not in MODES:
        raise ConfigError(f"must be one of {', '.join(MODES)}", path=("federation", "mode"))
    peers_raw = raw.get("peers", [])
    if not isinstance(peers_raw, list):
        raise ConfigError("must be a list", path=("federation", "peers"))
    peers = tuple(_parse_peer(entry, index) for index, entry in enumerate(peers_raw))
    return FederationConfig(mode=mode, peers=peers, domains_refresh_seconds=refresh)


def _parse_peer(entry: object, index: int) -> Peer:
    where = ("federation", "peers", str(index))
    if not isinstance(entry, dict) or not {"server_name", "role"} <= set(entry):
        raise ConfigError("must be a mapping with server_name and role", path=where)
    unknown = sorted(set(entry) - _PEER_KEYS)
    if unknown:
        raise ConfigError("unknown key", path=(*where, unknown[0]))
    server_name, role = entry["server_name"], entry["role"]
    if not isinstance(server_name, str) or not server_name or server_name.startswith(":"):
        raise ConfigError("must be a server name", path=(*where, "server_name"))
    if role not in ROLES:
        raise ConfigError(f"must be one of {', '.join(ROLES)}", path=(*where, "role"))
    base_url = entry.get("base_url", "")
    if not isinstance(base_url, str):
        raise ConfigError("must be a URL", path=(*where, "base_url"))
    if role == "externals" and not base_url:
        # Unknown addresses are invited there through its identity service, at this URL.
        raise ConfigError(
            "an externals peer needs its base_url (its identity service stores the invitations "
            "of unknown addresses)",
            path=(*where, "base_url"),
        )
    raw_domains = entry.get("domains", [])
    if not isinstance(raw_domains, list):
        raise ConfigError("must be a list of domains", path=(*where, "domains"))
    domains = []
    for position, domain in enumerate(raw_domains):
        try:
            domains.append(normalise_domain_entry(str(domain)))
        except InvalidDomainEntry as error:
            raise ConfigError(str(error), path=(*where, "domains", str(position))) from None
    return Peer(server_name, role, base_url, tuple(domains))
