# SPDX-License-Identifier: AGPL-3.0-or-later
"""Rooms through Synapse's Admin API: list, details, members, publish, block, delete with purge.

Never message contents: nothing here reads events other than the room's access-rules state.
"""

from __future__ import annotations

from dataclasses import dataclass

from admin_console.synapse_admin.client import SynapseClient, segment
from admin_console.synapse_admin.offset_page import OffsetPage, offset_page

# Tchap's state event naming the kind of a room (restricted, unrestricted, direct).
ACCESS_RULES_EVENT = "im.vector.room.access_rules"


@dataclass(frozen=True)
class Room:
    room_id: str
    name: str | None
    canonical_alias: str | None
    joined_members: int
    encryption: str | None
    public: bool  # published in the room directory
    join_rules: str | None
    creator: str | None

    @classmethod
    def from_json(cls, row: dict) -> Room:
        return cls(
            room_id=row["room_id"],
            name=row.get("name"),
            canonical_alias=row.get("canonical_alias"),
            joined_members=int(row.get("joined_members") or 0),
            encryption=row.get("encryption"),
            public=bool(row.get("public")),
            join_rules=row.get("join_rules"),
            creator=row.get("creator"),
        )


@dataclass(frozen=True)
class DeleteStatus:
    delete_id: str
    room_id: str
    status: str  # scheduled, active, complete, failed
    kicked_users: list[str]
    error: str | None

    @property
    def finished(self) -> bool:
        return self.status in ("complete", "failed")


def list_rooms(
    synapse: SynapseClient, search: str = "", offset: int = 0, limit: int = 25
) -> OffsetPage[Room]:
    params: dict = {"from": offset, "limit": limit, "order_by": "name"}
    if search:
        params["search_term"] = search  # name, canonical alias or room ID
    body = synapse.get("/_synapse/admin/v1/rooms", params=params)
    return offset_page(
        body, "rooms", Room.from_json, offset, total_key="total_rooms", next_key="next_batch"
    )


def get_room(synapse: SynapseClient, room_id: str) -> Room:
    return Room.from_json(synapse.get(f"/_synapse/admin/v1/rooms/{segment(room_id)}"))


def access_rule(synapse: SynapseClient, room_id: str) -> str | None:
    """The room's Tchap access rule, or None when the room has no such state event."""
    body = synapse.get(
        f"/_synapse/admin/v1/rooms/{segment(room_id)}/state",
        params={"type": ACCESS_RULES_EVENT},  # only this event, not the whole room state
    )
    for event in body.get("state", []):
        if event.get("type") == ACCESS_RULES_EVENT and event.get("state_key") == "":
            rule = event.get("content", {}).get("rule")
            return rule if isinstance(rule, str) else None
    return None


def members(synapse: SynapseClient, room_id: str) -> list[str]:
    body = synapse.get(f"/_synapse/admin/v1/rooms/{segment(room_id)}/members")
    return sorted(body.get("members", []))


def set_published(synapse: SynapseClient, room_id: str, published: bool) -> None:
    # The client API: Synapse lets a server admin edit any room's directory entry.
    synapse.put(
        f"/_matrix/client/v3/directory/list/room/{segment(room_id)}",
        {"visibility": "public" if published else "private"},
    )


def set_blocked(synapse: SynapseClient, room_id: str, blocked: bool) -> None:
    synapse.put(f"/_synapse/admin/v1/rooms/{segment(room_id)}/block", {"block": blocked})


def is_blocked(synapse: SynapseClient, room_id: str) -> bool:
    return bool(synapse.get(f"/_synapse/admin/v1/rooms/{segment(room_id)}/block")["block"])


def start_delete(synapse: SynapseClient, room_id: str, *, block: bool) -> str:
    """Start shutting the room down and purging it; return the id to follow progress with."""
    body = synapse.delete(
        f"/_synapse/admin/v2/rooms/{segment(room_id)}", {"purge": True, "block": block}
    )
    return body["delete_id"]


def delete_status(synapse: SynapseClient, delete_id: str) -> DeleteStatus:
    body = synapse.get(f"/_synapse/admin/v2/rooms/delete_status/{segment(delete_id)}")
    shutdown = body.get("shutdown_room") or {}
    return DeleteStatus(
        delete_id=body["delete_id"],
        room_id=body["room_id"],
        status=body["status"],
        kicked_users=list(shutdown.get("kicked_users", [])),
        error=body.get("error"),
    )
