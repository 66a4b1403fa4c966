# SPDX-License-Identifier: AGPL-3.0-or-later
"""The operators' day in a real browser, against the evaluation appliance's own console: an
operator redacts a reported message, sends an announcement and follows its delivery, and reads
the retention policy rendered from the settings."""

from __future__ import annotations

import re
import secrets
from urllib.parse import quote

import pytest
import requests
from console_helpers import PASSWORD, Synapse, unique
from playwright.sync_api import Page, expect

from e2e.conftest import log_in

pytestmark = pytest.mark.slow


@pytest.fixture
def admin(appliance, admin_token) -> Synapse:
    settings = appliance.settings
    return Synapse(settings.synapse.listen.url, admin_token, settings.server_name)


def call(synapse: Synapse, token: str, method: str, path: str, body: dict | None = None) -> dict:
    response = requests.request(
        method,
        synapse.url + path,
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.ok, response.text
    return response.json()


def test_redact_a_reported_message(browser_page: Page, console_url, operator, admin):
    sender = admin.create_user(unique("rude"), "Rude [ac-paris.fr]")
    reporter = admin.create_user(unique("witness"), "Witness [ac-paris.fr]")
    sender_token, reporter_token = admin.login(sender, PASSWORD), admin.login(reporter, PASSWORD)
    room = call(
        admin, sender_token, "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"}
    )
    room_id = quote(room["room_id"])
    call(admin, reporter_token, "POST", f"/_matrix/client/v3/join/{room_id}", {})
    text = f"rude words {secrets.token_hex(4)}"
    event_id = call(
        admin,
        sender_token,
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{secrets.token_hex(4)}",
        {"msgtype": "m.text", "body": text},
    )["event_id"]
    call(
        admin,
        reporter_token,
        "POST",
        f"/_matrix/client/v3/rooms/{room_id}/report/{quote(event_id)}",
        {"reason": "insults"},
    )

    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    page.click("nav >> text=Reports")
    row = page.locator(f'tr[data-event="{event_id}"]')
    expect(row).to_contain_text(text)
    expect(row).to_contain_text("insults")
    row.locator("button:has-text('Redact')").click()
    expect(page.locator("h1")).to_contain_text("Redact the reported message")
    page.click(".confirm button.danger")
    expect(page.locator(".flash.success")).to_contain_text("is redacted")
    row = page.locator(f'tr[data-event="{event_id}"]')
    expect(row.locator('[data-content="redacted"]')).to_be_visible()
    expect(row).not_to_contain_text(text)


def test_send_an_announcement_and_follow_it(browser_page: Page, console_url, operator, admin):
    user_id = admin.create_user(unique("reader"), "Reader [ac-paris.fr]")
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    page.click("nav >> text=Announcements")
    page.check("input[name=audience][value=user]")
    page.fill("#user", user_id)
    tag = secrets.token_hex(4)
    page.fill("#text_fr", f"Coupure ce soir {tag}")
    page.fill("#text_en", f"Outage tonight {tag}")
    page.click("form.stacked button[type=submit]")
    expect(page).to_have_url(re.compile(r"/announcements/\d+$"))
    # The page reloads itself until the job ends.
    expect(page.locator("dl.facts")).to_have_attribute("data-state", "done", timeout=60_000)
    expect(page.locator("[data-sent]")).to_have_text("1")
    expect(page.locator("[data-failed]")).to_have_text("0")


def test_the_retention_policy_is_shown(browser_page: Page, console_url, operator):
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    page.click("nav >> text=Retention")
    expect(page.locator('[data-policy="bounds"]')).to_have_text("1 to 365 days")
    expect(page.locator('[data-policy="remote-media"]')).to_have_text("90 days")
