# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's own SQLite database: operators, their logins, login attempts, the audit log,
health samples (per minute for a day, per hour for 30 days), announcements sent.

It is separate from Synapse's so the console keeps working, and keeps its record, when
Synapse is down.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app, g

SCHEMA = """
CREATE TABLE IF NOT EXISTS operators (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s', 'now'))
);
-- One row per live login (sessions.py): the cookie holds a random token, this its SHA-256.
CREATE TABLE IF NOT EXISTS operator_sessions (
    token_sha256 TEXT PRIMARY KEY,
    operator_id INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    login_at REAL NOT NULL,
    last_activity REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS operator_sessions_by_operator ON operator_sessions (operator_id);
CREATE INDEX IF NOT EXISTS operator_sessions_by_login ON operator_sessions (login_at);
-- Replaced by login_attempts (which knows the client); its rows only ever lasted 15 minutes.
DROP TABLE IF EXISTS login_failures;
-- One row per password attempt, a failure until the password proved right (lockout.py).
CREATE TABLE IF NOT EXISTS login_attempts (
    username TEXT NOT NULL,
    client TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_attempts_by_client ON login_attempts (username, client, at);
CREATE INDEX IF NOT EXISTS login_attempts_by_user ON login_attempts (username, at);
CREATE INDEX IF NOT EXISTS login_attempts_by_time ON login_attempts (at);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (at);
-- Operators' second factor (second_factor/store.py): the TOTP secret, confirmed once a first
-- code was right, and the last time step used (a code works once).
CREATE TABLE IF NOT EXISTS operator_totp (
    operator_id INTEGER PRIMARY KEY REFERENCES operators (id) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0,
    last_step INTEGER NOT NULL DEFAULT 0
);
-- A new secret waiting for its first code (the current one keeps working meanwhile).
CREATE TABLE IF NOT EXISTS operator_totp_pending (
    operator_id INTEGER PRIMARY KEY REFERENCES operators (id) ON DELETE CASCADE,
    secret TEXT NOT NULL
);
-- Their one-time recovery codes, as password hashes.
CREATE TABLE IF NOT EXISTS operator_recovery_codes (
    operator_id INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL
);
-- Operators' roles (operators/roles.py); an operator without a row is an administrator (every
-- operator was one before roles existed).
CREATE TABLE IF NOT EXISTS operator_roles (
    operator_id INTEGER PRIMARY KEY REFERENCES operators (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('administrator', 'auditor'))
);
-- One row per minute: several console workers may sample the same minute; the first one wins.
CREATE TABLE IF NOT EXISTS health_samples (
    minute INTEGER PRIMARY KEY,
    cpu_percent REAL NOT NULL,
    memory_percent REAL NOT NULL,
    disk_percent REAL NOT NULL,
    synapse_ms REAL
);
-- One row per announcement (announcements/): its texts, audience and delivery progress, which
-- the job sending it updates as it goes.
CREATE TABLE IF NOT EXISTS announcements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    operator TEXT NOT NULL,
    audience TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    text_fr TEXT NOT NULL,
    text_en TEXT NOT NULL,
    state TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    failures TEXT NOT NULL DEFAULT '',
    finished_at REAL,
    -- The last recipient of the last batch sent, and the user list's page it was on: a
    -- delivery resumed after a restart goes on from the next one.
    resume_from TEXT NOT NULL DEFAULT '',
    resume_page TEXT NOT NULL DEFAULT ''
);
-- Who does a background job among the console's workers (leases.py): one row per lease, held
-- until expires_at unless renewed.
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
-- Past 24 h, one row per hour (health_history.py): averages, the disk's highest; 30 days.
CREATE TABLE IF NOT EXISTS health_hourly (
    hour INTEGER PRIMARY KEY,
    cpu_percent REAL NOT NULL,
    memory_percent REAL NOT NULL,
    disk_percent REAL NOT NULL,
    synapse_ms REAL
);
"""


def connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=10, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """All of the block's writes or none (the connection is in autocommit mode otherwise)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    connection = g.pop("db", None)
    if connection is not None:
        connection.close()


def init_app(app: Flask) -> None:
    with connect(app.config["DATABASE"]) as connection:
        # One transaction: all of the schema or none, and one write to the disk instead of one
        # per statement.
        connection.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;")
        _add_missing_columns(connection)
    app.teardown_appcontext(close_db)


# Columns added after a table's first release: CREATE TABLE IF NOT EXISTS leaves an older
# database's table as it was, so they are added to it here.
ADDED_COLUMNS = {
    "announcements": {
        "resume_from": "TEXT NOT NULL DEFAULT ''",
        "resume_page": "TEXT NOT NULL DEFAULT ''",
    }
}


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    # Write-locked while it looks and adds: the console's workers start together.
    with transaction(connection):
        for table, columns in ADDED_COLUMNS.items():
            present = {row["name"] for row in connection.execute(f"PRAGMA table_info({table})")}
            for name, definition in columns.items():
                if name not in present:
                    connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
