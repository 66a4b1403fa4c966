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
"""

from __future__ import annotations

from synapse.module_api import ModuleApi


class SynapseInternals:
    def __init__(self, api: ModuleApi) -> None:
        # ModuleApi keeps its HomeServer private; Tchap's room access rules module reaches it
        # the same way for the same reason.
        self._store = api._hs.get_datastores().main  # noqa: SLF001

    async def rooms_of(self, user_id: str) -> frozenset[str]:
        """The rooms the user has joined (cached by Synapse, invalidated on membership)."""
        return await self._store.get_rooms_for_user(user_id)

    async def user_of_email(self, address: str) -> str | None:
        """The local account the (canonical) address is bound to, if any."""
        return await self._store.get_user_id_by_threepid("email", address)

    async def user_of_openid_token(self, token: str, now_ms: int) -> str | None:
        """The user an unexpired OpenID token was issued to (by ``/openid/request_token``)."""
        return await self._store.get_user_id_for_open_id_token(token, now_ms)
