# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Statistics page in a real browser, against the evaluation appliance's own console: the
operator opens it from the navigation, reads a chart's text equivalent and the table, changes
the period and downloads the CSV."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import log_in

pytestmark = pytest.mark.slow
COUNT = re.compile(r"^\d+$")


def test_read_the_statistics_and_download_them(browser_page: Page, console_url, operator):
    page = browser_page
    log_in(page, console_url, operator["username"], operator["password"])
    page.click("nav >> text=Statistics")
    expect(page.locator("h1")).to_have_text("Statistics")
    # 30 days by default: a row per day, a chart per series with its text equivalent.
    expect(page.locator("table.statistics-days tbody tr")).to_have_count(30)
    expect(page.locator("[data-chart-summary]").first).to_contain_text("Active agents per day")
    today = page.locator("table.statistics-days tbody tr").first  # newest first
    expect(today.locator('[data-column="messages"]')).to_have_text(COUNT)

    page.select_option("#days", "7")
    page.click("form.filters button[type=submit]")
    expect(page.locator("table.statistics-days tbody tr")).to_have_count(7)
    with page.expect_download() as download:
        page.click("text=Export as CSV")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(rows) == 7
    shown = today.locator('[data-column="messages"]').inner_text()
    assert rows[-1]["messages"] == shown
