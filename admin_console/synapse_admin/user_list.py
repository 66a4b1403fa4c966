# SPDX-License-Identifier: AGPL-3.0-or-later
"""The user list through the appliance module's endpoint (`/_synapse/client/appliance/v1/users`).

Pages are keyset pages in user ID order: each answer carries opaque cursors to the next and the
previous page, and no total, so a page costs Synapse the same with 10,000 users or 100,000
(the Admin API's list counts every matching user and pages by offset). The module's
`kind` tells agents from externals by its own record, and each user comes with the addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from admin_console.synapse_admin.client import SynapseClient
from admin_console.synapse_admin.users import User

USERS = "/_synapse/client/appliance/v1/users"
KINDS = ("active", "agents", "externals", "admins", "deactivated", "all")


@dataclass(frozen=True)
class ListedUser(User):
    external: bool = False
    emails: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, row: dict) -> ListedUser:
        user = User.from_json(row)
        return cls(
            **user.__dict__,
            external=bool(row.get("external")),
            emails=tuple(row.get("emails", ())),
        )


@dataclass(frozen=True)
class UserListPage:
    users: list[ListedUser]
    next_cursor: str | None  # None on the last page
    prev_cursor: str | None  # None on the first page


def list_user_page(
    synapse: SynapseClient, *, kind: str, search: str, cursor: str | None, limit: int
) -> UserListPage:
    """One page of users of the kind (see KINDS) matching search, from cursor (None: the
    first page). Search: a Matrix ID or email prefix, or words of the display name."""
    params = {"kind": kind, "limit": limit}
    if search:
        params["q"] = search
    if cursor:
        params["from"] = cursor
    body = synapse.get(USERS, params=params)
    return UserListPage(
        users=[ListedUser.from_json(row) for row in body.get("users", [])],
        next_cursor=body.get("next"),
        prev_cursor=body.get("prev"),
    )
