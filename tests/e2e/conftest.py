# SPDX-License-Identifier: AGPL-3.0-or-later
"""A real browser (Debian's Chromium through Playwright) on the running evaluation appliance."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def console_url(appliance) -> str:
    return appliance.settings.console.listen.url


@pytest.fixture(scope="session")
def operator(appliance) -> dict:
    return json.loads(appliance.layout.console_first_operator.read_text())


@pytest.fixture
def browser_page(request, tmp_path) -> Page:
    """A fresh browser profile per test: no cookie carried from one test to the next.

    Its language is en-GB unless the test parametrizes this fixture indirectly with another.
    """
    locale = getattr(request, "param", "en-GB")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1366, "height": 768},
            locale=locale,
        )
        context.set_default_timeout(20_000)
        page = context.new_page()
        yield page
        context.close()


def log_in(page: Page, console_url: str, username: str, password: str) -> None:
    page.goto(f"{console_url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("section.login form button[type=submit]")  # in any language
