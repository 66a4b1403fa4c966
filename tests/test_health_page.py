# SPDX-License-Identifier: AGPL-3.0-or-later
"""The health page against the real services, including Synapse killed by hand."""

from __future__ import annotations

import os
import signal
import time

from console_helpers import first_operator, login

from appliance.evaluation.supervisor import running_process
from appliance.operations.health import ENCRYPTED_REFUSED


def logged_in_client(app):
    client = app.test_client()
    credentials = first_operator(app)
    login(client, credentials["username"], credentials["password"])
    return client


def checks(client) -> dict:
    body = client.get("/health/checks.json").get_json()
    return {check["name"]: check for check in body["checks"]}


def test_every_service_is_green(console_app, appliance):
    result = checks(logged_in_client(console_app))
    assert {"synapse", "clamd", "mail", "disk", "memory", "cpu"} <= set(result)
    for name in ("synapse", "clamd", "mail"):
        assert result[name]["ok"], result[name]
    assert "1.163" in result["synapse"]["summary"]
    assert "EVALUATION signatures" in result["clamd"]["summary"]
    assert result["clamd"]["summary"].endswith(
        ENCRYPTED_REFUSED
    )  # the default, as clamd applies it


def test_health_page_says_evaluation_signatures(console_app):
    page = logged_in_client(console_app).get("/health/").get_data(as_text=True)
    assert "Real viruses are not detected" in page
    assert 'data-check="synapse"' in page


def test_service_token_never_reaches_the_browser(console_app, admin_token):
    client = logged_in_client(console_app)
    for path in ("/health/", "/health/checks.json", "/login"):
        response = client.get(path)
        assert admin_token not in response.get_data(as_text=True)
        assert admin_token not in str(response.headers)


def test_synapse_killed_by_hand_shows_red_then_up_repairs_only_it(console_app, appliance):
    client = logged_in_client(console_app)
    synapse = next(spec for spec in appliance.specs() if spec.name == "synapse")
    process = running_process(synapse)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    try:
        killed_at = time.monotonic()
        result = checks(client)["synapse"]
        assert time.monotonic() - killed_at < 5
        assert not result["ok"]
        assert "connection refused" in result["summary"]
        page = client.get("/health/")
        assert page.status_code == 200 and "DOWN" in page.get_data(as_text=True)
        # clamd and the mail sink are unaffected
        assert checks(client)["clamd"]["ok"]
    finally:
        report = appliance.up()
    assert list(report.started) == ["synapse"]
    assert set(report.already_running) == {"mail-sink", "clamd", "content-scanner", "console"}
    assert checks(client)["synapse"]["ok"]
