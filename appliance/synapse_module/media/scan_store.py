# SPDX-License-Identifier: AGPL-3.0-or-later
"""The module's scan tables in Synapse's database: verdicts by content, and the quarantine log.

Synapse owns the data (one backup holds it all, every worker sees it). SQL uses `?`
placeholders and only syntax SQLite and PostgreSQL share; transaction functions are
idempotent because Synapse may re-run them.

The tables are created by :class:`.ModuleTables`, once, at start-up, by the process that runs
background tasks, so that concurrent ``CREATE TABLE`` cannot race on PostgreSQL; a failed
creation is tried again by the next caller. Until the tables are there, every read and write
raises TablesNotReady: uploads are refused (fail closed), never scanned into a store that is not
there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from synapse.module_api import LoggingTransaction, ModuleApi

from appliance.antivirus.verdict import Verdict
from appliance.synapse_module.module_tables import ModuleTables

logger = logging.getLogger(__name__)

_TABLES = ("appliance_media_verdicts", "appliance_media_quarantine")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS appliance_media_verdicts (
        sha256 TEXT NOT NULL,
        signature_version TEXT NOT NULL,
        verdict TEXT NOT NULL,          -- 'clean' or 'infected'
        signature TEXT,                 -- what clamd found, when infected
        scanned_ts BIGINT NOT NULL,
        PRIMARY KEY (sha256, signature_version)
    )""",
    """CREATE TABLE IF NOT EXISTS appliance_media_quarantine (
        record_id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        media TEXT NOT NULL,            -- mxc://server/media_id (a thumbnail's: its source's)
        kind TEXT NOT NULL,             -- upload, remote, thumbnail, url_preview
        user_id TEXT,                   -- whose request brought the file in, when known
        signature TEXT NOT NULL,
        signature_version TEXT NOT NULL,
        detected_ts BIGINT NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS appliance_media_quarantine_detected
        ON appliance_media_quarantine (detected_ts)""",
)


class TablesNotReady(Exception):
    """The scan tables have not been created yet (or their creation keeps failing)."""


@dataclass(frozen=True)
class QuarantineRecord:
    record_id: str
    sha256: str
    media: str
    kind: str
    user_id: str | None
    signature: str
    signature_version: str
    detected_ts: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


_QUARANTINE_COLUMNS = (
    "record_id, sha256, media, kind, user_id, signature, signature_version, detected_ts"
)


class ScanStore:
    def __init__(self, api: ModuleApi):
        self._api = api
        self._tables = ModuleTables(api, "appliance_scan", _SCHEMA)

    def start(self) -> None:
        """Create the tables, in the background-tasks process only; once per start-up."""
        self._tables.start()

    async def _ensure_ready(self) -> None:
        """Fail closed until the tables exist (this process creates them, or another does)."""
        if not await self._tables.present(_TABLES):
            raise TablesNotReady("the scan tables are not created yet")

    async def get_verdict(self, sha256: str, signature_version: str) -> Verdict | None:
        await self._ensure_ready()
        return await self._api.run_db_interaction(
            "appliance_get_verdict", _select_verdict_txn, sha256, signature_version
        )

    async def record_verdict(
        self, sha256: str, signature_version: str, verdict: Verdict, now_ms: int
    ) -> None:
        await self._ensure_ready()
        await self._api.run_db_interaction(
            "appliance_record_verdict",
            _upsert_verdict_txn,
            sha256,
            signature_version,
            verdict,
            now_ms,
        )

    async def forget_verdicts_except(self, signature_version: str) -> None:
        """Drop verdicts made with other signatures: they can never be used again."""
        await self._ensure_ready()
        await self._api.run_db_interaction(
            "appliance_prune_verdicts", _delete_other_versions_txn, signature_version
        )

    async def add_quarantine_record(self, record: QuarantineRecord) -> None:
        await self._ensure_ready()
        await self._api.run_db_interaction("appliance_quarantine_add", _insert_record_txn, record)

    async def list_quarantine(self, offset: int, limit: int) -> tuple[list[QuarantineRecord], int]:
        """Newest first; returns (the page, the total count)."""
        await self._ensure_ready()
        return await self._api.run_db_interaction(
            "appliance_quarantine_list", _select_records_txn, offset, limit
        )


def _select_verdict_txn(txn: LoggingTransaction, sha256: str, version: str) -> Verdict | None:
    txn.execute(
        "SELECT verdict, signature FROM appliance_media_verdicts"
        " WHERE sha256 = ? AND signature_version = ?",
        (sha256, version),
    )
    row = txn.fetchone()
    return None if row is None else Verdict(clean=row[0] == "clean", signature=row[1])


def _upsert_verdict_txn(
    txn: LoggingTransaction, sha256: str, version: str, verdict: Verdict, now_ms: int
) -> None:
    txn.execute(
        "INSERT INTO appliance_media_verdicts"
        " (sha256, signature_version, verdict, signature, scanned_ts) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (sha256, signature_version) DO UPDATE"
        " SET verdict = excluded.verdict, signature = excluded.signature,"
        " scanned_ts = excluded.scanned_ts",
        (sha256, version, "clean" if verdict.clean else "infected", verdict.signature, now_ms),
    )


def _delete_other_versions_txn(txn: LoggingTransaction, version: str) -> None:
    txn.execute("DELETE FROM appliance_media_verdicts WHERE signature_version <> ?", (version,))


def _insert_record_txn(txn: LoggingTransaction, record: QuarantineRecord) -> None:
    txn.execute(
        f"INSERT INTO appliance_media_quarantine ({_QUARANTINE_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (record_id) DO NOTHING",
        (
            record.record_id,
            record.sha256,
            record.media,
            record.kind,
            record.user_id,
            record.signature,
            record.signature_version,
            record.detected_ts,
        ),
    )


def _select_records_txn(
    txn: LoggingTransaction, offset: int, limit: int
) -> tuple[list[QuarantineRecord], int]:
    txn.execute("SELECT COUNT(*) FROM appliance_media_quarantine")
    [(total,)] = txn.fetchall()  # one row: a COUNT
    txn.execute(
        f"SELECT {_QUARANTINE_COLUMNS} FROM appliance_media_quarantine"
        " ORDER BY detected_ts DESC, record_id LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return [QuarantineRecord(*row) for row in txn.fetchall()], total
