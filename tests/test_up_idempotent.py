# SPDX-License-Identifier: AGPL-3.0-or-later
"""`up` changes nothing it need not: a second `appliance up` with the same settings restarts no
service, touches no rendered file (content, mode, even ctime: a chmod would change it, and
clamd's SelfCheck would reload its signatures), and clamd loads its signatures once. Settings
that put two services on one address and port are refused with both keys; a preflight that
refuses creates nothing; each console gunicorn keeps its control socket to itself (none).

An appliance of this module's own, started through the CLI as `make up` starts it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml
from harness import evaluation_settings

from appliance.config.layout import Layout
from appliance.config.render import render_all
from appliance.config.settings import SettingsError, parse_settings
from appliance.evaluation.lifecycle import EvaluationAppliance, private_files

APPLIANCE = [sys.executable, "-m", "appliance.cli"]
# What clamd logs each time it (re)loads its signature databases.
CLAMD_LOADED = "Loaded "
CLAMD_RELOADED = "Reading databases from"
PRODUCTION = {
    "mode": "production",
    "public_baseurl": "https://matrix.example.gov/",
    "clamav": {"signatures": "freshclam"},
}


def run_cli(settings_file: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*APPLIANCE, "--config", str(settings_file), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def write_settings(path: Path, settings) -> Path:
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_unset=True)))
    return path


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    home = tmp_path_factory.mktemp("idempotent")
    settings = evaluation_settings(home / "var")
    settings_file = write_settings(home / "appliance.yaml", settings)
    appliance = EvaluationAppliance(settings, Layout.from_settings(settings, home))
    first = run_cli(settings_file, "up")
    assert first.returncode == 0, first.stderr
    yield settings_file, appliance
    appliance.down()


def _pids(appliance) -> dict[str, int | None]:
    return {name: pid for name, pid, _ in appliance.status()}


def _file_stats(appliance) -> dict[Path, tuple]:
    """Every rendered file, secret and the service token: inode, mode, mtime and ctime."""
    layout = appliance.layout
    paths = [file.path for file in private_files(render_all(appliance.settings, layout))]
    paths += [path for path in layout.secrets_dir.rglob("*") if path.is_file()]
    paths += [layout.service_token, layout.console_secret_key]
    stats = {}
    for path in paths:
        status = path.stat()
        stats[path] = (status.st_ino, status.st_mode, status.st_mtime_ns, status.st_ctime_ns)
    return stats


def _clamd_loads(appliance) -> list[str]:
    log = appliance.layout.logfile("clamd").read_text(errors="replace")
    return [line for line in log.splitlines() if CLAMD_LOADED in line or CLAMD_RELOADED in line]


def test_a_second_up_restarts_nothing_and_touches_no_file(running):
    settings_file, appliance = running
    pids = _pids(appliance)
    assert all(pids.values()), pids
    stats = _file_stats(appliance)
    loads = _clamd_loads(appliance)
    assert loads, "clamd logged no signature load at its start"

    second = run_cli(settings_file, "up")

    assert second.returncode == 0, second.stderr
    assert "The appliance was already up: nothing to repair." in second.stdout
    assert "restarted" not in second.stdout and "started" not in second.stdout
    assert _pids(appliance) == pids
    assert _file_stats(appliance) == stats
    assert _clamd_loads(appliance) == loads


def test_an_edited_setting_restarts_only_the_service_that_reads_it(running, tmp_path):
    settings_file, appliance = running
    pids = _pids(appliance)
    data = yaml.safe_load(settings_file.read_text())
    data.setdefault("console", {})["session_timeout_minutes"] = 45
    edited = tmp_path / "appliance.yaml"
    edited.write_text(yaml.safe_dump(data))
    try:
        result = run_cli(edited, "up")
        assert result.returncode == 0, result.stderr
        assert "~ console restarted" in result.stdout
        after = _pids(appliance)
        assert after["console"] != pids["console"]
        assert {k: v for k, v in after.items() if k != "console"} == {
            k: v for k, v in pids.items() if k != "console"
        }
    finally:
        assert run_cli(settings_file, "up").returncode == 0


def test_the_console_keeps_no_control_socket_outside_its_state(running):
    _, appliance = running
    console = dict((name, pid) for name, pid, _ in appliance.status())["console"]
    master = psutil.Process(console)
    outside = [
        connection.laddr
        for process in [master, *master.children(recursive=True)]
        for connection in process.net_connections(kind="unix")
        if connection.laddr
        and not str(connection.laddr).startswith(str(appliance.layout.state_dir))
    ]
    assert outside == []


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"synapse": {"listen": {"port": 9100}}, "console": {"listen": {"port": 9100}}},
            "console.listen.port: 127.0.0.1:9100 is already synapse.listen.port's",
        ),
        (
            {"clamav": {"listen": {"port": 9101}}, "mail": {"smtp_port": 9101}},
            "mail.smtp_port: 127.0.0.1:9101 is already clamav.listen.port's",
        ),
        (  # nginx's wildcard takes the port on loopback too
            {**PRODUCTION, "synapse": {"listen": {"port": 443}}},
            "nginx.https_port: 0.0.0.0:443 is already synapse.listen.port's (127.0.0.1:443)",
        ),
        (
            {**PRODUCTION, "nginx": {"http_port": 8448}},
            "nginx.federation_port: 0.0.0.0:8448 is already nginx.http_port's",
        ),
    ],
)
def test_two_services_on_one_address_and_port_are_refused_with_both_keys(data, problem):
    with pytest.raises(SettingsError) as error:
        parse_settings(data, "test")
    assert any(line.startswith(problem) for line in error.value.problems), error.value.problems


def test_the_same_port_on_two_loopback_addresses_is_allowed():
    settings = parse_settings(
        {
            "synapse": {"listen": {"port": 9102}},
            "console": {"listen": {"bind_address": "127.0.0.2", "port": 9102}},
        },
        "test",
    )
    assert settings.console.listen.port == settings.synapse.listen.port


def test_a_refused_preflight_creates_nothing_and_names_the_settings_file(tmp_path):
    state_dir = tmp_path / "fresh" / "var"
    settings = evaluation_settings(state_dir)
    settings_file = write_settings(tmp_path / "appliance.yaml", settings)
    with socket.socket() as holder:  # another program holds the console's port
        holder.bind(("127.0.0.1", settings.console.listen.port))
        holder.listen()
        result = run_cli(settings_file, "up")
    assert result.returncode == 2
    assert result.stderr.startswith(f"appliance up: {settings_file} is not valid:")
    assert (
        f"console.listen.port: port {settings.console.listen.port} on 127.0.0.1 is already in use"
        in result.stderr
    )
    assert "Nothing was started or changed." in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["appliance.yaml"]  # no fresh/, no var/
