# SPDX-License-Identifier: AGPL-3.0-or-later
"""Verdicts that survive restarts: a small SQLite file under <state_dir>/content-scanner/.

Keyed like the Synapse module's: the plaintext's SHA-256 and the signature version, so a
signature update makes every earlier verdict unusable. Encrypted attachments are also
remembered by their identity (ciphertext hash, key, IV: see EncryptedFile.identity), so a
known attachment's verdict is answered without fetching or decrypting it again.
The queries are tiny and local; they run on the event loop.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from appliance.antivirus.verdict import Verdict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    sha256 TEXT NOT NULL,
    signature_version TEXT NOT NULL,
    clean INTEGER NOT NULL,
    signature TEXT,
    scanned_at REAL NOT NULL,
    PRIMARY KEY (sha256, signature_version)
);
CREATE TABLE IF NOT EXISTS attachments (
    identity TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    seen_at REAL NOT NULL
);
"""


class VerdictStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A verdict lost in a power cut is only scanned again: no need to wait for the disk.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, sha256: str, signature_version: str) -> Verdict | None:
        row = self._db.execute(
            "SELECT clean, signature FROM verdicts WHERE sha256 = ? AND signature_version = ?",
            (sha256, signature_version),
        ).fetchone()
        return None if row is None else Verdict(bool(row[0]), row[1])

    def put(self, sha256: str, signature_version: str, verdict: Verdict) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)",
            (sha256, signature_version, int(verdict.clean), verdict.signature, time.time()),
        )

    def get_attachment(self, identity: str, signature_version: str) -> Verdict | None:
        row = self._db.execute(
            "SELECT v.clean, v.signature FROM attachments a JOIN verdicts v"
            " ON v.sha256 = a.sha256 AND v.signature_version = ? WHERE a.identity = ?",
            (signature_version, identity),
        ).fetchone()
        return None if row is None else Verdict(bool(row[0]), row[1])

    def remember_attachment(self, identity: str, sha256: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO attachments VALUES (?, ?, ?)", (identity, sha256, time.time())
        )

    def forget_verdicts_except(self, signature_version: str) -> None:
        """Verdicts made with other signatures can never be used again."""
        self._db.execute("DELETE FROM verdicts WHERE signature_version <> ?", (signature_version,))
