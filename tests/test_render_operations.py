# SPDX-License-Identifier: AGPL-3.0-or-later
"""Production's backup unit and local MTA, as the renderer writes them for a host.

The backup timer's service runs `appliance backup` (the code `make backup` runs), checked by
systemd's own parser (`systemd-analyze verify`); mail from Synapse and the console goes to
postfix on loopback, which alone holds the relay's address and credentials. The settings refuse
a local MTA where it cannot work, naming the key. The units and postfix running for real are
in tests/test_provisioning.py.
"""

from __future__ import annotations

import configparser
import shutil
import stat
import subprocess
from dataclasses import replace

import pytest
from synapse.config.homeserver import HomeServerConfig

from appliance.config.layout import SOURCE_ROOT, Layout
from appliance.config.render import render_all, write_all
from appliance.config.secrets_store import ensure_secrets
from appliance.config.settings import SettingsError, parse_settings

RELAY_PASSWORD = "smtp-pass-456"


def production(tmp_path, **overrides) -> dict:
    data = {
        "mode": "production",
        "server_name": "ac-paris.fr",
        "public_baseurl": "https://matrix.ac-paris.fr/",
        "clamav": {"signatures": "freshclam"},
        "synapse": {"database": {"engine": "postgresql", "host": "/var/run/postgresql"}},
        "mail": {
            "smtp_host": "smtp.ac-paris.fr",
            "smtp_port": 587,
            "smtp_user": "matrix",
            "smtp_password": RELAY_PASSWORD,
            "require_transport_security": False,
            "run_local_sink": False,
            "local_mta": {"enabled": True, "port": 2526},
        },
        # The venv that exists here, so systemd can check the command the unit runs.
        "paths": {"state_dir": str(tmp_path / "state"), "venv_dir": str(SOURCE_ROOT / ".venv")},
        "backup": {"directory": str(tmp_path / "backups")},
        "host": {"system_root": str(tmp_path / "root"), "service_user": "appliance"},
    }
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return data


def render(tmp_path, data: dict, write: bool = False) -> dict:
    settings = parse_settings(data, "test")
    layout = Layout.from_settings(settings, tmp_path)
    settings_file = tmp_path / "etc/appliance/appliance.yaml"
    files = render_all(settings, layout, settings_file=settings_file)
    if write:
        ensure_secrets(layout)
        # As root would, but every file root's: the services' users do not exist here.
        write_all([replace(file, owner=None) for file in files])
    return {str(file.path.relative_to(tmp_path)): file for file in files}


def unit(content: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(content)
    return parser


def test_the_backup_timer_runs_appliance_backup_on_the_settings_file(tmp_path):
    files = render(tmp_path, production(tmp_path))
    service = unit(files["root/etc/systemd/system/appliance-backup.service"].content)["Service"]
    assert service["ExecStart"] == (
        f"{SOURCE_ROOT / '.venv/bin/appliance'} --config "
        f"{tmp_path / 'etc/appliance/appliance.yaml'} backup"
    )
    # It may write its staging copy and lock, and the local repository; nothing else.
    assert service["ProtectSystem"] == "strict"
    assert (
        f"ReadWritePaths={tmp_path / 'state'}\n"
        in files["root/etc/systemd/system/appliance-backup.service"].content
    )
    assert (
        f"ReadWritePaths={tmp_path / 'backups'}\n"
        in files["root/etc/systemd/system/appliance-backup.service"].content
    )
    # The tar scripts of the release before are gone.
    assert not [path for path in files if "sbin" in path]


def test_an_off_host_repository_gives_the_unit_no_local_directory_to_write(tmp_path):
    data = production(tmp_path, backup={"repository": "sftp:backup@backup.ac-paris.fr:/srv/a"})
    content = render(tmp_path, data)["root/etc/systemd/system/appliance-backup.service"].content
    written = [line for line in content.splitlines() if line.startswith("ReadWritePaths=")]
    assert written == [f"ReadWritePaths={tmp_path / 'state'}"]


def test_systemd_accepts_the_backup_units(tmp_path):
    # systemd-analyze comes with systemd, which the test packages (systemd-container) pull in.
    assert shutil.which("systemd-analyze"), "install systemd (scripts/install-system-packages)"
    files = render(tmp_path, production(tmp_path))
    units = tmp_path / "units"
    units.mkdir()
    for name in ("appliance-backup.service", "appliance-backup.timer"):
        (units / name).write_text(files[f"root/etc/systemd/system/{name}"].content)
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(units / "appliance-backup.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in verified.stderr.splitlines()
        if "appliance-backup" in line and "postgresql.service" not in line
    ]
    assert problems == [], verified.stderr


def test_synapse_and_the_console_hand_mail_to_postfix_on_loopback_without_credentials(tmp_path):
    files = render(tmp_path, production(tmp_path), write=True)
    layout = Layout.from_settings(parse_settings(production(tmp_path), "test"), tmp_path)
    email = HomeServerConfig.load_config("test", ["-c", str(layout.homeserver_config)]).email
    assert (email.email_smtp_host, email.email_smtp_port) == ("127.0.0.1", 2526)
    assert (email.email_smtp_user, email.email_smtp_pass) == (None, None)
    console = files["state/console/console.json"].content
    assert '"SMTP_HOST": "127.0.0.1"' in console and '"SMTP_PORT": 2526' in console
    assert '"MAIL_QUEUE": true' in console
    # Only postfix's private file holds the relay's password.
    holders = [path for path, file in files.items() if RELAY_PASSWORD in file.content]
    assert holders == ["root/etc/postfix/sasl_passwd"]
    sasl = tmp_path / "root/etc/postfix/sasl_passwd"
    assert stat.S_IMODE(sasl.stat().st_mode) == 0o600
    assert sasl.read_text().splitlines()[-1] == f"[smtp.ac-paris.fr]:587 matrix:{RELAY_PASSWORD}"


def postfix_settings(content: str) -> dict[str, str]:
    return dict(
        (name.strip(), value.strip())
        for name, _, value in (
            line.partition("=") for line in content.splitlines() if line and line[0].isalpha()
        )
    )


def test_postfix_relays_to_the_relay_and_listens_on_loopback_only(tmp_path):
    files = render(tmp_path, production(tmp_path))
    main = postfix_settings(files["root/etc/postfix/main.cf"].content)
    assert main["relayhost"] == "[smtp.ac-paris.fr]:587"
    assert main["myhostname"] == "matrix.ac-paris.fr"
    assert (main["inet_interfaces"], main["mydestination"]) == ("127.0.0.1", "")
    assert main["smtpd_relay_restrictions"] == "permit_mynetworks, reject"
    # A password for a relay on another host: TLS whatever require_transport_security says.
    assert main["smtp_tls_security_level"] == "encrypt"
    assert main["smtp_sasl_password_maps"] == "texthash:/etc/postfix/sasl_passwd"
    listeners = [
        line.split()[0]
        for line in files["root/etc/postfix/master.cf"].content.splitlines()
        if line and not line.startswith(("#", " ")) and line.split()[1] == "inet"
    ]
    assert listeners == ["127.0.0.1:2526"]


def test_a_relay_on_this_host_without_credentials_gets_tls_only_when_offered(tmp_path):
    mail = {"smtp_host": "127.0.0.1", "smtp_port": 2525, "smtp_user": None, "smtp_password": None}
    files = render(tmp_path, production(tmp_path, mail=mail))
    main = postfix_settings(files["root/etc/postfix/main.cf"].content)
    assert main["smtp_tls_security_level"] == "may"
    assert "smtp_sasl_auth_enable" not in main
    assert "root/etc/postfix/sasl_passwd" not in files


def test_the_console_may_read_the_queue(tmp_path):
    files = render(tmp_path, production(tmp_path))
    service = unit(files["root/etc/systemd/system/appliance-console.service"].content)["Service"]
    assert service["SupplementaryGroups"] == "postdrop"
    content = files["root/etc/systemd/system/appliance-console.service"].content
    assert "RestrictAddressFamilies=AF_NETLINK\n" in content  # postqueue's getifaddrs


def test_without_the_local_mta_synapse_talks_to_the_relay(tmp_path):
    data = production(tmp_path, mail={"local_mta": {"enabled": False}})
    files = render(tmp_path, data)
    assert not [path for path in files if "postfix" in path]
    homeserver = files["state/synapse/homeserver.yaml"].content
    assert 'smtp_host: "smtp.ac-paris.fr"' in homeserver and "smtp_port: 587" in homeserver


@pytest.mark.parametrize(
    "mail, host, problem",
    [
        (
            {"local_mta": {"enabled": True}},
            None,
            "mail.local_mta.enabled: the local MTA is Debian's postfix",
        ),
        (
            {"local_mta": {"enabled": True, "port": 8080}},
            {"system_root": "/", "service_user": "appliance"},
            "mail.local_mta.port: 127.0.0.1:8080 is already console.listen.port's",
        ),
        (
            {"smtp_host": "127.0.0.1", "smtp_port": 25, "local_mta": {"enabled": True}},
            {"system_root": "/", "service_user": "appliance"},
            "mail.local_mta.port: 25 is the relay's own port",
        ),
    ],
    ids=["without-a-host", "on-the-consoles-port", "relaying-to-itself"],
)
def test_a_local_mta_that_cannot_work_is_refused_naming_the_key(tmp_path, mail, host, problem):
    data = production(tmp_path, mail={**mail, "run_local_sink": False})
    data["host"] = host or {}
    if host is None:
        del data["host"]
    with pytest.raises(SettingsError) as refused:
        parse_settings(data, "test")
    assert problem in str(refused.value)
