# SPDX-License-Identifier: AGPL-3.0-or-later
"""A lease in the console's SQLite database: one holder at a time among the console's workers.

Every gunicorn worker runs the background loops; only the holder of a lease does its job (the
alerts: an incident is mailed once, not once per worker; an announcement's delivery: sent by
one worker). The holder renews the lease as it goes; if it dies, the lease expires and another
worker takes it over. The decision is made inside one immediate (write-locked) transaction, so
two workers can never both believe they hold it.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import uuid

from admin_console import db

# One holder name per process (a worker's threads share it).
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(
    connection: sqlite3.Connection, name: str, *, holder: str, seconds: float, now: float
) -> bool:
    """Take or renew the lease `name` for `seconds`; whether `holder` now holds it."""
    with db.transaction(connection):
        row = connection.execute(
            "SELECT holder, expires_at FROM leases WHERE name = ?", (name,)
        ).fetchone()
        if row is not None and row["holder"] != holder and row["expires_at"] > now:
            return False
        connection.execute(
            "INSERT OR REPLACE INTO leases (name, holder, expires_at) VALUES (?, ?, ?)",
            (name, holder, now + seconds),
        )
    return True


def held(connection: sqlite3.Connection, name: str, now: float) -> bool:
    """Whether somebody holds the lease `name` (taken and not expired)."""
    row = connection.execute("SELECT expires_at FROM leases WHERE name = ?", (name,)).fetchone()
    return row is not None and row["expires_at"] > now


def release(connection: sqlite3.Connection, name: str, *, holder: str) -> None:
    connection.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
