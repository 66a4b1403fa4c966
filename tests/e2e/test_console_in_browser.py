# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console in a real browser, against the evaluation appliance's gunicorn console: an
operator adds a domain, an agent registers through the real email flow, the operator finds and
deactivates them and sees it in the audit log; five wrong passwords lock a login; an operator
changes their own password; a copy of the session cookie dies with the logout; long IDs wrap on
a laptop screen."""

from __future__ import annotations

import re
import secrets
import time
from urllib.parse import quote

import pyotp
import pytest
import requests
from playwright.sync_api import Page, expect

from e2e.conftest import log_in

pytestmark = pytest.mark.slow


def test_domain_registration_find_deactivate_audit(
    browser_page: Page, console_url, operator, appliance
):
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    expect(page).to_have_url(re.compile(r"/health/$"))

    domain = f"e2e-{secrets.token_hex(3)}.fr"
    page.click("nav >> text=Domains")
    page.fill("#entries", domain)
    page.click("form.stacked button[type=submit]")
    expect(page.locator(f'tr[data-entry="{domain}"].ok')).to_be_visible()
    page.fill("#q", domain)  # the list is paged: search it
    page.click("form.search button[type=submit]")
    expect(page.locator(f'tr[data-domain="{domain}"]')).to_be_visible()

    matrix_helpers = pytest.importorskip(
        "matrix_helpers", reason="tests/matrix_helpers.py (the email registration flow) is missing"
    )
    account = matrix_helpers.client_for(appliance).register_account(f"claire.martin@{domain}")

    page.click("nav >> text=Users")
    page.fill("#q", "claire.martin")
    page.click("form.search button[type=submit]")
    row = page.locator(f'tr[data-user="{account.user_id}"]')
    expect(row).to_contain_text("Claire Martin")
    row.locator("a").click()
    expect(page.locator("dl.facts")).to_contain_text(f"claire.martin@{domain}")

    page.click("button:has-text('Deactivate')")
    expect(page.locator("h1")).to_contain_text(f"Deactivate {account.user_id}?")
    page.click(".confirm button.danger")
    expect(page.locator(".flash.success")).to_contain_text("is deactivated")
    expect(page.locator("[data-state]")).to_contain_text("deactivated")

    page.click("nav >> text=Audit log")
    page.fill("#q", account.user_id)
    page.click("form.search button[type=submit]")
    entry = page.locator('tr[data-action="user.deactivate.erase"]')
    expect(entry).to_contain_text(operator["username"])
    expect(entry).to_contain_text(account.user_id)
    expect(entry.locator(".state")).to_have_text("ok")


def test_five_wrong_passwords_lock_the_login(browser_page: Page, console_url, operator):
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    name, password = f"e2e-{secrets.token_hex(3)}", "E2e-Operator-Passw0rd"
    add_operator_and_log_out(page, name, password)

    for attempt in range(5):
        log_in(page, console_url, name, f"wrong-{attempt}")
    expect(page.locator(".flash.error")).to_contain_text("this account is locked")
    log_in(page, console_url, name, password)  # the right password, too late
    expect(page.locator(".flash.error")).to_contain_text("this account is locked")
    expect(page).to_have_url(re.compile(r"/login"))


def add_operator_and_log_out(page: Page, name: str, password: str) -> None:
    page.click("nav >> text=Operators")
    page.fill("#username", name)
    page.fill("#password", password)
    page.fill("#confirm", password)
    page.click("form[data-add-operator] button[type=submit]")
    expect(page.locator(f'tr[data-operator="{name}"]')).to_be_visible()
    page.click("header .logout button")


def test_an_operator_changes_their_own_password(browser_page: Page, console_url, operator):
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    name, password = f"e2e-{secrets.token_hex(3)}", "E2e-Operator-Passw0rd"
    add_operator_and_log_out(page, name, password)

    log_in(page, console_url, name, password)
    page.click("header >> text=My password")
    page.fill("#current", password)
    page.fill("#password", "E2e-Chosen-Passw0rd")
    page.fill("#confirm", "E2e-Chosen-Passw0rd")
    page.click("form.stacked button[type=submit]")
    expect(page.locator(".flash.success")).to_contain_text("Your password is changed.")
    page.click("header .logout button")
    log_in(page, console_url, name, password)
    expect(page.locator(".flash.error")).to_contain_text("Wrong username or password.")
    log_in(page, console_url, name, "E2e-Chosen-Passw0rd")
    expect(page).to_have_url(re.compile(r"/health/$"))


@pytest.mark.parametrize("browser_page", ["fr-FR"], indirect=True)
def test_french_interface_from_the_browser_language(browser_page: Page, console_url):
    page = browser_page
    page.goto(f"{console_url}/login")
    expect(page.locator("h1")).to_have_text("Se connecter")
    page.click("header .languages button[value=en]")
    expect(page.locator("h1")).to_have_text("Log in")


def test_long_ids_wrap_instead_of_widening_the_page(
    browser_page: Page, console_url, operator, appliance
):
    """A Matrix ID or a name can be one word of a hundred characters and more: on a laptop
    screen the user list, a user's page and a room's page stay within the window."""
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 720})
    matrix_helpers = pytest.importorskip("matrix_helpers")
    client = matrix_helpers.client_for(appliance)
    admin_token = appliance.layout.service_token.read_text().strip()
    localpart = f"e2e-long-{secrets.token_hex(60)}"
    user_id = f"@{localpart}:{appliance.settings.server_name}"
    created = client.request(
        "PUT",
        f"/_synapse/admin/v2/users/{quote(user_id)}",
        token=admin_token,
        json={
            "password": matrix_helpers.PASSWORD,
            "displayname": localpart.upper(),
            "threepids": [{"medium": "email", "address": f"{localpart}@ac-paris.fr"}],
        },
    )
    assert created.status_code == 201, created.text
    room = client.request(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=admin_token,
        json={"preset": "private_chat", "invite": [user_id]},
    )
    assert room.status_code == 200, room.text
    login = client.post(
        "/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "password": matrix_helpers.PASSWORD,
            "identifier": {"type": "m.id.user", "user": user_id},
        },
    )
    joined = client.request(
        "POST",
        f"/_matrix/client/v3/join/{quote(room.json()['room_id'])}",
        token=login.json()["access_token"],
        json={},
    )
    assert joined.status_code == 200, joined.text  # the room's page lists joined members

    log_in(page, console_url, operator["username"], operator["password"])
    for path, shown in [
        (f"/users/?q={quote(user_id)}", f'tr[data-user="{user_id}"]'),
        (f"/users/{quote(user_id)}", "dl.facts"),
        (f"/rooms/{quote(room.json()['room_id'])}", "ul.members"),
    ]:
        page.goto(console_url + path)
        expect(page.locator(shown)).to_contain_text(user_id)
        assert page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        ), f"{path} is wider than the window"


def test_a_cookie_copied_before_logout_is_refused_after_it(
    browser_page: Page, console_url, operator
):
    """Someone copies the operator's cookie (same address, same browser signature); the
    operator logs out in the browser; the copy gets the login page."""
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    expect(page).to_have_url(re.compile(r"/health/$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "appliance_console")
    thief = requests.Session()
    thief.headers.update(
        {
            "User-Agent": page.evaluate("navigator.userAgent"),
            "Cookie": f"{cookie['name']}={cookie['value']}",
        }
    )
    before = thief.get(f"{console_url}/audit/", allow_redirects=False, timeout=30)
    assert before.status_code == 200 and 'data-action="login"' in before.text

    page.click("header .logout button")
    expect(page).to_have_url(re.compile(r"/login"))

    after = thief.get(f"{console_url}/audit/", allow_redirects=False, timeout=30)
    assert after.status_code == 302 and "/login" in after.headers["Location"]
    assert 'data-action="login"' not in after.text


def test_an_operator_sets_up_a_second_factor_and_logs_in_with_it(
    browser_page: Page, console_url, operator
):
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    name, password = f"e2e-{secrets.token_hex(3)}", "E2e-Operator-Passw0rd"
    add_operator_and_log_out(page, name, password)
    log_in(page, console_url, name, password)

    page.click("header >> text=Second factor")
    page.click("button:has-text('Set up a second factor')")
    expect(page.locator("figure.qr svg")).to_be_visible()
    # What the authenticator app does with the QR code: the key, then the current code.
    totp = pyotp.TOTP(page.locator("[data-secret]").inner_text().replace(" ", ""))
    page.fill("#code", totp.now())
    page.click("form.stacked button[type=submit]")
    expect(page.locator("[data-recovery-codes] li")).to_have_count(10)
    page.click("header .logout button")

    log_in(page, console_url, name, password)
    expect(page).to_have_url(re.compile(r"/login/second-factor"))
    page.fill("#code", totp.at(int(time.time()) + totp.interval))  # a fresh code: the next one
    page.click("form button[type=submit]:has-text('Log in')")
    expect(page).to_have_url(re.compile(r"/health/$"))


def test_an_auditor_sees_the_console_and_the_server_refuses_its_changes(
    browser_page: Page, console_url, operator
):
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    name, password = f"e2e-{secrets.token_hex(3)}", "E2e-Operator-Passw0rd"
    page.click("nav >> text=Operators")
    page.fill("#username", name)
    page.fill("#password", password)
    page.fill("#confirm", password)
    page.select_option("#role", "auditor")
    page.click("form[data-add-operator] button[type=submit]")
    expect(page.locator(f'tr[data-operator="{name}"]')).to_have_attribute("data-role", "auditor")
    page.click("header .logout button")

    log_in(page, console_url, name, password)
    expect(page.locator("[data-read-only]")).to_be_visible()
    page.click("nav >> text=Operators")
    expect(page.locator("form[data-add-operator]")).to_be_hidden()  # no "Add an operator"
    # What the page no longer offers, forged from the auditor's own logged-in browser.
    token = page.locator("header .logout input[name=csrf_token]").get_attribute("value")
    status = page.evaluate(
        """async ([token, name]) => (await fetch("./", {method: "POST",
            headers: {"Content-Type": "application/x-www-form-urlencoded"},
            body: new URLSearchParams({csrf_token: token, username: name + "x",
              password: "E2e-Operator-Passw0rd", confirm: "E2e-Operator-Passw0rd"})})).status""",
        [token, name],
    )
    assert status == 403
    page.reload()
    expect(page.locator(f'tr[data-operator="{name}x"]')).to_have_count(0)
