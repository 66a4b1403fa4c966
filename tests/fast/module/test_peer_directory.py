# SPDX-License-Identifier: AGPL-3.0-or-later
"""The agents' directory across the network (federation/peer_directory.py), called as
Synapse's federation registry calls it: only an agents peer is answered, with this server's
agents only; and a peer's answer keeps only that peer's own users.  Synapse's store stands for
the real one by the names the module reaches (synapse_internals.py, reach 12)."""

from __future__ import annotations

from unittest.mock import AsyncMock, Mock

import pytest
from synapse.module_api.errors import SynapseError

from appliance.synapse_module.federation.peer_directory import (
    MAX_DISPLAY_NAME,
    NOT_AN_AGENTS_PEER,
    PeerDirectory,
    own_users,
)
from appliance.synapse_module.federation.peers import FederationConfig, Network, Peer
from appliance.synapse_module.synapse_internals import SynapseInternals

LYON = Peer("lyon.test", "agents", "https://lyon.test/")
EXTERNALS = Peer("e.test", "externals", "https://e.test/")
AGENT, EXTERNAL = "@anne-ac-paris.fr:appliance.test", "@jean-gmail.com:appliance.test"
REMOTE = "@bob-ac-lyon.fr:lyon.test"


def found(user_id: str) -> dict:
    return {"user_id": user_id, "display_name": f"name of {user_id}", "avatar_url": None}


@pytest.fixture
def peer_directory(api, directory, run) -> PeerDirectory:
    hs = Mock()
    results = {"limited": False, "results": [found(REMOTE), found(EXTERNAL), found(AGENT)]}
    hs.get_datastores.return_value.main.search_user_dir = AsyncMock(return_value=results)
    api._hs = hs
    api.users.update({AGENT, EXTERNAL})
    run(directory.record(EXTERNAL, "jean@gmail.com"))
    network = Network(FederationConfig(mode="closed", peers=(LYON, EXTERNALS)), api.server_name)
    return PeerDirectory(api, network, directory, SynapseInternals(api))


def test_an_agents_peer_finds_this_servers_agents_only(run, peer_directory):
    answer = run(peer_directory.on_query({"origin": LYON.server_name, "term": "a", "limit": "5"}))
    assert answer == {"results": [found(AGENT)]}


@pytest.mark.parametrize("origin", [EXTERNALS.server_name, "outside.test", None])
def test_the_externals_server_and_other_servers_are_refused(run, peer_directory, origin):
    with pytest.raises(SynapseError) as refused:
        run(peer_directory.on_query({"origin": origin, "term": "anne"}))
    assert (refused.value.code, refused.value.msg) == (403, NOT_AN_AGENTS_PEER)


@pytest.mark.parametrize("term", ["", "   ", "x" * 101, None])
def test_a_term_that_is_missing_or_too_long_is_refused(run, peer_directory, term):
    with pytest.raises(SynapseError) as refused:
        run(peer_directory.on_query({"origin": LYON.server_name, "term": term}))
    assert (refused.value.code, refused.value.errcode) == (400, "M_INVALID_PARAM")


def test_an_external_here_asks_no_peer(run, peer_directory):
    assert run(peer_directory.peer_results(EXTERNAL, "bob", 10)) == []


def test_a_peers_answer_keeps_only_its_own_users_in_synapses_shape():
    answer = {
        "results": [
            {"user_id": REMOTE, "display_name": "Bob [ac-lyon.fr]", "avatar_url": "mxc://l/a"},
            {"user_id": AGENT, "display_name": "Anne"},  # another server's user: dropped
            {"user_id": "@eve:lyon.test", "display_name": 7, "avatar_url": "https://x/a.png"},
            "not a user",
        ]
    }
    assert own_users(LYON, answer) == [
        {"user_id": REMOTE, "display_name": "Bob [ac-lyon.fr]", "avatar_url": "mxc://l/a"},
        {"user_id": "@eve:lyon.test", "display_name": None, "avatar_url": None},
    ]
    assert own_users(LYON, {"results": "nothing"}) == []
    assert own_users(LYON, ["not", "an", "answer"]) == []


def test_a_peers_answer_keeps_only_valid_user_ids_and_short_display_names():
    answer = {
        "results": [
            {"user_id": "@:lyon.test", "display_name": "no localpart"},
            {"user_id": "@bad:lyon.test bad", "display_name": "no valid server"},
            {"user_id": "@" + "x" * 300 + ":lyon.test", "display_name": "too long"},
            {"user_id": "lyon.test", "display_name": "no sigil"},
            {"user_id": REMOTE, "display_name": "B" * 10_000},
        ]
    }
    assert own_users(LYON, answer) == [
        {"user_id": REMOTE, "display_name": "B" * MAX_DISPLAY_NAME, "avatar_url": None}
    ]
