# SPDX-License-Identifier: AGPL-3.0-or-later
"""The announcements table: what was sent to whom, and how far its delivery has gone."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from admin_console import db

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
    resume_from: str = ""  # the last recipient already done (user ID order); "": none yet
    resume_page: str = ""  # the user list's cursor of the page it was on; "": the first

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


def count_batch(
    connection: sqlite3.Connection,
    announcement_id: int,
    outcomes: list[tuple[str, str | None]],
    page: str = "",
) -> None:
    """A batch of recipients done, in order: (user ID, None if delivered else why not), the last
    on the user list's page `page`. One transaction with the point to resume from, so a restart
    neither skips nor counts twice."""
    with db.transaction(connection):
        for user_id, failure in outcomes:
            if failure is None:
                connection.execute(
                    "UPDATE announcements SET sent = sent + 1 WHERE id = ?", (announcement_id,)
                )
                continue
            line = f"{user_id}: {failure}".replace("\n", " ") + "\n"
            connection.execute(
                "UPDATE announcements SET failed = failed + 1, failures = CASE"
                " WHEN failed < ? THEN failures || ? ELSE failures END WHERE id = ?",
                (MAX_FAILURES_KEPT, line, announcement_id),
            )
        if outcomes:
            connection.execute(
                "UPDATE announcements SET resume_from = ?, resume_page = ? WHERE id = ?",
                (outcomes[-1][0], page, announcement_id),
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


def running(connection: sqlite3.Connection) -> list[Announcement]:
    """The announcements whose delivery has not ended (going on, or cut off by a restart)."""
    rows = connection.execute(
        "SELECT * FROM announcements WHERE state = ? ORDER BY id", (RUNNING,)
    ).fetchall()
    return [_announcement(row) for row in rows]


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
        resume_from=row["resume_from"],
        resume_page=row["resume_page"],
    )
