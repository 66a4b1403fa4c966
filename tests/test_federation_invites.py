# SPDX-License-Identifier: AGPL-3.0-or-later
"""Inviting across the network by email address, and direct chats opened with an address, on
real servers federating over TLS (tests/federation_fixtures.py): an address of a peer's domain
reaches that person's account on its own server, asked of that server over federation; without
an account, the mail names the server to register on; a direct chat keeps its two people.  An
unknown address is invited on the network's externals' server:
tests/test_federation_externals_invites.py.
"""

from __future__ import annotations

import pytest
from federation_fixtures import (
    identity_token,
    invites_of,
    join_when_invited,
    membership,
    unique,
    wait_for,
)
from matrix_helpers import Person, plain_text, refusal

from appliance.synapse_module.rooms.kinds import DIRECT_FULL

THIRD_PARTY_INVITE = "m.room.third_party_invite"


_ADDRESSES: dict[str, str] = {}  # user ID -> the address it registered with


def registered(server, prefix: str, domain: str) -> Person:
    address = f"{unique(prefix)}@{domain}"
    person = server.person(address)
    _ADDRESSES[person.user_id] = address
    return person


def address_of(person: Person) -> str:
    return _ADDRESSES[person.user_id]


@pytest.fixture(scope="module")
def people(network):
    """An agent of each agents' server: alice of ac-paris.fr on A, bob of ac-lyon.fr on B."""
    return {
        "alice": registered(network.agents_a, "alice", "ac-paris.fr"),
        "bob": registered(network.agents_b, "bob", "ac-lyon.fr"),
    }


def pending_email_invites(person: Person, room_id: str) -> list[dict]:
    """The room's email invitations still pending (a revoked one has an empty content)."""
    return [c for (kind, _), c in person.state(room_id).items() if kind == THIRD_PARTY_INVITE if c]


# --- point 4: inviting by email across the network ------------------------------------------


def test_an_email_invite_of_a_peers_agent_reaches_their_account_there(people, network):
    alice, bob = people["alice"], people["bob"]
    room = alice.new_room(preset="private_chat", name=unique("Across by email"))

    answer = alice.invite_by_email(room, address_of(bob))

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "room_id": room,
        "email": address_of(bob),
        "user_id": bob.user_id,
        "pending": False,
        "server": network.agents_b.server_name,
    }
    # A Matrix invite over federation, not an external here: no mail, no pending invitation.
    assert membership(alice, room, bob.user_id) == "invite"
    assert join_when_invited(bob, room).status_code == 200
    assert alice.joined_members(room) == sorted([alice.user_id, bob.user_id])
    assert network.agents_a.client.mails_to(address_of(bob)) == []
    assert pending_email_invites(alice, room) == []
    lookup = network.agents_a.client.user_of_email(address_of(bob), network.agents_a.admin_token)
    assert lookup.status_code == 404, lookup.text  # no account for it on A


def test_the_identity_service_maps_a_peers_address_to_its_account_there(people, network):
    # What Synapse asks before a standard client's email invite: with a Matrix ID in the
    # answer, Synapse sends an ordinary invite, over federation.
    alice, bob = people["alice"], people["bob"]
    token = identity_token(network.agents_a, alice)
    nobody = f"{unique('nobody')}@ac-lyon.fr"
    response = network.agents_a.client.request(
        "POST",
        "/_matrix/identity/v2/lookup",
        token=token,
        json={
            "algorithm": "none",
            "pepper": "appliance",
            "addresses": [f"{address_of(bob)} email", f"{nobody} email"],
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"mappings": {f"{address_of(bob)} email": bob.user_id}}


def test_a_peers_address_without_an_account_is_mailed_the_server_to_register_on(people, network):
    alice, a, b = people["alice"], network.agents_a, network.agents_b
    address = f"{unique('lucie')}@ac-lyon.fr"
    room = alice.new_room(preset="private_chat", name=unique("Waiting"))

    answer = alice.invite_by_email(room, address)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "room_id": room,
        "email": address,
        "user_id": None,
        "pending": True,
        "server": b.server_name,
    }
    (mail,) = wait_for("the invitation mail", lambda: a.client.mails_to(address))
    text = plain_text(mail)
    assert f"{b.server_name} ({b.plan.base_url})" in text
    # It registers on its own server only.
    refused = a.client.request_token("register", address)
    assert (refused.status_code, refused.json()["errcode"]) == (403, "M_THREEPID_DENIED")
    lucie = b.person(address)
    assert lucie.user_id.endswith(":" + b.server_name)
    # A learns of the account from B (asked every 2 s in these tests) and invites it.
    assert join_when_invited(lucie, room).status_code == 200
    assert alice.joined_members(room) == sorted([alice.user_id, lucie.user_id])
    assert pending_email_invites(alice, room) == []
    # From now on, the same invite reaches the account on B at once.
    other = alice.new_room(preset="private_chat")
    assert alice.invite_by_email(other, address).json()["user_id"] == lucie.user_id
    assert join_when_invited(lucie, other).status_code == 200


def test_a_peer_that_cannot_be_asked_stops_the_invitation(people, network):
    # The peer that is down owns down.example: nobody can tell whether the address has an
    # account there, so nothing is mailed (fail closed).
    alice, a = people["alice"], network.agents_a
    address = f"{unique('dan')}@down.example"
    room = alice.new_room(preset="private_chat")

    answer = alice.invite_by_email(room, address)

    assert answer.status_code == 502, answer.text
    assert answer.json()["errcode"] == "M_UNKNOWN"
    assert network.down.server_name in answer.json()["error"]
    assert a.client.mails_to(address) == []
    assert pending_email_invites(alice, room) == []


def test_the_outsider_cannot_ask_which_account_holds_an_address(people, network):
    # The query is the module's own federation query: a server that is not a peer is refused
    # by the allowlist (and by the module, should the allowlist let it through).
    bob = people["bob"]
    oscar = network.outsider.person(f"{unique('oscar')}@outside.example")
    room = oscar.new_room(preset="private_chat")
    answer = oscar.invite_by_email(room, address_of(bob))
    # The outsider lists B as a peer, but B does not list it: B never answers.
    assert answer.status_code == 502, answer.text
    assert room not in invites_of(bob)


def test_the_externals_server_cannot_ask_which_account_holds_an_address(people, network):
    # The externals' server is a peer, but not one that invites agents by email: B refuses its
    # account query, so its staff agent's invitation of bob's address fails closed.
    bob = people["bob"]
    sam = network.externals.person(f"{unique('sam')}@staff.example")
    room = sam.new_room(preset="private_chat")
    answer = sam.invite_by_email(room, address_of(bob))
    assert answer.status_code == 502, answer.text
    assert network.agents_b.server_name in answer.json()["error"]
    assert room not in invites_of(bob)


# --- point 5: a direct chat opened with an address ------------------------------------------


def test_a_direct_chat_opened_with_a_peers_address_holds_two_people(people, network):
    alice, bob = people["alice"], people["bob"]
    carol = registered(network.agents_a, "carol", "ac-paris.fr")
    room = alice.new_room(preset="trusted_private_chat", is_direct=True)

    answer = alice.invite_by_email(room, address_of(bob))

    assert answer.status_code == 200, answer.text
    assert answer.json()["user_id"] == bob.user_id
    assert join_when_invited(bob, room).status_code == 200
    assert alice.joined_members(room) == sorted([alice.user_id, bob.user_id])
    # Two people: no third, by address or by Matrix ID.
    assert refusal(alice.invite_by_email(room, address_of(carol))) == DIRECT_FULL
    assert refusal(alice.invite(room, carol.user_id)) == DIRECT_FULL
    assert room not in invites_of(carol)


def test_a_direct_chat_with_a_peers_address_without_account_lands_once_registered(people, network):
    alice, b = people["alice"], network.agents_b
    address = f"{unique('hugo')}@ac-lyon.fr"
    room = alice.new_room(preset="trusted_private_chat", is_direct=True)

    answer = alice.invite_by_email(room, address)

    assert answer.status_code == 200, answer.text
    assert (answer.json()["pending"], answer.json()["server"]) == (True, b.server_name)
    assert refusal(alice.invite(room, people["bob"].user_id)) == DIRECT_FULL
    hugo = b.person(address)
    assert join_when_invited(hugo, room).status_code == 200
    assert alice.joined_members(room) == sorted([alice.user_id, hugo.user_id])
    assert pending_email_invites(alice, room) == []
