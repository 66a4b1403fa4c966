# SPDX-License-Identifier: AGPL-3.0-or-later
"""Admin endpoints for the console's view of email invitations (server-admin token required).

``GET /_synapse/client/appliance/v1/invitations``, newest first:

* ``status``: ``pending`` (default: not used nor revoked in this record; a room member may
  still have withdrawn one in the room, its status then says ``revoked``) or ``all``;
* ``limit``: 1-100, default 50;
* ``from``: the ``next`` cursor of a previous answer.

Answer::

    {"invitations": [{"id", "address", "room_id", "room_name", "inviter", "inviter_name",
                      "created_at", "status", "completed_at", "user_id", "outcome"}],
     "next": "<cursor>"}

``status`` is ``pending``, ``revoked``, ``used`` or ``failed`` (``outcome`` says why);
invitations do not expire.  ``next`` is there only when more invitations follow.  Times are in
milliseconds.

``GET /_synapse/client/appliance/v1/invitations/<id>``: one invitation, as listed (404
``M_NOT_FOUND`` if there is none).

``POST /_synapse/client/appliance/v1/invitations/<id>/revoke``: revoke a pending invitation;
its address can no longer register.  ``200 {"id", "revoked": true, "withdrawn_from_room"}``:
the room's pending invitation is withdrawn as someone left in the room who may invite, if
anyone is.  404 ``M_NOT_FOUND`` for an unknown id, 409 ``M_UNKNOWN`` if it is no longer
pending.  Both answer 503 ``M_UNKNOWN`` while the externals' tables are not there yet.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from synapse.module_api import DirectServeJsonResource, ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from appliance.synapse_module.admin_api.auth import require_server_admin
from appliance.synapse_module.admin_api.request_args import MAX_INTEGER, integer_arg, string_arg
from appliance.synapse_module.externals.invitations import Invitations
from appliance.synapse_module.externals.store import ExternalStore

INVITATIONS_PATH = "/_synapse/client/appliance/v1/invitations"
STATUSES = ("pending", "all")
DEFAULT_LIMIT = 50
MAX_LIMIT = 100


def encode_cursor(created_at: int, token: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}:{token}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_text, token = text.split(":", 1)
        created_at = int(created_text)
        if not 0 <= created_at <= MAX_INTEGER:  # beyond, the database would overflow
            raise ValueError(created_text)
        return created_at, token
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SynapseError(
            400, "from must be a cursor given by this endpoint (next)", Codes.INVALID_PARAM
        ) from None


class InvitationsResource(DirectServeJsonResource):
    # A leaf receives every path below INVITATIONS_PATH, so that it can route /<id>/revoke.
    isLeaf = True

    def __init__(self, api: ModuleApi, store: ExternalStore, invitations: Invitations) -> None:
        super().__init__()
        self._api = api
        self._store = store
        self._invitations = invitations

    def register(self) -> None:
        """Serve INVITATIONS_PATH (on every process: any may receive the request)."""
        self._api.register_web_resource(INVITATIONS_PATH, self)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict]:
        await require_server_admin(self._api, request)
        segments = _segments(request)
        if len(segments) == 1:
            return 200, await self._one(segments[0])
        if segments:
            raise _unknown_path()
        status = string_arg(request, "status", "pending")
        if status not in STATUSES:
            raise SynapseError(
                400, f"status must be one of {', '.join(STATUSES)}", Codes.INVALID_PARAM
            )
        limit = integer_arg(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        cursor = string_arg(request, "from", max_length=1024)
        before = decode_cursor(cursor) if cursor else None
        # One more than asked: whether a next page exists, without counting.
        found = await self._store.page(status == "pending", before, limit + 1)
        shown = found[:limit]
        body: dict = {"invitations": [await self._invitations.describe(i) for i in shown]}
        if len(found) > limit:
            body["next"] = encode_cursor(shown[-1].created_at, shown[-1].token)
        return 200, body

    async def _one(self, token: str) -> dict:
        invitation = await self._store.by_token(token)
        if invitation is None:
            raise SynapseError(404, "This invitation does not exist", Codes.NOT_FOUND)
        return await self._invitations.describe(invitation)

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, dict]:
        admin = await require_server_admin(self._api, request)
        segments = _segments(request)
        if len(segments) != 2 or segments[1] != "revoke" or not segments[0]:
            raise _unknown_path()
        token = segments[0]
        withdrawn = await self._invitations.revoke(token, admin)
        return 200, {"id": token, "revoked": True, "withdrawn_from_room": withdrawn}


def _segments(request: SynapseRequest) -> list[str]:
    """The path's segments below INVITATIONS_PATH ([] for the collection itself)."""
    path = request.path.decode("ascii", errors="replace")
    rest = path.removeprefix(INVITATIONS_PATH)
    if rest == path:
        raise _unknown_path()
    return [unquote(part) for part in rest.strip("/").split("/")] if rest.strip("/") else []


def _unknown_path() -> SynapseError:
    return SynapseError(404, f"Unknown path below {INVITATIONS_PATH}", Codes.UNRECOGNIZED)
