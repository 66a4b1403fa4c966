# SPDX-License-Identifier: AGPL-3.0-or-later
"""Every route of the console, read from the app's own URL map (so a page added tomorrow is
covered without touching this file): anonymous requests get the login page, never content, and
a POST without a CSRF token is refused on every POST route, even for a logged-in operator.
"""

from __future__ import annotations

from console_helpers import PUBLIC, csrf_token, final_response, first_operator, routes

from admin_console import db


def test_the_public_list_names_only_routes_that_exist(app):
    existing = {(endpoint, method) for endpoint, method, _ in routes(app)}
    assert set(PUBLIC) <= existing


def test_every_route_sends_an_anonymous_visitor_to_the_login_page(app):
    client = app.test_client()
    checked = 0
    for endpoint, method, path in routes(app):
        if (endpoint, method) in PUBLIC:
            continue
        # A valid CSRF token of this anonymous session (logout renews the session): the login,
        # not the CSRF check, must be what refuses.
        token = csrf_token(client.get("/login").get_data(as_text=True))
        response = final_response(client, method, path, {"csrf_token": token, "confirmed": "yes"})
        assert response.status_code == 302, (method, path, response.status_code)
        assert response.headers["Location"].startswith("/login"), (method, path)
        assert "<nav" not in response.get_data(as_text=True), (method, path)
        checked += 1
    assert checked >= 30  # the walk saw the whole console, not an empty map


def audit_and_operators(app) -> tuple[int, list[tuple]]:
    with db.connect(app.config["DATABASE"]) as connection:
        entries = connection.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
        operators = connection.execute("SELECT id, username, password_hash FROM operators")
        return entries, [tuple(row) for row in operators]


def test_every_post_route_refuses_a_request_without_csrf_token(app, console):
    before = audit_and_operators(app)
    password = "Hostile-Passw0rd-9"
    form = {  # everything any form of the console reads, filled, with the confirmation
        "confirmed": "yes",
        "username": "intruder",
        "password": password,
        "confirm": password,
        "current": first_operator(app)["password"],
        "entries": "intruder.example",
        "emails": "someone@intruder.example",
        "media": "mxc://fast.test/abcdef",
        "lang": "fr",
        "erase": "y",
    }
    posts = [path for _, method, path in routes(app) if method == "POST"]
    for path in posts:
        response = console.client.post(path, data=form)
        assert response.status_code == 400, (path, response.status_code)
        assert "The CSRF token is missing." in response.get_data(as_text=True), path
    assert len(posts) >= 20
    assert audit_and_operators(app) == before  # nothing done, nothing recorded
    assert "intruder" not in console.get("/operators/")  # and still logged in, not logged out
