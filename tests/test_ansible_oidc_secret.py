# SPDX-License-Identifier: AGPL-3.0-or-later
"""The synapse role places the OpenID Connect client secret: its own task files, run for real
by ansible-playbook on this machine (local connection) into a temporary directory.

With ``appliance_oidc`` set, the secret from the vault lands at ``client_secret_file``, mode
0600, owned by Synapse's user, never shown in the output; a second run changes nothing, a new
secret changes the file. Without ``appliance_oidc`` nothing is written, and with it but no
secret the role's checks stop the converge naming the variable.
"""

from __future__ import annotations

import getpass
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from appliance.config.layout import SOURCE_ROOT

ANSIBLE_DIR = SOURCE_ROOT / "ansible"
ROLE = ANSIBLE_DIR / "roles" / "synapse"
PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{defaults}]
  tasks:
    - name: The synapse role's task file
      ansible.builtin.import_tasks: {tasks}
"""


def play(tmp_path: Path, tasks: str, **variables) -> subprocess.CompletedProcess:
    playbook = tmp_path / f"play-{tasks}"
    playbook.write_text(
        PLAYBOOK.format(defaults=ROLE / "defaults/main.yml", tasks=ROLE / "tasks" / tasks)
    )
    extra = {
        "ansible_python_interpreter": sys.executable,
        "common_synapse_user": getpass.getuser(),
        # What the cross-role check looks for (set by the appliance role in site.yml).
        "appliance_changed_files": [],
        "appliance_cli": "/bin/true",
        "appliance_release_changed": False,
        "appliance_placement": {"main": True, "workers": [], "redis": False, "postgresql": True},
        **variables,
    }
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            json.dumps(extra),
        ],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANSIBLE_HOME": str(Path.home() / ".ansible"), "NO_COLOR": "1"},
    )


def changed(result: subprocess.CompletedProcess) -> int:
    recap = result.stdout.rsplit("PLAY RECAP", 1)[1]
    return int(recap.split("changed=", 1)[1].split()[0])


def oidc(secret_file: Path) -> dict:
    return {
        "issuer": "https://auth.example.gouv.fr",
        "client_id": "appliance",
        "client_secret_file": str(secret_file),
    }


def test_the_secret_from_the_vault_is_placed_private_to_synapses_user(tmp_path):
    secret_file = tmp_path / "etc" / "appliance" / "oidc-client-secret"
    secret = "vault-secret-" + os.urandom(8).hex()
    first = play(
        tmp_path,
        "oidc_client_secret.yml",
        appliance_oidc=oidc(secret_file),
        synapse_oidc_client_secret=secret,
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert secret not in first.stdout + first.stderr
    assert secret_file.read_text() == secret + "\n"
    status = secret_file.stat()
    assert stat.S_IMODE(status.st_mode) == 0o600
    assert status.st_uid == os.getuid()

    again = play(
        tmp_path,
        "oidc_client_secret.yml",
        appliance_oidc=oidc(secret_file),
        synapse_oidc_client_secret=secret,
    )
    assert again.returncode == 0 and changed(again) == 0, again.stdout[-3000:]

    renewed = play(
        tmp_path,
        "oidc_client_secret.yml",
        appliance_oidc=oidc(secret_file),
        synapse_oidc_client_secret=secret + "-new",
    )
    assert renewed.returncode == 0 and changed(renewed) == 1, renewed.stdout[-3000:]
    assert secret_file.read_text() == secret + "-new\n"


def test_without_single_sign_on_nothing_is_written(tmp_path):
    result = play(tmp_path, "oidc_client_secret.yml", appliance_oidc=None)
    assert result.returncode == 0, result.stdout[-3000:]
    assert changed(result) == 0
    assert not (tmp_path / "etc").exists()


def test_single_sign_on_without_a_secret_stops_the_converge_naming_the_variable(tmp_path):
    result = play(
        tmp_path,
        "validate_config.yml",
        appliance_oidc=oidc(tmp_path / "oidc-client-secret"),
        synapse_oidc_client_secret="",
    )
    assert result.returncode != 0
    assert "synapse_oidc_client_secret is empty while appliance_oidc is set" in result.stdout
    ok = play(
        tmp_path,
        "validate_config.yml",
        appliance_oidc=oidc(tmp_path / "oidc-client-secret"),
        synapse_oidc_client_secret="a-secret",
    )
    assert ok.returncode == 0, ok.stdout[-3000:]
