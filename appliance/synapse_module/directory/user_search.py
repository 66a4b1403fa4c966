# SPDX-License-Identifier: AGPL-3.0-or-later
"""The agents' directory (``/user_directory/search``): agents find everyone, externals only
the people they share a room with.

Synapse searches every local user (``user_directory.search_all_users``) by display name and
Matrix ID, which holds the address (``pierre.dupont-ac-paris.fr``), so an agent finds another
by name or by email address; deactivated users leave the directory.  It then asks
``check_username_for_spam`` about each result, with who is searching: True hides the result.

Filtering comes after Synapse's limit, so an external may get fewer results than the limit
while room-mates rank further down; clients search again as the person types.
"""

from __future__ import annotations

from synapse.module_api import ModuleApi, UserProfile

from appliance.synapse_module.externals.policy import ExternalDirectory
from appliance.synapse_module.synapse_internals import SynapseInternals


class DirectoryFilter:
    def __init__(
        self, api: ModuleApi, directory: ExternalDirectory, internals: SynapseInternals
    ) -> None:
        self._api = api
        self._directory = directory
        self._internals = internals

    def register(self) -> None:
        self._api.register_spam_checker_callbacks(
            check_username_for_spam=self.check_username_for_spam
        )

    async def check_username_for_spam(self, user_profile: UserProfile, requester_id: str) -> bool:
        """Synapse's ``check_username_for_spam`` (spam checker callback), once per result of
        a user directory search.

        Args:
            user_profile: the user found (``user_id``, ``display_name``, ``avatar_url``).
            requester_id: who searches (Synapse passes it only to a callback that declares
                both parameters).

        Returns:
            True to hide the result: an external sees only the people they share a room with.
        """
        return not await may_see(
            self._directory, self._internals, requester_id, user_profile["user_id"]
        )


async def may_see(
    directory: ExternalDirectory, internals: SynapseInternals, requester: str, target: str
) -> bool:
    """The one rule of who finds whom (directory searches and profile lookups): agents see
    everyone, an external only itself and the people it shares a room with."""
    if requester == target or not await directory.is_external(requester):
        return True
    their_rooms = await internals.rooms_of(requester)
    return not their_rooms.isdisjoint(await internals.rooms_of(target))
