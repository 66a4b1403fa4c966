# SPDX-License-Identifier: AGPL-3.0-or-later
"""Logins end on the server: a copy of the session cookie (a thief's) stops working when the
login it belongs to is ended by logout, a password change, the operator's removal or a limit.

Each test copies the cookie as an attacker would (same address, same browser), checks the copy
works while the login lives, then checks it gets the login page, and the table of logins, after.
"""

from __future__ import annotations

import hashlib

from console_helpers import Clock, Console, first_operator, login

from admin_console import db

COOKIE = "appliance_console"
OPERATOR_PASSWORD = "Operator-Passw0rd-1"
NEW_PASSWORD = "Chosen-Passw0rd-2"


def stolen_copy(app, client):
    """Another browser holding a copy of client's session cookie."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, client.get_cookie(COOKIE).value)
    return thief


def is_logged_in(client) -> bool:
    """Whether the client gets the audit log (True) or is sent to the login page (False)."""
    response = client.get("/audit/")
    if response.status_code == 200:
        assert 'data-action="login"' in response.get_data(as_text=True)
        return True
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    return False


def logins_of(app, username: str) -> int:
    with db.connect(app.config["DATABASE"]) as connection:
        return connection.execute(
            "SELECT COUNT(*) FROM operator_sessions AS s JOIN operators AS o"
            " ON o.id = s.operator_id WHERE o.username = ?",
            (username,),
        ).fetchone()[0]


def operator_names(app) -> set[str]:
    with db.connect(app.config["DATABASE"]) as connection:
        return {row[0] for row in connection.execute("SELECT username FROM operators")}


def add_operator(console: Console, name: str) -> None:
    response = console.post(
        "/operators/", username=name, password=OPERATOR_PASSWORD, confirm=OPERATOR_PASSWORD
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def test_a_cookie_copied_before_logout_is_refused_after_it(app, console):
    admin = first_operator(app)["username"]
    other_device = Console(app)  # the same operator's second login
    thief = stolen_copy(app, console.client)
    assert is_logged_in(thief)  # a copy is the same login, as long as it lives

    assert console.post("/logout").status_code == 302

    assert not is_logged_in(thief)
    assert not is_logged_in(console.client)
    # The thief's copy still holds a valid CSRF token: a change is refused all the same.
    sneaked = thief.post(
        "/operators/",
        data={
            "csrf_token": console.token,
            "username": "sneaked-in",
            "password": OPERATOR_PASSWORD,
            "confirm": OPERATOR_PASSWORD,
        },
    )
    assert sneaked.status_code == 302 and sneaked.headers["Location"].startswith("/login")
    assert "sneaked-in" not in operator_names(app)
    # Logout ends that login only: the operator's other device stays logged in.
    assert is_logged_in(other_device.client)
    assert logins_of(app, admin) == 1


def test_a_password_change_ends_every_other_login_of_that_operator(app, console):
    add_operator(console, "claire")
    laptop = Console(app, "claire", OPERATOR_PASSWORD)
    phone = Console(app, "claire", OPERATOR_PASSWORD)
    thief = stolen_copy(app, laptop.client)
    assert is_logged_in(thief) and logins_of(app, "claire") == 2

    changed = phone.post(
        "/operators/password",
        current=OPERATOR_PASSWORD,
        password=NEW_PASSWORD,
        confirm=NEW_PASSWORD,
    )
    assert changed.status_code == 302

    assert is_logged_in(phone.client)  # who changed it stays logged in
    assert not is_logged_in(laptop.client)
    assert not is_logged_in(thief)
    assert is_logged_in(console.client)  # another operator's login is not touched
    assert logins_of(app, "claire") == 1
    assert "ended 1 other login(s)" in console.get("/audit/?q=operator.password")


def test_a_failed_password_change_ends_nothing(app, console):
    add_operator(console, "denis")
    laptop = Console(app, "denis", OPERATOR_PASSWORD)
    phone = Console(app, "denis", OPERATOR_PASSWORD)
    refused = phone.post(
        "/operators/password",
        current="Not-the-Passw0rd",
        password=NEW_PASSWORD,
        confirm=NEW_PASSWORD,
    )
    assert refused.status_code == 400
    assert is_logged_in(laptop.client) and logins_of(app, "denis") == 2


def test_removing_an_operator_ends_all_their_logins(app, console):
    add_operator(console, "eve")
    laptop = Console(app, "eve", OPERATOR_PASSWORD)
    phone = Console(app, "eve", OPERATOR_PASSWORD)
    thief = stolen_copy(app, laptop.client)
    eve_id = next(
        row[0]
        for row in db.connect(app.config["DATABASE"]).execute(
            "SELECT id FROM operators WHERE username = 'eve'"
        )
    )

    console.confirm(f"/operators/{eve_id}/remove")

    assert "eve" not in operator_names(app)
    for client in (laptop.client, phone.client, thief):
        assert not is_logged_in(client)
    # Not even with a CSRF token of her own login: she cannot add herself back.
    back = laptop.post(
        "/operators/", username="eve", password=OPERATOR_PASSWORD, confirm=OPERATOR_PASSWORD
    )
    assert back.status_code == 302 and back.headers["Location"].startswith("/login")
    assert "eve" not in operator_names(app)
    with db.connect(app.config["DATABASE"]) as connection:
        orphans = connection.execute(
            "SELECT COUNT(*) FROM operator_sessions WHERE operator_id = ?", (eve_id,)
        ).fetchone()[0]
    assert orphans == 0


def test_the_idle_limit_ends_the_login_on_the_server(app):
    app.config["CLOCK"] = clock = Clock()
    console = Console(app)
    thief = stolen_copy(app, console.client)
    clock.advance(minutes=31)

    assert not is_logged_in(thief)  # the first request after the limit ends the login
    assert logins_of(app, first_operator(app)["username"]) == 0
    clock.now -= 31 * 60  # even back within the limit, that login is gone
    assert not is_logged_in(console.client)


def test_the_absolute_limit_ends_the_login_on_the_server(app):
    app.config["CLOCK"] = clock = Clock()
    console = Console(app)
    for _ in range(12 * 60 // 25):
        clock.advance(minutes=25)
        assert is_logged_in(console.client)
    thief = stolen_copy(app, console.client)
    clock.advance(minutes=25)
    assert not is_logged_in(thief)
    assert logins_of(app, first_operator(app)["username"]) == 0


def session_data(app, client) -> dict:
    """What the signed cookie holds (anyone can read it: it is signed, not encrypted)."""
    serializer = app.session_interface.get_signing_serializer(app)
    return serializer.loads(client.get_cookie(COOKIE).value)


def signed(app, data: dict) -> str:
    return app.session_interface.get_signing_serializer(app).dumps(data)


def test_the_cookie_holds_an_opaque_token_and_the_database_only_its_hash(app, console):
    data = session_data(app, console.client)
    token = data["_user_id"]
    assert len(token) >= 40  # 32 random bytes, not an operator id
    assert set(data) <= {
        "_user_id",
        "_fresh",
        "_id",
        "_permanent",
        "csrf_token",
        "lang",
        "_flashes",
    }
    with db.connect(app.config["DATABASE"]) as connection:
        stored = [
            row[0] for row in connection.execute("SELECT token_sha256 FROM operator_sessions")
        ]
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]


def test_a_validly_signed_cookie_naming_an_operator_id_is_refused(app, console):
    """A cookie from before server-side logins (it held the operator's id), or one signed with a
    leaked key: without a recorded login's token it is anonymous."""
    data = session_data(app, console.client)
    for forged_id in ("1", "0", hashlib.sha256(data["_user_id"].encode()).hexdigest()):
        forger = app.test_client()
        forger.set_cookie(COOKIE, signed(app, {**data, "_user_id": forged_id}))
        assert not is_logged_in(forger), forged_id


def test_a_cookie_planted_before_login_stays_anonymous_after_it(app):
    """Session fixation: the attacker gets a cookie from the login page and makes the victim's
    browser use it; the victim's login gets a fresh token the attacker's copy never had."""
    attacker = app.test_client()
    attacker.get("/login")
    victim = stolen_copy(app, attacker)
    credentials = first_operator(app)
    assert login(victim, credentials["username"], credentials["password"]).status_code == 302
    assert is_logged_in(victim)
    assert not is_logged_in(attacker)
