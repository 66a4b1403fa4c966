# SPDX-License-Identifier: AGPL-3.0-or-later
"""The user list as CSV: every user of a filter and search, all pages, for a spreadsheet.

Display names are chosen by the users themselves, so every cell goes through
`csv_export.csv_lines` (no cell is a formula). Pages are fetched one after the other by the
module's cursor and written as they come: memory stays flat with 100,000 users.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from admin_console.synapse_admin import SynapseClient
from admin_console.synapse_admin.user_list import ListedUser, UserListPage, list_user_page

COLUMNS = (
    "user_id",
    "display_name",
    "emails",
    "kind",
    "admin",
    "state",
    "created_utc",
    "last_seen_utc",
)
PAGE_SIZE = 500  # the module's largest page


def all_pages(
    synapse: SynapseClient, *, kind: str, search: str, first: UserListPage
) -> Iterator[ListedUser]:
    """The users of first, then of every following page."""
    page = first
    while True:
        yield from page.users
        if page.next_cursor is None:
            return
        page = list_user_page(
            synapse, kind=kind, search=search, cursor=page.next_cursor, limit=PAGE_SIZE
        )


def cells(user: ListedUser) -> list[str]:
    return [
        user.user_id,
        user.displayname or "",
        " ".join(user.emails),
        "external" if user.external else "agent",
        "yes" if user.admin else "no",
        _state(user),
        _utc(user.creation_ts),
        _utc(user.last_seen_ts),
    ]


def _state(user: ListedUser) -> str:
    if user.deactivated:
        return "deactivated"
    if user.shadow_banned:
        return "shadow-banned"
    return "locked" if user.locked else "active"


def _utc(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
