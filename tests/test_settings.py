# SPDX-License-Identifier: AGPL-3.0-or-later
"""The settings model and preflight: every bad input is refused with its key and reason."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import yaml
from harness import free_port

from appliance.config.layout import SOURCE_ROOT, Layout
from appliance.config.preflight import check_paths, check_ports
from appliance.config.settings import Settings, SettingsError, load_settings, parse_settings

EXAMPLE = SOURCE_ROOT / "appliance.example.yaml"


def problems_of(data: dict) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        parse_settings(data, "test")
    return caught.value.problems


def test_defaults_are_valid_and_loopback():
    settings = parse_settings({}, "defaults")
    assert settings.mode == "evaluation"
    assert settings.synapse.listen.url == "http://127.0.0.1:8008"
    assert settings.console.listen.port == 8080
    assert settings.content_scanner.listen.port == 8090
    assert settings.mail.smtp_port == 2525


def test_example_file_documents_exactly_the_defaults():
    example = parse_settings(yaml.safe_load(EXAMPLE.read_text()), str(EXAMPLE))
    assert example == Settings()


def _keys(model) -> set[str]:
    keys = set()
    for name in type(model).model_fields:
        keys.add(name)
        value = getattr(model, name)
        if hasattr(type(value), "model_fields"):
            keys |= {f"{name}.{sub}" for sub in _keys(value)}
    return keys


def _yaml_keys(data: dict) -> set[str]:
    keys = set()
    for name, value in data.items():
        keys.add(name)
        if isinstance(value, dict):
            keys |= {f"{name}.{sub}" for sub in _yaml_keys(value)}
    return keys


def test_example_file_names_every_key():
    documented = _yaml_keys(yaml.safe_load(EXAMPLE.read_text()))
    # The PostgreSQL keys are documented in comments, next to the sqlite default.
    assert _keys(Settings()) <= documented


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"synapse": {"listne": {}}}, "synapse.listne: unknown key"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"mode": "demo"}, "mode: Input should be 'evaluation' or 'production'"),
        ({"synapse": {"listen": {"port": 70000}}}, "synapse.listen.port: Input should be less"),
        (
            {"console": {"listen": {"bind_address": "localhost", "port": 8080}}},
            "console.listen.bind_address: 'localhost' is not an IP address",
        ),
        (
            {"registration": {"allowed_domains": ["ac-paris.fr", "bad domain.fr"]}},
            "registration.allowed_domains.1:",
        ),
        (
            {"synapse": {"database": {"engine": "postgresql", "hots": "db"}}},
            "synapse.database.hots: unknown key",
        ),
        (
            {"console": {"listen": {"bind_address": "0.0.0.0", "port": 8080}}},
            "console.listen.bind_address: evaluation mode listens on loopback only",
        ),
        (
            {
                "mode": "production",
                "public_baseurl": "https://matrix.example.org",
                "clamav": {
                    "signatures": "freshclam",
                    "listen": {"bind_address": "0.0.0.0", "port": 3310},
                },
            },
            "clamav.listen.bind_address: production mode listens on loopback only",
        ),
        (
            {"mode": "production", "clamav": {"signatures": "freshclam"}},
            "public_baseurl: production mode needs an https:// URL",
        ),
        (
            {"mode": "production", "public_baseurl": "https://matrix.example.org"},
            "clamav.signatures: production mode needs real signatures",
        ),
        ({"public_baseurl": "matrix.example.org"}, "public_baseurl: must start with http"),
    ],
)
def test_bad_settings_name_the_key_and_reason(data, expected):
    problems = problems_of(data)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_every_problem_is_reported_at_once():
    problems = problems_of({"colour": "blue", "synapse": {"max_upload_size_mb": 0}})
    assert len(problems) == 2


def test_production_settings_are_accepted():
    settings = parse_settings(
        {
            "mode": "production",
            "server_name": "ac-paris.fr",
            "public_baseurl": "https://matrix.ac-paris.fr",
            "clamav": {"signatures": "freshclam"},
            "synapse": {"database": {"engine": "postgresql", "password": "s3cret"}},
            "mail": {"smtp_host": "smtp.ac-paris.fr", "smtp_port": 587, "run_local_sink": False},
        },
        "production",
    )
    assert settings.public_baseurl == "https://matrix.ac-paris.fr/"
    assert "s3cret" not in repr(settings)  # secrets never end up in logs or tracebacks


def test_named_settings_file_must_exist(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")


def test_invalid_yaml_is_refused_with_the_file_name(tmp_path):
    file = tmp_path / "appliance.yaml"
    file.write_text("synapse: [unclosed\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(file)
    assert str(file) in str(caught.value) and "not valid YAML" in str(caught.value)


def test_relative_state_dir_is_taken_from_the_settings_file(tmp_path):
    file = tmp_path / "conf" / "appliance.yaml"
    file.parent.mkdir()
    file.write_text("paths:\n  state_dir: state\n")
    settings, base_dir = load_settings(file)
    assert Layout.from_settings(settings, base_dir).state_dir == tmp_path / "conf" / "state"


def test_port_in_use_is_named():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = parse_settings({"synapse": {"listen": {"port": port}}}, "test")
        problems = check_ports(settings, {"synapse"})
    assert problems == [
        f"synapse.listen.port: port {port} on 127.0.0.1 is already in use by another program"
    ]


def test_ports_of_running_services_are_not_checked():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        settings = parse_settings(
            {
                "synapse": {"listen": {"port": holder.getsockname()[1]}},
                "console": {"listen": {"port": free_port()}},
            },
            "test",
        )
        assert check_ports(settings, {"console"}) == []


def test_unwritable_state_dir_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = parse_settings({"paths": {"state_dir": str(blocker / "var")}}, "test")
    problems = check_paths(Layout.from_settings(settings, tmp_path))
    assert len(problems) == 1
    assert problems[0].startswith(f"paths.state_dir: {blocker / 'var'} is not writable")


def test_cli_refuses_bad_settings_and_starts_nothing(tmp_path):
    file = tmp_path / "appliance.yaml"
    file.write_text(f"paths:\n  state_dir: {tmp_path / 'var'}\nsynapse:\n  prot: 8008\n")
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(file), "up"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "synapse.prot: unknown key" in result.stderr
    assert "Nothing was started" in result.stderr
    assert not (tmp_path / "var").exists()
