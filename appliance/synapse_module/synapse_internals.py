"""The three questions the module asks Synapse that its module API cannot answer.

Everything else goes through ``ModuleApi``.  These read Synapse's main data store directly,
through its own (cached) methods rather than its tables, so that a Synapse upgrade that changes
them fails loudly here, in one place, instead of deep inside a rule:

* the rooms a user is in: an external may find in the directory only the people they share a
  room with, and ``check_username_for_spam`` runs once per search result;
* the account an email address is bound to: the identity service's lookup, so that inviting
  the address of someone who has an account invites that account;
* the account an OpenID token belongs to: how a client proves who it is when it registers with
  the identity service (``/_matrix/identity/v2/account/register``).

And one rule it cannot place: who may read whose profile.  Synapse has no module callback for
profile lookups, only ``limit_profile_requests_to_users_who_share_rooms``, which would hold for
agents too; :meth:`SynapseInternals.check_profile_queries_with` adds the module's own check to
the method both profile servlets call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from synapse.module_api import ModuleApi, UserID


class SynapseInternals:
    def __init__(self, api: ModuleApi) -> None:
        # ModuleApi keeps its HomeServer private; Tchap's room access rules module reaches it
        # the same way for the same reason.
        self._store = api._hs.get_datastores().main  # noqa: SLF001
        self._profiles = api._hs.get_profile_handler()  # noqa: SLF001

    async def rooms_of(self, user_id: str) -> frozenset[str]:
        """The rooms the user has joined (cached by Synapse, invalidated on membership)."""
        return await self._store.get_rooms_for_user(user_id)

    async def user_of_email(self, address: str) -> str | None:
        """The local account the (canonical) address is bound to, if any."""
        return await self._store.get_user_id_by_threepid("email", address)

    async def user_of_openid_token(self, token: str, now_ms: int) -> str | None:
        """The user an unexpired OpenID token was issued to (by ``/openid/request_token``)."""
        return await self._store.get_user_id_for_open_id_token(token, now_ms)

    def check_profile_queries_with(self, check: Callable[[str, str], Awaitable[None]]) -> None:
        """Run ``check(requester, target)`` (which raises to refuse) after Synapse's own check on
        every authenticated profile lookup (``GET /profile/{user}[/{field}]``)."""
        synapse_check = self._profiles.check_profile_query_allowed

        async def check_profile_query_allowed(
            target_user: UserID, requester: UserID | None = None
        ) -> None:
            await synapse_check(target_user, requester)
            if requester is not None:
                await check(requester.to_string(), target_user.to_string())

        # The one patch of a Synapse method: its only callers are the two profile servlets.
        self._profiles.check_profile_query_allowed = check_profile_query_allowed  # type: ignore[method-assign]
