# SPDX-License-Identifier: AGPL-3.0-or-later
"""The room pages against real rooms: kind, members, publish, block, delete with purge."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import pytest
import requests
from console_helpers import unique


@pytest.fixture
def owner(synapse):
    user_id = synapse.create_user(unique("owner"), "Owner [ac-paris.fr]")
    return user_id, synapse.login(user_id)


def create_room(synapse, token: str, **body) -> str:
    response = requests.post(
        f"{synapse.url}/_matrix/client/v3/createRoom",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()["room_id"]


def access_rule(rule: str) -> dict:
    return {"type": "im.vector.room.access_rules", "state_key": "", "content": {"rule": rule}}


def visibility(synapse, room_id: str) -> str:
    return requests.get(
        f"{synapse.url}/_matrix/client/v3/directory/list/room/{quote(room_id)}", timeout=30
    ).json()["visibility"]


def test_list_shows_kind_members_encryption_and_directory(console, synapse, owner):
    _, token = owner
    tag = unique("kinds")
    create_room(
        synapse,
        token,
        name=f"{tag} private",
        preset="private_chat",
        initial_state=[
            access_rule("restricted"),
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            },
        ],
    )
    create_room(
        synapse,
        token,
        name=f"{tag} partners",
        preset="private_chat",
        initial_state=[access_rule("unrestricted")],
    )
    create_room(synapse, token, name=f"{tag} forum", preset="public_chat", visibility="public")
    page = console.get(f"/rooms/?q={tag}")
    rows = {
        name: page[page.index(f">{tag} {name}<") :] for name in ("private", "partners", "forum")
    }
    rows = {name: row[: row.index("</tr>")] for name, row in rows.items()}
    assert "<td>private</td>" in rows["private"] and "<td>yes</td>" in rows["private"]
    assert "private, open to externals" in rows["partners"]
    assert "<td>forum</td>" in rows["forum"]
    assert rows["forum"].count("<td>yes</td>") == 1  # listed, not encrypted


def test_room_page_lists_members_and_publishes_a_forum(console, synapse, owner):
    user_id, token = owner
    room_id = create_room(synapse, token, name=unique("forum"), preset="public_chat")
    assert user_id in console.get(f"/rooms/{room_id}")
    # Whether the module lists a new forum itself or not, the console takes it off, then on.
    console.post(f"/rooms/{room_id}/unpublish")
    assert visibility(synapse, room_id) == "private"
    assert "List in the directory" in console.get(f"/rooms/{room_id}")
    console.post(f"/rooms/{room_id}/publish")
    assert visibility(synapse, room_id) == "public"
    assert "Remove from the directory" in console.get(f"/rooms/{room_id}")


def test_block_asks_first(console, synapse, owner):
    _, token = owner
    room_id = create_room(synapse, token, name=unique("block"))
    console.confirm(f"/rooms/{room_id}/block")
    blocked = synapse.call("GET", f"/_synapse/admin/v1/rooms/{quote(room_id)}/block")
    assert blocked["block"]
    console.post(f"/rooms/{room_id}/unblock")
    assert not synapse.call("GET", f"/_synapse/admin/v1/rooms/{quote(room_id)}/block")["block"]


def test_delete_with_purge_shows_progress_until_done(console, synapse, owner):
    _, token = owner
    room_id = create_room(synapse, token, name=unique("doomed"))
    response = console.confirm(f"/rooms/{room_id}/delete", block="y")
    assert response.status_code == 302
    progress = response.headers["Location"]
    deadline = time.monotonic() + 60
    while True:
        page = console.get(progress)
        status = re.search(r'data-status="(\w+)"', page).group(1)
        if status in ("complete", "failed"):
            break
        assert 'http-equiv="refresh"' in page  # the page reloads itself meanwhile
        assert "auto=1" in page  # through the reload marker: not activity (session_limits)
        assert time.monotonic() < deadline, "the purge did not finish"
        time.sleep(0.5)
    assert status == "complete"
    assert 'http-equiv="refresh"' not in page
    missing = requests.get(
        f"{synapse.url}/_synapse/admin/v1/rooms/{quote(room_id)}",
        timeout=30,
        headers={"Authorization": f"Bearer {synapse.token}"},
    )
    assert missing.status_code == 404
    assert "room.delete.block" in console.get(f"/audit/?q={quote(room_id)}")


def test_no_room_found_says_so(console):
    assert "No room matches this search." in console.get(f"/rooms/?q={unique('none')}")
