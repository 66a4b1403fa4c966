# SPDX-License-Identifier: AGPL-3.0-or-later
"""The one rule of every appliance admin endpoint: the caller is a Synapse server admin."""

from __future__ import annotations

from synapse.module_api import ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError


async def require_server_admin(api: ModuleApi, request: SynapseRequest) -> str:
    """Return the caller's user ID, or raise the error the client must see.

    No token or an unknown one: Synapse's own 401 ``M_MISSING_TOKEN`` / ``M_UNKNOWN_TOKEN``.
    A valid token of someone who is not a server admin: 403 ``M_FORBIDDEN``.
    """
    requester = await api.get_user_by_req(request)
    user_id = requester.user.to_string()
    if not await api.is_user_admin(user_id):
        raise SynapseError(
            403, "This endpoint is reserved to the server's administrators", Codes.FORBIDDEN
        )
    return user_id
