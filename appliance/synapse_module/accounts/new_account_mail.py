# SPDX-License-Identifier: AGPL-3.0-or-later
"""Mail about missed messages for every new account, whatever made it
(``notifications.enabled_for_new_users: true``).

Synapse's ``notif_for_new_users`` adds the email pusher only where its own code says so: the
email flow's registration (when it logs the new device in) and the Admin API's creation of a
user with its addresses in the same request.  An account made by single sign-on has its
address bound with no pusher, and so does one the Admin API creates first and gives an
address afterwards.  This concern closes the gap, for every way an account is made:

1. ``on_user_registration`` (account validity callback, run by every registration, on the
   process that registers) records the new account (:mod:`.new_account_mail_store`).  It runs
   before single sign-on or the Admin API binds the address, so it cannot add the pusher itself.
2. ``on_add_user_third_party_identifier`` (third-party rules callback, run where the address is
   bound) claims the record and adds Synapse's email pusher for that address, with the values
   Synapse's own registration uses (``synapse_internals.add_email_pusher``).  A single sign-on
   has its pusher before the client has its access token.
3. Pushers are written by the main process only.  Where an address is bound on a worker
   (Synapse lets single sign-on run there; the appliance's routes keep it, the Admin API and
   the email flow's binding on the main process), the record waits, and a pass on the main
   process (every :data:`PASS_MS`) adds the pushers of recorded accounts that have an address.
   The same pass retries an addition that failed.

4. An address replaced (the console's address change: the Admin API unbinds the old address,
   and Synapse deletes its email pusher, then binds the new one): an account that had the
   mails for the old address and no other email pusher is recorded in
   ``on_remove_user_third_party_identifier`` (Synapse calls it before it deletes the pusher),
   so the new address gets the pusher when it is bound, as in 2.  Whatever the setting: the
   person chose the mails, not the address.

Never twice: the record is claimed (deleted) before the pusher is added, and Synapse's own
addition in the email flow or the Admin API updates the same pusher (same user, app and
address) rather than adding a second.  Never without an address: a recorded account without
one waits, and gets its pusher when its first address is bound.  Never again: once the record
is gone, the module does not look at the account any more, so a person who removes the pusher
(Element's "Enable email notifications" turned off) keeps it off, through every sign-in.  The
pusher belongs to the account, not to a device (as the Admin API's): signing out of the first
device does not stop the mails.  Accounts made while the setting was off are never recorded,
nor are guests and an application service's users.
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi

from appliance.synapse_module.accounts.new_account_mail_store import NewAccountMailStore
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

# The catch-up pass: a look at the (usually empty) intersection of the records and the bound
# addresses, on the main process; the pusher of an address bound on the main process is added
# at once, without it.
PASS_MS = 5_000
PASS_BATCH = 100


class NewAccountMail:
    def __init__(
        self,
        api: ModuleApi,
        store: NewAccountMailStore,
        internals: SynapseInternals,
        *,
        for_new_users: bool,
    ):
        self._api = api
        self._store = store
        self._internals = internals
        self._for_new_users = for_new_users  # notifications.enabled_for_new_users
        self._main_process = api.worker_app is None

    def register(self) -> None:
        """Register the callbacks (every process) and the catch-up pass (the main process,
        whichever process runs background tasks: only the main process writes pushers)."""
        if self._for_new_users:
            self._api.register_account_validity_callbacks(
                on_user_registration=self.on_user_registration
            )
        self._api.register_third_party_rules_callbacks(
            on_add_user_third_party_identifier=self.on_address_bound,
            on_remove_user_third_party_identifier=self.on_address_removed,
            on_user_deactivation_status_changed=self.on_deactivation,
        )
        if self._main_process:
            self._api.looping_background_call(
                self.catch_up, PASS_MS, desc="appliance_new_account_mail", run_on_all_instances=True
            )

    async def on_user_registration(self, user_id: str) -> None:
        """Implements ``on_user_registration``: records the new account.  Returns nothing and
        never raises: the account exists already, and its registration must finish (a failure
        is logged: that account gets no pusher from the module)."""
        try:
            info = await self._api.get_userinfo_by_id(user_id)
            if info is not None and (info.is_guest or info.appservice_id is not None):
                return  # a guest binds no address; an application service's users are no people
            await self._store.mark(user_id, self._api.get_current_time_msec())
        except Exception:
            logger.exception("mail for new accounts: could not record %s", user_id)

    async def on_address_bound(self, user_id: str, medium: str, address: str) -> None:
        """Implements ``on_add_user_third_party_identifier``: the email pusher of a recorded
        account, for the address just bound (canonical, as Synapse stores it).  Returns
        nothing; on a worker, leaves the record to the main process's pass."""
        if medium != "email" or not self._main_process:
            return
        await self._add(user_id, address)

    async def on_address_removed(self, user_id: str, medium: str, address: str) -> None:
        """Implements ``on_remove_user_third_party_identifier``: an account losing the address
        of its only email pusher is recorded, so the next address bound gets the mails.
        Never raises: the address is unbound already (a failure is logged)."""
        if medium != "email":
            return
        try:
            pushers = await self._internals.email_pusher_addresses(user_id)
            if address in pushers and len(pushers) == 1:
                await self._store.mark(user_id, self._api.get_current_time_msec())
        except Exception:
            logger.exception("mail for new accounts: could not record %s's address", user_id)

    async def on_deactivation(self, user_id: str, deactivated: bool, by_admin: bool) -> None:
        """Implements ``on_user_deactivation_status_changed``: a deactivation unbinds every
        address first (which records an account that had the mails, as for a change of
        address), then calls this: the record goes, so an account reactivated later gets no
        mails it did not ask for again."""
        if deactivated:
            await self._store.claim(user_id)

    async def catch_up(self) -> None:
        """The pass: the pushers of recorded accounts that have an address bound."""
        if not await self._store.available():
            return
        for user_id, address in await self._internals.new_accounts_with_email(PASS_BATCH):
            await self._add(user_id, address)

    async def _add(self, user_id: str, address: str) -> None:
        registered_ts = await self._store.claim(user_id)
        if registered_ts is None:
            return  # not a new account, or its pusher was added already
        try:
            await self._internals.add_email_pusher(user_id, address)
        except Exception:
            logger.exception("mail for new accounts: adding the pusher of %s failed", user_id)
            await self._store.release(user_id, registered_ts)
            return
        waited_ms = self._api.get_current_time_msec() - registered_ts
        logger.info("mail for new accounts: %s gets its email pusher (%d ms)", user_id, waited_ms)
