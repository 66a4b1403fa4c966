# SPDX-License-Identifier: AGPL-3.0-or-later
"""Usage statistics against a real Synapse: agents of two domains and an external sign in and
use the service as a client does; the module's endpoint, the console's page and its CSV count
them (externals apart), and the rooms and messages they make; bad parameters are refused."""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests
from console_helpers import Synapse, register_external, unique
from harness import evaluation_settings
from matrix_helpers import PASSWORD, Person, SideSynapse

from appliance.config.layout import Layout
from appliance.synapse_module.rooms.kinds import ACCESS_RULES

STATISTICS = "/_synapse/client/appliance/v1/statistics"
MEGOLM = "m.megolm.v1.aes-sha2"
ROOM_COLUMNS = ("rooms_private", "rooms_open_to_externals", "rooms_forum", "rooms_direct")


def statistics(synapse_url: str, token: str, **params) -> requests.Response:
    return requests.get(
        synapse_url + STATISTICS,
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def figures(synapse_url: str, admin_token: str, days: int = 7) -> dict:
    response = statistics(synapse_url, admin_token, days=days)
    assert response.status_code == 200, response.text
    return response.json()


def today_row(body: dict) -> dict:
    row = body["per_day"][-1]
    assert row["day"] == body["last_day"]
    return row


def wait_for(condition, what: str, timeout: float = 60.0):
    """Poll until condition() returns something true (Synapse writes client IPs in batches)."""
    deadline = time.monotonic() + timeout
    for _attempt in range(int(timeout * 2)):
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def send(person: Person, room_id: str, event_type: str, content: dict) -> None:
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{event_type}/{secrets.token_hex(8)}"
    response = person.call("PUT", path, content)
    assert response.status_code == 200, response.text


def seen(person: Person) -> None:
    """An authenticated request, as any client makes: Synapse records the visit."""
    assert person.client.whoami(person.token).status_code == 200


@pytest.fixture
def visitors(appliance, client, synapse):
    """Two agents of one domain, one of another (all under *.gouv.fr, allowlisted), each
    having used the service today, and an external who has not yet."""
    first, second = f"{unique('stats')}.gouv.fr", f"{unique('stats')}.gouv.fr"
    agents = [
        Person.register(client, f"anne@{first}"),
        Person.register(client, f"bruno@{first}"),
        Person.register(client, f"chloe@{second}"),
    ]
    external_id = register_external(appliance, unique("stats"))
    external = Person(client, external_id, synapse.login(external_id, PASSWORD))
    for person in agents:
        seen(person)
    return first, second, agents, external


def test_agents_are_counted_per_domain_and_the_external_apart(synapse_url, admin_token, visitors):
    first, second, _agents, external = visitors

    def counted() -> dict | None:
        body = figures(synapse_url, admin_token)
        domains = {row["domain"]: row["active_agents"] for row in body["per_domain"]}
        return body if domains.get(first) == 2 and domains.get(second) == 1 else None

    before = wait_for(counted, "the agents' visits in the statistics")
    assert today_row(before)["active_agents"] >= 3
    month = before["per_month"][-1]
    assert month["month"] == before["last_day"][:7] and month["active_agents"] >= 3
    assert len(before["per_day"]) == 7 and before["days"] == 7

    seen(external)
    externals = today_row(before)["active_externals"]

    def external_counted() -> dict | None:
        body = figures(synapse_url, admin_token)
        return body if today_row(body)["active_externals"] == externals + 1 else None

    after = wait_for(external_counted, "the external's visit in the statistics")
    # Apart: in no domain's count (their address is at example.com, which no agent has).
    assert after["per_domain"] == before["per_domain"]
    assert after["period"]["active_externals"] == before["period"]["active_externals"] + 1


def test_rooms_by_kind_messages_and_registrations_are_counted(
    console, synapse_url, admin_token, visitors
):
    _first, _second, (anne, bruno, _chloe), _external = visitors
    before = today_row(figures(synapse_url, admin_token))
    assert before["registered_agents"] >= 3 and before["registered_externals"] >= 1

    private = anne.new_room(preset="private_chat", name=unique("private"))
    open_rule = {"type": ACCESS_RULES, "state_key": "", "content": {"rule": "unrestricted"}}
    anne.new_room(preset="private_chat", name=unique("open"), initial_state=[open_rule])
    forum = anne.new_room(preset="public_chat", name=unique("forum"))
    direct = anne.new_room(is_direct=True, preset="trusted_private_chat", invite=[bruno.user_id])
    for text in ("bonjour", "à tous"):
        send(anne, forum, "m.room.message", {"msgtype": "m.text", "body": text})
    encrypted = {"algorithm": MEGOLM, "ciphertext": "c2VjcmV0", "session_id": "s", "device_id": "D"}
    send(anne, direct, "m.room.encrypted", encrypted)
    send(anne, private, "m.room.encrypted", encrypted)

    after = today_row(figures(synapse_url, admin_token))
    assert after["day"] == before["day"], "the day changed during the test: run it again"
    assert {column: after[column] - before[column] for column in ROOM_COLUMNS} == {
        "rooms_private": 1,
        "rooms_open_to_externals": 1,
        "rooms_forum": 1,
        "rooms_direct": 1,
    }
    assert after["messages"] - before["messages"] == 4

    # The page shows the same figures in its table, and a chart with its text equivalent.
    page = console.get("/statistics/?days=7")
    row = page[page.index(f'data-day="{after["day"]}"') :]
    row = row[: row.index("</tr>")]
    for column in ("messages", *ROOM_COLUMNS):
        assert f'data-column="{column}">{after[column]}</td>' in row
    assert "data-chart-summary" in page and "<svg" in page

    # The CSV export: a row per day, the same counts, and an audit entry.
    response = console.client.get("/statistics/export.csv?days=7")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 7 and rows[-1]["day"] == after["day"]
    for column in ("messages", "registered_agents", "registered_externals", *ROOM_COLUMNS):
        assert int(rows[-1][column]) == after[column]
    assert "days=7" in console.get("/audit/?q=statistics.export")


def test_the_page_speaks_french(console, synapse_url, admin_token, visitors):
    first, *_ = visitors
    wait_for(
        lambda: any(
            row["domain"] == first for row in figures(synapse_url, admin_token)["per_domain"]
        ),
        "the agents' visits in the statistics",
    )
    console.post("/language", lang="fr", next="/statistics/")
    page = console.get("/statistics/?days=30")
    assert 'lang="fr"' in page
    for text in (
        "Statistiques",
        "Agents actifs par domaine",
        "Exporter en CSV",
        "Messages par jour",
    ):
        assert text in page
    assert f'data-domain="{first}"' in page


@pytest.mark.parametrize("days", ["0", "367", "many", "-3"])
def test_a_bad_window_is_refused_with_an_errcode(synapse_url, admin_token, days):
    response = statistics(synapse_url, admin_token, days=days)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errcode"] == "M_INVALID_PARAM" and "days" in body["error"]


def test_statistics_are_for_server_admins_only(synapse_url, visitors):
    _first, _second, (anne, *_), _external = visitors
    response = statistics(synapse_url, anne.token)
    assert response.status_code == 403 and response.json()["errcode"] == "M_FORBIDDEN"
    response = statistics(synapse_url, "not-a-token")
    assert response.status_code == 401 and response.json()["errcode"] == "M_UNKNOWN_TOKEN"


@pytest.fixture(scope="module")
def synapse_on_postgres(tmp_path_factory, postgres_cluster, appliance) -> Iterator[SideSynapse]:
    """A Synapse with the module on PostgreSQL (the production database), without workers."""
    postgres_cluster.create_database("synapse_statistics")
    state_dir = tmp_path_factory.mktemp("statistics-postgres")
    settings = evaluation_settings(
        state_dir,
        synapse={
            "database": {
                "engine": "postgresql",
                "host": "127.0.0.1",
                "port": postgres_cluster.port,
                "name": "synapse_statistics",
                "user": "synapse",
            }
        },
        clamav={"listen": {"port": appliance.settings.clamav.listen.port}},
    )
    with SideSynapse(settings, Layout.from_settings(settings, state_dir)) as running:
        yield running


def test_the_same_figures_on_postgresql(synapse_on_postgres):
    """The endpoint's SQL is the same on both engines but for the domain's position function:
    every figure is checked on PostgreSQL too."""
    token = synapse_on_postgres.admin_token()
    server_name = synapse_on_postgres.settings.server_name
    admin = Synapse(synapse_on_postgres.url, token, server_name)
    client = synapse_on_postgres.client()
    first, second = f"{unique('pg')}.gouv.fr", f"{unique('pg')}.gouv.fr"

    def agent(name: str, domain: str) -> Person:
        user_id = admin.create_user(unique(name), name.title(), email=f"{name}@{domain}")
        person = Person(client, user_id, admin.login(user_id))
        seen(person)
        return person

    anne, bruno, _chloe = agent("anne", first), agent("bruno", first), agent("chloe", second)
    before = today_row(figures(synapse_on_postgres.url, token))
    anne.new_room(preset="private_chat", name=unique("private"))
    open_rule = {"type": ACCESS_RULES, "state_key": "", "content": {"rule": "unrestricted"}}
    anne.new_room(preset="private_chat", name=unique("open"), initial_state=[open_rule])
    forum = anne.new_room(preset="public_chat", name=unique("forum"))
    direct = anne.new_room(is_direct=True, preset="trusted_private_chat", invite=[bruno.user_id])
    send(anne, forum, "m.room.message", {"msgtype": "m.text", "body": "bonjour"})
    encrypted = {"algorithm": MEGOLM, "ciphertext": "c2VjcmV0", "session_id": "s", "device_id": "D"}
    send(anne, direct, "m.room.encrypted", encrypted)

    def counted() -> dict | None:
        body = figures(synapse_on_postgres.url, token, days=366)
        domains = {row["domain"]: row["active_agents"] for row in body["per_domain"]}
        return body if domains.get(first) == 2 and domains.get(second) == 1 else None

    body = wait_for(counted, "the agents' visits in the statistics on PostgreSQL")
    after = today_row(body)
    assert after["day"] == before["day"], "the day changed during the test: run it again"
    assert {column: after[column] - before[column] for column in ROOM_COLUMNS} == dict.fromkeys(
        ROOM_COLUMNS, 1
    )
    assert after["messages"] - before["messages"] == 2
    assert after["registered_agents"] >= 3 and after["active_agents"] >= 3
    assert len(body["per_day"]) == 366 and body["per_month"][-1]["active_agents"] >= 3
    assert body["period"]["active_agents"] >= 3
