# SPDX-License-Identifier: AGPL-3.0-or-later
"""The user list: one page of the appliance module's user list per request, by cursor.

The page in the query string is the module's opaque cursor (`from`), which stays valid
however many users come and go. A cursor the module refuses (an old link with an offset, an
edited URL) means the first page, not an error.
"""

from __future__ import annotations

from flask import request

from admin_console.synapse_admin import SynapseClient, SynapseRefused
from admin_console.synapse_admin.user_list import KINDS, UserListPage, list_user_page

FILTERS = KINDS
CURSOR_ARG = "from"
MAX_CURSOR_LENGTH = 1024


def cursor_arg() -> str | None:
    """The page's cursor from the query string; none (or an oversized one) is the first page."""
    cursor = request.args.get(CURSOR_ARG, "")
    return cursor if 0 < len(cursor) <= MAX_CURSOR_LENGTH else None


def list_page(
    synapse: SynapseClient, *, kind: str, search: str, cursor: str | None, limit: int
) -> UserListPage:
    kind = kind if kind in FILTERS else "active"
    try:
        return list_user_page(synapse, kind=kind, search=search, cursor=cursor, limit=limit)
    except SynapseRefused as refused:
        if cursor is None or refused.errcode != "M_INVALID_PARAM":
            raise
        return list_user_page(synapse, kind=kind, search=search, cursor=None, limit=limit)
