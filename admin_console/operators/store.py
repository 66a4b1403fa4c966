# SPDX-License-Identifier: AGPL-3.0-or-later
"""Console operators: the sysadmins who log in to the console (not Matrix users).

The first operator is created with a random password written to a 0600 file for the person
installing the box (FIRST_OPERATOR_FILE). That file is deleted when that operator chooses their
own password, so a live plaintext password does not stay on the disk.
"""

from __future__ import annotations

import functools
import json
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from appliance.config.secrets_store import write_json_secret

FIRST_OPERATOR = "admin"
# werkzeug's scrypt, with a random salt. The config's PASSWORD_HASH_METHOD may name another
# werkzeug method: the fast tests use a cheap one, since each hash costs scrypt's 32 MiB and CPU.
DEFAULT_HASH_METHOD = "scrypt"


class LastOperator(Exception):
    """Removing this operator would leave the console without any."""


@dataclass
class Operator:
    id: int
    username: str


def _from_row(row: sqlite3.Row | None) -> Operator | None:
    return Operator(row["id"], row["username"]) if row else None


def by_id(connection: sqlite3.Connection, operator_id: str) -> Operator | None:
    row = connection.execute(
        "SELECT id, username FROM operators WHERE id = ?", (operator_id,)
    ).fetchone()
    return _from_row(row)


def authenticate(connection: sqlite3.Connection, username: str, password: str) -> Operator | None:
    row = connection.execute(
        "SELECT id, username, password_hash FROM operators WHERE username = ?", (username,)
    ).fetchone()
    if row is None:
        check_password_hash(_dummy_hash(_hash_method()), password)
        return None
    return _from_row(row) if check_password_hash(row["password_hash"], password) else None


def _hash_method() -> str:
    return current_app.config.get("PASSWORD_HASH_METHOD", DEFAULT_HASH_METHOD)


def _new_hash(password: str) -> str:
    return generate_password_hash(password, method=_hash_method())


@functools.cache
def _dummy_hash(method: str) -> str:
    """Checked when the username is unknown, so that a login takes as long either way."""
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def create(connection: sqlite3.Connection, username: str, password: str) -> Operator:
    cursor = connection.execute(
        "INSERT INTO operators (username, password_hash) VALUES (?, ?)",
        (username, _new_hash(password)),
    )
    return Operator(cursor.lastrowid, username)


def ensure_first_operator(connection: sqlite3.Connection, credentials_file: Path) -> bool:
    """Create the first operator with a random password if there is none; return whether created.

    An immediate transaction makes this safe when several console workers start at once.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        if connection.execute("SELECT 1 FROM operators LIMIT 1").fetchone():
            connection.execute("COMMIT")
            return False
        password = secrets.token_urlsafe(18)
        create(connection, FIRST_OPERATOR, password)
        write_json_secret(credentials_file, {"username": FIRST_OPERATOR, "password": password})
        connection.execute("COMMIT")
        return True
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def set_password(connection: sqlite3.Connection, operator_id: int, password: str) -> None:
    connection.execute(
        "UPDATE operators SET password_hash = ? WHERE id = ?",
        (_new_hash(password), operator_id),
    )


def first_operator_file_names(credentials_file: Path, username: str) -> bool:
    """Whether the generated credentials file exists and is username's."""
    try:
        return json.loads(credentials_file.read_text()).get("username") == username
    except (OSError, ValueError, AttributeError):
        return False


def retire_first_operator_file(credentials_file: Path, username: str) -> bool:
    """Delete the generated credentials if they are username's; whether they were.

    Called once username has chosen a password; raises OSError if the file cannot be deleted.
    """
    if not first_operator_file_names(credentials_file, username):
        return False
    credentials_file.unlink(missing_ok=True)
    return True


def list_all(connection: sqlite3.Connection) -> list[Operator]:
    rows = connection.execute("SELECT id, username FROM operators ORDER BY username").fetchall()
    return [Operator(row["id"], row["username"]) for row in rows]


def exists(connection: sqlite3.Connection, username: str) -> bool:
    return (
        connection.execute("SELECT 1 FROM operators WHERE username = ?", (username,)).fetchone()
        is not None
    )
