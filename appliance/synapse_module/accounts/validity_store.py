# SPDX-License-Identifier: AGPL-3.0-or-later
"""The account validity tables in Synapse's database.

* ``appliance_account_validity``: one row per account that can expire: its expiry, how many
  renewal mails of the current period went out (``reminders_sent``), the SHA-256 of the
  renewal link's token (never the token itself: a copy of the database renews nobody) and
  until when it works, and when the account was deactivated for having expired.
* ``appliance_account_validity_log``: what happened to an account's validity (registered,
  renewed and how, mailed, deactivated), for the console.

Every process reads the expiry (Synapse asks on each authenticated request, through a cache
that :meth:`ModuleApi.invalidate_cache` clears on every process).  Mails and deactivations are
*claimed* by a conditional update before anything is sent: two processes (or two runs of the
check) that see the same reminder due cannot both win it, so nobody is mailed twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from synapse.module_api import LoggingTransaction, ModuleApi, cached

from appliance.synapse_module.module_tables import ModuleTables
from appliance.synapse_module.synapse_internals import (
    cache_owner_clock,
    users_without_validity_txn,
)

_TABLES = ("appliance_account_validity", "appliance_account_validity_log")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS appliance_account_validity (
        user_id TEXT PRIMARY KEY,
        expiration_ts BIGINT NOT NULL,
        reminders_sent INTEGER NOT NULL,
        token_sha256 TEXT,
        token_expires_ts BIGINT,
        deactivated_ts BIGINT
    )""",
    """CREATE INDEX IF NOT EXISTS appliance_account_validity_expiration
        ON appliance_account_validity (expiration_ts)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS appliance_account_validity_token
        ON appliance_account_validity (token_sha256)""",
    """CREATE TABLE IF NOT EXISTS appliance_account_validity_log (
        user_id TEXT NOT NULL,
        event TEXT NOT NULL,            -- registered, renewed, reminded, deactivated, ...
        actor TEXT,                     -- who did it (an admin, the user, null: the server)
        expiration_ts BIGINT,           -- the expiry after the event
        ts BIGINT NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS appliance_account_validity_log_user
        ON appliance_account_validity_log (user_id, ts)""",
)
NOT_READY = "Account validity is starting; try again in a moment"
_COLUMNS = "user_id, expiration_ts, reminders_sent, deactivated_ts"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Validity:
    user_id: str
    expiration_ts: int
    reminders_sent: int
    deactivated_ts: int | None

    def as_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LogEntry:
    user_id: str
    event: str
    actor: str | None
    expiration_ts: int | None
    ts: int

    def as_json(self) -> dict:
        return dict(self.__dict__)


class ValidityStore:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._tables = ModuleTables(api, "appliance_account_validity", _SCHEMA)
        # What Synapse's @cached needs of the object that owns the cache.
        self.server_name = api.server_name
        self.clock = cache_owner_clock(api)
        # Cleared on every process by invalidate_cache (through Synapse's replication).
        api.register_cached_function(self._cached_expiration_of)

    def start(self) -> None:
        self._tables.start()

    async def _ready(self) -> None:
        await self._tables.ensure(_TABLES, NOT_READY)

    async def available(self) -> bool:
        """For the periodic check: whether the tables are there yet (logged once if not)."""
        return await self._tables.available(_TABLES)

    async def expiration_of(self, user_id: str) -> int | None:
        """The account's expiry (ms), None if it has none (registered before, or exempt);
        cached on every process."""
        # Typed apart: mypy cannot see through Synapse's cache descriptor without its plugin.
        cached_read: Any = self._cached_expiration_of
        return await cached_read(user_id)

    @cached()
    async def _cached_expiration_of(self, user_id: str) -> int | None:
        await self._ready()
        return await self._api.run_db_interaction(
            "appliance_validity_expiration_of", _expiration_of_txn, user_id
        )

    async def _forget(self, user_id: str) -> None:
        await self._api.invalidate_cache(self._cached_expiration_of, (user_id,))

    async def start_period(
        self, user_id: str, expiration_ts: int, *, event: str, actor: str | None, now_ms: int
    ) -> None:
        """Set the account's expiry and start a new period: no reminder sent, no link, not
        deactivated (an account an admin reactivated is valid again once renewed)."""
        await self._ready()
        await self._api.run_db_interaction(
            "appliance_validity_start_period",
            _start_period_txn,
            user_id,
            expiration_ts,
            event,
            actor,
            now_ms,
        )
        await self._forget(user_id)

    async def add_missing(self, is_exempt, expiration_ts: int, now_ms: int) -> int:
        """Give an expiry to every active account that has none (accounts made before validity
        was switched on); return how many got one."""
        added = 0
        while True:
            batch = await self._api.run_db_interaction(
                "appliance_validity_without", users_without_validity_txn, 500
            )
            wanted = [user_id for user_id in batch if not is_exempt(user_id)]
            for user_id in wanted:
                await self.start_period(
                    user_id, expiration_ts, event="started", actor=None, now_ms=now_ms
                )
            added += len(wanted)
            # Exempt accounts stay without a row: a batch of them only would come back again.
            if len(batch) < 500 or not wanted:
                return added

    async def reminder_candidates(self, longest_ms: int, count: int, now_ms: int) -> list[Validity]:
        """Active accounts that expire within longest_ms and were sent fewer than count mails."""
        return await self._api.run_db_interaction(
            "appliance_validity_reminder_candidates",
            _select_txn,
            "deactivated_ts IS NULL AND reminders_sent < ? AND expiration_ts <= ?",
            (count, now_ms + longest_ms),
        )

    async def claim_reminder(
        self, row: Validity, due: int, token: str, token_expires_ts: int, now_ms: int
    ) -> bool:
        """Mark the due-th reminder sent, with its new link, unless another process (or
        a renewal) got there first; True: the caller sends it."""
        return await self._api.run_db_interaction(
            "appliance_validity_claim_reminder",
            _claim_reminder_txn,
            row,
            due,
            token_digest(token),
            token_expires_ts,
            now_ms,
        )

    async def release_reminder(self, row: Validity, due: int) -> None:
        """The mail could not be sent: the next check tries again."""
        await self._api.run_db_interaction(
            "appliance_validity_release_reminder", _release_reminder_txn, row, due
        )

    async def deactivation_candidates(self, after_ms: int, now_ms: int) -> list[Validity]:
        return await self._api.run_db_interaction(
            "appliance_validity_deactivation_candidates",
            _select_txn,
            "deactivated_ts IS NULL AND expiration_ts <= ?",
            (now_ms - after_ms,),
        )

    async def claim_deactivation(self, row: Validity, now_ms: int) -> bool:
        return await self._api.run_db_interaction(
            "appliance_validity_claim_deactivation", _claim_deactivation_txn, row, now_ms
        )

    async def release_deactivation(self, row: Validity) -> None:
        await self._api.run_db_interaction(
            "appliance_validity_release_deactivation", _release_deactivation_txn, row
        )

    async def renew_by_token(
        self, token: str, period_ms: int, now_ms: int
    ) -> tuple[str, int] | None:
        """Renew the account whose link this is (once: the token is then forgotten);
        (user ID, new expiry), or None for an unknown, used or expired link."""
        await self._ready()
        renewed = await self._api.run_db_interaction(
            "appliance_validity_renew_by_token",
            _renew_by_token_txn,
            token_digest(token),
            period_ms,
            now_ms,
        )
        if renewed is not None:
            await self._forget(renewed[0])
        return renewed

    async def link_is_valid(self, token: str, now_ms: int) -> bool:
        await self._ready()
        return await self._api.run_db_interaction(
            "appliance_validity_link_valid", _link_valid_txn, token_digest(token), now_ms
        )

    async def of_users(self, user_ids: list[str]) -> list[Validity]:
        await self._ready()
        marks = ", ".join("?" for _ in user_ids)
        return await self._api.run_db_interaction(
            "appliance_validity_of_users", _select_txn, f"user_id IN ({marks})", tuple(user_ids)
        )

    async def expiring_before(self, until_ms: int, limit: int) -> list[Validity]:
        """Active accounts that expire (or expired) before until_ms, soonest first."""
        await self._ready()
        return await self._api.run_db_interaction(
            "appliance_validity_expiring",
            _select_txn,
            "deactivated_ts IS NULL AND expiration_ts < ? ORDER BY expiration_ts LIMIT ?",
            (until_ms, limit),
        )

    async def log_of(self, user_id: str, limit: int) -> list[LogEntry]:
        await self._ready()
        return await self._api.run_db_interaction(
            "appliance_validity_log_of", _log_of_txn, user_id, limit
        )

    async def record(self, user_id: str, event: str, actor: str | None, now_ms: int) -> None:
        await self._api.run_db_interaction(
            "appliance_validity_record", _log_txn, user_id, event, actor, None, now_ms
        )


def _expiration_of_txn(txn: LoggingTransaction, user_id: str) -> int | None:
    txn.execute(
        "SELECT expiration_ts FROM appliance_account_validity WHERE user_id = ?", (user_id,)
    )
    row = txn.fetchone()
    return int(row[0]) if row else None


def _log_txn(
    txn: LoggingTransaction,
    user_id: str,
    event: str,
    actor: str | None,
    expiration_ts: int | None,
    now_ms: int,
) -> None:
    txn.execute(
        "INSERT INTO appliance_account_validity_log (user_id, event, actor, expiration_ts, ts)"
        " VALUES (?, ?, ?, ?, ?)",
        (user_id, event, actor, expiration_ts, now_ms),
    )


def _start_period_txn(
    txn: LoggingTransaction,
    user_id: str,
    expiration_ts: int,
    event: str,
    actor: str | None,
    now_ms: int,
) -> None:
    txn.execute(
        "INSERT INTO appliance_account_validity"
        " (user_id, expiration_ts, reminders_sent, token_sha256, token_expires_ts, deactivated_ts)"
        " VALUES (?, ?, 0, NULL, NULL, NULL)"
        " ON CONFLICT (user_id) DO UPDATE SET expiration_ts = excluded.expiration_ts,"
        " reminders_sent = 0, token_sha256 = NULL, token_expires_ts = NULL,"
        " deactivated_ts = NULL",
        (user_id, expiration_ts),
    )
    _log_txn(txn, user_id, event, actor, expiration_ts, now_ms)


def _select_txn(txn: LoggingTransaction, where: str, args: tuple) -> list[Validity]:
    txn.execute(f"SELECT {_COLUMNS} FROM appliance_account_validity WHERE {where}", args)
    return [Validity(*row) for row in txn.fetchall()]


def _claim_reminder_txn(
    txn: LoggingTransaction,
    row: Validity,
    due: int,
    digest: str,
    token_expires_ts: int,
    now_ms: int,
) -> bool:
    txn.execute(
        "UPDATE appliance_account_validity SET reminders_sent = ?, token_sha256 = ?,"
        " token_expires_ts = ? WHERE user_id = ? AND reminders_sent = ? AND expiration_ts = ?"
        " AND deactivated_ts IS NULL",
        (due, digest, token_expires_ts, row.user_id, row.reminders_sent, row.expiration_ts),
    )
    if txn.rowcount != 1:
        return False
    _log_txn(txn, row.user_id, f"reminded {due}", None, row.expiration_ts, now_ms)
    return True


def _release_reminder_txn(txn: LoggingTransaction, row: Validity, due: int) -> None:
    txn.execute(
        "UPDATE appliance_account_validity SET reminders_sent = ?"
        " WHERE user_id = ? AND reminders_sent = ? AND expiration_ts = ?",
        (row.reminders_sent, row.user_id, due, row.expiration_ts),
    )


def _claim_deactivation_txn(txn: LoggingTransaction, row: Validity, now_ms: int) -> bool:
    txn.execute(
        "UPDATE appliance_account_validity SET deactivated_ts = ?, token_sha256 = NULL,"
        " token_expires_ts = NULL WHERE user_id = ? AND expiration_ts = ?"
        " AND deactivated_ts IS NULL",
        (now_ms, row.user_id, row.expiration_ts),
    )
    if txn.rowcount != 1:
        return False
    _log_txn(txn, row.user_id, "deactivated", None, row.expiration_ts, now_ms)
    return True


def _release_deactivation_txn(txn: LoggingTransaction, row: Validity) -> None:
    txn.execute(
        "UPDATE appliance_account_validity SET deactivated_ts = NULL"
        " WHERE user_id = ? AND expiration_ts = ?",
        (row.user_id, row.expiration_ts),
    )
    txn.execute(
        "DELETE FROM appliance_account_validity_log WHERE user_id = ? AND event = 'deactivated'"
        " AND expiration_ts = ?",
        (row.user_id, row.expiration_ts),
    )


def _link_valid_txn(txn: LoggingTransaction, digest: str, now_ms: int) -> bool:
    txn.execute(
        "SELECT 1 FROM appliance_account_validity WHERE token_sha256 = ?"
        " AND token_expires_ts > ? AND deactivated_ts IS NULL",
        (digest, now_ms),
    )
    return txn.fetchone() is not None


def _renew_by_token_txn(
    txn: LoggingTransaction, digest: str, period_ms: int, now_ms: int
) -> tuple[str, int] | None:
    txn.execute(
        "SELECT user_id FROM appliance_account_validity WHERE token_sha256 = ?"
        " AND token_expires_ts > ? AND deactivated_ts IS NULL",
        (digest, now_ms),
    )
    row = txn.fetchone()
    if row is None:
        return None
    user_id, expiration_ts = row[0], now_ms + period_ms
    # Conditional on the token: of two clicks at once, one renews and the other finds nothing.
    txn.execute(
        "UPDATE appliance_account_validity SET expiration_ts = ?, reminders_sent = 0,"
        " token_sha256 = NULL, token_expires_ts = NULL WHERE user_id = ? AND token_sha256 = ?",
        (expiration_ts, user_id, digest),
    )
    if txn.rowcount != 1:
        return None
    _log_txn(txn, user_id, "renewed by link", user_id, expiration_ts, now_ms)
    return user_id, expiration_ts


def _log_of_txn(txn: LoggingTransaction, user_id: str, limit: int) -> list[LogEntry]:
    txn.execute(
        "SELECT user_id, event, actor, expiration_ts, ts FROM appliance_account_validity_log"
        " WHERE user_id = ? ORDER BY ts DESC LIMIT ?",
        (user_id, limit),
    )
    return [LogEntry(*row) for row in txn.fetchall()]
