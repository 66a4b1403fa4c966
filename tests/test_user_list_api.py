# SPDX-License-Identifier: AGPL-3.0-or-later
"""The module's user list endpoint against the appliance's real Synapse: who may call it,
pages that cover every user exactly once in both directions, kinds and searches.

Accounts are made through the Admin API (agents, admins, deactivated) and, for the external,
through the real invitation and registration flow, so that the module records it.
"""

from __future__ import annotations

import secrets
import sqlite3
from urllib.parse import quote

import pytest
import requests
from console_helpers import Synapse, register_external

from appliance.synapse_module.admin_api.user_list_query import page_of_user_ids_txn
from appliance.synapse_module.admin_api.users import USERS_PATH


class Api(Synapse):
    """Synapse as the tests set it up, and the endpoint under test."""

    def get(self, path: str, token: str | None = None, **params) -> requests.Response:
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(self.url + path, params=params, headers=headers, timeout=30)

    def users(self, **params) -> dict:
        response = self.get(USERS_PATH, **params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def api(appliance, admin_token) -> Api:
    settings = appliance.settings
    return Api(settings.synapse.listen.url, admin_token, settings.server_name)


@pytest.fixture(scope="module")
def tag() -> str:
    return f"ul{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def people(appliance, api, tag) -> dict[str, str]:
    """One of each kind, all with IDs starting with the tag (the external's host too)."""
    # On a fresh database Synapse fills its user directory in a background update, which
    # empties it first: users made before it ends would be missing from the word search.
    api.wait_for_background_updates()
    agent = api.create_user(
        f"{tag}-agent", f"Camille Lenoir{tag} [ac-paris.fr]", f"{tag}.agent@ac-paris.fr"
    )
    admin = api.create_user(f"{tag}-admin", f"Admin {tag} [ac-paris.fr]")
    api.call("PUT", f"/_synapse/admin/v1/users/{quote(admin)}/admin", {"admin": True})
    gone = api.create_user(f"{tag}-gone", f"Gone {tag} [ac-paris.fr]")
    api.call("POST", f"/_synapse/admin/v1/deactivate/{quote(gone)}", {"erase": False})
    external = register_external(appliance, tag)
    host = api.user(f"@{tag}-host-ac-paris.fr:{api.server_name}")["name"]
    return {"agent": agent, "admin": admin, "gone": gone, "external": external, "host": host}


def names(body: dict) -> list[str]:
    return [user["name"] for user in body["users"]]


def walk(api: Api, direction: str = "next", start: dict | None = None, **params) -> list[list[str]]:
    """Every page from start (default: the first page) on, following next or prev."""
    body = start or api.users(**params)
    pages = [names(body)]
    while direction in body:
        body = api.users(**params, **{"from": body[direction]})
        pages.append(names(body))
    return pages


# Who may call it -------------------------------------------------------------------------------
def test_without_a_token_is_401(api):
    response = api.get(USERS_PATH, token="")  # no Authorization header at all
    assert response.status_code == 401
    assert response.json()["errcode"] == "M_MISSING_TOKEN"


def test_a_user_who_is_not_a_server_admin_gets_403(api, tag):
    user_id = api.create_user(f"x{tag}-plain", "Plain [ac-paris.fr]")  # outside the tag
    response = api.get(USERS_PATH, token=api.login(user_id))
    assert response.status_code == 403
    assert response.json()["errcode"] == "M_FORBIDDEN" and response.json()["error"]


@pytest.mark.parametrize(
    "params", [{"kind": "everyone"}, {"from": "not-a-cursor"}, {"limit": "0"}, {"limit": "x"}]
)
def test_bad_parameters_are_refused_with_their_name(api, params):
    response = api.get(USERS_PATH, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["errcode"] == "M_INVALID_PARAM" and next(iter(params)) in body["error"]


# Pages -----------------------------------------------------------------------------------------
def test_pages_cover_every_user_exactly_once_in_id_order(api, people):
    pages = walk(api, kind="all", limit=3)
    listed = [name for page in pages for name in page]
    assert all(len(page) <= 3 for page in pages) and len(pages) > 2
    assert listed == sorted(set(listed))  # ordered, no user twice
    # The same set as Synapse's own Admin API lists (without guests), in the same run.
    everyone = api.call("GET", "/_synapse/admin/v3/users?guests=false&limit=100000")["users"]
    assert set(listed) == {user["name"] for user in everyone}
    assert set(people.values()) <= set(listed)


def test_prev_walks_back_over_the_same_pages(api, people):
    forward = walk(api, kind="all", limit=3)
    last = api.users(kind="all", limit=3)
    while "next" in last:
        last = api.users(kind="all", limit=3, **{"from": last["next"]})
    backward = walk(api, "prev", start=last, kind="all", limit=3)
    assert backward == list(reversed(forward))
    assert "prev" not in api.users(kind="all", limit=3)


def test_a_listed_user_has_profile_emails_and_kind(api, people, tag):
    (agent,) = api.users(q=f"{tag}-agent")["users"]
    assert agent["name"] == people["agent"]
    assert agent["displayname"] == f"Camille Lenoir{tag} [ac-paris.fr]"
    assert agent["emails"] == [f"{tag}.agent@ac-paris.fr"]
    assert agent["external"] is False and agent["admin"] is False and agent["creation_ts"] > 0


# Kinds -----------------------------------------------------------------------------------------
def test_deactivated_users_are_left_out_unless_asked_for(api, people, tag):
    active = set(names(api.users(q=tag)))
    assert people["gone"] not in active and people["agent"] in active
    assert names(api.users(q=tag, kind="deactivated")) == [people["gone"]]
    assert people["gone"] in names(api.users(q=tag, kind="all"))


def test_kinds_split_agents_externals_and_admins(api, people, tag):
    externals = api.users(kind="externals", q=tag)["users"]
    assert [user["name"] for user in externals] == [people["external"]]
    assert externals[0]["external"] is True
    assert people["external"] in names(api.users(kind="externals"))  # without search too
    agents = set(names(api.users(kind="agents", q=tag)))
    assert agents == {people["agent"], people["admin"], people["host"]}
    assert names(api.users(kind="admins", q=tag)) == [people["admin"]]


# Searches --------------------------------------------------------------------------------------
def test_search_by_matrix_id_prefix_with_or_without_at(api, people, tag):
    assert names(api.users(q=f"@{tag}-ag")) == [people["agent"]]
    assert names(api.users(q=people["agent"])) == [people["agent"]]
    assert names(api.users(q=f"{tag.upper()}-AGENT")) == [people["agent"]]


def test_search_pages_too(api, people, tag):
    pages = walk(api, q=tag, kind="all", limit=2)
    listed = [name for page in pages for name in page]
    assert listed == sorted(people.values())


def test_search_by_email_prefix_or_whole_address(api, people, tag):
    assert names(api.users(q=f"{tag}.agent@ac-paris.fr")) == [people["agent"]]
    assert names(api.users(q=f"{tag}.agent@")) == [people["agent"]]
    assert names(api.users(q=f"{tag}-guest@example.com")) == [people["external"]]
    assert api.users(q=f"{tag}.nobody@ac-paris.fr")["users"] == []


def test_search_by_display_name_words(api, people, tag):
    # "Camille Lenoir<tag>": a word other than the first, a prefix of it, any case.
    assert names(api.users(q=f"lenoir{tag}")) == [people["agent"]]
    assert names(api.users(q=f"Lenoir{tag[:-1]}")) == [people["agent"]]
    assert names(api.users(q=f"camille lenoir{tag}")) == [people["agent"]]
    assert api.users(q=f"durand lenoir{tag}")["users"] == []


# Cost ------------------------------------------------------------------------------------------
class PlannedTransaction:
    """A read-only SQLite cursor on the appliance's Synapse database, standing for Synapse's
    transaction (SQLite engine), which keeps SQLite's plan of every query it runs."""

    database_engine = None  # not PostgreSQL

    def __init__(self, database: sqlite3.Connection) -> None:
        self._cursor = database.cursor()
        self.plans: list[str] = []

    def execute(self, sql: str, args: tuple = ()) -> None:
        plan = self._cursor.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
        self.plans += [row[3] for row in plan]
        self._cursor.execute(sql, args)

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()


@pytest.mark.parametrize(
    "kind, person, index",
    [
        ("admins", "admin", "appliance_users_admins"),
        ("deactivated", "gone", "appliance_users_deactivated"),
    ],
)
def test_admins_and_deactivated_pages_read_only_their_own_index(
    appliance, api, people, kind, person, index
):
    """The module's start-up created a partial index for the kind, and the very query of a
    page reads it (so a page of the few admins does not walk every user's ID)."""
    database = appliance.layout.synapse_dir / "homeserver.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        transaction = PlannedTransaction(connection)
        found = page_of_user_ids_txn(transaction, "", kind, None, 50)

    assert people[person] in found
    assert found == names(api.users(kind=kind, limit=51))
    assert transaction.plans and all(index in plan for plan in transaction.plans)
