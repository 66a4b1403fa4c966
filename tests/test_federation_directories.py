# SPDX-License-Identifier: AGPL-3.0-or-later
"""Finding people and forums across the network, on real servers federating over TLS
(tests/federation_fixtures.py): an agent finds a peer's agent by name or address from the
user directory (the peer asked over federation), never a peer's external; externals, the
externals' server and a server that is not a peer find nobody that way; a peer's forum is
found in its directory and joined by its address.
"""

from __future__ import annotations

import pytest
from federation_fixtures import texts, unique, wait_for
from matrix_helpers import Person, _path_part, refusal

from appliance.synapse_module.federation.room_lists import (
    EXTERNALS_NO_REMOTE_FORUMS,
    NOT_A_PEER_DIRECTORY,
)


@pytest.fixture(scope="module")
def people(network):
    """Fresh people (they share no room): agents of A and B, an external of each, and users
    of the externals' server and of the outsider."""
    alice_address = f"{unique('alice')}@ac-paris.fr"
    bob_address = f"{unique('bob')}@ac-lyon.fr"
    alice = network.agents_a.person(alice_address)
    bob = network.agents_b.person(bob_address)
    # An external of B and one of A, made before the network had an externals' server.
    ext_b = network.agents_b.legacy_external(f"{unique('extb')}@partner.example")
    ext_a = network.agents_a.legacy_external(f"{unique('exta')}@partner.example")
    return {
        "alice": alice,
        "bob": bob,
        "bob_address": bob_address,
        "ext_a": ext_a,
        "ext_b": ext_b,
        "sam": network.externals.person(f"{unique('sam')}@staff.example"),
        "oscar": network.outsider.person(f"{unique('oscar')}@outside.example"),
    }


def localpart_word(person: Person) -> str:
    """The random word of the person's ID (``bob.3fa2c1-ac-lyon.fr`` gives ``3fa2c1``)."""
    return person.user_id[1:].split("-", 1)[0].split(".", 1)[1]


def test_an_agent_finds_a_peers_agent_by_name_and_by_address(people):
    alice, bob = people["alice"], people["bob"]
    # By a word of the name (Synapse's directory holds "Bob 3fa2c1 [ac-lyon.fr]").
    assert alice.search_users(localpart_word(bob)) == [bob.user_id]
    # By the address, as typed in Element's "Start chat".
    assert bob.user_id in alice.search_users(people["bob_address"])
    response = alice.call(
        "POST",
        "/_matrix/client/v3/user_directory/search",
        {"search_term": localpart_word(bob), "limit": 10},
    )
    (found,) = response.json()["results"]
    assert found["display_name"].endswith("[ac-lyon.fr]")


def test_a_peers_external_is_never_found_by_its_agents_peers(people):
    alice, ext_b = people["alice"], people["ext_b"]
    assert ext_b.user_id not in alice.search_users(localpart_word(ext_b))
    # B's own agents find it (it shares a room with bob; agents find everyone).
    assert people["bob"].search_users(localpart_word(ext_b)) == [ext_b.user_id]


def test_an_external_finds_no_agent_of_a_peer(people):
    ext_a, bob = people["ext_a"], people["bob"]
    assert ext_a.search_users(localpart_word(bob)) == []
    # ...while alice, an agent of the same server, does.
    assert people["alice"].search_users(localpart_word(bob)) == [bob.user_id]


def test_the_externals_server_and_an_outsider_find_no_agent_of_the_network(people):
    bob = people["bob"]
    # The externals' server lists A and B as agents' peers and asks them: both refuse it.
    assert people["sam"].search_users(localpart_word(bob)) == []
    # The outsider lists them too; neither lists it, so their allowlists refuse it.
    assert people["oscar"].search_users(localpart_word(bob)) == []


def test_an_agent_finds_a_peers_forum_and_joins_it_by_its_address(people, network):
    alice, bob = people["alice"], people["bob"]
    alias_name = unique("lyon-forum").replace(".", "-")
    name = unique("Forum de Lyon")
    forum = bob.new_room(
        preset="public_chat", visibility="public", name=name, room_alias_name=alias_name
    )
    alias = f"#{alias_name}:{network.agents_b.server_name}"
    body = {"limit": 10, "filter": {"generic_search_term": name}}
    params = {"server": network.agents_b.server_name}

    def found() -> list[dict]:
        response = alice.call("POST", "/_matrix/client/v3/publicRooms", body, params=params)
        assert response.status_code == 200, response.text
        return response.json()["chunk"]

    (entry,) = wait_for("the forum in B's directory, searched from A", found)
    assert (entry["room_id"], entry["canonical_alias"]) == (forum, alias)
    response = alice.call("POST", f"/_matrix/client/v3/join/{_path_part(alias)}", {})
    assert response.status_code == 200, response.text
    assert response.json()["room_id"] == forum
    assert alice.send_text(forum, "bonjour Lyon").status_code == 200
    wait_for("alice's message on B", lambda: (alice.user_id, "bonjour Lyon") in texts(bob, forum))


def test_only_agents_browse_the_forums_of_peers_only(people, network):
    alice, ext_a = people["alice"], people["ext_a"]
    peer = {"server": network.agents_b.server_name}
    outsider = {"server": network.outsider.server_name}
    path = "/_matrix/client/v3/publicRooms"
    for method, body in (("GET", None), ("POST", {"limit": 10})):
        assert alice.call(method, path, body, params=peer).status_code == 200
        # An external of A, whatever the server: Synapse never asks it.
        refused = ext_a.call(method, path, body, params=peer)
        assert refusal(refused) == EXTERNALS_NO_REMOTE_FORUMS
        # A server that is not a peer: refused with the reason, before Synapse tries.
        assert refusal(alice.call(method, path, body, params=outsider)) == NOT_A_PEER_DIRECTORY
