# SPDX-License-Identifier: AGPL-3.0-or-later
"""Accounts expire unless renewed (as Tchap's email account validity).

* Registration gives an account an expiry (``period`` from now); switching validity on gives
  every existing account one too, counted from that day, so that nobody expires at once.
* Synapse asks :meth:`AccountValidity.is_user_expired` on every authenticated request and
  answers an expired account ``403 ORG_MATRIX_EXPIRED_ACCOUNT`` itself.
* Renewal mails (French and English, :mod:`.validity_mail`) go out before expiry, one per
  reminder; each carries a new single-use link that renews the account without signing in
  (:mod:`.validity_resources`).  Sending and deactivating run on the process that runs
  background tasks, and each mail or deactivation is claimed in the database first
  (:mod:`.validity_store`), so no two processes ever send the same mail.
* ``deactivate_after`` past expiry, the account is deactivated (Synapse's own deactivation),
  and the log says so.
* Signing in through single sign-on renews: the identity provider has just vouched that the
  person still has an account at the administration.  A password sign-in does not (it says
  nothing about whether the person still works there; the renewal link, sent to the work
  address, does).
* Never expire: accounts matching ``exempt``, the console's service account, the server
  notices user.
"""

from __future__ import annotations

import logging
import secrets

from synapse.module_api import ModuleApi

from appliance.operations.service_account import SERVICE_LOCALPART
from appliance.synapse_module.accounts.validity_config import ValidityConfig
from appliance.synapse_module.accounts.validity_mail import RenewalMail
from appliance.synapse_module.accounts.validity_schedule import MS, Schedule
from appliance.synapse_module.accounts.validity_store import Validity, ValidityStore
from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

SSO_LOGIN = "m.login.sso"


class AccountValidity:
    def __init__(
        self,
        api: ModuleApi,
        config: ValidityConfig,
        store: ValidityStore,
        mail: RenewalMail,
        internals: SynapseInternals,
    ) -> None:
        self._api = api
        self._config = config
        self.schedule = Schedule(config)
        self.store = store
        self._mail = mail
        self._internals = internals
        always = {f"@{SERVICE_LOCALPART}:{api.server_name}", internals.server_notices_user()}
        self._always_exempt = frozenset(user for user in always if user)

    def register(self) -> None:
        """Register the account validity callbacks (every process) and the periodic check
        (only the process that runs background tasks)."""
        self._api.register_account_validity_callbacks(
            is_user_expired=self.is_user_expired,
            on_user_registration=self.on_user_registration,
            on_user_login=self.on_user_login,
        )
        self._api.looping_background_call(
            self.check, self._config.check_seconds * MS, desc="appliance_account_validity"
        )

    def is_exempt(self, user_id: str) -> bool:
        return user_id in self._always_exempt or any(
            pattern.fullmatch(user_id) for pattern in self._config.exempt
        )

    def now_ms(self) -> int:
        return self._api.get_current_time_msec()

    async def is_user_expired(self, user_id: str) -> bool | None:
        """Implements ``is_user_expired``.

        Returns:
            True past the account's expiry; False before it, for an exempt account, or for
            one with no expiry yet (the next check gives it one).

        Raises:
            SynapseError: 503 ``M_UNKNOWN`` while the module's tables are not there yet (a
                worker started before the main process created them): fail closed.
        """
        if self.is_exempt(user_id):
            return False
        expiration = await self.store.expiration_of(user_id)
        return expiration is not None and self.now_ms() >= expiration

    async def on_user_registration(self, user_id: str) -> None:
        """Implements ``on_user_registration`` (every way of registering, the Admin API's
        included): the new account's first period."""
        if self.is_exempt(user_id):
            return
        now = self.now_ms()
        await self.store.start_period(
            user_id, self.schedule.expiry_from(now), event="registered", actor=None, now_ms=now
        )

    async def on_user_login(
        self, user_id: str, auth_provider_type: str | None, auth_provider_id: str | None
    ) -> None:
        """Implements ``on_user_login``: a single sign-on renews (see the module's docstring)."""
        if auth_provider_type != SSO_LOGIN or self.is_exempt(user_id):
            return
        await self.renew(user_id, event=f"renewed by sign-in ({auth_provider_id})", actor=user_id)

    async def renew(self, user_id: str, *, event: str, actor: str | None) -> int:
        """A new period from now; the new expiry."""
        now = self.now_ms()
        expiration = self.schedule.expiry_from(now)
        await self.store.start_period(user_id, expiration, event=event, actor=actor, now_ms=now)
        logger.info("account validity: %s %s, until %d", user_id, event, expiration)
        return expiration

    async def set_expiry(self, user_id: str, expiration: int, *, event: str, actor: str) -> None:
        await self.store.start_period(
            user_id, expiration, event=event, actor=actor, now_ms=self.now_ms()
        )
        logger.info("account validity: %s %s by %s, until %d", user_id, event, actor, expiration)

    async def renew_by_link(self, token: str) -> tuple[str, int] | None:
        period_ms = self._config.period_seconds * MS
        renewed = await self.store.renew_by_token(token, period_ms, self.now_ms())
        if renewed is not None:
            logger.info("account validity: %s renewed by link, until %d", *renewed)
        return renewed

    # --- the periodic check (one process) -------------------------------------------------

    async def check(self) -> None:
        """Give existing accounts an expiry, send the renewal mails due, deactivate accounts
        long expired.  Safe to run on several processes at once (claims)."""
        if not await self.store.available():
            return
        now = self.now_ms()
        added = await self.store.add_missing(self.is_exempt, self.schedule.expiry_from(now), now)
        if added:
            logger.info("account validity: %d existing accounts now expire in a period", added)
        await self._send_reminders(now)
        await self._deactivate_expired(now)

    async def _send_reminders(self, now: int) -> None:
        reminders = self._config.reminders_seconds
        if not reminders:
            return
        candidates = await self.store.reminder_candidates(reminders[0] * MS, len(reminders), now)
        for row in candidates:
            if self.is_exempt(row.user_id):
                continue
            due = self.schedule.reminders_due(row.expiration_ts, now)
            if due > row.reminders_sent:
                await self._remind(row, due, now)

    async def _remind(self, row: Validity, due: int, now: int) -> None:
        token = secrets.token_urlsafe(32)
        link_expiry = self.schedule.link_expiry_ms(row.expiration_ts)
        if not await self.store.claim_reminder(row, due, token, link_expiry, now):
            return  # another process sent it, or the account was renewed meanwhile
        try:
            sent = await self._mail.send(row.user_id, row.expiration_ts, token)
        except Exception:
            logger.exception("account validity: renewal mail to %s failed", row.user_id)
            await self.store.release_reminder(row, due)
            return
        if not sent:
            logger.warning("account validity: %s has no email address to mail", row.user_id)

    async def _deactivate_expired(self, now: int) -> None:
        after = self._config.deactivate_after_seconds
        if after is None:
            return
        for row in await self.store.deactivation_candidates(after * MS, now):
            if self.is_exempt(row.user_id) or not await self.store.claim_deactivation(row, now):
                continue
            try:
                await self._internals.deactivate(row.user_id)
            except Exception:
                logger.exception("account validity: deactivating %s failed", row.user_id)
                await self.store.release_deactivation(row)
                continue
            logger.warning(
                "account validity: %s deactivated, expired since %d", row.user_id, row.expiration_ts
            )
