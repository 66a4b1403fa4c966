# SPDX-License-Identifier: AGPL-3.0-or-later
"""Event reports through Synapse's Admin API: list, read the reported event, dismiss, redact.

Synapse keeps every report agents file (POST /rooms/{room}/report/{event}) until an admin
deletes it: a report still stored is an open one, and dismissing it deletes it.

Synapse's Admin API has no call to redact one event. The console redacts it as a client does,
with a short-lived token of a local user the room lets redact it (the sender, or a local
member whose power level reaches the room's `redact` level), taken with the Admin API's
"login as a user" and logged out at once. The token never leaves this module.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from admin_console.synapse_admin.client import SynapseClient, SynapseRefused, segment

REPORTS = "/_synapse/admin/v1/event_reports"
ENCRYPTED_TYPE = "m.room.encrypted"
# The borrowed token expires on its own if logging it out fails.
BORROWED_TOKEN_SECONDS = 60


class CannotRedact(Exception):
    """No local user of the room may redact the event; str() says why."""


@dataclass(frozen=True)
class Report:
    id: int
    received_ts: int  # ms
    room_id: str
    room_name: str | None
    event_id: str
    reporter: str
    sender: str | None
    reason: str | None

    @classmethod
    def from_json(cls, row: dict) -> Report:
        return cls(
            id=int(row["id"]),
            received_ts=int(row["received_ts"]),
            room_id=row["room_id"],
            room_name=row.get("name") or row.get("canonical_alias"),
            event_id=row["event_id"],
            reporter=row["user_id"],
            sender=row.get("sender"),
            reason=row.get("reason"),
        )


@dataclass(frozen=True)
class ReportedEvent:
    """The reported event as the server holds it now. `content` is None when it must not be
    shown: the event is encrypted (nobody but its room's members can read it), redacted or
    no longer stored."""

    event_type: str | None
    encrypted: bool
    redacted: bool
    content: dict | None


@dataclass(frozen=True)
class ReportPage:
    reports: list[Report]
    total: int
    next_offset: int | None


def list_reports(synapse: SynapseClient, offset: int, limit: int) -> ReportPage:
    """Newest first."""
    body = synapse.get(REPORTS, params={"from": offset, "limit": limit, "dir": "b"})
    return ReportPage(
        reports=[Report.from_json(row) for row in body.get("event_reports", [])],
        total=int(body.get("total", 0)),
        next_offset=body.get("next_token"),
    )


def open_count(synapse: SynapseClient) -> int:
    return int(synapse.get(REPORTS, params={"limit": 0}).get("total", 0))


def get_report(synapse: SynapseClient, report_id: int) -> Report:
    return Report.from_json(synapse.get(f"{REPORTS}/{report_id}"))


def reported_event(synapse: SynapseClient, report: Report) -> ReportedEvent:
    """The event as it is now (after a redaction, without its content)."""
    try:
        body = synapse.get(
            f"/_synapse/admin/v1/rooms/{segment(report.room_id)}/context/"
            f"{segment(report.event_id)}",
            params={"limit": 0},
        )
    except SynapseRefused as error:
        if error.status == 404:
            return ReportedEvent(None, False, False, None)
        raise
    event = body.get("event") or {}
    event_type = event.get("type")
    encrypted = event_type == ENCRYPTED_TYPE
    redacted = "redacted_because" in (event.get("unsigned") or {})
    content = None if encrypted or redacted else event.get("content")
    return ReportedEvent(event_type, encrypted, redacted, content)


def dismiss(synapse: SynapseClient, report_id: int) -> None:
    synapse.delete(f"{REPORTS}/{report_id}")


def redact(synapse: SynapseClient, report: Report, server_name: str, reason: str) -> str:
    """Redact the reported event; return the user it was redacted as."""
    refusals = []
    for user_id in _who_may_redact(synapse, report, server_name):
        try:
            _redact_as(synapse, user_id, report, reason)
        except SynapseRefused as error:  # e.g. a deactivated sender: try the next one
            refusals.append(f"{user_id}: {error}")
            continue
        return user_id
    raise CannotRedact(
        f"no user of this server may redact {report.event_id} in {report.room_id}"
        + (f" ({'; '.join(refusals)})" if refusals else "")
    )


def _redact_as(synapse: SynapseClient, user_id: str, report: Report, reason: str) -> None:
    token = synapse.post(
        f"/_synapse/admin/v1/users/{segment(user_id)}/login",
        {"valid_until_ms": int((time.time() + BORROWED_TOKEN_SECONDS) * 1000)},
    )["access_token"]
    as_user = synapse.with_token(token)
    try:
        as_user.put(
            f"/_matrix/client/v3/rooms/{segment(report.room_id)}/redact/"
            f"{segment(report.event_id)}/{secrets.token_hex(8)}",
            {"reason": reason},
        )
    finally:
        as_user.post("/_matrix/client/v3/logout")


def _who_may_redact(synapse: SynapseClient, report: Report, server_name: str) -> list[str]:
    """The sender if local, then the room's local members with the power to redact others'."""
    room = segment(report.room_id)
    members = synapse.get(f"/_synapse/admin/v1/rooms/{room}/members").get("members", [])
    local = [m for m in members if m.endswith(f":{server_name}")]
    candidates = [report.sender] if report.sender in local else []
    levels = _power_levels(synapse, room)
    needed = int(levels.get("redact", 50))
    default = int(levels.get("users_default", 0))
    users = levels.get("users", {})
    moderators = [m for m in local if int(users.get(m, default)) >= needed]
    candidates += sorted(moderators, key=lambda m: -int(users.get(m, default)))
    return [c for c in dict.fromkeys(candidates) if c is not None]


def _power_levels(synapse: SynapseClient, room: str) -> dict:
    for event in synapse.get(f"/_synapse/admin/v1/rooms/{room}/state").get("state", []):
        if event.get("type") == "m.room.power_levels" and event.get("state_key") == "":
            return event.get("content") or {}
    return {}
