# SPDX-License-Identifier: AGPL-3.0-or-later
"""A closed federation of appliances, with real servers federating over TLS on loopback
(fixtures: tests/federation_fixtures.py): two agents' servers, the externals' server and an
outsider none of them lists.  Each test sends what a client (or a hostile one) sends, then
reads the resulting state event by event on every server involved.
"""

from __future__ import annotations

import pytest
from federation_fixtures import (
    invites_of,
    join_when_invited,
    membership,
    texts,
    unique,
    wait_for,
)
from matrix_helpers import OPEN_TO_EXTERNALS, _path_part, refusal

from appliance.synapse_module.accounts.identity_lookup import NEEDS_INVITE
from appliance.synapse_module.federation.peers import (
    EXTERNAL_INVITED_INTO_PRIVATE,
    INVITE_INTO_PRIVATE,
    NOT_A_PEER_ROOM,
    NOT_A_PEER_USER,
    REMOTE_LEVEL,
    REMOTE_ROOM_BY_INVITATION,
)
from appliance.synapse_module.rooms.kinds import INVITE_ONLY
from appliance.synapse_module.rooms.rules import (
    EXTERNALS_CANNOT_CREATE,
    EXTERNALS_LEVEL,
    EXTERNALS_NO_FORUMS,
    EXTERNALS_NOT_IN_PRIVATE,
)


@pytest.fixture(scope="module")
def people(network):
    """An agent on each agents' server, the externals' server's staff agent and an external
    it invited by email, and a user of the outsider."""
    sam = network.externals.person(f"{unique('sam')}@staff.example")
    welcome = sam.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    eve_address = f"{unique('eve')}@partner.example"
    assert sam.invite_by_email(welcome, eve_address).status_code == 200
    eve = network.externals.person(eve_address)
    return {
        "alice": network.agents_a.person(f"{unique('alice')}@ac-paris.fr"),
        "bob": network.agents_b.person(f"{unique('bob')}@ac-lyon.fr"),
        "sam": sam,
        "eve": eve,
        "oscar": network.outsider.person(f"{unique('oscar')}@outside.example"),
    }


def test_the_externals_server_marks_its_invited_users_as_externals(people):
    eve = people["eve"]
    assert eve.client.display_name(eve.user_id, token=eve.token).endswith("(external)")
    assert refusal(eve.create_room(preset="private_chat")) == EXTERNALS_CANNOT_CREATE


# --- two agents' servers --------------------------------------------------------------------


def test_a_private_room_across_two_agents_servers(people):
    alice, bob = people["alice"], people["bob"]
    room = alice.new_room(preset="private_chat", name="Across")
    assert alice.invite(room, bob.user_id).status_code == 200
    response = join_when_invited(bob, room)
    assert response.status_code == 200, response.text
    assert alice.send_text(room, "from Paris").status_code == 200
    assert bob.send_text(room, "from Lyon").status_code == 200

    wait_for("both messages on B", lambda: len(texts(bob, room)) == 2)
    wait_for("both messages on A", lambda: len(texts(alice, room)) == 2)
    for person in (alice, bob):
        assert sorted(texts(person, room)) == sorted(
            [(alice.user_id, "from Paris"), (bob.user_id, "from Lyon")]
        )
        assert person.joined_members(room) == sorted([alice.user_id, bob.user_id])
    state = alice.state(room)
    assert state[("im.vector.room.access_rules", "")]["rule"] == "restricted"
    assert state[("m.room.join_rules", "")]["join_rule"] == "invite"
    assert bob.user_id not in state[("m.room.power_levels", "")].get("users", {})


def test_a_peers_agent_is_never_given_power_here(people):
    alice, bob = people["alice"], people["bob"]
    room = alice.new_room(preset="private_chat")
    assert alice.invite(room, bob.user_id).status_code == 200
    assert join_when_invited(bob, room).status_code == 200
    levels = alice.state(room)[("m.room.power_levels", "")]
    raised = {**levels, "users": {**levels.get("users", {}), bob.user_id: 100}}

    assert refusal(alice.put_state(room, "m.room.power_levels", raised)) == REMOTE_LEVEL
    assert bob.user_id not in alice.state(room)[("m.room.power_levels", "")].get("users", {})
    # Without power, the remote member cannot open the room from its own server either.
    response = bob.put_state(room, "m.room.join_rules", {"join_rule": "public"})
    assert response.status_code == 403, response.text
    assert alice.state(room)[("m.room.join_rules", "")]["join_rule"] == "invite"
    assert bob.state(room)[("m.room.join_rules", "")]["join_rule"] == "invite"


def test_a_room_created_with_a_peers_agent_as_moderator_is_refused(people):
    alice, bob = people["alice"], people["bob"]
    before = set(alice.joined_rooms())
    response = alice.create_room(
        preset="private_chat",
        invite=[bob.user_id],
        power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 50}},
    )
    assert refusal(response) == REMOTE_LEVEL
    assert set(alice.joined_rooms()) == before  # nothing half-created


def test_a_direct_chat_with_a_peers_agent_makes_no_remote_creator(people):
    # Element starts a direct chat with trusted_private_chat: its invitee would become a
    # creator with unlimited power (room version 12), out of this server's reach.
    alice, bob = people["alice"], people["bob"]
    room = alice.new_room(preset="trusted_private_chat", is_direct=True, invite=[bob.user_id])
    state = alice.state(room)
    assert bob.user_id not in state[("m.room.create", "")].get("additional_creators", [])
    assert bob.user_id not in state[("m.room.power_levels", "")].get("users", {})
    assert state[("im.vector.room.access_rules", "")]["rule"] == "direct"
    assert join_when_invited(bob, room).status_code == 200
    assert alice.joined_members(room) == sorted([alice.user_id, bob.user_id])


def test_a_remote_member_of_a_direct_chat_cannot_bring_a_third_person(people, network):
    # The third person's invite would be made on bob's server, out of this module's sight:
    # bob has no power in alice's direct chat, so his own server's auth rules refuse it.
    alice, bob = people["alice"], people["bob"]
    carol = network.agents_a.person(f"{unique('carol')}@ac-paris.fr")
    room = alice.new_room(preset="trusted_private_chat", is_direct=True, invite=[bob.user_id])
    assert join_when_invited(bob, room).status_code == 200
    response = bob.invite(room, carol.user_id)
    assert response.status_code == 403, response.text
    assert membership(alice, room, carol.user_id) is None
    assert room not in invites_of(carol)
    assert alice.joined_members(room) == sorted([alice.user_id, bob.user_id])


def test_a_remote_member_cannot_open_a_private_room_from_their_server(people, network):
    # bob is a moderator of a room on B; alice of A joins it: B's own rules keep its kind.
    alice, bob = people["alice"], people["bob"]
    room = bob.new_room(preset="private_chat")
    assert bob.invite(room, alice.user_id).status_code == 200
    assert join_when_invited(alice, room).status_code == 200
    assert refusal(bob.put_state(room, "m.room.join_rules", {"join_rule": "public"})) == (
        INVITE_ONLY
    )
    assert alice.state(room)[("m.room.join_rules", "")]["join_rule"] == "invite"


def test_an_agent_lists_and_joins_a_forum_of_a_peer(people, network):
    alice, bob = people["alice"], people["bob"]
    name = unique("Paris forum")
    forum = alice.new_room(preset="public_chat", visibility="public", name=name)
    body = {"limit": 100, "filter": {"generic_search_term": name}}
    params = {"server": network.agents_a.server_name}

    def listed() -> list[dict]:
        response = bob.call("POST", "/_matrix/client/v3/publicRooms", body, params=params)
        assert response.status_code == 200, response.text
        return [room for room in response.json()["chunk"] if room["room_id"] == forum]

    (entry,) = wait_for("the forum in A's directory, seen from B", listed)
    assert entry["name"] == name and entry["join_rule"] == "public"
    path = f"/_matrix/client/v3/join/{_path_part(forum)}"
    assert bob.call("POST", path, {}, params={"server_name": params["server"]}).status_code == 200
    assert bob.send_text(forum, "hello Paris").status_code == 200
    wait_for("bob's message on A", lambda: (bob.user_id, "hello Paris") in texts(alice, forum))
    assert alice.joined_members(forum) == sorted([alice.user_id, bob.user_id])
    assert bob.user_id not in alice.state(forum)[("m.room.power_levels", "")].get("users", {})


# --- the externals' server ------------------------------------------------------------------


def test_an_external_of_the_externals_server_joins_a_room_open_to_externals(people):
    alice, eve = people["alice"], people["eve"]
    room = alice.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    assert alice.invite(room, eve.user_id).status_code == 200
    assert join_when_invited(eve, room).status_code == 200
    assert eve.send_text(room, "hello from outside").status_code == 200
    wait_for(
        "eve's message on A",
        lambda: (eve.user_id, "hello from outside") in texts(alice, room),
    )
    assert alice.joined_members(room) == sorted([alice.user_id, eve.user_id])
    # An external is never given power, remote or not.
    levels = alice.state(room)[("m.room.power_levels", "")]
    raised = {**levels, "users": {**levels.get("users", {}), eve.user_id: 50}}
    assert refusal(alice.put_state(room, "m.room.power_levels", raised)) == EXTERNALS_LEVEL


def test_an_external_of_the_externals_server_is_refused_in_a_private_room(people):
    alice, eve = people["alice"], people["eve"]
    room = alice.new_room(preset="private_chat")
    assert refusal(alice.invite(room, eve.user_id)) == EXTERNALS_NOT_IN_PRIVATE
    assert membership(alice, room, eve.user_id) is None
    assert room not in invites_of(eve)
    # Nor at creation, the way Element invites while creating.
    before = set(alice.joined_rooms())
    response = alice.create_room(preset="private_chat", invite=[eve.user_id])
    assert refusal(response) == EXTERNALS_NOT_IN_PRIVATE
    assert set(alice.joined_rooms()) == before


def test_no_user_of_the_externals_server_joins_a_forum(people, network):
    alice, eve, sam = people["alice"], people["eve"], people["sam"]
    forum = alice.new_room(preset="public_chat", visibility="public", name=unique("Forum"))
    path = f"/_matrix/client/v3/join/{_path_part(forum)}"
    params = {"server_name": network.agents_a.server_name}
    # eve is an external on her own server, which stops her there.
    assert refusal(eve.call("POST", path, {}, params=params)) == REMOTE_ROOM_BY_INVITATION
    # sam is an agent on his own server, which lets him ask: alice's server refuses the
    # make_join (its room rules judge the join it would template).
    assert refusal(sam.call("POST", path, {}, params=params)) == EXTERNALS_NO_FORUMS
    for user in (eve.user_id, sam.user_id):
        assert membership(alice, forum, user) is None
    assert alice.joined_members(forum) == [alice.user_id]


def test_an_external_cannot_invite_even_into_a_room_open_to_externals(people):
    # bob's room open to externals, where bob invited eve: inviting needs a moderator (Tchap's
    # levels) and an external is never given power, so eve cannot bring alice in; bob can.
    alice, bob, eve = people["alice"], people["bob"], people["eve"]
    room = bob.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    assert bob.invite(room, eve.user_id).status_code == 200
    assert join_when_invited(eve, room).status_code == 200
    refused = eve.invite(room, alice.user_id)
    assert (refused.status_code, refused.json()["errcode"]) == (403, "M_FORBIDDEN")
    assert room not in invites_of(alice)
    assert bob.invite(room, alice.user_id).status_code == 200
    assert join_when_invited(alice, room).status_code == 200
    wait_for(
        "three members seen from B",
        lambda: bob.joined_members(room) == sorted([alice.user_id, bob.user_id, eve.user_id]),
    )


def test_a_user_of_the_externals_server_cannot_invite_into_a_private_room(people):
    # sam is an agent on the externals' server, so it lets him make a private room and invite:
    # to every other server of the network he is an external, refused there.
    alice, sam = people["alice"], people["sam"]
    private = sam.new_room(preset="private_chat")
    response = sam.invite(private, alice.user_id)
    # Refused by alice's server, whose reason travels back through sam's.
    assert refusal(response) == INVITE_INTO_PRIVATE
    assert private not in invites_of(alice)
    assert membership(sam, private, alice.user_id) is None
    # The same invitation into a room open to externals reaches alice.
    open_room = sam.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    assert sam.invite(open_room, alice.user_id).status_code == 200
    assert join_when_invited(alice, open_room).status_code == 200


def test_a_local_external_is_kept_out_of_a_peers_private_room(people, network):
    # bob's server counts every user of an agents' peer as an agent: only alice's server knows
    # that xavier is an external here, and refuses the invitation bob's server sends.
    # (An external of A made before the network had an externals' server.)
    bob = people["bob"]
    xavier = network.agents_a.legacy_external(f"{unique('xavier')}@elsewhere.example")
    assert xavier.client.display_name(xavier.user_id, token=xavier.token).endswith("(external)")

    private = bob.new_room(preset="private_chat")
    assert refusal(bob.invite(private, xavier.user_id)) == EXTERNAL_INVITED_INTO_PRIVATE
    assert membership(bob, private, xavier.user_id) is None
    assert private not in invites_of(xavier)

    forum = bob.new_room(preset="public_chat", visibility="public", name=unique("Forum"))
    path = f"/_matrix/client/v3/join/{_path_part(forum)}"
    response = xavier.call("POST", path, {}, params={"server_name": network.agents_b.server_name})
    assert refusal(response) == REMOTE_ROOM_BY_INVITATION
    assert bob.joined_members(forum) == [bob.user_id]

    open_room = bob.new_room(preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    assert bob.invite(open_room, xavier.user_id).status_code == 200
    assert join_when_invited(xavier, open_room).status_code == 200
    assert bob.joined_members(open_room) == sorted([bob.user_id, xavier.user_id])


# --- an address belongs to one server ---------------------------------------------------------


def test_info_sends_every_address_to_the_server_that_owns_its_domain(network):
    a, b, e = network.agents_a, network.agents_b, network.externals
    for server in (a, b, e):
        for owner, address in ((a, "jean.dupont@ac-paris.fr"), (b, "marie.curie@ac-lyon.fr")):
            response = server.client.identity_info(address)
            assert response.status_code == 200, response.text
            if owner is server:
                assert response.json() == {"hs": owner.server_name}
            else:
                assert response.json() == {
                    "hs": owner.server_name,
                    "base_url": owner.plan.base_url,
                }
    # An address of no server's domain: an invitation, on the network's externals' server.
    response = a.client.identity_info("paul@elsewhere.example")
    assert response.json() == {
        "hs": e.server_name,
        "base_url": e.plan.base_url,
        "requires_invite": True,
        "reason": "the domain elsewhere.example belongs to no server of the network: "
        + NEEDS_INVITE,
    }


def test_a_domain_added_live_on_one_server_reaches_the_others_info(network):
    a, b = network.agents_a, network.agents_b
    domain = f"{unique('new')}.example"
    address = f"jeanne@{domain}"
    assert b.client.identity_info(address).json()["hs"] == network.externals.server_name
    response = a.admin("PUT", f"/_synapse/client/appliance/v1/domains/{domain}", {})
    assert response.status_code in (200, 201), response.text
    # What A publishes for its peers...
    published = a.client.get("/_synapse/client/appliance/v1/network/domains").json()
    assert published["server_name"] == a.server_name and domain in published["domains"]
    # ...reaches B's answer (fetched every 2 s in these tests, 30 s by default).
    wait_for(
        "the new domain in B's /info",
        lambda: b.client.identity_info(address).json().get("hs") == a.server_name,
        timeout=60,
    )
    assert b.client.identity_info(address).json() == {
        "hs": a.server_name,
        "base_url": a.plan.base_url,
    }
    assert b.client.request_token("register", address).status_code == 403


def test_an_address_of_a_peer_registers_only_on_that_peer(people, network):
    a, alice = network.agents_a, people["alice"]
    address = f"{unique('lucie')}@ac-lyon.fr"
    response = a.client.request_token("register", address)
    assert response.status_code == 403, response.text
    assert response.json()["errcode"] == "M_THREEPID_DENIED"
    # An invitation by email does not make it register here either: the mail sends it to its
    # own server (tests/test_federation_invites.py).
    room = alice.new_room(preset="private_chat")
    answer = alice.invite_by_email(room, address)
    assert answer.status_code == 200, answer.text
    assert answer.json()["server"] == network.agents_b.server_name
    assert a.client.request_token("register", address).status_code == 403
    # On its own server, the same address registers.
    lucie = network.agents_b.person(address)
    assert lucie.user_id.endswith(":" + network.agents_b.server_name)


# --- a server that is not a peer ------------------------------------------------------------


def test_an_outsider_cannot_invite_an_agent(people):
    alice, oscar = people["alice"], people["oscar"]
    room = oscar.new_room(preset="private_chat")
    response = oscar.invite(room, alice.user_id)
    assert response.status_code == 403, response.text
    assert room not in invites_of(alice)
    assert membership(oscar, room, alice.user_id) is None


def test_an_agent_cannot_invite_an_outsider(people):
    alice, oscar = people["alice"], people["oscar"]
    room = alice.new_room(preset="private_chat")
    assert refusal(alice.invite(room, oscar.user_id)) == NOT_A_PEER_USER
    assert membership(alice, room, oscar.user_id) is None
    before = set(alice.joined_rooms())
    assert refusal(alice.create_room(preset="private_chat", invite=[oscar.user_id])) == (
        NOT_A_PEER_USER
    )
    assert set(alice.joined_rooms()) == before
    assert room not in invites_of(oscar)


def test_an_outsider_cannot_join_a_forum(people, network):
    alice, oscar = people["alice"], people["oscar"]
    forum = alice.new_room(preset="public_chat", visibility="public", name=unique("Forum"))
    path = f"/_matrix/client/v3/join/{_path_part(forum)}"
    response = oscar.call("POST", path, {}, params={"server_name": network.agents_a.server_name})
    assert response.status_code in (403, 404), response.text
    assert oscar.user_id not in alice.joined_members(forum)
    assert membership(alice, forum, oscar.user_id) is None


def test_an_agent_cannot_join_an_outsiders_forum(people, network):
    alice, oscar = people["alice"], people["oscar"]
    forum = oscar.new_room(preset="public_chat", visibility="public", name=unique("Outside"))
    path = f"/_matrix/client/v3/join/{_path_part(forum)}"
    response = alice.call("POST", path, {}, params={"server_name": network.outsider.server_name})
    # A version 12 room ID names no server: the module cannot tell whose room it is, and
    # Synapse's allowlist refuses to ask the outsider (a generic answer, from Synapse).
    assert response.status_code == 502, response.text
    assert response.json()["error"] == "Failed to make_join via any server"
    assert forum not in alice.joined_rooms()
    assert oscar.joined_members(forum) == [oscar.user_id]


def test_an_agent_cannot_join_an_outsiders_room_that_names_its_server(people, network):
    # Room IDs before version 12 name their server: the module refuses before Synapse asks.
    alice = people["alice"]
    # The outsider runs the module too, whose rooms are version 12: its admin makes the old one.
    created = network.outsider.admin(
        "POST",
        "/_matrix/client/v3/createRoom",
        {"preset": "public_chat", "name": unique("Old"), "room_version": "10"},
    )
    assert created.status_code == 200, created.text
    forum = created.json()["room_id"]
    assert forum.endswith(":" + network.outsider.server_name)
    path = f"/_matrix/client/v3/join/{_path_part(forum)}"
    response = alice.call("POST", path, {}, params={"server_name": network.outsider.server_name})
    assert refusal(response) == NOT_A_PEER_ROOM
    assert forum not in alice.joined_rooms()


def test_an_outsider_can_query_nothing(people, network):
    alice, oscar = people["alice"], people["oscar"]
    # Profiles, both ways.
    assert oscar.call("GET", f"/_matrix/client/v3/profile/{alice.user_id}").status_code != 200
    assert alice.call("GET", f"/_matrix/client/v3/profile/{oscar.user_id}").status_code != 200
    # Room directories, both ways.
    for person, server in ((alice, network.outsider), (oscar, network.agents_a)):
        response = person.call(
            "POST",
            "/_matrix/client/v3/publicRooms",
            {"limit": 10},
            params={"server": server.server_name},
        )
        assert response.status_code != 200, response.text
    # A peer's directory answers (the same request, to a peer).
    response = alice.call(
        "POST",
        "/_matrix/client/v3/publicRooms",
        {"limit": 10},
        params={"server": network.agents_b.server_name},
    )
    assert response.status_code == 200, response.text
