# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's login, CSRF, cookies, headers and session limits, through Flask's test client
(fast tier: no service runs)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from console_helpers import Clock, csrf_token, first_operator, login


def test_first_operator_is_created_once_with_a_private_file(app, tmp_path):
    file = Path(app.config["FIRST_OPERATOR_FILE"])
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    credentials = first_operator(app)
    assert credentials["username"] == "admin" and len(credentials["password"]) >= 20
    # A second app on the same database keeps the operator and does not rewrite the file.
    from admin_console import create_app

    create_app(dict(app.config))
    assert first_operator(app) == credentials


def test_login_with_generated_operator(app):
    client = app.test_client()
    credentials = first_operator(app)
    response = login(client, credentials["username"], credentials["password"])
    assert response.status_code == 302 and response.headers["Location"] == "/health/"
    assert client.get("/health/").status_code == 200


def test_wrong_password_is_refused(app):
    client = app.test_client()
    response = login(client, "admin", "not-the-password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.get_data(as_text=True)
    assert client.get("/health/").status_code == 302


def test_login_without_csrf_token_is_refused(app):
    credentials = first_operator(app)
    response = app.test_client().post("/login", data=credentials)
    assert response.status_code == 400


def test_logout_is_a_post_with_csrf(app):
    client = app.test_client()
    credentials = first_operator(app)
    login(client, credentials["username"], credentials["password"])
    page = client.get("/health/").get_data(as_text=True)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert client.get("/health/").status_code == 200  # so still logged in
    client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert client.get("/health/").status_code == 302


def test_open_redirect_after_login_is_refused(app):
    client = app.test_client()
    credentials = first_operator(app)
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login?next=//evil.example/", data={"csrf_token": token, **credentials})
    assert response.headers["Location"] == "/health/"


def test_cookie_and_security_headers(app):
    client = app.test_client()
    credentials = first_operator(app)
    response = login(client, credentials["username"], credentials["password"])
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/health/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "<script" not in page.get_data(as_text=True)


def test_production_cookie_is_secure_and_no_remember_me_cookie(app):
    from admin_console import create_app

    app = create_app({**app.config, "SESSION_COOKIE_SECURE": True})
    assert app.config["SESSION_COOKIE_SECURE"]
    credentials = first_operator(app)
    cookies = login(app.test_client(), credentials["username"], credentials["password"]).headers
    cookies = cookies.getlist("Set-Cookie")
    assert cookies and all("; Secure" in cookie for cookie in cookies)
    assert not any(cookie.startswith("remember_token=") for cookie in cookies)


# Session limits: time moves through the config's CLOCK, never by sleeping ----------------------
@pytest.fixture
def clock(app) -> Clock:
    app.config["CLOCK"] = clock = Clock()
    return clock


@pytest.fixture
def operator_client(app, clock):
    """The first operator, logged in at clock's time (SESSION_TIMEOUT_MINUTES is 30)."""
    client = app.test_client()
    credentials = first_operator(app)
    assert login(client, credentials["username"], credentials["password"]).status_code == 302
    return client


def ended_login_message(client, response) -> str:
    """The login page a request was sent to, instead of its own page, once the login ended."""
    assert response.status_code == 302 and response.headers["Location"].startswith("/login"), (
        response.status_code,
        response.headers.get("Location"),
    )
    return client.get(response.headers["Location"]).get_data(as_text=True)


def test_thirty_minutes_without_activity_end_the_login(operator_client, clock):
    for _ in range(3):  # activity every 29 minutes keeps it
        clock.advance(minutes=29)
        assert operator_client.get("/audit/").status_code == 200
    clock.advance(minutes=31)
    page = ended_login_message(operator_client, operator_client.get("/audit/"))
    assert "logged out after 30 minutes without activity" in page
    clock.advance(minutes=1)
    assert operator_client.get("/audit/").status_code == 302  # over for good


def test_the_health_page_refreshes_only_when_asked(operator_client):
    page = operator_client.get("/health/").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in page
    assert 'href="/health/?watch=1"' in page


def test_the_health_pages_own_reload_is_not_activity(operator_client, clock):
    page = operator_client.get("/health/?watch=1").get_data(as_text=True)
    reload_url = re.search(r'http-equiv="refresh" content="5; url=([^"]+)"', page).group(1)
    reload_url = reload_url.replace("&amp;", "&")
    clock.advance(minutes=20)
    reloaded = operator_client.get(reload_url)
    assert reloaded.status_code == 200
    assert "Set-Cookie" not in reloaded.headers  # nor does it push the cookie's expiry back
    clock.advance(minutes=11)  # 31 minutes after the last thing the operator did
    page = ended_login_message(operator_client, operator_client.get(reload_url))
    assert "without activity" in page


def test_navigating_is_activity_that_the_reload_does_not_undo(operator_client, clock):
    reload_url = "/health/?auto=1"
    clock.advance(minutes=20)
    assert operator_client.get("/audit/").status_code == 200
    clock.advance(minutes=20)
    assert operator_client.get(reload_url).status_code == 200
    clock.advance(minutes=11)
    assert operator_client.get(reload_url).status_code == 302


def test_a_login_lasts_twelve_hours_at_most_however_active(operator_client, clock):
    for _ in range(12 * 60 // 20):
        clock.advance(minutes=20)
        assert operator_client.get("/audit/").status_code == 200
    clock.advance(minutes=1)
    page = ended_login_message(operator_client, operator_client.get("/audit/"))
    assert "a login lasts 12 hours at most" in page


def test_the_end_of_a_login_is_in_the_audit_log(app, operator_client, clock):
    clock.advance(minutes=31)
    operator_client.get("/audit/")
    credentials = first_operator(app)
    login(operator_client, credentials["username"], credentials["password"])
    assert "session ended: idle" in operator_client.get("/audit/?q=session").get_data(as_text=True)


def test_operator_passwords_are_scrypt_hashes_unless_the_config_says_otherwise(app, tmp_path):
    from admin_console import create_app, db

    config = {key: value for key, value in app.config.items() if key != "PASSWORD_HASH_METHOD"}
    config.update(
        DATABASE=str(tmp_path / "default.sqlite3"),
        FIRST_OPERATOR_FILE=str(tmp_path / "default-admin.json"),
    )
    default = create_app(config)
    with db.connect(default.config["DATABASE"]) as connection:
        (stored,) = connection.execute("SELECT password_hash FROM operators").fetchone()
    assert stored.startswith("scrypt:")
    credentials = first_operator(default)
    assert login(default.test_client(), **credentials).status_code == 302
