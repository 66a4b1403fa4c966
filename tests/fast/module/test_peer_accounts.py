# SPDX-License-Identifier: AGPL-3.0-or-later
"""The federation query of federation/peer_accounts.py, called as Synapse's federation
registry calls it (with the authenticated origin), and the answers of a peer judged: only a
peer is answered, only for this server's own domains; a peer that names an account of another
server, or cannot be asked, is an error, never "no account".  Synapse's HomeServer stands for
the real one by the names the module reaches (synapse_internals.py, reach 11)."""

from __future__ import annotations

from unittest.mock import AsyncMock, Mock

import pytest
from synapse.module_api.errors import SynapseError

from appliance.synapse_module.federation.peer_accounts import (
    NOT_A_PEER_QUERY,
    QUERY_TYPE,
    PeerAccounts,
)
from appliance.synapse_module.federation.peers import FederationConfig, Network, Peer
from appliance.synapse_module.synapse_internals import SynapseInternals

LYON = Peer("lyon.test", "agents", "https://lyon.test/", ("ac-lyon.fr",))
EXTERNALS = Peer("externals.test", "externals", "https://externals.test/")
AGENT = "@anne-ac-paris.fr:appliance.test"


@pytest.fixture
def homeserver(api) -> Mock:
    hs = Mock()
    store = hs.get_datastores.return_value.main
    store.get_user_id_by_threepid = AsyncMock(
        side_effect=lambda medium, address: AGENT if address == "anne@ac-paris.fr" else None
    )
    hs.get_federation_client.return_value.make_query = AsyncMock()
    api._hs = hs
    return hs


@pytest.fixture
def accounts(api, homeserver, allowlist) -> PeerAccounts:
    network = Network(FederationConfig(mode="closed", peers=(LYON, EXTERNALS)), api.server_name)
    found = PeerAccounts(api, network, allowlist.current, SynapseInternals(api))
    found.register()
    return found


def test_the_query_is_registered_with_synapses_federation_registry(homeserver, accounts):
    registry = homeserver.get_federation_registry.return_value
    registry.register_query_handler.assert_called_once_with(QUERY_TYPE, accounts.on_query)


def test_a_peer_learns_the_account_of_an_address_of_this_servers_domains(run, accounts):
    ask = {"origin": LYON.server_name}
    assert run(accounts.on_query({**ask, "address": "Anne@AC-Paris.fr"})) == {"user_id": AGENT}
    assert run(accounts.on_query({**ask, "address": "nobody@ac-paris.fr"})) == {"user_id": None}
    # Not this server's domain: not its to answer, whatever is bound here.
    assert run(accounts.on_query({**ask, "address": "x@gmail.com"})) == {"user_id": None}
    assert run(accounts.on_query({**ask, "address": "not an address"})) == {"user_id": None}


def test_an_address_outside_the_allowlist_is_answered_only_with_an_external(
    run, api, homeserver, allowlist
):
    # As the network's externals' server answers about its externals; an agent's second
    # address of another domain (bound by an administrator) is never told.
    bound = {"paul@gmail.com": "@paul-gmail.com:appliance.test", "anne@gmail.com": AGENT}
    store = homeserver.get_datastores.return_value.main
    store.get_user_id_by_threepid = AsyncMock(
        side_effect=lambda medium, address: bound.get(address)
    )
    network = Network(FederationConfig(mode="closed", peers=(LYON,)), api.server_name)

    async def is_external(user_id: str) -> bool:
        return user_id == bound["paul@gmail.com"]

    accounts = PeerAccounts(
        api, network, allowlist.current, SynapseInternals(api), is_external=is_external
    )
    ask = {"origin": LYON.server_name}
    assert run(accounts.on_query({**ask, "address": "Paul@gmail.com"})) == {
        "user_id": bound["paul@gmail.com"]
    }
    assert run(accounts.on_query({**ask, "address": "anne@gmail.com"})) == {"user_id": None}
    assert run(accounts.on_query({**ask, "address": "x@gmail.com"})) == {"user_id": None}


# The externals' server is a peer, but not one that invites agents by email.
@pytest.mark.parametrize(
    "origin", ["outside.test", None, "lyon.test.evil.example", EXTERNALS.server_name]
)
def test_a_server_that_is_not_an_agents_peer_is_refused(run, accounts, origin):
    with pytest.raises(SynapseError) as refused:
        run(accounts.on_query({"origin": origin, "address": "anne@ac-paris.fr"}))
    assert (refused.value.code, refused.value.errcode, refused.value.msg) == (
        403,
        "M_FORBIDDEN",
        NOT_A_PEER_QUERY,
    )


@pytest.mark.parametrize(
    "answer, expected",
    [
        ({"user_id": "@bob-ac-lyon.fr:lyon.test"}, "@bob-ac-lyon.fr:lyon.test"),
        ({"user_id": None}, None),
        ({}, None),
    ],
)
def test_a_peers_answer_names_its_own_account_or_none(run, homeserver, accounts, answer, expected):
    homeserver.get_federation_client.return_value.make_query.return_value = answer
    assert run(accounts.account_at(LYON, "bob@ac-lyon.fr")) == expected
    homeserver.get_federation_client.return_value.make_query.assert_called_with(
        LYON.server_name, QUERY_TYPE, {"address": "bob@ac-lyon.fr"}
    )


@pytest.mark.parametrize(
    "answer",
    [{"user_id": "@bob:paris.test"}, {"user_id": 7}, ["not", "an", "object"]],
)
def test_an_answer_naming_another_servers_account_fails_closed(run, homeserver, accounts, answer):
    homeserver.get_federation_client.return_value.make_query.return_value = answer
    with pytest.raises(SynapseError) as failed:
        run(accounts.account_at(LYON, "bob@ac-lyon.fr"))
    assert (failed.value.code, failed.value.errcode) == (502, "M_UNKNOWN")
    assert LYON.server_name in failed.value.msg


def test_a_peer_that_cannot_be_asked_fails_closed(run, homeserver, accounts):
    homeserver.get_federation_client.return_value.make_query.side_effect = OSError("refused")
    with pytest.raises(SynapseError) as failed:
        run(accounts.account_at(LYON, "bob@ac-lyon.fr"))
    assert (failed.value.code, failed.value.errcode) == (502, "M_UNKNOWN")


def test_the_externals_servers_no_account_is_asked_again_and_its_account_kept(
    run, homeserver, accounts
):
    # Its account appears when the invitation relayed there is used: "none" is never reused.
    make_query = homeserver.get_federation_client.return_value.make_query
    make_query.return_value = {"user_id": None}
    assert run(accounts.account_at(EXTERNALS, "p@gmail.com")) is None
    assert run(accounts.account_at(EXTERNALS, "p@gmail.com")) is None
    assert make_query.await_count == 2
    make_query.return_value = {"user_id": "@p-gmail.com:externals.test"}
    for _ in range(2):
        assert run(accounts.account_at(EXTERNALS, "p@gmail.com")) == "@p-gmail.com:externals.test"
    assert make_query.await_count == 3
