# SPDX-License-Identifier: AGPL-3.0-or-later
"""The agents' directory (``/user_directory/search``), over real HTTP.

Any agent finds any other agent of the server by name or by email address, whether or not
they share a room; an external finds only the people they share a room with; a deactivated
account leaves the directory.  Synapse indexes new profiles in the background, hence the
polling helper below (it waits for the index, it measures nothing).
"""

from __future__ import annotations

import time

import pytest
from matrix_helpers import OPEN_TO_EXTERNALS, Person


@pytest.fixture(scope="module")
def gaelle(client) -> Person:
    return Person.register(client, "gaelle.quintard@ac-paris.fr")


@pytest.fixture(scope="module")
def hugo(client) -> Person:
    return Person.register(client, "hugo.vasseur@interieur.gouv.fr")


@pytest.fixture(scope="module")
def ext(client, gaelle) -> tuple[Person, str]:
    """An external invited by Gaëlle into a room open to externals, and that room."""
    room = gaelle.new_room(name="Avec l'extérieur", initial_state=OPEN_TO_EXTERNALS)
    assert gaelle.invite_by_email(room, "kim.ortega@consultants.example").status_code == 200
    return Person.register(client, "kim.ortega@consultants.example"), room


def search_until(person: Person, term: str, expected: str, *, found: bool, timeout: float = 20.0):
    """Search until ``expected`` is (or is not) among the results; return the last results."""
    deadline = time.monotonic() + timeout
    while True:
        results = person.search_users(term)
        if (expected in results) == found or time.monotonic() > deadline:
            return results
        time.sleep(0.2)


@pytest.mark.parametrize(
    "term",
    ["Gaelle Quintard", "quintard", "gaelle.quintard@ac-paris.fr", "gaelle.quintard@ac"],
)
def test_an_agent_finds_another_by_name_or_email(hugo, gaelle, term):
    assert gaelle.user_id in search_until(hugo, term, gaelle.user_id, found=True)


def test_another_address_with_the_same_name_does_not_find_her(hugo, gaelle):
    assert gaelle.user_id in search_until(hugo, "Gaelle Quintard", gaelle.user_id, found=True)

    assert gaelle.user_id not in hugo.search_users("gaelle.quintard@interieur.gouv.fr")


def test_an_external_finds_only_people_sharing_a_room(hugo, gaelle, ext):
    kim, _ = ext
    # Hugo is an agent of this server, but shares no room with Kim.
    assert hugo.user_id in search_until(gaelle, "Hugo Vasseur", hugo.user_id, found=True)

    assert kim.search_users("Hugo Vasseur") == []
    assert gaelle.user_id in search_until(kim, "Gaelle", gaelle.user_id, found=True)


def test_agents_find_externals(hugo, ext):
    kim, _ = ext

    assert kim.user_id in search_until(hugo, "Kim Ortega", kim.user_id, found=True)


def test_a_deactivated_agent_vanishes(client, hugo, admin_token):
    leaving = Person.register(client, "yann.depart@ac-paris.fr")
    assert leaving.user_id in search_until(hugo, "Yann Depart", leaving.user_id, found=True)

    response = client.post(
        f"/_synapse/admin/v1/deactivate/{leaving.user_id}", {}, token=admin_token
    )

    assert response.status_code == 200, response.text
    assert leaving.user_id not in search_until(hugo, "Yann Depart", leaving.user_id, found=False)
