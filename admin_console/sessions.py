# SPDX-License-Identifier: AGPL-3.0-or-later
"""Operators' logins as server-side records, so that the server can end them.

A login is a row of `operator_sessions` in the console's database. The browser holds only an
opaque random token (in Flask's signed session cookie, as Flask-Login's user id: the "alternative
token" pattern of Flask-Login's documentation); the table keeps the token's SHA-256, so a copy
of the database gives no usable cookie. No operator id and no timestamp travels in the cookie:
the login and last-activity instants that `session_limits` judges are the row's.

Ending a login deletes its row, and a cookie whose row is gone is anonymous on the next request
in every console worker: logout ends one login, a password change every other login of that
operator, an operator's removal all of theirs (the foreign key cascades).

Why this way rather than a custom `SessionInterface` keeping the whole session server-side: the
cookie stays Flask's own signed cookie (itsdangerous, no session code of ours to get wrong), and
an anonymous visitor (the login page's CSRF token, the language chosen) writes nothing to the
database, so unauthenticated traffic cannot grow a table.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from dataclasses import dataclass

from flask_login import UserMixin

TOKEN_BYTES = 32


@dataclass(frozen=True)
class OperatorSession(UserMixin):
    """A live login: who, since when, and the token its cookie carries (Flask-Login's id)."""

    token: str
    operator_id: int
    username: str
    login_at: float
    last_activity: float

    @property
    def id(self) -> int:
        """The operator's id, as views and templates compare it."""
        return self.operator_id

    def get_id(self) -> str:
        return self.token


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(
    connection: sqlite3.Connection, *, operator_id: int, username: str, now: float
) -> OperatorSession:
    """Record a new login of the operator and return it, with a fresh random token."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    connection.execute(
        "INSERT INTO operator_sessions (token_sha256, operator_id, login_at, last_activity)"
        " VALUES (?, ?, ?, ?)",
        (_digest(token), operator_id, now, now),
    )
    return OperatorSession(token, operator_id, username, now, now)


def find(connection: sqlite3.Connection, token: str) -> OperatorSession | None:
    """The login this cookie token names, if it was not ended and its operator still exists."""
    row = connection.execute(
        "SELECT s.operator_id, o.username, s.login_at, s.last_activity"
        " FROM operator_sessions AS s JOIN operators AS o ON o.id = s.operator_id"
        " WHERE s.token_sha256 = ?",
        (_digest(token),),
    ).fetchone()
    if row is None:
        return None
    return OperatorSession(
        token, row["operator_id"], row["username"], row["login_at"], row["last_activity"]
    )


def note_activity(connection: sqlite3.Connection, token: str, *, now: float) -> None:
    connection.execute(
        "UPDATE operator_sessions SET last_activity = ? WHERE token_sha256 = ?",
        (now, _digest(token)),
    )


def end(connection: sqlite3.Connection, token: str) -> None:
    """End one login (logout, or a limit reached)."""
    connection.execute("DELETE FROM operator_sessions WHERE token_sha256 = ?", (_digest(token),))


def end_all(connection: sqlite3.Connection, *, operator_id: int, keep: str | None = None) -> int:
    """End every login of the operator but `keep` (a token); return how many ended."""
    cursor = connection.execute(
        "DELETE FROM operator_sessions WHERE operator_id = ? AND token_sha256 IS NOT ?",
        (operator_id, _digest(keep) if keep is not None else None),
    )
    return cursor.rowcount


def forget_older_than(connection: sqlite3.Connection, instant: float) -> None:
    """Delete logins begun before instant (past the absolute lifetime: dead whatever happens)."""
    connection.execute("DELETE FROM operator_sessions WHERE login_at < ?", (instant,))
