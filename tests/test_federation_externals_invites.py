# SPDX-License-Identifier: AGPL-3.0-or-later
"""An unknown address invited on the network's externals' server (issue 13, points 4 and 5), on
real servers federating over TLS (tests/federation_fixtures.py: agents A and B, externals E).

An agent of A invites an address of no domain of the network: A relays the invitation to E's
identity service (an OpenID token of the inviter, checked by E with A over federation), E
stores and mails it with its own registration link, and the room on A gets a
``m.room.third_party_invite`` with E's token and key.  The person registers on E; E tells A
(``3pid/onbind``, signed with E's key) and A's Synapse invites ``@them:E`` over federation.
The room kinds' rules hold on A; a direct chat keeps its two people; E down stops the invitation
with a clear error and nothing made anywhere.  Without an externals' server, externals are made
on the inviting server (tests/test_externals.py).
"""

from __future__ import annotations

import pytest
from federation_fixtures import identity_token, join_when_invited, texts, unique, wait_for
from matrix_helpers import OPEN_TO_EXTERNALS, Person, plain_text, refusal

from appliance.synapse_module.externals.invitation_mail import PAGE_PATH
from appliance.synapse_module.federation.externals_relay import UNREACHABLE
from appliance.synapse_module.federation.peer_accounts import PEER_UNREACHABLE
from appliance.synapse_module.rooms.kinds import DIRECT_FULL

THIRD_PARTY_INVITE = "m.room.third_party_invite"
INVITATIONS = "/_synapse/client/appliance/v1/invitations"


@pytest.fixture(scope="module")
def alice(network) -> Person:
    return network.agents_a.person(f"{unique('alice')}@ac-paris.fr")


def email_invites(person: Person, room_id: str) -> dict[str, dict]:
    """The room's m.room.third_party_invite events (token -> content), as its server has them."""
    return {
        key: c for (kind, key), c in person.state(room_id).items() if kind == THIRD_PARTY_INVITE
    }


def identity_key(server) -> str:
    response = server.client.get("/_matrix/identity/v2/pubkey/ed25519:0")
    assert response.status_code == 200, response.text
    return response.json()["public_key"]


def invitations_of(server, address: str) -> list[dict]:
    """The invitations of this address the server keeps (its administrators' view)."""
    response = server.admin("GET", f"{INVITATIONS}?status=all&limit=100")
    assert response.status_code == 200, response.text
    return [i for i in response.json()["invitations"] if i["address"] == address]


def test_an_unknown_address_is_invited_on_the_externals_server(alice, network):
    a, e = network.agents_a, network.externals
    address = f"{unique('paul')}@elsewhere.example"
    room = alice.new_room(name=unique("Partners"), initial_state=OPEN_TO_EXTERNALS)

    answer = alice.invite_by_email(room, address)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "room_id": room,
        "email": address,
        "user_id": None,
        "pending": True,
        "server": e.server_name,
    }
    # The room's third-party invite is E's: its token and its key, which A's rules accepted.
    ((token, invite),) = email_invites(alice, room).items()
    assert invite["display_name"] == f"{address[0]}...@elsewhere.example"
    assert invite["public_key"] == identity_key(e) != identity_key(a)
    assert invite["key_validity_url"].startswith(e.plan.base_url)
    # Stored and mailed by E, with E's link; nothing of it on A.
    (stored,) = invitations_of(e, address)
    assert (stored["id"], stored["room_id"], stored["status"]) == (token, room, "pending")
    assert stored["inviter"] == alice.user_id
    (mail,) = wait_for("the invitation mail from E", lambda: e.client.mails_to(address))
    text = plain_text(mail)
    assert f"{e.server_name} ({e.plan.base_url})" in text
    assert e.plan.base_url.rstrip("/") + PAGE_PATH in text
    assert invitations_of(a, address) == [] and a.client.mails_to(address) == []
    # The address registers on E (its invitation lets it), never on A.
    refused = a.client.request_token("register", address)
    assert (refused.status_code, refused.json()["errcode"]) == (403, "M_THREEPID_DENIED")
    paul = e.person(address)
    assert paul.user_id.endswith(":" + e.server_name)
    # E told A (3pid/onbind); A's Synapse turned the third-party invite into an invite of paul.
    assert join_when_invited(paul, room).status_code == 200
    member = alice.state(room)[("m.room.member", paul.user_id)]
    assert member["membership"] == "join"
    assert alice.joined_members(room) == sorted([alice.user_id, paul.user_id])
    (used,) = invitations_of(e, address)
    assert (used["status"], used["user_id"]) == ("used", paul.user_id)
    assert paul.client.display_name(paul.user_id, token=paul.token).endswith("(external)")
    # And paul reads what is said there.
    assert alice.send_text(room, "Bienvenue").status_code == 200
    wait_for("paul reading the message", lambda: (alice.user_id, "Bienvenue") in texts(paul, room))

    # Invited again, into another room, the address is now paul's account on E: no mail.
    mails = len(e.client.mails_to(address))  # the invitation, the registration's check
    other = alice.new_room(initial_state=OPEN_TO_EXTERNALS)
    again = alice.invite_by_email(other, address)
    assert again.status_code == 200, again.text
    assert (again.json()["user_id"], again.json()["pending"]) == (paul.user_id, False)
    assert join_when_invited(paul, other).status_code == 200
    assert len(e.client.mails_to(address)) == mails
    # The identity service's lookup (a standard client's, then Synapse's) finds him on E too.
    lookup = a.client.request(
        "POST",
        "/_matrix/identity/v2/lookup",
        token=identity_token(a, alice),
        json={"algorithm": "none", "pepper": "appliance", "addresses": [f"{address} email"]},
    )
    assert lookup.status_code == 200, lookup.text
    assert lookup.json() == {"mappings": {f"{address} email": paul.user_id}}


@pytest.mark.parametrize(
    "kind", [{"preset": "private_chat"}, {"preset": "public_chat", "visibility": "public"}]
)
def test_an_unknown_address_into_a_private_room_or_a_forum_is_refused_on_the_inviting_server(
    alice, network, kind
):
    address = f"{unique('ines')}@elsewhere.example"
    room = alice.new_room(name=unique("Not open"), **kind)

    message = refusal(alice.invite_by_email(room, address))

    assert "Only a room open to externals" in message
    assert email_invites(alice, room) == {}
    assert invitations_of(network.externals, address) == []
    assert network.externals.client.mails_to(address) == []


def test_a_direct_chat_with_an_unknown_address_keeps_two_people(alice, network):
    a, b, e = network.agents_a, network.agents_b, network.externals
    address = f"{unique('jules')}@partner.example"
    bob = b.person(f"{unique('bob')}@ac-lyon.fr")
    room = alice.new_room(preset="trusted_private_chat", is_direct=True)

    answer = alice.invite_by_email(room, address)

    assert answer.status_code == 200, answer.text
    assert (answer.json()["pending"], answer.json()["server"]) == (True, e.server_name)
    # The pending invitation is the second person: nobody else comes in, by ID or by address,
    # and the second address is refused on A before E mails anyone.
    assert refusal(alice.invite(room, bob.user_id)) == DIRECT_FULL
    second = f"{unique('x')}@partner.example"
    assert refusal(alice.invite_by_email(room, second)) == DIRECT_FULL
    assert invitations_of(e, second) == []
    jules = e.person(address)
    assert join_when_invited(jules, room).status_code == 200
    assert alice.joined_members(room) == sorted([alice.user_id, jules.user_id])
    carol = a.person(f"{unique('carol')}@ac-paris.fr")
    assert refusal(alice.invite(room, carol.user_id)) == DIRECT_FULL
    assert refusal(alice.invite_by_email(room, second)) == DIRECT_FULL


def test_a_standard_clients_email_invite_is_stored_on_the_externals_server(alice, network):
    # Element's door: the client names this server's identity service and Synapse calls its
    # store-invite over HTTPS (A's TLS listener here), which relays to E: the room's
    # third-party invite is E's, and the person lands in the room once registered there.
    a, e = network.agents_a, network.externals
    address = f"{unique('lea')}@elsewhere.example"
    room = alice.new_room(initial_state=OPEN_TO_EXTERNALS)
    invite = {
        "id_server": a.server_name,
        "id_access_token": identity_token(a, alice),
        "medium": "email",
    }

    response = alice.call(
        "POST", f"/_matrix/client/v3/rooms/{room}/invite", {**invite, "address": address}
    )

    assert response.status_code == 200, response.text
    ((token, content),) = email_invites(alice, room).items()
    assert content["public_key"] == identity_key(e)
    assert [i["id"] for i in invitations_of(e, address)] == [token]
    assert invitations_of(a, address) == []
    lea = e.person(address)
    assert join_when_invited(lea, room).status_code == 200
    assert alice.joined_members(room) == sorted([alice.user_id, lea.user_id])
    # The same door into a private room: refused on A, nothing stored on E.
    private = alice.new_room(preset="private_chat")
    other = f"{unique('max')}@elsewhere.example"
    refused = alice.call(
        "POST", f"/_matrix/client/v3/rooms/{private}/invite", {**invite, "address": other}
    )
    assert "Only a room open to externals" in refusal(refused)
    assert invitations_of(e, other) == []


def test_the_externals_server_stores_invitations_only_for_agents_peers(network):
    # Its identity service takes an OpenID token of another server only from an agents peer
    # (checked with that server), and store-invite only in the token's user's own name.
    e = network.externals
    sam = e.person(f"{unique('sam')}@staff.example")  # E's own staff agent
    openid = sam.call("POST", f"/_matrix/client/v3/user/{sam.user_id}/openid/request_token", {})
    token = e.client.post("/_matrix/identity/v2/account/register", openid.json()).json()["token"]
    address = f"{unique('eve')}@elsewhere.example"
    response = e.client.request(
        "POST",
        "/_matrix/identity/v2/store-invite",
        token=token,
        json={
            "medium": "email",
            "address": address,
            "room_id": "!room:" + network.agents_a.server_name,
            "sender": "@someone:" + network.agents_a.server_name,
        },
    )
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    outsider = network.outsider.person(f"{unique('oscar')}@outside.example")
    openid = outsider.call(
        "POST", f"/_matrix/client/v3/user/{outsider.user_id}/openid/request_token", {}
    )
    registered = e.client.post(
        "/_matrix/identity/v2/account/register",
        {**openid.json(), "matrix_server_name": network.outsider.server_name},
    )
    assert (registered.status_code, registered.json()["errcode"]) == (401, "M_UNAUTHORIZED")
    assert invitations_of(e, address) == []


def test_the_externals_server_down_stops_the_invitation_with_nothing_made(alice, network):
    # Last of the module: E is stopped, then started again for the tests after it.
    a, e = network.agents_a, network.externals
    address = f"{unique('dora')}@elsewhere.example"
    room = alice.new_room(initial_state=OPEN_TO_EXTERNALS)
    e.side.stop_synapse()
    try:
        answer = alice.invite_by_email(room, address)
    finally:
        e.side.start_synapse()

    # (Asked first whether the address has an account there, then to store the invitation:
    # either question unanswered stops it.)
    assert answer.status_code == 502, answer.text
    assert answer.json()["errcode"] == "M_UNKNOWN"
    assert answer.json()["error"] in (
        UNREACHABLE.format(server=e.server_name),
        PEER_UNREACHABLE.format(server=e.server_name),
    )
    assert email_invites(alice, room) == {}
    assert invitations_of(a, address) == [] and invitations_of(e, address) == []
    assert a.client.mails_to(address) == [] and e.client.mails_to(address) == []
