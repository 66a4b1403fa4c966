# SPDX-License-Identifier: AGPL-3.0-or-later
"""The module's record of externals and of the email invitations waiting for their person.

Two tables in Synapse's database, beside its own (one backup holds everything):

* ``appliance_externals``: every account registered with an address whose domain is not on
  the allowlist, recorded when the account is created.  Who is external is decided there,
  once: a domain added to the allowlist later does not turn an external into an agent, and a
  domain removed does not turn agents into externals.
* ``appliance_external_invitations``: one row per email invitation.  ``token`` is the state
  key of the room's ``m.room.third_party_invite`` event; the mailed link carries ``link_id``
  instead, since every member of the room can read the token.  An invitation is pending until
  someone registers (or adds) its address: ``completed_at`` then says when, ``user_id`` who,
  and ``outcome`` how it went.  Its rows are also the count of invitation mails sent: the
  limits per inviter and per address (:class:`Quota`) are counted there, in the same database
  for every Synapse process, never in one process's memory.
* ``appliance_invitation_quota_keys``: one row per inviter and per invited address, which
  :meth:`ExternalStore.add_within` locks before it counts and adds: of two invitations that
  would both take the last place, on any process, one waits for the other and counts it.

SQL uses ``?`` placeholders only; Synapse converts them for PostgreSQL.

The main process creates the tables at start-up (:class:`.ModuleTables`).  A process that finds
them missing (a worker started first, or their creation failed) answers 503 ``M_UNKNOWN``
(:data:`NOT_READY`) until they are there, rather than failing on a missing table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from synapse.module_api import LoggingTransaction, ModuleApi

from appliance.synapse_module.module_tables import ModuleTables

_TABLES = (
    "appliance_externals",
    "appliance_external_invitations",
    "appliance_invitation_quota_keys",
)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS appliance_externals (
        user_id TEXT NOT NULL PRIMARY KEY,
        address TEXT NOT NULL,
        registered_at BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS appliance_external_invitations (
        token TEXT NOT NULL PRIMARY KEY,
        link_id TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL,
        room_id TEXT NOT NULL,
        inviter TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        completed_at BIGINT,
        user_id TEXT,
        outcome TEXT
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS appliance_external_invitations_address
        ON appliance_external_invitations (address)
    """,
    # The console's list: newest first, by keyset.
    """
    CREATE INDEX IF NOT EXISTS appliance_external_invitations_created
        ON appliance_external_invitations (created_at, token)
    """,
    # The limits: an inviter's invitations of the last day.
    """
    CREATE INDEX IF NOT EXISTS appliance_external_invitations_inviter
        ON appliance_external_invitations (inviter, created_at)
    """,
    """
    CREATE TABLE IF NOT EXISTS appliance_invitation_quota_keys (
        quota_key TEXT NOT NULL PRIMARY KEY
    )
    """,
)

T = TypeVar("T")

NOT_READY = "Rooms and invitations are starting up on this server: try again in a moment"

_INVITATION_COLUMNS = (
    "token, link_id, address, room_id, inviter, created_at, completed_at, user_id, outcome"
)


@dataclass(frozen=True)
class Invitation:
    token: str
    link_id: str
    address: str  # canonical (appliance.addresses.email_address.parse_email)
    room_id: str
    inviter: str
    created_at: int  # milliseconds since the epoch
    completed_at: int | None = None
    user_id: str | None = None
    outcome: str | None = None

    @property
    def pending(self) -> bool:
        return self.completed_at is None


@dataclass(frozen=True)
class Quota:
    """At most `most` invitations whose `column` ("inviter" or "address") is `value`, created
    in any `window_ms` (a sliding window, so that no burst fits across a boundary)."""

    column: str
    value: str
    most: int
    window_ms: int

    @property
    def key(self) -> str:
        return f"{self.column}:{self.value}"


@dataclass(frozen=True)
class Exhausted:
    """The quota that refuses one more invitation, and when it frees a place."""

    quota: Quota
    retry_after_ms: int


_COUNTED_COLUMNS = {"inviter", "address"}  # the only names ever put into the SQL


def _invitation(row: tuple) -> Invitation:
    token, link_id, address, room_id, inviter, created_at, completed_at, user_id, outcome = row
    return Invitation(
        token,
        link_id,
        address,
        room_id,
        inviter,
        int(created_at),
        None if completed_at is None else int(completed_at),
        user_id,
        outcome,
    )


def _record_external_txn(txn: LoggingTransaction, user_id: str, address: str, now_ms: int) -> None:
    txn.execute(
        "INSERT INTO appliance_externals (user_id, address, registered_at) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id) DO NOTHING",
        (user_id, address, now_ms),
    )


def _is_external_txn(txn: LoggingTransaction, user_id: str) -> bool:
    txn.execute("SELECT 1 FROM appliance_externals WHERE user_id = ?", (user_id,))
    return txn.fetchone() is not None


def _add_invitation_txn(txn: LoggingTransaction, invitation: Invitation) -> None:
    txn.execute(
        "INSERT INTO appliance_external_invitations"
        " (token, link_id, address, room_id, inviter, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            invitation.token,
            invitation.link_id,
            invitation.address,
            invitation.room_id,
            invitation.inviter,
            invitation.created_at,
        ),
    )


def _exhausted_txn(
    txn: LoggingTransaction, quotas: tuple[Quota, ...], now_ms: int
) -> Exhausted | None:
    """The first quota with no place left at now_ms, or None."""
    for quota in quotas:
        if quota.column not in _COUNTED_COLUMNS:
            raise ValueError(f"not a counted column: {quota.column}")
        # The newest `most` rows of the window: the oldest of them leaves it first, and from
        # then on one more fits.
        txn.execute(
            f"SELECT created_at FROM appliance_external_invitations WHERE {quota.column} = ?"
            " AND created_at > ? ORDER BY created_at DESC LIMIT ?",
            (quota.value, now_ms - quota.window_ms, quota.most),
        )
        times = [int(row[0]) for row in txn.fetchall()]
        if len(times) >= quota.most:
            return Exhausted(quota, max(1, min(times) + quota.window_ms - now_ms))
    return None


def _add_within_txn(
    txn: LoggingTransaction, invitation: Invitation, quotas: tuple[Quota, ...]
) -> Invitation | Exhausted:
    if txn.database_engine.module.__name__ != "sqlite3":
        # PostgreSQL: Synapse's transactions are REPEATABLE READ, whose snapshot is older than
        # the wait for a lock row, so every waiter failed to serialize and ran again (at most
        # five times: 40 requests at once left some with a 500). READ COMMITTED reads after the
        # wait: the count includes what the holder added. SQLite runs one transaction at a time.
        txn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
    # Locks first, the counts after: an invitation that holds the same key is committed, and
    # counted, before this one reads.
    for quota in quotas:
        txn.execute(
            "INSERT INTO appliance_invitation_quota_keys (quota_key) VALUES (?)"
            " ON CONFLICT (quota_key) DO UPDATE SET quota_key = excluded.quota_key",
            (quota.key,),
        )
    pending = _select_invitations_txn(
        txn,
        "room_id = ? AND address = ? AND completed_at IS NULL",
        (invitation.room_id, invitation.address),
    )
    if pending:
        return pending[0]
    exhausted = _exhausted_txn(txn, quotas, invitation.created_at)
    if exhausted is not None:
        return exhausted
    _add_invitation_txn(txn, invitation)
    return invitation


def _delete_invitation_txn(txn: LoggingTransaction, token: str) -> None:
    txn.execute("DELETE FROM appliance_external_invitations WHERE token = ?", (token,))


def _select_invitations_txn(txn: LoggingTransaction, where: str, args: tuple) -> list[Invitation]:
    txn.execute(
        f"SELECT {_INVITATION_COLUMNS} FROM appliance_external_invitations WHERE {where}"
        " ORDER BY created_at, token",
        args,
    )
    return [_invitation(row) for row in txn.fetchall()]


def _select_page_txn(
    txn: LoggingTransaction, pending_only: bool, before: tuple[int, str] | None, limit: int
) -> list[Invitation]:
    """Up to limit invitations, newest first, older than before (created_at, token)."""
    conditions, args = [], []
    if pending_only:
        conditions.append("completed_at IS NULL")
    if before is not None:
        conditions.append("(created_at < ? OR (created_at = ? AND token < ?))")
        args += [before[0], before[0], before[1]]
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    txn.execute(
        f"SELECT {_INVITATION_COLUMNS} FROM appliance_external_invitations{where}"
        " ORDER BY created_at DESC, token DESC LIMIT ?",
        (*args, limit),
    )
    return [_invitation(row) for row in txn.fetchall()]


def _complete_txn(
    txn: LoggingTransaction, token: str, user_id: str | None, outcome: str, now_ms: int
) -> int:
    txn.execute(
        "UPDATE appliance_external_invitations SET completed_at = ?, user_id = ?, outcome = ?"
        " WHERE token = ? AND completed_at IS NULL",
        (now_ms, user_id, outcome, token),
    )
    return txn.rowcount


def _set_outcome_txn(txn: LoggingTransaction, token: str, outcome: str) -> None:
    txn.execute(
        "UPDATE appliance_external_invitations SET outcome = ? WHERE token = ?", (outcome, token)
    )


class ExternalStore:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._tables = ModuleTables(api, "appliance_externals", _SCHEMA)

    def start(self) -> None:
        self._tables.start()

    async def _run(self, desc: str, func: Callable[..., T], *args: object) -> T:
        await self._tables.ensure(_TABLES, NOT_READY)
        return await self._api.run_db_interaction(desc, func, *args)

    async def record_external(self, user_id: str, address: str) -> None:
        now = self._api.get_current_time_msec()
        await self._run("appliance_record_external", _record_external_txn, user_id, address, now)

    async def is_external(self, user_id: str) -> bool:
        return await self._run("appliance_is_external", _is_external_txn, user_id)

    async def exhausted(self, quotas: tuple[Quota, ...]) -> Exhausted | None:
        """The first of these quotas with no place left now, or None (an early answer: only
        :meth:`add_within` decides)."""
        now = self._api.get_current_time_msec()
        return await self._run("appliance_invitation_quotas", _exhausted_txn, quotas, now)

    async def add_within(
        self, invitation: Invitation, quotas: tuple[Quota, ...]
    ) -> Invitation | Exhausted:
        """Add the invitation if every quota has a place, as one transaction: the invitation
        added, the one still pending for the same room and address (nothing added), or the
        quota that refuses it."""
        return await self._run(
            "appliance_add_invitation_within", _add_within_txn, invitation, quotas
        )

    async def pending_in_room(self, address: str, room_id: str) -> list[Invitation]:
        return await self._run(
            "appliance_pending_invitations_in_room",
            _select_invitations_txn,
            "address = ? AND room_id = ? AND completed_at IS NULL",
            (address, room_id),
        )

    async def delete_invitation(self, token: str) -> None:
        await self._run("appliance_delete_invitation", _delete_invitation_txn, token)

    async def pending_for(self, address: str) -> list[Invitation]:
        return await self._run(
            "appliance_pending_invitations",
            _select_invitations_txn,
            "address = ? AND completed_at IS NULL",
            (address,),
        )

    async def by_link(self, link_id: str) -> Invitation | None:
        found = await self._run(
            "appliance_invitation_by_link", _select_invitations_txn, "link_id = ?", (link_id,)
        )
        return found[0] if found else None

    async def by_token(self, token: str) -> Invitation | None:
        found = await self._run(
            "appliance_invitation_by_token", _select_invitations_txn, "token = ?", (token,)
        )
        return found[0] if found else None

    async def page(
        self, pending_only: bool, before: tuple[int, str] | None, limit: int
    ) -> list[Invitation]:
        """Newest first: up to limit invitations created before `before` (created_at, token)."""
        return await self._run(
            "appliance_invitation_page", _select_page_txn, pending_only, before, limit
        )

    async def complete(self, token: str, user_id: str | None, outcome: str) -> bool:
        """Record the invitation's outcome; False if it was no longer pending (someone else
        completed it first: the UPDATE is the only arbiter between concurrent completions)."""
        now = self._api.get_current_time_msec()
        completed = await self._run(
            "appliance_complete_invitation", _complete_txn, token, user_id, outcome, now
        )
        return completed == 1

    async def set_outcome(self, token: str, outcome: str) -> None:
        """Correct the outcome of an invitation already completed."""
        await self._run("appliance_invitation_outcome", _set_outcome_txn, token, outcome)
