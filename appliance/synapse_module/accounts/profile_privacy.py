# SPDX-License-Identifier: AGPL-3.0-or-later
"""Who may learn that an account exists, through its profile.

* Anonymous callers: nothing.  homeserver.yaml sets ``require_auth_for_profile_requests``, so
  ``GET /profile/{user}`` (and each field) answers 401 ``M_MISSING_TOKEN`` whether the account
  exists or not.  ``/register/available`` answers "available" for every name
  (``inhibit_user_in_use_error``), and the identity lookup names only the server.
* Agents: every profile.  The agents' directory already shows every agent's name, and Element
  looks up the profile of a Matrix ID before inviting it.
* Externals: only the profiles of people they share a room with, as in the directory
  (:mod:`appliance.synapse_module.directory.user_search`).  Any other lookup, an account that
  does not exist included, is the same 403 ``M_FORBIDDEN`` (:data:`PROFILE_NOT_SHARED`), so the
  answer says nothing about existence.  Synapse has no module callback for profile lookups and
  its ``limit_profile_requests_to_users_who_share_rooms`` would bind agents too, so this check
  is added to Synapse's own through :class:`~appliance.synapse_module.synapse_internals.
  SynapseInternals`.
"""

from __future__ import annotations

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from appliance.synapse_module.directory.user_search import may_see
from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.synapse_internals import SynapseInternals

PROFILE_NOT_SHARED = "Externals can see the profiles only of people they share a room with"


class ProfilePrivacy:
    def __init__(
        self, api: ModuleApi, directory: ExternalDirectory, internals: SynapseInternals
    ) -> None:
        self._api = api
        self._directory = directory
        self._internals = internals

    def register(self) -> None:
        self._internals.check_profile_queries_with(self.check_profile_query)

    async def check_profile_query(self, requester: str, target: str) -> None:
        """Raises:
        SynapseError: 403 ``M_FORBIDDEN`` when an external asks about someone (existing or
        not) it shares no room with."""
        if not await may_see(self._directory, self._internals, requester, target):
            raise SynapseError(403, PROFILE_NOT_SHARED, Codes.FORBIDDEN)
