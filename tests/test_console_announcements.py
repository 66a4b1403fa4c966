# SPDX-License-Identifier: AGPL-3.0-or-later
"""Announcements against a real Synapse: the console sends server notices in French and
English to one domain's agents or to one user, in a background job whose delivery count it
shows; the recipients' /sync has the notice, a user of another domain does not. A delivery cut
off by a restart goes on from where it stopped, and a live one is never taken over."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
import requests
from console_helpers import register_external, unique
from flask import Flask
from matrix_helpers import PASSWORD as MATRIX_PASSWORD

from admin_console import db, leases
from admin_console.announcements import delivery, store

JOB_TIMEOUT = 120
# "Every agent" is every agent the test session made so far (hundreds in the whole suite), each
# getting a notices room made on their first notice.
EVERYONE_TIMEOUT = 600


def agent(synapse, domain: str) -> tuple[str, str]:
    localpart = unique("agent")
    user_id = synapse.create_user(localpart, f"Agent [{domain}]", email=f"{localpart}@{domain}")
    return user_id, synapse.login(user_id)


def sync_bodies(synapse, token: str) -> list[str]:
    """Every message body in the timelines of the user's joined rooms, as a client syncs."""
    response = requests.get(
        f"{synapse.url}/_matrix/client/v3/sync",
        params={"timeout": 0},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    rooms = response.json().get("rooms", {}).get("join", {})
    return [
        event["content"].get("body", "")
        for room in rooms.values()
        for event in room["timeline"]["events"]
        if event["type"] == "m.room.message"
    ]


def wait_for_job(app, announcement_id: int, timeout: float = JOB_TIMEOUT) -> store.Announcement:
    deadline = time.monotonic() + timeout
    connection = db.connect(app.config["DATABASE"])
    try:
        while True:
            announcement = store.get(connection, announcement_id)
            if not announcement.running:
                return announcement
            assert time.monotonic() < deadline, f"announcement still sending: {announcement}"
            time.sleep(0.2)
    finally:
        connection.close()


def send(console, **form) -> int:
    response = console.post("/announcements/", **form)
    assert response.status_code == 302, response.get_data(as_text=True)
    found = re.search(r"/announcements/(\d+)$", response.headers["Location"])
    assert found, response.headers["Location"]
    return int(found.group(1))


@pytest.fixture
def texts():
    tag = unique("notice")
    return f"Maintenance ce soir {tag}", f"Maintenance tonight {tag}"


def test_domain_announcement_reaches_its_agents_only(app, console, synapse, texts):
    domain = f"{unique('dom')}.gouv.fr"
    inside = [agent(synapse, domain) for _ in range(2)]
    outside = agent(synapse, f"{unique('other')}.gouv.fr")
    text_fr, text_en = texts

    number = send(console, audience="domain", domain=domain, text_fr=text_fr, text_en=text_en)
    done = wait_for_job(app, number)
    assert (done.sent, done.failed) == (2, 0), done.failures

    for _, token in inside:
        (body,) = [b for b in sync_bodies(synapse, token) if text_fr in b]
        assert text_en in body  # both languages in the one notice
    assert not [b for b in sync_bodies(synapse, outside[1]) if text_fr in b]

    page = console.get(f"/announcements/{number}")
    assert re.search(r"<dd data-sent>2</dd>", page) and re.search(r"<dd data-failed>0</dd>", page)
    audit = console.get(f"/audit/?q=announcement+{number}")
    assert "announcement.send" in audit and "announcement.delivered" in audit
    assert "2 delivered, 0 failed" in audit


def test_one_user_gets_the_announcement(app, console, synapse, texts):
    user_id, token = agent(synapse, "ac-paris.fr")
    text_fr, text_en = texts
    number = send(console, audience="user", user=user_id, text_fr=text_fr, text_en=text_en)
    assert wait_for_job(app, number).sent == 1
    assert [b for b in sync_bodies(synapse, token) if text_fr in b and text_en in b]


def test_bad_audience_is_refused_with_the_reason_and_sends_nothing(app, console, texts):
    text_fr, text_en = texts
    before = len(store.recent(db.connect(app.config["DATABASE"]), limit=1000))
    response = console.post(
        "/announcements/",
        audience="user",
        user=f"@nobody-{unique('x')}:{app.config['SERVER_NAME_MATRIX']}",
        text_fr=text_fr,
        text_en=text_en,
    )
    assert response.status_code == 302
    assert "does not exist" in console.get("/announcements/")
    response = console.post(
        "/announcements/", audience="domain", domain="*.gouv.fr", text_fr=text_fr, text_en=text_en
    )
    assert "not a wildcard" in console.get("/announcements/")
    assert len(store.recent(db.connect(app.config["DATABASE"]), limit=1000)) == before


def test_every_agent_gets_it_and_no_external(app, appliance, console, synapse, texts):
    agents = [agent(synapse, "ac-paris.fr") for _ in range(2)]
    external = register_external(appliance, unique("ann"))
    text_fr, text_en = texts
    response = console.confirm("/announcements/", audience="all", text_fr=text_fr, text_en=text_en)
    assert response.status_code == 302, response.get_data(as_text=True)
    number = int(response.headers["Location"].rpartition("/")[2])
    done = wait_for_job(app, number, EVERYONE_TIMEOUT)
    for user_id, token in agents:
        assert [b for b in sync_bodies(synapse, token) if text_fr in b]
        assert not [line for line in done.failures if line.startswith(user_id)]
    assert done.sent >= len(agents)
    external_token = synapse.login(external, MATRIX_PASSWORD)
    assert not [b for b in sync_bodies(synapse, external_token) if text_fr in b]


def cut_off_delivery(app, domain: str, texts: tuple[str, str], done: list[str]) -> int:
    """An announcement to `domain` left "running" by a console that died after recording
    the recipients `done` (as its last batch would have): no job, no live lease."""
    connection = db.connect(app.config["DATABASE"])
    try:
        announcement_id = store.create(
            connection,
            operator="admin",
            audience="domain",
            target=domain,
            text_fr=texts[0],
            text_en=texts[1],
        )
        store.count_batch(connection, announcement_id, [(user_id, None) for user_id in done])
        return announcement_id
    finally:
        connection.close()


def test_a_delivery_cut_off_by_a_restart_goes_on_after_the_last_recipient_recorded(
    app, synapse, texts
):
    domain = f"{unique('dom')}.gouv.fr"
    agents = sorted(agent(synapse, domain) for _ in range(3))  # the job's order: by user ID
    number = cut_off_delivery(app, domain, texts, done=[agents[0][0]])

    threads = delivery.resume_interrupted(app)
    for thread in threads:
        thread.join(JOB_TIMEOUT)
    done = wait_for_job(app, number)

    assert (done.sent, done.failed) == (3, 0), done.failures
    # The one recorded before the cut was not sent to again; the others got it once.
    assert not [b for b in sync_bodies(synapse, agents[0][1]) if texts[0] in b]
    for _, token in agents[1:]:
        assert len([b for b in sync_bodies(synapse, token) if texts[0] in b]) == 1


def test_a_delivery_whose_job_is_alive_is_not_taken_over(app, synapse, texts):
    domain = f"{unique('dom')}.gouv.fr"
    user_id, token = agent(synapse, domain)
    number = cut_off_delivery(app, domain, texts, done=[])
    connection = db.connect(app.config["DATABASE"])
    try:
        # Another console worker's job holds the lease, as it does between two batches.
        lease = f"announcement {number}"
        assert leases.acquire(connection, lease, holder="other", seconds=600, now=time.time())
        assert delivery.resume_interrupted(app) == []
        assert store.get(connection, number).running
        # Its worker dies: the lease runs out, and the next round takes the delivery over.
        connection.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (0, lease))
        for thread in delivery.resume_interrupted(app):
            thread.join(JOB_TIMEOUT)
    finally:
        connection.close()
    assert (wait_for_job(app, number).sent, user_id) == (1, user_id)
    assert [b for b in sync_bodies(synapse, token) if texts[0] in b]


def test_a_console_database_from_before_resumable_deliveries_is_upgraded(tmp_path):
    path = tmp_path / "console.db"
    with sqlite3.connect(path) as old:  # the announcements table as its first release made it
        old.execute(
            "CREATE TABLE announcements (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL"
            " NOT NULL, operator TEXT NOT NULL, audience TEXT NOT NULL, target TEXT NOT NULL"
            " DEFAULT '', text_fr TEXT NOT NULL, text_en TEXT NOT NULL, state TEXT NOT NULL,"
            " sent INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, failures TEXT"
            " NOT NULL DEFAULT '', finished_at REAL)"
        )
        old.execute(
            "INSERT INTO announcements (created_at, operator, audience, text_fr, text_en, state)"
            " VALUES (1, 'admin', 'all', 'fr', 'en', 'done')"
        )
    app = Flask(__name__)
    app.config["DATABASE"] = str(path)
    db.init_app(app)
    connection = db.connect(str(path))
    try:
        (kept,) = store.recent(connection)
        assert (kept.text_fr, kept.resume_from) == ("fr", "")
    finally:
        connection.close()


def test_a_delivery_that_ended_meanwhile_is_not_sent_again(app, synapse, texts):
    domain = f"{unique('dom')}.gouv.fr"
    _, token = agent(synapse, domain)
    number = cut_off_delivery(app, domain, texts, done=[])
    connection = db.connect(app.config["DATABASE"])
    try:
        stale = store.get(connection, number)  # read as "running" by a resume round...
        store.finish(connection, number)  # ...whose job then ends before the lease is checked
    finally:
        connection.close()
    with app.app_context():
        delivery.start(stale).join(JOB_TIMEOUT)
    assert wait_for_job(app, number).sent == 0
    assert not [b for b in sync_bodies(synapse, token) if texts[0] in b]
