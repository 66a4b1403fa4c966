"""Creation of a module's own tables in Synapse's database (SQLite or PostgreSQL).

Synapse has no schema hook for modules.  The process that runs background tasks (the main
process) creates the tables when the module starts; the others use them as they find them.
Every store calls :meth:`ModuleTables.ready` before a query, so a query that comes in before
the start-up creation has finished waits for it instead of failing on a missing table.
"""

from __future__ import annotations

import logging

from synapse.module_api import LoggingTransaction, ModuleApi

logger = logging.getLogger(__name__)


def _create(txn: LoggingTransaction, statements: tuple[str, ...]) -> None:
    for statement in statements:
        txn.execute(statement)  # every statement is "... IF NOT EXISTS": safe to repeat


class ModuleTables:
    def __init__(self, api: ModuleApi, name: str, schema: tuple[str, ...]) -> None:
        self._api = api
        self._name = name
        self._schema = schema
        # Only one process creates tables, so that concurrent DDL cannot race on PostgreSQL.
        self._created = not api.should_run_background_tasks()

    def start(self) -> None:
        if not self._created:
            self._api.run_as_background_process(f"{self._name}_create", self.ready)

    async def ready(self) -> None:
        if self._created:
            return
        await self._api.run_db_interaction(f"{self._name}_create", _create, self._schema)
        if not self._created:
            self._created = True
            logger.info("module tables ready: %s", self._name)
