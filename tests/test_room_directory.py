# SPDX-License-Identifier: AGPL-3.0-or-later
"""The room directory lists forums, and only forums, over real HTTP.

Forums are found in ``/publicRooms`` by name and by topic and joined by any agent through their
alias or a link (their room ID); a private room, a room open to externals or a direct chat
never appears, whatever a client asks.  The shared appliance's directory also holds other
tests' forums, so each test looks for its own rooms by a word only they carry.
"""

from __future__ import annotations

import secrets

import pytest
from matrix_helpers import OPEN_TO_EXTERNALS, Person, refusal

from appliance.synapse_module.rooms.kinds import ONLY_FORUMS_LISTED


@pytest.fixture(scope="module")
def agnes(client) -> Person:
    return Person.register(client, "agnes.annuaire@ac-paris.fr")


@pytest.fixture(scope="module")
def bruno(client) -> Person:
    return Person.register(client, "bruno.annuaire@education.gouv.fr")


@pytest.fixture
def word() -> str:
    """A word no other room in the shared directory carries."""
    return f"mot{secrets.token_hex(4)}"


def listed(person: Person, term: str) -> set[str]:
    return {room["room_id"] for room in person.public_rooms(term)}


def test_forums_are_listed_and_found_by_name_and_topic(agnes, bruno, word):
    by_name = agnes.new_room(name=f"Forum {word} achats", preset="public_chat")
    by_topic = agnes.new_room(name="Forum", topic=f"Tout sur {word}", preset="public_chat")

    assert listed(bruno, word) == {by_name, by_topic}
    assert listed(bruno, f"{word} achats") == {by_name}
    entry = next(room for room in bruno.public_rooms(word) if room["room_id"] == by_topic)
    assert entry["join_rule"] == "public" and entry["topic"] == f"Tout sur {word}"


def test_rooms_that_are_not_forums_never_appear(agnes, bruno, word):
    agnes.new_room(name=f"Privé {word}", preset="private_chat")
    agnes.new_room(name=f"Ouvert {word}", preset="private_chat", initial_state=OPEN_TO_EXTERNALS)
    agnes.new_room(name=f"Direct {word}", is_direct=True, invite=[bruno.user_id])

    assert listed(bruno, word) == set()


def test_a_forum_is_joined_by_its_alias_or_its_link(client, agnes, bruno, word):
    alias = f"#{word}:{agnes.user_id.split(':', 1)[1]}"
    forum = agnes.new_room(name=word, preset="public_chat", room_alias_name=word)
    assert next(r for r in bruno.public_rooms(word))["canonical_alias"] == alias

    assert bruno.join(alias).status_code == 200
    carla = Person.register(client, f"carla.{word}@ac-paris.fr")
    assert carla.join(forum).status_code == 200

    assert set(agnes.joined_members(forum)) == {agnes.user_id, bruno.user_id, carla.user_id}


@pytest.mark.parametrize(
    "create",
    [
        {"preset": "private_chat"},
        {"preset": "private_chat", "initial_state": OPEN_TO_EXTERNALS},
        {"is_direct": True},
    ],
    ids=["private room", "room open to externals", "direct chat"],
)
def test_publishing_a_room_that_is_not_a_forum_is_refused(agnes, word, create):
    room = agnes.new_room(name=word, **create)

    assert refusal(agnes.publish(room)) == ONLY_FORUMS_LISTED
    assert listed(agnes, word) == set()


def test_creating_a_listed_room_that_is_not_a_forum_is_refused(agnes):
    before = agnes.joined_rooms()

    response = agnes.create_room(preset="private_chat", visibility="public")

    assert refusal(response) == ONLY_FORUMS_LISTED
    assert agnes.joined_rooms() == before


def test_a_forum_can_leave_the_directory_and_come_back(agnes, word):
    forum = agnes.new_room(name=word, preset="public_chat")

    assert agnes.publish(forum, "private").status_code == 200
    assert listed(agnes, word) == set()
    assert agnes.publish(forum, "public").status_code == 200
    assert listed(agnes, word) == {forum}
