# SPDX-License-Identifier: AGPL-3.0-or-later
"""Account validity, seen from the console: the module's
``/_synapse/client/appliance/v1/account_validity`` endpoints.

When validity is off (``accounts.validity.period`` unset) the module serves no such endpoint:
every read here then answers "no expiry" rather than an error, and the pages say validity is
off.
"""

from __future__ import annotations

from dataclasses import dataclass

from admin_console.synapse_admin.client import EndpointMissing, SynapseClient, segment

VALIDITY = "/_synapse/client/appliance/v1/account_validity"
MAX_USERS_PER_CALL = 100


@dataclass(frozen=True)
class Expiry:
    user_id: str
    expiration_ts: int | None  # ms; None: never expires
    expired: bool
    exempt: bool
    reminders_sent: int
    deactivated_ts: int | None

    @classmethod
    def from_json(cls, row: dict) -> Expiry:
        return cls(
            user_id=row["user_id"],
            expiration_ts=row.get("expiration_ts"),
            expired=bool(row.get("expired")),
            exempt=bool(row.get("exempt")),
            reminders_sent=int(row.get("reminders_sent") or 0),
            deactivated_ts=row.get("deactivated_ts"),
        )


@dataclass(frozen=True)
class LogEntry:
    event: str
    actor: str | None
    expiration_ts: int | None
    ts: int


def expiries(synapse: SynapseClient, user_ids: list[str]) -> dict[str, Expiry] | None:
    """Each user's expiry; None when validity is off."""
    found: dict[str, Expiry] = {}
    try:
        for start in range(0, len(user_ids), MAX_USERS_PER_CALL):
            batch = user_ids[start : start + MAX_USERS_PER_CALL]
            body = synapse.get(VALIDITY, params=[("user_id", user_id) for user_id in batch])
            found.update((row["user_id"], Expiry.from_json(row)) for row in body["accounts"])
    except EndpointMissing:
        return None
    return found


def account(synapse: SynapseClient, user_id: str) -> tuple[Expiry, list[LogEntry]] | None:
    """One account's expiry and its validity log, newest first; None when validity is off."""
    try:
        body = synapse.get(f"{VALIDITY}/{segment(user_id)}")
    except EndpointMissing:
        return None
    log = [
        LogEntry(row["event"], row.get("actor"), row.get("expiration_ts"), row["ts"])
        for row in body["log"]
    ]
    return Expiry.from_json(body["account"]), log


def expiring_within(synapse: SynapseClient, days: int, limit: int = 500) -> list[Expiry] | None:
    """Active accounts that expire within days (or have expired), soonest first."""
    params = {"expiring_within_ms": days * 86400 * 1000, "limit": limit}
    try:
        body = synapse.get(VALIDITY, params=params)
    except EndpointMissing:
        return None
    return [Expiry.from_json(row) for row in body["accounts"]]


def renew(synapse: SynapseClient, user_id: str) -> Expiry:
    """A new period from now."""
    body = synapse.post(f"{VALIDITY}/{segment(user_id)}", {"action": "renew"})
    return Expiry.from_json(body["account"])


def extend(synapse: SynapseClient, user_id: str, days: int) -> Expiry:
    """days more than the current expiry (than now, if it has passed)."""
    body = synapse.post(f"{VALIDITY}/{segment(user_id)}", {"action": "extend", "days": days})
    return Expiry.from_json(body["account"])
