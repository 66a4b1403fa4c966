# SPDX-License-Identifier: AGPL-3.0-or-later
"""Operators' second factor (TOTP with recovery codes) and roles (administrator, auditor).

The codes are computed from the secret the enrolment page shows, with pyotp, as an
authenticator app computes them from the QR code. Every state-changing route of the console,
read from the app's own URL map, is tried as an auditor: each must be refused by the server,
whatever the page offers.
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from console_helpers import (
    PUBLIC,
    Console,
    csrf_token,
    final_response,
    first_operator,
    login,
    routes,
)

from admin_console import db
from admin_console.operators.roles import SELF_SERVICE
from admin_console.second_factor.store import RECOVERY_CODES

PASSWORD = "Second-Factor-Passw0rd"


def enrol(console: Console) -> tuple[pyotp.TOTP, list[str]]:
    """Set up a second factor as an operator does: the key shown, a first code, the codes."""
    page = console.post("/account/second-factor/enrol").get_data(as_text=True)
    secret = re.search(r"data-secret>([A-Z2-7 ]+)<", page).group(1).replace(" ", "")
    assert "<svg" in page  # the QR code to scan
    totp = pyotp.TOTP(secret)
    confirmed = console.post("/account/second-factor/confirm", code=totp.now())
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", confirmed.get_data(as_text=True))
    assert len(codes) == RECOVERY_CODES
    return totp, codes


def second_step(client, code: str):
    page = client.get("/login/second-factor").get_data(as_text=True)
    return client.post("/login/second-factor", data={"csrf_token": csrf_token(page), "code": code})


def next_code(totp: pyotp.TOTP) -> str:
    """The code of the next time step (an app one step ahead): a fresh, unused one."""
    return totp.at(int(time.time()) + totp.interval)


def add_operator(console: Console, name: str, role: str = "administrator") -> None:
    response = console.post(
        "/operators/", username=name, password=PASSWORD, confirm=PASSWORD, role=role
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def audit_rows(app, action: str) -> list:
    with db.connect(app.config["DATABASE"]) as connection:
        return connection.execute(
            "SELECT operator, target, ok, detail FROM audit_log WHERE action = ? ORDER BY id",
            (action,),
        ).fetchall()


# --- second factor -----------------------------------------------------------------------------


def test_with_a_second_factor_the_password_alone_opens_nothing(app, console):
    totp, _ = enrol(console)
    me = first_operator(app)
    client = app.test_client()

    response = login(client, me["username"], me["password"])

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/second-factor")
    # Between the two steps nothing of the console opens.
    assert client.get("/users/").headers["Location"].startswith("/login")
    assert second_step(client, "000000").status_code == 401
    done = second_step(client, next_code(totp))
    assert done.status_code == 302 and done.headers["Location"] == "/health/"
    assert client.get("/users/").status_code in (200, 503)  # logged in (Synapse is absent)
    assert audit_rows(app, "login")[-1]["detail"] == "second factor: authenticator code"


def test_a_code_works_once(app, console):
    totp, _ = enrol(console)
    me = first_operator(app)
    code = next_code(totp)
    first = app.test_client()
    login(first, me["username"], me["password"])
    assert second_step(first, code).status_code == 302

    second = app.test_client()
    login(second, me["username"], me["password"])
    replay = second_step(second, code)

    assert replay.status_code == 401
    assert "already used" in replay.get_data(as_text=True)


def test_a_recovery_code_logs_in_once_in_any_spelling(app, console):
    _, codes = enrol(console)
    me = first_operator(app)
    client = app.test_client()
    login(client, me["username"], me["password"])
    assert second_step(client, codes[0].upper().replace("-", " ")).status_code == 302
    again = app.test_client()
    login(again, me["username"], me["password"])
    assert second_step(again, codes[0]).status_code == 401
    assert audit_rows(app, "login")[-1]["detail"] == "second factor: wrong code"


def test_guessing_codes_locks_out_and_the_right_password_gives_no_fresh_guesses(app, console):
    totp, _ = enrol(console)
    me = first_operator(app)
    client = app.test_client()
    statuses = []
    for _ in range(12):
        login(client, me["username"], me["password"])  # the right password, again and again
        statuses.append(second_step(client, "123456").status_code)
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429, statuses
    login(client, me["username"], me["password"])
    # Locked: even the right code is not even checked now.
    assert second_step(client, next_code(totp)).status_code == 429


def test_the_second_step_cannot_be_reached_without_the_password(app):
    client = app.test_client()
    response = client.get("/login/second-factor")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_the_setting_makes_every_operator_set_one_up_and_keep_it(app):
    console = Console(app)
    app.config["REQUIRE_SECOND_FACTOR"] = True  # read at each request, as after a restart

    sent = console.client.get("/users/")
    assert sent.status_code == 302
    assert sent.headers["Location"] == "/account/second-factor"
    totp, _ = enrol(console)
    assert console.client.get("/audit/").status_code == 200
    kept = console.post("/account/second-factor/remove", code=next_code(totp))
    assert kept.status_code == 403


def test_an_operator_may_remove_it_with_a_code_when_not_required(app, console):
    totp, _ = enrol(console)
    assert console.post("/account/second-factor/remove", code="999999").status_code == 400
    removed = console.post("/account/second-factor/remove", code=next_code(totp))
    assert removed.status_code == 302
    me = first_operator(app)
    assert (
        login(app.test_client(), me["username"], me["password"]).headers["Location"] == "/health/"
    )


def test_an_administrator_resets_a_colleagues_lost_second_factor(app, console):
    add_operator(console, "colleague")
    colleague = Console(app, "colleague", PASSWORD)
    enrol(colleague)
    page = console.get("/operators/")
    colleague_id = page.split('data-operator="colleague" data-operator-id="')[1].split('"')[0]

    console.confirm(f"/operators/{colleague_id}/second-factor/reset")

    fresh = app.test_client()
    assert login(fresh, "colleague", PASSWORD).headers["Location"] == "/health/"
    assert audit_rows(app, "operator.second_factor.reset")[-1]["ok"] == 1


# --- roles -------------------------------------------------------------------------------------


@pytest.fixture
def auditor(app, console) -> Console:
    add_operator(console, "auditrice", role="auditor")
    return Console(app, "auditrice", PASSWORD)


def test_an_auditor_sees_every_page(app, auditor):
    for path in ("/health/", "/users/", "/domains/", "/rooms/", "/invitations/", "/media/"):
        response = auditor.client.get(path)
        # The pages that need Synapse say it is down (503): the console's own answer, not 403.
        assert response.status_code in (200, 503), (path, response.status_code)
    for path in ("/audit/", "/operators/", "/federation/"):
        page = auditor.get(path)
        assert "data-read-only" in page


def test_an_auditor_changes_nothing_whatever_it_posts(app, auditor):
    before = audit_rows(app, "refused")
    tried = 0
    for endpoint, method, path in routes(app):
        if method in ("GET", "HEAD") or (endpoint, method) in PUBLIC:
            continue
        if endpoint in SELF_SERVICE or endpoint.startswith(("auth.", "second_factor.verify")):
            continue
        response = final_response(
            auditor.client, method, path, {"csrf_token": auditor.token, "confirmed": "yes"}
        )
        assert response.status_code == 403, (method, path, response.status_code)
        tried += 1
    assert tried >= 20  # the whole console, not an empty map
    assert len(audit_rows(app, "refused")) - len(before) == tried
    # Nothing it posted happened: still two operators, the auditor still an auditor.
    with db.connect(app.config["DATABASE"]) as connection:
        assert connection.execute("SELECT COUNT(*) FROM operators").fetchone()[0] == 2
        assert connection.execute("SELECT role FROM operator_roles").fetchall()[0][0] == "auditor"


def test_an_auditor_keeps_its_own_password_and_second_factor(app, auditor):
    enrol(auditor)
    changed = auditor.post(
        "/operators/password", current=PASSWORD, password=PASSWORD + "2", confirm=PASSWORD + "2"
    )
    assert changed.status_code == 302


def test_the_last_administrator_stays_one(app, console, auditor):
    me = first_operator(app)
    page = console.get("/operators/")
    my_id = page.split(f'data-operator="{me["username"]}" data-operator-id="')[1].split('"')[0]

    demoted = console.post(f"/operators/{my_id}/role", role="auditor")

    assert demoted.status_code == 409
    assert 'data-role="administrator"' in console.get("/operators/")
    auditor_id = page.split('data-operator="auditrice" data-operator-id="')[1].split('"')[0]
    assert console.post(f"/operators/{auditor_id}/role", role="administrator").status_code == 302
    # Two administrators now: one may become an auditor.
    assert console.post(f"/operators/{my_id}/role", role="auditor").status_code == 302
