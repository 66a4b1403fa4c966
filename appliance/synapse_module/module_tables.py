# SPDX-License-Identifier: AGPL-3.0-or-later
"""Creation of a module's own tables and indexes in Synapse's database (SQLite or PostgreSQL).

Synapse has no schema hook for modules.  Every store of the module creates its tables through
this one routine (a :class:`ModuleTables` each): the process that runs background tasks (the
main process) creates them when the module starts; the others use them as they find them.
A store calls :meth:`ModuleTables.ready` before a query, so a query that comes in before
the start-up creation has finished waits for it instead of failing on a missing table.  A
process that does not create them may start before the one that does (or that one may have
failed): a store that calls :meth:`ModuleTables.ensure` instead answers 503 ``M_UNKNOWN``
("try again in a moment") until they are there, rather than a 500 on a missing table.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from synapse.module_api import (
    LoggingTransaction,
    ModuleApi,
    make_deferred_yieldable,
    run_in_background,
)
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet.defer import Deferred

from appliance.synapse_module.synapse_internals import is_postgres

logger = logging.getLogger(__name__)

T = TypeVar("T")


def create_txn(txn: LoggingTransaction, statements: tuple[str, ...]) -> None:
    for statement in statements:
        txn.execute(statement)  # every statement is "... IF NOT EXISTS": safe to repeat


def tables_exist_txn(txn: LoggingTransaction, names: tuple[str, ...]) -> bool:
    """Whether every named table is in the database."""
    # From the catalogue, not by querying the tables: on PostgreSQL a failed statement would
    # abort the transaction.
    marks = ", ".join("?" for _ in names)
    if is_postgres(txn):
        query = (
            "SELECT COUNT(*) FROM information_schema.tables"
            f" WHERE table_schema = current_schema() AND table_name IN ({marks})"
        )
    else:
        query = f"SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})"
    txn.execute(query, names)
    [(count,)] = txn.fetchall()  # one row: a COUNT
    return count == len(names)


class ModuleTables:
    def __init__(self, api: ModuleApi, name: str, schema: tuple[str, ...]) -> None:
        self._api = api
        self._name = name
        self._schema = schema
        # Only one process creates tables, so that concurrent DDL cannot race on PostgreSQL.
        self._created = not api.should_run_background_tasks()
        self._found = False  # tables are never dropped: once found, no need to look again
        # Absent tables and failed reads are logged once each, not at every retry (a worker
        # started before the main process retries every few seconds until they appear).
        self._absence_logged = False
        self._failure_logged = False
        # The creation under way, which every caller waits for: on PostgreSQL a second
        # CREATE ... IF NOT EXISTS running beside it can fail (unique violation on pg_type).
        self._creation: Deferred[Exception | None] | None = None

    def start(self) -> None:
        if not self._created:
            self._api.run_as_background_process(f"{self._name}_create", self.ready)

    async def ready(self) -> None:
        if self._created:
            return
        creation = self._creation
        if creation is None:
            creation = self._creation = run_in_background(self._create)
        error = await make_deferred_yieldable(_waiter(creation))
        if error is not None:
            if self._creation is creation:
                self._creation = None  # the next caller tries again
            raise error

    async def _create(self) -> Exception | None:
        """Create the tables; the error, if that failed, for every waiting caller to raise."""
        try:
            await self._api.run_db_interaction(f"{self._name}_create", create_txn, self._schema)
        except Exception as error:
            return error
        self._created = True
        logger.info("module tables ready: %s", self._name)
        return None

    async def present(self, names: tuple[str, ...]) -> bool:
        """Whether the named tables are there (after this process's own creation, if it makes
        them); False, logged, when they cannot be created or read."""
        if self._found:
            return True
        try:
            await self.ready()
            self._found = await self._api.run_db_interaction(
                f"{self._name}_exist", tables_exist_txn, names
            )
        except Exception:
            if not self._failure_logged:
                logger.exception("module tables cannot be created or read: %s", self._name)
                self._failure_logged = True
            return False
        self._failure_logged = False
        return self._found

    async def available(self, names: tuple[str, ...]) -> bool:
        """Whether the named tables are there, for a loop that retries until they are: their
        absence is logged once (a warning, no traceback), and their arrival once."""
        found = await self.present(names)
        if not found and not self._absence_logged:
            logger.warning(
                "module tables not there yet: %s (the process that runs background tasks "
                "creates them); refusing what needs them and retrying quietly",
                self._name,
            )
            self._absence_logged = True
        elif found and self._absence_logged:
            logger.info("module tables now there: %s", self._name)
            self._absence_logged = False
        return found

    async def ensure(self, names: tuple[str, ...], refusal: str) -> None:
        """Return once the named tables are there; until then refuse with 503 M_UNKNOWN and
        `refusal`, which should say to try again in a moment."""
        if not await self.present(names):
            raise SynapseError(503, refusal, Codes.UNKNOWN)


def _waiter(shared: Deferred[T]) -> Deferred[T]:
    """A Deferred of its own that fires with shared's result (a Deferred's result goes down
    one chain of callbacks: several callers cannot all await the same one)."""
    waiter: Deferred[T] = Deferred()

    def relay(result: T) -> T:
        waiter.callback(result)
        return result

    shared.addCallback(relay)
    return waiter
