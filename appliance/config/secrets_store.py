# SPDX-License-Identifier: AGPL-3.0-or-later
"""Secrets on disk: created once, mode 0600 in a 0700 directory, never printed or logged."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

from signedjson.key import generate_signing_key, write_signing_keys

from appliance.config.layout import Layout

# Synapse reads each of these from its own file (the *_path options), so homeserver.yaml
# itself holds no secret.
SYNAPSE_SECRETS = (
    "registration_shared_secret",
    "macaroon_secret_key",
    "form_secret",
    # Authenticates requests between Synapse's processes on their replication listeners.
    "worker_replication_secret",
    # Signs the TURN credentials Synapse hands clients; coturn checks them with the same secret.
    "turn_shared_secret",
    # Synapse's processes authenticate to Redis with it (redis.password_path); Redis itself
    # holds only its SHA-256 (see appliance.evaluation.redis_acl).
    "redis_password",
)
CONSOLE_SECRET_KEY = "console_secret_key"
# Several hosts: what every Synapse host must hold the same as the main host (generated there,
# copied by the Ansible roles at 0600), with the signing key. Never the registration shared
# secret: with it anyone may create an administrator, and only the main process serves that.
SHARED_WITH_OTHER_HOSTS = (
    "macaroon_secret_key",
    "form_secret",
    "worker_replication_secret",
    "turn_shared_secret",
    "redis_password",
)


def write_private_file(path: Path, content: str, *, exclusive: bool = False) -> None:
    """Write a file readable by its owner only, without a moment where it is wider open.

    The content goes to a new 0600 file that then replaces the old one in one rename, so an
    existing file with a wider mode never holds the new secret, and readers never see half of
    it. exclusive: refuse to replace an existing file (FileExistsError).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _ensure_random_secret(path: Path) -> None:
    if not path.exists():
        write_private_file(path, secrets.token_urlsafe(48), exclusive=True)


def _ensure_signing_key(path: Path) -> None:
    if path.exists():
        return
    key = generate_signing_key("a_" + secrets.token_hex(2))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        write_signing_keys(handle, [key])


def ensure_secrets(layout: Layout) -> None:
    """Create every missing secret; existing ones are kept (rotating them logs everyone out)."""
    layout.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(layout.secrets_dir, 0o700)
    for name in (*SYNAPSE_SECRETS, CONSOLE_SECRET_KEY):
        _ensure_random_secret(layout.secret(name))
    _ensure_signing_key(layout.synapse_signing_key)


def read_secret(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


def write_json_secret(path: Path, value: dict, *, exclusive: bool = False) -> None:
    write_private_file(path, json.dumps(value, indent=2) + "\n", exclusive=exclusive)
