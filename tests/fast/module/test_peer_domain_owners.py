# SPDX-License-Identifier: AGPL-3.0-or-later
"""Which peer an email domain's invitations go to (federation/peers.py ``owner_of``), and what
the invitation rules make of it (externals/invitations.py): a domain is routed to a peer only
when the settings pin it there, or when that peer publishes it and the settings pin it no
list; a domain two servers claim belongs to neither and is refused with the reason; a domain
this server allows is never routed.  A hostile agents peer cannot draw invitations of
``gmail.com``, or of another peer's domain, to itself."""

from __future__ import annotations

import pytest

from appliance.synapse_module.config import InvitationLimits
from appliance.synapse_module.externals.invitation_mail import InvitationMail
from appliance.synapse_module.externals.invitations import (
    CONTESTED_DOMAIN,
    Invitations,
    canonical_email,
)
from appliance.synapse_module.federation.peers import FederationConfig, Network, Peer
from appliance.synapse_module.rooms.kinds import RoomKind

# Lyon's domains are pinned in the settings; Nantes and Hostile publish theirs live.
LYON = Peer("lyon.test", "agents", "https://lyon.test/", ("ac-lyon.fr", "*.lyon.gouv.fr"))
NANTES = Peer("nantes.test", "agents", "https://nantes.test/")
HOSTILE = Peer("hostile.test", "agents", "https://hostile.test/", ("hostile.fr",))
ROGUE = Peer("rogue.test", "agents", "https://rogue.test/")
EXTERNALS = Peer("externals.test", "externals", "https://externals.test/")


def network(*peers: Peer) -> Network:
    return Network(FederationConfig(mode="closed", peers=peers), "appliance.test")


def test_a_peer_with_a_settings_list_owns_nothing_it_publishes_outside_it():
    net = network(HOSTILE, LYON, EXTERNALS)
    net.learn(HOSTILE.server_name, ("hostile.fr", "gmail.com", "ac-lyon.fr", "ac-paris.fr"))
    assert net.owner_of("hostile.fr") == HOSTILE
    assert net.owner_of("gmail.com") is None
    assert net.owner_of("ac-lyon.fr") == LYON  # pinned to Lyon: a publication changes nothing
    assert net.contested("ac-lyon.fr") == ()


def test_a_peer_without_a_settings_list_owns_what_it_alone_publishes():
    net = network(LYON, NANTES)
    assert net.owner_of("ac-nantes.fr") is None
    net.learn(NANTES.server_name, ("ac-nantes.fr",))
    assert net.owner_of("ac-nantes.fr") == NANTES
    net.learn(NANTES.server_name, ())
    assert net.owner_of("ac-nantes.fr") is None


def test_a_domain_two_servers_publish_belongs_to_neither():
    net = network(NANTES, ROGUE)
    net.learn(NANTES.server_name, ("ac-nantes.fr",))
    net.learn(ROGUE.server_name, ("ac-nantes.fr", "gmail.com"))
    # Settings order no longer decides: the first listed would win, the second would too.
    assert net.owner_of("ac-nantes.fr") is None
    assert net.contested("ac-nantes.fr") == (NANTES.server_name, ROGUE.server_name)
    # A peer the settings pin no list is trusted with what it alone publishes: pinning its
    # domains is how an operator bounds it (as HOSTILE above).
    assert net.owner_of("gmail.com") == ROGUE


def test_a_domain_the_settings_pin_to_two_peers_belongs_to_neither():
    twice = Peer("twice.test", "agents", "https://twice.test/", ("ac-lyon.fr",))
    net = network(LYON, twice)
    assert net.owner_of("ac-lyon.fr") is None
    assert net.contested("ac-lyon.fr") == (LYON.server_name, twice.server_name)
    assert net.owner_of("rectorat.lyon.gouv.fr") == LYON


@pytest.fixture
def peer_invitations(api, externals, directory, allowlist, key) -> tuple[Invitations, Network]:
    net = network(HOSTILE, NANTES, ROGUE, LYON, EXTERNALS)
    made = Invitations(
        api,
        externals,
        directory,
        allowlist.current,
        key,
        InvitationMail(api),
        InvitationLimits(),
        network=net,
    )
    return made, net


def test_a_hostile_publication_does_not_skip_the_externals_rule(peer_invitations):
    invitations, net = peer_invitations
    net.learn(HOSTILE.server_name, ("gmail.com", "ac-lyon.fr"))
    problem = invitations.address_problem("jean@gmail.com", RoomKind.PRIVATE)
    assert problem is not None and problem.startswith("Only a room open to externals")
    assert invitations.address_problem("bob@ac-lyon.fr", RoomKind.PRIVATE) is None


def test_a_contested_domain_is_refused_with_the_reason(peer_invitations):
    invitations, net = peer_invitations
    net.learn(NANTES.server_name, ("ac-nantes.fr",))
    net.learn(ROGUE.server_name, ("ac-nantes.fr",))
    expected = CONTESTED_DOMAIN.format(domain="ac-nantes.fr", servers="nantes.test, rogue.test")
    for kind in (RoomKind.PRIVATE, RoomKind.OPEN, RoomKind.DIRECT):
        assert invitations.address_problem("anne@ac-nantes.fr", kind) == expected


def test_a_domain_this_server_allows_is_never_routed(peer_invitations):
    invitations, net = peer_invitations
    # ac-paris.fr and *.gouv.fr are this server's (the fast tier's allowlist).
    net.learn(NANTES.server_name, ("ac-paris.fr", "interieur.gouv.fr"))
    net.learn(ROGUE.server_name, ("ac-paris.fr",))
    for address in ("anne@ac-paris.fr", "paul@interieur.gouv.fr"):
        email = canonical_email(address)
        assert invitations.owner_of(email) is None
        assert invitations.contested(email) == ()
        assert invitations.address_problem(address, RoomKind.PRIVATE) is None
