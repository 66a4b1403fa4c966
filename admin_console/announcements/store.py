# SPDX-License-Identifier: AGPL-3.0-or-later
"""The announcements table: what was sent to whom, and how far its delivery has gone."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

# A failure list that grows with the audience would bloat the page: the first ones say enough.
MAX_FAILURES_KEPT = 20
RUNNING, DONE = "running", "done"


@dataclass(frozen=True)
class Announcement:
    id: int
    created_at: float
    operator: str
    audience: str  # all | domain | user
    target: str  # the domain or the user; empty for all
    text_fr: str
    text_en: str
    state: str
    sent: int
    failed: int
    failures: list[str]
    finished_at: float | None

    @property
    def running(self) -> bool:
        return self.state == RUNNING


def create(
    connection: sqlite3.Connection,
    *,
    operator: str,
    audience: str,
    target: str,
    text_fr: str,
    text_en: str,
) -> int:
    cursor = connection.execute(
        "INSERT INTO announcements (created_at, operator, audience, target, text_fr, text_en,"
        " state) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (time.time(), operator, audience, target, text_fr, text_en, RUNNING),
    )
    return int(cursor.lastrowid or 0)


def count_delivery(
    connection: sqlite3.Connection, announcement_id: int, *, failure: str | None = None
) -> None:
    """One more recipient done: delivered, or failed for the reason given."""
    if failure is None:
        connection.execute(
            "UPDATE announcements SET sent = sent + 1 WHERE id = ?", (announcement_id,)
        )
        return
    connection.execute(
        "UPDATE announcements SET failed = failed + 1, failures = CASE"
        " WHEN failed < ? THEN failures || ? ELSE failures END WHERE id = ?",
        (MAX_FAILURES_KEPT, failure.replace("\n", " ") + "\n", announcement_id),
    )


def finish(connection: sqlite3.Connection, announcement_id: int, *, failure: str = "") -> None:
    """The job ended; failure: why it stopped before reaching everybody."""
    if failure:
        connection.execute(
            "UPDATE announcements SET failures = failures || ? WHERE id = ?",
            (failure.replace("\n", " ") + "\n", announcement_id),
        )
    connection.execute(
        "UPDATE announcements SET state = ?, finished_at = ? WHERE id = ?",
        (DONE, time.time(), announcement_id),
    )


def get(connection: sqlite3.Connection, announcement_id: int) -> Announcement | None:
    row = connection.execute(
        "SELECT * FROM announcements WHERE id = ?", (announcement_id,)
    ).fetchone()
    return _announcement(row) if row else None


def recent(connection: sqlite3.Connection, limit: int = 20) -> list[Announcement]:
    rows = connection.execute(
        "SELECT * FROM announcements ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [_announcement(row) for row in rows]


def _announcement(row: sqlite3.Row) -> Announcement:
    return Announcement(
        id=row["id"],
        created_at=row["created_at"],
        operator=row["operator"],
        audience=row["audience"],
        target=row["target"],
        text_fr=row["text_fr"],
        text_en=row["text_en"],
        state=row["state"],
        sent=row["sent"],
        failed=row["failed"],
        failures=[line for line in row["failures"].split("\n") if line],
        finished_at=row["finished_at"],
    )
