# SPDX-License-Identifier: AGPL-3.0-or-later
"""The allowlist's admin endpoints, and their effect on registration without a restart."""

from __future__ import annotations

import secrets
import sqlite3
import time
from urllib.parse import quote

import pytest
from matrix_helpers import PASSWORD, client_for

from appliance.operations.service_account import SERVICE_LOCALPART
from appliance.synapse_module.accounts.domain_store import insert_entry_txn

DOMAINS = "/_synapse/client/appliance/v1/domains"


def domain_path(entry: str) -> str:
    return f"{DOMAINS}/{quote(entry, safe='')}"


def put(client, entry: str, token: str | None):
    return _send(client, "PUT", domain_path(entry), token)


def delete(client, entry: str, token: str | None):
    return _send(client, "DELETE", domain_path(entry), token)


def _send(client, method: str, path: str, token: str | None):
    return client.request(method, path, token=token)


def entries(client, token: str) -> list[str]:
    response = client.get(DOMAINS, token=token, params={"limit": 1000})  # the whole test list
    assert response.status_code == 200, response.text
    return [row["entry"] for row in response.json()["domains"]]


def page(client, token: str, **params) -> dict:
    response = client.get(DOMAINS, token=token, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def lookup(client, address: str) -> dict:
    return client.identity_info(address).json()


@pytest.fixture(scope="module")
def plain_user_token(appliance) -> str:
    """A user who is not a server admin, created by an admin (server-side registration)."""
    client = client_for(appliance)
    admin_token = appliance.layout.service_token.read_text().strip()
    user_id = f"@plain-user:{appliance.settings.server_name}"
    created = client.request(
        "PUT", f"/_synapse/admin/v2/users/{user_id}", token=admin_token, json={"password": PASSWORD}
    )  # the module allows this: no client request, an admin token
    assert created.status_code in (200, 201), created.text
    login = client.post(
        "/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": PASSWORD,
        },
    )
    return login.json()["access_token"]


# --- access --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token, status, errcode",
    [(None, 401, "M_MISSING_TOKEN"), ("syt_not_a_token", 401, "M_UNKNOWN_TOKEN")],
)
def test_a_token_is_required(client, token, status, errcode):
    for response in (client.get(DOMAINS, token=token), put(client, "ac-lyon.fr", token)):
        assert (response.status_code, response.json()["errcode"]) == (status, errcode)


def test_only_server_admins_may_read_or_change_the_list(client, plain_user_token, admin_token):
    for response in (
        client.get(DOMAINS, token=plain_user_token),
        put(client, "ac-lyon.fr", plain_user_token),
        delete(client, "ac-paris.fr", plain_user_token),
    ):
        assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    assert "ac-lyon.fr" not in entries(client, admin_token)
    assert "ac-paris.fr" in entries(client, admin_token)


# --- reading and changing ------------------------------------------------------------------------


def test_the_list_is_seeded_from_the_settings(client, admin_token, appliance):
    rows = client.get(DOMAINS, token=admin_token).json()

    seeded = {row["entry"]: row["added_by"] for row in rows["domains"]}
    for entry in appliance.settings.registration.allowed_domains:
        assert seeded[entry] == "appliance.yaml"
    assert rows["total"] == len(rows["domains"])


def test_add_read_and_remove_an_entry(client, admin_token):
    created = put(client, "AC-Nantes.FR", admin_token)
    assert (created.status_code, created.json()) == (
        201,
        {"entry": "ac-nantes.fr", "created": True},
    )
    again = put(client, "ac-nantes.fr", admin_token)
    assert (again.status_code, again.json()["created"]) == (200, False)

    one = client.get(domain_path("ac-nantes.fr"), token=admin_token).json()
    assert one["entry"] == "ac-nantes.fr" and one["added_by"].startswith(f"@{SERVICE_LOCALPART}:")

    removed = delete(client, "AC-NANTES.fr", admin_token)
    assert (removed.status_code, removed.json()) == (
        200,
        {"entry": "ac-nantes.fr", "deleted": True},
    )
    for response in (
        delete(client, "ac-nantes.fr", admin_token),
        client.get(domain_path("ac-nantes.fr"), token=admin_token),
    ):
        assert (response.status_code, response.json()["errcode"]) == (404, "M_NOT_FOUND")
        assert "ac-nantes.fr" in response.json()["error"]


def test_wildcards_and_international_domains_are_normalised(client, admin_token):
    # The stdlib's IDNA codec is an independent reference for this plain label.
    expected = {
        "*.Interieur.Gouv.FR": "*.interieur.gouv.fr",
        "école-test.fr": "école-test.fr".encode("idna").decode(),
    }
    try:
        for given, entry in expected.items():
            assert put(client, given, admin_token).json()["entry"] == entry
            assert entry in entries(client, admin_token)
    finally:
        for entry in expected.values():
            delete(client, entry, admin_token)


@pytest.mark.parametrize(
    "entry, reason",
    [
        ("*.fr", "top-level domain"),
        ("ac-lyon.fr.", "must not end with a dot"),
        ("ac lyon.fr", "whitespace"),
        ("a*.gouv.fr", "whole first label"),
        ("*gouv.fr", "followed by a dot"),
        ("ac-lyon", "at least two labels"),
        ("ac-ly\u200bon.fr", "invisible"),
        ("ac-p\u0430ris.fr", "mixes writing systems"),
        ("192.168.0.1", "IP addresses"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(client, admin_token, entry, reason):
    before = entries(client, admin_token)

    response = put(client, entry, admin_token)

    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")
    assert reason in response.json()["error"]
    assert entries(client, admin_token) == before


def test_malformed_paths_and_methods_are_refused(client, admin_token):
    cases = [
        (_send(client, "PUT", DOMAINS, admin_token), 405, "M_UNRECOGNIZED"),
        (_send(client, "DELETE", DOMAINS, admin_token), 405, "M_UNRECOGNIZED"),
        (_send(client, "POST", DOMAINS, admin_token), 405, "M_UNRECOGNIZED"),
        (_send(client, "GET", DOMAINS + "/ac-paris.fr/x", admin_token), 404, "M_UNRECOGNIZED"),
        (_send(client, "PUT", DOMAINS + "/%FF.fr", admin_token), 400, "M_INVALID_PARAM"),
    ]
    for response, status, errcode in cases:
        assert (response.status_code, response.json()["errcode"]) == (status, errcode), response.url


# --- the list, a page at a time, with its accounts ---------------------------------------------


def test_the_list_is_searched_and_paged_in_order(client, admin_token):
    tag = f"pg{secrets.token_hex(3)}"
    added = [f"{tag}-{n}.fr" for n in (2, 0, 1)]
    for entry in added:
        assert put(client, entry, admin_token).status_code == 201
    try:
        first = page(client, admin_token, q=tag.upper(), limit=2)
        second = page(client, admin_token, q=tag, limit=2, **{"from": first["next_token"]})
    finally:
        for entry in added:
            delete(client, entry, admin_token)

    assert [row["entry"] for row in first["domains"] + second["domains"]] == sorted(added)
    assert first["total"] == second["total"] == 3
    assert len(first["domains"]) == 2 and "next_token" not in second


def test_a_search_is_text_not_a_pattern(client, admin_token):
    # An entry never holds "_" or "%": unescaped, LIKE would take them for wildcards.
    assert entries(client, admin_token)  # there is something a wildcard would match
    for text in ("_", "%"):
        assert page(client, admin_token, q=text) == {"domains": [], "total": 0}


def test_each_entry_counts_the_active_accounts_it_admits(client, admin_token, appliance):
    tag = f"ac{secrets.token_hex(3)}"
    server_name = appliance.settings.server_name
    for localpart, addresses in [
        (f"{tag}-a", [f"a@{tag}.fr", f"a.second@{tag}.fr"]),  # one account, two addresses
        (f"{tag}-b", [f"b@{tag}.fr"]),
        (f"{tag}-c", [f"c@dept.{tag}.fr"]),
        (f"{tag}-gone", [f"gone@{tag}.fr"]),
    ]:
        user_id = f"@{localpart}:{server_name}"
        threepids = [{"medium": "email", "address": address} for address in addresses]
        created = client.request(
            "PUT",
            f"/_synapse/admin/v2/users/{quote(user_id)}",
            token=admin_token,
            json={"password": PASSWORD, "threepids": threepids},
        )
        assert created.status_code == 201, created.text
    gone = client.request(
        "POST",
        f"/_synapse/admin/v1/deactivate/{quote(f'@{tag}-gone:{server_name}')}",
        token=admin_token,
        json={"erase": False},
    )
    assert gone.status_code == 200, gone.text
    for entry in (f"{tag}.fr", f"*.{tag}.fr"):
        put(client, entry, admin_token)
    try:
        listed = page(client, admin_token, q=tag)["domains"]
    finally:
        for entry in (f"{tag}.fr", f"*.{tag}.fr"):
            delete(client, entry, admin_token)

    accounts = {row["entry"]: row["accounts"] for row in listed}
    # The deactivated one lost its address; the one with two addresses counts once.
    assert accounts == {f"{tag}.fr": 2, f"*.{tag}.fr": 1}


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "1001"}, {"from": "-1"}, {"from": "x"}, {"from": str(2**63)}],
)
def test_bad_paging_is_refused_with_the_argument_named(client, admin_token, params):
    response = client.get(DOMAINS, token=admin_token, params=params)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")
    assert next(iter(params)) in response.json()["error"]


# --- effect on registration, live -----------------------------------------------------------------


def test_an_added_domain_admits_its_first_user_and_a_removed_one_refuses_the_next(
    client, admin_token, appliance
):
    server_name = appliance.settings.server_name
    refused = client.request_token("register", "first.agent@ac-lille.fr")
    assert (refused.status_code, refused.json()["errcode"]) == (403, "M_THREEPID_DENIED")

    assert put(client, "ac-lille.fr", admin_token).status_code == 201
    first = client.register_account("first.agent@ac-lille.fr")
    assert first.user_id == f"@first.agent-ac-lille.fr:{server_name}"

    assert delete(client, "ac-lille.fr", admin_token).status_code == 200
    next_one = client.request_token("register", "next.agent@ac-lille.fr")
    assert (next_one.status_code, next_one.json()["errcode"]) == (403, "M_THREEPID_DENIED")
    assert lookup(client, "next.agent@ac-lille.fr")["requires_invite"] is True

    # The rule for existing accounts (see registration.py): removing a domain stops new
    # accounts, it does not lock out its agents; they still log in and reset their password.
    assert client.login_with_email("first.agent@ac-lille.fr").status_code == 200
    reset = client.verify("password_reset", "first.agent@ac-lille.fr")
    assert client.reset_password(reset, "Another-Password-77").status_code == 200


def test_a_change_written_by_another_process_is_seen_without_restart(
    client, admin_token, appliance
):
    """Another Synapse process (a worker) writes through the same store code to the database."""
    database = appliance.layout.synapse_dir / "homeserver.db"
    assert "requires_invite" in lookup(client, "agent@ac-rennes.fr")

    with sqlite3.connect(database, timeout=30) as db:
        assert insert_entry_txn(
            db.cursor(), "ac-rennes.fr", int(time.time() * 1000), "@other-worker:test"
        )
    try:
        seen = _poll(lambda: "requires_invite" not in lookup(client, "agent@ac-rennes.fr"))
    finally:
        delete(client, "ac-rennes.fr", admin_token)

    assert seen, "the change made by another process was never applied"


def _poll(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
