# SPDX-License-Identifier: AGPL-3.0-or-later
"""One user through Synapse's Admin API: details, devices, rooms, and the actions on them.

The user list comes from the appliance module (`user_list.py`), by keyset pages.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from admin_console.synapse_admin.client import SynapseClient, segment


@dataclass(frozen=True)
class User:
    user_id: str
    displayname: str | None
    admin: bool
    deactivated: bool
    shadow_banned: bool
    locked: bool
    user_type: str | None
    creation_ts: int | None  # ms
    last_seen_ts: int | None  # ms

    @classmethod
    def from_json(cls, row: dict) -> User:
        return cls(
            user_id=row["name"],
            displayname=row.get("displayname"),
            admin=bool(row.get("admin")),
            deactivated=bool(row.get("deactivated")),
            shadow_banned=bool(row.get("shadow_banned")),
            locked=bool(row.get("locked")),
            user_type=row.get("user_type"),
            creation_ts=row.get("creation_ts"),
            last_seen_ts=row.get("last_seen_ts"),
        )


@dataclass(frozen=True)
class Device:
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None


@dataclass(frozen=True)
class UserDetails:
    user: User
    suspended: bool
    erased: bool
    emails: list[str] = field(default_factory=list)


def get_user(synapse: SynapseClient, user_id: str) -> UserDetails:
    body = synapse.get(f"/_synapse/admin/v2/users/{segment(user_id)}")
    emails = [t["address"] for t in body.get("threepids", []) if t.get("medium") == "email"]
    if body.get("creation_ts") is not None:
        # This endpoint gives seconds where the user list gives milliseconds.
        body = {**body, "creation_ts": body["creation_ts"] * 1000}
    return UserDetails(
        user=User.from_json(body),
        suspended=bool(body.get("suspended")),
        erased=bool(body.get("erased")),
        emails=emails,
    )


def devices(synapse: SynapseClient, user_id: str) -> list[Device]:
    body = synapse.get(f"/_synapse/admin/v2/users/{segment(user_id)}/devices")
    found = [
        Device(
            device_id=row["device_id"],
            display_name=row.get("display_name"),
            last_seen_ts=row.get("last_seen_ts"),
            last_seen_ip=row.get("last_seen_ip"),
            last_seen_user_agent=row.get("last_seen_user_agent"),
        )
        for row in body.get("devices", [])
    ]
    return sorted(found, key=lambda device: device.last_seen_ts or 0, reverse=True)


def joined_rooms(synapse: SynapseClient, user_id: str) -> list[str]:
    body = synapse.get(f"/_synapse/admin/v1/users/{segment(user_id)}/joined_rooms")
    return list(body.get("joined_rooms", []))


# Actions ---------------------------------------------------------------------------------------
def deactivate(synapse: SynapseClient, user_id: str, *, erase: bool) -> None:
    synapse.post(f"/_synapse/admin/v1/deactivate/{segment(user_id)}", {"erase": erase})


def reactivate(synapse: SynapseClient, user_id: str, *, password: str, email: str | None) -> None:
    """Reactivate with a new password; deactivation removed the emails, so one can be re-bound."""
    body: dict = {"deactivated": False, "password": password}
    if email:
        body["threepids"] = [{"medium": "email", "address": email}]
    synapse.put(f"/_synapse/admin/v2/users/{segment(user_id)}", body)


def set_admin(synapse: SynapseClient, user_id: str, admin: bool) -> None:
    synapse.put(f"/_synapse/admin/v1/users/{segment(user_id)}/admin", {"admin": admin})


def set_suspended(synapse: SynapseClient, user_id: str, suspended: bool) -> None:
    synapse.put(f"/_synapse/admin/v1/suspend/{segment(user_id)}", {"suspend": suspended})


def set_shadow_banned(synapse: SynapseClient, user_id: str, banned: bool) -> None:
    path = f"/_synapse/admin/v1/users/{segment(user_id)}/shadow_ban"
    if banned:
        synapse.post(path)
    else:
        synapse.delete(path)


def log_out_everywhere(synapse: SynapseClient, user_id: str) -> int:
    """Delete every device, which ends every session; return how many there were."""
    ids = [device.device_id for device in devices(synapse, user_id)]
    if ids:
        synapse.post(
            f"/_synapse/admin/v2/users/{segment(user_id)}/delete_devices", {"devices": ids}
        )
    return len(ids)


def send_password_reset(synapse: SynapseClient, email: str) -> None:
    """Ask Synapse to mail its standard password-reset link to the address.

    This is the client API the user's own app would call: the mail, the link and what it
    leads to are Synapse's, so the console never sees or sets the new password.
    """
    synapse.post(
        "/_matrix/client/v3/account/password/email/requestToken",
        {"email": email, "client_secret": secrets.token_urlsafe(24), "send_attempt": 1},
    )
