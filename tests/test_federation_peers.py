# SPDX-License-Identifier: AGPL-3.0-or-later
"""Who a user of another server is, by the pure rules of federation/peers.py, and the module
config's federation block refused with its key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from synapse.module_api.errors import ConfigError

from appliance.synapse_module.federation.peer_domains import published_entries
from appliance.synapse_module.federation.peers import (
    FederationConfig,
    Network,
    Peer,
    Standing,
    parse_federation,
    server_of,
)

OWN = "ac-paris.fr"
PEERS = (
    Peer("ac-lyon.fr", "agents", "https://matrix.ac-lyon.fr/", ("ac-lyon.fr", "*.lyon.gouv.fr")),
    Peer("127.0.0.4:8448", "externals", "https://e.example/"),
)
LISTED = {OWN, *(peer.server_name for peer in PEERS)}


def network(mode: str) -> Network:
    return Network(FederationConfig(mode=mode, peers=PEERS), OWN)


@pytest.mark.parametrize(
    "mode, user, standing",
    [
        ("closed", "@a:ac-paris.fr", Standing.LOCAL),
        ("closed", "@b:ac-lyon.fr", Standing.AGENT),
        ("closed", "@e:127.0.0.4:8448", Standing.EXTERNAL),
        ("closed", "@e:127.0.0.4", Standing.REFUSED),  # the port is part of the name
        ("closed", "@x:matrix.org", Standing.REFUSED),
        ("closed", "@x:ac-lyon.fr.evil.example", Standing.REFUSED),
        ("off", "@b:ac-lyon.fr", Standing.REFUSED),
        ("open", "@b:ac-lyon.fr", Standing.AGENT),
        ("open", "@x:matrix.org", Standing.EXTERNAL),
    ],
)
def test_each_user_stands_as_its_servers_role_says(mode, user, standing):
    assert network(mode).standing(user) is standing


def test_only_agents_of_agents_peers_are_not_judged_external():
    closed = network("closed")
    assert not closed.judged_external("@b:ac-lyon.fr")
    assert closed.judged_external("@e:127.0.0.4:8448")
    assert closed.judged_external("@x:matrix.org")  # refused, and the fewest rights if not


@given(st.text(min_size=1, max_size=40).filter(lambda s: s not in LISTED))
def test_a_server_not_listed_is_refused_whatever_its_name(name):
    assert network("closed").standing(f"@x:{name}") is Standing.REFUSED


@pytest.mark.parametrize(
    "user", ["@:ac-lyon.fr", "@a:ac-lyon.fr bad", "@a:", "@" + "a" * 250 + ":ac-lyon.fr"]
)
def test_a_user_id_that_is_not_valid_belongs_to_no_server(user):
    assert server_of(user) is None
    assert network("closed").standing(user) is Standing.REFUSED


def test_rooms_of_this_server_peers_and_version_12_are_accepted():
    closed = network("closed")
    assert closed.accepts_server(server_of("!r:ac-lyon.fr"))
    assert closed.accepts_server(server_of("!r:ac-paris.fr"))
    assert closed.accepts_server(server_of("!opaque-v12-id"))  # names no server
    assert not closed.accepts_server(server_of("!r:matrix.org"))
    assert network("open").accepts_server("matrix.org")


def test_a_domain_is_owned_by_the_peer_that_lists_it():
    closed = network("closed")
    assert closed.owner_of("ac-lyon.fr") == PEERS[0]
    assert closed.owner_of("rectorat.lyon.gouv.fr") == PEERS[0]
    assert closed.owner_of("lyon.gouv.fr") is None  # a wildcard admits subdomains only
    assert closed.owner_of("elsewhere.example") is None
    assert closed.externals_server == PEERS[1]
    assert network("off").owner_of("ac-lyon.fr") is None
    assert network("off").externals_server is None


def test_the_module_config_is_parsed_with_every_field():
    raw = {
        "mode": "closed",
        "peers": [
            {
                "server_name": "ac-lyon.fr",
                "role": "agents",
                "base_url": "https://matrix.ac-lyon.fr/",
                "domains": ["AC-Lyon.fr", "*.lyon.gouv.fr"],
            },
            {
                "server_name": "127.0.0.4:8448",
                "role": "externals",
                "base_url": "https://e.example/",
            },
        ],
    }
    assert parse_federation(raw) == FederationConfig(
        "closed",
        (
            Peer("ac-lyon.fr", "agents", "https://matrix.ac-lyon.fr/", PEERS[0].domains),
            PEERS[1],
        ),
    )
    assert parse_federation(None) == FederationConfig(mode="off", peers=())


@pytest.mark.parametrize(
    "raw, path",
    [
        ("closed", ("federation",)),
        ({"mode": "shut"}, ("federation", "mode")),
        ({"peer": []}, ("federation", "peer")),
        ({"peers": {}}, ("federation", "peers")),
        ({"peers": [{"server_name": "x.org"}]}, ("federation", "peers", "0")),
        (
            {"peers": [{"server_name": "x.org", "role": "admins"}]},
            ("federation", "peers", "0", "role"),
        ),
        (
            {"peers": [{"server_name": "x.org", "role": "agents", "domains": ["*x.org"]}]},
            ("federation", "peers", "0", "domains", "0"),
        ),
        (
            {"peers": [{"server_name": "x.org", "role": "agents", "trusted": True}]},
            ("federation", "peers", "0", "trusted"),
        ),
    ],
)
def test_a_bad_module_config_names_its_key(raw, path):
    with pytest.raises(ConfigError) as refused:
        parse_federation(raw)
    assert tuple(refused.value.path) == path


def test_what_a_peer_publishes_counts_only_inside_its_settings_list_and_can_be_forgotten():
    unpinned = Peer("ac-nantes.fr", "agents", "https://matrix.ac-nantes.fr/")
    closed = Network(FederationConfig(mode="closed", peers=(*PEERS, unpinned)), OWN)
    assert closed.owner_of("new.example") is None
    closed.learn("ac-lyon.fr", ("new.example", "*.lyon.example", "ac-lyon.fr"))
    closed.learn("ac-nantes.fr", ("ac-nantes.fr",))
    # Lyon's settings list bounds what it may own; Nantes has none and owns what it publishes.
    assert closed.owner_of("new.example") is None
    assert closed.owner_of("a.lyon.example") is None
    assert closed.owner_of("ac-nantes.fr") == unpinned
    closed.learn("ac-nantes.fr", ())
    assert closed.owner_of("ac-nantes.fr") is None
    closed.learn("ac-lyon.fr", ())
    assert closed.owner_of("ac-lyon.fr") == PEERS[0]  # the settings' list stays
    assert closed.publishing_peers == (PEERS[0], unpinned)  # the externals' server: nothing
    assert network("off").publishing_peers == ()


@pytest.mark.parametrize(
    "body",
    [
        {"server_name": "matrix.org", "domains": ["x.example"]},  # another server's answer
        {"server_name": "ac-lyon.fr", "domains": "x.example"},
        {"server_name": "ac-lyon.fr"},
        ["x.example"],
    ],
)
def test_an_answer_that_cannot_be_used_is_refused(body):
    with pytest.raises(ValueError):
        published_entries(PEERS[0], body)


def test_published_entries_are_normalised_and_bad_ones_skipped():
    body = {"server_name": "ac-lyon.fr", "domains": ["New.Example", "*gouv.fr", "*.Lyon.fr"]}
    assert published_entries(PEERS[0], body) == ("new.example", "*.lyon.fr")
