"""The console's login, CSRF, cookies and headers, through Flask's test client."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest


def first_operator(app) -> dict:
    return json.loads(Path(app.config["FIRST_OPERATOR_FILE"]).read_text())


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def login(client, username: str, password: str):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )


@pytest.fixture
def csrf_app(console_app):
    console_app.config["WTF_CSRF_ENABLED"] = True
    return console_app


def test_first_operator_is_created_once_with_a_private_file(console_app, tmp_path):
    file = Path(console_app.config["FIRST_OPERATOR_FILE"])
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    credentials = first_operator(console_app)
    assert credentials["username"] == "admin" and len(credentials["password"]) >= 20
    # A second app on the same database keeps the operator and does not rewrite the file.
    from admin_console import create_app

    create_app(dict(console_app.config))
    assert first_operator(console_app) == credentials


def test_every_page_requires_login(console_app):
    client = console_app.test_client()
    for path in ("/", "/health/", "/health/checks.json"):
        response = client.get(path, follow_redirects=True)
        assert response.request.path == "/login", path


def test_login_with_generated_operator(csrf_app):
    client = csrf_app.test_client()
    credentials = first_operator(csrf_app)
    response = login(client, credentials["username"], credentials["password"])
    assert response.status_code == 302 and response.headers["Location"] == "/health/"
    assert client.get("/health/").status_code == 200


def test_wrong_password_is_refused(csrf_app):
    client = csrf_app.test_client()
    response = login(client, "admin", "not-the-password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.get_data(as_text=True)
    assert client.get("/health/").status_code == 302


def test_login_without_csrf_token_is_refused(csrf_app):
    credentials = first_operator(csrf_app)
    response = csrf_app.test_client().post("/login", data=credentials)
    assert response.status_code == 400


def test_logout_is_a_post_with_csrf(csrf_app):
    client = csrf_app.test_client()
    credentials = first_operator(csrf_app)
    login(client, credentials["username"], credentials["password"])
    page = client.get("/health/").get_data(as_text=True)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert client.get("/health/").status_code == 200  # so still logged in
    client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert client.get("/health/").status_code == 302


def test_open_redirect_after_login_is_refused(csrf_app):
    client = csrf_app.test_client()
    credentials = first_operator(csrf_app)
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login?next=//evil.example/", data={"csrf_token": token, **credentials}
    )
    assert response.headers["Location"] == "/health/"


def test_cookie_and_security_headers(csrf_app):
    client = csrf_app.test_client()
    credentials = first_operator(csrf_app)
    response = login(client, credentials["username"], credentials["password"])
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/health/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "<script" not in page.get_data(as_text=True)


def test_production_cookie_is_secure(console_app):
    from admin_console import create_app

    app = create_app({**console_app.config, "SESSION_COOKIE_SECURE": True})
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]
