# SPDX-License-Identifier: AGPL-3.0-or-later
"""Admin endpoint for the console's user list: ``GET /_synapse/client/appliance/v1/users``.

Query:

* ``kind``: ``active`` (default: every account but the deactivated), ``agents``,
  ``externals`` (from the module's record of externals), ``admins``, ``deactivated``, ``all``;
* ``q``: a search: ``@``-prefixed, a Matrix ID prefix; with an ``@`` inside, an email address
  prefix; otherwise a localpart prefix or words of the display name (see
  :mod:`.user_list_query` for what each costs);
* ``limit``: 1-500, default 50;
* ``from``: a cursor from a previous answer's ``next`` or ``prev``, nothing else.

Answer, in user ID order::

    {"users": [{"name", "displayname", "admin", "deactivated", "shadow_banned", "locked",
                "user_type", "creation_ts", "external", "emails", "last_seen_ts"}],
     "next": "<cursor>", "prev": "<cursor>"}

``next`` is there only when there is a next page; ``prev`` only when the page did not start at
the beginning.  There is no total: counting the matching users is what makes Synapse's own
list slow on a large server.  A page costs the same with ten thousand users or a hundred
thousand, but for the searches that :mod:`.user_list_query` names.  Timestamps are
in milliseconds.  Guests are never listed.
Every call needs a server admin's access token (see :mod:`.admin_auth`).
"""

from __future__ import annotations

import base64
import binascii

from synapse.module_api import (
    DirectServeJsonResource,
    LoggingTransaction,
    ModuleApi,
    SynapseRequest,
)
from synapse.module_api.errors import Codes, SynapseError

from appliance.synapse_module.admin_api.auth import require_server_admin
from appliance.synapse_module.admin_api.request_args import integer_arg, string_arg
from appliance.synapse_module.admin_api.user_list_query import (
    KINDS,
    Position,
    page_of_user_ids_txn,
)
from appliance.synapse_module.admin_api.user_list_rows import UserRow, rows_for_txn

USERS_PATH = "/_synapse/client/appliance/v1/users"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_FORWARD, _BACKWARD = "a", "b"  # a cursor says "after" or "before" a user ID


def encode_cursor(position: Position) -> str:
    text = f"{_FORWARD if position.forward else _BACKWARD}{position.user_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if len(text) < 2 or text[0] not in (_FORWARD, _BACKWARD):
        raise SynapseError(
            400, "from must be a cursor given by this endpoint (next or prev)", Codes.INVALID_PARAM
        )
    return Position(text[1:], forward=text[0] == _FORWARD)


def page_json(rows: list[UserRow], more: bool, position: Position | None) -> dict:
    """The answer for a page's rows, fetched from position on in its direction; more says
    whether rows lie beyond them in that direction."""
    forward = position is None or position.forward
    shown = rows if forward else list(reversed(rows))
    body: dict = {"users": [row.to_json() for row in shown]}
    if not shown:
        return body
    # Going back, the page we came back from always follows; going forward, a page precedes
    # unless this one started at the beginning.
    has_next = more if forward else True
    has_prev = (position is not None) if forward else more
    if has_next:
        body["next"] = encode_cursor(Position(shown[-1].name, forward=True))
    if has_prev:
        body["prev"] = encode_cursor(Position(shown[0].name, forward=False))
    return body


class UserListResource(DirectServeJsonResource):
    def __init__(self, api: ModuleApi) -> None:
        super().__init__()
        self._api = api

    def register(self) -> None:
        """Serve USERS_PATH (on every process: any may receive the request).

        The list does not wait for its indexes (created with the module's tables): without
        them a page is slower, never wrong."""
        self._api.register_web_resource(USERS_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict]:
        await require_server_admin(self._api, request)
        kind = string_arg(request, "kind", "active")
        if kind not in KINDS:
            raise SynapseError(400, f"kind must be one of {', '.join(KINDS)}", Codes.INVALID_PARAM)
        search = string_arg(request, "q")
        limit = integer_arg(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        cursor = string_arg(request, "from", max_length=1024)
        position = decode_cursor(cursor) if cursor else None
        rows, more = await self._api.run_db_interaction(
            "appliance_user_list", _page_txn, search, kind, position, limit
        )
        return 200, page_json(rows, more, position)


def _page_txn(
    txn: LoggingTransaction, search: str, kind: str, position: Position | None, limit: int
) -> tuple[list[UserRow], bool]:
    # One transaction: the page's IDs and their details come from the same snapshot.
    user_ids = page_of_user_ids_txn(txn, search, kind, position, limit)
    return rows_for_txn(txn, user_ids[:limit]), len(user_ids) > limit
