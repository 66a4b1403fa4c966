# SPDX-License-Identifier: AGPL-3.0-or-later
"""Email invitations through the appliance module's endpoint
(`/_synapse/client/appliance/v1/invitations`): who invited which address into which room, and
what became of it; revoking a pending one.

Pages are keyset pages, newest first: each answer carries an opaque cursor to the next page
(older invitations) and no total.
"""

from __future__ import annotations

from dataclasses import dataclass

from admin_console.synapse_admin.client import SynapseClient, segment

INVITATIONS = "/_synapse/client/appliance/v1/invitations"
STATUSES = ("pending", "all")


@dataclass(frozen=True)
class Invitation:
    id: str
    address: str
    room_id: str
    room_name: str | None
    inviter: str
    inviter_name: str | None
    created_at: int  # ms
    status: str  # pending, revoked, used, failed
    completed_at: int | None  # ms
    user_id: str | None  # the account that used it
    outcome: str | None

    @classmethod
    def from_json(cls, row: dict) -> Invitation:
        return cls(
            id=row["id"],
            address=row["address"],
            room_id=row["room_id"],
            room_name=row.get("room_name"),
            inviter=row["inviter"],
            inviter_name=row.get("inviter_name"),
            created_at=int(row["created_at"]),
            status=row["status"],
            completed_at=row.get("completed_at"),
            user_id=row.get("user_id"),
            outcome=row.get("outcome"),
        )


@dataclass(frozen=True)
class InvitationPage:
    invitations: list[Invitation]
    next_cursor: str | None  # None on the last page


def list_invitations(
    synapse: SynapseClient, *, status: str, cursor: str | None, limit: int
) -> InvitationPage:
    """One page of invitations (status: see STATUSES), newest first, from cursor (None: the
    first page)."""
    params: dict = {"status": status, "limit": limit}
    if cursor:
        params["from"] = cursor
    body = synapse.get(INVITATIONS, params=params)
    return InvitationPage(
        invitations=[Invitation.from_json(row) for row in body.get("invitations", [])],
        next_cursor=body.get("next"),
    )


def revoke(synapse: SynapseClient, invitation_id: str) -> bool:
    """Revoke a pending invitation; return whether the room's pending invitation was withdrawn
    too (it stays shown in the room when nobody left there may invite)."""
    body = synapse.post(f"{INVITATIONS}/{segment(invitation_id)}/revoke")
    return bool(body.get("withdrawn_from_room"))


def get_invitation(synapse: SynapseClient, invitation_id: str) -> Invitation:
    return Invitation.from_json(synapse.get(f"{INVITATIONS}/{segment(invitation_id)}"))
