# SPDX-License-Identifier: AGPL-3.0-or-later
"""`appliance up`, `status` and `down` as a sysadmin runs them (the CLI behind `make`)."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import requests
import yaml
from harness import evaluation_settings, free_port

from appliance.config.preflight import port_problem


def run(config, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(config), *command],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_up_status_up_again_down(tmp_path):
    settings = evaluation_settings(tmp_path / "var")
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    ports = {
        "synapse": settings.synapse.listen.port,
        "console": settings.console.listen.port,
        "clamd": settings.clamav.listen.port,
        "mail": settings.mail.smtp_port,
        "content-scanner": settings.content_scanner.listen.port,
    }
    up = run(config, "up")
    try:
        assert up.returncode == 0, up.stderr
        for name in ("mail-sink", "clamd", "synapse", "content-scanner", "console"):
            assert f"+ {name} started" in up.stdout
        # Where the evaluation contract says (production: the console's own directory).
        first_operator = tmp_path / "var" / "secrets" / "console-admin.json"
        assert str(first_operator) in up.stdout
        assert first_operator.stat().st_mode & 0o777 == 0o600
        assert requests.get(f"{settings.synapse.listen.url}/health", timeout=5).text == "OK"
        login = requests.get(f"{settings.console.listen.url}/", timeout=5)
        assert "/login?next=" in login.url and "Log in" in login.text

        status = run(config, "status")
        assert status.returncode == 0, status.stdout
        assert status.stdout.count(" up ") == 5

        again = run(config, "up")
        assert again.returncode == 0
        assert "already up: nothing to repair" in again.stdout

        # A changed setting restarts only the service that reads it.
        changed = settings.model_dump(mode="json")
        changed["console"]["session_timeout_minutes"] = 45
        config.write_text(yaml.safe_dump(changed))
        reconfigured = run(config, "up")
        assert reconfigured.returncode == 0, reconfigured.stderr
        assert "~ console restarted (its configuration changed)" in reconfigured.stdout
        assert reconfigured.stdout.count("was already running") == 4

        pids = [json.loads(p.read_text())["pid"] for p in (tmp_path / "var/run").glob("*.pid")]
        children = [c.pid for pid in pids for c in psutil.Process(pid).children(recursive=True)]
        assert len(pids) == 5
    finally:
        down = run(config, "down")
    assert down.returncode == 0
    assert "stopped: console, content-scanner, synapse, clamd, mail-sink" in down.stdout
    for pid in pids + children:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    for name, port in ports.items():
        assert port_problem(name, "127.0.0.1", port) is None, f"{name} still listens on {port}"

    status = run(config, "status")
    assert status.returncode == 1 and "DOWN" in status.stdout


def test_up_stops_on_a_taken_port_and_starts_nothing(tmp_path):
    import socket

    settings = evaluation_settings(tmp_path / "var")
    config = tmp_path / "appliance.yaml"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.console.listen.port))
        holder.listen()
        config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
        result = run(config, "up")
    assert result.returncode == 2
    assert (
        f"console.listen.port: port {settings.console.listen.port} on 127.0.0.1 is already in use"
        in result.stderr
    )
    assert not list((tmp_path / "var" / "run").glob("*.pid"))


def test_service_token_command_recovers_a_lost_token_then_changes_nothing(appliance, tmp_path):
    """`appliance service-token` (what the Ansible role runs) replaces a token that no longer
    works by logging in again with the saved password, as `up` does; a working one is kept."""
    layout, url = appliance.layout, appliance.settings.synapse.listen.url
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump(appliance.settings.model_dump(mode="json")))
    old_token = layout.service_token.read_text()
    layout.service_token.write_text("syt_revoked_or_garbage")

    recovered = run(config, "service-token")
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout) == {"changed": [str(layout.service_token)]}
    new_token = layout.service_token.read_text()
    assert new_token not in (old_token, "syt_revoked_or_garbage")
    whoami = requests.get(
        f"{url}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {new_token}"},
        timeout=10,
    )
    assert whoami.json()["user_id"].startswith("@appliance-console:")

    again = run(config, "service-token")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"changed": []}
    assert layout.service_token.read_text() == new_token


def test_service_token_command_fails_with_the_reason_when_synapse_is_down(appliance, tmp_path):
    layout = appliance.layout
    data = appliance.settings.model_dump(mode="json")
    data["synapse"]["listen"]["port"] = free_port()  # nothing listens there
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump(data))
    token = layout.service_token.read_text()

    result = run(config, "service-token")
    assert result.returncode == 4
    assert "cannot set up the console's service account on Synapse" in result.stderr
    assert layout.service_token.read_text() == token
