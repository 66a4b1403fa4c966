# SPDX-License-Identifier: AGPL-3.0-or-later
"""The allowlist of email domains, kept in Synapse's database and mirrored in every process.

Two module tables live beside Synapse's own, so one backup holds them and every worker reads
the same list:

* ``appliance_allowed_domains``: one row per entry (``ac-paris.fr`` or ``*.gouv.fr``), always
  stored in normalised form, with who added it and when;
* ``appliance_allowlist_state``: a single row whose ``generation`` grows with every change.

The table is seeded from the module config (``allowed_domains`` in appliance.yaml) the first
time Synapse starts; afterwards the database is the reference and the config is not read again
(the admin endpoints change the list).

The admin list (:meth:`DomainStore.page`) is read a page at a time, with the number of
accounts each entry of the page admits: one pass over the email addresses, grouped by domain
in SQL, whatever the length of the list.

Each process holds a :class:`DomainAllowlist` in memory, so a decision never waits on the
database.  It checks the generation every :data:`REFRESH_SECONDS` and rebuilds the list only
when it moved; a local write refreshes at once.  Fail closed: until the list has been read, or
when it could not be confirmed for :data:`MAX_AGE_SECONDS` (so that a removed domain cannot
linger beyond that), :meth:`DomainStore.current` returns None and registration is refused.

The tables are created by :class:`.ModuleTables` (the main process, at start-up), then seeded
in a transaction of their own.  SQL uses ``?`` placeholders only, which Synapse converts for
PostgreSQL.  The account counts read Synapse's own ``user_threepids`` table, which the module
API does not expose, through :func:`.synapse_internals.email_domain_accounts_txn`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from synapse.module_api import LoggingTransaction, ModuleApi

from appliance.addresses.domain_allowlist import WILDCARD_PREFIX, DomainAllowlist
from appliance.addresses.email_address import InvalidDomain, normalise_domain
from appliance.synapse_module.module_tables import ModuleTables
from appliance.synapse_module.synapse_internals import email_domain_accounts_txn

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
# Past this age an unconfirmed in-memory list is not trusted: the bound on how long any
# process may go on applying a list that has since changed.
MAX_AGE_SECONDS = 5.0
SEEDED_BY = "appliance.yaml"

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS appliance_allowed_domains (
        entry TEXT NOT NULL PRIMARY KEY,
        added_at BIGINT NOT NULL,
        added_by TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS appliance_allowlist_state (
        id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
        generation BIGINT NOT NULL,
        seeded_at BIGINT NOT NULL
    )
    """,
)


@dataclass(frozen=True)
class DomainEntry:
    entry: str
    added_at: int  # milliseconds since the epoch
    added_by: str

    def as_json(self) -> dict:
        return {"entry": self.entry, "added_at": self.added_at, "added_by": self.added_by}


@dataclass(frozen=True)
class DomainPage:
    entries: list[DomainEntry]
    accounts: dict[str, int]  # entry -> active accounts with an address it admits
    total: int  # entries matching the search, on every page


@dataclass(frozen=True)
class _Snapshot:
    generation: int
    entries: list[str]


# --- transactions (run in a database thread; may be retried, so idempotent) -------------------


def _seed_txn(txn: LoggingTransaction, seed: tuple[str, ...], now_ms: int) -> bool:
    """On the very first start copy the seed in (the tables exist). True if it seeded."""
    txn.execute("SELECT generation FROM appliance_allowlist_state WHERE id = 1")
    if txn.fetchone() is not None:
        return False
    for entry in seed:
        txn.execute(
            "INSERT INTO appliance_allowed_domains (entry, added_at, added_by) VALUES (?, ?, ?)"
            " ON CONFLICT (entry) DO NOTHING",
            (entry, now_ms, SEEDED_BY),
        )
    txn.execute(
        "INSERT INTO appliance_allowlist_state (id, generation, seeded_at) VALUES (1, 1, ?)"
        " ON CONFLICT (id) DO NOTHING",
        (now_ms,),
    )
    return True


def _read_if_changed_txn(txn: LoggingTransaction, known_generation: int | None) -> _Snapshot | None:
    # The generation is read before the entries: a change committed in between is then seen
    # again at the next refresh, never hidden behind a generation it is not part of.
    txn.execute("SELECT generation FROM appliance_allowlist_state WHERE id = 1")
    row = txn.fetchone()
    if row is None:
        raise LookupError("the allowlist has not been created yet")
    generation = int(row[0])
    if generation == known_generation:
        return None
    txn.execute("SELECT entry FROM appliance_allowed_domains")
    return _Snapshot(generation, [entry for (entry,) in txn.fetchall()])


def _page_txn(txn: LoggingTransaction, search: str, offset: int, limit: int) -> DomainPage:
    """The entries containing search (every entry for ""), limit of them from offset."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    where, args = ("WHERE entry LIKE ? ESCAPE '\\'", (f"%{escaped}%",)) if search else ("", ())
    txn.execute(f"SELECT COUNT(*) FROM appliance_allowed_domains {where}", args)
    [(count,)] = txn.fetchall()  # one row: a COUNT
    total = int(count)
    txn.execute(
        f"SELECT entry, added_at, added_by FROM appliance_allowed_domains {where}"
        " ORDER BY entry LIMIT ? OFFSET ?",
        args + (limit, offset),
    )
    entries = [
        DomainEntry(entry, int(added_at), added_by) for entry, added_at, added_by in txn.fetchall()
    ]
    return DomainPage(entries, _accounts_txn(txn, [e.entry for e in entries]), total)


def _accounts_txn(txn: LoggingTransaction, entries: list[str]) -> dict[str, int]:
    """entry -> how many accounts have an email address it admits, for the given entries.

    Deactivation removes an account's addresses, so only active accounts count.  The addresses
    are grouped by domain in SQL: one pass over them, and one row per domain to go through.
    An account counts once per domain however many addresses it has there; a wildcard entry
    sums its domains, so an account with addresses in two of them (``a.gouv.fr`` and
    ``b.gouv.fr`` under ``*.gouv.fr``) counts twice there: rare, and counting it once would
    need a row per account instead of per domain.
    """
    counts = dict.fromkeys(entries, 0)
    if not entries:
        return counts
    for domain, accounts in email_domain_accounts_txn(txn):
        for entry in _entries_admitting(domain):
            if entry in counts:
                counts[entry] += int(accounts)
    return counts


def _entries_admitting(domain: str) -> list[str]:
    """The entries that would admit domain: itself and a wildcard on each parent suffix
    (``a.gouv.fr``: ``a.gouv.fr``, ``*.gouv.fr``, ``*.fr``), in the stored (A-label) form."""
    if not domain.isascii():  # Synapse keeps an address as given: Unicode domains happen
        try:
            domain = normalise_domain(domain)
        except InvalidDomain:
            return []
    labels = domain.split(".")
    return [domain] + [WILDCARD_PREFIX + ".".join(labels[i:]) for i in range(1, len(labels))]


def _get_entry_txn(txn: LoggingTransaction, entry: str) -> DomainEntry | None:
    txn.execute(
        "SELECT entry, added_at, added_by FROM appliance_allowed_domains WHERE entry = ?", (entry,)
    )
    row = txn.fetchone()
    return DomainEntry(row[0], int(row[1]), row[2]) if row else None


def _bump_generation_txn(txn: LoggingTransaction) -> None:
    txn.execute("UPDATE appliance_allowlist_state SET generation = generation + 1 WHERE id = 1")


# The two writes are public so that any process (or a test standing for another worker)
# changes the list exactly as the store does, generation included.
def insert_entry_txn(txn: LoggingTransaction, entry: str, now_ms: int, added_by: str) -> bool:
    txn.execute(
        "INSERT INTO appliance_allowed_domains (entry, added_at, added_by) VALUES (?, ?, ?)"
        " ON CONFLICT (entry) DO NOTHING",
        (entry, now_ms, added_by),
    )
    created = txn.rowcount == 1
    if created:
        _bump_generation_txn(txn)
    return created


def delete_entry_txn(txn: LoggingTransaction, entry: str) -> bool:
    txn.execute("DELETE FROM appliance_allowed_domains WHERE entry = ?", (entry,))
    deleted = txn.rowcount == 1
    if deleted:
        _bump_generation_txn(txn)
    return deleted


# --- the store ---------------------------------------------------------------------------------


class DomainStore:
    """The allowlist as one process sees it, and the only writer of its tables.

    Entries given to :meth:`add` and :meth:`remove` must already be normalised
    (:func:`appliance.addresses.domain_allowlist.normalise_domain_entry`); the admin endpoints
    do that, so that they can answer a bad entry with its reason.
    """

    def __init__(
        self,
        api: ModuleApi,
        seed: Iterable[str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._seed = tuple(seed)
        self._clock = clock
        self._allowlist: DomainAllowlist | None = None
        self._generation: int | None = None
        self._confirmed_at = float("-inf")
        self._failing = False
        self._refreshing = 0
        # Only the process that runs background tasks creates and seeds the tables.
        self._tables = ModuleTables(api, "appliance_allowlist", _SCHEMA)
        self._seeds = api.should_run_background_tasks()
        self._seeded = False

    def start(self) -> None:
        """Create and seed the tables (main process only), load the list, keep it fresh."""
        # One process creates the tables, so that concurrent DDL cannot race on PostgreSQL; the
        # others fail closed until a refresh finds them. The first looping call only happens
        # after one period: hence this call.
        self._api.run_as_background_process("appliance_allowlist_start", self._scheduled_refresh)
        self._api.looping_background_call(
            self._scheduled_refresh,
            REFRESH_SECONDS * 1000,
            desc="appliance_allowlist_refresh",
            run_on_all_instances=True,
        )

    def current(self) -> DomainAllowlist | None:
        """The allowlist to decide with, or None when it cannot be trusted (fail closed)."""
        if self._clock() - self._confirmed_at > MAX_AGE_SECONDS:
            return None
        return self._allowlist

    async def _create_and_seed(self) -> None:
        try:
            await self._tables.ready()
            seeded = await self._api.run_db_interaction(
                "appliance_allowlist_seed",
                _seed_txn,
                self._seed,
                self._api.get_current_time_msec(),
            )
        except Exception:
            logger.exception(
                "cannot create the allowlist tables (retrying): registration is refused"
            )
            return
        self._seeded = True
        if seeded:
            logger.info("allowlist seeded from appliance.yaml with %d entries", len(self._seed))
        else:
            logger.info(
                "allowlist already in the database; allowed_domains in appliance.yaml is only "
                "the seed of the first start and is not applied again"
            )

    async def _scheduled_refresh(self) -> None:
        if self._seeds and not self._seeded:
            await self._create_and_seed()
        # Rebuilding a very large list can outlast a period: never pile up rebuilds.
        if not self._refreshing:
            await self.refresh()

    async def refresh(self) -> None:
        """Confirm the in-memory list against the database; rebuild it if it changed."""
        began = self._clock()
        self._refreshing += 1
        try:
            snapshot = await self._api.run_db_interaction(
                "appliance_allowlist_read", _read_if_changed_txn, self._generation
            )
            if snapshot is not None:
                await self._install(snapshot)
        except Exception as error:  # any failure means the list is unconfirmed: fail closed
            if not self._failing:
                logger.error("cannot read the allowlist (%s): registration is refused", error)
            self._failing = True
            return
        finally:
            self._refreshing -= 1
        if self._failing:
            logger.info("the allowlist can be read again")
            self._failing = False
        self._confirmed_at = max(self._confirmed_at, began)

    async def _install(self, snapshot: _Snapshot) -> None:
        # Entries were normalised when written (admin API, parse_config): no IDNA work here.
        allowlist = DomainAllowlist.from_normalised(snapshot.entries)
        # Two refreshes may overlap (the loop and a local write): never go back in time.
        if self._generation is not None and snapshot.generation < self._generation:
            return
        self._allowlist, self._generation = allowlist, snapshot.generation
        logger.info(
            "allowlist generation %d loaded: %d entries", snapshot.generation, len(allowlist)
        )

    async def page(self, search: str, offset: int, limit: int) -> DomainPage:
        """A page of the entries containing search (normalised form), with their accounts."""
        return await self._api.run_db_interaction(
            "appliance_allowlist_page", _page_txn, search, offset, limit
        )

    async def get(self, entry: str) -> DomainEntry | None:
        return await self._api.run_db_interaction("appliance_allowlist_get", _get_entry_txn, entry)

    async def add(self, entry: str, added_by: str) -> bool:
        """Add a normalised entry; False if it was already there."""
        created = await self._api.run_db_interaction(
            "appliance_allowlist_add",
            insert_entry_txn,
            entry,
            self._api.get_current_time_msec(),
            added_by,
        )
        await self.refresh()
        return created

    async def remove(self, entry: str) -> bool:
        """Remove a normalised entry; False if it was not there."""
        deleted = await self._api.run_db_interaction(
            "appliance_allowlist_remove", delete_entry_txn, entry
        )
        await self.refresh()
        return deleted


async def read_allowlist(api: ModuleApi) -> DomainAllowlist:
    """The allowlist as the database holds it now, read once (for single sign-on, which is rare
    enough to afford a fresh read and must not depend on a process's refresh loop).

    Raises:
        LookupError: the tables do not exist yet; any database error as it comes.
    """
    snapshot = await api.run_db_interaction(
        "appliance_allowlist_read_once", _read_if_changed_txn, None
    )
    if snapshot is None:  # only when a known generation is passed: never here
        raise LookupError("the allowlist could not be read")
    return DomainAllowlist.from_normalised(snapshot.entries)
