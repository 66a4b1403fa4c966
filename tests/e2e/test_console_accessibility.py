# SPDX-License-Identifier: AGPL-3.0-or-later
"""Accessibility of the console (RGAA, WCAG 2.1 AA), checked inside the browser.

axe-core (the engine behind most accessibility audits, bundled by axe-playwright-python) runs
in Debian's Chromium on every page the console's own navigation leads to, plus the pages behind
a click (a user, a room, a confirmation, the login page), in English and in French. No serious
or critical violation is allowed. Then the keyboard: from the top of a page, Tab alone must
reach every control of the page (links, buttons, fields), in order, and show where it is.
"""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

from e2e.conftest import log_in

WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = {"serious", "critical"}
MAX_TABS = 400  # a page with more controls than this is a defect of its own
AXE = Axe()


def violations(page: Page) -> list[str]:
    """axe-core's serious and critical WCAG 2.1 A/AA violations on the page as it is now."""
    results = AXE.run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}})
    found = []
    for violation in results.response["violations"]:
        if violation["impact"] in BLOCKING:
            targets = [" ".join(node["target"]) for node in violation["nodes"]][:3]
            found.append(f"{violation['id']} ({violation['impact']}): {targets}")
    return found


def console_pages(page: Page, console_url: str) -> list[str]:
    """Every page the header links to (the navigation, one's password and second factor), and
    the pages one click deeper that have no link in the header."""
    page.goto(f"{console_url}/health/")
    links = page.locator("header a[href]").evaluate_all("links => links.map(a => a.href)")
    pages = list(dict.fromkeys(links))
    for listing, row_link in (("/users/", "table.users tbody tr a"), ("/rooms/", "table.rooms a")):
        page.goto(console_url + listing)
        first = page.locator(row_link).first
        if first.count():
            pages.append(first.evaluate("a => a.href"))
    return pages


@pytest.mark.parametrize("browser_page", ["en-GB", "fr-FR"], indirect=True)
def test_every_console_page_passes_axe_in_both_languages(browser_page: Page, console_url, operator):
    page = browser_page
    page.goto(f"{console_url}/login")
    problems = {"login": violations(page)}
    log_in(page, console_url, operator["username"], operator["password"])

    pages = console_pages(page, console_url)
    for url in pages:
        page.goto(url)
        problems[url] = violations(page)
    # A confirmation page (asked before any destructive action).
    page.goto(pages[-2] if "/users/" in pages[-2] else f"{console_url}/users/")
    deactivate = page.locator("button:has-text('Deactivate'), button:has-text('Désactiver')")
    if deactivate.count():
        deactivate.first.click()
        problems["confirmation"] = violations(page)

    assert len(pages) >= 10, pages  # the whole console, not the login page alone
    assert {url: found for url, found in problems.items() if found} == {}


def tab_order(page: Page) -> list[str]:
    """The controls Tab visits from the top of the page, each described once."""
    page.locator("body").focus()
    seen: list[str] = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        current = page.evaluate(
            """() => { const e = document.activeElement;
                if (!e || e === document.body) return null;
                const style = getComputedStyle(e);
                return [e.tagName, e.name || '', e.getAttribute('href') || '', e.value || '',
                        e.textContent.trim().slice(0, 40), style.outlineStyle !== 'none'
                        || style.boxShadow !== 'none'].join('|'); }"""
        )
        if current is None or (seen and current == seen[0]):
            break  # back at the start: the whole page was visited
        seen.append(current)
    return seen


@pytest.mark.parametrize("path", ["/health/", "/users/", "/operators/", "/domains/"])
def test_the_keyboard_alone_reaches_every_control(browser_page: Page, console_url, operator, path):
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    page.goto(console_url + path)
    controls = page.locator(
        "a[href]:visible, button:visible, input:not([type=hidden]):visible, select:visible"
    ).count()

    visited = tab_order(page)

    assert len(visited) >= controls, (controls, visited)
    # Each control shows it has the focus (an outline or a ring), never hidden.
    assert all(entry.endswith("|true") for entry in visited), [
        entry for entry in visited if not entry.endswith("|true")
    ]
