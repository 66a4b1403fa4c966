# SPDX-License-Identifier: AGPL-3.0-or-later
"""Externals: who they are, and what happens when an invited one registers.

An external is an account registered with an address whose domain is not on the allowlist,
which only an invitation makes possible (see :mod:`.invitations` and the registration
policy).  The module records it when the address is bound to the new account, and from then
on the record, not the address, says who is external (:mod:`.external_store`).

Registration of an invited person (agent or external), through any client: when the verified
address lands on the account (``on_add_user_third_party_identifier``, inside ``/register``,
before the client gets its answer), the account is recorded as external if its domain is not
allowed, then every invitation pending for that address is completed: the person is invited
and joined to the room (see :meth:`.invitations.Invitations.complete_for`).

Externals are marked in their display name, ``Name [domain] (external)``
(:func:`appliance.addresses.identity.display_name_for`): every member of a room relies on it (the
console reads the record instead).  A renamed external gets the marker back
(``on_profile_update``), and a member event that would show an external without it is refused
by the room rules; :mod:`appliance.synapse_module.accounts.display_names` checks the rest of the
name (the tag, no forged or hidden marker) on every path.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from synapse.module_api import ModuleApi, ProfileInfo, UserID

from appliance.addresses.email_address import InvalidEmailAddress, parse_email
from appliance.addresses.identity import EXTERNAL_MARKER
from appliance.synapse_module.accounts.registration import AllowlistSource, decide
from appliance.synapse_module.externals.store import ExternalStore
from appliance.synapse_module.federation.peers import Network

logger = logging.getLogger(__name__)

# Agents known not to be external; externals are few and all kept.
MAX_CACHED_AGENTS = 100_000
# A local account this process has known for less than this is not remembered as an agent:
# with workers, another process may be registering it as an external right now (the record is
# written just after the account), and nothing would tell this process.
AGENT_CACHE_AFTER_MS = 60_000


def has_marker(display_name: str) -> bool:
    return display_name.endswith(EXTERNAL_MARKER)


def with_marker(display_name: str | None, user_id: str) -> str:
    name = (display_name or "").strip() or UserID.from_string(user_id).localpart
    return name if has_marker(name) else f"{name} {EXTERNAL_MARKER}"


class ExternalDirectory:
    """Answers "is this user external?" from the module's record, from memory when it can.

    Being external never changes once recorded, so externals are cached for good.  An agent
    is cached only once the account exists: the record is written while the account is being
    registered, so a user ID asked about before that must be asked again. With workers the
    registration may run on another process, so a local account is cached only once this
    process has seen it exist for AGENT_CACHE_AFTER_MS (its record, if any, is there by then).
    """

    def __init__(
        self, api: ModuleApi, store: ExternalStore, network: Network | None = None
    ) -> None:
        self._api = api
        self._store = store
        # Users of other servers are judged by their server's role in the federation.
        self._network = network
        self._externals: set[str] = set()
        self._agents: OrderedDict[str, None] = OrderedDict()
        self._first_seen: OrderedDict[str, int] = OrderedDict()  # local accounts, not cached yet

    async def is_external(self, user_id: str) -> bool:
        if self._network is not None and not self._api.is_mine(user_id):
            return self._network.judged_external(user_id)
        if user_id in self._externals:
            return True
        if user_id in self._agents:
            self._agents.move_to_end(user_id)
            return False
        if await self._store.is_external(user_id):
            self._externals.add(user_id)
            return True
        # Users of other servers never become externals here; local ones only once registered.
        if not self._api.is_mine(user_id) or await self._settled_account(user_id):
            self._agents[user_id] = None
            if len(self._agents) > MAX_CACHED_AGENTS:
                self._agents.popitem(last=False)
        return False

    async def _settled_account(self, user_id: str) -> bool:
        """Whether the local account exists and this process has known it long enough."""
        if not await self._api.check_user_exists(user_id):
            return False
        now = self._api.get_current_time_msec()
        first_seen = self._first_seen.setdefault(user_id, now)
        if now - first_seen < AGENT_CACHE_AFTER_MS:
            if len(self._first_seen) > MAX_CACHED_AGENTS:
                self._first_seen.popitem(last=False)
            return False
        del self._first_seen[user_id]
        return True

    def refused_among(self, user_ids: Iterable[str]) -> set[str]:
        """Users of servers this one does not federate with (never in any of its rooms)."""
        if self._network is None:
            return set()
        return {u for u in user_ids if not self._api.is_mine(u) and self._network.refuses(u)}

    async def externals_among(self, user_ids: Iterable[str]) -> set[str]:
        return {user_id for user_id in set(user_ids) if await self.is_external(user_id)}

    async def record(self, user_id: str, address: str) -> None:
        await self._store.record_external(user_id, address)
        self._agents.pop(user_id, None)
        self._externals.add(user_id)


class ExternalRegistration:
    """The callbacks that make a new account external and keep its marker."""

    def __init__(
        self,
        api: ModuleApi,
        directory: ExternalDirectory,
        allowlist: AllowlistSource,
        complete_invitations: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self._api = api
        self._directory = directory
        self._allowlist = allowlist
        # Invitations.complete_for(user_id, address), awaited once the account is recorded.
        self._complete_invitations = complete_invitations

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(
            on_add_user_third_party_identifier=self.on_address_bound,
            on_profile_update=self.on_profile_update,
        )

    async def on_address_bound(self, user_id: str, medium: str, address: str) -> None:
        """Synapse's ``on_add_user_third_party_identifier`` (third-party rules callback), run
        inside ``/register`` once the verified address is bound to the new account.

        Records an external, marks its name and completes the invitations waiting for the
        address; returns nothing (Synapse ignores the result).
        """
        if medium != "email":
            return
        try:
            email = parse_email(address)
        except InvalidEmailAddress:
            return  # the registration policy never lets such an address be bound
        if await self._is_registration_of_external(user_id, email.address):
            await self._directory.record(user_id, email.address)
            logger.info("%s registered as an external (%s)", user_id, email.domain)
            await self._ensure_marker(user_id)
        await self._complete_invitations(user_id, email.address)

    async def _is_registration_of_external(self, user_id: str, address: str) -> bool:
        # Only a first address makes an external: an agent's second address (which only an
        # administrator could add from another domain) does not.  An allowlist that cannot be
        # read right now counts as "not allowed": fail closed, towards fewer rights.
        if decide(address, self._allowlist()).allowed:
            return False
        return len(await self._api.get_threepids_for_user(user_id)) <= 1

    async def on_profile_update(
        self, user_id: str, new_profile: ProfileInfo, by_admin: bool, deactivation: bool
    ) -> None:
        """Synapse's ``on_profile_update`` (third-party rules callback): puts the external
        marker back on an external's new display name; returns nothing."""
        if deactivation or not await self._directory.is_external(user_id):
            return
        if new_profile.display_name is None or not has_marker(new_profile.display_name):
            await self._set_marked_name(user_id, new_profile.display_name)

    async def _ensure_marker(self, user_id: str) -> None:
        profile = await self._api.get_profile_for_user(UserID.from_string(user_id).localpart)
        if profile.display_name is None or not has_marker(profile.display_name):
            await self._set_marked_name(user_id, profile.display_name)

    async def _set_marked_name(self, user_id: str, display_name: str | None) -> None:
        # Through Synapse's profile handler: the marked name reaches the user directory and
        # every room the external is in (this callback runs again, and then has nothing to do).
        marked = with_marker(display_name, user_id)
        await self._api.set_displayname(UserID.from_string(user_id), marked)
        logger.info("display name of external %s set back to %r", user_id, marked)
