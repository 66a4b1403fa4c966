"""Login lockout: five wrong passwords for one username lock it for a quarter of an hour.

Counted in the console's database, so every console worker sees the same count, and counted
for unknown usernames too, so a lock says nothing about which operators exist.
"""

from __future__ import annotations

import sqlite3
import time

MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60


def seconds_locked(connection: sqlite3.Connection, username: str, now: float | None = None) -> int:
    """Seconds until username may try again; 0 when it is not locked."""
    now = time.time() if now is None else now
    rows = connection.execute(
        "SELECT failed_at FROM login_failures WHERE username = ? AND failed_at > ? "
        "ORDER BY failed_at DESC LIMIT ?",
        (username, now - LOCK_SECONDS, MAX_FAILURES),
    ).fetchall()
    if len(rows) < MAX_FAILURES:
        return 0
    # Locked from the fifth recent failure until LOCK_SECONDS after the most recent one.
    return max(0, int(rows[0]["failed_at"] + LOCK_SECONDS - now) + 1)


def record_failure(connection: sqlite3.Connection, username: str) -> None:
    connection.execute(
        "INSERT INTO login_failures (username, failed_at) VALUES (?, ?)", (username, time.time())
    )
    connection.execute(
        "DELETE FROM login_failures WHERE failed_at < ?", (time.time() - LOCK_SECONDS,)
    )


def clear(connection: sqlite3.Connection, username: str) -> None:
    connection.execute("DELETE FROM login_failures WHERE username = ?", (username,))
