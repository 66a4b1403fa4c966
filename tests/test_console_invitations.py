# SPDX-License-Identifier: AGPL-3.0-or-later
"""Email invitations seen by the operators: the module's admin endpoint, the console page, and
revoking one, against the real appliance; then the endpoint of a Synapse whose externals'
tables are not created yet (503, never a 500)."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from console_helpers import unique
from matrix_helpers import OPEN_TO_EXTERNALS, Person

INVITATIONS = "/_synapse/client/appliance/v1/invitations"
REVOKERS = 6


@pytest.fixture(scope="module")
def host(client) -> Person:
    return Person.register(client, f"{unique('hote.invitations')}@ac-paris.fr")


@pytest.fixture(scope="module")
def room(host) -> str:
    return host.new_room(
        name=unique("Partenaires "), preset="private_chat", initial_state=OPEN_TO_EXTERNALS
    )


def invite(host: Person, room_id: str) -> str:
    """Invite a new address of a domain that is not allowed; return it."""
    address = f"{unique('guest')}@partner.example"
    response = host.invite_by_email(room_id, address)
    assert response.status_code == 200, response.text
    return address


def listed(synapse, **params) -> dict:  # noqa: F811 (the fixture's value)
    response = requests.get(
        synapse.url + INVITATIONS,
        params=params,
        timeout=30,
        headers={"Authorization": f"Bearer {synapse.token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def find(synapse, address: str, status: str = "all") -> dict:  # noqa: F811
    """The invitation of address, looked up page by page (other tests add theirs)."""
    cursor = None
    while True:
        body = listed(synapse, status=status, limit=100, **({"from": cursor} if cursor else {}))
        for invitation in body["invitations"]:
            if invitation["address"] == address:
                return invitation
        cursor = body.get("next")
        assert cursor, f"{address} is not listed"


def third_party_invite(host: Person, room_id: str, token: str) -> dict | None:
    return host.state(room_id).get(("m.room.third_party_invite", token))


# --- the module's endpoint --------------------------------------------------------------------


def test_the_list_says_who_invited_which_address_where_and_when(synapse, host, room):  # noqa: F811
    address = invite(host, room)

    invitation = find(synapse, address, status="pending")

    assert invitation["room_id"] == room and invitation["room_name"].startswith("Partenaires ")
    assert invitation["inviter"] == host.user_id
    assert invitation["inviter_name"].endswith("[ac-paris.fr]")
    assert invitation["status"] == "pending" and invitation["completed_at"] is None
    assert invitation["created_at"] > 0
    # Its id is the state key of the room's pending invitation.
    assert third_party_invite(host, room, invitation["id"])["display_name"].endswith(
        "@partner.example"
    )


def test_pages_follow_each_other_newest_first_without_overlap(synapse, host, room):  # noqa: F811
    addresses = [invite(host, room) for _ in range(3)]
    first = listed(synapse, status="pending", limit=2)
    second = listed(synapse, status="pending", limit=2, **{"from": first["next"]})

    shown = [i["address"] for i in first["invitations"] + second["invitations"]]
    # The three newest, newest first: nothing repeated, nothing skipped at the page boundary.
    assert shown[:3] == list(reversed(addresses))
    assert len(set(shown)) == len(shown)
    created = [i["created_at"] for i in first["invitations"] + second["invitations"]]
    assert created == sorted(created, reverse=True)


def test_the_list_is_for_server_admins_only(client, synapse, host):  # noqa: F811
    assert requests.get(synapse.url + INVITATIONS, timeout=30).status_code == 401
    agent = host.call("GET", INVITATIONS)
    assert agent.status_code == 403 and agent.json()["errcode"] == "M_FORBIDDEN"
    revoke = host.call("POST", f"{INVITATIONS}/whatever/revoke", {})
    assert revoke.status_code == 403 and revoke.json()["errcode"] == "M_FORBIDDEN"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"from": "not-a-cursor"}, "from must be a cursor"),
        # A cursor of the right shape whose time would overflow the database's bigint.
        ({"from": base64.urlsafe_b64encode(f"{2**63}:x".encode()).decode()}, "from must be a"),
        ({"limit": "0"}, "limit must be at least 1"),
        ({"status": "expired"}, "status must be one of pending, all"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(synapse, params, message):  # noqa: F811
    response = requests.get(
        synapse.url + INVITATIONS,
        params=params,
        timeout=30,
        headers={"Authorization": f"Bearer {synapse.token}"},
    )
    assert response.status_code == 400
    assert response.json()["errcode"] == "M_INVALID_PARAM"
    assert message in response.json()["error"]


def test_a_used_invitation_says_by_whom(client, synapse, host, room):  # noqa: F811
    address = invite(host, room)
    guest = Person.register(client, address)

    invitation = find(synapse, address)

    assert invitation["status"] == "used" and invitation["user_id"] == guest.user_id
    assert invitation["completed_at"] >= invitation["created_at"]
    assert address not in [i["address"] for i in listed(synapse, limit=100)["invitations"]]


def test_an_invitation_withdrawn_in_the_room_shows_as_revoked(synapse, host, room):  # noqa: F811
    address = invite(host, room)
    token = find(synapse, address)["id"]

    assert host.put_state(room, "m.room.third_party_invite", {}, token).status_code == 200

    assert find(synapse, address)["status"] == "revoked"


# --- the console page ---------------------------------------------------------------------------


def test_the_console_lists_pending_invitations(console, synapse, host, room):  # noqa: F811
    address = invite(host, room)
    invitation = find(synapse, address)

    page = console.get("/invitations/")

    row = page[page.index(f'data-invitation="{invitation["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert address in row and invitation["room_name"] in row
    assert invitation["inviter_name"] in row and "pending" in row and "Revoke" in row


def test_the_console_revokes_an_invitation_after_confirmation(
    client,
    console,
    synapse,
    host,
    room,  # noqa: F811
):
    address = invite(host, room)
    token = find(synapse, address)["id"]
    assert client.request_token("register", address).status_code == 200

    asked = console.post(f"/invitations/{token}/revoke")
    assert address in asked.get_data(as_text=True)  # the question names the address...
    assert find(synapse, address)["status"] == "pending"  # ...and nothing happened yet
    done = console.post(f"/invitations/{token}/revoke", confirmed="yes")

    assert done.status_code == 302
    revoked = find(synapse, address)
    assert revoked["status"] == "revoked" and revoked["outcome"].startswith("revoked by @")
    assert third_party_invite(host, room, token) == {}  # the room no longer shows it
    assert client.request_token("register", address).json()["errcode"] == "M_THREEPID_DENIED"
    assert "is revoked" in console.get("/invitations/?status=all")
    assert "invitation.revoke" in console.get(f"/audit/?q={address}")


def test_an_invitation_cannot_be_revoked_twice(console, synapse, host, room):  # noqa: F811
    address = invite(host, room)
    token = find(synapse, address)["id"]
    console.confirm(f"/invitations/{token}/revoke")

    again = requests.post(
        f"{synapse.url}{INVITATIONS}/{token}/revoke",
        json={},
        timeout=30,
        headers={"Authorization": f"Bearer {synapse.token}"},
    )

    assert again.status_code == 409 and "no longer pending" in again.json()["error"]
    console.confirm(f"/invitations/{token}/revoke")
    assert "no longer pending" in console.get("/invitations/")


def test_of_concurrent_revokes_only_one_succeeds(synapse, host, room):  # noqa: F811
    address = invite(host, room)
    token = find(synapse, address)["id"]
    together = threading.Barrier(REVOKERS)

    def revoke(_: int) -> requests.Response:
        together.wait()  # every request leaves at once: they overlap inside Synapse
        return requests.post(
            f"{synapse.url}{INVITATIONS}/{token}/revoke",
            json={},
            timeout=60,
            headers={"Authorization": f"Bearer {synapse.token}"},
        )

    with ThreadPoolExecutor(REVOKERS) as pool:
        answers = list(pool.map(revoke, range(REVOKERS)))

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] + [409] * (REVOKERS - 1), [a.text for a in answers]
    refused = [answer.json()["error"] for answer in answers if answer.status_code == 409]
    assert all("no longer pending (revoked by @" in error for error in refused)
    assert find(synapse, address)["status"] == "revoked"
    assert not third_party_invite(host, room, token)  # withdrawn by the one that won


def test_an_unknown_invitation_cannot_be_revoked(console):
    response = console.post("/invitations/no-such-invitation/revoke")
    assert response.status_code == 404
    assert "This invitation does not exist" in response.get_data(as_text=True)


def test_the_page_is_in_french_too(console, host, room):
    invite(host, room)
    console.post("/language", lang="fr", next="/invitations/")
    page = console.client.get("/invitations/")
    text = page.get_data(as_text=True)
    assert "Invitations par e-mail" in text and "Révoquer" in text


# --- before the tables exist ------------------------------------------------------------------


def test_before_its_tables_exist_the_endpoint_says_try_again_not_500(synapse_without_tables):
    side = synapse_without_tables
    response = requests.get(
        side.url + INVITATIONS,
        timeout=30,
        headers={"Authorization": f"Bearer {side.admin_token()}"},
    )
    assert response.status_code == 503, response.text
    assert response.json()["errcode"] == "M_UNKNOWN"
    assert "try again" in response.json()["error"]
    # The page the invitation mail links to, too (no token needed there).
    page = requests.get(
        side.url + "/_synapse/client/appliance/v1/invitation", params={"id": "x"}, timeout=30
    )
    assert page.status_code == 503
