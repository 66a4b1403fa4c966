"""The user list: which Admin API query each filter is, and pages that stay bounded.

Every filter but two is a plain Admin API query. "externals" is the display-name marker search
when there is no search text. "agents", and "externals" combined with a search text, need a
second condition the Admin API cannot express: those pages are filled from consecutive Admin
API pages, reading at most MAX_SCANNED_PAGES of them, so a page never costs more than that
whatever the number of users.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from admin_console.externals import EXTERNAL_MARKER, is_external
from admin_console.synapse_admin import SynapseClient
from admin_console.synapse_admin.users import User, UserQuery, list_users

FILTERS = ("active", "agents", "externals", "admins", "deactivated", "all")
MAX_SCANNED_PAGES = 5


@dataclass(frozen=True)
class Listing:
    users: list[User]
    total: int | None  # None when only an upper bound is known cheaply
    offset: int
    next_offset: int | None


def _query(kind: str, search: str, offset: int, limit: int) -> UserQuery:
    if kind == "admins":
        return UserQuery(search, admins=True, deactivated=None, limit=limit, offset=offset)
    if kind == "deactivated":
        return UserQuery(search, deactivated=True, limit=limit, offset=offset)
    if kind == "all":
        return UserQuery(search, deactivated=None, limit=limit, offset=offset)
    if kind == "externals" and not search:
        return UserQuery(EXTERNAL_MARKER, limit=limit, offset=offset)
    return UserQuery(search, limit=limit, offset=offset)


def _extra_condition(kind: str, search: str) -> Callable[[User], bool] | None:
    if kind == "agents":
        return lambda user: not is_external(user.displayname)
    if kind == "externals" and search:
        return lambda user: is_external(user.displayname)
    return None


def list_page(
    synapse: SynapseClient, kind: str, search: str, offset: int, limit: int
) -> Listing:
    query = _query(kind if kind in FILTERS else "active", search, offset, limit)
    condition = _extra_condition(kind, search)
    if condition is None:
        page = list_users(synapse, query)
        return Listing(page.users, page.total, page.offset, page.next_offset)
    return _filled_page(synapse, query, condition)


def _filled_page(
    synapse: SynapseClient, query: UserQuery, condition: Callable[[User], bool]
) -> Listing:
    kept: list[User] = []
    offset: int | None = query.offset
    for _ in range(MAX_SCANNED_PAGES):
        page = list_users(synapse, UserQuery(query.search, query.admins, query.deactivated,
                                             query.limit, offset))
        for position, user in enumerate(page.users):
            if condition(user):
                kept.append(user)
            if len(kept) == query.limit:
                # Resume right after the last user looked at.
                following = page.offset + position + 1
                return Listing(kept, None, query.offset,
                               following if following < page.total else None)
        offset = page.next_offset
        if offset is None:
            break
    return Listing(kept, None, query.offset, offset)
