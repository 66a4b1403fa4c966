# SPDX-License-Identifier: AGPL-3.0-or-later
"""The renderer: each mode renders, and Synapse's own config parser accepts the result."""

from __future__ import annotations

import re
import stat

import pytest
import yaml
from netaddr import IPAddress
from synapse.config.homeserver import HomeServerConfig

from appliance.config.layout import Layout
from appliance.config.render import render_all, write_all
from appliance.config.secrets_store import ensure_secrets
from appliance.config.settings import SettingsError, parse_settings

EVALUATION = {"registration": {"allowed_domains": ["ac-paris.fr", "*.gouv.fr"]}}
PRODUCTION = {
    "mode": "production",
    "server_name": "ac-paris.fr",
    "public_baseurl": "https://matrix.ac-paris.fr/",
    "clamav": {"signatures": "freshclam"},
    "synapse": {
        "database": {"engine": "postgresql", "password": "db-pass-123"},
        "max_upload_size_mb": 50,
    },
    "mail": {
        "smtp_host": "smtp.ac-paris.fr",
        "smtp_port": 587,
        "smtp_user": "matrix",
        "smtp_password": "smtp-pass-456",
        "require_transport_security": True,
        "run_local_sink": False,
    },
}


def rendered(tmp_path, data: dict) -> tuple[dict, Layout]:
    settings = parse_settings({**data, "paths": {"state_dir": str(tmp_path)}}, "test")
    layout = Layout.from_settings(settings, tmp_path)
    ensure_secrets(layout)
    files = render_all(settings, layout)
    write_all(files)
    return {file.template: file for file in files}, layout


def synapse_config(layout: Layout) -> HomeServerConfig:
    return HomeServerConfig.load_config("test", ["-c", str(layout.homeserver_config)])


@pytest.mark.parametrize("data", [EVALUATION, PRODUCTION], ids=["evaluation", "production"])
def test_synapse_parses_the_rendered_config(tmp_path, data):
    _, layout = rendered(tmp_path, data)
    config = synapse_config(layout)
    assert config.server.server_name == data.get("server_name", "appliance.localhost")
    assert config.metrics.report_stats is False
    assert config.key.key_servers == []
    assert config.registration.enable_registration
    assert config.registration.registrations_require_3pid == ["email"]
    assert config.registration.disable_msisdn_registration
    assert config.registration.allow_guest_access is False
    assert config.email.can_verify_email
    assert config.roomdirectory.is_publishing_room_allowed("@agent:x", "!r:x", [])
    assert [m[0].__name__ for m in config.modules.loaded_modules] == ["ApplianceModule"]
    assert (
        config.modules.loaded_modules[0][1].allowed_domains == ("ac-paris.fr", "*.gouv.fr")
        if data is EVALUATION
        else True
    )


@pytest.mark.parametrize("enabled", [False, True])
def test_mail_for_new_users_reaches_synapse_and_the_module_alike(tmp_path, enabled):
    # One setting, two readers: Synapse's own notif_for_new_users (email registration, the
    # Admin API with addresses), the module's concern for every other way (new_account_mail).
    _, layout = rendered(
        tmp_path, {**EVALUATION, "notifications": {"enabled_for_new_users": enabled}}
    )
    config = synapse_config(layout)
    assert config.email.email_enable_notifs
    assert config.email.email_notif_for_new_users is enabled
    assert config.modules.loaded_modules[0][1].notifications_enabled_for_new_users is enabled


def test_evaluation_binds_loopback_only(tmp_path):
    _, layout = rendered(tmp_path, EVALUATION)
    listeners = synapse_config(layout).server.listeners
    assert [listener.bind_addresses for listener in listeners] == [["127.0.0.1"]]
    assert all(not listener.http_options.x_forwarded for listener in listeners)


def _clamd_stream_limit(clamd_conf: str) -> int:
    value = re.search(r"^StreamMaxLength (\d+)M$", clamd_conf, re.M).group(1)
    return int(value) * 1024 * 1024


@pytest.mark.parametrize("data", [EVALUATION, PRODUCTION], ids=["evaluation", "production"])
def test_uploads_never_exceed_clamd_stream_limit(tmp_path, data):
    files, layout = rendered(tmp_path, data)
    max_upload = synapse_config(layout).media.max_upload_size
    assert max_upload <= _clamd_stream_limit(files["clamav/clamd.conf.j2"].content)


def test_homeserver_yaml_holds_no_generated_secret_and_secrets_are_private(tmp_path):
    files, layout = rendered(tmp_path, EVALUATION)
    homeserver = files["synapse/homeserver.yaml.j2"].content
    for secret_file in layout.secrets_dir.iterdir():
        assert secret_file.read_text().strip() not in homeserver
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.secrets_dir.stat().st_mode) == 0o700


def test_production_passwords_only_in_private_files(tmp_path):
    files, layout = rendered(tmp_path, PRODUCTION)
    homeserver = files["synapse/homeserver.yaml.j2"]
    assert "db-pass-123" in homeserver.content and "smtp-pass-456" in homeserver.content
    for file in files.values():
        if "db-pass-123" in file.content or "smtp-pass-456" in file.content:
            assert stat.S_IMODE(file.path.stat().st_mode) == 0o600, file.path


def test_production_uses_real_signatures_and_postgres(tmp_path):
    files, layout = rendered(tmp_path, PRODUCTION)
    assert "clamav/evaluation-eicar.ndb.j2" not in files
    assert synapse_config(layout).database.databases[0].config["name"] == "psycopg2"
    assert synapse_config(layout).email.require_transport_security


def test_rendering_twice_changes_nothing(tmp_path):
    settings = parse_settings({"paths": {"state_dir": str(tmp_path)}}, "test")
    layout = Layout.from_settings(settings, tmp_path)
    ensure_secrets(layout)
    assert write_all(render_all(settings, layout))
    assert write_all(render_all(settings, layout)) == []


def test_console_config_points_at_the_token_file_not_the_token(tmp_path):
    files, layout = rendered(tmp_path, EVALUATION)
    console = yaml.safe_load(files["console/console.json.j2"].content)
    assert console["SERVICE_TOKEN_FILE"] == str(layout.service_token)
    assert not any("TOKEN" in key and key != "SERVICE_TOKEN_FILE" for key in console)


@pytest.mark.parametrize(
    "data, resources",
    [(EVALUATION, {"client"}), (PRODUCTION, {"client", "federation"})],
    ids=["evaluation", "production"],
)
def test_federation_is_served_only_in_production(tmp_path, data, resources):
    _, layout = rendered(tmp_path, data)
    (listener,) = synapse_config(layout).server.listeners
    assert {
        name for resource in listener.http_options.resources for name in resource.names
    } == resources


def test_nginx_well_known_announces_the_servers_own_identity_service(tmp_path):
    # Standard clients (Element, Tchap) take the identity server for email invitations from
    # here; without it they cannot invite by email at all.
    host = {"system_root": str(tmp_path), "service_user": "appliance"}
    settings = parse_settings({**PRODUCTION, "host": host}, "test")
    files = render_all(settings, Layout.from_settings(settings, tmp_path))
    (site,) = [file.content for file in files if file.template == "nginx/appliance.conf.j2"]
    body = re.search(r"location = /.well-known/matrix/client \{.*?return 200 '(.*?)';", site, re.S)
    assert yaml.safe_load(body.group(1)) == {
        "m.homeserver": {"base_url": "https://matrix.ac-paris.fr/"},
        "m.identity_server": {"base_url": "https://matrix.ac-paris.fr/"},
    }


def test_own_private_addresses_let_synapse_reach_its_identity_service(tmp_path):
    # Synapse calls its identity service at public_baseurl for email invitations through a
    # client that refuses private addresses: on an intranet the host's own address must be let
    # through, and nothing else (loopback holds services without authentication).
    data = {**PRODUCTION, "synapse": {**PRODUCTION["synapse"], "own_addresses": ["10.1.2.3"]}}
    _, layout = rendered(tmp_path, data)
    server = synapse_config(layout).server
    assert IPAddress("10.1.2.3") in server.federation_ip_range_allowlist
    assert IPAddress("10.1.2.3") in server.federation_ip_range_blocklist  # overridden, not lifted
    assert IPAddress("10.1.2.4") not in server.federation_ip_range_allowlist
    assert IPAddress("127.0.0.1") not in server.federation_ip_range_allowlist


def test_without_own_addresses_private_addresses_stay_refused(tmp_path):
    _, layout = rendered(tmp_path, PRODUCTION)
    server = synapse_config(layout).server
    assert not server.federation_ip_range_allowlist
    assert IPAddress("10.1.2.3") in server.federation_ip_range_blocklist


@pytest.mark.parametrize(
    "own, extra, problem",
    [
        (
            "127.0.0.1",
            {},
            "synapse.own_addresses.0: 127.0.0.1 is not an address of this host on a network",
        ),
        (
            "::ffff:127.0.0.1",
            {},
            "synapse.own_addresses.0: ::ffff:127.0.0.1 is not an address of this host on a network",
        ),
        (
            "169.254.169.254",
            {},
            "synapse.own_addresses.0: 169.254.169.254 is not an address of this host on a network",
        ),
        (
            "fe80::1",
            {},
            "synapse.own_addresses.0: fe80::1 is not an address of this host on a network",
        ),
        (
            "240.0.0.1",
            {},
            "synapse.own_addresses.0: 240.0.0.1 is not an address of this host on a network",
        ),
        ("192.0.2.300", {}, "synapse.own_addresses.0: '192.0.2.300' is not an IP address"),
        (
            "8.8.8.8",
            {},
            "synapse.own_addresses.0: 8.8.8.8 is public: Synapse reaches it without being told",
        ),
        (
            "10.1.2.3",
            {"nginx": {"bind_addresses": ["10.9.9.9"]}},
            "synapse.own_addresses: nginx does not listen on 10.1.2.3 "
            "(add it to nginx.bind_addresses)",
        ),
        (
            "10.1.2.3",
            {
                "mode": "evaluation",
                "public_baseurl": "http://127.0.0.1:8008/",
                "clamav": {"signatures": "evaluation"},
            },
            "synapse.own_addresses: only used with an https:// public_baseurl "
            "(Synapse calls identity services over HTTPS)",
        ),
    ],
    ids=[
        "loopback",
        "mapped-loopback",
        "link-local",
        "link-local-v6",
        "reserved",
        "not-an-address",
        "public",
        "nginx-not-there",
        "plain-http",
    ],
)
def test_own_addresses_refuse_what_would_not_work_or_open_too_much(own, extra, problem):
    data = {**PRODUCTION, **extra, "synapse": {**PRODUCTION["synapse"], "own_addresses": [own]}}
    with pytest.raises(SettingsError) as caught:
        parse_settings(data, "test")
    assert caught.value.problems == [problem]
