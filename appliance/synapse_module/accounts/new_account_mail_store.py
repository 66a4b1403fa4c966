# SPDX-License-Identifier: AGPL-3.0-or-later
"""The accounts that still wait for their email pusher, in Synapse's database.

``appliance_new_account_mail``: one row per account made while
``notifications.enabled_for_new_users`` is on, from its registration until its email pusher
is added (:mod:`.new_account_mail`).  A row is *claimed* by deleting it before the pusher is
added, so two processes, or the address-bound callback and the catch-up pass, never both add
it; a failed addition puts the row back.  An account whose row is gone never gets the pusher
from the module again: a person who then turns the mails off keeps them off.
"""

from __future__ import annotations

from synapse.module_api import LoggingTransaction, ModuleApi

from appliance.synapse_module.module_tables import ModuleTables

TABLES = ("appliance_new_account_mail",)
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS appliance_new_account_mail (
        user_id TEXT PRIMARY KEY,
        registered_ts BIGINT NOT NULL
    )""",
)
NOT_READY = "Mail for new accounts is starting; try again in a moment"


def _mark_txn(txn: LoggingTransaction, user_id: str, now_ms: int) -> None:
    txn.execute(
        "INSERT INTO appliance_new_account_mail (user_id, registered_ts) VALUES (?, ?)"
        " ON CONFLICT (user_id) DO NOTHING",
        (user_id, now_ms),
    )


def _claim_txn(txn: LoggingTransaction, user_id: str) -> int | None:
    """The account's registration time if its row was there (and is now gone), else None."""
    txn.execute(
        "SELECT registered_ts FROM appliance_new_account_mail WHERE user_id = ?", (user_id,)
    )
    row = txn.fetchone()
    if row is None:
        return None
    txn.execute("DELETE FROM appliance_new_account_mail WHERE user_id = ?", (user_id,))
    # Two claims at once: the DELETE of the second finds nothing (rowcount 0) and it loses.
    return int(row[0]) if txn.rowcount == 1 else None


class NewAccountMailStore:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._tables = ModuleTables(api, "appliance_new_account_mail", _SCHEMA)

    def start(self) -> None:
        self._tables.start()

    async def available(self) -> bool:
        """For the catch-up pass: whether the table is there yet (logged once if not)."""
        return await self._tables.available(TABLES)

    async def mark(self, user_id: str, now_ms: int) -> None:
        """Record a new account (again: nothing changes).

        Raises:
            SynapseError: 503 ``M_UNKNOWN`` while the table is not there yet."""
        await self._tables.ensure(TABLES, NOT_READY)
        await self._api.run_db_interaction(
            "appliance_new_account_mail_mark", _mark_txn, user_id, now_ms
        )

    async def claim(self, user_id: str) -> int | None:
        """Take the account's row: its registration time (ms) if this call won it, None if the
        account is not waiting (never marked, or already given its pusher)."""
        await self._tables.ensure(TABLES, NOT_READY)
        return await self._api.run_db_interaction(
            "appliance_new_account_mail_claim", _claim_txn, user_id
        )

    async def release(self, user_id: str, registered_ts: int) -> None:
        """Put a claimed row back (adding the pusher failed: the pass tries again)."""
        await self._api.run_db_interaction(
            "appliance_new_account_mail_release", _mark_txn, user_id, registered_ts
        )
