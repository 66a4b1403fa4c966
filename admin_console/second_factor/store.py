# SPDX-License-Identifier: AGPL-3.0-or-later
"""Each operator's TOTP secret and recovery codes, in the console's database.

The secret must be readable to check a code (TOTP is symmetric); the database is the console
user's, mode 0600. Recovery codes are kept only as password hashes (werkzeug's, as operators'
passwords) and each works once. A code is also refused if its time step was already used
(RFC 6238 section 5.2: a code seen over someone's shoulder cannot be replayed in its 30 s).
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

import pyotp
from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from admin_console import clock, db

ISSUER = "Appliance console"
RECOVERY_CODES = 10
# An authenticator's clock may be one step (30 s) behind or ahead.
VALID_WINDOW = 1


@dataclass(frozen=True)
class Enrolment:
    secret: str
    confirmed: bool
    last_step: int


def enrolment(connection: sqlite3.Connection, operator_id: int) -> Enrolment | None:
    row = connection.execute(
        "SELECT secret, confirmed, last_step FROM operator_totp WHERE operator_id = ?",
        (operator_id,),
    ).fetchone()
    return Enrolment(row["secret"], bool(row["confirmed"]), row["last_step"]) if row else None


def is_enrolled(connection: sqlite3.Connection, operator_id: int) -> bool:
    found = enrolment(connection, operator_id)
    return found is not None and found.confirmed


def begin(connection: sqlite3.Connection, operator_id: int) -> str:
    """A new, unconfirmed secret for the operator (replacing an unconfirmed one)."""
    secret = pyotp.random_base32()
    connection.execute(
        "INSERT INTO operator_totp (operator_id, secret, confirmed, last_step) VALUES (?, ?, 0, 0)"
        " ON CONFLICT (operator_id) DO UPDATE SET secret = excluded.secret, last_step = 0"
        " WHERE confirmed = 0",
        (operator_id, secret),
    )
    return secret


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def check_code(connection: sqlite3.Connection, operator_id: int, code: str) -> bool:
    """Whether code is the operator's current TOTP code, used for the first time; the step is
    recorded in the same transaction, so two requests cannot both use it."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return False
    with db.transaction(connection):
        found = enrolment(connection, operator_id)
        if found is None:
            return False
        totp = pyotp.TOTP(found.secret)
        now = totp.timecode(datetime.fromtimestamp(clock.now(), tz=UTC))
        for step in range(now - VALID_WINDOW, now + VALID_WINDOW + 1):
            if step > found.last_step and secrets.compare_digest(totp.generate_otp(step), code):
                connection.execute(
                    "UPDATE operator_totp SET last_step = ? WHERE operator_id = ?",
                    (step, operator_id),
                )
                return True
    return False


def confirm(connection: sqlite3.Connection, operator_id: int) -> list[str]:
    """The enrolment is confirmed (a first code was right): new recovery codes, shown once."""
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")
    with db.transaction(connection):
        connection.execute(
            "UPDATE operator_totp SET confirmed = 1 WHERE operator_id = ?", (operator_id,)
        )
        connection.execute(
            "DELETE FROM operator_recovery_codes WHERE operator_id = ?", (operator_id,)
        )
        connection.executemany(
            "INSERT INTO operator_recovery_codes (operator_id, code_hash) VALUES (?, ?)",
            [(operator_id, generate_password_hash(_plain(code), method=method)) for code in codes],
        )
    return codes


def use_recovery_code(connection: sqlite3.Connection, operator_id: int, code: str) -> bool:
    """Whether code is one of the operator's unused recovery codes; it is used up if so."""
    code = _plain(code)
    with db.transaction(connection):
        rows = connection.execute(
            "SELECT rowid, code_hash FROM operator_recovery_codes WHERE operator_id = ?",
            (operator_id,),
        ).fetchall()
        for row in rows:
            if check_password_hash(row["code_hash"], code):
                connection.execute(
                    "DELETE FROM operator_recovery_codes WHERE rowid = ?", (row["rowid"],)
                )
                return True
    return False


def recovery_codes_left(connection: sqlite3.Connection, operator_id: int) -> int:
    return connection.execute(
        "SELECT COUNT(*) FROM operator_recovery_codes WHERE operator_id = ?", (operator_id,)
    ).fetchone()[0]


def remove(connection: sqlite3.Connection, operator_id: int) -> None:
    with db.transaction(connection):
        connection.execute("DELETE FROM operator_totp WHERE operator_id = ?", (operator_id,))
        connection.execute(
            "DELETE FROM operator_recovery_codes WHERE operator_id = ?", (operator_id,)
        )


def _recovery_code() -> str:
    # 10 characters of a-z0-9 (about 52 bits), shown as two groups of five.
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"  # no l, o, 0, 1: read off paper
    raw = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _plain(code: str) -> str:
    """A recovery code as typed (any case, with or without its dash and spaces), normalised."""
    return code.strip().lower().replace(" ", "").replace("-", "")
