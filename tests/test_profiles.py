# SPDX-License-Identifier: AGPL-3.0-or-later
"""Profiles and existence, over real HTTP: what a caller can learn about an account.

An anonymous caller learns nothing (the same answer for an account and for no account); an
external learns only about the people it shares a room with (the same refusal for a stranger and
for nobody); agents look up anyone, as Element does before an invite, and the agents' directory
keeps working.
"""

from __future__ import annotations

import time

import pytest
from matrix_helpers import OPEN_TO_EXTERNALS, Person, refusal

from appliance.synapse_module.accounts.profile_privacy import PROFILE_NOT_SHARED


@pytest.fixture(scope="module")
def server_name(appliance) -> str:
    return appliance.settings.server_name


@pytest.fixture(scope="module")
def host(client) -> Person:
    return Person.register(client, "agathe.perrin@ac-paris.fr")


@pytest.fixture(scope="module")
def stranger(client) -> Person:
    """An agent who shares no room with the external."""
    return Person.register(client, "bruno.carre@interieur.gouv.fr")


@pytest.fixture(scope="module")
def guest(client, host) -> Person:
    """An external invited by the host into a room open to externals."""
    room = host.new_room(name="Profils", preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    assert host.invite_by_email(room, "gina.ross@partner.example").status_code == 200
    return Person.register(client, "gina.ross@partner.example")


def profile_paths(user_id: str) -> list[str]:
    base = f"/_matrix/client/v3/profile/{user_id}"
    return [base, f"{base}/displayname", f"{base}/avatar_url"]


def test_an_anonymous_caller_cannot_tell_an_account_from_none(client, host, server_name):
    nobody = f"@nobody.here-ac-paris.fr:{server_name}"
    answers = set()
    for user_id in (host.user_id, nobody):
        for path in profile_paths(user_id):
            response = client.get(path)
            answers.add((response.status_code, response.json()["errcode"]))
    assert answers == {(401, "M_MISSING_TOKEN")}

    localpart = host.user_id[1:].split(":")[0]
    for name in (localpart, "nobody.here-ac-paris.fr"):
        available = client.get("/_matrix/client/v3/register/available", params={"username": name})
        assert (available.status_code, available.json()) == (200, {"available": True})


def test_an_external_sees_only_the_profiles_of_room_mates(guest, host, stranger, server_name):
    nobody = f"@nobody.here-ac-paris.fr:{server_name}"
    for user_id in (stranger.user_id, nobody):
        for path in profile_paths(user_id):
            assert refusal(guest.call("GET", path)) == PROFILE_NOT_SHARED, path

    mate = guest.call("GET", f"/_matrix/client/v3/profile/{host.user_id}")
    assert mate.status_code == 200
    assert mate.json()["displayname"] == "Agathe Perrin [ac-paris.fr]"
    own = guest.call("GET", f"/_matrix/client/v3/profile/{guest.user_id}/displayname")
    assert own.json() == {"displayname": "Gina Ross [partner.example] (external)"}


def test_an_agent_looks_up_any_agent_as_element_does_before_an_invite(stranger, host, guest):
    for user_id, name in (
        (host.user_id, "Agathe Perrin [ac-paris.fr]"),
        (guest.user_id, "Gina Ross [partner.example] (external)"),
    ):
        response = stranger.call("GET", f"/_matrix/client/v3/profile/{user_id}")
        assert (response.status_code, response.json().get("displayname")) == (200, name)
    # and the directory still answers agents (it indexes new accounts in the background)
    deadline = time.monotonic() + 20
    while host.user_id not in stranger.search_users("agathe.perrin@ac-paris.fr"):
        assert time.monotonic() < deadline, "the directory never listed the agent"
        time.sleep(0.2)
