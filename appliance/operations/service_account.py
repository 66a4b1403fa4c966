# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's service account on Synapse: a server admin created with the shared secret.

Its access token is kept in a private file on the box (0600; in production 0640 for the
console's group, which reads nothing else of Synapse's); the console reads it server-side and
it never reaches a browser. `appliance up` and `appliance service-token` both go through
`ensure_console_token`.
"""

from __future__ import annotations

import grp
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

import requests

from appliance.config.layout import Layout
from appliance.config.secrets_store import read_secret, write_private_file
from appliance.config.settings import Settings

SERVICE_LOCALPART = "appliance-console"
TIMEOUT = 10


class ServiceAccountError(Exception):
    pass


def _whoami_status(base_url: str, token: str) -> int:
    response = requests.get(
        f"{base_url}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    return response.status_code


def _register_admin(base_url: str, shared_secret: str, password: str) -> str:
    """Shared-secret registration (Synapse's Admin API); returns an access token."""
    endpoint = f"{base_url}/_synapse/admin/v1/register"
    nonce = requests.get(endpoint, timeout=TIMEOUT).json()["nonce"]
    # Synapse's format: HMAC-SHA1 over nonce, user, password and "admin", NUL-separated.
    message = b"\x00".join(p.encode() for p in (nonce, SERVICE_LOCALPART, password, "admin"))
    body = {
        "nonce": nonce,
        "username": SERVICE_LOCALPART,
        "password": password,
        "admin": True,
        "displayname": "Appliance console (service account)",
        "mac": hmac.new(shared_secret.encode(), message, hashlib.sha1).hexdigest(),
    }
    response = requests.post(endpoint, json=body, timeout=TIMEOUT)
    if response.status_code != 200:
        raise ServiceAccountError(
            f"Synapse refused to create the console's service account: "
            f"{response.status_code} {response.text[:200]}"
        )
    return response.json()["access_token"]


def _login(base_url: str, password: str) -> str | None:
    """An access token, or None when Synapse does not know this account and password."""
    response = requests.post(
        f"{base_url}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": SERVICE_LOCALPART},
            "password": password,
            "initial_device_display_name": "appliance console",
        },
        timeout=TIMEOUT,
    )
    if response.status_code == 403:
        return None
    if response.status_code != 200:
        raise ServiceAccountError(
            f"the console's service account cannot log in: {response.status_code} "
            f"{response.text[:200]}"
        )
    return response.json()["access_token"]


def ensure_console_token(settings: Settings, layout: Layout) -> bool:
    """Make sure the console has a working token; whether the token file changed.

    In production (run as root) the token is then made readable by the console's group only.
    """
    before = _fingerprint(layout.service_token)
    ensure_service_token(
        settings.synapse.listen.url,
        shared_secret_file=layout.secret("registration_shared_secret"),
        password_file=layout.service_account_password,
        token_file=layout.service_token,
    )
    if settings.host.service_user is not None:
        _share_with_group(layout.service_token, settings.host.console_user)
    return _fingerprint(layout.service_token) != before


def _fingerprint(path: Path) -> tuple | None:
    """The file's content, owner and mode, without keeping the secret itself around."""
    if not path.exists():
        return None
    status = path.stat()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)


def _share_with_group(path: Path, group: str) -> None:
    """Read-only for the group, nothing for others; the owner (root) stays the writer."""
    os.chown(path, -1, grp.getgrnam(group).gr_gid)
    os.chmod(path, 0o640)


def ensure_service_token(
    base_url: str, shared_secret_file: Path, password_file: Path, token_file: Path
) -> None:
    """Make sure token_file holds a working server-admin token; create the account if needed."""
    try:
        _ensure_service_token(base_url, shared_secret_file, password_file, token_file)
    except (requests.RequestException, KeyError, ValueError) as error:
        raise ServiceAccountError(
            f"cannot set up the console's service account on Synapse: {error}"
        ) from None


def _ensure_service_token(
    base_url: str, shared_secret_file: Path, password_file: Path, token_file: Path
) -> None:
    if token_file.exists():
        status = _whoami_status(base_url, read_secret(token_file))
        if status == 200:
            return
        # Only "unknown token" means a new one is needed; a busy Synapse is not a reason to
        # log in again and leave a second valid admin token behind.
        if status != 401:
            raise ServiceAccountError(
                f"Synapse answered {status} when checking the console's token"
            )
    if not password_file.exists():
        # The prefix satisfies any password policy (upper, lower, digit, symbol).
        write_private_file(password_file, "Aa1-" + secrets.token_urlsafe(32), exclusive=True)
    password = read_secret(password_file)
    # No account yet (first start, or an earlier attempt failed after the password was saved).
    token = _login(base_url, password) or _register_admin(
        base_url, read_secret(shared_secret_file), password
    )
    write_private_file(token_file, token)
